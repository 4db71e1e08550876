package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kanmon/internal/testutil/postfix"
)

// startPartner runs a private Postfix as the partner's primary MX for
// partner.test: it has the one mailbox known@partner.test and refuses
// every other recipient at RCPT with 550 5.1.1.
func startPartner(t *testing.T) *postfix.Instance {
	t.Helper()
	return postfix.Start(t, postfix.Options{
		Hostname: "mx.partner.test",
		Domain:   "partner.test",
		Delivery: postfix.Maildir,
		MainCF: "virtual_mailbox_maps = inline:{ { known@partner.test = inbox/ } }\n" +
			"smtpd_reject_unlisted_recipient = yes\n" +
			"unknown_virtual_mailbox_reject_code = 550\n" +
			"local_header_rewrite_clients =\n",
	})
}

// TestBackupMXVerifiesAtRcpt: kanmon as the backup MX of partner.test
// (relay_domains and a route, nothing else) asks the partner's real
// Postfix at RCPT. An unknown recipient is refused with the partner's
// 5.1.1, the second time from the cache without a probe; a known one is
// accepted and delivered; with the partner down an unverifiable
// recipient gets 450, and a recipient verified before is accepted,
// queued, and shown as verified by kanmon queue and kanmon trace.
// Nothing is ever dropped after a 250.
func TestBackupMXVerifiesAtRcpt(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks")
	partner := startPartner(t)
	s := startServer(t, options{set: map[string]string{
		"relay_domains":   `["partner.test"]`,
		"delivery.routes": `{ "partner.test" = "` + partner.Addr + `" }`,
	}})
	partnerHost, _, _ := net.SplitHostPort(partner.Addr)

	// An unknown recipient, from a real client: refused at RCPT with the
	// partner's own answer, nothing queued.
	out, _ := swaks(t, "--server", s.MX, "--from", "sender@remote.test", "--to", "nosuch@partner.test")
	if rs := swaksReplies(out); !hasReply(rs, 550, "5.1.1") || !strings.Contains(out, "User unknown") {
		t.Fatalf("unknown recipient: want 550 5.1.1 with the partner's words at RCPT:\n%s", out)
	}
	if ids := s.QueueIDs(t); len(ids) != 0 {
		t.Errorf("queue after a refused recipient: %v", ids)
	}
	// The second time the cache answers: one probe in all.
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<sender@remote.test>", 250, "2.1.0")
	r := c.Expect("RCPT TO:<nosuch@partner.test>", 550, "5.1.1")
	c.Expect("QUIT", 221, "2.0.0")
	s.WaitLog(t, "rcpt.verify from the cache", func(l logLine) bool {
		return l.str("msg") == "rcpt.verify" && l.str("conn") == r.ConnID() && l.str("source") == "cache" &&
			l.str("result") == "invalid" && l.str("addr") == "nosuch@partner.test"
	})
	probes := 0
	for _, l := range s.Logs(t) {
		if l.str("msg") == "rcpt.verify" && l.str("addr") == "nosuch@partner.test" && l.str("source") == "probe" {
			probes++
			if l.str("mx") != partnerHost || l.str("enhanced") != "5.1.1" {
				t.Errorf("probe line: %v", l)
			}
		}
	}
	if probes != 1 {
		t.Errorf("%d probes for nosuch@partner.test, want 1 (the second answer comes from the cache)", probes)
	}

	// A known recipient: accepted, queued and delivered to the partner.
	msgID := newMessageID(t)
	out, code := swaks(t, "--server", s.MX, "--from", "sender@remote.test", "--to", "known@partner.test",
		"--header", "Message-Id: "+msgID, "--header", "Subject: for the partner")
	if code != 0 {
		t.Fatalf("known recipient: swaks exit %d:\n%s", code, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !partnerHas(t, partner, msgID) {
		if time.Now().After(deadline) {
			t.Fatalf("the partner never got %s\n%s", msgID, s.LogTail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The partner down: an address never verified gets 450 4.1.1 (the
	// sender retries); the known one, cached, is accepted and queued.
	partner.Stop()
	c = dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<sender@remote.test>", 250, "2.1.0")
	c.Expect("RCPT TO:<other@partner.test>", 450, "4.1.1")
	c.Expect("RCPT TO:<known@partner.test>", 250, "2.1.5")
	rd := c.Data(message("sender@remote.test", "known@partner.test", "while the partner is down", newMessageID(t), "later\n"))
	checkReply(t, "end of DATA", rd, 250, "2.0.0")
	c.Expect("QUIT", 221, "2.0.0")
	id := queueIDOf(rd.Text())
	s.WaitLog(t, "rcpt.verify unverified", func(l logLine) bool {
		return l.str("msg") == "rcpt.verify" && l.str("addr") == "other@partner.test" && l.str("result") == "unverified" && l.str("reason") != ""
	})
	show := mustKanmon(t, s.Dir, "", "queue", "show", id, "--config", s.Config)
	if !strings.Contains(show, `verified="probe valid 250 2.1.5 via `+partnerHost+` (cache)"`) {
		t.Errorf("kanmon queue show does not show the verification:\n%s", show)
	}
	trace, code := runKanmon(t, s.Dir, "", "trace", id, "--log", s.LogPath)
	if code != 0 || !strings.Contains(trace, "verified <known@partner.test> by probe: valid (250 2.1.5) via "+partnerHost+", from the cache") {
		t.Errorf("kanmon trace (exit %d) does not show the verification:\n%s", code, trace)
	}

	for _, l := range s.Logs(t) {
		if l.str("msg") == "rcpt.verify" {
			t.Logf("verification of %s: %s %s in %vms", l.str("addr"), l.str("source"), l.str("result"), l["duration_ms"])
		}
	}
	m := scrape(t, s)
	for k, want := range map[string]float64{
		`kanmon_rcpt_verify_total{result="invalid",source="probe"}`:    1,
		`kanmon_rcpt_verify_total{result="invalid",source="cache"}`:    1,
		`kanmon_rcpt_verify_total{result="unverified",source="probe"}`: 1,
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	for _, l := range s.Logs(t) {
		if l.str("msg") == "queue" && l.str("op") == "dropped" {
			t.Errorf("a message was dropped after 250: %v", l)
		}
	}
}

// partnerHas reports whether the partner's Maildir holds the message.
func partnerHas(t *testing.T, p *postfix.Instance, msgID string) bool {
	msgs, err := p.Messages()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if strings.Contains(string(m), msgID) {
			return true
		}
	}
	return false
}

// TestBackupMXList: method = "list" decides from the file, edited while
// the server runs, and asks nobody.
func TestBackupMXList(t *testing.T) {
	t.Parallel()
	s := setupServer(t, options{set: map[string]string{"relay_domains": `["partner.test"]`}})
	list := filepath.Join(s.Dir, "partner.txt")
	if err := os.WriteFile(list, []byte("alice@partner.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	appendConfig(t, s.Config, "\n[relay_verify.\"partner.test\"]\nmethod = \"list\"\nlist = \"partner.txt\"\n")
	s.Start(t)
	t.Cleanup(func() { s.Stop(t) })
	c := dial(t, s.MX)
	c.Ehlo("client.remote.test")
	c.Expect("MAIL FROM:<sender@remote.test>", 250, "2.1.0")
	c.Expect("RCPT TO:<Alice@partner.test>", 250, "2.1.5")
	c.Expect("RCPT TO:<bob@partner.test>", 550, "5.1.1")
	c.Expect("QUIT", 221, "2.0.0")
	// An edit reaches the running server within a second or two.
	if err := os.WriteFile(list, []byte("alice@partner.test\nbob@partner.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Second)
	os.Chtimes(list, future, future)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dial(t, s.MX)
		c.Ehlo("client.remote.test")
		c.Expect("MAIL FROM:<sender@remote.test>", 250, "2.1.0")
		r := c.Cmd("RCPT TO:<bob@partner.test>")
		c.Close()
		if r.Code == 250 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob still refused after the list was edited: %v", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, l := range s.Logs(t) {
		if l.str("msg") == "rcpt.verify" && l.str("source") != "list" {
			t.Errorf("a list domain was verified otherwise: %v", l)
		}
	}
}

// appendConfig adds raw TOML at the end of a config file (tables the
// init template only shows as comments).
func appendConfig(t testing.TB, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// TestBackupMXCheckConfigWarns: unverified = "accept" passes
// check-config with a warning naming its line and the consequence.
func TestBackupMXCheckConfigWarns(t *testing.T) {
	t.Parallel()
	s := setupServer(t, options{set: map[string]string{"relay_domains": `["partner.test"]`}})
	appendConfig(t, s.Config, "\n[relay_verify.\"partner.test\"]\nunverified = \"accept\"\n")
	out, code := runKanmon(t, s.Dir, "", "check-config", "--config", s.Config)
	if code != 0 || !strings.Contains(out, `warning: `+s.Config+`:`) || !strings.Contains(out, `relay_verify."partner.test".unverified: `) ||
		!strings.Contains(out, "dropped") {
		t.Errorf("check-config (exit %d) does not warn about unverified = \"accept\":\n%s", code, out)
	}
}
