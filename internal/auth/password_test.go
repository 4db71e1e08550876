package auth

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestHashPasswordRoundTrip(t *testing.T) {
	t.Parallel()
	for _, pw := range []string{"correct horse battery staple", "x", "pässwörd-ünïcode", "with\x00nul", strings.Repeat("long", 300)} {
		h, err := HashPassword(pw)
		if err != nil {
			t.Fatalf("HashPassword(%q): %v", pw, err)
		}
		if len(pw) >= 8 && strings.Contains(h, pw) {
			t.Errorf("hash %q contains the password", h)
		}
		if !CheckPassword(h, pw) {
			t.Errorf("CheckPassword(HashPassword(%q)) = false", pw)
		}
		if CheckPassword(h, pw+"x") || CheckPassword(h, "") || (len(pw) > 1 && CheckPassword(h, pw[:len(pw)-1])) {
			t.Errorf("a wrong password matches the hash of %q", pw)
		}
	}
}

func TestHashPasswordSaltsDiffer(t *testing.T) {
	t.Parallel()
	a, err := HashPassword("same password")
	if err != nil {
		t.Fatal(err)
	}
	b, err := HashPassword("same password")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatalf("two hashes of one password are equal (%q): no random salt", a)
	}
	if !CheckPassword(a, "same password") || !CheckPassword(b, "same password") {
		t.Fatal("a salted hash does not verify")
	}
}

func TestHashPasswordRefusesEmpty(t *testing.T) {
	t.Parallel()
	if h, err := HashPassword(""); err == nil {
		t.Fatalf("HashPassword(\"\") = %q, nil; want an error", h)
	}
}

// TestHashEncodingParameters: the encoding names argon2id with the
// documented parameters (OWASP minimum: 19 MiB, 2 passes, 1 lane), a 16
// byte salt and a 32 byte key, base64 without padding.
func TestHashEncodingParameters(t *testing.T) {
	t.Parallel()
	h, err := HashPassword("parameters")
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "$argon2id$v=19$m=19456,t=2,p=1$"
	if !strings.HasPrefix(h, prefix) {
		t.Fatalf("hash %q does not start with %q", h, prefix)
	}
	parts := strings.Split(h, "$")
	if len(parts) != 6 {
		t.Fatalf("hash %q has %d $-fields, want 6", h, len(parts))
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) != 16 {
		t.Errorf("salt %q: %d bytes, %v; want 16 bytes of unpadded base64", parts[4], len(salt), err)
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) != 32 {
		t.Errorf("key %q: %d bytes, %v; want 32 bytes of unpadded base64", parts[5], len(key), err)
	}
}

// TestCheckPasswordMalformed: a damaged or foreign hash never verifies
// (and never panics), whichever field is wrong.
func TestCheckPasswordMalformed(t *testing.T) {
	t.Parallel()
	const pw = "malformed-test"
	good, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	p := strings.Split(good, "$") // "", argon2id, v=19, m=..., salt, key
	join := func(f ...string) string { return strings.Join(f, "$") }
	flip := func(s string) string {
		b := []byte(s)
		if b[0] == 'A' {
			b[0] = 'B'
		} else {
			b[0] = 'A'
		}
		return string(b)
	}
	cases := map[string]string{
		"empty":                    "",
		"plain text":               pw,
		"too few fields":           join(p[0], p[1], p[2], p[3], p[4]),
		"too many fields":          good + "$extra",
		"no leading dollar":        strings.TrimPrefix(good, "$"),
		"algorithm argon2i":        join("", "argon2i", p[2], p[3], p[4], p[5]),
		"algorithm argon2d":        join("", "argon2d", p[2], p[3], p[4], p[5]),
		"algorithm bcrypt":         "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
		"algorithm empty":          join("", "", p[2], p[3], p[4], p[5]),
		"version 16":               join("", p[1], "v=16", p[3], p[4], p[5]),
		"version text":             join("", p[1], "v=abc", p[3], p[4], p[5]),
		"version missing":          join("", p[1], "", p[3], p[4], p[5]),
		"params missing":           join("", p[1], p[2], "", p[4], p[5]),
		"params reordered":         join("", p[1], p[2], "t=2,m=19456,p=1", p[4], p[5]),
		"memory zero":              join("", p[1], p[2], "m=0,t=2,p=1", p[4], p[5]),
		"memory huge":              join("", p[1], p[2], "m=4194305,t=2,p=1", p[4], p[5]),
		"memory negative":          join("", p[1], p[2], "m=-1,t=2,p=1", p[4], p[5]),
		"time zero":                join("", p[1], p[2], "m=19456,t=0,p=1", p[4], p[5]),
		"time huge":                join("", p[1], p[2], "m=19456,t=65,p=1", p[4], p[5]),
		"threads zero":             join("", p[1], p[2], "m=19456,t=2,p=0", p[4], p[5]),
		"threads overflow":         join("", p[1], p[2], "m=19456,t=2,p=256", p[4], p[5]),
		"other memory":             join("", p[1], p[2], "m=19457,t=2,p=1", p[4], p[5]),
		"other time":               join("", p[1], p[2], "m=19456,t=3,p=1", p[4], p[5]),
		"salt not base64":          join("", p[1], p[2], p[3], "!!!not-base64!!!", p[5]),
		"salt padded base64":       join("", p[1], p[2], p[3], p[4]+"==", p[5]),
		"salt changed":             join("", p[1], p[2], p[3], flip(p[4]), p[5]),
		"key not base64":           join("", p[1], p[2], p[3], p[4], "***"),
		"key empty":                join("", p[1], p[2], p[3], p[4], ""),
		"key too long":             join("", p[1], p[2], p[3], p[4], base64.RawStdEncoding.EncodeToString(make([]byte, 129))),
		"key changed":              join("", p[1], p[2], p[3], p[4], flip(p[5])),
		"key truncated":            join("", p[1], p[2], p[3], p[4], p[5][:len(p[5])-4]),
		"key of another password":  join("", p[1], p[2], p[3], p[4], strings.Split(mustHash(t, "other"), "$")[5]),
		"salt of another password": join("", p[1], p[2], p[3], strings.Split(mustHash(t, "other"), "$")[4], p[5]),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			if CheckPassword(h, pw) {
				t.Errorf("CheckPassword(%q, correct password) = true, want false", h)
			}
		})
	}
	if !CheckPassword(good, pw) {
		t.Fatal("the unmodified hash does not verify")
	}
}

func mustHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
