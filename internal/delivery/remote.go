package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"kanmon/internal/dnsresolve"
	"kanmon/internal/queue"
)

// Remote delivers to other mail servers over SMTP with go-smtp's client:
// MX lookup through the one resolver (RFC 5321 5.1, RFC 7505 null MX),
// static routes, or a smarthost with AUTH.
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
	// Port is the SMTP port of MX hosts (25; tests may change it).
	Port int
	// ConnectTimeout bounds each TCP connection attempt (default 30s).
	ConnectTimeout time.Duration
	// CommandTimeout bounds each command's reply (default 5m, RFC 5321
	// 4.5.3.2); DataTimeout the reply after the final dot (default 10m).
	CommandTimeout, DataTimeout time.Duration
	// MaxHosts bounds the addresses tried per attempt (default 5).
	MaxHosts int
}

// Result is the outcome of one attempt for one recipient.
type Result struct {
	Rcpt string
	// OK is set when the peer accepted the message for this recipient.
	OK bool
	// Permanent is set on a final failure (5xx, null MX, no such domain).
	Permanent bool
	// Code and Enhanced are the peer's reply (or ours, for a local
	// decision such as a null MX); Text the reply text or error.
	Code     int
	Enhanced string
	Text     string
	// MX is the host that answered ("" when none was reached); TLS the
	// TLS version used ("" for plain text).
	MX  string
	TLS string
}

// Reply renders the result as an SMTP-style reply line.
func (r Result) Reply() string {
	var b strings.Builder
	if r.Code != 0 {
		b.WriteString(strconv.Itoa(r.Code))
		b.WriteByte(' ')
	}
	if r.Enhanced != "" {
		b.WriteString(r.Enhanced)
		b.WriteByte(' ')
	}
	b.WriteString(r.Text)
	return b.String()
}

// hop is one place to connect to.
type hop struct {
	host      string // name for TLS and logs
	addr      string // "ip:port" or "host:port"
	smarthost bool
}

// Deliver makes one attempt to deliver the message to rcpts, all in
// domain, and returns one Result per recipient in the same order.
func (r *Remote) Deliver(ctx context.Context, env *queue.Envelope, domain string, rcpts []string, body func() io.Reader) []Result {
	hops, fail := r.route(ctx, domain)
	if fail != nil {
		return all(rcpts, *fail)
	}
	maxHosts := r.MaxHosts
	if maxHosts <= 0 {
		maxHosts = 5
	}
	last := Result{Code: 451, Enhanced: "4.4.1", Text: "no mail server for " + domain + " answered"}
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
		last = Result{Code: 451, Enhanced: "4.4.1", Text: err.Error(), MX: h.host}
	}
	return all(rcpts, last)
}

func all(rcpts []string, r Result) []Result {
	out := make([]Result, len(rcpts))
	for i, a := range rcpts {
		out[i] = r
		out[i].Rcpt = a
	}
	return out
}

// route returns where to connect for domain, or the result for every
// recipient when no connection can be made (DNS failure, null MX).
func (r *Remote) route(ctx context.Context, domain string) ([]hop, *Result) {
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
	mxs, err := r.Resolver.LookupMX(ctx, domain)
	var names []string
	switch {
	case err != nil && dnsresolve.IsNotFound(err):
		// RFC 5321 5.1: no MX records, so the domain itself is the host.
		names = []string{domain}
	case err != nil:
		return nil, &Result{Code: 451, Enhanced: "4.4.3", Text: "DNS: " + err.Error()}
	case dnsresolve.IsNullMX(mxs):
		return nil, &Result{Permanent: true, Code: 556, Enhanced: "5.1.10", Text: domain + " accepts no mail (null MX, RFC 7505)"}
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
			return nil, &Result{Code: 451, Enhanced: "4.4.3", Text: "DNS: " + tempErr.Error()}
		}
		return nil, &Result{Permanent: true, Code: 550, Enhanced: "5.1.2", Text: domain + " has no MX or address records"}
	}
	return hops, nil
}

// expand resolves a configured host:port (an IP literal is used as is).
func (r *Remote) expand(ctx context.Context, host, addr string, smart bool) ([]hop, *Result) {
	_, port, _ := net.SplitHostPort(addr)
	if _, err := netip.ParseAddr(host); err == nil {
		return []hop{{host: host, addr: addr, smarthost: smart}}, nil
	}
	ips, err := r.Resolver.LookupIP(ctx, host)
	if err != nil {
		// A configured next hop that does not resolve is an operator
		// problem: never bounce for it, retry.
		return nil, &Result{Code: 451, Enhanced: "4.4.3", Text: "DNS: " + err.Error()}
	}
	var hops []hop
	for _, ip := range ips {
		hops = append(hops, hop{host: host, addr: net.JoinHostPort(ip.String(), port), smarthost: smart})
	}
	return hops, nil
}

func (r *Remote) helo() string {
	if r.HeloName == "" {
		return "localhost"
	}
	return r.HeloName
}

var errTLSFailed = errors.New("TLS handshake failed")

// session runs one SMTP transaction. An error means this host gave no
// answer about the recipients (connection, greeting, TLS or EHLO failed):
// try the next one. Replies to MAIL, RCPT and DATA are results.
func (r *Remote) session(ctx context.Context, h hop, env *queue.Envelope, rcpts []string, body func() io.Reader, noTLS bool) ([]Result, error) {
	ct := r.ConnectTimeout
	if ct <= 0 {
		ct = 30 * time.Second
	}
	d := net.Dialer{Timeout: ct}
	conn, err := d.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", h.addr, err)
	}
	implicit := h.smarthost && (r.ImplicitTLS || strings.HasSuffix(h.addr, ":465"))
	tlsCfg := r.tlsConfig(h)
	if implicit {
		tc := tls.Client(conn, tlsCfg)
		hctx, cancel := context.WithTimeout(ctx, ct)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("%s: %w: %v", h.addr, errTLSFailed, err)
		}
		conn = tc
	}
	tlsVer := ""
	if implicit {
		tlsVer = tls.VersionName(conn.(*tls.Conn).ConnectionState().Version)
	} else if !noTLS {
		// go-smtp's client has no public STARTTLS that keeps our EHLO
		// name, so the plain-text prelude (greeting, EHLO, STARTTLS) is
		// spoken here; go-smtp takes over on the TLS connection.
		tc, offered, err := r.startTLS(ctx, conn, tlsCfg)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("%s: %w", h.addr, err)
		}
		if offered {
			conn = tc
			tlsVer = tls.VersionName(tc.(*greeted).Conn.(*tls.Conn).ConnectionState().Version)
		} else if h.smarthost {
			conn.Close()
			return nil, fmt.Errorf("%s: smarthost does not offer STARTTLS: not sending credentials or mail in clear", h.addr)
		} else {
			conn = tc
		}
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	c.CommandTimeout = cmp(r.CommandTimeout, 5*time.Minute)
	c.SubmissionTimeout = cmp(r.DataTimeout, 10*time.Minute)
	// Unblock a stuck exchange when the scheduler stops.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := c.Hello(r.helo()); err != nil {
		return nil, fmt.Errorf("%s: greeting/EHLO: %w", h.addr, err)
	}
	res := func(rcpt string, ok, perm bool, code int, enh, text string) Result {
		return Result{Rcpt: rcpt, OK: ok, Permanent: perm, Code: code, Enhanced: enh, Text: text, MX: h.host, TLS: tlsVer}
	}
	if h.smarthost && r.SmarthostUser != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return nil, fmt.Errorf("%s: smarthost does not offer AUTH", h.addr)
		}
		if err := c.Auth(sasl.NewPlainClient("", r.SmarthostUser, r.SmarthostPassword)); err != nil {
			// Wrong credentials are the operator's to fix: retry, never bounce.
			return nil, fmt.Errorf("%s: AUTH as %s: %w", h.addr, r.SmarthostUser, err)
		}
	}
	if env.SMTPUTF8 {
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			out := make([]Result, len(rcpts))
			for i, a := range rcpts {
				out[i] = res(a, false, true, 553, "5.6.7", "the message needs SMTPUTF8 and "+h.host+" does not offer it")
			}
			c.Quit()
			return out, nil
		}
	}
	if ok, _ := c.Extension("PIPELINING"); ok && !r.NoPipelining {
		out, err := pipelined(conn, env, rcpts, body, func(e string) bool { ok, _ := c.Extension(e); return ok },
			c.CommandTimeout, c.SubmissionTimeout, res)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", h.addr, err)
		}
		return out, nil
	}
	// go-smtp adds BODY=8BITMIME when the peer offers it. A peer without
	// 8BITMIME gets the body as it is, as most MTAs do.
	opts := &smtp.MailOptions{UTF8: env.SMTPUTF8}
	if err := c.Mail(env.From, opts); err != nil {
		code, enh, text, isReply := reply(err)
		if !isReply {
			return nil, fmt.Errorf("%s: MAIL: %w", h.addr, err)
		}
		out := make([]Result, len(rcpts))
		for i, a := range rcpts {
			out[i] = res(a, false, code >= 500, code, enh, text)
		}
		c.Quit()
		return out, nil
	}
	out := make([]Result, len(rcpts))
	var accepted []int
	for i, a := range rcpts {
		if err := c.Rcpt(a, nil); err != nil {
			code, enh, text, isReply := reply(err)
			if !isReply {
				return nil, fmt.Errorf("%s: RCPT: %w", h.addr, err)
			}
			out[i] = res(a, false, code >= 500, code, enh, text)
			continue
		}
		accepted = append(accepted, i)
	}
	if len(accepted) == 0 {
		c.Quit()
		return out, nil
	}
	setAll := func(ok, perm bool, code int, enh, text string) {
		for _, i := range accepted {
			out[i] = res(rcpts[i], ok, perm, code, enh, text)
		}
	}
	w, err := c.Data()
	if err != nil {
		code, enh, text, isReply := reply(err)
		if !isReply {
			return nil, fmt.Errorf("%s: DATA: %w", h.addr, err)
		}
		setAll(false, code >= 500, code, enh, text)
		c.Quit()
		return out, nil
	}
	if _, err := io.Copy(w, body()); err != nil {
		return nil, fmt.Errorf("%s: sending message: %w", h.addr, err)
	}
	dr, err := w.CloseWithResponse()
	if err != nil {
		code, enh, text, isReply := reply(err)
		if !isReply {
			// No answer after the final dot: the peer may have the message.
			// Retrying may deliver twice, which is better than losing it.
			return nil, fmt.Errorf("%s: end of data: %w", h.addr, err)
		}
		setAll(false, code >= 500, code, enh, text)
		c.Quit()
		return out, nil
	}
	setAll(true, false, 250, "", dr.StatusText)
	c.Quit()
	return out, nil
}

// greeted is a connection whose greeting was already read: it replays a
// synthetic "220" so go-smtp's client can start on it.
type greeted struct {
	net.Conn
	r io.Reader
}

func (g *greeted) Read(p []byte) (int, error) { return g.r.Read(p) }

func newGreeted(c net.Conn, rest io.Reader) *greeted {
	return &greeted{Conn: c, r: io.MultiReader(strings.NewReader("220 kanmon-resumed\r\n"), rest)}
}

// startTLS reads the greeting, says EHLO and, when the peer offers it,
// STARTTLS and the handshake. It returns the connection to continue on
// (TLS or not) and whether TLS is on. A failed handshake is errTLSFailed.
func (r *Remote) startTLS(ctx context.Context, conn net.Conn, cfg *tls.Config) (net.Conn, bool, error) {
	deadline := time.Now().Add(cmp(r.CommandTimeout, 5*time.Minute))
	conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})
	br := bufio.NewReader(conn)
	tp := textproto.NewConn(struct {
		io.Reader
		io.Writer
		io.Closer
	}{br, conn, conn})
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, false, fmt.Errorf("greeting: %w", err)
	}
	if err := tp.PrintfLine("EHLO %s", r.helo()); err != nil {
		return nil, false, fmt.Errorf("EHLO: %w", err)
	}
	_, msg, err := tp.ReadResponse(250)
	if err != nil {
		var te *textproto.Error
		if errors.As(err, &te) {
			// No EHLO: go-smtp falls back to HELO on the same connection.
			return newGreeted(conn, br), false, nil
		}
		return nil, false, fmt.Errorf("EHLO: %w", err)
	}
	offered := false
	for _, l := range strings.Split(msg, "\n")[1:] {
		if strings.EqualFold(strings.TrimSpace(l), "STARTTLS") {
			offered = true
		}
	}
	if !offered {
		return newGreeted(conn, br), false, nil
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return nil, false, fmt.Errorf("STARTTLS: %w", err)
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, false, fmt.Errorf("%w: STARTTLS refused: %v", errTLSFailed, err)
	}
	if br.Buffered() > 0 {
		// Data after the 220 before the handshake: a STARTTLS injection
		// attempt (CVE-2011-0411 style). Never read it as protected.
		return nil, false, fmt.Errorf("%w: peer sent data after 220 to STARTTLS", errTLSFailed)
	}
	tc := tls.Client(conn, cfg)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, false, fmt.Errorf("%w: %v", errTLSFailed, err)
	}
	return newGreeted(tc, tc), true, nil
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

// reply extracts an SMTP reply from a go-smtp error.
func reply(err error) (code int, enhanced, text string, ok bool) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code < 400 || se.Code > 599 {
		return 0, "", "", false
	}
	if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != (smtp.EnhancedCode{}) {
		enhanced = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	return se.Code, enhanced, se.Message, true
}
