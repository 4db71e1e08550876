package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kanmon/internal/batv"
	"kanmon/internal/testutil/postfix"
)

// bounceWait bounds the round trip kanmon → Postfix → bounce → kanmon.
const bounceWait = 60 * time.Second

// TestBATVBounceFromPostfixIsDelivered: alice sends through submission to
// a real Postfix that takes the message and cannot deliver it (no such
// local user, found only after the message was accepted). kanmon's MAIL FROM carried alice's prvs tag,
// so Postfix's bounce goes to the tagged address, routed to kanmon's MX:
// kanmon checks the tag, accepts the bounce and delivers it into alice's
// Maildir with the tag removed.
func TestBATVBounceFromPostfixIsDelivered(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks")
	s := setupServer(t, options{})
	pf := postfix.Start(t, postfix.Options{
		Hostname: "mx.postfix.test", Domain: "postfix.test",
		MainCF: "local_recipient_maps =\n" +
			// Accepted at RCPT, then local(8) finds no such user and
			// Postfix bounces to the envelope sender.
			"local_transport = local\n" +
			// The bounce for example.org goes to kanmon's MX on loopback.
			"transport_maps = inline:{ example.org=smtp:[127.0.0.1]:" + portOf(s.MX) + " }\n",
	})
	editConfig(t, s.Config, map[string]string{"delivery.routes": `{ "postfix.test" = "` + pf.Addr + `" }`})
	s.Start(t)
	t.Cleanup(func() { s.Stop(t) })

	msgID := newMessageID(t)
	out, code := swaks(t, "--server", s.Submission, "-tls", "--auth", "PLAIN", "--auth-user", alice, "--auth-password", alicePassword,
		"--from", alice, "--to", "nosuch@postfix.test", "--header", "Message-Id: "+msgID, "--header", "Subject: will bounce")
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	deadline := time.Now().Add(bounceWait)
	var got []string
	for len(got) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no bounce for %s in alice's Maildir within %s\nkanmon:\n%s\npostfix:\n%s", msgID, bounceWait, s.LogTail(40), pf.Log())
		}
		time.Sleep(100 * time.Millisecond)
		got = maildirFind(s.Maildir(alice), msgID)
	}
	bounce := got[0]
	for _, want := range []string{"Return-Path: <>", "Delivered-To: " + alice, "unknown user"} {
		if !strings.Contains(bounce, want) {
			t.Errorf("bounce in the Maildir lacks %q:\n%s", want, bounce)
		}
	}
	if strings.Contains(strings.SplitN(bounce, "\r\n\r\n", 2)[0][:200], "prvs=") {
		t.Errorf("the Maildir copy's delivery headers show the tag:\n%s", bounce[:400])
	}
	// Postfix saw the tagged sender; kanmon accepted the bounce on a
	// valid tag, for the plain address.
	if !strings.Contains(pf.Log(), "from=<prvs=") {
		t.Errorf("Postfix's log shows no prvs-tagged sender:\n%s", pf.Log())
	}
	s.WaitLog(t, "accepted tagged bounce", func(l logLine) bool {
		return l.str("msg") == "decision" && l.str("rule") == "rcpt.local" && l.str("batv") == "valid" &&
			l.str("addr") == alice && strings.HasPrefix(l.str("tagged"), "prvs=")
	})
}

// TestBATVRefusesForgedBounces: bounces to alice without a tag, with a
// tag for another user, with an expired tag and with a forged signature
// are each refused at RCPT with 550 5.7.1 naming BATV; nothing is queued.
// A second recipient of a bounce gets 452 4.5.3. A valid tag is accepted
// and delivered to the plain address.
func TestBATVRefusesForgedBounces(t *testing.T) {
	t.Parallel()
	s := startServer(t, options{users: []string{"bob@" + domain}})
	kr, _, err := batv.OpenKeyring(filepath.Join(s.Dir, "data", "batv"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key := kr.Active(time.Now())
	tag := func(local string, at time.Time) string {
		return batv.Make(key.Secret, key.Num, at, local, domain) + "@" + domain
	}
	valid := tag("alice", time.Now())
	forged := valid[:len("prvs=")+4] + "000000" + valid[len("prvs=")+10:]
	if forged == valid {
		forged = valid[:len("prvs=")+4] + "ffffff" + valid[len("prvs=")+10:]
	}
	for _, c := range []struct{ name, rcpt, status string }{
		{"untagged", alice, "missing"},
		{"tag for another user", strings.Replace(valid, "=alice@", "=bob@", 1), "bad_signature"},
		{"expired tag", tag("alice", time.Now().Add(-8*24*time.Hour)), "expired"},
		{"forged signature", forged, "bad_signature"},
	} {
		out, _ := swaks(t, "--server", s.MX, "--from", "<>", "--to", c.rcpt)
		r := swaksReplies(out)
		if !hasReply(r, 550, "5.7.1") || !strings.Contains(out, "BATV") {
			t.Errorf("%s (%s): want 550 5.7.1 naming BATV at RCPT:\n%s", c.name, c.rcpt, out)
		}
		s.WaitLog(t, c.name+" decision", func(l logLine) bool {
			return l.str("msg") == "decision" && l.str("rule") == "rcpt.batv" && l.str("addr") == c.rcpt &&
				l.str("batv") == c.status && l.str("client") == "127.0.0.1" && l.str("helo") == "client.remote.test"
		})
	}
	if ids := s.QueueIDs(t); len(ids) != 0 {
		t.Errorf("refused bounces left queue files: %v", ids)
	}
	out, _ := swaks(t, "--server", s.MX, "--from", "<>", "--to", valid+","+tag("bob", time.Now()))
	if !hasReply(swaksReplies(out), 452, "4.5.3") {
		t.Errorf("second recipient of a bounce: want 452 4.5.3:\n%s", out)
	}
	msgID := newMessageID(t)
	out, code := swaks(t, "--server", s.MX, "--from", "<>", "--to", valid, "--header", "Message-Id: "+msgID)
	if code != 0 || !hasReply(swaksReplies(out), 250, "2.0.0") {
		t.Fatalf("bounce with a valid tag: exit %d:\n%s", code, out)
	}
	msg := waitMaildir(t, s.Maildir(alice), msgID)
	if !strings.Contains(msg, "Delivered-To: "+alice) {
		t.Errorf("delivered without the plain Delivered-To:\n%s", msg)
	}
}

// TestBATVTagsOutgoingSender: the MAIL FROM kanmon sends for alice carries
// her prvs tag (Postfix's smtp-sink records the envelope), while the
// queue keeps the plain sender.
func TestBATVTagsOutgoingSender(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks")
	sink := postfix.StartSink(t, "")
	s := startServer(t, options{set: map[string]string{"delivery.routes": `{ "remote.test" = "` + sink.Addr + `" }`}})
	msgID := newMessageID(t)
	out, code := swaks(t, "--server", s.Submission, "-tls", "--auth", "PLAIN", "--auth-user", alice, "--auth-password", alicePassword,
		"--from", alice, "--to", "friend@remote.test", "--header", "Message-Id: "+msgID)
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		msgs, _ := sink.Messages()
		for _, m := range msgs {
			if !strings.Contains(string(m), msgID) {
				continue
			}
			if !strings.Contains(string(m), "prvs=") || !strings.Contains(string(m), "=alice@example.org") {
				t.Fatalf("the envelope the sink got has no prvs tag for alice:\n%s", m)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink never got %s\n%s", msgID, s.LogTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBATVGraceAfterUpgrade: a data directory from a version without
// BATV (an account database, no BATV record) may still receive real
// bounces for untagged mail it sent: for one tag lifetime an untagged
// bounce is accepted and logged (rcpt.batv, action log, grace_until),
// while a forged tag is still refused.
func TestBATVGraceAfterUpgrade(t *testing.T) {
	t.Parallel()
	s := setupServer(t, options{})
	if err := os.RemoveAll(filepath.Join(s.Dir, "data", "batv")); err != nil {
		t.Fatal(err)
	}
	s.Start(t)
	t.Cleanup(func() { s.Stop(t) })
	s.WaitLog(t, "tagging_on with grace", func(l logLine) bool {
		return l.str("msg") == "batv" && l.str("op") == "tagging_on" && l.str("domain") == domain && l.str("grace_until") != ""
	})
	out, code := swaks(t, "--server", s.MX, "--from", "<>", "--to", alice)
	if code != 0 || !hasReply(swaksReplies(out), 250, "2.0.0") {
		t.Fatalf("untagged bounce during the grace period: exit %d:\n%s", code, out)
	}
	s.WaitLog(t, "logged untagged bounce", func(l logLine) bool {
		return l.str("msg") == "decision" && l.str("rule") == "rcpt.batv" && l.str("action") == "log" &&
			l.str("grace_until") != "" && l.str("batv") == "missing"
	})
	out, _ = swaks(t, "--server", s.MX, "--from", "<>", "--to", "prvs=0123abcdef=alice@"+domain)
	if !hasReply(swaksReplies(out), 550, "5.7.1") {
		t.Errorf("forged tag during the grace period: want 550 5.7.1:\n%s", out)
	}
}
