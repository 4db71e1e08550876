package state

import "time"

// Rate is a token bucket: Per tokens refill over Period, and at most
// Burst may be spent at once. The zero Rate allows nothing.
type Rate struct {
	Per    int64
	Period time.Duration
	Burst  int64
}

// Interval is the time one token takes to refill.
func (r Rate) Interval() time.Duration {
	if r.Per <= 0 {
		return 0
	}
	return r.Period / time.Duration(r.Per)
}

// GCRA is the token bucket decision as a pure function (the generic cell
// rate algorithm, which keeps one time per bucket instead of a count and
// a time): tat is the bucket's theoretical arrival time (Unix
// nanoseconds; 0 for a full bucket), n the tokens asked for. It returns
// the new tat when allowed, and when refused how long until n tokens
// are there.
func GCRA(r Rate, tat, now int64, n int64) (newTAT int64, ok bool, retry time.Duration) {
	iv := int64(r.Interval())
	if iv <= 0 || r.Burst <= 0 || n > r.Burst {
		return tat, false, r.Period
	}
	if tat < now {
		tat = now
	}
	next := tat + n*iv
	// The bucket holds Burst tokens: a request fits while its tokens end
	// no later than Burst intervals from now.
	allowAt := next - r.Burst*iv
	if allowAt > now {
		return tat, false, time.Duration(allowAt - now)
	}
	return next, true, 0
}

// Allow takes n tokens from the bucket under key, which is kept until it
// is full again. When refused it returns how long until there are n. A
// bucket the store cannot keep allows (fail open).
func Allow(s Store, key string, r Rate, n int64, now time.Time) (bool, time.Duration) {
	ok, retry := true, time.Duration(0)
	s.Update(key, now, func(rec *Record, _ bool) bool {
		var tat int64
		tat, ok, retry = GCRA(r, rec.A, now.UnixNano(), n)
		rec.A, rec.Expires = tat, tat+1
		return tat > now.UnixNano()
	})
	return ok, retry
}

// Peek reports whether Allow would take n tokens now, without taking them.
func Peek(s Store, key string, r Rate, n int64, now time.Time) (bool, time.Duration) {
	rec, _ := s.Get(key, now)
	_, ok, retry := GCRA(r, rec.A, now.UnixNano(), n)
	return ok, retry
}

// Reset refills the bucket under key.
func Reset(s Store, key string, now time.Time) {
	s.Update(key, now, func(*Record, bool) bool { return false })
}

// Seen reports whether key was recorded within ttl before now, and
// records it now (for another ttl).
func Seen(s Store, key string, ttl time.Duration, now time.Time) bool {
	seen := false
	s.Update(key, now, func(rec *Record, found bool) bool {
		seen = found
		rec.Expires = now.Add(ttl).UnixNano()
		return true
	})
	return seen
}
