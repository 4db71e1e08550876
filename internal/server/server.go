// Package server wires kanmon's parts together for `kanmon serve`: the
// directory, the queue, the delivery scheduler, the SMTP, POP3 and admin
// listeners, and the signals (SIGTERM drains, SIGHUP reloads).
//
// SECURITY: only the listeners with an address in the config are opened
// (law 7); the admin listener is meant for loopback.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"crypto/tls"
	"crypto/x509"

	"kanmon/internal/auth"
	"kanmon/internal/authsock"
	"kanmon/internal/batv"
	"kanmon/internal/config"
	"kanmon/internal/courier/local"
	"kanmon/internal/courier/remote"
	"kanmon/internal/directory"
	"kanmon/internal/dkim"
	"kanmon/internal/dnsresolve"
	"kanmon/internal/dsn"
	"kanmon/internal/inbound"
	"kanmon/internal/metrics"
	"kanmon/internal/msgauth"
	"kanmon/internal/policy"
	"kanmon/internal/pop3"
	"kanmon/internal/popbefore"
	"kanmon/internal/privdrop"
	"kanmon/internal/queue"
	"kanmon/internal/ratelimit"
	"kanmon/internal/rcptverify"
	"kanmon/internal/scheduler"
	"kanmon/internal/smtpd"
	"kanmon/internal/state"
	"kanmon/internal/tlsutil"
)

// Server is a running kanmon.
type Server struct {
	cfg   *config.Config
	log   *slog.Logger
	dir   *directory.DB
	spool *queue.Spool
	auth  *auth.Authenticator
	certs *tlsutil.Store
	pol   *policy.Engine
	smtp  *smtpd.Server
	sched *scheduler.Scheduler
	// inbound screens MX clients and senders (internal/inbound).
	inbound *inbound.Screen
	// msgauth is the DATA stage on MX (internal/msgauth).
	msgauth *msgauth.Checker
	met     *metrics.Metrics
	admin   *http.Server
	popb    *popbefore.Registry // nil unless pop3.pop_before_smtp is set
	// verify checks relay-domain recipients at RCPT.
	verify *rcptverify.Verifier
	// adminToken is the bearer token of the admin listener.
	adminToken string
	// tcp holds the TCP listeners Open bound, by name.
	tcp map[string]net.Listener
	// authsrv answers `kanmon checkpassword` (nil unless enabled).
	authsrv *authsock.Server
	// dkim holds the DKIM signing keys.
	dkim *dkim.Store
	// state is the state database (greylisting, rate limits); limits
	// applies [ratelimit] with it.
	state  *state.SQLite
	limits *ratelimit.Limiter
	// batv tags our users' senders and checks bounces (server/batv.go).
	batv *batv.Guard
}

// service is a listener's protocol server (POP3) run alongside SMTP.
type service interface {
	Serve(ln net.Listener) error
	Shutdown(ctx context.Context) error
}

// Open prepares everything and binds every configured listener, so a port
// in use is reported before anything is served.
func Open(cfg *config.Config, log *slog.Logger) (*Server, error) {
	target, err := privdrop.Plan(cfg.RunAs, os.Geteuid())
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{cfg: cfg, log: log}
	// As root: read the certificate (its key may be readable by root
	// only) and bind the ports, then become run_as before the data
	// directory is touched.
	if cfg.TLS.Cert != "" {
		if s.certs, err = tlsutil.Load(cfg.TLS.Cert, cfg.TLS.Key); err != nil {
			return nil, err
		}
	}
	var errs []error
	if s.tcp, errs = bindTCP(cfg); len(errs) > 0 {
		closeTCP(s.tcp)
		return nil, errors.Join(errs...)
	}
	opened := false
	defer func() {
		if !opened {
			closeTCP(s.tcp)
		}
	}()
	if err := s.dropPrivileges(target); err != nil {
		return nil, err
	}
	if err := checkOwner(cfg.DataDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	// Modes first, so what an older version left open is logged before
	// the database is opened (which would tighten it silently).
	if err := s.secureDataDir(); err != nil {
		return nil, err
	}
	existing := hadDatabase(cfg.DBPath())
	if s.dir, err = directory.Open(cfg.DBPath()); err != nil {
		return nil, err
	}
	if s.spool, err = queue.Open(cfg.QueueDir(), queue.Limits{
		MaxMessages: cfg.Queue.MaxMessages, MaxBytes: int64(cfg.Queue.MaxSize), MinFreeBytes: int64(cfg.Queue.MinFreeSpace),
	}); err != nil {
		return nil, err
	}
	s.auth = auth.New(s.dir, auth.NewThrottle(auth.ThrottleConfig{
		Window: cfg.Limits.AuthFailureWindow.Duration, FreeFailures: 3,
		MaxFailures: cfg.Limits.AuthMaxFailures, MaxDelay: 8 * time.Second,
	}))
	s.met = metrics.New(
		func() float64 { n, _ := s.spool.Len(); return float64(n) },
		func() float64 { _, b := s.spool.Len(); return float64(b) },
	)
	if w := cfg.POP3.PopBeforeSMTP.Duration; w > 0 {
		s.popb = popbefore.New(w)
	}
	s.pol = policy.NewEngine(s.domains(), s.dir, cfg.Policy.RejectForgedLocalSender)
	s.pol.Mailboxes = directory.NewMailboxes(s.dir, cfg.MailRoot(), int64(cfg.Limits.MailboxQuota))
	s.pol.Clients = policy.Clients{Trusted: cfg.Trusted, PopBeforeOnMX: cfg.POP3.PopBeforeSMTPOnMX}
	s.pol.HeaderBinding = headerBinding(cfg)
	if s.popb != nil {
		s.pol.Clients.PopBefore = s.popb
	}
	for _, w := range cfg.WarningLines() {
		log.Warn("config", "warning", w)
	}
	s.dkim = dkim.NewStore(cfg.DKIMDir())
	s.ensureDKIMKeys()
	// The one resolver (law 6): delivery and the inbound checks.
	resolver := dnsresolve.WithTimeout(dnsresolve.New(cfg.DNS.Server), cfg.DNS.Timeout.Duration)
	s.inbound = inbound.New(cfg.Inbound, resolver, s.met)
	if s.state, err = state.Open(cfg.StatePath(), 0, log); err != nil {
		return nil, err
	}
	s.inbound.UseState(s.state)
	s.limits = ratelimit.New(cfg.RateLimit, s.state, s.dir, s.met)
	s.msgauth = msgauth.New(cfg, resolver, s.met)
	remote, err := newRemote(cfg, resolver)
	if err != nil {
		return nil, err
	}
	if err := s.openBATV(existing, remote); err != nil {
		return nil, err
	}
	if s.verify, err = newVerifier(cfg, remote, log, s.met); err != nil {
		return nil, err
	}
	s.pol.Verifier = s.verify
	s.sched = &scheduler.Scheduler{
		Spool: s.spool, Log: log, Metrics: s.met, Workers: cfg.Queue.Workers,
		RetryMin: cfg.Queue.RetryMin.Duration, RetryMax: cfg.Queue.RetryMax.Duration,
		Expire: cfg.Queue.Expire.Duration,
		Local:  &local.Courier{MailRoot: cfg.MailRoot()}, Remote: remote,
		Reports: &dsn.Reporter{
			Spool: s.spool, Log: log, Hostname: cfg.Hostname, LocalAccount: s.localAccount,
			Expire: cfg.Queue.Expire.Duration, DelayWarning: cfg.Delivery.DelayWarning.Duration,
		},
		MaxConcurrency: cfg.Delivery.MaxConcurrency, MaxPerDomain: cfg.Delivery.MaxPerDomain,
	}
	opened = true
	return s, nil
}

// newRemote builds remote delivery from the [delivery] settings. The
// smarthost password is read from its file here and kept in memory only.
func newRemote(cfg *config.Config, resolver dnsresolve.Resolver) (*remote.Remote, error) {
	d := cfg.Delivery
	r := &remote.Remote{
		Resolver: resolver, HeloName: d.HeloName, Routes: map[string]string{},
		Smarthost: d.Smarthost, SmarthostUser: d.SmarthostUser, TransactionTimeout: d.TransactionTimeout.Duration,
	}
	if r.HeloName == "" {
		r.HeloName = cfg.Hostname
	}
	for dom, a := range d.Routes {
		r.Routes[strings.ToLower(strings.TrimSuffix(dom, "."))] = a
	}
	if d.SmarthostPasswordFile != "" {
		raw, err := os.ReadFile(d.SmarthostPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("server: delivery.smarthost_password_file: %w", err)
		}
		r.SmarthostPassword = strings.TrimRight(string(raw), "\r\n")
	}
	if d.SmarthostCAFile != "" {
		pem, err := os.ReadFile(d.SmarthostCAFile)
		if err != nil {
			return nil, fmt.Errorf("server: delivery.smarthost_ca_file: %w", err)
		}
		r.SmarthostRoots = x509.NewCertPool()
		if !r.SmarthostRoots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("server: delivery.smarthost_ca_file %s: no PEM certificate in it", d.SmarthostCAFile)
		}
	}
	return r, nil
}

// newVerifier builds relay-domain recipient verification: every relay
// domain is probed unless [relay_verify."DOMAIN"] says otherwise. The
// probe goes to the domain's route or its MX hosts, never to ourselves
// (our host name, our MX listener).
func newVerifier(cfg *config.Config, r *remote.Remote, log *slog.Logger, met *metrics.Metrics) (*rcptverify.Verifier, error) {
	v := cfg.Verify
	vc := rcptverify.Config{
		Domains:     map[string]rcptverify.Domain{},
		PositiveTTL: v.PositiveTTL.Duration, NegativeTTL: v.NegativeTTL.Duration,
		MaxProbes: v.MaxProbes, ProbeTimeout: v.ProbeTimeout.Duration, CacheSize: v.CacheSize,
	}
	for _, d := range cfg.RelayDomains {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		rv := cfg.RelayVerifyFor(d)
		vc.Domains[d] = rcptverify.Domain{Method: rv.Method, List: rv.List, AcceptUnverified: rv.Unverified == config.UnverifiedAccept}
	}
	p := &remote.Prober{Remote: r, SelfNames: []string{cfg.Hostname, r.HeloName}, Timeout: v.ProbeTimeout.Duration}
	if cfg.Listeners.MX != "" {
		p.SelfAddrs = []string{cfg.Listeners.MX}
	}
	ver, err := rcptverify.New(vc, p, log, met.RcptVerify)
	if err != nil {
		return nil, fmt.Errorf("server: relay_verify: %w", err)
	}
	return ver, nil
}

// localAccount resolves an address in one of our domains to its account
// (the recipient of a DSN for our own user).
func (s *Server) localAccount(addr string) (string, bool) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || !s.pol.Domains().Local[strings.ToLower(addr[i+1:])] {
		return "", false
	}
	return s.dir.Resolve(addr)
}

// domains builds the policy's domain lists from config and database.
func (s *Server) domains() policy.Domains {
	d := policy.Domains{Local: map[string]bool{}, Relay: map[string]bool{}}
	for _, n := range s.cfg.Domains {
		d.Local[strings.ToLower(n)] = true
	}
	for _, n := range s.dir.Domains() {
		d.Local[n] = true
	}
	for _, n := range s.cfg.RelayDomains {
		d.Relay[strings.ToLower(n)] = true
	}
	return d
}

// Dir gives the directory (for the first-run demo account).
func (s *Server) Dir() *directory.DB { return s.dir }

// Auth gives the authenticator (shared with POP3).
func (s *Server) Auth() *auth.Authenticator { return s.auth }

// TLSStore gives the certificate store (nil without TLS).
func (s *Server) TLSStore() *tlsutil.Store { return s.certs }

type bound struct {
	name string
	ln   net.Listener
	run  func(net.Listener) error
}

// Run serves until ctx ends or SIGTERM/SIGINT (graceful drain), and
// reloads on SIGHUP.
func (s *Server) Run(ctx context.Context) error {
	// Signals are caught before any listener serves: a SIGTERM that
	// arrives right after the first greeting is a clean stop, not the
	// default action (the process killed mid-session).
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	cfg := s.cfg
	var tlsCfg = s.tlsConfig()
	deps := smtpd.Deps{
		Config: cfg, Auth: s.auth, Spool: s.spool, Policy: s.pol, TLS: tlsCfg,
		Logger: s.log, Metrics: s.met, Scheduler: s.sched, LocalIdentity: s.localIdentity,
		Inbound: s.inbound,
		DKIM:    s.dkim,
		Limits:  s.limits,
		MsgAuth: s.msgauth,
	}
	s.smtp = smtpd.New(deps)
	extra := map[string]service{}
	popCfg := func(name string) pop3.Config {
		return pop3.Config{
			Hostname: cfg.Hostname, TLS: tlsCfg, AllowPlaintextAuth: cfg.POP3.AllowPlaintextAuth,
			IdleTimeout: cfg.POP3.IdleTimeout.Duration, MaxConnsPerIP: cfg.Limits.MaxConnectionsPerIP,
			MaxConns: cfg.MaxConnectionsFor(name), MailRoot: cfg.MailRoot(), Auth: s.auth, Logger: s.log,
			PopBefore: s.popb, Listener: name, Panics: s.met.Panics.WithLabelValues("pop3"),
		}
	}
	if cfg.Listeners.POP3 != "" {
		extra["pop3"] = pop3.NewServer(popCfg("pop3"))
	}
	if cfg.Listeners.POP3S != "" && tlsCfg != nil {
		extra["pop3s"] = tlsService{pop3.NewServer(popCfg("pop3s")), tlsCfg}
	}
	var ls []bound
	// The TCP listeners were bound by Open (before privileges were
	// dropped); here each gets its protocol.
	listen := func(name, _ string, run func(net.Listener) error) error {
		if ln := s.tcp[name]; ln != nil {
			ls = append(ls, bound{name, ln, run})
		}
		return nil
	}
	var errs []error
	errs = append(errs, listen("mx", cfg.Listeners.MX, func(l net.Listener) error { return s.smtp.Serve(l, smtpd.RoleMX) }))
	errs = append(errs, listen("submission", cfg.Listeners.Submission, func(l net.Listener) error { return s.smtp.Serve(l, smtpd.RoleSubmission) }))
	errs = append(errs, listen("smtps", cfg.Listeners.SMTPS, func(l net.Listener) error { return s.smtp.Serve(l, smtpd.RoleSMTPS) }))
	names := make([]string, 0, len(extra))
	for n := range extra {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		svc := extra[n]
		addr := map[string]string{"pop3": cfg.Listeners.POP3, "pop3s": cfg.Listeners.POP3S}[n]
		errs = append(errs, listen(n, addr, svc.Serve))
	}
	if cfg.Sendmail.Enabled {
		ln, err := listenLocal("sendmail", cfg.SocketPath())
		if err != nil {
			errs = append(errs, err)
		} else {
			ls = append(ls, bound{"sendmail", ln, func(l net.Listener) error { return s.smtp.Serve(l, smtpd.RoleLocal) }})
		}
	}
	if cfg.Checkpassword.Enabled {
		b, err := s.authSocket()
		if err != nil {
			errs = append(errs, err)
		} else {
			ls = append(ls, b)
		}
	}
	s.admin = &http.Server{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	errs = append(errs, listen("admin", cfg.Listeners.Admin, s.serveAdmin))
	if err := errors.Join(errs...); err != nil {
		for _, b := range ls {
			b.ln.Close()
		}
		return err
	}

	schedCtx, stopSched := context.WithCancel(context.Background())
	s.sched.Start(schedCtx)
	for _, b := range ls {
		s.log.Info("listen", "listener", b.name, "addr", b.ln.Addr().String())
		go func() {
			if err := b.run(b.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, pop3.ErrServerClosed) {
				s.log.Error("listener stopped", "listener", b.name, "err", err.Error())
			}
		}()
	}
	s.log.Info("ready", "hostname", cfg.Hostname, "domains", strings.Join(s.sortedDomains(), ","),
		"relay_domains", strings.Join(cfg.RelayDomains, ","), "trusted_networks", strings.Join(cfg.TrustedNetworks, ","),
		"data_dir", cfg.DataDir)

	for {
		select {
		case <-ctx.Done():
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				s.reload()
				continue
			}
			s.log.Info("shutdown", "signal", sig.String())
		}
		break
	}
	// Drain: stop accepting, let transactions in progress finish (their
	// messages are committed before any 250), then stop delivery.
	dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.smtp.Shutdown(dctx)
	for _, svc := range extra {
		svc.Shutdown(dctx)
	}
	s.admin.Shutdown(dctx)
	if s.authsrv != nil {
		s.authsrv.Shutdown(dctx)
	}
	stopSched()
	s.sched.Wait()
	if err := s.state.Close(); err != nil {
		s.log.Error("state", "op", "close", "err", err.Error())
	}
	s.dir.Close()
	s.log.Info("stopped")
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

func (s *Server) tlsConfig() *tls.Config {
	if s.certs == nil {
		return nil
	}
	return s.certs.Config()
}

func (s *Server) sortedDomains() []string {
	var out []string
	for d := range s.domains().Local {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// reload re-reads certificates and the directory, and the domain lists.
func (s *Server) reload() {
	if s.certs != nil {
		if err := s.certs.Reload(); err != nil {
			s.log.Error("reload", "what", "certificate", "err", err.Error())
		} else {
			s.log.Info("reload", "what", "certificate")
		}
	}
	if err := s.dir.Reload(); err != nil {
		s.log.Error("reload", "what", "directory", "err", err.Error())
	} else {
		s.auth.FlushCache()
		s.pol.SetDomains(s.domains())
		s.ensureDKIMKeys()
		s.syncBATV(true)
		s.log.Info("reload", "what", "directory", "users", len(s.dir.Users()))
	}
	if err := s.verify.Reload(); err != nil {
		s.log.Error("reload", "what", "relay_verify", "err", err.Error())
	}
}

// listenLocal opens the sendmail socket. A socket file left by a crashed
// server is removed; one that still answers belongs to a running server
// and is an error. The mode lets any local user connect: who they are is
// decided by SO_PEERCRED. The socket lives in a directory of its own
// (secureDataDir), away from the files local users must not read.
func listenLocal(name, path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen %s on %s: the file exists and is not a socket", name, path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s on %s: another server is answering there", name, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen %s on %s: removing the stale socket: %w", name, path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s on %s: %w", name, path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen %s on %s: %w", name, path, err)
	}
	return ln, nil
}

// localIdentity maps the uid of a sendmail-socket client to its Unix user
// name and the address configured for it ([sendmail]).
func (s *Server) localIdentity(uid uint32) (string, string) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return "", ""
	}
	return u.Username, s.cfg.SendmailAddress(u.Username)
}

// tlsService serves a protocol over implicit TLS (POP3S).
type tlsService struct {
	service
	cfg *tls.Config
}

func (t tlsService) Serve(ln net.Listener) error { return t.service.Serve(tls.NewListener(ln, t.cfg)) }
