package scheduler

import (
	"context"
	"crypto/x509"
	"kanmon/internal/testutil/logbuf"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kanmon/internal/auth"
	"kanmon/internal/config"
	"kanmon/internal/directory"
	"kanmon/internal/logging"
	"kanmon/internal/metrics"
	"kanmon/internal/policy"
	"kanmon/internal/queue"
	"kanmon/internal/smtpd"
	"kanmon/internal/tlsutil"
)

const smarthostPassword = "smarthost secret 123"

// smarthost is a second kanmon (its SMTP engine in-process) acting as the
// submission server we relay through.
type smarthost struct {
	submission, smtps string
	spool             *queue.Spool
	roots             *x509.CertPool
	queued            chan string
	logs              *logbuf.Buffer
}

// idChan stands in for the smarthost's scheduler: it passes on the ids
// of committed messages.
type idChan chan string

func (c idChan) Enqueue(env *queue.Envelope) { c <- env.ID }

func startSmarthost(t *testing.T) *smarthost {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Hostname = "smarthost.test"
	cfg.Domains = []string{"isp.test"}
	cfg.DataDir = dir
	cfg.TLS.Cert = filepath.Join(dir, "cert.pem")
	cfg.TLS.Key = filepath.Join(dir, "key.pem")
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsutil.WriteSelfSigned(cfg.TLS.Cert, cfg.TLS.Key, []string{"smarthost.test", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	certs, err := tlsutil.Load(cfg.TLS.Cert, cfg.TLS.Key)
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := os.ReadFile(cfg.TLS.Cert)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	db, err := directory.Open(cfg.DBPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h, _ := auth.HashPassword(smarthostPassword)
	if err := db.AddUser(context.Background(), "customer@isp.test", h); err != nil {
		t.Fatal(err)
	}
	spool, err := queue.Open(cfg.QueueDir(), queue.Limits{MaxMessages: 100, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	sh := &smarthost{spool: spool, roots: roots, queued: make(chan string, 10), logs: &logbuf.Buffer{}}
	srv := smtpd.New(smtpd.Deps{
		Config: cfg, Spool: spool, TLS: certs.Config(),
		Auth:      auth.New(db, auth.NewThrottle(auth.ThrottleConfig{Window: time.Minute, FreeFailures: 3, MaxFailures: 10, MaxDelay: time.Millisecond})),
		Policy:    policy.NewEngine(policy.Domains{Local: map[string]bool{"isp.test": true}, Relay: map[string]bool{}}, db, true),
		Logger:    logging.New(sh.logs, "json", slog.LevelInfo),
		Metrics:   metrics.New(func() float64 { return 0 }, func() float64 { return 0 }),
		Scheduler: idChan(sh.queued),
	})
	for _, role := range []smtpd.Role{smtpd.RoleSubmission, smtpd.RoleSMTPS} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if role == smtpd.RoleSubmission {
			sh.submission = ln.Addr().String()
		} else {
			sh.smtps = ln.Addr().String()
		}
		go srv.Serve(ln, role)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return sh
}

// TestSmarthostSubmission: in smarthost mode all outbound mail goes to a
// real submission server (kanmon's own SMTP engine) over STARTTLS with a
// verified certificate and AUTH PLAIN; it accepts the message as an
// authenticated relay. Over implicit TLS (the smtps port) likewise.
func TestSmarthostSubmission(t *testing.T) {
	sh := startSmarthost(t)
	for _, tc := range []struct{ name, addr string }{{"starttls", sh.submission}, {"implicit-tls", sh.smtps}} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.addr
			e := newEnv(t, func(s *Scheduler) {
				rem(s).Smarthost = addr
				rem(s).SmarthostUser = "customer@isp.test"
				rem(s).SmarthostPassword = smarthostPassword
				rem(s).SmarthostRoots = sh.roots
				rem(s).ImplicitTLS = tc.name == "implicit-tls"
			})
			env := ownUser("friend@far.test")
			env.From = "customer@isp.test"
			e.submit(t, env, testMessage("customer@isp.test", "friend@far.test", "via-"+tc.name))
			var id string
			select {
			case id = <-sh.queued:
			case <-time.After(10 * time.Second):
				t.Fatalf("smarthost queued nothing\nsmarthost log:\n%s", sh.logs.String())
			}
			m, err := sh.spool.Open(id)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Envelope.Origin != queue.OriginAuthenticated || m.Envelope.AuthUser != "customer@isp.test" ||
				m.Envelope.Recipients[0].Addr != "friend@far.test" {
				t.Errorf("smarthost envelope %+v", m.Envelope)
			}
			waitFor(t, "queue to empty", e.queueEmpty)
			if !e.logs.Has("delivery", func(l map[string]any) bool {
				return l["result"] == "delivered" && strings.HasPrefix(l["tls"].(string), "TLS 1.")
			}) {
				t.Errorf("no delivered line over TLS")
			}
			if strings.Contains(e.logs.String(), smarthostPassword) || strings.Contains(sh.logs.String(), smarthostPassword) {
				t.Errorf("the smarthost password appears in a log")
			}
		})
	}
}

// TestSmarthostBadPasswordDefers: wrong credentials are the operator's to
// fix: the message is deferred (never bounced) and stays queued; the
// password is not logged.
func TestSmarthostBadPasswordDefers(t *testing.T) {
	sh := startSmarthost(t)
	e := newEnv(t, func(s *Scheduler) {
		rem(s).Smarthost = sh.submission
		rem(s).SmarthostUser = "customer@isp.test"
		rem(s).SmarthostPassword = "wrong password"
		rem(s).SmarthostRoots = sh.roots
	})
	env := ownUser("friend@far.test")
	id := e.submit(t, env, testMessage("alice@example.org", "friend@far.test", "bad-auth"))
	waitFor(t, "a deferred attempt", func() bool {
		return e.logs.Has("delivery", func(l map[string]any) bool {
			return l["queue_id"] == id && l["result"] == "deferred" && strings.Contains(l["reply"].(string), "AUTH")
		})
	})
	if e.queueEmpty() || len(e.maildir("alice@example.org")) != 0 {
		t.Errorf("bad smarthost credentials led to a bounce or a lost message")
	}
	if strings.Contains(e.logs.String(), "wrong password") {
		t.Errorf("the password appears in the log")
	}
}

// TestSmarthostUnverifiedCertRefused: a smarthost whose certificate does
// not verify never gets the credentials; the message stays queued.
func TestSmarthostUnverifiedCertRefused(t *testing.T) {
	sh := startSmarthost(t)
	e := newEnv(t, func(s *Scheduler) {
		rem(s).Smarthost = sh.submission
		rem(s).SmarthostUser = "customer@isp.test"
		rem(s).SmarthostPassword = smarthostPassword
		rem(s).SmarthostRoots = x509.NewCertPool() // trusts nothing
	})
	id := e.submit(t, ownUser("friend@far.test"), testMessage("alice@example.org", "friend@far.test", "mitm"))
	waitFor(t, "a deferred attempt", func() bool {
		return e.logs.Has("delivery", func(l map[string]any) bool {
			return l["queue_id"] == id && l["result"] == "deferred" && strings.Contains(l["reply"].(string), "TLS")
		})
	})
	if strings.Contains(sh.logs.String(), `"msg":"auth"`) {
		t.Errorf("credentials reached a smarthost with an unverified certificate")
	}
}
