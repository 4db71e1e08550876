package msgauth

import (
	"bytes"
	"io"
	"mime"
	"net/mail"
	"strings"
)

// Header fields we treat specially.
const (
	fieldAuthResults = "Authentication-Results"
	fieldDKIMSig     = "DKIM-Signature"
	fieldFrom        = "From"
	// QuarantineField marks a message delivered into the Junk folder. We
	// write it in the queue file's prepend block only (never taken from
	// the message), and remove any copy the sender put in.
	QuarantineField = "X-Kanmon-Quarantine"
)

// splitFields splits a header section (each line ending in CRLF, without
// the blank line) into its fields, continuation lines included. A first
// line that starts with white space is a field of its own.
func splitFields(h []byte) [][]byte {
	var out [][]byte
	start := 0
	for i := 0; i < len(h); {
		j := bytes.IndexByte(h[i:], '\n')
		if j < 0 {
			break
		}
		next := i + j + 1
		if next < len(h) && h[next] != ' ' && h[next] != '\t' {
			out = append(out, h[start:next])
			start = next
		}
		i = next
	}
	if start < len(h) {
		out = append(out, h[start:])
	}
	return out
}

// fieldName returns the name of field f ("" when it has no colon).
func fieldName(f []byte) string {
	i := bytes.IndexByte(f, ':')
	if i <= 0 {
		return ""
	}
	return string(bytes.TrimRight(f[:i], " \t"))
}

// fieldValue returns the value of field f, unfolded (CR and LF removed).
func fieldValue(f []byte) string {
	i := bytes.IndexByte(f, ':')
	if i < 0 {
		return ""
	}
	v := strings.ReplaceAll(string(f[i+1:]), "\r", "")
	return strings.TrimSpace(strings.ReplaceAll(v, "\n", ""))
}

// is reports whether field f is named name (case-insensitively).
func is(f []byte, name string) bool { return strings.EqualFold(fieldName(f), name) }

// AuthservID returns the authserv-id an Authentication-Results value
// claims (RFC 8601 2.2: a token or quoted string after optional
// comments), lower-cased; "" when there is none.
func AuthservID(v string) string {
	i := skipCFWS(v, 0)
	if i < len(v) && v[i] == '"' {
		var b strings.Builder
		for i++; i < len(v) && v[i] != '"'; i++ {
			if v[i] == '\\' && i+1 < len(v) {
				i++
			}
			b.WriteByte(v[i])
		}
		return strings.ToLower(b.String())
	}
	j := i
	for j < len(v) && !strings.ContainsRune(" \t\r\n;()\"", rune(v[j])) {
		j++
	}
	return strings.ToLower(v[i:j])
}

// skipCFWS skips white space and (nested) comments from i.
func skipCFWS(v string, i int) int {
	depth := 0
	for ; i < len(v); i++ {
		switch c := v[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '\\' && depth > 0:
			i++
		case depth > 0, c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			return i
		}
	}
	return len(v) // an escape at the very end may have stepped past it
}

// FilterHeader returns the header section h without the fields a
// receiving system must not pass on: an Authentication-Results that
// claims our authserv-id (RFC 8601 5: only we may speak for it) and any
// X-Kanmon-Quarantine. It also returns how many fields it removed.
func FilterHeader(h []byte, authservID string) ([]byte, int) {
	out := make([]byte, 0, len(h))
	removed := 0
	id := strings.ToLower(authservID)
	for _, f := range splitFields(h) {
		if is(f, QuarantineField) || is(f, fieldAuthResults) && AuthservID(fieldValue(f)) == id {
			removed++
			continue
		}
		out = append(out, f...)
	}
	return out, removed
}

// addrParser reads the header From: leniently where it does not matter
// (the display name's charset) and strictly where it does (the address).
var addrParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

// FromDomain checks the header From: of the fields (RFC 5322 3.6: exactly
// one field; DMARC needs exactly one author, RFC 7489 6.6.1) and returns
// its address and lower-case domain, or a problem for the sender.
func FromDomain(fields [][]byte) (addr, domain, problem string) {
	var from []byte
	n := 0
	for _, f := range fields {
		if is(f, fieldFrom) {
			n++
			from = f
		}
	}
	switch {
	case n == 0:
		return "", "", "the message has no From: header field"
	case n > 1:
		return "", "", "the message has more than one From: header field"
	}
	list, err := addrParser.ParseList(fieldValue(from))
	switch {
	case err != nil:
		return "", "", "the From: header field is not a valid address"
	case len(list) != 1:
		return "", "", "the From: header field must hold exactly one address"
	}
	a := list[0].Address
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return "", "", "the From: address has no domain"
	}
	return a, strings.ToLower(strings.TrimSuffix(a[at+1:], ".")), ""
}

// tags parses a DKIM-Signature value's tag list (RFC 6376 3.2) into a
// map; malformed parts are skipped (the verifier reports them).
func tags(v string) map[string]string {
	m := map[string]string{}
	for _, part := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		m[strings.TrimSpace(k)] = strings.Join(strings.Fields(val), "")
	}
	return m
}
