// Package msgauth is the DATA stage of the inbound checks on the MX
// listener: the header From: (exactly one valid address), DKIM
// verification (RFC 6376), DMARC (RFC 7489) and the
// Authentication-Results header (RFC 8601) that records them together
// with the MAIL stage's SPF result.
//
// It works on the message as it streams into the queue file: a Stream
// sits between the SMTP session's DATA reader and the queue writer. It
// holds the header section only (at most MaxHeader bytes), removes the
// Authentication-Results fields that claim our authserv-id, and tees the
// message into go-msgauth's DKIM verifier through a pipe, so nothing
// but the header and the hash states is held in memory and the message
// is read once. Finish gives the verdict before the "250": a DMARC
// p=reject failure is refused (550 5.7.1), p=quarantine is accepted and
// marked for the recipient's Junk folder, and the header fields to put
// on top of the message (Authentication-Results, the quarantine mark)
// go into the queue file's prepend block.
//
// Why a package of its own: these checks read the message, where
// internal/inbound's read the connection and the envelope; smtpd calls
// it with a few lines.
//
// DNS trouble is never evidence against a message: a DKIM key or DMARC
// policy that cannot be fetched gives temperror, recorded, and the
// message is accepted.
//
// SECURITY: the message and DNS answers are untrusted. The header held
// is bounded (MaxHeader), at most MaxSignatures signatures are verified,
// each lookup is bounded by the resolver's timeout and the wait for the
// verifier by Budget. The quarantine mark is trusted only in the prepend
// block, which only we write.
package msgauth

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"kanmon/internal/config"
	"kanmon/internal/dnsresolve"
	"kanmon/internal/metrics"
	"kanmon/internal/policy"
)

const (
	// MaxHeader bounds the header section held in memory; a message
	// with a longer one is refused (552 5.3.4).
	MaxHeader = 256 << 10
	// MaxSignatures bounds the DKIM signatures verified per message;
	// the rest are ignored (and logged).
	MaxSignatures = 5
)

// Rules of this stage.
const (
	RuleFromHeader = "data.from_header"
	RuleDMARC      = "data.dmarc"
	RuleDKIM       = "data.dkim"
	RuleHeaderSize = "data.header_size"
)

// Checker runs the DATA stage. One Checker serves every session.
type Checker struct {
	cfg        config.Inbound
	authservID string
	dns        dnsresolve.Resolver
	met        *metrics.Metrics
	// Budget bounds the wait for the DKIM verifier and the DMARC lookup
	// at the end of DATA.
	Budget time.Duration
}

// New returns a Checker for cfg, asking DNS through r.
func New(cfg *config.Config, r dnsresolve.Resolver, m *metrics.Metrics) *Checker {
	id := cfg.Inbound.AuthservID
	if id == "" {
		id = cfg.Hostname
	}
	return &Checker{cfg: cfg.Inbound, authservID: strings.TrimSuffix(id, "."), dns: r, met: m,
		Budget: 2*cfg.DNS.Timeout.Duration + time.Second}
}

// AuthservID is our name in Authentication-Results.
func (c *Checker) AuthservID() string { return c.authservID }

// Session is what the stage knows of the transaction.
type Session struct {
	// ConnID and Log identify the connection in the decision lines.
	ConnID string
	Log    *slog.Logger
	// Helo is the client's HELO name; MailFrom the envelope sender
	// ("" for the null sender).
	Helo, MailFrom string
	// SPF is the MAIL stage's SPF result ("" when not checked).
	SPF string
	// Enforce is false for a client on the allow list: results are
	// recorded, nothing is refused or quarantined.
	Enforce bool
}

// Result is the stage's verdict on one message.
type Result struct {
	// Refused: Verdict is the reply, Attrs the evidence for its
	// decision line (logged by the caller, as for inbound.Outcome).
	Refused bool
	Verdict policy.Verdict
	Attrs   []any
	// Prepend are the header fields to put on top of the message.
	Prepend []byte
	// Quarantine: deliver into the recipients' Junk folder.
	Quarantine bool
}

// lookupTXT adapts the one resolver to go-msgauth, which tells "not
// found" from "temporary" by a *net.DNSError at the top of the chain.
func (c *Checker) lookupTXT(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		v, err := c.dns.LookupTXT(ctx, name)
		if err == nil {
			return v, nil
		}
		var de *net.DNSError
		if errors.As(err, &de) {
			return nil, de
		}
		return nil, &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
	}
}

// Quarantined reports whether a queue file's prepend block marks the
// message for the Junk folder.
func Quarantined(prepend []byte) bool {
	for _, f := range splitFields(prepend) {
		if is(f, QuarantineField) {
			return true
		}
	}
	return false
}

// FormatAuthResults returns our Authentication-Results field (CRLF
// ended, one result per folded line): spf when it was checked, one dkim
// per signature, dmarc when evaluated (dm.Result != "").
func FormatAuthResults(id string, spf, spfFrom, helo string, sigs []DKIMResult, dmResult, fromDomain string) []byte {
	var parts []string
	add := func(r authres.Result) {
		s := authres.Format("x", []authres.Result{r})
		parts = append(parts, clean(strings.TrimSpace(strings.TrimPrefix(s, "x;"))))
	}
	if spf != "" {
		r := &authres.SPFResult{Value: authres.ResultValue(spf)}
		if spfFrom != "" {
			r.From = spfFrom
		} else {
			r.Helo = helo
		}
		add(r)
	}
	for _, d := range sigs {
		p := map[string]string{"header.d": d.Domain, "header.s": d.Selector}
		if d.Identifier != "" {
			p["header.i"] = d.Identifier
		}
		if d.Reason != "" {
			p["reason"] = d.Reason
		}
		add(&authres.GenericResult{Method: "dkim", Value: authres.ResultValue(d.Result), Params: p})
	}
	if dmResult != "" {
		add(&authres.DMARCResult{Value: authres.ResultValue(dmResult), From: fromDomain})
	}
	if len(parts) == 0 {
		parts = []string{"none"}
	}
	return []byte(fieldAuthResults + ": " + id + ";\r\n\t" + strings.Join(parts, ";\r\n\t") + "\r\n")
}

// clean keeps a value taken from the message or DNS from breaking the
// header field: no control characters, at most 300 bytes.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}
