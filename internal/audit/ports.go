package audit

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Role says which protocol a port speaks and whether TLS starts at once.
type Role string

// Roles of the ports the audit knows.
const (
	RoleSMTP       Role = "smtp"       // MX, STARTTLS (port 25)
	RoleSubmission Role = "submission" // STARTTLS then AUTH (port 587)
	RoleSMTPS      Role = "smtps"      // implicit TLS submission (port 465)
	RolePOP3       Role = "pop3"       // STLS (port 110)
	RolePOP3S      Role = "pop3s"      // implicit TLS (port 995)
	RoleIMAP       Role = "imap"       // STARTTLS (port 143)
	RoleIMAPS      Role = "imaps"      // implicit TLS (port 993)
)

// PortSpec is one port to audit and the role it plays.
type PortSpec struct {
	Port int
	Role Role
}

// String returns "PORT/ROLE", the label findings carry.
func (p PortSpec) String() string { return strconv.Itoa(p.Port) + "/" + string(p.Role) }

// DefaultPorts are probed when neither a port in the target nor Ports is
// given: every port a mail server commonly exposes.
var DefaultPorts = []PortSpec{
	{25, RoleSMTP}, {587, RoleSubmission}, {465, RoleSMTPS},
	{110, RolePOP3}, {995, RolePOP3S}, {143, RoleIMAP}, {993, RoleIMAPS},
}

// standardRole is the role of a well-known port, or "".
func standardRole(port int) Role {
	for _, p := range DefaultPorts {
		if p.Port == port {
			return p.Role
		}
	}
	return ""
}

// implicitTLS reports a role whose connection starts with the TLS
// handshake (RFC 8314).
func (r Role) implicitTLS() bool { return r == RoleSMTPS || r == RolePOP3S || r == RoleIMAPS }

// family is the protocol spoken: "smtp", "pop3" or "imap".
func (r Role) family() string {
	switch r {
	case RolePOP3, RolePOP3S:
		return "pop3"
	case RoleIMAP, RoleIMAPS:
		return "imap"
	}
	return "smtp"
}

func validRole(r Role) bool {
	return slices.ContainsFunc(DefaultPorts, func(p PortSpec) bool { return p.Role == r })
}

// ParsePorts parses a --ports value: comma-separated "PORT/ROLE" items
// (roles smtp, submission, smtps, pop3, pop3s, imap, imaps) or a bare
// standard PORT, which takes that port's role ("587" is submission).
func ParsePorts(s string) ([]PortSpec, error) {
	var out []PortSpec
	seen := map[int]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		ps, rs, hasRole := strings.Cut(item, "/")
		port, err := strconv.Atoi(ps)
		if err != nil || port < 1 || port > 65535 {
			return nil, fmt.Errorf("audit: --ports item %q: %q is not a port number", item, ps)
		}
		role := Role(strings.ToLower(rs))
		switch {
		case !hasRole:
			if role = standardRole(port); role == "" {
				return nil, fmt.Errorf("audit: --ports item %q: not a standard port, say its role (PORT/smtp, submission, smtps, pop3, pop3s, imap or imaps)", item)
			}
		case !validRole(role):
			return nil, fmt.Errorf("audit: --ports item %q: unknown role %q (smtp, submission, smtps, pop3, pop3s, imap, imaps)", item, rs)
		}
		if seen[port] {
			return nil, fmt.Errorf("audit: --ports: port %d given twice", port)
		}
		seen[port] = true
		out = append(out, PortSpec{port, role})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("audit: --ports %q names no port", s)
	}
	return out, nil
}

// PortReport summarises what one port showed, findings aside.
type PortReport struct {
	// Port and Role say which port this is.
	Port int  `json:"port"`
	Role Role `json:"role"`
	// Open is true when the port accepted a connection and greeted.
	Open bool `json:"open"`
	// Greeting is the server's first line.
	Greeting string `json:"greeting,omitempty"`
	// TLS is "starttls" (offered and working), "implicit", "offered but
	// failing", or "none".
	TLS string `json:"tls,omitempty"`
	// TLSVersions are the protocol versions the server accepted, each
	// offered alone.
	TLSVersions []string `json:"tls_versions,omitempty"`
	// Certificate describes the leaf certificate.
	Certificate string `json:"certificate,omitempty"`
	// AuthBeforeTLS lists the SASL mechanisms (and USER or LOGIN) offered
	// on the connection before TLS.
	AuthBeforeTLS []string `json:"auth_before_tls,omitempty"`
	// LoginBeforeTLS is true when the server would take a password before
	// TLS (shown with a made-up name, never a real password).
	LoginBeforeTLS bool `json:"login_before_tls"`
	// MailWithoutAuth says what a submission port did with mail from a
	// client that did not authenticate: "refused", "accepted for a local
	// recipient", "relayed".
	MailWithoutAuth string `json:"mail_without_auth,omitempty"`
}
