package smtpd

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"kanmon/internal/config"
)

// FuzzSession drives a whole SMTP dialogue from arbitrary client bytes:
// the server must neither panic nor hang, and must never acknowledge a
// message whose data contained a bare CR or LF, or a NUL.
func FuzzSession(f *testing.F) {
	f.Add([]byte("EHLO a\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n"))
	f.Add([]byte("EHLO a\r\nMAIL FROM:<>\r\nRCPT TO:<user%evil@example.org>\r\nRCPT TO:<\"a@b\"@example.org>\r\nQUIT\r\n"))
	f.Add([]byte("HELO a\r\nMAIL FROM:<a@b.c> SIZE=10 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<ü@example.org>\r\nDATA\r\nx\n.\r\n.\r\n"))
	f.Add([]byte("\x00\xff\r\nGET / HTTP/1.1\r\n"))
	f.Add([]byte("EHLO a\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN\r\nYQ==\r\n=\r\nSTARTTLS\r\n"))
	ts := newTestServer(f, func(c *config.Config) {
		c.Limits.CommandTimeout = config.Duration{Duration: 2 * time.Second}
		c.Limits.DataTimeout = config.Duration{Duration: 2 * time.Second}
		c.Limits.MaxMessageSize = 4096
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		srvSide, cliSide := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			ts.srv.handle(srvSide, RoleMX)
		}()
		go func() {
			cliSide.SetWriteDeadline(time.Now().Add(3 * time.Second))
			cliSide.Write(in)
			time.Sleep(10 * time.Millisecond)
			cliSide.Close()
		}()
		var out bytes.Buffer
		cliSide.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(&out, cliSide)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("session did not end")
		}
		// Every reply line is well formed: three digits then ' ' or '-'.
		sc := bufio.NewScanner(&out)
		for sc.Scan() {
			l := sc.Text()
			if len(l) < 4 || l[0] < '2' || l[0] > '5' || (l[3] != ' ' && l[3] != '-') {
				t.Fatalf("malformed reply line %q", l)
			}
		}
		if bytes.Contains(in, []byte("\n.\r\n")) && strings.Contains(out.String(), "250 2.0.0 OK queued") &&
			hasBareLFMessage(in) {
			t.Fatalf("message with bare LF acknowledged: %q", out.String())
		}
		if hasNULMessage(in) && strings.Contains(out.String(), "250 2.0.0 OK queued") {
			t.Fatalf("message with NUL acknowledged: %q", out.String())
		}
	})
}

// hasNULMessage reports conservatively whether in holds a single message
// (one end marker) whose data, after the first DATA, contains a NUL.
func hasNULMessage(in []byte) bool {
	i := bytes.Index(in, []byte("DATA\r\n"))
	if i < 0 || bytes.Count(in, []byte("\r\n.\r\n")) != 1 {
		return false
	}
	rest := in[i+6:]
	end := bytes.Index(rest, []byte("\r\n.\r\n"))
	return end >= 0 && bytes.IndexByte(rest[:end], 0) >= 0
}

// hasBareLFMessage reports conservatively whether the only DATA section of
// in has a bare LF before its end marker.
func hasBareLFMessage(in []byte) bool {
	i := bytes.Index(in, []byte("DATA\r\n"))
	if i < 0 || bytes.Count(in, []byte("DATA\r\n")) != 1 {
		return false
	}
	rest := in[i+6:]
	end := bytes.Index(rest, []byte("\r\n.\r\n"))
	if end < 0 {
		return false
	}
	body := rest[:end]
	return bytes.Contains(bytes.ReplaceAll(body, []byte("\r\n"), nil), []byte("\n"))
}

// FuzzSplitPath checks the path splitter of MAIL/RCPT arguments.
func FuzzSplitPath(f *testing.F) {
	for _, s := range []string{"<a@b>", "<a@b> SIZE=1", `<"a>b"@c> X`, "<", "a@b", `<"\>">`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, params, ok := splitPath(s)
		if !ok {
			return
		}
		if !strings.HasPrefix(p, "<") || !strings.HasSuffix(p, ">") {
			t.Fatalf("path %q not bracketed", p)
		}
		if len(p)+len(params) > len(s) {
			t.Fatalf("split longer than input: %q %q", p, params)
		}
	})
}
