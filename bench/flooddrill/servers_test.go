package flooddrill

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kanmon/internal/testutil/postfix"
)

// target is one server under the drill.
type target struct {
	name       string
	mx         string
	submit     Submitter
	pid        int
	queueDirs  []string
	metricsURL string // kanmon's /metrics; "" for Postfix
	// stop ends the server; the CPU total is read before it.
	stop func()
}

// floodRecipients are real accounts at the drill's domain: a bounce flood
// names the users whose addresses the spammer forged.
var floodRecipients = []string{"alice@example.org", "bob@example.org", "carol@example.org"}

const drillPassword = "drill password 1"

var (
	buildOnce sync.Once
	kanmonBin string
	buildErr  error
)

// buildKanmon builds the binary once per test process.
func buildKanmon(tb testing.TB) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kanmon-drill-bin")
		if err != nil {
			buildErr = err
			return
		}
		kanmonBin = filepath.Join(dir, "kanmon")
		out, err := exec.Command("go", "build", "-o", kanmonBin, "kanmon/cmd/kanmon").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return kanmonBin
}

func freeAddr(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startKanmon starts the real binary: MX, submission and admin on
// loopback, example.org local with the flood's recipients and the
// ordinary sender, the sink's domain routed to the sink. The inbound
// checks that need DNS are off (there is no DNS here) and so is the
// greeting delay: Postfix's default has neither, and the drill measures
// the answer to the bounces, not the wait.
func startKanmon(tb testing.TB, sink *Sink) *target {
	bin := buildKanmon(tb)
	dir := tb.TempDir()
	mx, sub, admin := freeAddr(tb), freeAddr(tb), freeAddr(tb)
	run := func(stdin string, args ...string) {
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("kanmon %s: %v\n%s", args[0], err, out)
		}
	}
	run("", "init", "--dir", dir, "--domain", "example.org", "--hostname", "mx.example.org",
		"--mx-addr", mx, "--submission-addr", sub, "--smtps-addr", "", "--admin-addr", admin)
	conf := filepath.Join(dir, "kanmon.toml")
	set := map[string]string{
		"log_file":                      `"kanmon.log"`,
		"limits.max_connections_per_ip": "1000",
		"limits.max_connections":        "5000",
		"dns.server":                    `"127.0.0.1:1"`,
		"delivery.routes":               fmt.Sprintf(`{ "sink.test" = %q }`, sink.Addr),
		"inbound.greet_delay":           `"0s"`,
		"inbound.dynamic_client":        `"off"`,
		"inbound.missing_ptr":           `"off"`,
		"inbound.fcrdns_mismatch":       `"off"`,
		"inbound.sender_domain":         `"off"`,
		"inbound.spf_fail":              `"off"`,
		"inbound.spf_temperror":         `"off"`,
		// The ordinary stream is 1,000 messages from one test account
		// in under a minute: far over an account's default rate limit.
		// Raised here, so the drill measures the flood, not the limit.
		"ratelimit.messages_per_hour":           "1000000",
		"ratelimit.messages_burst":              "100000",
		"ratelimit.recipients_per_hour":         "1000000",
		"ratelimit.recipients_burst":            "100000",
		"ratelimit.domains_per_hour":            "1000000",
		"ratelimit.domains_burst":               "100000",
		"ratelimit.address_messages_per_hour":   "1000000",
		"ratelimit.address_messages_burst":      "100000",
		"ratelimit.address_recipients_per_hour": "1000000",
		"ratelimit.address_recipients_burst":    "100000",
		"ratelimit.address_domains_per_hour":    "1000000",
		"ratelimit.address_domains_burst":       "100000",
		"ratelimit.anomaly":                     `"off"`,
		"ratelimit.mx_connections_per_minute":   "0",
	}
	if os.Getuid() == 0 {
		set["run_as"] = `"root"`
	}
	if err := setTOML(conf, set); err != nil {
		tb.Fatal(err)
	}
	for _, u := range append([]string{"sender@example.org"}, floodRecipients...) {
		run(drillPassword+"\n", "user", "add", u, "--config", conf, "--password-stdin")
	}
	cmd := exec.Command(bin, "serve", "--config", conf)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
		}
	}
	tb.Cleanup(stop)
	if err := waitListen(mx, sub, admin); err != nil {
		tb.Fatal(err)
	}
	return &target{
		name:       "kanmon",
		mx:         mx,
		submit:     Submission(sub, "sender@example.org", drillPassword),
		pid:        cmd.Process.Pid,
		queueDirs:  []string{filepath.Join(dir, "data", "queue", "msg")},
		metricsURL: "http://" + admin + "/metrics",
		stop:       stop,
	}
}

// startPostfix starts a private Postfix in its default configuration
// but for what the drill needs: example.org delivered to Maildir, the
// sink's domain relayed to the sink, and the ordinary sender's address
// (127.0.0.1) in mynetworks; the flood comes from elsewhere in 127/8.
func startPostfix(tb testing.TB, sink *Sink) *target {
	postfix.Require(tb)
	inst := postfix.Start(tb, postfix.Options{
		Hostname:    "mx.example.org",
		Domain:      "example.org",
		Delivery:    postfix.Maildir,
		MaxLifetime: 60 * time.Minute,
		MainCF: fmt.Sprintf("mynetworks = 127.0.0.1/32\n"+
			"transport_maps = inline:{ sink.test=smtp:[%s]:%s }\n",
			strings.Split(sink.Addr, ":")[0], strings.Split(sink.Addr, ":")[1]),
	})
	q := filepath.Join(inst.Dir, "queue")
	var dirs []string
	for _, d := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		dirs = append(dirs, filepath.Join(q, d))
	}
	return &target{
		name:      "postfix",
		mx:        inst.Addr,
		submit:    Plain(inst.Addr, "sender@example.org"),
		pid:       inst.PID(),
		queueDirs: dirs,
		stop:      inst.Stop,
	}
}

func waitListen(addrs ...string) error {
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s does not listen: %w", a, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// setTOML sets "section.key" (or a top-level "key") in the config file,
// replacing the line that sets it or adding one to its section.
func setTOML(path string, set map[string]string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.Split(string(b), "\n")
	for full, val := range set {
		section, key := "", full
		if i := strings.LastIndexByte(full, '.'); i >= 0 {
			section, key = full[:i], full[i+1:]
		}
		lines = setLine(lines, section, key, val)
	}
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600)
}

func setLine(lines []string, section, key, val string) []string {
	cur, sectionEnd := "", -1
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") {
			if cur == section && sectionEnd < 0 {
				sectionEnd = i
			}
			cur = strings.Trim(t, "[]")
			continue
		}
		if cur != section {
			continue
		}
		if k, _, ok := strings.Cut(t, "="); ok && strings.TrimSpace(k) == key {
			lines[i] = key + " = " + val
			return lines
		}
	}
	line := key + " = " + val
	switch {
	case cur == section && sectionEnd < 0: // the last section
		return append(lines, line)
	case sectionEnd >= 0:
		return append(lines[:sectionEnd], append([]string{line}, lines[sectionEnd:]...)...)
	default:
		return append(lines, "["+section+"]", line)
	}
}
