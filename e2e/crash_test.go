package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCrashUnderLoadLosesNothingAcknowledged is law 1 under load: eight
// senders push about two thousand messages at the MX port, the server is
// killed with SIGKILL at a random point after about half of them, and
// started again. Every message that got "250" must reach the Maildir (at
// least once), and every file in the Maildir must be complete: its body
// checksum matches and it ends with the last line we sent.
func TestCrashUnderLoadLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("load test; skipped with -short")
	}
	s := startServer(t, options{set: map[string]string{"limits.max_connections_per_ip": "100"}})
	const (
		senders = 8
		total   = 2000
	)
	killAt := int64(total*4/10 + rand.IntN(total/5)) // 800..1199 acknowledged
	var (
		mu          sync.Mutex
		acked       = map[string]bool{}
		nAcked      atomic.Int64
		nSent       atomic.Int64
		killed      = make(chan struct{})
		restarted   = make(chan struct{})
		killOne     sync.Once
		ackedAtKill atomic.Int64
	)
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < total; i += senders {
				id := fmt.Sprintf("<crash.%d.%d@e2e.remote.test>", time.Now().UnixNano(), i)
				nSent.Add(1)
				_, err := trySendMail(s.MX, "sender@remote.test", []string{alice}, crashMessage(id, i))
				if err != nil {
					select {
					case <-killed:
						// The crash: a sender retries the message (as a
						// new one) once the server is back.
						<-restarted
						if t.Failed() || nSent.Load() > 2*total {
							return
						}
						i -= senders
						continue
					default:
						t.Errorf("message %d before the kill: %v", i, err)
						return
					}
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
				if n := nAcked.Add(1); n == killAt {
					killOne.Do(func() {
						close(killed)
						s.Kill(t)
						ackedAtKill.Store(n)
						if err := s.start(t); err != nil {
							t.Errorf("restarting kanmon after SIGKILL: %v", err)
						}
						close(restarted)
					})
				}
			}
		}()
	}
	wg.Wait()
	if ackedAtKill.Load() == 0 {
		t.Fatal("the load ended before the kill")
	}
	t.Logf("attempted %d transactions, %d acknowledged (%d before SIGKILL)", nSent.Load(), nAcked.Load(), ackedAtKill.Load())
	deadline := time.Now().Add(45 * time.Second)
	for len(s.QueueIDs(t)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("queue not drained 45s after restart: %d messages left", len(s.QueueIDs(t)))
		}
		time.Sleep(50 * time.Millisecond)
	}

	dir := s.Maildir(alice)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	delivered := map[string]int{}
	corrupt := 0
	for _, e := range ents {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		id, problem := checkCrashMessage(string(raw))
		if problem != "" {
			corrupt++
			if corrupt <= 5 {
				t.Errorf("corrupt delivery %s: %s", e.Name(), problem)
			}
			continue
		}
		delivered[id]++
	}
	missing := 0
	for id := range acked {
		if delivered[id] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged message %s was not delivered", id)
			}
		}
	}
	dups := 0
	for _, n := range delivered {
		if n > 1 {
			dups += n - 1
		}
	}
	t.Logf("acknowledged %d, delivered %d distinct (%d duplicates), corrupt %d, missing %d",
		len(acked), len(delivered), dups, corrupt, missing)
	if corrupt > 0 || missing > 0 {
		t.Fatalf("%d corrupt deliveries, %d acknowledged messages lost", corrupt, missing)
	}
	if len(delivered) < len(acked) {
		t.Fatalf("delivered %d < acknowledged %d", len(delivered), len(acked))
	}
}

// crashMessage builds message i: a payload of varying length, its SHA-256
// and a final END line.
func crashMessage(msgID string, i int) string {
	var p strings.Builder
	r := rand.New(rand.NewPCG(uint64(i), 7))
	for range 5 + r.IntN(60) {
		fmt.Fprintf(&p, "%016x%016x%016x%016x line of message %d\n", r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64(), i)
	}
	payload := p.String()
	sum := sha256.Sum256([]byte(payload))
	return message("sender@remote.test", alice, fmt.Sprintf("crash %d", i), msgID,
		payload+"sha256: "+hex.EncodeToString(sum[:])+"\nEND "+msgID)
}

var crashIDRE = regexp.MustCompile(`(?mi)^Message-Id: (<crash\.[^>]+>)$`)

// checkCrashMessage returns the message's id, or what is wrong with it.
func checkCrashMessage(raw string) (string, string) {
	text := strings.ReplaceAll(raw, "\r\n", "\n")
	m := crashIDRE.FindStringSubmatch(text)
	if m == nil {
		return "", fmt.Sprintf("no Message-Id (%d bytes)", len(raw))
	}
	id := m[1]
	_, body, ok := strings.Cut(text, "\n\n")
	if !ok {
		return id, "no header/body separator"
	}
	if !strings.HasSuffix(body, "END "+id+"\n") {
		return id, "does not end with its END line (truncated?)"
	}
	i := strings.LastIndex(body, "sha256: ")
	if i < 0 {
		return id, "no checksum line"
	}
	payload := body[:i]
	want, _, _ := strings.Cut(body[i+len("sha256: "):], "\n")
	sum := sha256.Sum256([]byte(payload))
	if hex.EncodeToString(sum[:]) != want {
		return id, "checksum mismatch"
	}
	return id, ""
}
