package e2e

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"kanmon/internal/testutil/smtppeer"
)

// parsedDSN is what Python's email package (testdata/parse_dsn.py) found
// in one message: field names map to every value the field had.
type parsedDSN struct {
	File            string                `json:"file"`
	ContentType     string                `json:"content_type"`
	ReportType      string                `json:"report_type"`
	IsMultipart     bool                  `json:"is_multipart"`
	Headers         map[string][]string   `json:"headers"`
	Defects         []string              `json:"defects"`
	Parts           []string              `json:"parts"`
	Text            string                `json:"text"`
	PerMessage      map[string][]string   `json:"per_message"`
	Recipients      []map[string][]string `json:"recipients"`
	DatesOK         map[string]bool       `json:"dates_ok"`
	OriginalHeaders map[string][]string   `json:"original_headers"`
}

// one returns the single value of a field, failing the test when the
// field is missing or repeated (RFC 3464 allows each field once per block).
func one(t *testing.T, what string, f map[string][]string, name string) string {
	t.Helper()
	v := f[name]
	if len(v) != 1 {
		t.Errorf("%s: field %s appears %d times (%q), want once", what, name, len(v), v)
		return ""
	}
	return v[0]
}

// parseDSNs runs Python's email package over the files.
func parseDSNs(t *testing.T, files []string) []parsedDSN {
	t.Helper()
	py := needTool(t, "python3")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, append([]string{filepath.Join("testdata", "parse_dsn.py")}, files...)...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("python3 parse_dsn.py: %v\n%s", err, stderr)
	}
	var got []parsedDSN
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("parse_dsn.py output: %v\n%s", err, out)
	}
	return got
}

var (
	statusRE = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)
	// reportingMTARE: RFC 3464 2.2.2, "dns;" then our hostname.
	reportingMTARE = regexp.MustCompile(`^dns; ?` + regexp.QuoteMeta(hostname) + `$`)
)

// TestDSNsParsedByPython: alice submits one message to two recipients at
// a next hop that refuses one (550 5.1.1) and defers the other (451
// 4.2.0). She gets a "failed" DSN at once and, after delay_warning, a
// "delayed" one. Both are read from her Maildir by Python's email package,
// a MIME parser that is not ours, and must be what RFC 3462 and RFC 3464
// say: multipart/report; report-type=delivery-status with three parts
// (human text, message/delivery-status, text/rfc822-headers); a
// per-message block with Reporting-MTA and Arrival-Date; per recipient
// Final-Recipient, Action, Status (class matching the action) and
// Diagnostic-Code carrying the peer's reply; the original headers in the
// third part; no parser defects.
func TestDSNsParsedByPython(t *testing.T) {
	t.Parallel()
	needTool(t, "python3")
	const (
		gone      = "gone@remote.test"
		later     = "later@remote.test"
		goneReply = "550 5.1.1 no such user here"
		lateReply = "451 4.2.0 mailbox busy, try again later"
	)
	peer := smtppeer.Start(t, &smtppeer.Peer{Rcpt: func(_ int, addr string) string {
		switch addr {
		case gone:
			return goneReply
		case later:
			return lateReply
		}
		return ""
	}})
	s := startServer(t, options{set: map[string]string{
		"delivery.routes":        `{ "remote.test" = "` + peer.Addr + `" }`,
		"delivery.delay_warning": `"1s"`,
		"queue.retry_min":        `"1s"`,
	}})
	msgID := newMessageID(t)
	const subject = "DSN parsed by Python"
	out, code := swaks(t, "--server", s.Submission, "-tls", "--auth", "PLAIN", "--auth-user", alice, "--auth-password", alicePassword,
		"--from", alice, "--to", gone+","+later, "--header", "Message-Id: "+msgID, "--header", "Subject: "+subject)
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}

	files := waitDSNFiles(t, s.Maildir(alice), msgID, 2)
	byAction := map[string]parsedDSN{}
	for _, d := range parseDSNs(t, files) {
		checkReportShape(t, d)
		if len(d.Recipients) != 1 {
			t.Fatalf("%s: %d recipient blocks, want 1: %+v", d.File, len(d.Recipients), d.Recipients)
		}
		byAction[one(t, d.File, d.Recipients[0], "Action")] = d
	}
	failed, ok := byAction["failed"]
	if !ok {
		t.Fatalf("no DSN with Action: failed among %v", slices.Sorted(maps.Keys(byAction)))
	}
	checkRecipient(t, failed, gone, "5.1.1", goneReply)
	if one(t, failed.File, failed.Headers, "Subject") != "Undelivered Mail Returned to Sender" {
		t.Errorf("failed DSN subject %q", failed.Headers["Subject"])
	}
	delayed, ok := byAction["delayed"]
	if !ok {
		t.Fatalf("no DSN with Action: delayed among %v", slices.Sorted(maps.Keys(byAction)))
	}
	checkRecipient(t, delayed, later, "4.2.0", lateReply)
	if _, ok := delayed.Recipients[0]["Will-Retry-Until"]; !ok {
		t.Errorf("delayed DSN has no Will-Retry-Until: %v", delayed.Recipients[0])
	}
	for _, d := range []parsedDSN{failed, delayed} {
		if got := one(t, d.File, d.OriginalHeaders, "Message-Id"); got != msgID {
			t.Errorf("%s: third part's Message-Id %q, want %q", d.File, got, msgID)
		}
		if got := one(t, d.File, d.OriginalHeaders, "Subject"); got != subject {
			t.Errorf("%s: third part's Subject %q, want %q", d.File, got, subject)
		}
	}
}

// checkReportShape asserts what every DSN must be, whatever its action.
func checkReportShape(t *testing.T, d parsedDSN) {
	t.Helper()
	if len(d.Defects) != 0 {
		t.Errorf("%s: Python's parser found defects %v", d.File, d.Defects)
	}
	if d.ContentType != "multipart/report" || d.ReportType != "delivery-status" {
		t.Fatalf("%s: content type %s; report-type=%q, want multipart/report; report-type=delivery-status", d.File, d.ContentType, d.ReportType)
	}
	if want := []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}; !slices.Equal(d.Parts, want) {
		t.Fatalf("%s: parts %v, want %v", d.File, d.Parts, want)
	}
	if rp := one(t, d.File, d.Headers, "Return-Path"); rp != "<>" {
		t.Errorf("%s: Return-Path %q, want <> (a DSN comes from the null sender)", d.File, rp)
	}
	if got := one(t, d.File, d.Headers, "To"); !strings.Contains(got, alice) {
		t.Errorf("%s: To %q, want the sender %s", d.File, got, alice)
	}
	if got := one(t, d.File, d.Headers, "Auto-Submitted"); got != "auto-replied" {
		t.Errorf("%s: Auto-Submitted %q, want auto-replied (RFC 3834)", d.File, got)
	}
	if got := one(t, d.File, d.PerMessage, "Reporting-MTA"); !reportingMTARE.MatchString(got) {
		t.Errorf("%s: Reporting-MTA %q, want \"dns; %s\"", d.File, got, hostname)
	}
	one(t, d.File, d.PerMessage, "Arrival-Date")
	if len(d.DatesOK) == 0 {
		t.Errorf("%s: no dates in the delivery-status part", d.File)
	}
	for field, ok := range d.DatesOK {
		if !ok {
			t.Errorf("%s: %s is not an RFC 5322 date", d.File, field)
		}
	}
	if !strings.Contains(d.Text, "could not be delivered") {
		t.Errorf("%s: first part does not tell a person what happened: %q", d.File, d.Text)
	}
}

// checkRecipient asserts the one recipient block of a DSN.
func checkRecipient(t *testing.T, d parsedDSN, addr, status, reply string) {
	t.Helper()
	r := d.Recipients[0]
	if got := one(t, d.File, r, "Final-Recipient"); got != "rfc822; "+addr {
		t.Errorf("%s: Final-Recipient %q, want \"rfc822; %s\"", d.File, got, addr)
	}
	got := one(t, d.File, r, "Status")
	if !statusRE.MatchString(got) || got != status {
		t.Errorf("%s: Status %q, want %s", d.File, got, status)
	}
	action := one(t, d.File, r, "Action")
	if wantClass := map[string]byte{"failed": '5', "delayed": '4'}[action]; got == "" || got[0] != wantClass {
		t.Errorf("%s: Status %q does not fit Action %q (RFC 3464 2.3.4)", d.File, got, action)
	}
	if diag := one(t, d.File, r, "Diagnostic-Code"); diag != "smtp; "+reply {
		t.Errorf("%s: Diagnostic-Code %q, want \"smtp; %s\"", d.File, diag, reply)
	}
}

// waitDSNFiles waits until n messages in dir mention msgID (a DSN carries
// the original headers) and returns their paths.
func waitDSNFiles(t *testing.T, dir, msgID string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var files []string
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), msgID) {
				files = append(files, p)
			}
		}
		if len(files) >= n {
			if len(files) > n {
				t.Fatalf("%d messages about %s in %s, want %d (one failed, one delayed)", len(files), msgID, dir, n)
			}
			return files
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d DSNs about %s in %s within 20s", len(files), n, msgID, dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
