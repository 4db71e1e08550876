package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sendmailServer starts kanmon with the local socket on and the Unix user
// running the test mapped to alice.
func sendmailServer(t *testing.T) *server {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		skipOrFail(t, "no current user: %v", err)
	}
	return startServer(t, options{set: map[string]string{
		"sendmail.enabled": "true",
		"sendmail.users":   `{ "` + u.Username + `" = "` + alice + `" }`,
	}})
}

// runSendmail runs bin (kanmon itself, or a symlink to it named sendmail)
// with a message on stdin; it returns the combined output and exit status.
func runSendmail(t *testing.T, bin, stdin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	return string(out), 0
}

// sendmailLink makes a symlink named sendmail to the kanmon binary, as an
// installation at /usr/sbin/sendmail would.
func sendmailLink(t *testing.T) string {
	t.Helper()
	link := filepath.Join(t.TempDir(), "sendmail")
	if err := os.Symlink(kanmonBin, link); err != nil {
		t.Fatal(err)
	}
	return link
}

func TestSendmailDeliversLocalAndQueuesRemote(t *testing.T) {
	t.Parallel()
	s := sendmailServer(t)
	link := sendmailLink(t)
	for _, tc := range []struct {
		name string
		bin  string
		args []string
	}{
		{"kanmon sendmail -t -i", kanmonBin, []string{"sendmail", "-t", "-i", "-C", s.Config}},
		{"symlink sendmail -t -oi", link, []string{"-t", "-oi", "-F", "Cron Daemon", "-C", s.Config}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := newMessageID(t)
			// No From, Date or Message-ID of its own, as cron writes it;
			// the Message-ID is only in the body here so we can find it.
			msg := "To: " + alice + "\nCc: bob@remote.test\nBcc: hidden@remote.test\nSubject: cron output\n\n" +
				"marker " + id + "\n.\nafter a lone dot line\n"
			before := len(s.QueueIDs(t))
			out, code := runSendmail(t, tc.bin, msg, tc.args...)
			if code != 0 {
				t.Fatalf("exit status %d, want 0:\n%s", code, out)
			}
			got := waitMaildir(t, s.Maildir(alice), "marker "+id)
			for _, want := range []string{"with LOCAL", "after a lone dot line", "From: ", "Message-ID: ", "Date: ", "Return-Path: <" + alice + ">"} {
				if !strings.Contains(got, want) {
					t.Errorf("delivered message lacks %q:\n%s", want, got)
				}
			}
			if strings.Contains(got, "Bcc:") || strings.Contains(got, "hidden@") {
				t.Errorf("Bcc header not removed:\n%s", got)
			}
			if strings.Contains(got, "\r\n\r\n") && strings.Contains(strings.SplitN(got, "\r\n\r\n", 2)[1], "\n\n") {
				t.Errorf("bare LF line ends in the delivered message")
			}
			// bob and hidden at remote.test stay queued (DNS goes nowhere).
			if n := len(s.QueueIDs(t)); n != before+1 {
				t.Errorf("queue holds %d messages, want %d (the remote recipients)", n, before+1)
			}
		})
	}
}

func TestSendmailWithoutDashIStopsAtDot(t *testing.T) {
	t.Parallel()
	s := sendmailServer(t)
	id := newMessageID(t)
	msg := "Subject: dot\n\nmarker " + id + "\n.\nnot sent\n"
	out, code := runSendmail(t, kanmonBin, msg, "sendmail", "-C", s.Config, alice)
	if code != 0 {
		t.Fatalf("exit status %d:\n%s", code, out)
	}
	got := waitMaildir(t, s.Maildir(alice), "marker "+id)
	if strings.Contains(got, "not sent") {
		t.Errorf("a lone '.' line did not end the input without -i:\n%s", got)
	}
}

func TestSendmailForeignSenderRefused(t *testing.T) {
	t.Parallel()
	s := sendmailServer(t)
	out, code := runSendmail(t, sendmailLink(t), "Subject: forged\n\nhello\n", "-f", "ceo@example.org", "-C", s.Config, alice)
	if code == 0 {
		t.Fatalf("sendmail -f ceo@example.org exited 0, want non-zero:\n%s", out)
	}
	if !strings.Contains(out, "553") || !strings.Contains(out, "not owned") {
		t.Errorf("output does not explain the sender binding refusal:\n%s", out)
	}
	if ids := s.QueueIDs(t); len(ids) != 0 {
		t.Errorf("queue holds %v after a refused message", ids)
	}
}

func TestSendmailServerDown(t *testing.T) {
	t.Parallel()
	s := sendmailServer(t)
	s.Stop(t)
	out, code := runSendmail(t, sendmailLink(t), "To: "+alice+"\nSubject: down\n\nhello\n", "-t", "-C", s.Config)
	if code == 0 {
		t.Fatalf("sendmail with the server stopped exited 0:\n%s", out)
	}
	if !strings.Contains(out, "kanmon.sock") || !strings.Contains(out, "not sent") {
		t.Errorf("message does not name the socket and say nothing was sent:\n%s", out)
	}
	if ids := s.QueueIDs(t); len(ids) != 0 {
		t.Errorf("queue holds %v with the server down", ids)
	}
}
