package audit

import (
	"reflect"
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	got, err := ParsePorts("2525/smtp, 2587/submission,2465/SMTPS,2110/pop3,2995/pop3s,993")
	if err != nil {
		t.Fatal(err)
	}
	want := []PortSpec{{2525, RoleSMTP}, {2587, RoleSubmission}, {2465, RoleSMTPS}, {2110, RolePOP3}, {2995, RolePOP3S}, {993, RoleIMAPS}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParsePorts = %v, want %v", got, want)
	}
	for _, tc := range []struct{ in, err string }{
		{"2525", "not a standard port"},
		{"25/smtpx", "unknown role"},
		{"x/smtp", "not a port number"},
		{"70000/smtp", "not a port number"},
		{"25,25/smtp", "given twice"},
		{",", "names no port"},
	} {
		if _, err := ParsePorts(tc.in); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParsePorts(%q) = %v, want error containing %q", tc.in, err, tc.err)
		}
	}
}

// TestNoPortOpenIsAnError: when no port answers, the audit did not run.
func TestNoPortOpenIsAnError(t *testing.T) {
	_, err := Run(t.Context(), Options{Target: "127.0.0.1", Domain: "local.test", SkipDNS: true,
		Ports: []PortSpec{{1, RoleSMTP}, {3, RolePOP3S}}})
	if err == nil || !strings.Contains(err.Error(), "connecting to") {
		t.Errorf("Run with no open port: %v", err)
	}
}
