// Package address parses and validates RFC 5321 mailboxes (the paths of
// MAIL FROM and RCPT TO) strictly, and reports the relay tricks hidden in a
// local part so that the relay rule can refuse them.
//
// It accepts two forms of the same path:
//
//   - the raw form a client writes: "<user@example.org>", a quoted local
//     part ("\"john smith\"@example.org") and a source route
//     ("<@relay.example:user@example.org>", ignored as RFC 5321 C says);
//   - the pre-processed form github.com/emersion/go-smtp hands the server:
//     brackets removed, source route dropped, quoted local part unquoted
//     (so "\"user@evil\"@example.org" arrives as "user@evil@example.org").
//
// In both forms the domain starts after the LAST '@'; whatever precedes it
// is the local part. The pre-processed form cannot tell a quoted local part
// from an unquoted one, so a local part that begins with '"' is read as a
// quoted-string when it is exactly one well-formed quoted-string, and taken
// as given otherwise. Limits (local part 64 octets, path 254) are measured on
// the canonical wire form that Addr.String writes, so a parse is stable:
// Parse(a.String()) gives a back.
//
// SECURITY: the input is the client's text and is trusted for nothing. The
// parser bounds the input (256 octets before any work), rejects control
// characters (NUL, CR, LF, DEL and Unicode controls and invisible formatting
// characters) and invalid UTF-8 everywhere, and rejects non-ASCII unless the
// session negotiated SMTPUTF8. It exposes the local part as given, case
// preserved and unquoted: it may still contain '%', '!', '@', spaces or
// quotes, so a caller must consult Addr.Tricks before treating it as a
// plain user name, and must use Addr.String (which re-quotes) to write it
// into a protocol line or a header. The domain is exposed validated and
// lower-cased (ASCII letters only for ASCII; no non-ASCII letter is folded
// into ASCII), so it can be compared with the configured domain lists
// directly; a domain is never resolved here.
package address

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits from RFC 5321 section 4.5.3.1.
const (
	// MaxPathLen is the longest mailbox accepted, in octets: the 256-octet
	// path limit minus the two angle brackets.
	MaxPathLen = 254
	// MaxLocalLen is the longest local part, in octets, quotes included.
	MaxLocalLen = 64
	// MaxDomainLen is the longest domain, in octets.
	MaxDomainLen = 255
	// MaxLabelLen is the longest domain label, in octets.
	MaxLabelLen = 63

	// maxInputLen bounds the raw input (brackets and source route included)
	// before any other work is done.
	maxInputLen = 256
)

// Enhanced status codes used in errors (RFC 3463, RFC 6531).
const (
	enhRcptSyntax   = "5.1.3" // bad destination mailbox address syntax
	enhSenderSyntax = "5.1.7" // bad sender's mailbox address syntax
	enhNeedUTF8     = "5.6.7" // non-ASCII address without SMTPUTF8
)

// Addr is a parsed mailbox. Domain is lower-cased ASCII (or "[1.2.3.4]" /
// "[IPv6:...]" for an address literal, or a lower-cased U-label domain when
// SMTPUTF8 was negotiated), without trailing dot. Local is as given (case
// preserved, unquoted). The zero Addr is the null reverse path <>.
type Addr struct {
	Local, Domain string
}

// String returns local@domain, quoting the local part as an RFC 5321
// Quoted-string when it is not a Dot-string. The null reverse path gives ""
// (a caller writes it as "<>").
func (a Addr) String() string {
	if a.IsNull() {
		return ""
	}
	return quoteLocal(a.Local) + "@" + a.Domain
}

// IsNull reports whether a is the null reverse path <>.
func (a Addr) IsNull() bool { return a.Local == "" && a.Domain == "" }

// IsIPLiteral reports whether the domain is an address literal such as
// "[192.0.2.1]" or "[IPv6:2001:db8::1]".
func (a Addr) IsIPLiteral() bool { return strings.HasPrefix(a.Domain, "[") }

// Trick names returned by Addr.Tricks.
const (
	// TrickPercent is the percent hack: "user%other.example@example.org".
	TrickPercent = "percent"
	// TrickBang is a UUCP bang path: "other.example!user@example.org".
	TrickBang = "bang"
	// TrickAt is an '@' inside the local part: a quoted local part hiding a
	// second address, "\"user@other.example\"@example.org".
	TrickAt = "at"
	// TrickQuoted is a local part that is not a Dot-string and needed
	// quoting (spaces, quotes, leading dots...). Unusual, not a routing trick.
	TrickQuoted = "quoted"
)

// Tricks reports the relay tricks present in the local part, in the order
// "percent", "bang", "at", "quoted". It is empty (nil) when the local part
// is a clean Dot-string.
func (a Addr) Tricks() []string {
	var t []string
	if strings.ContainsRune(a.Local, '%') {
		t = append(t, TrickPercent)
	}
	if strings.ContainsRune(a.Local, '!') {
		t = append(t, TrickBang)
	}
	if strings.ContainsRune(a.Local, '@') {
		t = append(t, TrickAt)
	}
	if a.Local != "" && !isDotString(a.Local) {
		t = append(t, TrickQuoted)
	}
	return t
}

// Error is a rejected address, ready to become an SMTP reply: Code and
// Enhanced are the reply code and RFC 3463 enhanced status code, Reason a
// short text a legitimate sender can act on.
//
// Codes used: 501 with 5.1.3 (5.1.7 from ParseReversePath) for bad syntax
// and a path over 256 octets; 553 with 5.1.3 (5.1.7) for a syntactically
// sound address that exceeds a component limit; 553 5.6.7 for a non-ASCII
// address without SMTPUTF8 (RFC 6531 section 3.6).
type Error struct {
	Code     int
	Enhanced string
	Reason   string
}

// Error renders the error as "code enhanced reason".
func (e *Error) Error() string {
	return fmt.Sprintf("%d %s %s", e.Code, e.Enhanced, e.Reason)
}

// Parse parses a mailbox in either the pre-processed or the raw form (see
// the package comment). The domain is split at the LAST '@'. The null path
// is an error here; see ParseReversePath. smtputf8 says whether the session
// negotiated SMTPUTF8 (RFC 6531) for this transaction: only then are UTF-8
// local parts and U-label domains accepted.
//
// Errors are *Error: 501 5.1.3 for bad syntax, 553 5.1.3 for a component
// over its length limit, 553 5.6.7 for non-ASCII without SMTPUTF8.
func Parse(s string, smtputf8 bool) (Addr, error) {
	p := parser{smtputf8: smtputf8, enh: enhRcptSyntax}
	return p.parse(s)
}

// ParseReversePath is Parse for a MAIL FROM path: it also accepts "" and
// "<>" as the null sender, returning the zero Addr. Its syntax errors carry
// the enhanced code 5.1.7 (bad sender's address syntax) instead of 5.1.3.
func ParseReversePath(s string, smtputf8 bool) (Addr, error) {
	if s == "" || s == "<>" {
		return Addr{}, nil
	}
	p := parser{smtputf8: smtputf8, enh: enhSenderSyntax}
	return p.parse(s)
}

// ParseDomain validates a domain or address literal (as found after the
// '@', or in configuration) and returns it in the canonical form Addr.Domain
// holds, so configured domain lists can be keyed the same way.
func ParseDomain(s string, smtputf8 bool) (string, error) {
	p := parser{smtputf8: smtputf8, enh: enhRcptSyntax}
	if len(s) > maxInputLen {
		return "", p.tooLong("domain is longer than 255 octets")
	}
	if err := p.checkChars(s); err != nil {
		return "", err
	}
	if s == "" {
		return "", p.syntax("empty domain")
	}
	return p.domain(s, true)
}

// parser carries what shapes the errors of one parse.
type parser struct {
	smtputf8 bool
	enh      string // enhanced code for syntax and limit errors
}

func (p parser) syntax(reason string) *Error {
	return &Error{Code: 501, Enhanced: p.enh, Reason: reason}
}

func (p parser) tooLong(reason string) *Error {
	return &Error{Code: 553, Enhanced: p.enh, Reason: reason}
}

func (p parser) parse(s string) (Addr, error) {
	if len(s) > maxInputLen {
		return Addr{}, p.syntax("path too long: an address may have at most 254 octets")
	}
	if err := p.checkChars(s); err != nil {
		return Addr{}, err
	}
	body := s
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		body = s[1 : len(s)-1]
		if body == "" {
			return Addr{}, p.syntax("the null address <> is only valid as a sender")
		}
		if body[0] == '@' {
			// Source route (RFC 5321 4.1.2 A-d-l): validate, then ignore it,
			// as RFC 5321 appendix C asks.
			i := strings.IndexByte(body, ':')
			if i < 0 {
				return Addr{}, p.syntax("malformed source route")
			}
			if err := p.route(body[:i]); err != nil {
				return Addr{}, err
			}
			body = body[i+1:]
		}
	}
	at := strings.LastIndexByte(body, '@')
	if at < 0 {
		return Addr{}, p.syntax("address must be a full user@domain address")
	}
	rawLocal, rawDomain := body[:at], body[at+1:]
	if rawDomain == "" {
		return Addr{}, p.syntax("empty domain after '@'")
	}
	local := rawLocal
	if strings.HasPrefix(rawLocal, `"`) {
		if u, ok := unquote(rawLocal); ok {
			local = u
		}
	}
	if local == "" {
		return Addr{}, p.syntax("empty local part before '@'")
	}
	domain, err := p.domain(rawDomain, true)
	if err != nil {
		return Addr{}, err
	}
	a := Addr{Local: local, Domain: domain}
	if len(quoteLocal(local)) > MaxLocalLen {
		return Addr{}, p.tooLong("local part is longer than 64 octets")
	}
	if len(a.String()) > MaxPathLen {
		return Addr{}, p.syntax("path too long: an address may have at most 254 octets")
	}
	return a, nil
}

// checkChars rejects control characters, invalid UTF-8, and non-ASCII
// without SMTPUTF8, anywhere in s.
func (p parser) checkChars(s string) error {
	ascii := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return p.syntax("control character (NUL, CR, LF, TAB...) in address")
		case c >= 0x80:
			ascii = false
		}
	}
	if ascii {
		return nil
	}
	if !utf8.ValidString(s) {
		return p.syntax("invalid UTF-8 in address")
	}
	if !p.smtputf8 {
		return &Error{Code: 553, Enhanced: enhNeedUTF8, Reason: "non-ASCII address requires SMTPUTF8"}
	}
	for _, r := range s {
		if forbiddenRune(r) {
			return p.syntax(fmt.Sprintf("control or invisible character %U in address", r))
		}
	}
	return nil
}

// forbiddenRune reports non-ASCII runes no address may carry: C1 controls,
// invisible format characters (bidi overrides, zero-width space, BOM...;
// the joiners U+200C and U+200D are needed by some scripts and stay), and
// the Unicode line and paragraph separators.
func forbiddenRune(r rune) bool {
	switch {
	case r == '\u200c' || r == '\u200d':
		return false
	case unicode.IsControl(r), unicode.Is(unicode.Cf, r),
		unicode.Is(unicode.Zl, r), unicode.Is(unicode.Zp, r):
		return true
	}
	return false
}

// route validates a source route "@one.example,@two.example" (without the
// ':'). Only domain names are allowed there (RFC 5321 At-domain).
func (p parser) route(r string) error {
	for _, hop := range strings.Split(r, ",") {
		if len(hop) < 2 || hop[0] != '@' {
			return p.syntax("malformed source route")
		}
		if _, err := p.domain(hop[1:], false); err != nil {
			return err
		}
	}
	return nil
}

// domain validates d and returns its canonical form. literal says whether an
// address literal is allowed.
func (p parser) domain(d string, literal bool) (string, error) {
	if strings.HasPrefix(d, "[") {
		if !literal {
			return "", p.syntax("address literal not allowed in a source route")
		}
		return p.addressLiteral(d)
	}
	if strings.HasSuffix(d, ".") {
		return "", p.syntax("domain must not end with a dot")
	}
	d = lowerDomain(d)
	if len(d) > MaxDomainLen {
		return "", p.tooLong("domain is longer than 255 octets")
	}
	labels := strings.Split(d, ".")
	for _, l := range labels {
		if l == "" {
			return "", p.syntax("empty label in domain")
		}
		if len(l) > MaxLabelLen {
			return "", p.tooLong("domain label is longer than 63 octets")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", p.syntax("domain label must not begin or end with a hyphen")
		}
		for i, r := range l {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			case r >= utf8.RuneSelf && i > 0 && unicode.IsMark(r):
			case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			default:
				return "", p.syntax("invalid character in domain: only letters, digits and hyphens are allowed")
			}
		}
	}
	if allDigits(labels[len(labels)-1]) {
		return "", p.syntax("top-level domain is all digits: write an IP address as [192.0.2.1]")
	}
	return d, nil
}

// addressLiteral validates "[1.2.3.4]" or "[IPv6:...]" and returns its
// canonical form. General address literals ("[tag:...]") are refused.
func (p parser) addressLiteral(d string) (string, error) {
	if len(d) < 2 || d[len(d)-1] != ']' {
		return "", p.syntax("malformed address literal")
	}
	inner := d[1 : len(d)-1]
	const v6 = "IPv6:"
	if len(inner) > len(v6) && strings.EqualFold(inner[:len(v6)], v6) {
		ip, err := netip.ParseAddr(inner[len(v6):])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", p.syntax("invalid IPv6 address literal")
		}
		return "[IPv6:" + ip.String() + "]", nil
	}
	ip, err := netip.ParseAddr(inner)
	if err != nil || !ip.Is4() {
		return "", p.syntax("invalid address literal: use [192.0.2.1] or [IPv6:2001:db8::1]")
	}
	return "[" + ip.String() + "]", nil
}

// lowerDomain lower-cases ASCII letters, and non-ASCII letters only when
// their lower case is itself non-ASCII: a non-ASCII letter is never folded
// into an ASCII one (U+212A KELVIN SIGN stays, it does not become 'k'), so a
// look-alike cannot turn into a configured ASCII domain.
func lowerDomain(d string) string {
	var b strings.Builder
	b.Grow(len(d))
	for _, r := range d {
		switch {
		case r >= 'A' && r <= 'Z':
			r += 'a' - 'A'
		case r >= utf8.RuneSelf:
			if l := unicode.ToLower(r); l >= utf8.RuneSelf {
				r = l
			}
		}
		b.WriteRune(r)
	}
	return b.String()
}

// LowerASCII lower-cases the ASCII letters A-Z and leaves every other
// character as it is. Local parts and account names are compared with it,
// never with Unicode case folding: strings.ToLower maps U+212A KELVIN SIGN
// to 'k' and U+0130 (capital I with dot) to 'i', which would let a
// look-alike address reach an ASCII account.
func LowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// isAtext reports whether r is RFC 5321 atext, extended by RFC 6531 with
// every non-ASCII character.
func isAtext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case r >= utf8.RuneSelf:
		return true
	}
	return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
}

// isDotString reports whether s is an RFC 5321 Dot-string: atoms of atext
// separated by single dots.
func isDotString(s string) bool {
	if s == "" {
		return false
	}
	prevDot := true // a leading dot is an error
	for _, r := range s {
		if r == '.' {
			if prevDot {
				return false
			}
			prevDot = true
			continue
		}
		if !isAtext(r) {
			return false
		}
		prevDot = false
	}
	return !prevDot
}

// quoteLocal returns the wire form of a local part: itself when it is a
// Dot-string, else a Quoted-string with '"' and '\' escaped.
func quoteLocal(l string) string {
	if isDotString(l) {
		return l
	}
	var b strings.Builder
	b.Grow(len(l) + 2)
	b.WriteByte('"')
	for i := 0; i < len(l); i++ {
		if l[i] == '"' || l[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(l[i])
	}
	b.WriteByte('"')
	return b.String()
}

// unquote decodes s when it is exactly one RFC 5321 Quoted-string
// (qtextSMTP and quoted-pairSMTP, plus non-ASCII per RFC 6531; the caller
// has already refused control characters). ok is false otherwise.
func unquote(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 1; i < len(s)-1; i++ {
		c := s[i]
		switch c {
		case '"':
			return "", false
		case '\\':
			i++
			if i >= len(s)-1 || s[i] < 0x20 || s[i] > 0x7e {
				return "", false
			}
			c = s[i]
		}
		b.WriteByte(c)
	}
	return b.String(), true
}
