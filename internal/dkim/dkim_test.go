package dkim

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

const testMsg = "Received: from x by y\r\nFrom: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nHello\r\n"

func sign(t *testing.T, keys []*Key, msg string, chunk int) []byte {
	t.Helper()
	s, err := NewStream(keys)
	if err != nil {
		t.Fatal(err)
	}
	for b := []byte(msg); len(b) > 0; {
		n := min(chunk, len(b))
		s.Write(b[:n])
		b = b[n:]
	}
	sig, err := s.Close()
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func verify(t *testing.T, keys []*Key, signed string) []*msgauth.Verification {
	t.Helper()
	recs := map[string]string{}
	for _, k := range keys {
		r, err := k.Record()
		if err != nil {
			t.Fatal(err)
		}
		recs[k.Name()] = r
	}
	vs, err := msgauth.VerifyWithOptions(strings.NewReader(signed), &msgauth.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if r, ok := recs[name]; ok {
				return []string{r}, nil
			}
			return nil, errors.New("no record " + name)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestBothAlgorithmsSignAndVerify(t *testing.T) {
	st := NewStore(t.TempDir())
	keys, err := st.Ensure("example.org", []string{Ed25519, RSA}, time.Now())
	if err != nil || len(keys) != 2 {
		t.Fatalf("ensure: %v %v", keys, err)
	}
	active, err := st.Active("example.org")
	if err != nil || len(active) != 2 {
		t.Fatalf("active: %v %v", active, err)
	}
	// Small writes cross the header's end between calls.
	for _, chunk := range []int{1, 7, 4096} {
		sig := sign(t, active, testMsg, chunk)
		if n := bytes.Count(sig, []byte("DKIM-Signature:")); n != 2 {
			t.Fatalf("chunk %d: %d signatures:\n%s", chunk, n, sig)
		}
		for _, want := range []string{"a=ed25519-sha256", "a=rsa-sha256", "c=relaxed/relaxed", "h=From:From:"} {
			if !bytes.Contains(sig, []byte(want)) {
				t.Errorf("signature lacks %q:\n%s", want, sig)
			}
		}
		vs := verify(t, active, string(sig)+testMsg)
		for _, v := range vs {
			if v.Err != nil {
				t.Errorf("chunk %d: %s: %v", chunk, v.Domain, v.Err)
			}
		}
	}
}

func TestSecondFromBreaksSignature(t *testing.T) {
	st := NewStore(t.TempDir())
	keys, _ := st.Ensure("example.org", []string{Ed25519}, time.Now())
	sig := sign(t, keys, testMsg, 4096)
	forged := string(sig) + "From: ceo@example.org\r\n" + testMsg
	for _, v := range verify(t, keys, forged) {
		if v.Err == nil {
			t.Fatal("a From: added after signing still verifies: From is not oversigned")
		}
	}
}

func TestHugeHeaderIsNotSigned(t *testing.T) {
	st := NewStore(t.TempDir())
	keys, _ := st.Ensure("example.org", []string{Ed25519}, time.Now())
	s, _ := NewStream(keys)
	line := []byte("X-Filler: " + strings.Repeat("a", 990) + "\r\n")
	for i := 0; i < MaxHeaderBytes/len(line)+2; i++ {
		s.Write(line)
	}
	s.Write([]byte("\r\nbody\r\n"))
	if _, err := s.Close(); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("err = %v, want ErrHeaderTooLarge", err)
	}
}

func TestKeyFilesAndRotation(t *testing.T) {
	dir := t.TempDir()
	st := NewStore(dir)
	if _, err := st.Generate("example.org", "k1", Ed25519); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "example.org", "k1.ed25519.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "example.org")); fi.Mode().Perm() != 0o700 {
		t.Fatalf("key dir mode %v", fi.Mode())
	}
	k2, err := st.Generate("example.org", "k2", Ed25519)
	if err != nil || k2.State != StatePending {
		t.Fatalf("second key: %+v %v (want pending)", k2, err)
	}
	if a, _ := st.Active("example.org"); len(a) != 1 || a[0].Selector != "k1" {
		t.Fatalf("a pending key signs: %+v", a)
	}
	if _, err := st.Activate("example.org", "k2"); err != nil {
		t.Fatal(err)
	}
	if a, _ := st.Active("example.org"); len(a) != 1 || a[0].Selector != "k2" {
		t.Fatalf("after activate: %+v", a)
	}
	if _, err := os.Stat(filepath.Join(dir, "example.org", "k1.ed25519.key.retired")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"../x", "a/b", "", "UP", "-x"} {
		if _, err := st.Generate("example.org", bad, Ed25519); err == nil {
			t.Errorf("selector %q accepted", bad)
		}
		if _, err := st.Generate(bad, "k9", Ed25519); err == nil {
			t.Errorf("domain %q accepted", bad)
		}
	}
}

// BenchmarkSign measures the cost signing adds to the accept path: a
// 10 KiB message through both signers (ed25519 and rsa 2048).
func BenchmarkSign(b *testing.B) {
	st := NewStore(b.TempDir())
	keys, err := st.Ensure("example.org", []string{Ed25519, RSA}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte(testMsg + strings.Repeat("a line of body text, about sixty-four bytes long, for hashing\r\n", 160))
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		s, err := NewStream(keys)
		if err != nil {
			b.Fatal(err)
		}
		s.Write(msg)
		if _, err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
