package trace

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-message"
)

// Limits on the message Received reads.
const (
	maxMessage      = 50 << 20 // the whole message
	maxHeaderFields = 2000
	maxHeaderBytes  = 1 << 20
	// DateSkew is how far a hop's date may lie after the date of the hop
	// above it (clocks differ) before it counts as going backwards.
	DateSkew = 5 * time.Minute
)

// Hop is one Received: header, index 0 being the topmost (the last hop
// the message made).
type Hop struct {
	// Index is the position from the top, 0-based.
	Index int
	// Raw is the header's value, unfolded.
	Raw string
	// From is the name the sending host gave (HELO/EHLO).
	From string
	// FromRDNS is the sending host's reverse name as the receiver found
	// it ("" when unknown).
	FromRDNS string
	// FromIP is the sending host's address as the receiver saw it.
	FromIP netip.Addr
	// By is the receiving host; With the protocol; ID the receiver's
	// queue id; For the recipient.
	By, With, ID, For string
	// Date is the time the receiver wrote (zero when missing or
	// unparsable).
	Date time.Time
	// Ours: By is one of our servers.
	Ours bool
	// FromOurs: the sending host is one of ours (by its recorded reverse
	// name or address; by its HELO name only when neither is recorded, or
	// by a loopback address on a hop of ours).
	FromOurs bool
}

// SendingHost returns the best name for the sending host: the reverse
// name, else the address, else the HELO name.
func (h *Hop) SendingHost() string {
	switch {
	case h.FromRDNS != "":
		return h.FromRDNS
	case h.FromIP.IsValid():
		return h.FromIP.String()
	}
	return h.From
}

// Problem kinds of an Inconsistency.
const (
	KindDateBackwards  = "date-backwards"   // a hop dated after the hop above it
	KindByFromMismatch = "by-from-mismatch" // a hop's by is not the next hop's from
	KindForgedOurs     = "forged-ours"      // claims our server below the trusted boundary
	KindBrokenChain    = "broken-chain"     // our hop names one of ours as sender, but the hop below is not ours
	KindUnparsable     = "unparsable"       // no by, no date, or no structure at all
)

// Inconsistency is something in the chain that suggests forgery or
// tampering.
type Inconsistency struct {
	// Hop is the index of the hop concerned.
	Hop int
	// Kind is one of the Kind constants.
	Kind string
	// Detail explains it for a person.
	Detail string
}

// Chain is the walked Received: chain of a message.
type Chain struct {
	// Hops are the Received headers, topmost first.
	Hops []Hop
	// Origin is the index of the hop whose sending host is the likely true
	// origin, or -1 when it cannot be told (no hop of ours).
	Origin int
	// OriginReason says how Origin was chosen.
	OriginReason string
	// PassedOurs reports whether a trustworthy hop of ours exists: false
	// means the message did not pass through our servers (their name in
	// it, if any, was forged).
	PassedOurs bool
	// Inconsistencies lists what looks wrong, topmost first.
	Inconsistencies []Inconsistency
	// Inner is true when the chain is that of a message embedded in the
	// one read (an abuse report's message/rfc822 part).
	Inner bool
	// Subject, From and MessageID are from the walked message's header.
	Subject, From, MessageID string
	// Skipped counts header lines that were not "Name: value".
	Skipped int
}

// OriginHop returns the origin hop or nil.
func (c *Chain) OriginHop() *Hop {
	if c.Origin < 0 || c.Origin >= len(c.Hops) {
		return nil
	}
	return &c.Hops[c.Origin]
}

// Has reports whether an inconsistency of kind is recorded for hop.
func (c *Chain) Has(hop int, kind string) bool {
	for _, in := range c.Inconsistencies {
		if in.Hop == hop && in.Kind == kind {
			return true
		}
	}
	return false
}

// Received reads a message from r and walks its Received: chain. ours
// tells whether a host name or address belongs to our servers. When the
// message is a report carrying another message (message/rfc822 or
// text/rfc822-headers, as abuse complaints do), the embedded message's
// chain is walked.
func Received(r io.Reader, ours func(host string) bool) (*Chain, error) {
	if ours == nil {
		ours = func(string) bool { return false }
	}
	data, err := io.ReadAll(io.LimitReader(r, maxMessage+1))
	if err != nil {
		return nil, fmt.Errorf("trace: reading message: %w", err)
	}
	if len(data) > maxMessage {
		return nil, fmt.Errorf("trace: message larger than %d bytes", maxMessage)
	}
	// An mbox "From " separator line is not a header.
	if bytes.HasPrefix(data, []byte("From ")) {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	fields, skipped := readHeader(data)
	c := &Chain{Origin: -1, Skipped: skipped}
	if inner := embeddedMessage(data, fields); inner != nil {
		fields, skipped = readHeader(inner)
		c.Inner, c.Skipped = true, skipped
	}
	if len(fields) == 0 {
		return nil, errors.New("trace: no header found")
	}
	for _, f := range fields {
		switch strings.ToLower(f.name) {
		case "received":
			h := parseReceived(f.value)
			h.Index = len(c.Hops)
			c.Hops = append(c.Hops, h)
		case "subject":
			c.Subject = f.value
		case "from":
			c.From = f.value
		case "message-id":
			c.MessageID = f.value
		}
	}
	c.walk(ours)
	return c, nil
}

type field struct{ name, value string }

// readHeader reads the header section leniently: folded lines are
// unfolded, lines that are not "Name: value" are skipped and counted (a
// complaint's copy is often mangled), and the section is bounded.
func readHeader(data []byte) ([]field, int) {
	var (
		fields  []field
		skipped int
		size    int
	)
	for len(data) > 0 && len(fields) < maxHeaderFields && size < maxHeaderBytes {
		i := bytes.IndexByte(data, '\n')
		var line []byte
		if i < 0 {
			line, data = data, nil
		} else {
			line, data = data[:i], data[i+1:]
		}
		size += len(line) + 1
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break // end of header
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(fields) > 0 {
				fields[len(fields)-1].value += " " + strings.TrimSpace(string(line))
			} else {
				skipped++
			}
			continue
		}
		name, value, ok := strings.Cut(string(line), ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			skipped++
			continue
		}
		fields = append(fields, field{name: name, value: strings.TrimSpace(value)})
	}
	for i := range fields {
		fields[i].value = strings.Join(strings.Fields(fields[i].value), " ")
	}
	return fields, skipped
}

// embeddedMessage returns the first message/rfc822 or text/rfc822-headers
// part of a multipart message, or nil.
func embeddedMessage(data []byte, fields []field) []byte {
	isMultipart := false
	for _, f := range fields {
		if strings.EqualFold(f.name, "Content-Type") {
			if mt, _, err := mime.ParseMediaType(f.value); err == nil && strings.HasPrefix(mt, "multipart/") {
				isMultipart = true
			}
		}
	}
	if !isMultipart {
		return nil
	}
	e, err := message.Read(bytes.NewReader(data))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil
	}
	return findEmbedded(e, 0)
}

func findEmbedded(e *message.Entity, depth int) []byte {
	mr := e.MultipartReader()
	if mr == nil || depth > 3 {
		return nil
	}
	for {
		p, err := mr.NextPart()
		if err != nil {
			if message.IsUnknownCharset(err) || message.IsUnknownEncoding(err) {
				continue
			}
			return nil
		}
		mt, _, _ := p.Header.ContentType()
		switch mt {
		case "message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers":
			b, err := io.ReadAll(io.LimitReader(p.Body, maxMessage))
			if err == nil && len(b) > 0 {
				return b
			}
		default:
			if strings.HasPrefix(mt, "multipart/") {
				if b := findEmbedded(p, depth+1); b != nil {
					return b
				}
			}
		}
	}
}

// parseReceived splits a Received value into its clauses (RFC 5321
// 4.4): from, by, via, with, id, for, then "; date". Comments in
// parentheses after "from" carry the reverse name and address in the
// formats of Postfix and sendmail ("(rdns [ip])"), Exim ("([ip]
// helo=name)") and qmail ("(HELO name) (ip)").
func parseReceived(v string) Hop {
	h := Hop{Raw: v}
	body, date := v, ""
	if i := strings.LastIndexByte(v, ';'); i >= 0 {
		body, date = v[:i], strings.TrimSpace(v[i+1:])
	}
	if date != "" {
		h.Date = parseDate(date)
	}
	var (
		clause   string
		comments []string
	)
	for _, tok := range tokens(body) {
		if strings.HasPrefix(tok, "(") {
			if clause == "from" {
				comments = append(comments, strings.TrimSuffix(strings.TrimPrefix(tok, "("), ")"))
			}
			continue
		}
		switch kw := strings.ToLower(tok); kw {
		case "from", "by", "via", "with", "id", "for":
			clause = kw
			continue
		}
		switch clause {
		case "from":
			if h.From == "" {
				h.From = tok
			}
		case "by":
			if h.By == "" {
				h.By = tok
			}
		case "with":
			if h.With == "" {
				h.With = tok
			}
		case "id":
			if h.ID == "" {
				h.ID = tok
			}
		case "for":
			if h.For == "" {
				h.For = strings.Trim(tok, "<>")
			}
		}
	}
	// The from value may itself be an address literal.
	if ip, ok := literalIP(h.From); ok {
		h.FromIP = ip
	}
	for i, c := range comments {
		words := strings.Fields(c)
		for j, w := range words {
			lw := strings.ToLower(w)
			switch {
			case strings.HasPrefix(lw, "helo="):
				// Exim: the value before the comment is the reverse name.
				if _, literal := literalIP(h.From); h.FromRDNS == "" && h.From != "" && !literal {
					h.FromRDNS = h.From
				}
				h.From = w[5:]
			case lw == "helo" && j+1 < len(words):
				h.From = words[j+1] // qmail: (HELO name)
			default:
				if ip, ok := literalIP(w); ok {
					if !h.FromIP.IsValid() || i == 0 {
						h.FromIP = ip
					}
					if j > 0 && i == 0 && h.FromRDNS == "" {
						if name := strings.ToLower(words[j-1]); name != "unknown" && !strings.HasPrefix(name, "helo") {
							h.FromRDNS = words[j-1]
						}
					}
				}
			}
		}
	}
	return h
}

// tokens splits a Received body into words and parenthesised comments
// (kept whole, nesting respected).
func tokens(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ' ' || c == '\t':
			i++
		case c == '(':
			depth, j := 0, i
			for ; j < len(s); j++ {
				if s[j] == '\\' {
					j++
					continue
				}
				if s[j] == '(' {
					depth++
				} else if s[j] == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			if j >= len(s) {
				j = len(s) - 1
			}
			out = append(out, s[i:j+1])
			i = j + 1
		default:
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '\t' && s[j] != '(' {
				j++
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out
}

// literalIP reads "[192.0.2.1]", "[IPv6:2001:db8::1]", "192.0.2.1" or a
// bare IPv6 address.
func literalIP(s string) (netip.Addr, bool) {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	s = strings.TrimSuffix(s, ",")
	if len(s) > 5 && strings.EqualFold(s[:5], "IPv6:") {
		s = s[5:]
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// parseDate reads an RFC 5322 date, tolerating a trailing comment and a
// few common deviations.
func parseDate(s string) time.Time {
	if i := strings.IndexByte(s, '('); i > 0 {
		s = strings.TrimSpace(s[:i])
	}
	if t, err := mail.ParseDate(s); err == nil {
		return t
	}
	for _, layout := range []string{time.RFC1123Z, time.RFC1123, "Mon, 2 Jan 2006 15:04:05 -0700", "2 Jan 2006 15:04:05 -0700", time.ANSIC, time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// sameHost compares host names loosely: case, trailing dot, and a short
// name against its fully qualified form.
func sameHost(a, b string) bool {
	a = strings.ToLower(strings.TrimSuffix(strings.Trim(a, "[]"), "."))
	b = strings.ToLower(strings.TrimSuffix(strings.Trim(b, "[]"), "."))
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	sa, _, _ := strings.Cut(a, ".")
	sb, _, _ := strings.Cut(b, ".")
	return (sa == b || sb == a) || (sa == sb && (!strings.Contains(a, ".") || !strings.Contains(b, ".")))
}

// walk marks our hops, finds the origin and the inconsistencies.
func (c *Chain) walk(ours func(string) bool) {
	for i := range c.Hops {
		h := &c.Hops[i]
		h.Ours = h.By != "" && ours(h.By)
		switch {
		case h.FromRDNS != "" && ours(h.FromRDNS):
			h.FromOurs = true
		case h.FromIP.IsValid() && (ours(h.FromIP.String()) || h.Ours && h.FromIP.IsLoopback()):
			h.FromOurs = true
		case h.FromRDNS == "" && !h.FromIP.IsValid() && h.From != "" && ours(h.From):
			h.FromOurs = true
		}
		if h.By == "" {
			c.add(i, KindUnparsable, "no \"by\" clause: not a Received header a server would write")
		}
		if h.Date.IsZero() {
			c.add(i, KindUnparsable, "no readable date after \";\"")
		}
	}

	// Hops without a "by" clause say nothing about who wrote them: the
	// walk steps over them (they are reported as unparsable above).
	var idx []int
	for i := range c.Hops {
		if c.Hops[i].By != "" {
			idx = append(idx, i)
		}
	}
	hop := func(n int) *Hop { return &c.Hops[idx[n]] }

	k := -1
	for n := range idx {
		if hop(n).Ours {
			k = n
			break
		}
	}
	switch {
	case k < 0:
		c.OriginReason = "no Received header was written by our servers: the message did not pass through them"
	case k > 0 && hop(k-1).SendingHost() != "" && !hop(k-1).FromOurs:
		// The host above received the message from someone else, yet a
		// header below claims one of ours: ours are planted.
		above := hop(k - 1)
		c.Origin = idx[k-1]
		c.OriginReason = fmt.Sprintf("%s received the message from %s, which is not ours: the Received headers below that name our servers are forged",
			above.By, describeSender(above))
		for n := k; n < len(idx); n++ {
			if hop(n).Ours {
				c.add(idx[n], KindForgedOurs, fmt.Sprintf("claims to be written by our server %s, but the message reached %s from %s, not from us",
					hop(n).By, above.By, describeSender(above)))
			}
		}
	default:
		c.PassedOurs = true
		n := k
		for n < len(idx) && hop(n).Ours && hop(n).FromOurs {
			n++
		}
		switch {
		case n == len(idx):
			c.Origin = idx[n-1]
			c.OriginReason = "every hop is inside our servers: the message was submitted on " + hop(n-1).By
		case !hop(n).Ours:
			c.Origin = idx[n-1]
			c.OriginReason = fmt.Sprintf("%s says it came from our host %s, whose own Received header is missing", hop(n-1).By, describeSender(hop(n-1)))
			c.add(idx[n], KindBrokenChain, fmt.Sprintf("the hop above says the message came from our host %s, but this header was written by %s",
				describeSender(hop(n-1)), hop(n).By))
		default:
			c.Origin = idx[n]
			c.OriginReason = fmt.Sprintf("first hop into our servers: %s received it from %s", hop(n).By, describeSender(hop(n)))
		}
		for j := c.Origin + 1; j < len(c.Hops); j++ {
			if c.Hops[j].Ours {
				c.add(j, KindForgedOurs, fmt.Sprintf("claims to be written by our server %s, but lies below the point where the message entered our servers", c.Hops[j].By))
			}
		}
	}

	for n := 0; n+1 < len(idx); n++ {
		upper, lower := hop(n), hop(n+1)
		if !upper.Date.IsZero() && !lower.Date.IsZero() && lower.Date.Sub(upper.Date) > DateSkew {
			c.add(idx[n+1], KindDateBackwards, fmt.Sprintf("dated %s, %s after the hop above it (%s), which received the message later",
				lower.Date.UTC().Format(time.RFC3339), lower.Date.Sub(upper.Date).Round(time.Second), upper.Date.UTC().Format(time.RFC3339)))
		}
		if idx[n+1] != idx[n]+1 {
			continue // an unparsable hop lies between: nothing to compare
		}
		loop := upper.FromIP.IsLoopback() && sameHost(lower.By, upper.By) // a filter on the same host
		if (upper.From != "" || upper.FromRDNS != "") && !loop {
			if !sameHost(lower.By, upper.From) && !sameHost(lower.By, upper.FromRDNS) &&
				!(upper.FromIP.IsValid() && sameHost(lower.By, upper.FromIP.String())) {
				c.add(idx[n+1], KindByFromMismatch, fmt.Sprintf("written by %s, but the hop above received the message from %s", lower.By, describeSender(upper)))
			}
		}
	}
	slices.SortStableFunc(c.Inconsistencies, func(a, b Inconsistency) int { return cmp.Compare(a.Hop, b.Hop) })
}

func (c *Chain) add(hop int, kind, detail string) {
	c.Inconsistencies = append(c.Inconsistencies, Inconsistency{Hop: hop, Kind: kind, Detail: detail})
}

// describeSender names a hop's sending host with all we know.
func describeSender(h *Hop) string {
	var parts []string
	if h.FromRDNS != "" {
		parts = append(parts, h.FromRDNS)
	}
	if h.FromIP.IsValid() {
		parts = append(parts, "["+h.FromIP.String()+"]")
	}
	s := strings.Join(parts, " ")
	if h.From != "" && !sameHost(h.From, h.FromRDNS) {
		if s == "" {
			return "\"" + h.From + "\" (HELO, unverified)"
		}
		s += " (HELO " + h.From + ")"
	}
	if s == "" {
		return "an unknown host"
	}
	return s
}

// WriteText prints the chain for a person, topmost hop first, with marks:
// "ours", "ORIGIN", and the inconsistencies under their hop.
func (c *Chain) WriteText(w io.Writer) error {
	var b strings.Builder
	if c.Inner {
		b.WriteString("Received chain of the message embedded in the report\n")
	} else {
		b.WriteString("Received chain\n")
	}
	for _, kv := range [][2]string{{"Subject", c.Subject}, {"From", c.From}, {"Message-ID", c.MessageID}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, "  %s: %s\n", kv[0], clean(kv[1]))
		}
	}
	fmt.Fprintf(&b, "  %d hops (topmost = last)", len(c.Hops))
	if c.Skipped > 0 {
		fmt.Fprintf(&b, ", %d malformed header lines skipped", c.Skipped)
	}
	b.WriteString("\n\n")
	for i := range c.Hops {
		h := &c.Hops[i]
		var marks []string
		if h.Ours {
			marks = append(marks, "ours")
		}
		if i == c.Origin {
			marks = append(marks, "ORIGIN")
		}
		for _, in := range c.Inconsistencies {
			if in.Hop == i && in.Kind == KindForgedOurs {
				marks = append(marks, "FORGED?")
				break
			}
		}
		mark := ""
		if len(marks) > 0 {
			mark = " [" + strings.Join(marks, ", ") + "]"
		}
		date := "no date"
		if !h.Date.IsZero() {
			date = h.Date.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(&b, "%2d.%s %s\n", i, mark, date)
		fmt.Fprintf(&b, "    from %s\n    by   %s", clean(describeSender(h)), clean(orDash(h.By)))
		if h.With != "" {
			fmt.Fprintf(&b, " with %s", clean(h.With))
		}
		if h.ID != "" {
			fmt.Fprintf(&b, " id %s", clean(h.ID))
		}
		b.WriteString("\n")
		for _, in := range c.Inconsistencies {
			if in.Hop == i {
				fmt.Fprintf(&b, "    ! %s: %s\n", in.Kind, clean(in.Detail))
			}
		}
	}
	b.WriteString("\n")
	if o := c.OriginHop(); o != nil {
		fmt.Fprintf(&b, "Likely origin: %s (hop %d)\n", clean(describeSender(o)), c.Origin)
	} else {
		b.WriteString("Likely origin: not determined\n")
	}
	fmt.Fprintf(&b, "  %s\n", clean(c.OriginReason))
	if len(c.Inconsistencies) == 0 {
		b.WriteString("No inconsistencies found.\n")
	} else {
		fmt.Fprintf(&b, "%d inconsistencies (see \"!\" above).\n", len(c.Inconsistencies))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("trace: writing chain: %w", err)
	}
	return nil
}

// Ours returns a matcher for Received: a name matches an entry equal to
// it or a parent domain of it ("example.org" matches "mx1.example.org");
// an address matches an equal entry or a CIDR prefix entry
// ("192.0.2.0/24"). Case and trailing dots are ignored.
func Ours(entries ...string) func(host string) bool {
	var (
		names    []string
		prefixes []netip.Prefix
	)
	for _, e := range entries {
		e = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(e), "."))
		if e == "" {
			continue
		}
		if p, err := netip.ParsePrefix(e); err == nil {
			prefixes = append(prefixes, p.Masked())
			continue
		}
		if ip, ok := literalIP(e); ok {
			prefixes = append(prefixes, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		names = append(names, e)
	}
	return func(host string) bool {
		if ip, ok := literalIP(host); ok {
			for _, p := range prefixes {
				if p.Contains(ip) {
					return true
				}
			}
			return false
		}
		h := strings.ToLower(strings.TrimSuffix(host, "."))
		for _, n := range names {
			if h == n || strings.HasSuffix(h, "."+n) {
				return true
			}
		}
		return false
	}
}
