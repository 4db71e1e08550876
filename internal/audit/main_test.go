package audit

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/foxcpp/go-mockdns"
)

func TestMainExitStatus(t *testing.T) {
	closed := (&fakeSMTP{Rcpt: closedRcpt, Ext: []string{"PIPELINING"}}).start(t)
	open := (&fakeSMTP{Rcpt: func(string) string { return "250 Ok" }}).start(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	nobody := ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name string
		args []string
		want int
		out  string // substring of stdout
		err  string // substring of stderr
	}{
		{"closed", []string{"audit", closed, "--domain", "local.test", "--no-dns"}, ExitClean, "result: PASS", ""},
		{"flags first", []string{"--no-dns", "--domain=local.test", closed}, ExitClean, "result: PASS", ""},
		{"open relay", []string{"audit", open, "--domain", "local.test", "--no-dns"}, ExitHigh, "[CRITICAL] relay.plain", ""},
		{"json", []string{open, "--json", "--domain", "local.test", "--no-dns", "--known-user", "alice"}, ExitHigh, `"id": "relay.plain"`, ""},
		{"no domain", []string{"audit", closed}, ExitError, "", "--domain is required"},
		{"no host", []string{"audit", "--domain", "local.test"}, ExitError, "", "exactly one HOST"},
		{"two hosts", []string{"audit", closed, closed, "--domain", "local.test"}, ExitError, "", "exactly one HOST"},
		{"bad flag", []string{"audit", closed, "--domian", "x"}, ExitError, "", "flag provided but not defined"},
		{"help", []string{"audit", "-h"}, ExitClean, "", "usage: kanmon audit"},
		{"nobody listening", []string{"audit", nobody, "--domain", "local.test", "--no-dns", "--timeout", "2s"}, ExitError, "", "connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			got := Main(tc.args, &stdout, &stderr)
			if got != tc.want {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", got, tc.want, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.out) {
				t.Errorf("stdout lacks %q:\n%s", tc.out, stdout.String())
			}
			if !strings.Contains(stderr.String(), tc.err) {
				t.Errorf("stderr lacks %q:\n%s", tc.err, stderr.String())
			}
		})
	}
}

func TestMainJSONIsOneDocument(t *testing.T) {
	open := (&fakeSMTP{Rcpt: func(string) string { return "250 Ok" }}).start(t)
	var stdout bytes.Buffer
	if got := Main([]string{open, "--json", "--domain", "local.test", "--no-dns"}, &stdout, io.Discard); got != ExitHigh {
		t.Fatalf("exit %d", got)
	}
	var rep Report
	dec := json.NewDecoder(&stdout)
	if err := dec.Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if dec.More() {
		t.Error("more than one JSON document on stdout")
	}
	if !rep.HasHigh() || rep.Domain != "local.test" {
		t.Errorf("report %+v", rep)
	}
}

// TestMainUsesDNSServer proves --dns-server and --dnsbl reach a real DNS
// server on loopback.
func TestMainUsesDNSServer(t *testing.T) {
	srv, err := mockdns.NewServerWithLogger(map[string]mockdns.Zone{
		"local.test.":        {MX: []net.MX{{Host: "mx.local.test.", Pref: 10}}, TXT: []string{"v=spf1 +all"}},
		"_dmarc.local.test.": {TXT: []string{"v=DMARC1; p=reject"}},
		"1.0.0.127.bl.test.": {A: []string{"127.0.0.4"}, TXT: []string{"open relay seen"}},
	}, discardLogger{}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	closed := (&fakeSMTP{Rcpt: closedRcpt}).start(t)
	var stdout, stderr bytes.Buffer
	got := Main([]string{closed, "--domain", "local.test", "--dns-server", srv.LocalAddr().String(), "--dnsbl", "bl.test"}, &stdout, &stderr)
	if got != ExitHigh {
		t.Errorf("exit %d, want %d (SPF +all and a DNSBL listing)\n%s\n%s", got, ExitHigh, stdout.String(), stderr.String())
	}
	for _, want := range []string{"dns.spf-pass-all", "dnsbl.listed.bl.test", "open relay seen"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, stdout.String())
		}
	}
	if strings.Contains(stdout.String(), "dns.mx-missing") || strings.Contains(stdout.String(), "dns.dmarc") {
		t.Errorf("MX or DMARC reported although the server has them:\n%s", stdout.String())
	}
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
