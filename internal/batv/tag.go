// Package batv is Bounce Address Tag Validation (draft-levine-smtp-batv-01,
// the "prvs" tag): the envelope sender of mail our users send to other
// servers becomes prvs=KDDDSSSSSS=user@domain, and a bounce (null sender)
// to one of our addresses is accepted only when its recipient carries a
// valid, unexpired tag for that address. A flood of bounces for mail we
// never sent (backscatter of spam that forged our domain) is then refused
// at RCPT, before DATA, a queue file or a DNS lookup.
//
// tag.go makes and checks tags (pure functions), keys.go keeps the keys
// in the data directory and rotates them, state.go records when each
// domain started tagging (for the grace period), guard.go puts it
// together for the RCPT check and the remote courier.
//
// SECURITY: a tag is an HMAC-SHA1 of the key number, the expiry day and
// the plain address (lower-cased), cut to 3 bytes as the draft says:
// forging one takes 2^24 tries per address and day, each costing the
// forger an SMTP transaction. The keys never leave the data directory
// (mode 0600) and never reach a log line.
package batv

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"time"

	"kanmon/internal/address"
)

// Lifetime is how long a tag stays valid after the message was sent
// (one attempt), and how long a retired key still verifies.
const Lifetime = 7 * 24 * time.Hour

const lifetimeDays = 7

// prefix starts every tagged local part.
const prefix = "prvs="

// tagLen is the length of KDDDSSSSSS.
const tagLen = 10

// Status is the outcome of checking a recipient's tag.
type Status string

// Statuses, as they appear in log lines (key batv).
const (
	Valid        Status = "valid"
	Missing      Status = "missing"       // no prvs= tag at all
	Malformed    Status = "malformed"     // starts with prvs= but is not a tag
	UnknownKey   Status = "unknown_key"   // key number not (or no longer) in the key ring
	Expired      Status = "expired"       // expiry day passed (or too far ahead)
	BadSignature Status = "bad_signature" // the HMAC does not match: forged or another user's tag
)

// DayNumber is the day of t counted from 1970-01-01 UTC.
func DayNumber(t time.Time) int64 { return t.Unix() / 86400 }

// Tag is a parsed prvs tag.
type Tag struct {
	Key int     // K, 0-9
	Day int     // DDD, the expiry day number mod 1000
	Sig [3]byte // SSSSSS
	// Local is the plain local part under the tag.
	Local string
}

// Make returns the tagged local part for the plain address local@domain,
// signed with key number num and secret, expiring Lifetime after now.
func Make(secret []byte, num int, now time.Time, local, domain string) string {
	day := int((DayNumber(now) + lifetimeDays) % 1000)
	head := tagHead(num, day)
	sig := sign(secret, head, local, domain)
	return prefix + head + hex.EncodeToString(sig[:]) + "=" + local
}

// tagHead is KDDD.
func tagHead(num, day int) string {
	return string([]byte{byte('0' + num), byte('0' + day/100), byte('0' + day/10%10), byte('0' + day%10)})
}

// sign is the first 3 bytes of HMAC-SHA1(secret, KDDD + address). The
// address is lower-cased (ASCII): our directory folds the case of local
// parts, and a peer may change the case of what it bounces to.
func sign(secret []byte, head, local, domain string) [3]byte {
	m := hmac.New(sha1.New, secret)
	m.Write([]byte(head))
	m.Write([]byte(address.LowerASCII(local)))
	m.Write([]byte{'@'})
	m.Write([]byte(address.LowerASCII(domain)))
	var out [3]byte
	copy(out[:], m.Sum(nil))
	return out
}

// HasTag reports whether a local part starts with the prvs= prefix (in
// any case), that is whether Parse should be asked.
func HasTag(local string) bool {
	return len(local) >= len(prefix) && strings.EqualFold(local[:len(prefix)], prefix)
}

// Parse reads a tagged local part "prvs=KDDDSSSSSS=user". ok is false when
// local has no tag or a broken one.
func Parse(local string) (t Tag, ok bool) {
	if !HasTag(local) {
		return t, false
	}
	rest := local[len(prefix):]
	if len(rest) < tagLen+2 || rest[tagLen] != '=' {
		return t, false
	}
	for i := 0; i < 4; i++ {
		if rest[i] < '0' || rest[i] > '9' {
			return t, false
		}
	}
	if _, err := hex.Decode(t.Sig[:], []byte(rest[4:tagLen])); err != nil {
		return t, false
	}
	t.Key = int(rest[0] - '0')
	t.Day = int(rest[1]-'0')*100 + int(rest[2]-'0')*10 + int(rest[3]-'0')
	t.Local = rest[tagLen+1:]
	return t, true
}

// Check verifies a parsed tag for domain at time now; secret is the key
// the tag's number names (nil: unknown key).
func Check(t Tag, secret []byte, domain string, now time.Time) Status {
	if secret == nil {
		return UnknownKey
	}
	// The signature first: a forged tag is reported as forged whatever
	// date it claims.
	want := sign(secret, tagHead(t.Key, t.Day), t.Local, domain)
	if !hmac.Equal(want[:], t.Sig[:]) {
		return BadSignature
	}
	// Days left until the tag's expiry, on the 1000-day circle: 0 to
	// lifetimeDays is valid; anything else passed its expiry (or claims
	// one no tag of ours can have).
	left := (int64(t.Day) - DayNumber(now)%1000 + 1000) % 1000
	if left > lifetimeDays {
		return Expired
	}
	return Valid
}
