// Package dsn holds every rule about delivery status notifications (RFC
// 3464) in one place: when a report may be sent at all (BounceAllowed,
// law 3: only for mail our own users sent; never to <>, never about a
// DSN, never for mail from outside), what happens instead (one `queue`
// log line with op=dropped), and how "failed" and "delayed" reports are
// built and committed to the spool as new messages from the null sender
// (origin local, so they go in the bounce lane).
//
// The scheduler calls Reporter.Failed and Reporter.Delayed after each
// attempt and schedules the DSN envelopes they return.
//
// SECURITY: a DSN goes to a person. It carries the remote server's reply
// or a plain sentence of ours, never a Go error or a file path (those
// stay in the log); the original message is represented by its header
// section only, bounded by maxDSNHeaders.
package dsn

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
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

// Rcpt is one recipient reported in a DSN.
type Rcpt struct {
	Addr   string
	Status string // enhanced status, e.g. "5.1.1"
	Reply  string // the remote reply or our reason
	MX     string
	Last   time.Time
}

// Reporter reports recipients that failed, and messages that wait long.
type Reporter struct {
	// Spool receives the DSNs.
	Spool *queue.Spool
	// Log gets one `queue` line per report or drop.
	Log *slog.Logger
	// Hostname names this server in DSNs.
	Hostname string
	// LocalAccount resolves a DSN's recipient to a local account, when
	// the sender is one of ours (nil: every DSN goes out by SMTP).
	LocalAccount func(addr string) (string, bool)
	// Expire is the queue's lifetime, shown as Will-Retry-Until in a
	// "delayed" report (0: not shown).
	Expire time.Duration
	// DelayWarning sends our own users one "delayed" DSN once a message
	// has waited this long (0: never).
	DelayWarning time.Duration
}

// Failed handles m's recipients that failed and were not reported yet: a
// DSN for our own users' mail, otherwise a log line saying no bounce is
// sent. It marks them reported in m.State and says whether the state
// changed; dsn is the queued DSN's envelope (nil when none), for the
// scheduler to schedule. When the DSN cannot be queued (queue full), the
// recipients stay unreported and the caller tries again later.
func (r *Reporter) Failed(m *queue.Message) (changed bool, dsn *queue.Envelope) {
	env := &m.Envelope
	var failed []int
	for i, st := range m.State.Rcpts {
		if st.Failed && !st.Reported {
			failed = append(failed, i)
		}
	}
	if len(failed) == 0 {
		return false, nil
	}
	addrs := make([]string, len(failed))
	for k, i := range failed {
		addrs[k] = env.Recipients[i].Addr
	}
	if !BounceAllowed(env) {
		for _, i := range failed {
			m.State.Rcpts[i].Reported = true
		}
		r.Log.Warn("queue", "queue_id", env.ID, "conn", env.ConnID, "op", "dropped", "from", env.From,
			"rcpts", strings.Join(addrs, ","), "origin", string(env.Origin), "bounce", false, "reason", dropReason(env))
		return true, nil
	}
	rcpts := make([]Rcpt, len(failed))
	for k, i := range failed {
		st := m.State.Rcpts[i]
		rcpts[k] = Rcpt{Addr: env.Recipients[i].Addr, Status: StatusOf(st.Last, "5.0.0"), Reply: st.Last, Last: time.Now()}
	}
	dsn, err := r.queue(m, "failed", rcpts)
	if err != nil {
		r.Log.Error("queue", "queue_id", env.ID, "op", "bounce", "err", err.Error())
		return false, nil
	}
	for _, i := range failed {
		m.State.Rcpts[i].Reported = true
	}
	r.Log.Info("queue", "queue_id", env.ID, "conn", env.ConnID, "op", "bounced", "to", env.From,
		"rcpts", strings.Join(addrs, ","), "dsn_id", dsn.ID)
	return true, dsn
}

// dropReason says why no DSN is sent about env.
func dropReason(env *queue.Envelope) string {
	switch {
	case env.Origin == queue.OriginLocal:
		return "undeliverable DSN: never a DSN about a DSN"
	case env.From == "":
		return "null sender: never a DSN to <>"
	}
	return "mail from outside (origin " + string(env.Origin) + ") is never bounced (law 3: reject, don't bounce)"
}

// Delayed sends one "delayed" DSN for our own users' mail that has waited
// DelayWarning, and records it in m.State. It says whether the state
// changed, and returns the DSN's envelope when one was queued.
func (r *Reporter) Delayed(m *queue.Message, now time.Time) (changed bool, dsn *queue.Envelope) {
	env := &m.Envelope
	if r.DelayWarning <= 0 || m.State.Warned || now.Sub(env.Received) < r.DelayWarning || !BounceAllowed(env) {
		return false, nil
	}
	var rcpts []Rcpt
	for i, st := range m.State.Rcpts {
		if !st.Done && !st.Failed && st.Attempts > 0 {
			rcpts = append(rcpts, Rcpt{Addr: env.Recipients[i].Addr, Status: StatusOf(st.Last, "4.0.0"), Reply: st.Last, Last: now})
		}
	}
	if len(rcpts) == 0 {
		return false, nil
	}
	dsn, err := r.queue(m, "delayed", rcpts)
	if err != nil {
		r.Log.Error("queue", "queue_id", env.ID, "op", "delay_warning", "err", err.Error())
		return false, nil
	}
	m.State.Warned = true
	r.Log.Info("queue", "queue_id", env.ID, "conn", env.ConnID, "op", "delay_warning", "to", env.From, "dsn_id", dsn.ID)
	return true, dsn
}

// StatusOf finds the enhanced status code in a recorded reply ("550 5.1.1
// ...", "4.4.7 expired..."), or returns def.
func StatusOf(reply, def string) string {
	for _, f := range strings.Fields(reply) {
		if len(f) >= 5 && (f[0] == '2' || f[0] == '4' || f[0] == '5') && f[1] == '.' && strings.Count(f, ".") == 2 {
			return f
		}
	}
	if len(reply) >= 3 && (reply[0] == '4' || reply[0] == '5') {
		return reply[:1] + ".0.0"
	}
	return def
}

// queue builds an RFC 3464 report about m for rcpts (action "failed" or
// "delayed") and commits it to the spool as a new message from the null
// sender with Origin local, to m's envelope sender. It returns the new
// message's envelope.
func (r *Reporter) queue(m *queue.Message, action string, rcpts []Rcpt) (*queue.Envelope, error) {
	env := &m.Envelope
	if !BounceAllowed(env) {
		return nil, fmt.Errorf("dsn: report on %s not allowed (origin %s, sender %q)", env.ID, env.Origin, env.From)
	}
	rcpt := queue.Recipient{Addr: env.From}
	if r.LocalAccount != nil {
		if acct, ok := r.LocalAccount(env.From); ok {
			rcpt.Account = acct
		}
	}
	var buf bytes.Buffer
	if err := r.write(&buf, m, action, rcpts); err != nil {
		return nil, fmt.Errorf("dsn: build report on %s: %w", env.ID, err)
	}
	if err := r.Spool.CheckSpace(int64(buf.Len())); err != nil {
		return nil, fmt.Errorf("dsn: queue report on %s: %w", env.ID, err)
	}
	w, err := r.Spool.Create(queue.Envelope{
		From: "", Recipients: []queue.Recipient{rcpt}, Origin: queue.OriginLocal, Body8Bit: true,
	})
	if err != nil {
		return nil, fmt.Errorf("dsn: queue report on %s: %w", env.ID, err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		w.Abort()
		return nil, fmt.Errorf("dsn: queue report on %s: %w", env.ID, err)
	}
	if err := w.Commit(); err != nil {
		return nil, fmt.Errorf("dsn: queue report on %s: %w", env.ID, err)
	}
	return w.Envelope(), nil
}

func (r *Reporter) write(out io.Writer, m *queue.Message, action string, rcpts []Rcpt) error {
	env := &m.Envelope
	host := r.Hostname
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
	for _, rc := range rcpts {
		fmt.Fprintf(&text, "<%s>: %s\r\n", rc.Addr, oneLine(rc.Reply))
	}
	var th message.Header
	th.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	th.Set("Content-Description", "Notification")
	if err := writePart(mw, th, text.String()); err != nil {
		return err
	}

	ds := r.statusFields(env, action, host, rcpts)
	var dh message.Header
	dh.SetContentType("message/delivery-status", nil)
	dh.Set("Content-Description", "Delivery report")
	if err := writePart(mw, dh, ds.String()); err != nil {
		return err
	}

	headers, err := HeaderSection(m.Body())
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

// statusFields is the machine-readable part of a report (RFC 3464
// section 2): per-message fields, then one block per recipient.
func (r *Reporter) statusFields(env *queue.Envelope, action, host string, rcpts []Rcpt) *strings.Builder {
	ds := &strings.Builder{}
	fmt.Fprintf(ds, "Reporting-MTA: dns; %s\r\n", host)
	fmt.Fprintf(ds, "X-Kanmon-Queue-ID: %s\r\n", env.ID)
	fmt.Fprintf(ds, "Arrival-Date: %s\r\n", env.Received.Format(time.RFC1123Z))
	for _, rc := range rcpts {
		ds.WriteString("\r\n")
		fmt.Fprintf(ds, "Final-Recipient: rfc822; %s\r\n", rc.Addr)
		fmt.Fprintf(ds, "Action: %s\r\n", action)
		fmt.Fprintf(ds, "Status: %s\r\n", rc.Status)
		if rc.MX != "" {
			fmt.Fprintf(ds, "Remote-MTA: dns; %s\r\n", rc.MX)
		}
		if rc.Reply != "" {
			fmt.Fprintf(ds, "Diagnostic-Code: smtp; %s\r\n", oneLine(rc.Reply))
		}
		if !rc.Last.IsZero() {
			fmt.Fprintf(ds, "Last-Attempt-Date: %s\r\n", rc.Last.Format(time.RFC1123Z))
		}
		if action == "delayed" && r.Expire > 0 {
			fmt.Fprintf(ds, "Will-Retry-Until: %s\r\n", env.Received.Add(r.Expire).Format(time.RFC1123Z))
		}
	}
	return ds
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

// HeaderSection returns the header section of a message (up to the empty
// line), bounded by maxDSNHeaders.
func HeaderSection(r io.Reader) (string, error) {
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
