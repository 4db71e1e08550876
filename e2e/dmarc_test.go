package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foxcpp/go-mockdns"
)

// The DATA stage's fixtures: signed.test publishes a DKIM key (selector
// sel) and DMARC p=reject, with SPF allowing goodIP; relay.test's SPF
// allows goodIP too but it publishes no DMARC (an unaligned envelope
// sender); junk.test publishes p=quarantine and nothing else.
const (
	authservID = "mx.kanmon.test"
	dkimSel    = "sel"
)

var dkimKey struct {
	once sync.Once
	key  *rsa.PrivateKey
}

// fixtureDKIMKey is the signing key of signed.test, made once per run.
func fixtureDKIMKey(t testing.TB) *rsa.PrivateKey {
	dkimKey.once.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		dkimKey.key = k
	})
	return dkimKey.key
}

// dmarcZones are the fixture records of the DATA stage's tests.
func dmarcZones(t testing.TB) map[string]mockdns.Zone {
	der, err := x509.MarshalPKIXPublicKey(&fixtureDKIMKey(t).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	mx := []net.MX{{Host: "mx.sender.test.", Pref: 10}}
	return map[string]mockdns.Zone{
		"signed.test.":                {MX: mx, TXT: []string{"v=spf1 ip4:127.0.0.8 -all"}},
		"sel._domainkey.signed.test.": {TXT: []string{"v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)}},
		"_dmarc.signed.test.":         {TXT: []string{"v=DMARC1; p=reject; rua=mailto:dmarc@signed.test"}},
		"relay.test.":                 {MX: mx, TXT: []string{"v=spf1 ip4:127.0.0.8 -all"}},
		"junk.test.":                  {MX: mx},
		"_dmarc.junk.test.":           {TXT: []string{"v=DMARC1; p=quarantine"}},
	}
}

// dkimSign signs msg for signed.test with python3-dkim's dkimsign (an
// independent implementation) and returns the signed message.
func dkimSign(t *testing.T, msg string) string {
	t.Helper()
	bin := needTool(t, "dkimsign")
	keyFile := filepath.Join(t.TempDir(), "dkim.pem")
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(fixtureDKIMKey(t))})
	if err := os.WriteFile(keyFile, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, dkimSel, "signed.test", keyFile)
	cmd.Stdin = strings.NewReader(msg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimsign: %v\n%s", err, stderr.String())
	}
	signed := strings.ReplaceAll(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n", "\r\n")
	if !strings.HasPrefix(signed, "DKIM-Signature:") {
		t.Fatalf("dkimsign gave no signature:\n%s", signed)
	}
	return signed
}

// sendFrom runs one transaction from the loopback address src and
// returns the reply to the end of DATA.
func sendFrom(t *testing.T, s *server, src, mailFrom, msg string) reply {
	t.Helper()
	c := dialFrom(t, src, s.MX)
	defer c.Close()
	c.Ehlo("mx.sender.test")
	c.Expect("MAIL FROM:<"+mailFrom+">", 250, "2.1.0")
	c.Expect("RCPT TO:<"+alice+">", 250, "2.1.5")
	return c.Data(msg)
}

func startDMARCServer(t *testing.T) *server {
	return startInboundServer(t, map[string]string{"inbound.authserv_id": `"` + authservID + `"`})
}

var arPass = regexp.MustCompile(`(?s)Authentication-Results: ` + regexp.QuoteMeta(authservID) +
	`;\s+spf=pass smtp\.mailfrom=signed\.test;\s+dkim=pass header\.d=signed\.test (?:header\.i=@signed\.test )?header\.s=sel;\s+dmarc=pass header\.from=signed\.test\r\n`)

// TestDMARCPassDelivered: a clean message from a well-configured sender
// (good FCrDNS, SPF pass, signed by python3-dkim, DMARC p=reject) is
// delivered with our Authentication-Results saying spf, dkim and dmarc
// pass. A forged Authentication-Results claiming our authserv-id is gone
// from the delivered copy; one of another authserv-id stays.
func TestDMARCPassDelivered(t *testing.T) {
	t.Parallel()
	s := startDMARCServer(t)
	msgID := newMessageID(t)
	signed := dkimSign(t, message("Bob <bob@signed.test>", alice, "signed", msgID, "Hello from signed.test.\n"))
	forged := "Authentication-Results: " + authservID + "; dkim=pass header.d=bank.test\r\n" +
		"Authentication-Results: other.test; spf=pass smtp.mailfrom=x.test\r\n"
	if r := sendFrom(t, s, goodIP, "bob@signed.test", forged+signed); r.Code != 250 {
		t.Fatalf("clean message refused: %v\n%s", r, s.LogTail(20))
	}
	got := waitMaildir(t, s.Maildir(alice), msgID)
	if !arPass.MatchString(got) {
		t.Errorf("delivered without spf, dkim and dmarc pass:\n%s", got)
	}
	if strings.Contains(got, "header.d=bank.test") {
		t.Errorf("the forged Authentication-Results claiming %s was delivered:\n%s", authservID, got)
	}
	if !strings.Contains(got, "Authentication-Results: other.test; spf=pass") {
		t.Errorf("another authserv-id's Authentication-Results was removed:\n%s", got)
	}
	if l := expectDecision(t, s, "dmarc.pass", ""); l.str("domain") != "signed.test" {
		t.Errorf("dmarc.pass line: %v", l)
	}
}

// TestDMARCRejectTampered: the signed message changed after signing,
// sent with an envelope sender whose SPF passes but is not aligned: DKIM
// fails, DMARC fails, and signed.test's p=reject gives 550 5.7.1 at the
// end of DATA with its decision line.
func TestDMARCRejectTampered(t *testing.T) {
	t.Parallel()
	s := startDMARCServer(t)
	signed := dkimSign(t, message("bob@signed.test", alice, "tampered", newMessageID(t), "Pay 10 EUR.\n"))
	tampered := strings.Replace(signed, "Pay 10 EUR.", "Pay 99 EUR.", 1)
	r := sendFrom(t, s, goodIP, "bob@relay.test", tampered)
	checkRefusal(t, s, []reply{r}, 550, "5.7.1", "data.dmarc", "signed.test")
	s.WaitLog(t, "dkim fail recorded", func(l logLine) bool {
		return l.str("msg") == "decision" && l.str("rule") == "data.dkim" && strings.Contains(l.str("dkim"), "fail d=signed.test s=sel")
	})
}

// TestDMARCQuarantine: a p=quarantine failure is accepted and lands in
// the recipient's .Junk folder, marked.
func TestDMARCQuarantine(t *testing.T) {
	t.Parallel()
	s := startDMARCServer(t)
	msgID := newMessageID(t)
	if r := sendFrom(t, s, goodIP, "bob@relay.test", message("bob@junk.test", alice, "junk", msgID, "Buy now.\n")); r.Code != 250 {
		t.Fatalf("p=quarantine failure refused: %v", r)
	}
	junk := filepath.Join(filepath.Dir(s.Maildir(alice)), ".Junk", "new")
	got := waitMaildir(t, junk, msgID)
	if !strings.Contains(got, "X-Kanmon-Quarantine: dmarc") || !strings.Contains(got, "dmarc=fail header.from=junk.test") {
		t.Errorf("quarantined message not marked:\n%s", got)
	}
	if len(maildirFind(s.Maildir(alice), msgID)) != 0 {
		t.Errorf("the quarantined message is in the inbox too")
	}
	if l := expectDecision(t, s, "data.dmarc", ""); l.str("action") != "quarantine" {
		t.Errorf("decision line: %v", l)
	}
}

// TestDMARCFromHeader: a header From: with two addresses, or none, gets
// 550 5.6.0 at the end of DATA.
func TestDMARCFromHeader(t *testing.T) {
	t.Parallel()
	s := startDMARCServer(t)
	two := message("bob@signed.test, eve@evil.test", alice, "two", newMessageID(t), "x\n")
	none := strings.Replace(message("x@y.test", alice, "none", newMessageID(t), "x\n"), "From: x@y.test\r\n", "", 1)
	for _, msg := range []string{two, none} {
		r := sendFrom(t, s, goodIP, "bob@signed.test", msg)
		checkRefusal(t, s, []reply{r}, 550, "5.6.0", "data.from_header", "From:")
	}
}

// TestDKIMVerdictMatchesDkimpy: our DKIM verdict equals python3-dkim's
// dkimverify on the same fixtures, signed and tampered.
func TestDKIMVerdictMatchesDkimpy(t *testing.T) {
	t.Parallel()
	dnsAddr := startFixtureDNS(t).Addr
	s := startInboundServer(t, map[string]string{"inbound.authserv_id": `"` + authservID + `"`, "inbound.dmarc": `"log"`,
		"dns.server": `"` + dnsAddr + `"`})
	signed := dkimSign(t, message("bob@signed.test", alice, "verdicts", newMessageID(t), "Same bytes for both.\n"))
	for _, tc := range []struct {
		name, msg, body string
	}{
		{"signed", signed, "Same bytes"},
		{"tampered", strings.Replace(signed, "Same bytes", "Other bytes", 1), "Other bytes"},
	} {
		theirs := "fail"
		if strings.Contains(dkimpy(t, dnsAddr, []byte(tc.msg)), "rsa-sha256 ok") {
			theirs = "pass"
		}
		if r := sendFrom(t, s, goodIP, "bob@relay.test", tc.msg); r.Code != 250 {
			t.Fatalf("%s: %v", tc.name, r)
		}
		got := waitMaildir(t, s.Maildir(alice), tc.body)
		ours := regexp.MustCompile(`dkim=(\w+) `).FindStringSubmatch(got)
		if ours == nil || ours[1] != theirs {
			t.Errorf("%s: python3-dkim says %s, we say %v:\n%s", tc.name, theirs, ours, got)
		}
		if want := map[string]string{"signed": "pass", "tampered": "fail"}[tc.name]; theirs != want {
			t.Errorf("%s: python3-dkim says %s, want %s", tc.name, theirs, want)
		}
	}
}
