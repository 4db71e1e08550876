// Package config reads, defaults and validates kanmon's TOML configuration.
//
// Relative paths in the file are resolved against the directory holding
// the file, so a config directory can be moved as a whole. Validation
// reports every error at once, each with its key and line.
//
// SECURITY: the defaults are the safe ones (law 7): no trusted networks,
// AUTH only over TLS, listeners on loopback unless configured otherwise.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Duration is a time.Duration written as "10m", "30s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (examples: 30s, 10m, 4h)", string(b))
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration back.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Size is a byte count written as a number or "25MiB", "512KiB", "1GiB".
type Size int64

// UnmarshalText parses a size.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = Size(v)
	return nil
}

// ParseSize parses "1024", "64KiB", "25MiB", "1GiB" (also KB/MB/GB as powers of 1000).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			mult = u.m
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (examples: 1048576, 512KiB, 25MiB, 1GiB)", s)
	}
	return n * mult, nil
}

// Listeners holds the listen address of each service; empty means off.
type Listeners struct {
	MX         string `toml:"mx"`
	Submission string `toml:"submission"`
	SMTPS      string `toml:"smtps"`
	POP3       string `toml:"pop3"`
	POP3S      string `toml:"pop3s"`
	Admin      string `toml:"admin"`
	// AdminHosts are host names, besides the admin listener's own address
	// and localhost, that requests to it may carry in their Host header
	// (a name in /etc/hosts, say). Any other Host is refused, so a web
	// page that rebinds its name to 127.0.0.1 cannot reach the listener.
	AdminHosts []string `toml:"admin_hosts"`
}

// TLS names the certificate files.
type TLS struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// Limits bounds every input (law 5). MaxConnections and
// MaxConnectionsPerIP apply to each listener on its own (its own pool),
// so a flood on one listener cannot lock out the users of another.
type Limits struct {
	MaxMessageSize      Size     `toml:"max_message_size"`
	MaxLineLength       int      `toml:"max_line_length"`
	MaxDataLineLength   int      `toml:"max_data_line_length"`
	MaxRecipients       int      `toml:"max_recipients"`
	MaxErrors           int      `toml:"max_errors"`
	MaxCommands         int      `toml:"max_commands"`
	CommandTimeout      Duration `toml:"command_timeout"`
	DataTimeout         Duration `toml:"data_timeout"`
	MaxConnections      int      `toml:"max_connections"`
	MaxConnectionsPerIP int      `toml:"max_connections_per_ip"`
	// MaxConnectionsByListener overrides MaxConnections for the listeners
	// it names (mx, submission, smtps, pop3, pop3s, sendmail).
	MaxConnectionsByListener map[string]int `toml:"max_connections_by_listener"`
	// StressThreshold is how full (percent) an SMTP listener's pool is
	// when its stress mode starts: new and idle sessions then get
	// StressCommandTimeout and StressMaxErrors.
	StressThreshold      int      `toml:"stress_threshold"`
	StressCommandTimeout Duration `toml:"stress_command_timeout"`
	StressMaxErrors      int      `toml:"stress_max_errors"`
	AuthMaxFailures      int      `toml:"auth_max_failures"`
	AuthFailureWindow    Duration `toml:"auth_failure_window"`
	// MailboxQuota is the default size bound of each account's Maildir
	// (0: none); `kanmon user quota` sets one account's own.
	MailboxQuota Size `toml:"mailbox_quota"`
}

// Queue bounds the spool.
type Queue struct {
	MaxMessages  int      `toml:"max_messages"`
	MaxSize      Size     `toml:"max_size"`
	MinFreeSpace Size     `toml:"min_free_space"`
	Workers      int      `toml:"workers"`
	RetryMin     Duration `toml:"retry_min"`
	RetryMax     Duration `toml:"retry_max"`
	Expire       Duration `toml:"expire"`
}

// Delivery configures how queued mail leaves for other servers.
type Delivery struct {
	// Routes maps a recipient domain to "HOST:PORT", bypassing MX lookup
	// (tests, or a fixed next hop for a partner domain).
	Routes map[string]string `toml:"routes"`
	// Smarthost, when set, sends all outbound mail through "HOST:PORT":
	// port 465 is implicit TLS, any other port requires STARTTLS.
	Smarthost string `toml:"smarthost"`
	// SmarthostUser and SmarthostPasswordFile are the AUTH PLAIN
	// credentials; the password lives in its own file, never here.
	SmarthostUser         string `toml:"smarthost_user"`
	SmarthostPasswordFile string `toml:"smarthost_password_file"`
	// SmarthostCAFile, when set, is the only CA trusted for the smarthost's
	// certificate (default: the system roots).
	SmarthostCAFile string `toml:"smarthost_ca_file"`
	// HeloName is the name sent in EHLO (default: hostname).
	HeloName string `toml:"helo_name"`
	// MaxConcurrency bounds outgoing connections in total.
	MaxConcurrency int `toml:"max_concurrency"`
	// MaxPerDomain bounds outgoing connections per destination domain.
	MaxPerDomain int `toml:"max_per_domain"`
	// DelayWarning is when our own users get a "delayed" DSN (0 = never).
	DelayWarning Duration `toml:"delay_warning"`
	// DNSServer is the old name of DNS.Server, still read for one
	// release: check-config warns, and a value differing from
	// dns.server is an error.
	DNSServer string `toml:"dns_server"`
	// TransactionTimeout bounds one SMTP session with a remote server,
	// plus the DATA timeout, however promptly each reply comes.
	TransactionTimeout Duration `toml:"transaction_timeout"`
}

// DNS configures the one resolver every DNS question goes through
// (internal/dnsresolve, law 6): delivery's MX and address lookups and
// every inbound check.
type DNS struct {
	// Server, when set, receives every DNS question ("127.0.0.1:5353",
	// or an address meaning port 53); empty means the system resolver.
	Server string `toml:"server"`
	// Timeout bounds each question.
	Timeout Duration `toml:"timeout"`
}

// Policy switches optional checks.
type Policy struct {
	RejectForgedLocalSender bool `toml:"reject_forged_local_sender"`
}

// POP3 configures the POP3 listeners.
type POP3 struct {
	AllowPlaintextAuth bool     `toml:"allow_plaintext_auth"`
	IdleTimeout        Duration `toml:"idle_timeout"`
	PopBeforeSMTP      Duration `toml:"pop_before_smtp"`
	PopBeforeSMTPOnMX  bool     `toml:"pop_before_smtp_on_mx"`
}

// Sendmail configures the local submission socket (SocketPath)
// used by `kanmon sendmail`. The server identifies the connecting Unix
// user by the socket's peer credentials (SO_PEERCRED), never by what the
// client says, and treats the session as authenticated as that user's
// address.
type Sendmail struct {
	Enabled bool `toml:"enabled"`
	// Socket is the socket's path; "" is DATA_DIR/public/kanmon.sock.
	Socket string `toml:"socket"`
	// Users maps a Unix user name to the address its mail is sent as.
	Users map[string]string `toml:"users"`
	// DefaultDomain, when set, gives unmapped users USER@DefaultDomain;
	// when empty, unmapped users may not send.
	DefaultDomain string `toml:"default_domain"`
}

// Checkpassword is the local socket `kanmon checkpassword` asks, so an
// IMAP server (Dovecot) checks kanmon's passwords through the running
// server and its login throttle.
type Checkpassword struct {
	Enabled bool `toml:"enabled"`
	// Socket is the socket's path; "" = auth.sock in PublicDir.
	Socket string `toml:"socket"`
	// Users are the Unix users (by SO_PEERCRED) allowed to ask: they
	// report the client address the throttle counts against.
	Users []string `toml:"users"`
}

// Config is the whole configuration.
type Config struct {
	Hostname        string   `toml:"hostname"`
	Domains         []string `toml:"domains"`
	RelayDomains    []string `toml:"relay_domains"`
	TrustedNetworks []string `toml:"trusted_networks"`
	DataDir         string   `toml:"data_dir"`
	// RunAs is the user `kanmon serve` becomes after binding its ports
	// when started as root (internal/privdrop); required then.
	RunAs         string        `toml:"run_as"`
	LogFormat     string        `toml:"log_format"`
	LogLevel      string        `toml:"log_level"`
	LogFile       string        `toml:"log_file"`
	Listeners     Listeners     `toml:"listeners"`
	TLS           TLS           `toml:"tls"`
	Limits        Limits        `toml:"limits"`
	Queue         Queue         `toml:"queue"`
	Delivery      Delivery      `toml:"delivery"`
	DNS           DNS           `toml:"dns"`
	Policy        Policy        `toml:"policy"`
	Inbound       Inbound       `toml:"inbound"`
	POP3          POP3          `toml:"pop3"`
	Sendmail      Sendmail      `toml:"sendmail"`
	Checkpassword Checkpassword `toml:"checkpassword"`
	// Verify and RelayVerify configure recipient verification for
	// relay_domains (verify.go).
	Verify      Verify                 `toml:"verify"`
	RelayVerify map[string]RelayVerify `toml:"relay_verify"`
	DKIM        DKIM                   `toml:"dkim"`
	// RateLimit is [ratelimit] (ratelimit.go).
	RateLimit RateLimit `toml:"ratelimit"`
	BATV      BATV      `toml:"batv"`
	// Submission is what our users may put in From: (submission.go).
	Submission Submission `toml:"submission"`

	// Path is the file this config was read from ("" for embedded defaults).
	Path string `toml:"-"`
	// Warnings are problems that do not stop the server (a deprecated
	// key), for check-config and the start-up log; see WarningLines.
	Warnings []FieldError `toml:"-"`
	// Trusted is TrustedNetworks parsed, masked, IPv4 networks as IPv4;
	// internal/policy (Clients) decides who is in them.
	Trusted []netip.Prefix `toml:"-"`
}

// Default returns the configuration used when a key is absent.
func Default() *Config {
	return &Config{
		Hostname:  "localhost",
		DataDir:   "kanmon-data",
		LogFormat: "json",
		LogLevel:  "info",
		Listeners: Listeners{
			MX:         "127.0.0.1:2525",
			Submission: "127.0.0.1:2587",
			SMTPS:      "127.0.0.1:2465",
			POP3:       "127.0.0.1:2110",
			POP3S:      "127.0.0.1:2995",
			Admin:      "127.0.0.1:8025",
		},
		TLS: TLS{Cert: "cert.pem", Key: "key.pem"},
		Limits: Limits{
			MaxMessageSize:           25 << 20,
			MaxLineLength:            2048,
			MaxDataLineLength:        65536,
			MaxRecipients:            100,
			MaxErrors:                5,
			MaxCommands:              10000,
			CommandTimeout:           Duration{5 * time.Minute},
			DataTimeout:              Duration{10 * time.Minute},
			MaxConnections:           1000,
			MaxConnectionsPerIP:      20,
			MaxConnectionsByListener: map[string]int{},
			StressThreshold:          80,
			StressCommandTimeout:     Duration{10 * time.Second},
			StressMaxErrors:          2,
			AuthMaxFailures:          10,
			AuthFailureWindow:        Duration{15 * time.Minute},
			MailboxQuota:             1 << 30,
		},
		Queue: Queue{
			MaxMessages:  100000,
			MaxSize:      4 << 30,
			MinFreeSpace: 512 << 20,
			Workers:      16,
			RetryMin:     Duration{5 * time.Minute},
			RetryMax:     Duration{4 * time.Hour},
			Expire:       Duration{5 * 24 * time.Hour},
		},
		Delivery: Delivery{
			Routes:         map[string]string{},
			MaxConcurrency: 32,
			MaxPerDomain:   20,
			DelayWarning:   Duration{4 * time.Hour},
			// Generous: a large message to a slow server still fits.
			TransactionTimeout: Duration{30 * time.Minute},
		},
		DNS:           DNS{Timeout: Duration{5 * time.Second}},
		Policy:        Policy{RejectForgedLocalSender: true},
		Inbound:       DefaultInbound(),
		POP3:          POP3{IdleTimeout: Duration{10 * time.Minute}},
		Sendmail:      Sendmail{Users: map[string]string{}},
		Checkpassword: Checkpassword{Users: []string{"dovecot"}},
		Verify:        defaultVerify(),
		DKIM:          DefaultDKIM(),
		RateLimit:     DefaultRateLimit(),
		BATV:          DefaultBATV(),
		Submission:    DefaultSubmission(),
	}
}

// Load reads path over the defaults and validates the result.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(raw, path)
}

// Parse decodes TOML text (path is used for messages and relative paths).
// It reports every problem it finds, not just the first: a value of the
// wrong type is noted and removed, and decoding runs again.
func Parse(raw []byte, path string) (*Config, error) {
	var tree map[string]any
	if _, err := toml.Decode(string(raw), &tree); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Errors{Path: path, List: []FieldError{{Key: pe.LastKey, Line: pe.Position.Line, Msg: pe.Message}}}
		}
		return nil, &Errors{Path: path, List: []FieldError{{Msg: err.Error()}}}
	}
	errs := &Errors{Path: path}
	var c *Config
	var md toml.MetaData
	for attempt := 0; ; attempt++ {
		c = Default()
		var buf strings.Builder
		if err := toml.NewEncoder(&buf).Encode(tree); err != nil {
			return nil, &Errors{Path: path, List: []FieldError{{Msg: err.Error()}}}
		}
		var err error
		md, err = toml.Decode(buf.String(), c)
		if err == nil {
			break
		}
		key, msg := decodeErrorKey(err)
		if key == "" || attempt > 100 || !deleteKey(tree, key) {
			errs.List = append(errs.List, FieldError{Msg: err.Error()})
			return nil, errs
		}
		errs.add(raw, key, msg)
	}
	c.Path = path
	c.Warnings = nil
	for _, k := range md.Undecoded() {
		errs.add(raw, k.String(), "unknown setting (misspelled?)")
	}
	c.validate(raw, errs)
	if len(errs.List) > 0 {
		sort.SliceStable(errs.List, func(i, j int) bool { return errs.List[i].Line < errs.List[j].Line })
		return nil, errs
	}
	c.resolvePaths()
	return c, nil
}

var lastKeyRe = regexp.MustCompile(`\(last key "([^"]+)"\): (.*)$`)

// decodeErrorKey extracts the key and message from a decoding error.
func decodeErrorKey(err error) (string, string) {
	var pe toml.ParseError
	if errors.As(err, &pe) && pe.LastKey != "" {
		return pe.LastKey, pe.Message
	}
	if m := lastKeyRe.FindStringSubmatch(err.Error()); m != nil {
		msg := strings.Replace(m[2], "incompatible types: TOML value has type", "wrong type: the value is a", 1)
		msg = strings.Replace(msg, "; destination has type", ", this setting needs a", 1)
		return m[1], msg
	}
	return "", ""
}

// deleteKey removes a dotted key from a decoded TOML tree.
func deleteKey(tree map[string]any, key string) bool {
	parts := strings.Split(key, ".")
	m := tree
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			return false
		}
		m = next
	}
	if _, ok := m[parts[len(parts)-1]]; !ok {
		return false
	}
	delete(m, parts[len(parts)-1])
	return true
}

// FieldError is one validation problem.
type FieldError struct {
	Key  string
	Line int
	Msg  string
}

// Errors lists every problem found in a config file.
type Errors struct {
	Path string
	List []FieldError
}

func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, f := range e.List {
		lines[i] = f.format(e.Path)
	}
	return strings.Join(lines, "\n")
}

// format writes the problem as "PATH:LINE: KEY: message".
func (f FieldError) format(path string) string {
	loc := path
	if f.Line > 0 {
		loc += ":" + strconv.Itoa(f.Line)
	}
	if f.Key != "" {
		return fmt.Sprintf("%s: %s: %s", loc, f.Key, f.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, f.Msg)
}

// WarningLines are the Warnings written like errors, "PATH:LINE: KEY:
// message", one per line.
func (c *Config) WarningLines() []string {
	out := make([]string, len(c.Warnings))
	for i, w := range c.Warnings {
		out[i] = w.format(c.Path)
	}
	return out
}

func (e *Errors) add(raw []byte, key, msg string) {
	e.List = append(e.List, FieldError{Key: key, Line: lineOf(raw, key), Msg: msg})
}

// lineOf finds the line that sets key ("table.name") in raw, or 0.
func lineOf(raw []byte, key string) int {
	table, name := "", key
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		table, name = key[:i], key[i+1:]
	}
	cur := ""
	for i, line := range strings.Split(string(raw), "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
			cur = strings.TrimSpace(strings.Trim(t, "[]"))
			continue
		}
		k, _, ok := strings.Cut(t, "=")
		if !ok {
			continue
		}
		k = strings.Trim(strings.TrimSpace(k), `"`)
		full := k
		if cur != "" {
			full = cur + "." + k
		}
		if full == key || (cur == table && k == name) {
			return i + 1
		}
	}
	return 0
}

func (c *Config) validate(raw []byte, e *Errors) {
	if !validHostname(c.Hostname) {
		e.add(raw, "hostname", fmt.Sprintf("%q is not a valid host name", c.Hostname))
	}
	for _, d := range c.Domains {
		if !validHostname(d) && !validLiteral(d) {
			e.add(raw, "domains", fmt.Sprintf("%q is not a valid domain", d))
		}
	}
	for _, d := range c.RelayDomains {
		if !validHostname(d) {
			e.add(raw, "relay_domains", fmt.Sprintf("%q is not a valid domain", d))
		}
		for _, l := range c.Domains {
			if strings.EqualFold(l, d) {
				e.add(raw, "relay_domains", fmt.Sprintf("%q is also in domains: a domain is either local or relayed", d))
			}
		}
	}
	c.Trusted = nil
	for _, n := range c.TrustedNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			if a, aerr := netip.ParseAddr(n); aerr == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				e.add(raw, "trusted_networks", fmt.Sprintf("%q is not an address or CIDR network (examples: 192.0.2.0/24, 2001:db8::/32)", n))
				continue
			}
		}
		if p.Addr().Is4In6() {
			// ::ffff:a.b.c.d/n is the IPv4 network a.b.c.d/(n-96): client
			// addresses are compared unmapped, so store it that way.
			if p.Bits() < 96 {
				e.add(raw, "trusted_networks", fmt.Sprintf("%q is shorter than /96 in the IPv4-mapped range: write the IPv4 network instead", n))
				continue
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Addr().Unmap().Is4() && p.Bits() < 8 || !p.Addr().Unmap().Is4() && p.Bits() < 16 {
			// Far wider than any organisation's network: almost surely a
			// mistake, and a way to build an open relay in parts.
			e.add(raw, "trusted_networks", fmt.Sprintf("%q trusts a large part of the Internet (shorter than /8 for IPv4, /16 for IPv6): that makes an open relay", n))
			continue
		}
		c.Trusted = append(c.Trusted, p.Masked())
	}
	if c.DataDir == "" {
		e.add(raw, "data_dir", "must be set")
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		e.add(raw, "log_format", fmt.Sprintf("%q: use \"json\" or \"text\"", c.LogFormat))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		e.add(raw, "log_level", fmt.Sprintf("%q: use debug, info, warn or error", c.LogLevel))
	}
	for _, l := range []struct{ key, addr string }{
		{"listeners.mx", c.Listeners.MX}, {"listeners.submission", c.Listeners.Submission},
		{"listeners.smtps", c.Listeners.SMTPS}, {"listeners.pop3", c.Listeners.POP3},
		{"listeners.pop3s", c.Listeners.POP3S}, {"listeners.admin", c.Listeners.Admin},
	} {
		if l.addr == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(l.addr); err != nil {
			e.add(raw, l.key, fmt.Sprintf("%q is not HOST:PORT", l.addr))
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			e.add(raw, l.key, fmt.Sprintf("port %q is not a number from 0 to 65535", port))
		}
	}
	for _, h := range c.Listeners.AdminHosts {
		if !validHostname(strings.TrimSuffix(h, ".")) {
			e.add(raw, "listeners.admin_hosts", fmt.Sprintf("%q is not a host name (no port: the listener's own port is implied)", h))
		}
	}
	needTLS := c.Listeners.Submission != "" || c.Listeners.SMTPS != "" || c.Listeners.POP3S != "" || c.Listeners.POP3 != ""
	if needTLS && c.TLS.Cert == "" {
		e.add(raw, "tls.cert", "submission, smtps and POP3 need a certificate and key (tls.cert, tls.key)")
	}
	if needTLS && c.TLS.Key == "" {
		e.add(raw, "tls.key", "submission, smtps and POP3 need a certificate and key (tls.cert, tls.key)")
	}
	l := c.Limits
	positive := []struct {
		key string
		v   int64
		min int64
	}{
		{"limits.max_message_size", int64(l.MaxMessageSize), 1024},
		{"limits.max_line_length", int64(l.MaxLineLength), 512},
		{"limits.max_data_line_length", int64(l.MaxDataLineLength), 1000},
		{"limits.max_recipients", int64(l.MaxRecipients), 1},
		{"limits.max_errors", int64(l.MaxErrors), 1},
		{"limits.max_commands", int64(l.MaxCommands), 10},
		{"limits.max_connections", int64(l.MaxConnections), 1},
		{"limits.max_connections_per_ip", int64(l.MaxConnectionsPerIP), 1},
		{"limits.stress_threshold", int64(l.StressThreshold), 1},
		{"limits.stress_max_errors", int64(l.StressMaxErrors), 1},
		{"limits.auth_max_failures", int64(l.AuthMaxFailures), 1},
		{"queue.max_messages", int64(c.Queue.MaxMessages), 1},
		{"queue.max_size", int64(c.Queue.MaxSize), 1 << 20},
		{"queue.workers", int64(c.Queue.Workers), 1},
		{"delivery.max_concurrency", int64(c.Delivery.MaxConcurrency), 1},
		{"delivery.max_per_domain", int64(c.Delivery.MaxPerDomain), 1},
	}
	for _, p := range positive {
		if p.v < p.min {
			e.add(raw, p.key, fmt.Sprintf("must be at least %d (a zero or negative bound would mean no bound)", p.min))
		}
	}
	if l.MaxLineLength > 1<<20 {
		e.add(raw, "limits.max_line_length", "must be at most 1048576")
	}
	if l.StressThreshold > 100 {
		e.add(raw, "limits.stress_threshold", "must be at most 100 (a percentage of max_connections)")
	}
	c.validateListenerLimits(raw, e)
	if l.MaxDataLineLength > 1<<24 {
		e.add(raw, "limits.max_data_line_length", "must be at most 16777216")
	}
	durations := []struct {
		key string
		d   time.Duration
		min time.Duration
	}{
		{"limits.command_timeout", l.CommandTimeout.Duration, time.Second},
		{"limits.data_timeout", l.DataTimeout.Duration, time.Second},
		{"limits.stress_command_timeout", l.StressCommandTimeout.Duration, time.Second},
		{"limits.auth_failure_window", l.AuthFailureWindow.Duration, time.Second},
		{"queue.retry_min", c.Queue.RetryMin.Duration, time.Second},
		{"queue.retry_max", c.Queue.RetryMax.Duration, time.Second},
		{"queue.expire", c.Queue.Expire.Duration, time.Minute},
		{"pop3.idle_timeout", c.POP3.IdleTimeout.Duration, time.Second},
	}
	for _, d := range durations {
		if d.d < d.min {
			e.add(raw, d.key, fmt.Sprintf("must be at least %s", d.min))
		}
	}
	c.validateDelivery(raw, e)
	c.validateSendmail(raw, e)
	c.validateCheckpassword(raw, e)
	c.validateVerify(raw, e)
	c.validateInbound(raw, e)
	c.validateDKIM(raw, e)
	c.validateRateLimit(raw, e)
	c.validateBATV(raw, e)
	c.validateSubmission(raw, e)
	if c.POP3.PopBeforeSMTP.Duration < 0 {
		e.add(raw, "pop3.pop_before_smtp", "must not be negative (0 or absent turns it off)")
	}
}

// ListenerNames are the listeners max_connections_by_listener may name.
var ListenerNames = []string{"mx", "submission", "smtps", "pop3", "pop3s", "sendmail"}

func (c *Config) validateListenerLimits(raw []byte, e *Errors) {
	names := make([]string, 0, len(c.Limits.MaxConnectionsByListener))
	for n := range c.Limits.MaxConnectionsByListener {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !slices.Contains(ListenerNames, n) {
			e.add(raw, "limits.max_connections_by_listener", fmt.Sprintf("%q is not a listener (use %s)", n, strings.Join(ListenerNames, ", ")))
		} else if v := c.Limits.MaxConnectionsByListener[n]; v < 1 {
			e.add(raw, "limits.max_connections_by_listener", fmt.Sprintf("%s = %d: must be at least 1 (a zero or negative bound would mean no bound)", n, v))
		}
	}
}

// MaxConnectionsFor is the size of a listener's connection pool:
// its max_connections_by_listener entry, or max_connections.
func (c *Config) MaxConnectionsFor(listener string) int {
	if n, ok := c.Limits.MaxConnectionsByListener[listener]; ok {
		return n
	}
	return c.Limits.MaxConnections
}

func (c *Config) validateDelivery(raw []byte, e *Errors) {
	d := c.Delivery
	hostPort := func(key, v string) {
		host, port, err := net.SplitHostPort(v)
		if err != nil || host == "" {
			e.add(raw, key, fmt.Sprintf("%q is not HOST:PORT", v))
			return
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			e.add(raw, key, fmt.Sprintf("port %q is not a number from 1 to 65535", port))
		}
	}
	doms := make([]string, 0, len(d.Routes))
	for dom := range d.Routes {
		doms = append(doms, dom)
	}
	sort.Strings(doms)
	for _, dom := range doms {
		line := routeLine(raw, dom)
		if !validHostname(strings.TrimSuffix(dom, ".")) {
			e.List = append(e.List, FieldError{Key: "delivery.routes", Line: line, Msg: fmt.Sprintf("%q is not a valid domain", dom)})
		}
		before := len(e.List)
		hostPort("delivery.routes", d.Routes[dom])
		for i := before; i < len(e.List); i++ {
			e.List[i].Line = line
		}
	}
	if d.Smarthost != "" {
		hostPort("delivery.smarthost", d.Smarthost)
	}
	if (d.SmarthostUser == "") != (d.SmarthostPasswordFile == "") {
		e.add(raw, "delivery.smarthost_user", "smarthost_user and smarthost_password_file go together")
	}
	if d.SmarthostUser != "" && d.Smarthost == "" {
		e.add(raw, "delivery.smarthost_user", "credentials without delivery.smarthost")
	}
	if d.HeloName != "" && !validHostname(d.HeloName) {
		e.add(raw, "delivery.helo_name", fmt.Sprintf("%q is not a valid host name", d.HeloName))
	}
	if d.DelayWarning.Duration < 0 {
		e.add(raw, "delivery.delay_warning", "must not be negative (0 turns delay warnings off)")
	}
	if d.TransactionTimeout.Duration < time.Minute {
		e.add(raw, "delivery.transaction_timeout", "must be at least 1m")
	}
	c.validateDNS(raw, e)
}

// validateDNS checks [dns] and folds the deprecated delivery.dns_server
// into dns.server, so the rest of the program reads one key.
func (c *Config) validateDNS(raw []byte, e *Errors) {
	if c.DNS.Server != "" && !validDNSServer(c.DNS.Server) {
		e.add(raw, "dns.server", fmt.Sprintf("%q is not an address or ADDRESS:PORT", c.DNS.Server))
	}
	if c.DNS.Timeout.Duration < 100*time.Millisecond || c.DNS.Timeout.Duration > time.Minute {
		e.add(raw, "dns.timeout", "must be from 100ms to 1m")
	}
	old := c.Delivery.DNSServer
	if old == "" {
		return
	}
	c.Warnings = append(c.Warnings, FieldError{Key: "delivery.dns_server", Line: lineOf(raw, "delivery.dns_server"),
		Msg: "deprecated: set server in the [dns] section instead (dns.server); this key will be removed"})
	switch {
	case !validDNSServer(old):
		e.add(raw, "delivery.dns_server", fmt.Sprintf("%q is not an address or ADDRESS:PORT", old))
	case c.DNS.Server == "":
		c.DNS.Server = old
	case c.DNS.Server != old:
		e.add(raw, "delivery.dns_server", fmt.Sprintf("%q differs from dns.server %q: remove delivery.dns_server (deprecated) and keep dns.server", old, c.DNS.Server))
	}
}

// validDNSServer accepts "ADDRESS:PORT" or an address (port 53).
func validDNSServer(v string) bool {
	if _, _, err := net.SplitHostPort(v); err == nil {
		return true
	}
	_, err := netip.ParseAddr(strings.Trim(v, "[]"))
	return err == nil
}

func (c *Config) validateCheckpassword(raw []byte, e *Errors) {
	cp := c.Checkpassword
	if cp.Enabled && len(cp.Users) == 0 {
		e.add(raw, "checkpassword.users", "must name at least one Unix user (the IMAP server's authentication user, e.g. \"dovecot\") when enabled")
	}
	for _, u := range cp.Users {
		if u == "" || strings.ContainsAny(u, " \t:/") {
			e.add(raw, "checkpassword.users", fmt.Sprintf("%q is not a Unix user name", u))
		}
	}
}

func (c *Config) validateSendmail(raw []byte, e *Errors) {
	sm := c.Sendmail
	names := make([]string, 0, len(sm.Users))
	for n := range sm.Users {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := sm.Users[n]
		local, dom, ok := strings.Cut(a, "@")
		if n == "" || !ok || local == "" || strings.ContainsAny(local, " \t<>@\"") || !validHostname(dom) {
			e.add(raw, "sendmail.users", fmt.Sprintf("%q = %q: the value must be an address like user@example.org", n, a))
		}
	}
	if sm.DefaultDomain != "" && !validHostname(sm.DefaultDomain) {
		e.add(raw, "sendmail.default_domain", fmt.Sprintf("%q is not a valid domain", sm.DefaultDomain))
	}
}

// SendmailAddress is the address a local Unix user sends as through the
// sendmail socket, or "" when that user may not send.
func (c *Config) SendmailAddress(unixUser string) string {
	if a, ok := c.Sendmail.Users[unixUser]; ok {
		return strings.ToLower(a)
	}
	if c.Sendmail.DefaultDomain != "" && unixUser != "" {
		return strings.ToLower(unixUser + "@" + c.Sendmail.DefaultDomain)
	}
	return ""
}

// routeLine finds the line that routes dom: a key in a [delivery.routes]
// table, or else the "routes = { ... }" line of [delivery].
func routeLine(raw []byte, dom string) int {
	cur := ""
	for i, line := range strings.Split(string(raw), "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
			cur = strings.TrimSpace(strings.Trim(t, "[]"))
			continue
		}
		if k, _, ok := strings.Cut(t, "="); ok && cur == "delivery.routes" && strings.Trim(strings.TrimSpace(k), `"'`) == dom {
			return i + 1
		}
	}
	return lineOf(raw, "delivery.routes")
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			ch := label[i] | 0x20
			if !(ch >= 'a' && ch <= 'z' || label[i] >= '0' && label[i] <= '9' || label[i] == '-') {
				return false
			}
		}
	}
	return true
}

func validLiteral(d string) bool {
	if !strings.HasPrefix(d, "[") || !strings.HasSuffix(d, "]") {
		return false
	}
	in := strings.TrimPrefix(d[1:len(d)-1], "IPv6:")
	_, err := netip.ParseAddr(in)
	return err == nil
}

// resolvePaths makes relative paths absolute against the config file's
// directory (or the working directory for embedded defaults).
func (c *Config) resolvePaths() {
	base := "."
	if c.Path != "" {
		base = filepath.Dir(c.Path)
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		r, err := filepath.Abs(filepath.Join(base, p))
		if err != nil {
			return filepath.Join(base, p)
		}
		return r
	}
	c.DataDir = abs(c.DataDir)
	c.TLS.Cert = abs(c.TLS.Cert)
	c.TLS.Key = abs(c.TLS.Key)
	c.LogFile = abs(c.LogFile)
	c.Delivery.SmarthostPasswordFile = abs(c.Delivery.SmarthostPasswordFile)
	c.Delivery.SmarthostCAFile = abs(c.Delivery.SmarthostCAFile)
	c.Sendmail.Socket = abs(c.Sendmail.Socket)
	c.Checkpassword.Socket = abs(c.Checkpassword.Socket)
	for d, rv := range c.RelayVerify {
		rv.List = abs(rv.List)
		c.RelayVerify[d] = rv
	}
}

// Finish validates and resolves a config built in code (the embedded
// defaults); Load and Parse call the same steps.
func (c *Config) Finish() error {
	errs := &Errors{Path: "(defaults)"}
	c.validate(nil, errs)
	if len(errs.List) > 0 {
		return errs
	}
	c.resolvePaths()
	return nil
}

// DBPath is the account database under the data directory.
func (c *Config) DBPath() string { return filepath.Join(c.DataDir, "kanmon.db") }

// QueueDir is the spool directory (see package queue).
func (c *Config) QueueDir() string { return filepath.Join(c.DataDir, "queue") }

// MailRoot holds the Maildirs, one per account: MailRoot/DOMAIN/USER.
func (c *Config) MailRoot() string { return filepath.Join(c.DataDir, "mail") }

// SocketPath is the local socket `kanmon sendmail` talks to: [sendmail]
// socket, or kanmon.sock in PublicDir. It lives apart from the data
// directory's secrets so that local users may reach it.
func (c *Config) SocketPath() string {
	if c.Sendmail.Socket != "" {
		return c.Sendmail.Socket
	}
	return filepath.Join(c.PublicDir(), "kanmon.sock")
}

// AuthSocketPath is the socket `kanmon checkpassword` asks: [checkpassword]
// socket, or auth.sock in PublicDir.
func (c *Config) AuthSocketPath() string {
	if c.Checkpassword.Socket != "" {
		return c.Checkpassword.Socket
	}
	return filepath.Join(c.PublicDir(), "auth.sock")
}

// PublicDir is the one directory under the data directory that local
// users may enter: it holds the default sendmail socket and nothing else.
func (c *Config) PublicDir() string { return filepath.Join(c.DataDir, "public") }

// AdminTokenPath is the file holding the admin listener's bearer token
// (mode 0600), created by `kanmon init` or on the first start and read by
// `kanmon queue`.
func (c *Config) AdminTokenPath() string { return filepath.Join(c.DataDir, "admin.token") }
