package batv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kanmon/internal/address"
)

var (
	day0    = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	secretA = []byte("0123456789abcdef0123456789abcdef")
	secretB = []byte("fedcba9876543210fedcba9876543210")
)

// verify parses a tagged local part and checks it as the recipient
// local@domain would be checked.
func verify(t *testing.T, tagged, domain string, secret []byte, now time.Time) (Tag, Status) {
	t.Helper()
	tag, ok := Parse(tagged)
	if !ok {
		t.Fatalf("Parse(%q) failed", tagged)
	}
	return tag, Check(tag, secret, domain, now)
}

func TestMakeFormat(t *testing.T) {
	got := Make(secretA, 3, day0, "alice", "example.org")
	// prvs=KDDDSSSSSS=user: K the key, DDD the expiry day mod 1000.
	want := fmt.Sprintf("prvs=3%03d", (DayNumber(day0)+7)%1000)
	if !strings.HasPrefix(got, want) || !strings.HasSuffix(got, "=alice") || len(got) != len("prvs=")+10+1+len("alice") {
		t.Fatalf("Make = %q, want %s SSSSSS=alice", got, want)
	}
}

func TestCheck(t *testing.T) {
	tagged := Make(secretA, 1, day0, "alice", "example.org")
	cases := []struct {
		name   string
		tagged string
		domain string
		secret []byte
		now    time.Time
		want   Status
	}{
		{"valid at once", tagged, "example.org", secretA, day0, Valid},
		{"valid on the last day", tagged, "example.org", secretA, day0.Add(7 * 24 * time.Hour), Valid},
		{"expired after the lifetime", tagged, "example.org", secretA, day0.Add(8 * 24 * time.Hour), Expired},
		{"expired long ago (day circle)", tagged, "example.org", secretA, day0.Add(500 * 24 * time.Hour), Expired},
		{"wrong key", tagged, "example.org", secretB, day0, BadSignature},
		{"unknown key", tagged, "example.org", nil, day0, UnknownKey},
		{"other domain", tagged, "example.net", secretA, day0, BadSignature},
		{"forged signature", tagged[:10] + flip(tagged[10]) + tagged[11:], "example.org", secretA, day0, BadSignature},
		{"forged date", tagged[:6] + flip(tagged[6]) + tagged[7:], "example.org", secretA, day0, BadSignature},
		{"other user", strings.TrimSuffix(tagged, "alice") + "bob", "example.org", secretA, day0, BadSignature},
		{"case of the local part", strings.ToUpper(tagged), "EXAMPLE.org", secretA, day0, Valid},
	}
	for _, c := range cases {
		_, got := verify(t, c.tagged, c.domain, c.secret, c.now)
		if got != c.want {
			t.Errorf("%s: %q = %s, want %s", c.name, c.tagged, got, c.want)
		}
	}
}

// flip changes one hex or decimal digit.
func flip(c byte) string {
	if c == '0' {
		return "1"
	}
	return "0"
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{"alice", "prvs=", "prvs=1234abcdef", "prvs=1234abcdef=", "prvs=x234abcdef=a",
		"prvs=1234abcdeg=a", "prvs=1234abcdef-a", "prvs=12=a", "prv=1234abcdef=a"} {
		if _, ok := Parse(s); ok {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
	if tag, ok := Parse("PRVS=9123ABCDEF=Al.ice"); !ok || tag.Key != 9 || tag.Day != 123 || tag.Local != "Al.ice" || tag.Sig != [3]byte{0xab, 0xcd, 0xef} {
		t.Errorf("Parse upper case = %+v %v", tag, ok)
	}
}

func TestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	kr, created, err := OpenKeyring(dir, day0)
	if err != nil || !created {
		t.Fatalf("OpenKeyring = %v, created %v", err, created)
	}
	if fi, err := os.Stat(kr.Path()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	old := kr.Active(day0)
	tagged := Make(old.Secret, old.Num, day0, "alice", "example.org")
	next, err := kr.Rotate(day0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if next.Num != (old.Num+1)%10 || kr.Active(day0.Add(time.Hour)).Num != next.Num {
		t.Fatalf("rotate: active %d, want %d", kr.Active(day0).Num, (old.Num+1)%10)
	}
	// A tag made before the rotation verifies for its whole lifetime.
	tag, _ := Parse(tagged)
	for _, at := range []time.Duration{2 * time.Hour, 7 * 24 * time.Hour} {
		now := day0.Add(at)
		if st := Check(tag, kr.Secret(tag.Key, now), "example.org", now); st != Valid {
			t.Errorf("old tag %s after rotation: %s, want valid", at, st)
		}
	}
	// Reopened from disk, the ring is the same.
	kr2, created, err := OpenKeyring(dir, day0)
	if err != nil || created || len(kr2.Keys()) != 2 || kr2.Active(day0).Num != next.Num {
		t.Fatalf("reopen: %v created=%v keys=%d", err, created, len(kr2.Keys()))
	}
	// A second rotation after the lifetime drops the first key.
	later := day0.Add(10 * 24 * time.Hour)
	if _, err := kr.Rotate(later); err != nil {
		t.Fatal(err)
	}
	if kr.Secret(old.Num, later) != nil || len(kr.Keys()) != 2 {
		t.Errorf("a key retired more than a lifetime ago is still in the ring: %d keys", len(kr.Keys()))
	}
}

func TestKeyringReloadsRotationFromDisk(t *testing.T) {
	dir := t.TempDir()
	server, _, err := OpenKeyring(dir, day0)
	if err != nil {
		t.Fatal(err)
	}
	cli, _, _ := OpenKeyring(dir, day0)
	next, err := cli.Rotate(day0)
	if err != nil {
		t.Fatal(err)
	}
	// Force a different mtime even on coarse file systems.
	os.Chtimes(filepath.Join(dir, keyFile), day0.Add(time.Minute), day0.Add(time.Minute))
	if got := server.Active(day0.Add(reloadEvery + time.Second)).Num; got != next.Num {
		t.Errorf("server's active key after rotation on disk: %d, want %d", got, next.Num)
	}
}

func newGuard(t *testing.T, modes map[string]Mode, existing bool) (*Guard, *Keyring) {
	t.Helper()
	dir := t.TempDir()
	kr, _, err := OpenKeyring(dir, day0)
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := Sync(dir, modes, existing, day0)
	if err != nil {
		t.Fatal(err)
	}
	g := NewGuard(kr)
	g.Now = func() time.Time { return day0 }
	g.SetDomains(modes, st)
	return g, kr
}

func addr(s string) address.Addr {
	a, err := address.Parse("<"+s+">", false)
	if err != nil {
		panic(err)
	}
	return a
}

func TestGuard(t *testing.T) {
	g, _ := newGuard(t, map[string]Mode{"example.org": ModeEnforce, "log.example": ModeLog, "off.example": ModeOff}, false)
	tagged := g.Sender("alice@example.org")
	if !strings.HasPrefix(tagged, "prvs=") || !strings.HasSuffix(tagged, "=alice@example.org") {
		t.Fatalf("Sender = %q", tagged)
	}
	for _, from := range []string{"", "bob@remote.example", "carol@off.example", tagged} {
		if got := g.Sender(from); got != from {
			t.Errorf("Sender(%q) = %q, want it unchanged", from, got)
		}
	}
	forged := "prvs=0" + strings.Repeat("1", 9) + "=alice@example.org"
	cases := []struct {
		rcpt   string
		null   bool
		action string
		status Status
		plain  string
	}{
		{tagged, true, ActionAccept, Valid, "alice@example.org"},
		{"alice@example.org", true, ActionReject, Missing, "alice@example.org"},
		{forged, true, ActionReject, BadSignature, "alice@example.org"},
		{"prvs=oops@example.org", true, ActionReject, Malformed, "prvs=oops@example.org"},
		{"alice@example.org", false, ActionAccept, Missing, "alice@example.org"},
		{forged, false, ActionAccept, BadSignature, "alice@example.org"}, // a reply: the tag only guards bounces
		{"alice@log.example", true, ActionLog, Missing, "alice@log.example"},
		{"alice@off.example", true, ActionAccept, Missing, "alice@off.example"},
	}
	for _, c := range cases {
		r := g.Check(c.null, addr(c.rcpt))
		if r.Action != c.action || r.Status != c.status || r.Addr.String() != c.plain {
			t.Errorf("Check(null=%v, %s) = %s %s %s, want %s %s %s", c.null, c.rcpt, r.Action, r.Status, r.Addr, c.action, c.status, c.plain)
		}
	}
}

func TestGraceForExistingInstallation(t *testing.T) {
	g, _ := newGuard(t, map[string]Mode{"example.org": ModeEnforce}, true)
	r := g.Check(true, addr("alice@example.org"))
	if r.Action != ActionLog || !r.Grace {
		t.Fatalf("untagged bounce during grace: %+v, want logged", r)
	}
	g.Now = func() time.Time { return day0.Add(Lifetime + time.Minute) }
	if r := g.Check(true, addr("alice@example.org")); r.Action != ActionReject {
		t.Errorf("untagged bounce after grace: %s, want reject", r.Action)
	}
}

func TestSyncGraceRule(t *testing.T) {
	dir := t.TempDir()
	on := map[string]Mode{"a.example": ModeEnforce}
	// A new installation: no grace.
	st, _, err := Sync(dir, on, false, day0)
	if err != nil || !st["a.example"].GraceUntil.IsZero() || !st["a.example"].Tagging {
		t.Fatalf("fresh: %+v %v", st, err)
	}
	// A domain added later on a recorded installation: new, no grace.
	st, _, _ = Sync(dir, map[string]Mode{"a.example": ModeEnforce, "b.example": ModeEnforce}, true, day0)
	if !st["b.example"].GraceUntil.IsZero() {
		t.Errorf("new domain got a grace period: %+v", st["b.example"])
	}
	// Turned off, then on again: it sent untagged mail meanwhile.
	Sync(dir, map[string]Mode{"a.example": ModeOff}, true, day0)
	st, ch, _ := Sync(dir, on, true, day0.Add(time.Hour))
	if want := day0.Add(time.Hour + Lifetime); !st["a.example"].GraceUntil.Equal(want) || len(ch) != 1 {
		t.Errorf("re-enabled: %+v changes %v, want grace until %s", st["a.example"], ch, want)
	}
	// Unchanged: no change, grace kept.
	if _, ch, _ := Sync(dir, on, true, day0.Add(2*time.Hour)); len(ch) != 0 {
		t.Errorf("unchanged sync reported %v", ch)
	}
	// An installation without a record that is not new (upgrade).
	st, _, _ = Sync(t.TempDir(), on, true, day0)
	if st["a.example"].GraceUntil.IsZero() {
		t.Error("upgrade without a record: no grace period")
	}
}
