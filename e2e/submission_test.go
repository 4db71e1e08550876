package e2e

import (
	"encoding/base64"
	"os"
	"strings"
	"testing"
)

func plainPayload(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// TestSubmissionAuth: our users send through submission (STARTTLS) and
// smtps (implicit TLS) with AUTH PLAIN and LOGIN; everything else about
// AUTH is refused with the precise code.
func TestSubmissionAuth(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks")
	s := startServer(t, options{users: []string{"bob@example.org"}})

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"submission-starttls-plain", []string{"--server", s.Submission, "-tls", "--auth", "PLAIN"}},
		{"submission-starttls-login", []string{"--server", s.Submission, "-tls", "--auth", "LOGIN"}},
		{"smtps-plain", []string{"--server", s.SMTPS, "--tls-on-connect", "--auth", "PLAIN"}},
		{"smtps-login", []string{"--server", s.SMTPS, "--tls-on-connect", "--auth", "LOGIN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgID := newMessageID(t)
			args := append(tc.args, "--auth-user", alice, "--auth-password", alicePassword,
				"--from", alice, "--to", "friend@remote.test", "--header", "Message-Id: "+msgID,
				"--header", "Subject: "+tc.name)
			out, code := swaks(t, args...)
			if code != 0 {
				t.Fatalf("swaks exit status %d:\n%s", code, out)
			}
			rs := swaksReplies(out)
			if !hasReply(rs, 235, "2.7.0") {
				t.Errorf("no 235 2.7.0 after AUTH:\n%s", out)
			}
			if !hasReply(rs, 250, "2.1.5") {
				t.Errorf("remote recipient not accepted with 250 2.1.5:\n%s", out)
			}
			id := queueIDOf(out)
			if id == "" || !hasReply(rs, 250, "2.0.0") {
				t.Fatalf("no 250 2.0.0 queued as ...:\n%s", out)
			}
			q, err := os.ReadFile(s.QueueMsg(id))
			if err != nil {
				t.Fatalf("accepted message %s is not in %s: %v", id, s.QueueMsg(""), err)
			}
			body := string(q)
			for _, want := range []string{"with ESMTPSA id " + id, "(authenticated user " + alice + ")", msgID, `"friend@remote.test"`} {
				if !strings.Contains(body, want) {
					t.Errorf("queue file lacks %q:\n%s", want, body)
				}
			}
		})
	}

	t.Run("wrong-password", func(t *testing.T) {
		out, code := swaks(t, "--server", s.Submission, "-tls", "--auth", "PLAIN", "--auth-user", alice,
			"--auth-password", "not-the-password", "--from", alice, "--to", "friend@remote.test")
		if code == 0 {
			t.Errorf("swaks succeeded with a wrong password:\n%s", out)
		}
		if !hasReply(swaksReplies(out), 535, "5.7.8") {
			t.Errorf("want 535 5.7.8 for a wrong password:\n%s", out)
		}
	})

	t.Run("wrong-password-login", func(t *testing.T) {
		c := dialTLS(t, s.SMTPS)
		c.Ehlo("client.remote.test")
		c.Expect("AUTH LOGIN", 334, "")
		c.Expect(base64.StdEncoding.EncodeToString([]byte(alice)), 334, "")
		c.Expect(base64.StdEncoding.EncodeToString([]byte("wrong-password-2")), 535, "5.7.8")
		c.Expect("MAIL FROM:<"+alice+">", 530, "5.7.0")
	})

	t.Run("no-auth-before-starttls", func(t *testing.T) {
		c := dial(t, s.Submission)
		ehlo := c.Ehlo("client.remote.test")
		if !strings.Contains(ehlo.Text(), "STARTTLS") {
			t.Errorf("submission EHLO does not offer STARTTLS: %q", ehlo)
		}
		if strings.Contains(ehlo.Text(), "AUTH") {
			t.Errorf("submission offers AUTH before TLS: %q", ehlo)
		}
		c.Expect("AUTH PLAIN "+plainPayload(alice, alicePassword), 538, "5.7.11")
		c.Expect("AUTH LOGIN", 538, "5.7.11")
		c.Expect("MAIL FROM:<"+alice+">", 530, "5.7.0")
		// After STARTTLS, AUTH is offered.
		c.StartTLS()
		ehlo = c.Ehlo("client.remote.test")
		if !strings.Contains(ehlo.Text(), "AUTH PLAIN LOGIN") {
			t.Errorf("EHLO after STARTTLS does not offer AUTH PLAIN LOGIN: %q", ehlo)
		}
	})

	t.Run("mail-without-auth", func(t *testing.T) {
		c := dial(t, s.Submission)
		c.Ehlo("client.remote.test")
		c.StartTLS()
		c.Ehlo("client.remote.test")
		c.Expect("MAIL FROM:<"+alice+">", 530, "5.7.0")
		c2 := dialTLS(t, s.SMTPS)
		c2.Ehlo("client.remote.test")
		c2.Expect("MAIL FROM:<"+alice+">", 530, "5.7.0")
	})

	t.Run("auth-on-mx", func(t *testing.T) {
		c := dial(t, s.MX)
		ehlo := c.Ehlo("client.remote.test")
		if strings.Contains(ehlo.Text(), "AUTH") {
			t.Errorf("MX offers AUTH: %q", ehlo)
		}
		c.Expect("AUTH PLAIN "+plainPayload(alice, alicePassword), 502, "5.5.1")
		// Not even over TLS.
		c.StartTLS()
		ehlo = c.Ehlo("client.remote.test")
		if strings.Contains(ehlo.Text(), "AUTH") {
			t.Errorf("MX offers AUTH after STARTTLS: %q", ehlo)
		}
		c.Expect("AUTH PLAIN "+plainPayload(alice, alicePassword), 502, "5.5.1")
	})

	t.Run("authzid-impersonation", func(t *testing.T) {
		c := dialTLS(t, s.SMTPS)
		c.Ehlo("client.remote.test")
		// alice's credentials, asking to act as bob: refused, not bob.
		payload := base64.StdEncoding.EncodeToString([]byte("bob@example.org\x00" + alice + "\x00" + alicePassword))
		c.Expect("AUTH PLAIN "+payload, 501, "5.5.2")
		c.Expect("MAIL FROM:<bob@example.org>", 530, "5.7.0")
		// The same identity as authzid is fine.
		payload = base64.StdEncoding.EncodeToString([]byte(alice + "\x00" + alice + "\x00" + alicePassword))
		c.Expect("AUTH PLAIN "+payload, 235, "2.7.0")
		c.Expect("AUTH PLAIN "+payload, 503, "5.5.1")
		c.Expect("MAIL FROM:<bob@example.org>", 553, "5.7.1")
	})

	t.Run("starttls-state", func(t *testing.T) {
		c := dial(t, s.Submission)
		c.Ehlo("client.remote.test")
		c.StartTLS()
		// RFC 3207: the session starts over; EHLO is needed again.
		c.Expect("AUTH PLAIN "+plainPayload(alice, alicePassword), 503, "5.5.1")
		ehlo := c.Ehlo("client.remote.test")
		if strings.Contains(ehlo.Text(), "STARTTLS") {
			t.Errorf("STARTTLS offered again over TLS: %q", ehlo)
		}
		c.Expect("STARTTLS", 503, "5.5.1")
	})

	t.Run("starttls-injection", func(t *testing.T) {
		// CVE-2011-0411: commands pipelined behind STARTTLS must not be
		// taken as if they came over TLS.
		c := dial(t, s.Submission)
		c.Ehlo("client.remote.test")
		c.Write("STARTTLS\r\nAUTH PLAIN " + plainPayload(alice, alicePassword) + "\r\n")
		c.ExpectReply("STARTTLS with a pipelined command", 554, "5.5.1")
		c.ExpectClosed("after a STARTTLS injection")
	})

	t.Run("sender-binding", func(t *testing.T) {
		c := dial(t, s.Submission)
		c.Ehlo("client.remote.test")
		c.StartTLS()
		c.Ehlo("client.remote.test")
		c.Expect("AUTH PLAIN "+plainPayload(alice, alicePassword), 235, "2.7.0")
		c.Expect("MAIL FROM:<bob@example.org>", 553, "5.7.1")
		c.Expect("MAIL FROM:<ceo@remote.test>", 553, "5.7.1")
		c.Expect("MAIL FROM:<Bob@EXAMPLE.ORG>", 553, "5.7.1")
		c.Expect("MAIL FROM:<>", 553, "5.7.1")
		// Her own address and her alias are hers.
		c.Expect("MAIL FROM:<postmaster@example.org>", 250, "2.1.0")
		c.Expect("RSET", 250, "2.0.0")
		c.Expect("MAIL FROM:<"+alice+">", 250, "2.1.0")
	})
}
