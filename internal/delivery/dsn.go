package delivery

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message"

	"kanmon/internal/logging"
	"kanmon/internal/queue"
)

// maxDSNHeaders bounds the original header section copied into a DSN.
const maxDSNHeaders = 64 << 10

// BounceAllowed reports whether a DSN may ever be sent about env (law 3):
// only for mail our own users sent (authenticated, trusted network or
// POP-before-SMTP), never to the null sender, never about a DSN.
func BounceAllowed(env *queue.Envelope) bool {
	if env.From == "" {
		return false
	}
	switch env.Origin {
	case queue.OriginAuthenticated, queue.OriginTrusted, queue.OriginPopBeforeSMTP:
		return true
	}
	return false
}

// dsnRcpt is one recipient reported in a DSN.
type dsnRcpt struct {
	Addr   string
	Status string // enhanced status, e.g. "5.1.1"
	Reply  string // the remote reply or our reason
	MX     string
	Last   time.Time
}

// queueDSN builds an RFC 3464 report about m for rcpts (action "failed" or
// "delayed") and commits it to the spool as a new message from the null
// sender with Origin local, to m's envelope sender. It returns the new
// message's id.
func (s *Scheduler) queueDSN(m *queue.Message, action string, rcpts []dsnRcpt) (string, error) {
	env := &m.Envelope
	if !BounceAllowed(env) {
		return "", fmt.Errorf("delivery: DSN for %s not allowed (origin %s, sender %q)", env.ID, env.Origin, env.From)
	}
	rcpt := queue.Recipient{Addr: env.From}
	if s.LocalAccount != nil {
		if acct, ok := s.LocalAccount(env.From); ok {
			rcpt.Account = acct
		}
	}
	var buf bytes.Buffer
	if err := s.writeDSN(&buf, m, action, rcpts); err != nil {
		return "", fmt.Errorf("delivery: build DSN for %s: %w", env.ID, err)
	}
	if err := s.Spool.CheckSpace(int64(buf.Len())); err != nil {
		return "", fmt.Errorf("delivery: queue DSN for %s: %w", env.ID, err)
	}
	w, err := s.Spool.Create(queue.Envelope{
		From: "", Recipients: []queue.Recipient{rcpt}, Origin: queue.OriginLocal, Body8Bit: true,
	})
	if err != nil {
		return "", fmt.Errorf("delivery: queue DSN for %s: %w", env.ID, err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		w.Abort()
		return "", fmt.Errorf("delivery: queue DSN for %s: %w", env.ID, err)
	}
	if err := w.Commit(); err != nil {
		return "", fmt.Errorf("delivery: queue DSN for %s: %w", env.ID, err)
	}
	s.enqueue(w.ID(), LaneBounce)
	return w.ID(), nil
}

func (s *Scheduler) writeDSN(out io.Writer, m *queue.Message, action string, rcpts []dsnRcpt) error {
	env := &m.Envelope
	host := s.Hostname
	if host == "" {
		host = "localhost"
	}
	now := time.Now()
	var h message.Header
	h.Set("From", "Mail Delivery System <MAILER-DAEMON@"+host+">")
	h.Set("To", "<"+env.From+">")
	if action == "delayed" {
		h.Set("Subject", "Delayed Mail (still being retried)")
	} else {
		h.Set("Subject", "Undelivered Mail Returned to Sender")
	}
	h.Set("Date", now.Format(time.RFC1123Z))
	h.Set("Message-Id", "<"+logging.NewID('d')+"@"+host+">")
	h.Set("Auto-Submitted", "auto-replied") // RFC 3834: no automatic answers to this
	h.Set("MIME-Version", "1.0")
	h.SetContentType("multipart/report", map[string]string{"report-type": "delivery-status"})
	mw, err := message.CreateWriter(out, h)
	if err != nil {
		return err
	}

	var text strings.Builder
	if action == "delayed" {
		fmt.Fprintf(&text, "This is the mail system at %s.\r\n\r\nYour message (queue id %s) could not be delivered yet to the\r\nrecipients below. It stays queued and is retried; you will be told\r\nif it finally fails. Nothing needs to be done now.\r\n\r\n", host, env.ID)
	} else {
		fmt.Fprintf(&text, "This is the mail system at %s.\r\n\r\nYour message (queue id %s) could not be delivered to the\r\nrecipients below. The reasons are given with each.\r\n\r\n", host, env.ID)
	}
	for _, r := range rcpts {
		fmt.Fprintf(&text, "<%s>: %s\r\n", r.Addr, oneLine(r.Reply))
	}
	var th message.Header
	th.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	th.Set("Content-Description", "Notification")
	if err := writePart(mw, th, text.String()); err != nil {
		return err
	}

	var ds strings.Builder
	fmt.Fprintf(&ds, "Reporting-MTA: dns; %s\r\n", host)
	fmt.Fprintf(&ds, "X-Kanmon-Queue-ID: %s\r\n", env.ID)
	fmt.Fprintf(&ds, "Arrival-Date: %s\r\n", env.Received.Format(time.RFC1123Z))
	for _, r := range rcpts {
		ds.WriteString("\r\n")
		fmt.Fprintf(&ds, "Final-Recipient: rfc822; %s\r\n", r.Addr)
		fmt.Fprintf(&ds, "Action: %s\r\n", action)
		fmt.Fprintf(&ds, "Status: %s\r\n", r.Status)
		if r.MX != "" {
			fmt.Fprintf(&ds, "Remote-MTA: dns; %s\r\n", r.MX)
		}
		if r.Reply != "" {
			fmt.Fprintf(&ds, "Diagnostic-Code: smtp; %s\r\n", oneLine(r.Reply))
		}
		if !r.Last.IsZero() {
			fmt.Fprintf(&ds, "Last-Attempt-Date: %s\r\n", r.Last.Format(time.RFC1123Z))
		}
		if action == "delayed" && s.Expire > 0 {
			fmt.Fprintf(&ds, "Will-Retry-Until: %s\r\n", env.Received.Add(s.Expire).Format(time.RFC1123Z))
		}
	}
	var dh message.Header
	dh.SetContentType("message/delivery-status", nil)
	dh.Set("Content-Description", "Delivery report")
	if err := writePart(mw, dh, ds.String()); err != nil {
		return err
	}

	headers, err := headerSection(m.Body())
	if err != nil {
		return err
	}
	var oh message.Header
	oh.SetContentType("text/rfc822-headers", nil)
	oh.Set("Content-Description", "Headers of the undelivered message")
	if err := writePart(mw, oh, headers); err != nil {
		return err
	}
	return mw.Close()
}

func writePart(mw *message.Writer, h message.Header, body string) error {
	pw, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(pw, body); err != nil {
		return err
	}
	return pw.Close()
}

// headerSection returns the header section of a message (up to the empty
// line), bounded by maxDSNHeaders.
func headerSection(r io.Reader) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, maxDSNHeaders))
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		if line == "\r\n" || line == "\n" {
			break
		}
		b.WriteString(line)
		if err == io.EOF {
			if line != "" && !strings.HasSuffix(line, "\n") {
				b.WriteString("\r\n")
			}
			break
		}
		if err != nil {
			return "", fmt.Errorf("reading original headers: %w", err)
		}
	}
	return b.String(), nil
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r", " ")
	return strings.ReplaceAll(s, "\n", " ")
}
