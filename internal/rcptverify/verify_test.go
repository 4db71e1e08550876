package rcptverify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kanmon/internal/courier/remote"
	"kanmon/internal/logging"
	"kanmon/internal/testutil/logbuf"
)

// fakeProber answers from a map (address -> "code enhanced text"; absent:
// an error), counts probes and the most in flight at once, and waits
// for release when set.
type fakeProber struct {
	mu       sync.Mutex
	answers  map[string]string
	probes   map[string]int
	inflight atomic.Int32
	peak     atomic.Int32
	release  chan struct{}
}

func (f *fakeProber) Probe(ctx context.Context, domain, rcpt string) remote.ProbeResult {
	n := f.inflight.Add(1)
	defer f.inflight.Add(-1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	f.mu.Lock()
	f.probes[rcpt]++
	a, ok := f.answers[rcpt]
	f.mu.Unlock()
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return remote.ProbeResult{Err: ctx.Err()}
		}
	}
	if !ok {
		return remote.ProbeResult{Host: "mx.partner.test", Err: errors.New("127.0.0.1:25: connect: connection refused")}
	}
	var r remote.ProbeResult
	fmt.Sscanf(a, "%d %s", &r.Code, &r.Enhanced)
	r.Text, r.Host = a, "mx.partner.test"
	return r
}

func (f *fakeProber) count(rcpt string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.probes[rcpt]
}

func newFake() *fakeProber {
	return &fakeProber{probes: map[string]int{}, answers: map[string]string{
		"known@partner.test":  "250 2.1.5 ok",
		"nosuch@partner.test": "550 5.1.1 user unknown",
		"grey@partner.test":   "450 4.7.1 greylisted",
	}}
}

func newTestVerifier(t *testing.T, cfg Config, p Prober) (*Verifier, *logbuf.Buffer) {
	t.Helper()
	logs := &logbuf.Buffer{}
	v, err := New(cfg, p, logging.New(logs, "json", slog.LevelInfo), nil)
	if err != nil {
		t.Fatal(err)
	}
	return v, logs
}

// TestProbeAnswersAndCache: a 2xx is valid and a 5xx invalid, each
// cached for its own lifetime; a 4xx or no answer is unverified and not
// cached; the cache answers without a probe and says so in the log.
func TestProbeAnswersAndCache(t *testing.T) {
	f := newFake()
	v, logs := newTestVerifier(t, Config{PositiveTTL: 7 * 24 * time.Hour, NegativeTTL: 3 * time.Hour}, f)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	v.now = func() time.Time { return now }
	ctx := context.Background()
	check := func(local string, want Outcome, source string, probes int) {
		t.Helper()
		r := v.Verify(ctx, "c1", local, "partner.test")
		if r.Outcome != want || r.Source != source {
			t.Errorf("%s: %s from %s, want %s from %s (%+v)", local, r.Outcome, r.Source, want, source, r)
		}
		if n := f.count(local + "@partner.test"); n != probes {
			t.Errorf("%s: %d probes, want %d", local, n, probes)
		}
	}
	check("known", Valid, "probe", 1)
	check("known", Valid, "cache", 1)
	check("nosuch", Invalid, "probe", 1)
	check("nosuch", Invalid, "cache", 1)
	check("grey", Unverified, "probe", 1)
	check("grey", Unverified, "probe", 2)
	check("down", Unverified, "probe", 1)
	check("down", Unverified, "probe", 2)
	// After the negative lifetime, the negative answer is asked again;
	// the positive one lives on.
	now = now.Add(3*time.Hour + time.Second)
	check("nosuch", Invalid, "probe", 2)
	check("known", Valid, "cache", 1)
	now = now.Add(7 * 24 * time.Hour)
	check("known", Valid, "probe", 2)
	if r := v.Verify(ctx, "c1", "nosuch", "partner.test"); r.Code != 550 || r.Enhanced != "5.1.1" || !strings.Contains(r.Text, "user unknown") {
		t.Errorf("cached negative answer lost the partner's reply: %+v", r)
	}
	out := logs.String()
	for _, want := range []string{`"msg":"rcpt.verify"`, `"conn":"c1"`, `"source":"cache"`, `"source":"probe"`, `"result":"invalid"`, `"code":550`, `"mx":"mx.partner.test"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

// TestOneProbePerAddress: sessions asking about the same address at
// once share one probe.
func TestOneProbePerAddress(t *testing.T) {
	f := newFake()
	f.release = make(chan struct{})
	v, _ := newTestVerifier(t, Config{ProbeTimeout: 10 * time.Second}, f)
	var wg sync.WaitGroup
	results := make([]Result, 20)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = v.Verify(context.Background(), "c", "known", "partner.test")
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.count("known@partner.test") == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the others join
	close(f.release)
	wg.Wait()
	if n := f.count("known@partner.test"); n != 1 {
		t.Errorf("%d probes for one address asked 20 times at once, want 1", n)
	}
	for i, r := range results {
		if r.Outcome != Valid {
			t.Errorf("session %d: %+v", i, r)
		}
	}
}

// TestProbesBounded: at most MaxProbes run at once, and a question that
// finds no slot within the timeout is unverified, never valid.
func TestProbesBounded(t *testing.T) {
	f := newFake()
	f.release = make(chan struct{})
	for i := range 10 {
		f.answers[fmt.Sprintf("u%d@partner.test", i)] = "250 2.1.5 ok"
	}
	v, _ := newTestVerifier(t, Config{MaxProbes: 2, ProbeTimeout: 300 * time.Millisecond}, f)
	var wg sync.WaitGroup
	var unverified atomic.Int32
	start := time.Now()
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := v.Verify(context.Background(), "c", fmt.Sprintf("u%d", i), "partner.test"); r.Outcome == Unverified {
				unverified.Add(1)
			}
		}()
	}
	wg.Wait()
	close(f.release)
	if p := f.peak.Load(); p > 2 {
		t.Errorf("%d probes at once, bound 2", p)
	}
	if unverified.Load() != 10 {
		t.Errorf("%d of 10 unanswered questions unverified, want all", unverified.Load())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("questions took %s with a 300ms timeout", d)
	}
}

// TestList: the static list decides, with ASCII case folding, and an
// edit reaches a running verifier.
func TestList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "partner.txt")
	os.WriteFile(path, []byte("# valid recipients\nAlice@partner.test\nbob   # a bare local part\n\n"), 0o600)
	v, _ := newTestVerifier(t, Config{Domains: map[string]Domain{"partner.test": {Method: MethodList, List: path}}}, newFake())
	for local, want := range map[string]Outcome{"alice": Valid, "ALICE": Valid, "bob": Valid, "carol": Invalid} {
		if r := v.Verify(context.Background(), "c", local, "partner.test"); r.Outcome != want || r.Source != "list" {
			t.Errorf("%s: %+v, want %s", local, r, want)
		}
	}
	os.WriteFile(path, []byte("carol@partner.test\n"), 0o600)
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(path, future, future)
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := v.Verify(context.Background(), "c", "carol", "partner.test"); r.Outcome != Valid {
		t.Errorf("carol after the edit: %+v", r)
	}
	if r := v.Verify(context.Background(), "c", "alice", "partner.test"); r.Outcome != Invalid {
		t.Errorf("alice after the edit: %+v", r)
	}
}

// TestListErrors: a list naming another domain or missing stops the
// start, with the file and line.
func TestListErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "partner.txt")
	os.WriteFile(path, []byte("alice@partner.test\nbob@other.test\n"), 0o600)
	_, err := New(Config{Domains: map[string]Domain{"partner.test": {Method: MethodList, List: path}}}, newFake(), nil, nil)
	if err == nil || !strings.Contains(err.Error(), path+":2") {
		t.Errorf("list with another domain: %v", err)
	}
	_, err = New(Config{Domains: map[string]Domain{"partner.test": {Method: MethodList, List: path + ".missing"}}}, newFake(), nil, nil)
	if err == nil {
		t.Error("missing list: no error")
	}
}

// TestCacheBounded: a flood of made-up addresses never grows the cache
// past its bound.
func TestCacheBounded(t *testing.T) {
	c := newCache(100)
	exp := time.Now().Add(time.Hour)
	for i := range 1000 {
		c.put(fmt.Sprintf("u%d", i), Result{Outcome: Invalid}, exp)
		if c.len() > 100 {
			t.Fatalf("cache holds %d entries after %d puts, bound 100", c.len(), i+1)
		}
	}
}
