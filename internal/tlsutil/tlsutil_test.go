package tlsutil_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kanmon/internal/tlsutil"
)

func TestWriteSelfSigned(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	made, err := tlsutil.WriteSelfSigned(cert, key, []string{"mx.example.org", "127.0.0.1"})
	if err != nil || !made {
		t.Fatalf("WriteSelfSigned = %v, %v", made, err)
	}
	fi, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatalf("the written pair does not load: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("mx.example.org"); err != nil {
		t.Errorf("certificate not valid for mx.example.org: %v", err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("certificate not valid for 127.0.0.1: %v", err)
	}
	if time.Until(leaf.NotAfter) < 300*24*time.Hour || time.Now().Before(leaf.NotBefore) {
		t.Errorf("validity %v .. %v", leaf.NotBefore, leaf.NotAfter)
	}

	// An existing certificate is never overwritten.
	before, _ := os.ReadFile(cert)
	made, err = tlsutil.WriteSelfSigned(cert, key, []string{"other.example"})
	if err != nil || made {
		t.Fatalf("second WriteSelfSigned = %v, %v; want false, nil", made, err)
	}
	if after, _ := os.ReadFile(cert); !bytes.Equal(before, after) {
		t.Error("an existing certificate was replaced")
	}
}

// TestStoreReload: new handshakes get the reloaded certificate; a broken
// file on reload keeps the old one serving.
func TestStoreReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := tlsutil.WriteSelfSigned(cert, key, []string{"one.example"}); err != nil {
		t.Fatal(err)
	}
	st, err := tlsutil.Load(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.Config()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x, want TLS 1.2", cfg.MinVersion)
	}
	served := func() string {
		t.Helper()
		ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != "one.example" {
		t.Fatalf("serving %q", got)
	}
	os.Remove(cert)
	if _, err := tlsutil.WriteSelfSigned(cert, key, []string{"two.example"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != "two.example" {
		t.Errorf("after Reload serving %q, want two.example", got)
	}
	if err := os.WriteFile(cert, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := st.Reload(); err == nil {
		t.Error("Reload of a broken certificate succeeded")
	}
	if got := served(); got != "two.example" {
		t.Errorf("after a failed Reload serving %q, want the previous two.example", got)
	}
	// TLS 1.1 is refused.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	if c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("a TLS 1.1 client completed a handshake")
	}
}

func TestLoadMissing(t *testing.T) {
	t.Parallel()
	if _, err := tlsutil.Load(filepath.Join(t.TempDir(), "no.pem"), filepath.Join(t.TempDir(), "no.key")); err == nil {
		t.Fatal("Load of missing files succeeded")
	}
}

// TestWriteSelfSignedKeyMode: the private key is written 0600 even over
// a key file left readable by everyone (os.WriteFile would keep its mode).
func TestWriteSelfSignedKeyMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(key, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsutil.WriteSelfSigned(cert, key, []string{"mx.example.org"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("key file mode %o after WriteSelfSigned over a 0644 file, want 600", m)
	}
}
