package audit

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSMTP is a scripted SMTP server on loopback. Every hook has a safe
// default: a closed, quiet server.
type fakeSMTP struct {
	Banner   string   // greeting line; default "220 fake.test ESMTP"
	Ext      []string // EHLO keywords before TLS
	ExtTLS   []string // EHLO keywords after TLS; default Ext without STARTTLS
	TLS      *tls.Config
	NoEHLO   bool
	Mail     func(arg string) string
	Rcpt     func(arg string) string
	Vrfy     func(arg string) string
	Expn     func(arg string) string
	Auth     func(arg string, secure bool) string
	Pipeline bool // reject commands that arrive together when PIPELINING is not offered
	// RejectEarly greets after GreetDelay and rejects a client that has
	// spoken by then.
	RejectEarly bool
	GreetDelay  time.Duration
	// CloseAfterErrors sends 421 and closes after that many 4xx/5xx
	// replies on one connection (0: never).
	CloseAfterErrors int
	// Silent accepts connections and never says anything.
	Silent bool

	mu    sync.Mutex
	cmds  []string   // every command line received
	txns  [][]string // commands of transactions that reached DATA
	conns int
	ln    net.Listener
}

func (f *fakeSMTP) start(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ln = ln
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
			go f.serve(c)
		}
	}()
	return ln.Addr().String()
}

func (f *fakeSMTP) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds...)
}

func (f *fakeSMTP) dataTransactions() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.txns...)
}

func (f *fakeSMTP) connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

func (f *fakeSMTP) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	w := func(lines ...string) {
		_, _ = c.Write([]byte(strings.Join(lines, "\r\n") + "\r\n"))
	}
	if f.Silent {
		_, _ = r.ReadString('\n')
		time.Sleep(5 * time.Second)
		return
	}
	if f.GreetDelay > 0 {
		time.Sleep(f.GreetDelay)
	}
	if f.RejectEarly {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := r.Peek(1); err == nil {
			w("554 5.5.1 you talked before the greeting")
			return
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	}
	banner := f.Banner
	if banner == "" {
		banner = "220 fake.test ESMTP"
	}
	w(banner)
	secure := false
	errs := 0
	var txn []string
	reply := func(lines ...string) {
		if code := lines[len(lines)-1]; code[0] == '4' || code[0] == '5' {
			errs++
		}
		if f.Pipeline && r.Buffered() > 0 && !containsExt(f.Ext, "PIPELINING") {
			w("554 5.5.0 improper pipelining")
			errs++
			return
		}
		w(lines...)
	}
	for {
		if f.CloseAfterErrors > 0 && errs >= f.CloseAfterErrors {
			w("421 4.7.0 too many errors")
			return
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.mu.Lock()
		f.cmds = append(f.cmds, line)
		f.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		for _, v := range []string{"MAIL FROM:", "RCPT TO:"} {
			if len(line) >= len(v) && strings.EqualFold(line[:len(v)], v) {
				verb, arg = v[:len(v)-1], line[len(v):]
			}
		}
		switch strings.ToUpper(verb) {
		case "EHLO":
			if f.NoEHLO {
				reply("502 5.5.2 no EHLO here")
				continue
			}
			ext := f.Ext
			if secure {
				ext = f.ExtTLS
				if ext == nil {
					for _, e := range f.Ext {
						if e != "STARTTLS" {
							ext = append(ext, e)
						}
					}
				}
			}
			out := []string{"250-fake.test"}
			for _, e := range ext {
				out = append(out, "250-"+e)
			}
			out[len(out)-1] = "250 " + out[len(out)-1][4:]
			w(out...)
		case "HELO":
			w("250 fake.test")
		case "MAIL FROM":
			txn = []string{line}
			rep := "250 2.1.0 Ok"
			if f.Mail != nil {
				rep = f.Mail(arg)
			}
			reply(rep)
		case "RCPT TO":
			txn = append(txn, line)
			rep := "554 5.7.1 Relay access denied"
			if f.Rcpt != nil {
				rep = f.Rcpt(arg)
			}
			reply(rep)
		case "DATA":
			f.mu.Lock()
			f.txns = append(f.txns, txn)
			f.mu.Unlock()
			w("354 go ahead")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			w("250 2.0.0 queued as FAKE")
		case "RSET":
			txn = nil
			reply("250 2.0.0 Ok")
		case "NOOP":
			reply("250 2.0.0 Ok")
		case "VRFY":
			rep := "252 2.0.0 Cannot VRFY user"
			if f.Vrfy != nil {
				rep = f.Vrfy(arg)
			}
			reply(rep)
		case "EXPN":
			rep := "502 5.5.1 EXPN unavailable"
			if f.Expn != nil {
				rep = f.Expn(arg)
			}
			reply(rep)
		case "AUTH":
			rep := "538 5.7.11 Encryption required for requested authentication mechanism"
			if f.Auth != nil {
				rep = f.Auth(arg, secure)
			}
			reply(rep)
			if strings.HasPrefix(rep, "334") {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				f.mu.Lock()
				f.cmds = append(f.cmds, strings.TrimRight(l, "\r\n"))
				f.mu.Unlock()
				reply("501 5.7.0 Authentication aborted")
			}
		case "STARTTLS":
			if f.TLS == nil || secure {
				reply("502 5.5.1 no STARTTLS")
				continue
			}
			w("220 2.0.0 Ready to start TLS")
			tc := tls.Server(c, f.TLS)
			if err := tc.Handshake(); err != nil {
				return
			}
			c, r, secure = tc, bufio.NewReader(tc), true
		case "QUIT":
			w("221 2.0.0 Bye")
			return
		default:
			reply("500 5.5.2 unknown command")
		}
	}
}

func containsExt(ext []string, kw string) bool {
	for _, e := range ext {
		if strings.EqualFold(strings.Fields(e)[0], kw) {
			return true
		}
	}
	return false
}

// closedRcpt is a correct MX for "local.test": local users exist when they
// are postmaster or alice, everything else is refused.
func closedRcpt(arg string) string {
	a := strings.ToLower(strings.TrimSpace(arg))
	switch a {
	case "<postmaster@local.test>", "<alice@local.test>":
		return "250 2.1.5 Ok"
	}
	if strings.HasSuffix(a, "@local.test>") && !strings.ContainsAny(strings.TrimSuffix(a, "@local.test>"), "%!@\"") {
		return "550 5.1.1 User unknown"
	}
	return "554 5.7.1 Relay access denied"
}

// testCA issues certificates for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "audit test CA"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// serverTLS returns a server config with a certificate for names (IP
// addresses allowed), valid from notBefore to notAfter.
func (ca *testCA) serverTLS(t *testing.T, notBefore, notAfter time.Time, names ...string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
