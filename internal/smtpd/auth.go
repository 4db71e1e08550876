package smtpd

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"kanmon/internal/auth"
)

// cmdAuth runs SASL PLAIN (RFC 4616) or LOGIN. Both are small enough that
// parsing them here keeps the payload in one place, where it is never
// logged.
func (c *conn) cmdAuth(arg string) error {
	if c.role == RoleMX {
		c.reject("auth.not_here", 502, "5.5.1", "AUTH is not available on this port: use the submission port")
		return c.tooManyErrors()
	}
	if c.tls == nil {
		c.reject("auth.needs_tls", 538, "5.7.11", "encryption required: send STARTTLS before AUTH")
		return c.tooManyErrors()
	}
	if c.helo == "" {
		c.reject("protocol.sequence", 503, "5.5.1", "send EHLO first")
		return c.tooManyErrors()
	}
	if c.authUser != "" {
		c.reject("protocol.sequence", 503, "5.5.1", "already authenticated")
		return c.tooManyErrors()
	}
	if c.inMail {
		c.reject("protocol.sequence", 503, "5.5.1", "AUTH not allowed during a mail transaction")
		return c.tooManyErrors()
	}
	mech, initial, _ := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	var user, pass string
	switch mech {
	case "PLAIN":
		resp, err := c.saslStep(initial, "")
		if err != nil {
			return c.authAborted(err)
		}
		parts := bytes.Split(resp, []byte{0})
		if len(parts) != 3 || (len(parts[0]) > 0 && !bytes.Equal(parts[0], parts[1])) {
			c.reject("auth.syntax", 501, "5.5.2", "malformed PLAIN response")
			return c.tooManyErrors()
		}
		user, pass = string(parts[1]), string(parts[2])
	case "LOGIN":
		u, err := c.saslStep(initial, "VXNlcm5hbWU6") // "Username:"
		if err != nil {
			return c.authAborted(err)
		}
		p, err := c.saslStep("", "UGFzc3dvcmQ6") // "Password:"
		if err != nil {
			return c.authAborted(err)
		}
		user, pass = string(u), string(p)
	default:
		c.reject("auth.mechanism", 504, "5.5.4", "unsupported mechanism: use PLAIN or LOGIN")
		return c.tooManyErrors()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	account, err := c.s.d.Auth.Authenticate(ctx, user, pass, c.ip)
	switch {
	case err == nil:
		c.authUser = account
		c.log.Info("auth", "user", account, "ok", true, "mech", mech)
		c.reply(235, "2.7.0", "authentication successful")
		return nil
	case errors.Is(err, auth.ErrThrottled):
		c.log.Info("auth", "user", safeUser(user), "ok", false, "rule", "auth.throttled")
		c.reject("auth.throttled", 454, "4.7.0", "too many failed logins, try again later")
		return c.tooManyErrors()
	default:
		c.log.Info("auth", "user", safeUser(user), "ok", false, "rule", "auth.failed")
		c.reject("auth.failed", 535, "5.7.8", "authentication credentials invalid")
		return c.tooManyErrors()
	}
}

// safeUser bounds a client-given user name before it is logged.
func safeUser(u string) string {
	if len(u) > 64 {
		u = u[:64]
	}
	if hasControl(u) {
		return "[unprintable]"
	}
	return u
}

var errAuthCancelled = errors.New("cancelled")
var errAuthBase64 = errors.New("bad base64")

// saslStep returns the decoded initial response, or sends a 334 challenge
// and reads the answer.
func (c *conn) saslStep(initial, challenge string) ([]byte, error) {
	line := initial
	if line == "" {
		c.reply(334, "", challenge)
		cmdTimeout, _ := c.cfgLimits()
		var err error
		line, err = c.readCommand(cmdTimeout)
		if err != nil {
			return nil, err
		}
	}
	if line == "*" {
		return nil, errAuthCancelled
	}
	if line == "=" {
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(line)
	if err != nil {
		return nil, errAuthBase64
	}
	return b, nil
}

func (c *conn) authAborted(err error) error {
	switch {
	case errors.Is(err, errAuthCancelled):
		c.reject("auth.cancelled", 501, "5.0.0", "authentication cancelled")
		return c.tooManyErrors()
	case errors.Is(err, errAuthBase64):
		c.reject("auth.syntax", 501, "5.5.2", "invalid base64 in AUTH response")
		return c.tooManyErrors()
	}
	c.readFailed(err)
	return err
}
