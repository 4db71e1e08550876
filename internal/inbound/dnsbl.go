package inbound

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"kanmon/internal/config"
	"kanmon/internal/dnsresolve"
)

// maxCached bounds the blocklist answer cache (entries).
const maxCached = 50000

// CheckDNSBL asks every configured blocklist in parallel, each within
// inbound.dnsbl_timeout; the weights of the lists that list the client
// (with one of their counting codes) add up, and at dnsbl_threshold the
// client is refused (rule client.dnsbl; default reject, 554 5.7.1) with
// the lists and the address named. A list that fails or times out counts
// as not listing.
func CheckDNSBL(ctx context.Context, s *Screen, c *Conn) Result {
	if s.cfg.DNSBLListed == config.ActionOff || len(s.cfg.DNSBL) == 0 {
		return Result{}
	}
	zones := s.cfg.DNSBL
	hits := make([]blAnswer, len(zones))
	var wg sync.WaitGroup
	for i, z := range zones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hits[i] = s.lookupBL(ctx, c.IP, z.Zone)
		}()
	}
	wg.Wait()
	var score float64
	var named, evidence []string
	for i, z := range zones {
		h := hits[i]
		if h.err != "" {
			c.Log.Info("dnsbl", "zone", z.Zone, "err", h.err)
		}
		if !h.listed || !counts(h.answers, z.Codes) {
			continue
		}
		score += z.Weight
		n := z.Zone
		if z.URL != "" {
			n += " (" + z.URL + c.IP.String() + ")"
		}
		named = append(named, n)
		evidence = append(evidence, z.Zone+"="+joinAddrs(h.answers))
	}
	if score < s.cfg.DNSBLThreshold {
		return Result{}
	}
	return judge(s.cfg.DNSBLListed, "client.dnsbl", 554, 451, "7.1",
		c.IP.String()+" is listed in "+strings.Join(named, ", "),
		"lists", strings.Join(evidence, " "), "score", strconv.FormatFloat(score, 'f', -1, 64))
}

// CheckPolicyBlock: an address listed in a policy-block zone (PBL
// style: ranges whose owners say they should not send mail directly) is
// refused like a dynamic client (rule client.policy_block; default
// reject, 550 5.7.1).
func CheckPolicyBlock(ctx context.Context, s *Screen, c *Conn) Result {
	if s.cfg.PolicyBlock == config.ActionOff || len(s.cfg.PolicyBlockZones) == 0 {
		return Result{}
	}
	results := runAll(s.cfg.PolicyBlockZones, func(zone string) Result {
		if h := s.lookupBL(ctx, c.IP, zone); h.listed {
			return Result{Rule: zone}
		}
		return Result{}
	})
	for _, r := range results {
		if r.Rule != "" {
			return judge(s.cfg.PolicyBlock, "client.policy_block", 550, 450, "7.1",
				c.IP.String()+" is listed in "+r.Rule+" as an address that should not send mail directly"+submissionHint, "zone", r.Rule)
		}
	}
	return Result{}
}

// counts reports whether one of answers is among codes (any when codes
// is empty).
func counts(answers []netip.Addr, codes []string) bool {
	if len(codes) == 0 {
		return len(answers) > 0
	}
	for _, a := range answers {
		if slices.Contains(codes, a.String()) {
			return true
		}
	}
	return false
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// blAnswer is one blocklist's answer about one address.
type blAnswer struct {
	listed  bool
	answers []netip.Addr
	err     string
	expires time.Time
}

// minCache is the shortest time a blocklist answer is kept: a zone
// with tiny TTLs must not turn every connection into a query per list.
const minCache = time.Minute

// lookupBL asks zone about ip within dnsbl_timeout, through the cache.
// An answer is kept for its TTL (a "not listed" answer for the zone's
// negative-caching time), bounded by minCache and dnsbl_cache. Failures
// are not cached, so a list that was down is asked again.
func (s *Screen) lookupBL(ctx context.Context, ip netip.Addr, zone string) blAnswer {
	key := zone + "|" + ip.String()
	if a, ok := s.cache.get(key); ok {
		return a
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DNSBLTimeout.Duration)
	defer cancel()
	listed, answers, ttl, err := dnsresolve.LookupDNSBLTTL(ctx, s.dns, ip, zone)
	if err != nil {
		return blAnswer{err: err.Error()}
	}
	a := blAnswer{listed: listed, answers: answers}
	s.cache.put(key, a, ttl)
	return a
}

// blCache keeps blocklist answers for their TTL within [lo, hi], bounded
// in entries.
type blCache struct {
	lo, hi time.Duration
	max    int
	mu     sync.Mutex
	m      map[string]blAnswer
}

// newBLCache returns a cache keeping answers at most hi (0: no cache)
// and at least min(minCache, hi).
func newBLCache(hi time.Duration, entries int) *blCache {
	return &blCache{lo: min(minCache, hi), hi: hi, max: entries, m: map[string]blAnswer{}}
}

// keep is how long an answer with ttl is kept (0: unknown → the lower
// bound).
func (b *blCache) keep(ttl time.Duration) time.Duration {
	return min(max(ttl, b.lo), b.hi)
}

func (b *blCache) get(key string) (blAnswer, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, ok := b.m[key]
	if !ok || time.Now().After(a.expires) {
		return blAnswer{}, false
	}
	return a, true
}

func (b *blCache) put(key string, a blAnswer, ttl time.Duration) {
	if b.hi <= 0 {
		return
	}
	now := time.Now()
	a.expires = now.Add(b.keep(ttl))
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.m) >= b.max {
		for k, v := range b.m {
			if now.After(v.expires) {
				delete(b.m, k)
			}
		}
		if len(b.m) >= b.max {
			clear(b.m) // a flood of distinct addresses: start over
		}
	}
	b.m[key] = a
}
