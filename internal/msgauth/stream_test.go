package msgauth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"kanmon/internal/config"
	"kanmon/internal/dnsresolve"
)

// fixture is a sender domain with a DKIM key and DMARC policies.
type fixture struct {
	key ed25519.PrivateKey
	dns *dnsresolve.Mock
}

func newFixture(t testing.TB) *fixture {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{key: key, dns: &dnsresolve.Mock{TXT: map[string][]string{
		"sel._domainkey.sender.test": {"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)},
		"_dmarc.sender.test":         {"v=DMARC1; p=reject"},
		"_dmarc.junk.test":           {"v=DMARC1; p=quarantine"},
		"_dmarc.watch.test":          {"v=DMARC1; p=none"},
	}}}
}

// sign returns msg with a DKIM signature of d=sender.test.
func (f *fixture) sign(t testing.TB, msg string) string {
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{Domain: "sender.test", Selector: "sel", Signer: f.key})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func (f *fixture) checker(mut func(*config.Config)) *Checker {
	cfg := config.Default()
	cfg.Hostname = "mx.example.org"
	cfg.DNS.Timeout = config.Duration{Duration: time.Second}
	if mut != nil {
		mut(cfg)
	}
	return New(cfg, f.dns, nil)
}

// run streams msg through the stage in small chunks and returns the
// verdict and what reached the queue file.
func run(c *Checker, sess Session, msg string) (Result, string) {
	var out bytes.Buffer
	if sess.Log == nil {
		sess.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	st := c.Start(&out, sess)
	for b := []byte(msg); len(b) > 0; {
		n := min(len(b), 7)
		st.Write(b[:n])
		b = b[n:]
	}
	return st.Finish(), out.String()
}

const body = "From: Bob <bob@sender.test>\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"

var goodSession = Session{ConnID: "c1", Helo: "mx.sender.test", MailFrom: "bob@relay.test", SPF: "pass", Enforce: true}

func TestStreamDKIMPassAndDMARCPass(t *testing.T) {
	f := newFixture(t)
	signed := f.sign(t, body)
	r, got := run(f.checker(nil), goodSession, signed)
	if r.Refused || r.Quarantine {
		t.Fatalf("refused: %+v", r)
	}
	if got != signed {
		t.Errorf("the message changed on its way:\n%q\n%q", got, signed)
	}
	ar := string(r.Prepend)
	for _, want := range []string{"Authentication-Results: mx.example.org;", "spf=pass smtp.mailfrom=relay.test",
		"dkim=pass header.d=sender.test header.s=sel", "dmarc=pass header.from=sender.test"} {
		if !strings.Contains(ar, want) {
			t.Errorf("A-R lacks %q:\n%s", want, ar)
		}
	}
}

// TestStreamTamperedIsRejected: one body byte changed after signing, SPF
// passing only for an unaligned domain: DKIM fails, DMARC fails, and
// p=reject refuses with 550 5.7.1.
func TestStreamTamperedIsRejected(t *testing.T) {
	f := newFixture(t)
	tampered := strings.Replace(f.sign(t, body), "Hello.", "Hello!", 1)
	r, _ := run(f.checker(nil), goodSession, tampered)
	if !r.Refused || r.Verdict.Code != 550 || r.Verdict.Enhanced != "5.7.1" || r.Verdict.Rule != RuleDMARC {
		t.Fatalf("tampered message: %+v", r)
	}
	if !strings.Contains(r.Verdict.Reason, "sender.test") {
		t.Errorf("reason does not name the domain: %q", r.Verdict.Reason)
	}
	// Logged only, with dmarc = "log" or for an allowed client.
	for _, c := range []*Checker{f.checker(func(c *config.Config) { c.Inbound.DMARC = config.ActionLog }), f.checker(nil)} {
		s := goodSession
		if c.cfg.DMARC == config.DMARCEnforce {
			s.Enforce = false
		}
		r, _ := run(c, s, tampered)
		if r.Refused || !strings.Contains(string(r.Prepend), "dkim=fail") || !strings.Contains(string(r.Prepend), "dmarc=fail") {
			t.Errorf("log only: %+v\n%s", r, r.Prepend)
		}
	}
}

func TestStreamQuarantineAndNone(t *testing.T) {
	f := newFixture(t)
	msg := strings.Replace(body, "bob@sender.test", "bob@junk.test", 1)
	r, _ := run(f.checker(nil), goodSession, msg)
	if r.Refused || !r.Quarantine || !Quarantined(r.Prepend) || !strings.Contains(string(r.Prepend), "dmarc=fail") {
		t.Fatalf("p=quarantine: %+v\n%s", r, r.Prepend)
	}
	msg = strings.Replace(body, "bob@sender.test", "bob@watch.test", 1)
	if r, _ := run(f.checker(nil), goodSession, msg); r.Refused || r.Quarantine || Quarantined(r.Prepend) {
		t.Fatalf("p=none: %+v", r)
	}
}

// TestStreamDNSTroubleNeverRefuses: the policy or the key cannot be
// fetched: temperror, accepted.
func TestStreamDNSTroubleNeverRefuses(t *testing.T) {
	f := newFixture(t)
	f.dns.Fail = map[string]error{"_dmarc.sender.test": dnsresolve.TemporaryError("_dmarc.sender.test")}
	r, _ := run(f.checker(nil), goodSession, body)
	if r.Refused || !strings.Contains(string(r.Prepend), "dmarc=temperror") {
		t.Fatalf("policy lookup failing: %+v\n%s", r, r.Prepend)
	}
	f = newFixture(t)
	f.dns.Fail = map[string]error{"sel._domainkey.sender.test": dnsresolve.TemporaryError("sel._domainkey.sender.test")}
	r, _ = run(f.checker(nil), goodSession, f.sign(t, body))
	if r.Refused || !strings.Contains(string(r.Prepend), "dkim=temperror") || !strings.Contains(string(r.Prepend), "dmarc=temperror") {
		t.Fatalf("key lookup failing: %+v\n%s", r, r.Prepend)
	}
}

func TestStreamFromHeader(t *testing.T) {
	f := newFixture(t)
	for _, msg := range []string{
		strings.Replace(body, "From: Bob <bob@sender.test>", "From: bob@sender.test, eve@evil.test", 1),
		strings.Replace(body, "From: Bob <bob@sender.test>\r\n", "", 1),
		"From: a@sender.test\r\n" + body,
	} {
		r, _ := run(f.checker(nil), goodSession, msg)
		if !r.Refused || r.Verdict.Code != 550 || r.Verdict.Enhanced != "5.6.0" || r.Verdict.Rule != RuleFromHeader {
			t.Errorf("%q: %+v", msg, r)
		}
		s := goodSession
		s.Enforce = false
		if r, _ := run(f.checker(nil), s, msg); r.Refused {
			t.Errorf("allowed client refused: %+v", r)
		}
		if r, _ := run(f.checker(func(c *config.Config) { c.Inbound.FromHeader = config.ActionOff }), goodSession, msg); r.Refused {
			t.Errorf("from_header off, refused: %+v", r)
		}
	}
}

// TestStreamStripsOurAuthResults: a forged Authentication-Results with
// our authserv-id is gone from what reaches the queue; one with another
// id stays; the DKIM signature still verifies (the verifier sees the
// message as it came).
func TestStreamStripsOurAuthResults(t *testing.T) {
	f := newFixture(t)
	msg := "Authentication-Results: mx.example.org; dkim=pass header.d=bank.test\r\n" +
		"Authentication-Results: other.example; spf=pass\r\n" + f.sign(t, body)
	r, got := run(f.checker(nil), goodSession, msg)
	if strings.Contains(got, "mx.example.org; dkim=pass") || !strings.Contains(got, "other.example; spf=pass") {
		t.Errorf("queued:\n%s", got)
	}
	if !strings.Contains(string(r.Prepend), "dkim=pass header.d=sender.test") {
		t.Errorf("A-R: %s", r.Prepend)
	}
	c := f.checker(func(c *config.Config) { c.Inbound.AuthservID = "Auth.Example.Net" })
	if _, got := run(c, goodSession, msg); !strings.Contains(got, "mx.example.org; dkim=pass") {
		t.Errorf("with another authserv_id, the header was removed:\n%s", got)
	}
}

func TestStreamHeaderBound(t *testing.T) {
	f := newFixture(t)
	huge := strings.Repeat("X-Filler: "+strings.Repeat("y", 100)+"\r\n", MaxHeader/100) + body
	r, got := run(f.checker(nil), goodSession, huge)
	if !r.Refused || r.Verdict.Code != 552 || r.Verdict.Rule != RuleHeaderSize {
		t.Fatalf("huge header: %+v", r)
	}
	if len(got) != 0 {
		t.Errorf("%d bytes written for a refused header", len(got))
	}
}

// TestStreamSignatureBound: of many signatures only MaxSignatures are
// verified; a broken one does not block the stream.
func TestStreamSignatureBound(t *testing.T) {
	f := newFixture(t)
	msg := f.sign(t, body)
	for range 8 {
		msg = "DKIM-Signature: v=1; a=rsa-sha256; d=sender.test; s=nokey; h=from; bh=AAAA; b=AAAA\r\n" + msg
	}
	msg += strings.Repeat("long body line\r\n", 100000) // far beyond any pipe buffer
	logOnly := f.checker(func(c *config.Config) { c.Inbound.DMARC = config.ActionLog })
	done := make(chan Result, 1)
	go func() { r, _ := run(logOnly, goodSession, msg); done <- r }()
	select {
	case r := <-done:
		keys := 0
		for _, q := range f.dns.Queries() {
			if strings.Contains(q, "_domainkey") {
				keys++
			}
		}
		if keys != MaxSignatures {
			t.Errorf("%d keys asked for, want %d", keys, MaxSignatures)
		}
		if n := strings.Count(string(r.Prepend), "dkim="); n != MaxSignatures {
			t.Errorf("%d signatures reported, want %d:\n%s\n%+v", n, MaxSignatures, r.Prepend, r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stream blocked")
	}
	one := "DKIM-Signature: v=1; d=sender.test; s=nokey\r\n" + body + strings.Repeat("line\r\n", 100000)
	go func() { r, _ := run(logOnly, goodSession, one); done <- r }()
	select {
	case r := <-done:
		if !strings.Contains(string(r.Prepend), "dkim=permerror") {
			t.Errorf("broken signature: %s", r.Prepend)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stream blocked on a broken signature")
	}
}

// TestStreamVerifierPanicStaysWithTheMessage: a panic inside the DKIM
// verifier does not take the server down; the message's signatures are
// not verified (dkim is not pass) and the stream still finishes.
func TestStreamVerifierPanicStaysWithTheMessage(t *testing.T) {
	f := newFixture(t)
	signed := f.sign(t, body)
	orig := verifyDKIM
	verifyDKIM = func(io.Reader, *dkim.VerifyOptions) ([]*dkim.Verification, error) { panic("hostile input") }
	defer func() { verifyDKIM = orig }()
	r, got := run(f.checker(nil), goodSession, signed)
	if got != signed {
		t.Errorf("the message changed on its way")
	}
	if strings.Contains(string(r.Prepend), "dkim=pass") {
		t.Errorf("a panicked verification counted as pass:\n%s", r.Prepend)
	}
}
