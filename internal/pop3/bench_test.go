package pop3

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"kanmon/internal/maildir"
)

// BenchmarkRetrieve10000 retrieves a whole mailbox of 10,000 messages
// (about 2 KiB each) over POP3S in one session per iteration: LIST, then
// every RETR pipelined, then QUIT (no DELE, so each iteration sees the same
// mailbox). B/op and allocs/op are for the whole mailbox, client included;
// they stay near the size of the listing because messages are streamed.
func BenchmarkRetrieve10000(b *testing.B) {
	const n = 10000
	e := newEnv(b, withConfig(func(c *Config) { c.Logger = slog.New(slog.DiscardHandler) }))
	box := e.mailbox(alice)
	if err := box.Create(); err != nil {
		b.Fatal(err)
	}
	var total int64
	body := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.\r\n", 30)
	for i := range n {
		msg := fmt.Sprintf("From: bench@example.org\r\nSubject: %d\r\n\r\n%s", i, body)
		total += int64(len(msg))
		// Written directly (no fsync per message) to keep setup fast.
		if err := os.WriteFile(filepath.Join(string(box), "new", maildir.UniqueName()), []byte(msg), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	if msgs, err := box.List(); err != nil || len(msgs) != n { // moves new/ to cur/ once
		b.Fatal(len(msgs), err)
	}
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		retrieveAll(b, e.pop3sAddr, n, total)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func retrieveAll(b *testing.B, addr string, n int, total int64) {
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	r := bufio.NewReaderSize(c, 64*1024)
	line := func() string {
		l, err := r.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		return string(l)
	}
	line()
	// Commands go out from another goroutine so the pipeline stays full.
	errc := make(chan error, 1)
	go func() {
		w := bufio.NewWriter(c)
		w.WriteString("USER " + alice + "\r\nPASS " + alicePass + "\r\nLIST\r\n")
		for i := 1; i <= n; i++ {
			w.WriteString("RETR " + strconv.Itoa(i) + "\r\n")
		}
		w.WriteString("QUIT\r\n")
		errc <- w.Flush()
	}()
	line()
	if l := line(); !strings.HasPrefix(l, "+OK") {
		b.Fatalf("login: %q", l)
	}
	skipBody := func() int64 {
		var got int64
		for {
			l, err := r.ReadSlice('\n')
			if err != nil && err != bufio.ErrBufferFull {
				b.Fatal(err)
			}
			if string(l) == ".\r\n" {
				return got
			}
			got += int64(len(l))
		}
	}
	line()
	skipBody()
	var got int64
	for range n {
		if l := line(); !strings.HasPrefix(l, "+OK") {
			b.Fatalf("RETR: %q", l)
		}
		got += skipBody()
	}
	if l := line(); !strings.HasPrefix(l, "+OK Bye") {
		b.Fatalf("QUIT: %q", l)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, r)
	if got < total { // stuffing may add octets, never remove them
		b.Fatalf("received %d octets, want %d", got, total)
	}
}
