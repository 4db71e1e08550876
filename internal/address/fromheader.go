package address

import (
	"fmt"
	"mime"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"golang.org/x/net/idna"
)

// This file parses the originator header fields of a submitted message
// (RFC 5322 From: and Sender:) for the header binding: the one mailbox a
// field names, in a form that can be compared with what an account owns.
//
// SECURITY: the field is the submitting user's text and may be built to
// make a mail program show an address the user does not own. So the
// parser is strict where RFC 5322 is generous: exactly one mailbox, no
// group syntax and no source route, no encoded-word, quote or '@' in the
// address part, no address literal, and no other address anywhere in the
// field (display name, comments, encoded-words decoded) unless it is the
// mailbox's own. Anything it cannot read is an error, never a pass.

// MaxOriginatorLen bounds one unfolded originator field value, in octets.
const MaxOriginatorLen = 4096

// Originator is the mailbox of a From: or Sender: field.
type Originator struct {
	// Name is the display name (encoded-words decoded, comments included
	// when there is no name), for the log only: it is never trusted.
	Name string
	// Addr is the mailbox: Local as written (unquoted), Domain lower-case
	// ASCII (an internationalised domain in its A-label form).
	Addr Addr
}

// HeaderError is an originator field that cannot be accepted; Reason says
// why in words a sender can act on.
type HeaderError struct {
	Field  string // "From" or "Sender"
	Reason string
}

// Error renders the error as "Field: reason".
func (e *HeaderError) Error() string { return e.Field + ": " + e.Reason }

// ParseOriginator parses the unfolded value of one From: or Sender: field
// (field names it for errors). Errors are *HeaderError.
func ParseOriginator(field, value string) (Originator, error) {
	bad := func(format string, a ...any) (Originator, error) {
		return Originator{}, &HeaderError{Field: field, Reason: fmt.Sprintf(format, a...)}
	}
	if len(value) > MaxOriginatorLen {
		return bad("the field is longer than %d octets", MaxOriginatorLen)
	}
	if !utf8.ValidString(value) {
		return bad("the field is not valid UTF-8")
	}
	for _, r := range value {
		if r != '\t' && (r < 0x20 || r == 0x7f || forbiddenRune(r)) {
			return bad("control or invisible character %U in the field", r)
		}
	}
	if strings.TrimSpace(value) == "" {
		return bad("the field is empty: it must name your address")
	}
	if hasGroupColon(value) {
		return bad("group syntax or a source route (a ':' outside quotes) is not allowed: name one address")
	}
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader}}
	list, err := p.ParseList(value)
	if err != nil {
		return bad("cannot be read as an address (%s)", strings.TrimPrefix(err.Error(), "mail: "))
	}
	if len(list) != 1 {
		return bad("names %d addresses: it must name exactly one, yours", len(list))
	}
	a, err := canonicalMailbox(list[0].Address)
	if err != nil {
		return bad("%s", err.Error())
	}
	o := Originator{Name: list[0].Name, Addr: a}
	if other := otherAddress(value, a); other != "" {
		return bad("mentions the address %s besides <%s> (in its display name or a comment): mail programs may show it as the sender", other, a)
	}
	return o, nil
}

// canonicalMailbox splits an addr-spec as net/mail returns it (quotes
// removed) and refuses the forms that can hide another address.
func canonicalMailbox(s string) (Addr, error) {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return Addr{}, fmt.Errorf("<%s> is not a full user@domain address", s)
	}
	local, dom := s[:at], s[at+1:]
	switch {
	case strings.Contains(local, "@"):
		return Addr{}, fmt.Errorf("the local part of <%s> holds an '@' (a quoted local part): not allowed", s)
	case strings.Contains(s, "=?"):
		return Addr{}, fmt.Errorf("<%s> holds an encoded-word (=?...?=) in the address: not allowed", s)
	case strings.ContainsAny(local, "\"\\ \t"):
		return Addr{}, fmt.Errorf("the local part of <%s> needs quoting: not allowed", s)
	case strings.HasPrefix(dom, "["):
		return Addr{}, fmt.Errorf("<%s> has an address literal as its domain: use a domain name", s)
	}
	d, err := CanonicalDomain(dom)
	if err != nil {
		return Addr{}, fmt.Errorf("the domain of <%s> is not valid: %v", s, err)
	}
	if len(local) > MaxLocalLen {
		return Addr{}, fmt.Errorf("the local part of <%s> is longer than %d octets", s, MaxLocalLen)
	}
	return Addr{Local: local, Domain: d}, nil
}

// CanonicalDomain gives a domain in the form ownership is compared in:
// lower-case ASCII, no trailing dot, an internationalised name as its
// A-label ("exämple.org" and "xn--exmple-cua.org" are the same).
func CanonicalDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", err
	}
	return ParseDomain(strings.ToLower(a), false)
}

// hasGroupColon reports a ':' outside quoted strings and comments: group
// syntax ("undisclosed: a@b;"), an obsolete source route, or an IPv6
// literal, none of which an originator field of ours needs.
func hasGroupColon(s string) bool {
	inQuote, depth := false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && (inQuote || depth > 0):
			i++
		case inQuote:
			inQuote = c != '"'
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == '"':
			inQuote = true
		case c == ':':
			return true
		}
	}
	return false
}

// otherAddress returns the first address-looking word of the field
// (encoded-words decoded) that is not a itself, or "". It reads the whole
// field, so display names, comments and quoted strings are all covered.
func otherAddress(value string, a Addr) string {
	dec := &mime.WordDecoder{CharsetReader: charset.Reader}
	text, err := dec.DecodeHeader(value)
	if err != nil {
		text = value
	}
	own := strings.ToLower(a.Local) + "@" + a.Domain
	for i := 0; i < len(text); i++ {
		if text[i] != '@' {
			continue
		}
		lo, hi := i, i+1
		for lo > 0 && !addrStop(text[lo-1]) {
			lo--
		}
		for hi < len(text) && !addrStop(text[hi]) {
			hi++
		}
		local, dom := text[lo:i], strings.TrimRight(text[i+1:hi], ".")
		if local == "" || dom == "" {
			continue // a lone '@' is not an address
		}
		word := strings.ToLower(local) + "@"
		if d, err := CanonicalDomain(dom); err == nil {
			word += d
		} else {
			word += strings.ToLower(dom)
		}
		if word != own {
			return text[lo:hi]
		}
	}
	return ""
}

// addrStop ends an address-looking word.
func addrStop(c byte) bool {
	return c <= ' ' || strings.IndexByte("<>()\"',;:[]\\", c) >= 0
}
