// Package authsock is the local socket through which `kanmon
// checkpassword` asks the running server to check a password, so an IMAP
// server (Dovecot) logs users in against kanmon's accounts and the same
// login throttle as SMTP and POP3.
//
// The exchange is one request line and one reply line per connection:
//
//	AUTH <TAB> service <TAB> client-ip <TAB> base64(user) <TAB> base64(password) <LF>
//	OK <TAB> account <LF>  |  NO <LF>  |  TEMP <TAB> reason <LF>
//
// SECURITY: the asking program reports the client address the throttle
// counts against, so only the Unix users named in [checkpassword] users
// may ask; the server knows who asks by the socket itself (SO_PEERCRED),
// never by anything said on it. A request is at most MaxRequest bytes and
// must arrive within a few seconds. Passwords are never logged.
package authsock

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxRequest bounds a request line: Dovecot sends at most 512 bytes of
// user and password; base64 and the other fields fit well within this.
const MaxRequest = 2048

// Result is the server's answer.
type Result int

const (
	// OK: the password is right; Account is the canonical account.
	OK Result = iota
	// No: wrong user or password.
	No
	// Temp: try later (throttled, or the server is in trouble).
	Temp
)

// Request is one password check.
type Request struct {
	Service  string // imap, pop3, ... as the IMAP server says
	Remote   string // the client's IP address ("" when unknown)
	User     string
	Password string
}

// encode writes r as a request line.
func (r Request) encode() []byte {
	b64 := base64.StdEncoding.EncodeToString
	return []byte("AUTH\t" + clean(r.Service) + "\t" + clean(r.Remote) + "\t" + b64([]byte(r.User)) + "\t" + b64([]byte(r.Password)) + "\n")
}

// clean keeps a free-text field on its line and within its column.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r == 0x7f {
			return '_'
		}
		return r
	}, s)
}

// readRequest reads and decodes one request line of at most MaxRequest bytes.
func readRequest(r io.Reader) (Request, error) {
	line, err := bufio.NewReaderSize(io.LimitReader(r, MaxRequest+1), 512).ReadBytes('\n')
	if err != nil {
		if len(line) > MaxRequest {
			return Request{}, errors.New("request over the size limit")
		}
		return Request{}, fmt.Errorf("reading the request: %w", err)
	}
	f := bytes.Split(bytes.TrimSuffix(line, []byte("\n")), []byte("\t"))
	if len(f) != 5 || string(f[0]) != "AUTH" {
		return Request{}, errors.New("malformed request")
	}
	user, err1 := base64.StdEncoding.DecodeString(string(f[3]))
	pass, err2 := base64.StdEncoding.DecodeString(string(f[4]))
	if err1 != nil || err2 != nil {
		return Request{}, errors.New("malformed request: bad base64")
	}
	return Request{Service: string(f[1]), Remote: string(f[2]), User: string(user), Password: string(pass)}, nil
}

// parseReply decodes a reply line.
func parseReply(line string) (Result, string, error) {
	line = strings.TrimSuffix(line, "\n")
	verb, arg, _ := strings.Cut(line, "\t")
	switch verb {
	case "OK":
		if arg == "" {
			return Temp, "", errors.New("authsock: OK without an account")
		}
		return OK, arg, nil
	case "NO":
		return No, "", nil
	case "TEMP":
		return Temp, arg, nil
	}
	return Temp, "", fmt.Errorf("authsock: unexpected reply %q", clean(line))
}
