// Package policy holds kanmon's acceptance rules as data plus small pure
// functions. Every decision returns a Verdict naming the rule that made it,
// the SMTP reply code, the enhanced status code and a reason a legitimate
// sender can act on (law 4 of the design).
//
// SECURITY: policy functions trust only facts established by the server
// (authentication state, the client's network address, the configured
// domain lists). Nothing the client says in HELO or MAIL FROM grants relay.
// The relay rule and every one of its inputs live in relay.go: ClientOf
// turns the socket's address, the listener and the authenticated account
// into a Client, against the trusted networks and POP-before-SMTP.
package policy

import "fmt"

// Verdict is the outcome of one policy check.
type Verdict struct {
	// Accept is true when the checked step may proceed.
	Accept bool
	// Rule names the rule that decided, e.g. "relay.denied".
	Rule string
	// Code is the SMTP reply code (250, 451, 550, ...).
	Code int
	// Enhanced is the RFC 3463 enhanced status code, e.g. "5.7.1".
	Enhanced string
	// Reason is the reply text shown to the client.
	Reason string
}

// Accepted returns a positive verdict for rule.
func Accepted(rule string) Verdict {
	return Verdict{Accept: true, Rule: rule, Code: 250, Enhanced: "2.1.5", Reason: "OK"}
}

// Rejected returns a negative verdict.
func Rejected(rule string, code int, enhanced, reason string) Verdict {
	return Verdict{Rule: rule, Code: code, Enhanced: enhanced, Reason: reason}
}

// Temporary reports whether a rejection is temporary (4xx).
func (v Verdict) Temporary() bool { return v.Code/100 == 4 }

// String renders the verdict for logs and tests.
func (v Verdict) String() string {
	return fmt.Sprintf("%s %d %s %s", v.Rule, v.Code, v.Enhanced, v.Reason)
}
