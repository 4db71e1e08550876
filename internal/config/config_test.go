package config_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"kanmon/internal/config"
	"kanmon/internal/policy"
)

// base is a minimal valid configuration: everything else is defaulted.
const base = `hostname = "mx.example.org"
domains = ["example.org"]
`

func TestParseMinimalValid(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(base), "/etc/kanmon/kanmon.toml")
	if err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	if c.Hostname != "mx.example.org" || len(c.Domains) != 1 || c.Domains[0] != "example.org" {
		t.Errorf("hostname %q, domains %v", c.Hostname, c.Domains)
	}
	// Absent keys keep the safe defaults (law 7).
	d := config.Default()
	if len(c.TrustedNetworks) != 0 || len(c.Trusted) != 0 {
		t.Errorf("default trusted networks %v: want none", c.TrustedNetworks)
	}
	if c.POP3.AllowPlaintextAuth || c.POP3.PopBeforeSMTP.Duration != 0 || c.POP3.PopBeforeSMTPOnMX {
		t.Errorf("POP3 defaults %+v: want plaintext off and POP-before-SMTP off", c.POP3)
	}
	if !reflect.DeepEqual(c.Limits, d.Limits) || c.Queue != d.Queue {
		t.Errorf("limits/queue differ from Default(): %+v %+v", c.Limits, c.Queue)
	}
	if c.Path != "/etc/kanmon/kanmon.toml" {
		t.Errorf("Path = %q", c.Path)
	}
}

// relayBase relays partner.test and opens its [relay_verify] table.
const relayBase = base + "relay_domains = [\"partner.test\"]\n\n[relay_verify.\"partner.test\"]\n"

// badCase is one broken configuration and the error it must produce.
type badCase struct {
	name string
	toml string
	key  string // the key named in the error
	at   string // a substring of the line the error must point to ("" = no line)
	msg  string // a substring of the error text
}

func badCases() []badCase {
	sec := func(table string, lines ...string) string {
		return base + "\n[" + table + "]\n" + strings.Join(lines, "\n") + "\n"
	}
	cases := []badCase{
		// validate(): one case per rule.
		{name: "stress threshold above 100", toml: sec("limits", "stress_threshold = 101"), key: "limits.stress_threshold", at: "stress_threshold =", msg: "at most 100"},
		{name: "stress threshold zero", toml: sec("limits", "stress_threshold = 0"), key: "limits.stress_threshold", at: "stress_threshold =", msg: "at least 1"},
		{name: "stress max errors zero", toml: sec("limits", "stress_max_errors = 0"), key: "limits.stress_max_errors", at: "stress_max_errors =", msg: "at least 1"},
		{name: "stress command timeout too short", toml: sec("limits", `stress_command_timeout = "100ms"`), key: "limits.stress_command_timeout", at: "stress_command_timeout =", msg: "at least 1s"},
		{name: "listener pool of an unknown listener", toml: sec("limits", "max_connections_by_listener = { imap = 10 }"), key: "limits.max_connections_by_listener", at: "max_connections_by_listener =", msg: `"imap" is not a listener`},
		{name: "listener pool of zero", toml: sec("limits", "max_connections_by_listener = { mx = 0 }"), key: "limits.max_connections_by_listener", at: "max_connections_by_listener =", msg: "mx = 0: must be at least 1"},
		{name: "hostname not a host name", toml: "domains = [\"example.org\"]\nhostname = \"mx example.org\"\n", key: "hostname", at: "hostname =", msg: "not a valid host name"},
		{name: "hostname empty", toml: "domains = [\"example.org\"]\nhostname = \"\"\n", key: "hostname", at: "hostname =", msg: "not a valid host name"},
		{name: "hostname label starts with dash", toml: "domains = [\"example.org\"]\nhostname = \"-mx.example.org\"\n", key: "hostname", at: "hostname =", msg: "not a valid host name"},
		{name: "hostname label too long", toml: "domains = [\"example.org\"]\nhostname = \"" + strings.Repeat("a", 64) + ".org\"\n", key: "hostname", at: "hostname =", msg: "not a valid host name"},
		{name: "domain not a host name", toml: "hostname = \"mx.example.org\"\ndomains = [\"example.org\", \"exa_mple.org\"]\n", key: "domains", at: "domains =", msg: `"exa_mple.org" is not a valid domain`},
		{name: "domain bad literal", toml: "hostname = \"mx.example.org\"\ndomains = [\"[300.1.1.1]\"]\n", key: "domains", at: "domains =", msg: "not a valid domain"},
		{name: "relay domain not a host name", toml: base + "relay_domains = [\"partner..example\"]\n", key: "relay_domains", at: "relay_domains =", msg: "not a valid domain"},
		{name: "relay domain also local", toml: base + "relay_domains = [\"Example.ORG\"]\n", key: "relay_domains", at: "relay_domains =", msg: "also in domains"},
		{name: "trusted network not a network", toml: base + "trusted_networks = [\"192.0.2.0/33\"]\n", key: "trusted_networks", at: "trusted_networks =", msg: "not an address or CIDR network"},
		{name: "trusted network a name", toml: base + "trusted_networks = [\"localhost\"]\n", key: "trusted_networks", at: "trusted_networks =", msg: "not an address or CIDR network"},
		{name: "trusted network whole IPv4 Internet", toml: base + "trusted_networks = [\"0.0.0.0/0\"]\n", key: "trusted_networks", at: "trusted_networks =", msg: "open relay"},
		{name: "trusted network IPv4 /7", toml: base + "trusted_networks = [\"10.0.0.0/7\"]\n", key: "trusted_networks", at: "trusted_networks =", msg: "open relay"},
		{name: "trusted network whole IPv6 Internet", toml: base + "trusted_networks = [\"::/0\"]\n", key: "trusted_networks", at: "trusted_networks =", msg: "open relay"},
		{name: "trusted network IPv6 /15", toml: base + "trusted_networks = [\"2001::/15\"]\n", key: "trusted_networks", at: "trusted_networks =", msg: "open relay"},
		{name: "data_dir empty", toml: base + "data_dir = \"\"\n", key: "data_dir", at: "data_dir =", msg: "must be set"},
		{name: "log_format unknown", toml: base + "log_format = \"xml\"\n", key: "log_format", at: "log_format =", msg: `use "json" or "text"`},
		{name: "log_level unknown", toml: base + "log_level = \"trace\"\n", key: "log_level", at: "log_level =", msg: "debug, info, warn or error"},
		{name: "tls.cert empty", toml: sec("tls", `cert = ""`, `key = "key.pem"`), key: "tls.cert", at: "cert =", msg: "need a certificate and key"},
		{name: "tls.key empty", toml: sec("tls", `cert = "cert.pem"`, `key = ""`), key: "tls.key", at: "key =", msg: "need a certificate and key"},
		{name: "pop_before_smtp negative", toml: sec("pop3", `pop_before_smtp = "-1s"`), key: "pop3.pop_before_smtp", at: "pop_before_smtp =", msg: "must not be negative"},
		{name: "max_line_length too large", toml: sec("limits", `max_line_length = 1048577`), key: "limits.max_line_length", at: "max_line_length =", msg: "at most 1048576"},
		{name: "max_data_line_length too large", toml: sec("limits", `max_data_line_length = 16777217`), key: "limits.max_data_line_length", at: "max_data_line_length =", msg: "at most 16777216"},

		// [delivery] (validateDelivery).
		{name: "route to a bad domain", toml: sec("delivery", `routes = { "partner..example" = "192.0.2.25:25" }`), key: "delivery.routes", at: "routes =", msg: "not a valid domain"},
		{name: "route without port", toml: sec("delivery", `routes = { "partner.example" = "192.0.2.25" }`), key: "delivery.routes", at: "routes =", msg: "is not HOST:PORT"},
		{name: "route without host", toml: sec("delivery", `routes = { "partner.example" = ":25" }`), key: "delivery.routes", at: "routes =", msg: "is not HOST:PORT"},
		{name: "route port zero", toml: sec("delivery", `routes = { "partner.example" = "192.0.2.25:0" }`), key: "delivery.routes", at: "routes =", msg: "from 1 to 65535"},
		{name: "route as a sub-table", toml: base + "\n[delivery.routes]\n\"partner..example\" = \"192.0.2.25:25\"\n", key: "delivery.routes", at: `"partner..example" =`, msg: "not a valid domain"},
		{name: "route without port in a sub-table", toml: base + "\n[delivery.routes]\n\"partner.example\" = \"192.0.2.25\"\n", key: "delivery.routes", at: `"partner.example" =`, msg: "is not HOST:PORT"},
		{name: "smarthost without port", toml: sec("delivery", `smarthost = "smtp.example.net"`), key: "delivery.smarthost", at: "smarthost =", msg: "is not HOST:PORT"},
		{name: "smarthost port too large", toml: sec("delivery", `smarthost = "smtp.example.net:99999"`), key: "delivery.smarthost", at: "smarthost =", msg: "from 1 to 65535"},
		{name: "smarthost user without password file", toml: sec("delivery", `smarthost = "smtp.example.net:587"`, `smarthost_user = "relay"`), key: "delivery.smarthost_user", at: "smarthost_user =", msg: "go together"},
		{name: "smarthost credentials without smarthost", toml: sec("delivery", `smarthost_user = "relay"`, `smarthost_password_file = "pw"`), key: "delivery.smarthost_user", at: "smarthost_user =", msg: "without delivery.smarthost"},
		{name: "helo_name invalid", toml: sec("delivery", `helo_name = "mx example"`), key: "delivery.helo_name", at: "helo_name =", msg: "not a valid host name"},
		{name: "delay_warning negative", toml: sec("delivery", `delay_warning = "-1h"`), key: "delivery.delay_warning", at: "delay_warning =", msg: "must not be negative"},
		{name: "dns_server not an address", toml: sec("delivery", `dns_server = "dns.example"`), key: "delivery.dns_server", at: "dns_server =", msg: "not an address"},
		{name: "old dns_server differs from dns.server", toml: base + "\n[delivery]\ndns_server = \"127.0.0.1:5353\"\n\n[dns]\nserver = \"127.0.0.1:53\"\n", key: "delivery.dns_server", at: "dns_server =", msg: `differs from dns.server "127.0.0.1:53"`},

		// [dns] (validateDNS).
		{name: "dns server not an address", toml: sec("dns", `server = "dns.example"`), key: "dns.server", at: "server =", msg: "not an address"},
		{name: "dns timeout too short", toml: sec("dns", `timeout = "10ms"`), key: "dns.timeout", at: "timeout =", msg: "from 100ms to 1m"},
		{name: "dns timeout too long", toml: sec("dns", `timeout = "5m"`), key: "dns.timeout", at: "timeout =", msg: "from 100ms to 1m"},
		{name: "dns timeout not a duration", toml: sec("dns", `timeout = 5`), key: "dns.timeout", at: "timeout =", msg: "is not a duration"},
		{name: "transaction_timeout too short", toml: sec("delivery", `transaction_timeout = "10s"`), key: "delivery.transaction_timeout", at: "transaction_timeout =", msg: "at least 1m"},

		// [verify] and [relay_verify."DOMAIN"] (validateVerify).
		{name: "verify negative ttl too short", toml: sec("verify", `negative_ttl = "10s"`), key: "verify.negative_ttl", at: "negative_ttl =", msg: "from 1m0s"},
		{name: "verify max probes zero", toml: sec("verify", `max_probes = 0`), key: "verify.max_probes", at: "max_probes =", msg: "from 1 to 1000"},
		{name: "relay_verify of a domain not relayed", toml: base + "\n[relay_verify.\"other.test\"]\nmethod = \"probe\"\n", key: `relay_verify."other.test"`, at: "[relay_verify", msg: "not in relay_domains"},
		{name: "relay_verify unknown method", toml: relayBase + "method = \"vrfy\"\n", key: `relay_verify."partner.test".method`, at: "method =", msg: `use "probe" or "list"`},
		{name: "relay_verify list without file", toml: relayBase + "method = \"list\"\n", key: `relay_verify."partner.test".list`, at: "method =", msg: "needs the file"},
		{name: "relay_verify unknown unverified", toml: relayBase + "unverified = \"drop\"\n", key: `relay_verify."partner.test".unverified`, at: "unverified =", msg: `use "defer" or "accept"`},
		{name: "relay_verify unknown key", toml: relayBase + "methd = \"list\"\n", key: `relay_verify."partner.test".methd`, at: "methd =", msg: "unknown setting"},

		// Unknown keys.
		{name: "unknown top-level key", toml: base + "hostnme = \"x\"\n", key: "hostnme", at: "hostnme =", msg: "unknown setting"},
		{name: "unknown key in a table", toml: sec("limits", `max_recipient = 5`), key: "limits.max_recipient", at: "max_recipient =", msg: "unknown setting"},
		{name: "unknown listener", toml: sec("listeners", `imap = "127.0.0.1:143"`), key: "listeners.imap", at: "imap =", msg: "unknown setting"},

		// Wrong types.
		{name: "string for a number", toml: sec("limits", `max_recipients = "ten"`), key: "limits.max_recipients", at: "max_recipients =", msg: "wrong type"},
		{name: "number for a string", toml: "domains = [\"example.org\"]\nhostname = 42\n", key: "hostname", at: "hostname =", msg: "wrong type"},
		{name: "string for a list", toml: "hostname = \"mx.example.org\"\ndomains = \"example.org\"\n", key: "domains", at: "domains =", msg: "wrong type"},
		{name: "number for a bool", toml: sec("policy", `reject_forged_local_sender = 1`), key: "policy.reject_forged_local_sender", at: "reject_forged_local_sender =", msg: "wrong type"},
		{name: "bool for a number", toml: sec("queue", `workers = true`), key: "queue.workers", at: "workers =", msg: "wrong type"},

		// Bad sizes and durations.
		{name: "size with unknown unit", toml: sec("limits", `max_message_size = "25XB"`), key: "limits.max_message_size", at: "max_message_size =", msg: "is not a size"},
		{name: "size fractional", toml: sec("limits", `max_message_size = "1.5MiB"`), key: "limits.max_message_size", at: "max_message_size =", msg: "is not a size"},
		{name: "size negative", toml: sec("queue", `max_size = -1`), key: "queue.max_size", at: "max_size =", msg: "is not a size"},
		{name: "size overflowing", toml: sec("queue", `min_free_space = "9999999999GiB"`), key: "queue.min_free_space", at: "min_free_space =", msg: "is not a size"},
		{name: "duration in words", toml: sec("limits", `command_timeout = "5 minutes"`), key: "limits.command_timeout", at: "command_timeout =", msg: "is not a duration"},
		{name: "duration without unit", toml: sec("queue", `retry_min = "300"`), key: "queue.retry_min", at: "retry_min =", msg: "is not a duration"},
		{name: "duration as a number", toml: sec("pop3", `idle_timeout = 600`), key: "pop3.idle_timeout", at: "idle_timeout =", msg: "is not a duration"},
	}
	for _, l := range []string{"mx", "submission", "smtps", "pop3", "pop3s", "admin"} {
		cases = append(cases,
			badCase{name: "listener " + l + " without port", toml: sec("listeners", l+` = "127.0.0.1"`), key: "listeners." + l, at: l + " =", msg: "is not HOST:PORT"},
			badCase{name: "listener " + l + " port too large", toml: sec("listeners", l+` = "127.0.0.1:65536"`), key: "listeners." + l, at: l + " =", msg: "from 0 to 65535"},
			badCase{name: "listener " + l + " port a name", toml: sec("listeners", l+` = "127.0.0.1:smtp"`), key: "listeners." + l, at: l + " =", msg: "from 0 to 65535"},
		)
	}
	// Every lower bound: a zero or negative bound would mean no bound.
	for _, b := range []struct{ table, key, low string }{
		{"limits", "max_message_size", "1023"},
		{"limits", "max_line_length", "511"},
		{"limits", "max_data_line_length", "999"},
		{"limits", "max_recipients", "0"},
		{"limits", "max_errors", "0"},
		{"limits", "max_commands", "9"},
		{"limits", "max_connections", "0"},
		{"limits", "max_connections_per_ip", "-1"},
		{"limits", "auth_max_failures", "0"},
		{"queue", "max_messages", "0"},
		{"queue", "max_size", `"1023KiB"`},
		{"queue", "workers", "0"},
		{"delivery", "max_concurrency", "0"},
		{"delivery", "max_per_domain", "0"},
	} {
		cases = append(cases, badCase{name: b.table + "." + b.key + " below minimum", toml: sec(b.table, b.key+" = "+b.low),
			key: b.table + "." + b.key, at: b.key + " =", msg: "must be at least"})
	}
	for _, d := range []struct{ table, key, low string }{
		{"limits", "command_timeout", "999ms"},
		{"limits", "data_timeout", "0s"},
		{"limits", "auth_failure_window", "-5m"},
		{"queue", "retry_min", "500ms"},
		{"queue", "retry_max", "0s"},
		{"queue", "expire", "59s"},
		{"pop3", "idle_timeout", "0s"},
	} {
		cases = append(cases, badCase{name: d.table + "." + d.key + " below minimum", toml: sec(d.table, d.key+` = "`+d.low+`"`),
			key: d.table + "." + d.key, at: d.key + " =", msg: "must be at least"})
	}
	return cases
}

func lineContaining(text, sub string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			return i + 1
		}
	}
	return 0
}

// TestBadConfig is the bad-config suite: each broken config is refused
// with an error naming the key and the line that sets it.
func TestBadConfig(t *testing.T) {
	t.Parallel()
	const path = "/srv/mail/kanmon.toml"
	for _, tc := range badCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Parse([]byte(tc.toml), path)
			if err == nil {
				t.Fatalf("accepted:\n%s\n(parsed %+v)", tc.toml, c)
			}
			if c != nil {
				t.Errorf("Parse returned a config along with the error")
			}
			var errs *config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T %v is not *config.Errors", err, err)
			}
			line := lineContaining(tc.toml, tc.at)
			want := fmt.Sprintf("%s:%d: %s: ", path, line, tc.key)
			got := err.Error()
			if !strings.Contains(got, want) {
				t.Errorf("error:\n%s\nwant it to contain %q (file, line, key)\nconfig:\n%s", got, want, tc.toml)
			}
			if !strings.Contains(got, tc.msg) {
				t.Errorf("error:\n%s\nwant it to say %q", got, tc.msg)
			}
			if len(errs.List) != 1 {
				t.Errorf("%d errors for one mistake:\n%s", len(errs.List), got)
			}
		})
	}
}

// TestBadConfigSyntax: a TOML syntax error is reported with its line.
func TestBadConfigSyntax(t *testing.T) {
	t.Parallel()
	raw := base + "[limits]\nmax_recipients = = 3\n"
	_, err := config.Parse([]byte(raw), "k.toml")
	if err == nil {
		t.Fatal("a syntax error was accepted")
	}
	if !strings.Contains(err.Error(), "k.toml:4:") {
		t.Errorf("error %q does not point to line 4", err)
	}
}

// TestBadConfigEveryError: validation reports every error at once, in
// line order, each with its key and line: wrong types, bad values and
// unknown keys together.
func TestBadConfigEveryError(t *testing.T) {
	t.Parallel()
	raw := `hostname = "mx.example.org"
domains = ["example.org"]
log_level = "loud"
trusted_networks = ["0.0.0.0/0"]

[limits]
max_recipients = "many"
max_errors = 0
max_message_size = "huge"
command_timeout = "soon"

[queue]
workres = 4
retry_min = "1ms"
`
	_, err := config.Parse([]byte(raw), "all.toml")
	if err == nil {
		t.Fatal("accepted")
	}
	var errs *config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("%T", err)
	}
	want := []struct {
		line int
		key  string
	}{
		{3, "log_level"}, {4, "trusted_networks"}, {7, "limits.max_recipients"}, {8, "limits.max_errors"},
		{9, "limits.max_message_size"}, {10, "limits.command_timeout"}, {13, "queue.workres"}, {14, "queue.retry_min"},
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) || len(errs.List) != len(want) {
		t.Fatalf("%d errors reported, want %d:\n%s", len(got), len(want), err)
	}
	for i, w := range want {
		if prefix := fmt.Sprintf("all.toml:%d: %s: ", w.line, w.key); !strings.HasPrefix(got[i], prefix) {
			t.Errorf("error %d = %q, want prefix %q", i+1, got[i], prefix)
		}
	}
}

// TestDefaultsFinish: the embedded defaults are valid and Finish makes
// their relative paths absolute.
func TestDefaultsFinish(t *testing.T) {
	t.Parallel()
	c := config.Default()
	if err := c.Finish(); err != nil {
		t.Fatalf("Default().Finish() = %v", err)
	}
	for name, p := range map[string]string{"data_dir": c.DataDir, "tls.cert": c.TLS.Cert, "tls.key": c.TLS.Key} {
		if !filepath.IsAbs(p) {
			t.Errorf("%s = %q after Finish, want an absolute path", name, p)
		}
	}
	if len(c.TrustedNetworks) != 0 {
		t.Errorf("default trusted_networks %v, want none", c.TrustedNetworks)
	}
	// Defaults listen on loopback only.
	for _, a := range []string{c.Listeners.MX, c.Listeners.Submission, c.Listeners.SMTPS, c.Listeners.POP3, c.Listeners.POP3S, c.Listeners.Admin} {
		if !strings.HasPrefix(a, "127.0.0.1:") {
			t.Errorf("default listener %q is not on loopback", a)
		}
	}
}

// TestFinishRefusesBadCodeConfig: Finish applies the same validation.
func TestFinishRefusesBadCodeConfig(t *testing.T) {
	t.Parallel()
	c := config.Default()
	c.Limits.MaxRecipients = 0
	c.LogFormat = "yaml"
	err := c.Finish()
	if err == nil {
		t.Fatal("Finish accepted max_recipients = 0")
	}
	for _, want := range []string{"limits.max_recipients", "log_format", "(defaults)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Finish error %q does not mention %q", err, want)
		}
	}
}

// TestRelativePaths: relative paths are resolved against the directory of
// the config file, not the working directory; absolute ones are kept.
func TestRelativePaths(t *testing.T) {
	root := t.TempDir()
	cfgDir := filepath.Join(root, "etc", "kanmon")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(root, "elsewhere", "key.pem")
	raw := base + `data_dir = "data"
log_file = "logs/kanmon.log"
[tls]
cert = "certs/cert.pem"
key = "` + abs + `"
`
	path := filepath.Join(cfgDir, "kanmon.toml")
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	// Run from another directory, with a relative config path.
	t.Chdir(root)
	c, err := config.Load(filepath.Join("etc", "kanmon", "kanmon.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][2]string{
		"data_dir": {c.DataDir, filepath.Join(cfgDir, "data")},
		"log_file": {c.LogFile, filepath.Join(cfgDir, "logs", "kanmon.log")},
		"tls.cert": {c.TLS.Cert, filepath.Join(cfgDir, "certs", "cert.pem")},
		"tls.key":  {c.TLS.Key, abs},
	} {
		if got[0] != got[1] {
			t.Errorf("%s = %q, want %q", name, got[0], got[1])
		}
	}
	if c.DBPath() != filepath.Join(cfgDir, "data", "kanmon.db") || c.QueueDir() != filepath.Join(cfgDir, "data", "queue") ||
		c.MailRoot() != filepath.Join(cfgDir, "data", "mail") {
		t.Errorf("paths under data_dir: %s %s %s", c.DBPath(), c.QueueDir(), c.MailRoot())
	}
	// An empty log_file stays empty (stderr), not the config directory.
	c2, err := config.Parse([]byte(base), path)
	if err != nil {
		t.Fatal(err)
	}
	if c2.LogFile != "" {
		t.Errorf("absent log_file became %q, want empty", c2.LogFile)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	if _, err := config.Load(filepath.Join(t.TempDir(), "absent.toml")); err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	good := map[string]int64{
		"0":                   0,
		"1024":                1024,
		"  2048 ":             2048,
		"10B":                 10,
		"64KiB":               64 << 10,
		"25MiB":               25 << 20,
		"1GiB":                1 << 30,
		"4GiB":                4 << 30,
		"512 MiB":             512 << 20,
		"1KB":                 1000,
		"2MB":                 2000000,
		"3GB":                 3000000000,
		"4294967296GiB":       1 << 62,
		"4611686018427387904": 1 << 62,
	}
	for in, want := range good {
		got, err := config.ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", " ", "MiB", "abc", "-1", "-1KiB", "1.5MiB", "1e6", "25XB", "1TiB", "1 K", "0x10",
		"4294967297GiB", "4611686018427387905", "99999999999999999999", "25MiB25"} {
		if got, err := config.ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, nil; want an error", in, got)
		} else if !strings.Contains(err.Error(), "examples") {
			t.Errorf("ParseSize(%q) error %q gives no example", in, err)
		}
	}
}

// trusted reports whether the relay rule's inputs built from c trust ip.
func trusted(c *config.Config, ip netip.Addr) bool {
	return policy.Clients{Trusted: c.Trusted}.ClientOf(ip, policy.ListenerMX, "").Trusted
}

func TestTrustedNetworks(t *testing.T) {
	t.Parallel()
	raw := base + `trusted_networks = ["192.0.2.77/24", "2001:db8:10::/48", "198.51.100.7", "2001:db8::5"]` + "\n"
	c, err := config.Parse([]byte(raw), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"192.0.2.1":          true,
		"192.0.2.255":        true,
		"::ffff:192.0.2.9":   true, // IPv4-mapped form of a trusted address
		"192.0.3.1":          false,
		"198.51.100.7":       true,
		"198.51.100.8":       false,
		"2001:db8:10:ffff::": true,
		"2001:db8:11::1":     false,
		"2001:db8::5":        true,
		"2001:db8::6":        false,
		"127.0.0.1":          false, // loopback is not trusted unless listed
		"::1":                false,
	} {
		if got := trusted(c, netip.MustParseAddr(addr)); got != want {
			t.Errorf("trusted(%s) = %v, want %v", addr, got, want)
		}
	}
	// No trusted networks: nobody is trusted.
	d, err := config.Parse([]byte(base), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if trusted(d, netip.MustParseAddr("127.0.0.1")) {
		t.Error("127.0.0.1 trusted with no trusted_networks")
	}
}

// TestDurationText: durations read as Go durations and write back.
// TestDNSSection: [dns] server and timeout, their defaults, and the old
// delivery.dns_server: still read, with a warning naming its file, line
// and the new key; the same value in both is fine.
func TestDNSSection(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(base), "d.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.DNS.Server != "" || c.DNS.Timeout.Duration != 5*time.Second || len(c.Warnings) != 0 {
		t.Errorf("defaults: dns %+v, warnings %v; want system resolver, 5s, none", c.DNS, c.Warnings)
	}
	c, err = config.Parse([]byte(base+"\n[dns]\nserver = \"127.0.0.1:5353\"\ntimeout = \"2s\"\n"), "d.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.DNS.Server != "127.0.0.1:5353" || c.DNS.Timeout.Duration != 2*time.Second || len(c.Warnings) != 0 {
		t.Errorf("[dns]: %+v, warnings %v", c.DNS, c.Warnings)
	}
	for _, raw := range []string{
		base + "\n[delivery]\ndns_server = \"127.0.0.1:5353\"\n",
		base + "\n[delivery]\ndns_server = \"127.0.0.1:5353\"\n[dns]\nserver = \"127.0.0.1:5353\"\n",
	} {
		c, err := config.Parse([]byte(raw), "/etc/kanmon/d.toml")
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		if c.DNS.Server != "127.0.0.1:5353" {
			t.Errorf("%q: dns.server %q, want the old key's value", raw, c.DNS.Server)
		}
		w := c.WarningLines()
		want := "/etc/kanmon/d.toml:5: delivery.dns_server: deprecated: set server in the [dns] section instead (dns.server)"
		if len(w) != 1 || !strings.HasPrefix(w[0], want) {
			t.Errorf("%q: warnings %q, want one starting %q", raw, w, want)
		}
	}
}

func TestDurationText(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(base+"[queue]\nretry_min = \"90s\"\nexpire = \"48h\"\n"), "d.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Queue.RetryMin.Duration != 90*time.Second || c.Queue.Expire.Duration != 48*time.Hour {
		t.Errorf("retry_min %v, expire %v", c.Queue.RetryMin, c.Queue.Expire)
	}
	if b, _ := c.Queue.RetryMin.MarshalText(); string(b) != "1m30s" {
		t.Errorf("MarshalText = %q", b)
	}
}

// TestTrustedMappedNetwork: an IPv4 network written in IPv4-mapped IPv6
// form is either refused or means the same as its IPv4 form; it must not
// be accepted and then silently match nothing (or, written as
// ::ffff:0.0.0.0/96, slip past the open-relay width check).
func TestTrustedMappedNetwork(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(base+`trusted_networks = ["::ffff:192.0.2.0/120"]`+"\n"), "m.toml")
	if err == nil && !trusted(c, netip.MustParseAddr("192.0.2.5")) {
		t.Errorf("trusted_networks = [\"::ffff:192.0.2.0/120\"] was accepted but does not trust 192.0.2.5 (nor ::ffff:192.0.2.5: %v)",
			trusted(c, netip.MustParseAddr("::ffff:192.0.2.5")))
	}
	if _, err := config.Parse([]byte(base+`trusted_networks = ["::ffff:0.0.0.0/96"]`+"\n"), "m.toml"); err == nil {
		t.Errorf("trusted_networks = [\"::ffff:0.0.0.0/96\"] (every IPv4 address) was accepted")
	}
}

// TestMaxConnectionsFor: a listener's pool is its override, or
// max_connections.
func TestMaxConnectionsFor(t *testing.T) {
	c, err := config.Parse([]byte(base+"[limits]\nmax_connections = 50\nmax_connections_by_listener = { mx = 2000, sendmail = 5 }\n"), "k.toml")
	if err != nil {
		t.Fatal(err)
	}
	for l, want := range map[string]int{"mx": 2000, "sendmail": 5, "submission": 50, "pop3": 50} {
		if got := c.MaxConnectionsFor(l); got != want {
			t.Errorf("MaxConnectionsFor(%s) = %d, want %d", l, got, want)
		}
	}
}

// TestRelayVerify: every relay domain is probed unless its table says
// otherwise; unverified = "accept" is allowed with a warning that names
// the consequence; a list path is relative to the config file.
func TestRelayVerify(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(base+"relay_domains = [\"partner.test\", \"other.test\"]\n"), "/etc/kanmon/kanmon.toml")
	if err != nil {
		t.Fatal(err)
	}
	if v := c.RelayVerifyFor("partner.test"); v.Method != "probe" || v.Unverified != "defer" {
		t.Errorf("default verification %+v, want probe, defer", v)
	}
	if c.Verify.PositiveTTL.Duration != 7*24*time.Hour || c.Verify.NegativeTTL.Duration != 3*time.Hour || len(c.Warnings) != 0 {
		t.Errorf("verify defaults %+v, warnings %v", c.Verify, c.Warnings)
	}
	raw := relayBase + "method = \"list\"\nlist = \"partner.txt\"\nunverified = \"accept\"\n"
	c, err = config.Parse([]byte(raw), "/etc/kanmon/kanmon.toml")
	if err != nil {
		t.Fatal(err)
	}
	if v := c.RelayVerifyFor("PARTNER.test"); v.Method != "list" || v.List != "/etc/kanmon/partner.txt" || v.Unverified != "accept" {
		t.Errorf("verification %+v", v)
	}
	w := c.WarningLines()
	if len(w) != 1 || !strings.HasPrefix(w[0], `/etc/kanmon/kanmon.toml:8: relay_verify."partner.test".unverified: `) || !strings.Contains(w[0], "dropped") {
		t.Errorf("warnings %q, want one naming the line and the drop", w)
	}
}
