package remote

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestPipelinedTransaction: with a peer that offers PIPELINING, MAIL, every
// RCPT and DATA arrive together before the peer has answered any of them
// (RFC 2920), and the per-recipient replies are matched in order.
func TestPipelinedTransaction(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		io.WriteString(c, "220 peer.test ESMTP\r\n")
		// Answer EHLO, then read the whole batch before answering
		// anything.
		var batch strings.Builder
		for !strings.Contains(batch.String(), "DATA\r\n") {
			l, err := br.ReadString('\n')
			if err != nil {
				got <- "read error: " + err.Error()
				return
			}
			if strings.HasPrefix(l, "EHLO ") {
				io.WriteString(c, "250-peer.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n")
				continue
			}
			batch.WriteString(l)
		}
		io.WriteString(c, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n250 2.1.5 ok\r\n354 go on\r\n")
		var data strings.Builder
		for {
			l, err := br.ReadString('\n')
			if err != nil || l == ".\r\n" {
				break
			}
			data.WriteString(l)
		}
		io.WriteString(c, "250 2.0.0 queued\r\n")
		br.ReadString('\n') // QUIT
		io.WriteString(c, "221 2.0.0 bye\r\n")
		got <- batch.String() + "--\r\n" + data.String()
	}()
	r := &Remote{HeloName: "mx.example.org", Routes: map[string]string{"remote.test": ln.Addr().String()},
		ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second}
	env := ownUser("a@remote.test")
	rcpts := []string{"a@remote.test", "nobody@remote.test", "c@remote.test"}
	body := "Subject: p\r\n\r\n.leading dot\r\nend\r\n"
	res := r.Send(context.Background(), &env, "remote.test", rcpts, func() io.Reader { return strings.NewReader(body) })
	transcript := <-got
	wantBatch := "MAIL FROM:<" + env.From + ">\r\nRCPT TO:<a@remote.test>\r\nRCPT TO:<nobody@remote.test>\r\nRCPT TO:<c@remote.test>\r\nDATA\r\n"
	if !strings.HasPrefix(transcript, wantBatch) {
		t.Fatalf("peer saw %q, want the batch %q first", transcript, wantBatch)
	}
	if !strings.Contains(transcript, "--\r\nSubject: p\r\n\r\n..leading dot\r\nend\r\n") {
		t.Errorf("message not dot-stuffed as sent: %q", transcript)
	}
	if len(res) != 3 || !res[0].OK || res[1].OK || !res[1].Permanent || res[1].Code != 550 || res[1].Enhanced != "5.1.1" || !res[2].OK {
		t.Fatalf("results %+v, want ok, 550 5.1.1, ok", res)
	}
}
