// Package remote is the courier for recipients on other servers: it
// chooses where to connect (smarthost, static route, address literal, or
// MX lookup through the one resolver) and speaks SMTP there with
// kanmon's own bounded client (smtpclient.go, smtptx.go), one session per
// attempt and domain.
//
// SECURITY: remote peers and DNS answers are untrusted. Every reply is
// read with bounds and recorded as text; it never chooses a file or a
// host outside the resolver's answers. TLS to MX hosts is opportunistic
// and unverified (no MTA-STS or DANE yet); TLS to the smarthost is
// verified, and its credentials are sent only over TLS and never logged.
//
// Tests: the client's own (reply bounds, hostile and pipelining peers, the
// reply parser's fuzz corpus, address literals) are here; deliveries
// through the scheduler to real peers (smtp-sink, Postfix, a smarthost,
// broken TLS, MX lookups on a mock resolver) are in internal/scheduler.
package remote

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"kanmon/internal/courier"
	"kanmon/internal/dnsresolve"
	"kanmon/internal/queue"
)

// Tagger rewrites an envelope sender for sending (batv.Guard.Sender).
type Tagger interface {
	Sender(from string) string
}

// Remote delivers to other mail servers over SMTP with kanmon's own
// bounded client (smtpclient.go, smtptx.go): MX lookup through the one
// resolver (RFC 5321 5.1, RFC 7505 null MX), static routes, address
// literals (RFC 5321 4.1.3), or a smarthost with AUTH.
//
// SECURITY: every reply from a remote server is read with a bound on line
// length, lines and size, within the command timeout, and every session
// ends by TransactionTimeout plus DataTimeout; a peer that breaks a bound
// defers the attempt (4.4.2) and never grows our memory. TLS to MX hosts
// is opportunistic; to the smarthost it is required and verified.
type Remote struct {
	// Resolver answers every DNS question (law 6).
	Resolver dnsresolve.Resolver
	// HeloName is sent in EHLO.
	HeloName string
	// Routes maps a lower-case domain to "host:port", bypassing MX lookup.
	Routes map[string]string
	// Smarthost, when set, receives all mail ("host:port"); port 465 is
	// implicit TLS, any other requires STARTTLS. TLS to it is verified.
	Smarthost string
	// SmarthostUser and SmarthostPassword authenticate with AUTH PLAIN
	// (only ever over TLS).
	SmarthostUser     string
	SmarthostPassword string
	// NoPipelining sends MAIL, RCPT and DATA one at a time even when the
	// peer offers PIPELINING (RFC 2920).
	NoPipelining bool
	// ImplicitTLS makes the smarthost connection TLS from the start even
	// when its port is not 465.
	ImplicitTLS bool
	// SmarthostRoots verifies the smarthost's certificate (nil: system roots).
	SmarthostRoots *x509.CertPool
	// Tagger, when set, tags the envelope sender of our own users' mail
	// (internal/batv; mailFrom).
	Tagger Tagger
	// Port is the SMTP port of MX hosts and address literals (25; tests
	// may change it).
	Port int
	// ConnectTimeout bounds each TCP connection attempt (default 30s).
	ConnectTimeout time.Duration
	// CommandTimeout bounds each whole reply (default 5m, RFC 5321
	// 4.5.3.2); DataTimeout sending the message and the reply after the
	// final dot (default 10m).
	CommandTimeout, DataTimeout time.Duration
	// TransactionTimeout bounds a whole session with one host, plus
	// DataTimeout (default 30m), so a peer answering every command just
	// in time cannot hold a connection for hours.
	TransactionTimeout time.Duration
	// MaxHosts bounds the addresses tried per attempt (default 5).
	MaxHosts int
	// ReuseMessages bounds the transactions one outgoing connection
	// carries (default 100; 1 turns reuse off); ReuseIdle how long an
	// idle connection waits for the next message to the same host
	// (default 5s); ReuseConns how many wait at once (default 100).
	ReuseMessages int
	ReuseIdle     time.Duration
	ReuseConns    int

	poolOnce sync.Once
	pool     *connPool
}

// connPool returns the pool of idle connections, made on first use.
func (r *Remote) connPool() *connPool {
	r.poolOnce.Do(func() {
		r.pool = &connPool{maxConns: cmpInt(r.ReuseConns, defaultReuseConns), idle: cmp(r.ReuseIdle, defaultReuseIdle)}
	})
	return r.pool
}

// Close ends the idle outgoing connections with QUIT; deliveries after it
// open and close their own.
func (r *Remote) Close() { r.connPool().close() }

// hop is one place to connect to.
type hop struct {
	host      string // name for TLS and logs
	addr      string // "ip:port" or "host:port"
	smarthost bool
}

// Deliver is the Courier: one attempt for rcpts, which the scheduler
// groups by domain (the first recipient's domain is used for all).
func (r *Remote) Deliver(ctx context.Context, msg *queue.Message, rcpts []queue.Recipient) []courier.Result {
	if len(rcpts) == 0 {
		return nil
	}
	return r.Send(ctx, &msg.Envelope, courier.DomainOf(rcpts[0].Addr), courier.Addrs(rcpts), msg.Body)
}

// Send makes one attempt to deliver the message to rcpts, all in
// domain, and returns one courier.Result per recipient in the same order.
func (r *Remote) Send(ctx context.Context, env *queue.Envelope, domain string, rcpts []string, body func() io.Reader) []courier.Result {
	hops, fail := r.route(ctx, domain)
	if fail != nil {
		return courier.All(rcpts, *fail)
	}
	maxHosts := r.MaxHosts
	if maxHosts <= 0 {
		maxHosts = 5
	}
	last := courier.Result{Code: 451, Enhanced: "4.4.1", Text: "no mail server for " + domain + " answered"}
	for i, h := range hops {
		if i >= maxHosts || ctx.Err() != nil {
			break
		}
		res, err := r.session(ctx, h, env, rcpts, body, false)
		if errors.Is(err, errTLSFailed) && !h.smarthost {
			// Opportunistic TLS (RFC 7435): a broken handshake falls back
			// to plain text on a new connection, as other MTAs do.
			res, err = r.session(ctx, h, env, rcpts, body, true)
		}
		if err == nil {
			return res
		}
		last = courier.Result{Code: 451, Enhanced: enhancedOf(err), Text: err.Error(), MX: h.host}
	}
	return courier.All(rcpts, last)
}

// route returns where to connect for domain, or the result for every
// recipient when no connection can be made (DNS failure, null MX).
func (r *Remote) route(ctx context.Context, domain string) ([]hop, *courier.Result) {
	if r.Smarthost != "" {
		host, _, _ := net.SplitHostPort(r.Smarthost)
		return r.expand(ctx, host, r.Smarthost, true)
	}
	if a, ok := r.Routes[strings.ToLower(domain)]; ok {
		host, _, _ := net.SplitHostPort(a)
		return r.expand(ctx, host, a, false)
	}
	port := r.Port
	if port == 0 {
		port = 25
	}
	if strings.HasPrefix(domain, "[") {
		return literalHop(domain, port)
	}
	mxs, err := r.Resolver.LookupMX(ctx, domain)
	var names []string
	switch {
	case err != nil && dnsresolve.IsNotFound(err):
		// RFC 5321 5.1: no MX records, so the domain itself is the host.
		names = []string{domain}
	case err != nil:
		return nil, &courier.Result{Code: 451, Enhanced: "4.4.3", Text: "DNS: " + err.Error()}
	case dnsresolve.IsNullMX(mxs):
		return nil, &courier.Result{Permanent: true, Code: 556, Enhanced: "5.1.10", Text: domain + " accepts no mail (null MX, RFC 7505)"}
	default:
		for _, mx := range mxs {
			names = append(names, strings.TrimSuffix(mx.Host, "."))
		}
	}
	var hops []hop
	var tempErr error
	notFound := 0
	for _, n := range names {
		ips, err := r.Resolver.LookupIP(ctx, n)
		if err != nil {
			if dnsresolve.IsNotFound(err) {
				notFound++
			} else {
				tempErr = err
			}
			continue
		}
		for _, ip := range ips {
			hops = append(hops, hop{host: n, addr: net.JoinHostPort(ip.String(), strconv.Itoa(port))})
		}
	}
	if len(hops) == 0 {
		if tempErr != nil {
			return nil, &courier.Result{Code: 451, Enhanced: "4.4.3", Text: "DNS: " + tempErr.Error()}
		}
		return nil, &courier.Result{Permanent: true, Code: 550, Enhanced: "5.1.2", Text: domain + " has no MX or address records"}
	}
	return hops, nil
}

// literalHop is the hop for an address literal, "[192.0.2.1]" or
// "[IPv6:2001:db8::1]": the address itself, no DNS (RFC 5321 4.1.3).
func literalHop(domain string, port int) ([]hop, *courier.Result) {
	ip, ok := parseLiteral(domain)
	if !ok {
		return nil, &courier.Result{Permanent: true, Code: 550, Enhanced: "5.1.2", Text: domain + " is not a usable address literal"}
	}
	return []hop{{host: ip.String(), addr: net.JoinHostPort(ip.String(), strconv.Itoa(port))}}, nil
}

// parseLiteral accepts an IPv4 literal or an "IPv6:" tagged one, without
// a zone; not the unspecified address (which reaches this host) nor a
// multicast or broadcast one.
func parseLiteral(domain string) (netip.Addr, bool) {
	if !strings.HasPrefix(domain, "[") || !strings.HasSuffix(domain, "]") {
		return netip.Addr{}, false
	}
	lit := domain[1 : len(domain)-1]
	v6 := len(lit) > 5 && strings.EqualFold(lit[:5], "IPv6:")
	if v6 {
		lit = lit[5:]
	}
	ip, err := netip.ParseAddr(lit)
	if err != nil || ip.Zone() != "" || ip.Is4() == v6 || ip.IsUnspecified() || ip.IsMulticast() ||
		ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, false
	}
	return ip, true
}

// expand resolves a configured host:port (an IP literal is used as is).
func (r *Remote) expand(ctx context.Context, host, addr string, smart bool) ([]hop, *courier.Result) {
	_, port, _ := net.SplitHostPort(addr)
	if _, err := netip.ParseAddr(host); err == nil {
		return []hop{{host: host, addr: addr, smarthost: smart}}, nil
	}
	ips, err := r.Resolver.LookupIP(ctx, host)
	if err != nil {
		// A configured next hop that does not resolve is an operator
		// problem: never bounce for it, retry.
		return nil, &courier.Result{Code: 451, Enhanced: "4.4.3", Text: "DNS: " + err.Error()}
	}
	var hops []hop
	for _, ip := range ips {
		hops = append(hops, hop{host: host, addr: net.JoinHostPort(ip.String(), port), smarthost: smart})
	}
	return hops, nil
}

// mailFrom is the one place the envelope sender sent to other servers
// is computed: the queued sender, tagged (BATV, Tagger) when the message
// is our own users' mail. The tag is made here, per attempt, not when
// the message is queued: the queue, DSNs and local deliveries keep the
// plain sender, each retry gets a tag valid for the full lifetime from
// its own attempt, and a rotated key is used at once.
func (r *Remote) mailFrom(env *queue.Envelope) string {
	if r.Tagger == nil || env.From == "" {
		return env.From
	}
	switch env.Origin {
	case queue.OriginAuthenticated, queue.OriginTrusted, queue.OriginPopBeforeSMTP:
		return r.Tagger.Sender(env.From)
	}
	// Mail from outside (backup MX) and our own DSNs keep their sender.
	return env.From
}

func (r *Remote) helo() string {
	if r.HeloName == "" {
		return "localhost"
	}
	return r.HeloName
}

// session delivers through one host: on an idle connection kept from an
// earlier transaction when there is one (pool.go), else on a new one. An
// error means this host gave no answer about the recipients (connection,
// greeting, TLS, EHLO or AUTH failed, or the peer broke a bound): try the
// next one. Replies to MAIL, RCPT and DATA are results.
func (r *Remote) session(ctx context.Context, h hop, env *queue.Envelope, rcpts []string, body func() io.Reader, noTLS bool) ([]courier.Result, error) {
	if !noTLS {
		if e := r.connPool().get(keyOf(h)); e != nil {
			// A peer may drop an idle connection at any time: RSET tells,
			// and a connection that fails it or fails before MAIL was
			// answered is replaced, the message not yet offered.
			e.c.deadline = r.sessionDeadline()
			if err := e.c.rset(); err != nil {
				e.c.conn.Close()
			} else if res, err, retry := r.transact(ctx, e, h, env, rcpts, body, true); !retry {
				return res, err
			}
		}
	}
	return r.dial(ctx, h, env, rcpts, body, noTLS)
}

// sessionDeadline is when a session (or, on a reused connection, a
// transaction) must be over, however slowly the peer answers each
// command just in time.
func (r *Remote) sessionDeadline() time.Time {
	return time.Now().Add(cmp(r.TransactionTimeout, 30*time.Minute) + cmp(r.DataTimeout, 10*time.Minute))
}

// dial opens a new connection to h, with our own client (smtpclient.go),
// and runs one transaction on it.
func (r *Remote) dial(ctx context.Context, h hop, env *queue.Envelope, rcpts []string, body func() io.Reader, noTLS bool) ([]courier.Result, error) {
	deadline := r.sessionDeadline()
	// The connection's own deadlines fire first, so the error names the
	// reply that was late; the context is the backstop for the rest.
	dctx, cancel := context.WithDeadline(ctx, deadline.Add(time.Second))
	defer cancel()
	d := net.Dialer{Timeout: cmp(r.ConnectTimeout, 30*time.Second), KeepAlive: -1}
	conn, err := d.DialContext(dctx, "tcp", h.addr)
	if err != nil {
		return nil, fmt.Errorf("%s: connect: %w", h.addr, err)
	}
	// Unblock a stuck prelude when the scheduler stops or the deadline
	// passes.
	stop := context.AfterFunc(dctx, func() { conn.Close() })
	c := newSMTPClient(conn, cmp(r.CommandTimeout, 5*time.Minute), deadline)
	err = r.prelude(dctx, c, h, noTLS)
	if !stop() || err != nil {
		conn.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("%s: %w", h.addr, err)
	}
	// A plain-text fallback after a failed handshake is not kept: the
	// next message tries TLS again.
	res, err, _ := r.transact(ctx, &pooled{c: c}, h, env, rcpts, body, !noTLS)
	return res, err
}

// transact runs one mail transaction on an open session and then keeps
// the connection for the next message (when keep and the session ended in
// step) or ends it. retry reports an error before the peer answered MAIL,
// so the message was not offered and a new connection may carry it.
func (r *Remote) transact(ctx context.Context, e *pooled, h hop, env *queue.Envelope, rcpts []string, body func() io.Reader, keep bool) (res []courier.Result, err error, retry bool) {
	c := e.c
	ctx, cancel := context.WithDeadline(ctx, c.deadline.Add(time.Second))
	defer cancel()
	// Unblock a stuck exchange when the scheduler stops or the deadline
	// passes.
	stop := context.AfterFunc(ctx, func() { c.conn.Close() })
	var t *txReplies
	if env.SMTPUTF8 && !c.has("SMTPUTF8") {
		res = courier.All(rcpts, courier.Result{Permanent: true, Code: 553, Enhanced: "5.6.7", MX: h.host, TLS: c.tls,
			Text: "the message needs SMTPUTF8 and " + h.host + " does not offer it"})
	} else {
		pipeline := c.has("PIPELINING") && !r.NoPipelining
		t, err = c.transaction(env, r.mailFrom(env), rcpts, body, pipeline, cmp(r.DataTimeout, 10*time.Minute))
	}
	closed := !stop()
	if err != nil {
		c.conn.Close()
		return nil, fmt.Errorf("%s: %w", h.addr, err), t != nil && t.mail.code == 0
	}
	if t != nil {
		res = t.results(rcpts, h.host, c.tls)
	}
	e.uses++
	if closed || !keep || e.uses >= cmpInt(r.ReuseMessages, defaultReuseMessages) || t.closing() ||
		!r.connPool().put(keyOf(h), e) {
		if !closed {
			c.quit()
		}
		c.conn.Close()
	}
	return res, nil, false
}

// prelude takes the session up to MAIL: implicit TLS, greeting, EHLO,
// STARTTLS and EHLO again, and AUTH to the smarthost. A failed handshake
// is errTLSFailed.
func (r *Remote) prelude(ctx context.Context, c *smtpClient, h hop, noTLS bool) error {
	tlsCfg := r.tlsConfig(h)
	implicit := h.smarthost && (r.ImplicitTLS || strings.HasSuffix(h.addr, ":465"))
	if implicit {
		if err := c.handshake(ctx, tlsCfg); err != nil {
			return err
		}
	}
	if err := c.greeting(); err != nil {
		return err
	}
	if err := c.hello(r.helo()); err != nil {
		return err
	}
	if !implicit && !noTLS {
		switch {
		case c.has("STARTTLS"):
			if err := c.startTLS(ctx, tlsCfg); err != nil {
				return err
			}
			if err := c.hello(r.helo()); err != nil {
				return err
			}
		case h.smarthost:
			return &peerError{enhanced: "4.7.10", msg: "smarthost does not offer STARTTLS: not sending credentials or mail in clear"}
		}
	}
	if h.smarthost && r.SmarthostUser != "" {
		return c.authPlain(r.SmarthostUser, r.SmarthostPassword)
	}
	return nil
}

func cmpInt(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

func cmp(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// tlsConfig is opportunistic (unverified, RFC 7435) for MX hosts, since
// neither MTA-STS nor DANE is implemented yet; verified for the smarthost,
// which receives our credentials.
func (r *Remote) tlsConfig(h hop) *tls.Config {
	if h.smarthost {
		return &tls.Config{ServerName: h.host, RootCAs: r.SmarthostRoots, MinVersion: tls.VersionTLS12}
	}
	return &tls.Config{ServerName: h.host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
}
