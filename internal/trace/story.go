// Package trace reconstructs what happened to a message, for the operator
// and for whoever the operator hands it to (seed 000: tracing a sender
// needs Received headers and the first server's logs).
//
// Story reads kanmon's own JSON log (docs/logging.md) and gathers every
// line of one connection, queue id or Message-ID: the connection (address,
// reverse name, TLS), authentication, each policy decision with its rule,
// queueing, every delivery attempt and the final result, in time order.
//
// Received walks the Received: chain of a message, such as the copy that
// comes with an abuse complaint, marks the hops our servers added, names
// the first hop from outside our boundary (the likely true origin) and
// lists inconsistencies that suggest forged headers.
//
// SECURITY: both inputs are untrusted. A log line holds what clients sent
// (commands, addresses, HELO names) and a complaint's copy is written in
// part by the spammer, so every line and header is read with a size limit,
// malformed input is skipped and counted rather than trusted, and control
// characters are escaped before anything is printed to a terminal. Only
// Received headers written by our own servers, above the point where the
// message entered them, are evidence; everything below is a claim. Story
// prints what the log holds: the log never contains passwords (AUTH
// payloads are redacted when logged), but it does contain addresses and
// client IPs, so its output is personal data to be handled accordingly.
package trace

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// maxLogLine bounds one log line; longer lines are skipped and counted.
const maxLogLine = 1 << 20

// ErrNotFound is returned by Story when no log line mentions the id.
var ErrNotFound = errors.New("trace: no log line mentions this id")

// Event is one log line of a story.
type Event struct {
	// Line is the line number in the log (1-based).
	Line int
	// Time is the line's "time" (zero if it had none).
	Time time.Time
	// Level and Msg are the line's "level" and "msg".
	Level, Msg string
	// Conn and QueueID are the line's ids ("" when absent).
	Conn, QueueID string
	// Attrs holds every other key. Numbers are json.Number.
	Attrs map[string]any
}

// Attr returns the attribute key as a string ("" if absent).
func (e *Event) Attr(key string) string {
	v, ok := e.Attrs[key]
	if !ok || v == nil {
		return ""
	}
	switch x := v.(type) {
	case string:
		return x
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			parts[i] = fmt.Sprint(p)
		}
		return strings.Join(parts, ", ")
	default:
		return fmt.Sprint(x)
	}
}

// ConnInfo summarises one connection of the story.
type ConnInfo struct {
	// ID is the connection id; Listener the listener it came in on.
	ID, Listener string
	// Remote is the client's ip:port and PTR its reverse name.
	Remote, PTR string
	// TLS is the negotiated version and cipher ("" without TLS).
	TLS string
	// User is the account that authenticated ("" if none).
	User string
	// Start and End are the times of the connect and disconnect lines.
	Start, End time.Time
}

// RcptResult is the outcome for one recipient of a queued message.
type RcptResult struct {
	// Rcpt is the recipient address.
	Rcpt string
	// Result is the last delivery result: delivered, deferred, failed, or
	// "" when no attempt was logged; a queue operation (removed, expired,
	// bounced...) after the last attempt overrides it.
	Result string
	// Detail is the last attempt's reply or error.
	Detail string
	// Attempts counts delivery lines for this recipient.
	Attempts int
	// Verified is how a relay-domain recipient was verified at RCPT
	// (its rcpt.verify line), e.g. "probe: valid, from the cache".
	Verified string
}

// MessageInfo summarises one queued message of the story.
type MessageInfo struct {
	// QueueID and MessageID identify the message.
	QueueID, MessageID string
	// From is the envelope sender; Conn the connection that submitted it.
	From, Conn string
	// Rcpts are the recipients with their outcome.
	Rcpts []RcptResult
}

// Narrative is everything kanmon's log says about one connection or
// message: what Story returns. (The type cannot share the function's name.)
type Narrative struct {
	// ID is the id asked for.
	ID string
	// Conns, QueueIDs and MessageIDs are the ids the story covers.
	Conns, QueueIDs, MessageIDs []string
	// Events are the matching lines in time order (log order for equal
	// times).
	Events []Event
	// Connections summarises each connection of the story.
	Connections []ConnInfo
	// Messages summarises each queued message of the story.
	Messages []MessageInfo
	// Skipped counts log lines that were not JSON objects or were too long.
	Skipped int
}

// record is what the first pass keeps of a line.
type record struct {
	conn      string
	queueIDs  []string // queue_id first, then other *_queue_id keys
	messageID string
}

// Story reads a kanmon JSON log from r and returns the story of id: a
// connection id, a queue id, or a Message-ID (with or without <>). A
// connection brings in every queue id it produced and all their lines; a
// queue id or Message-ID brings in the connection that submitted it. When
// r is seekable (a file) the log is read twice and only the story is held
// in memory; otherwise the lines that carry ids are buffered.
func Story(r io.Reader, id string) (*Narrative, error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return nil, errors.New("trace: empty id")
	}
	st := &Narrative{ID: id}
	if rs, ok := r.(io.ReadSeeker); ok {
		if start, err := rs.Seek(0, io.SeekCurrent); err == nil {
			g := newGraph()
			if err := scanLog(rs, func(_ int, m map[string]any, _ []byte) { g.add(recordOf(m)) }, &st.Skipped); err != nil {
				return nil, err
			}
			if _, err := rs.Seek(start, io.SeekStart); err != nil {
				return nil, fmt.Errorf("trace: rewinding the log: %w", err)
			}
			if !g.resolve(st) {
				return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
			}
			var skipped int
			err := scanLog(rs, func(n int, m map[string]any, _ []byte) {
				if st.wants(recordOf(m)) {
					st.Events = append(st.Events, eventOf(n, m))
				}
			}, &skipped)
			if err != nil {
				return nil, err
			}
			st.finish()
			return st, nil
		}
	}
	g := newGraph()
	var kept []Event
	err := scanLog(r, func(n int, m map[string]any, _ []byte) {
		rec := recordOf(m)
		if rec.conn == "" && len(rec.queueIDs) == 0 && rec.messageID == "" {
			return
		}
		g.add(rec)
		kept = append(kept, eventOf(n, m))
	}, &st.Skipped)
	if err != nil {
		return nil, err
	}
	if !g.resolve(st) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	for _, e := range kept {
		if st.wants(recordOfEvent(&e)) {
			st.Events = append(st.Events, e)
		}
	}
	st.finish()
	return st, nil
}

// scanLog calls fn for every JSON object line of r.
func scanLog(r io.Reader, fn func(line int, m map[string]any, raw []byte), skipped *int) error {
	br := bufio.NewReaderSize(r, 64<<10)
	n := 0
	for {
		line, tooLong, err := readLogLine(br)
		if len(line) > 0 || tooLong {
			n++
			if tooLong {
				*skipped++
			} else if m := parseObject(line); m != nil {
				fn(n, m, line)
			} else if len(bytes.TrimSpace(line)) > 0 {
				*skipped++
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("trace: reading the log: %w", err)
		}
	}
}

// readLogLine returns the next line without its newline; a line longer
// than maxLogLine is consumed and reported as tooLong.
func readLogLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > maxLogLine {
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(line, "\r\n"), tooLong, err
	}
}

func parseObject(line []byte) map[string]any {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil
	}
	return m
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func recordOf(m map[string]any) record {
	rec := record{conn: str(m, "conn"), messageID: normMessageID(str(m, "message_id"))}
	if q := str(m, "queue_id"); q != "" {
		rec.queueIDs = append(rec.queueIDs, q)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k != "queue_id" && strings.HasSuffix(k, "_queue_id") {
			if q := str(m, k); q != "" {
				rec.queueIDs = append(rec.queueIDs, q)
			}
		}
	}
	return rec
}

func recordOfEvent(e *Event) record {
	m := map[string]any{"conn": e.Conn, "queue_id": e.QueueID}
	for k, v := range e.Attrs {
		m[k] = v
	}
	return recordOf(m)
}

// normMessageID strips spaces and angle brackets.
func normMessageID(s string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "<"), ">")
}

func eventOf(n int, m map[string]any) Event {
	e := Event{Line: n, Level: str(m, "level"), Msg: str(m, "msg"), Conn: str(m, "conn"), QueueID: str(m, "queue_id"), Attrs: map[string]any{}}
	if t, err := time.Parse(time.RFC3339Nano, str(m, "time")); err == nil {
		e.Time = t
	}
	for k, v := range m {
		switch k {
		case "time", "level", "msg", "conn", "queue_id":
		default:
			e.Attrs[k] = v
		}
	}
	return e
}

// graph links the ids seen in the log.
type graph struct {
	conns    map[string]bool
	queues   map[string]bool
	connToQ  map[string][]string
	qToConn  map[string][]string
	msgToQ   map[string][]string
	qToMsg   map[string][]string
	qToLinks map[string][]string // queue ids named together on one line (a DSN and its message)
}

func newGraph() *graph {
	return &graph{
		conns: map[string]bool{}, queues: map[string]bool{},
		connToQ: map[string][]string{}, qToConn: map[string][]string{},
		msgToQ: map[string][]string{}, qToMsg: map[string][]string{}, qToLinks: map[string][]string{},
	}
}

func addUnique(m map[string][]string, k, v string) {
	if !slices.Contains(m[k], v) {
		m[k] = append(m[k], v)
	}
}

func (g *graph) add(r record) {
	if r.conn != "" {
		g.conns[r.conn] = true
	}
	for i, q := range r.queueIDs {
		g.queues[q] = true
		if r.conn != "" && i == 0 {
			addUnique(g.connToQ, r.conn, q)
			addUnique(g.qToConn, q, r.conn)
		}
		if r.messageID != "" && i == 0 {
			addUnique(g.msgToQ, strings.ToLower(r.messageID), q)
			addUnique(g.qToMsg, q, r.messageID)
		}
		for _, other := range r.queueIDs {
			if other != q {
				addUnique(g.qToLinks, q, other)
			}
		}
	}
}

// resolve fills the story's id sets; false when id is unknown.
func (g *graph) resolve(st *Narrative) bool {
	id := st.ID
	conns, queues := map[string]bool{}, map[string]bool{}
	switch {
	case g.conns[id]:
		conns[id] = true
		for _, q := range g.connToQ[id] {
			queues[q] = true
		}
	case g.queues[id]:
		queues[id] = true
	default:
		qs := g.msgToQ[strings.ToLower(normMessageID(id))]
		if len(qs) == 0 {
			return false
		}
		for _, q := range qs {
			queues[q] = true
		}
	}
	// Linked queue ids (a DSN for the message), to a fixed point.
	for changed := true; changed; {
		changed = false
		for q := range queues {
			for _, l := range g.qToLinks[q] {
				if !queues[l] {
					queues[l], changed = true, true
				}
			}
		}
	}
	// A message leads to the connection that submitted it (not to that
	// connection's other messages).
	for q := range queues {
		for _, c := range g.qToConn[q] {
			conns[c] = true
		}
	}
	msgs := map[string]bool{}
	for q := range queues {
		for _, m := range g.qToMsg[q] {
			msgs[m] = true
		}
	}
	st.Conns, st.QueueIDs, st.MessageIDs = sortedKeys(conns), sortedKeys(queues), sortedKeys(msgs)
	return true
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// wants reports whether a line belongs to the story.
func (st *Narrative) wants(r record) bool {
	if r.conn != "" && slices.Contains(st.Conns, r.conn) {
		// A line of our connection about another message (its queued
		// line) stays: it is part of what the connection did.
		return true
	}
	for _, q := range r.queueIDs {
		if slices.Contains(st.QueueIDs, q) {
			return true
		}
	}
	return false
}

// finish sorts the events and builds the summaries.
func (st *Narrative) finish() {
	slices.SortStableFunc(st.Events, func(a, b Event) int { return a.Time.Compare(b.Time) })
	conns := map[string]*ConnInfo{}
	msgs := map[string]*MessageInfo{}
	conn := func(id string) *ConnInfo {
		if conns[id] == nil {
			conns[id] = &ConnInfo{ID: id}
		}
		return conns[id]
	}
	msg := func(id string) *MessageInfo {
		if msgs[id] == nil {
			msgs[id] = &MessageInfo{QueueID: id}
		}
		return msgs[id]
	}
	rcpt := func(m *MessageInfo, addr string) *RcptResult {
		for i := range m.Rcpts {
			if m.Rcpts[i].Rcpt == addr {
				return &m.Rcpts[i]
			}
		}
		m.Rcpts = append(m.Rcpts, RcptResult{Rcpt: addr})
		return &m.Rcpts[len(m.Rcpts)-1]
	}
	verified := map[string]string{} // conn + " " + addr -> how
	for i := range st.Events {
		e := &st.Events[i]
		if e.Msg == "rcpt.verify" {
			how := e.Attr("method") + ": " + e.Attr("result")
			if e.Attr("source") == "cache" {
				how += ", from the cache"
			}
			verified[e.Conn+" "+e.Attr("addr")] = how
		}
		if e.Conn != "" && slices.Contains(st.Conns, e.Conn) {
			c := conn(e.Conn)
			if v := e.Attr("listener"); v != "" {
				c.Listener = v
			}
			switch e.Msg {
			case "connect":
				c.Start, c.Remote, c.PTR = e.Time, e.Attr("remote"), e.Attr("ptr")
			case "tls":
				if v := e.Attr("tls"); v != "" {
					c.TLS = v
				}
			case "auth":
				if e.Attr("ok") == "true" {
					c.User = e.Attr("user")
				}
			case "disconnect":
				c.End = e.Time
			}
		}
		if e.QueueID == "" || !slices.Contains(st.QueueIDs, e.QueueID) {
			continue
		}
		m := msg(e.QueueID)
		switch e.Msg {
		case "queued":
			m.From, m.MessageID, m.Conn = e.Attr("from"), e.Attr("message_id"), e.Conn
			if rs, ok := e.Attrs["rcpts"].([]any); ok {
				for _, r := range rs {
					rcpt(m, fmt.Sprint(r))
				}
			} else if r := e.Attr("rcpts"); r != "" {
				rcpt(m, r)
			}
		case "delivery":
			r := rcpt(m, e.Attr("rcpt"))
			r.Attempts++
			r.Result = e.Attr("result")
			r.Detail = firstNonEmpty(e.Attr("reply"), e.Attr("error"), e.Attr("err"))
		case "queue":
			if op := e.Attr("op"); op != "" && op != "held" && op != "released" {
				for i := range m.Rcpts {
					if m.Rcpts[i].Result != "delivered" && m.Rcpts[i].Result != "failed" {
						m.Rcpts[i].Result = op
					}
				}
			}
		}
	}
	for _, id := range st.Conns {
		if c, ok := conns[id]; ok {
			st.Connections = append(st.Connections, *c)
		}
	}
	for _, id := range st.QueueIDs {
		if m, ok := msgs[id]; ok {
			for i := range m.Rcpts {
				m.Rcpts[i].Verified = verified[m.Conn+" "+m.Rcpts[i].Rcpt]
			}
			st.Messages = append(st.Messages, *m)
		}
	}
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// WriteText prints the story for a person: the ids, a time-ordered
// narrative and a summary of each connection and message.
func (st *Narrative) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Story of %s\n", clean(st.ID))
	if len(st.Conns) > 0 {
		fmt.Fprintf(&b, "  connections: %s\n", clean(strings.Join(st.Conns, ", ")))
	}
	if len(st.QueueIDs) > 0 {
		fmt.Fprintf(&b, "  queue ids:   %s\n", clean(strings.Join(st.QueueIDs, ", ")))
	}
	if len(st.MessageIDs) > 0 {
		fmt.Fprintf(&b, "  message ids: <%s>\n", clean(strings.Join(st.MessageIDs, ">, <")))
	}
	fmt.Fprintf(&b, "  %d log lines", len(st.Events))
	if st.Skipped > 0 {
		fmt.Fprintf(&b, " (%d unreadable lines in the log were skipped)", st.Skipped)
	}
	b.WriteString("\n\n")
	for i := range st.Events {
		e := &st.Events[i]
		ts := "(no time)"
		if !e.Time.IsZero() {
			ts = e.Time.UTC().Format("2006-01-02 15:04:05.000")
		}
		who := e.Conn
		if e.QueueID != "" {
			who = e.QueueID
		}
		fmt.Fprintf(&b, "%s  %-16s %s\n", ts, clean(who), clean(describe(e)))
	}
	if len(st.Connections) > 0 || len(st.Messages) > 0 {
		b.WriteString("\nSummary\n")
	}
	for _, c := range st.Connections {
		fmt.Fprintf(&b, "  connection %s: from %s", clean(c.ID), clean(orDash(c.Remote)))
		if c.PTR != "" {
			fmt.Fprintf(&b, " (%s)", clean(c.PTR))
		}
		if c.Listener != "" {
			fmt.Fprintf(&b, " on %s", clean(c.Listener))
		}
		if c.TLS != "" {
			fmt.Fprintf(&b, ", TLS %s", clean(c.TLS))
		} else {
			b.WriteString(", no TLS")
		}
		if c.User != "" {
			fmt.Fprintf(&b, ", authenticated as %s", clean(c.User))
		} else {
			b.WriteString(", not authenticated")
		}
		if !c.Start.IsZero() && !c.End.IsZero() {
			fmt.Fprintf(&b, ", %s", c.End.Sub(c.Start).Round(time.Millisecond))
		}
		b.WriteString("\n")
	}
	for _, m := range st.Messages {
		fmt.Fprintf(&b, "  message %s: from <%s>", clean(m.QueueID), clean(m.From))
		if m.MessageID != "" {
			fmt.Fprintf(&b, ", Message-ID %s", clean(m.MessageID))
		}
		if m.Conn != "" {
			fmt.Fprintf(&b, ", submitted on %s", clean(m.Conn))
		}
		b.WriteString("\n")
		for _, r := range m.Rcpts {
			res := r.Result
			if res == "" {
				res = "no delivery attempt logged"
			}
			fmt.Fprintf(&b, "    %s: %s after %d attempt(s)", clean(r.Rcpt), clean(res), r.Attempts)
			if r.Verified != "" {
				fmt.Fprintf(&b, ", verified at RCPT by %s", clean(r.Verified))
			}
			if r.Detail != "" {
				fmt.Fprintf(&b, " (last: %s)", clean(r.Detail))
			}
			b.WriteString("\n")
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("trace: writing story: %w", err)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// describe renders one event as a sentence.
func describe(e *Event) string {
	a := e.Attr
	var s string
	switch e.Msg {
	case "connect":
		s = "connect from " + a("remote")
		if p := a("ptr"); p != "" {
			s += " (" + p + ")"
		}
		if l := a("listener"); l != "" {
			s += " on " + l
		}
	case "connect.refused":
		s = "connection from " + a("remote") + " refused by rule " + a("rule") + joinCode(a("code"), a("enhanced"))
	case "tls":
		if a("err") != "" {
			s = "TLS handshake failed: " + a("err")
		} else {
			s = "TLS established: " + a("tls")
		}
	case "cmd":
		s = "C: " + a("line")
	case "reply":
		s = "S: " + a("line")
	case "auth":
		if a("ok") == "true" {
			s = "authenticated as " + a("user")
			if m := a("mech"); m != "" {
				s += " (" + m + ")"
			}
		} else {
			s = "authentication failed for " + a("user") + " by rule " + a("rule")
		}
	case "decision":
		s = "decision " + a("rule") + joinCode(a("code"), a("enhanced"))
		if ad := a("addr"); ad != "" {
			s += " for <" + ad + ">"
		}
		if r := a("reason"); r != "" {
			s += ": " + r
		}
	case "reject":
		s = "rejected by rule " + a("rule") + joinCode(a("code"), a("enhanced"))
		if r := a("reason"); r != "" {
			s += ": " + r
		}
	case "rcpt.verify":
		s = "verified <" + a("addr") + "> by " + a("method") + ": " + a("result") + joinCode(a("code"), a("enhanced"))
		if mx := a("mx"); mx != "" {
			s += " via " + mx
		}
		if a("source") == "cache" {
			s += ", from the cache"
		}
		if r := a("reply"); r != "" && a("result") != "valid" {
			s += "; the partner said: " + r
		}
		if r := a("reason"); r != "" {
			s += " (" + r + ")"
		}
	case "queued":
		s = fmt.Sprintf("queued from <%s> to %s, %s bytes", a("from"), a("rcpts"), orDash(a("size")))
		if m := a("message_id"); m != "" {
			s += ", Message-ID " + m
		}
	case "delivery":
		s = "delivery to <" + a("rcpt") + ">"
		if mx := a("mx"); mx != "" {
			s += " via " + mx
		}
		s += ": " + a("result")
		if d := firstNonEmpty(a("reply"), a("error"), a("err")); d != "" {
			s += " (" + d + ")"
		}
	case "queue":
		s = "queue: " + a("op")
		if r := a("reason"); r != "" {
			s += " (" + r + ")"
		}
	case "disconnect":
		s = "disconnect"
		if r := a("reason"); r != "" {
			s += " (" + r + ")"
		}
		if d := a("duration"); d != "" {
			s += " after " + d
		}
	default:
		s = e.Msg
	}
	// Everything not shown above, so nothing is hidden from the reader.
	shown := map[string]bool{"listener": true}
	for _, k := range shownKeys[e.Msg] {
		shown[k] = true
	}
	var extra []string
	keys := make([]string, 0, len(e.Attrs))
	for k := range e.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !shown[k] {
			extra = append(extra, k+"="+a(k))
		}
	}
	if len(extra) > 0 {
		s += " [" + strings.Join(extra, " ") + "]"
	}
	if e.Level != "" && e.Level != "INFO" {
		s = e.Level + " " + s
	}
	return s
}

// shownKeys are the attributes describe already renders, per event.
var shownKeys = map[string][]string{
	"connect":         {"remote", "ptr"},
	"connect.refused": {"remote", "rule", "code", "enhanced"},
	"tls":             {"tls", "err"},
	"cmd":             {"line"},
	"reply":           {"line", "code"},
	"auth":            {"user", "ok", "mech", "rule"},
	"decision":        {"rule", "code", "enhanced", "addr", "reason"},
	"reject":          {"rule", "code", "enhanced", "reason"},
	"queued":          {"from", "rcpts", "size", "message_id"},
	"rcpt.verify":     {"addr", "method", "result", "code", "enhanced", "mx", "source", "reply", "reason"},
	"delivery":        {"rcpt", "mx", "result", "reply", "error", "err"},
	"queue":           {"op", "reason"},
	"disconnect":      {"reason", "duration"},
}

func joinCode(code, enh string) string {
	s := strings.TrimSpace(code + " " + enh)
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// clean escapes control characters and invalid UTF-8 so that log content
// written by clients cannot drive the reader's terminal.
func clean(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1, r < 0x20 && r != '\t', r == 0x7f, r >= 0x80 && r < 0xa0:
			fmt.Fprintf(&b, `\x%02x`, s[i])
			size = 1
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
