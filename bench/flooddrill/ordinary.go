package flooddrill

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// seqHeader carries an ordinary message's number to the sink.
const seqHeader = "X-Drill-Seq"

// Submitter sends ordinary message seq (with the seqHeader) to a
// recipient at the sink's domain.
type Submitter func(ctx context.Context, seq int, rcpt string, msg []byte) error

// Message returns ordinary message seq: about 1 KiB, the seqHeader in
// its header.
func Message(seq int, from, rcpt string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: ordinary mail %d\r\n%s: %d\r\n"+
		"Message-ID: <drill-%d@drill.test>\r\n\r\n", from, rcpt, seq, seqHeader, seq, seq)
	for b.Len() < 1024 {
		b.WriteString("Ordinary mail keeps flowing while the bounces are refused.\r\n")
	}
	return []byte(b.String())
}

// Submission returns a Submitter that authenticates on a submission
// listener (STARTTLS, AUTH PLAIN): the way a user's mail program sends.
func Submission(addr, user, pass string) Submitter {
	return func(ctx context.Context, seq int, rcpt string, msg []byte) error {
		// The server's certificate is the self-signed one of kanmon init.
		c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return fmt.Errorf("starttls: %w", err)
		}
		defer c.Close()
		if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		if err := c.SendMail(user, []string{rcpt}, strings.NewReader(string(msg))); err != nil {
			return err
		}
		return c.Quit()
	}
}

// Plain returns a Submitter for a server that relays for the client's
// address without AUTH (Postfix's mynetworks).
func Plain(addr, from string) Submitter {
	return func(ctx context.Context, seq int, rcpt string, msg []byte) error {
		c, err := smtp.Dial(addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Hello("client.drill.test"); err != nil {
			return err
		}
		if err := c.SendMail(from, []string{rcpt}, strings.NewReader(string(msg))); err != nil {
			return err
		}
		return c.Quit()
	}
}

// OrdinaryResult is the steady stream's outcome.
type OrdinaryResult struct {
	// Sent is when each message's submission started; zero if it failed.
	Sent []time.Time
	// Failed counts submissions the server did not take.
	Failed int
	// FirstError is the first failure, for the report.
	FirstError error
}

// Ordinary submits n messages at rate per second, each in its own
// connection, from a small pool of senders so a slow reply does not
// slow the stream.
func Ordinary(ctx context.Context, n int, rate float64, from, rcptDomain string, submit Submitter) OrdinaryResult {
	res := OrdinaryResult{Sent: make([]time.Time, n)}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		gap = time.Duration(float64(time.Second) / rate)
		t0  = time.Now()
	)
	sem := make(chan struct{}, 50)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if d := time.Until(t0.Add(time.Duration(i) * gap)); d > 0 {
			time.Sleep(d)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			rcpt := fmt.Sprintf("user%d@%s", i%50, rcptDomain)
			start := time.Now()
			err := submit(ctx, i, rcpt, Message(i, from, rcpt))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed++
				if res.FirstError == nil {
					res.FirstError = fmt.Errorf("message %d: %w", i, err)
				}
				return
			}
			res.Sent[i] = start
		}(i)
	}
	wg.Wait()
	return res
}

// Sink is an SMTP server that takes everything and notes when each
// ordinary message (by its seqHeader) arrived.
type Sink struct {
	// Addr is the sink's listener, "127.0.0.1:PORT".
	Addr string

	srv *smtp.Server
	mu  sync.Mutex
	got map[int]time.Time
	all int
}

// StartSink listens on a free loopback port.
func StartSink() (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sink: listen: %w", err)
	}
	s := &Sink{Addr: ln.Addr().String(), got: map[int]time.Time{}}
	s.srv = smtp.NewServer(sinkBackend{s})
	s.srv.Domain = "sink.drill.test"
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.MaxMessageBytes = 1 << 20
	s.srv.MaxRecipients = 1000
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the sink.
func (s *Sink) Close() { s.srv.Close() }

// Arrivals returns the arrival time of each ordinary message seen.
func (s *Sink) Arrivals() map[int]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]time.Time, len(s.got))
	for k, v := range s.got {
		out[k] = v
	}
	return out
}

// Count returns how many messages of any kind arrived.
func (s *Sink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all
}

type sinkBackend struct{ s *Sink }

func (b sinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: b.s}, nil }

type sinkSession struct{ s *Sink }

func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (ss *sinkSession) Data(r io.Reader) error {
	seq := -1
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, seqHeader) {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				seq = n
			}
		}
		if strings.TrimSpace(line) == "" || err != nil {
			break
		}
	}
	if _, err := io.Copy(io.Discard, br); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	now := time.Now()
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	ss.s.all++
	if _, dup := ss.s.got[seq]; seq >= 0 && !dup {
		ss.s.got[seq] = now
	}
	return nil
}
