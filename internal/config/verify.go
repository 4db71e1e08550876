package config

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Verify configures recipient verification for relay_domains (backup
// MX, internal/rcptverify): the probe's cache, its bounds and time.
type Verify struct {
	// PositiveTTL and NegativeTTL are how long a probe's "exists" and
	// "does not exist" answers are cached.
	PositiveTTL Duration `toml:"positive_ttl"`
	NegativeTTL Duration `toml:"negative_ttl"`
	// ProbeTimeout bounds one verification, while the client waits for
	// the answer to its RCPT.
	ProbeTimeout Duration `toml:"probe_timeout"`
	// MaxProbes bounds the probes in flight at once.
	MaxProbes int `toml:"max_probes"`
	// CacheSize bounds the positive and the negative cache each.
	CacheSize int `toml:"cache_size"`
}

// RelayVerify is one relay domain's verification ([relay_verify."DOMAIN"]).
// A relay domain without a table is verified by probe.
type RelayVerify struct {
	// Method is "probe" (ask the domain's next hop; the default) or
	// "list" (the file List).
	Method string `toml:"method"`
	// List is a file of the domain's valid recipients, one address per
	// line, for method "list"; reloaded when it changes.
	List string `toml:"list"`
	// Unverified is what happens to a recipient that cannot be verified
	// (next hop down, a 4xx, DNS trouble): "defer" (450 4.1.1, the
	// default) or "accept" (accepted; those the partner refuses later
	// are dropped, since mail from outside is never bounced).
	Unverified string `toml:"unverified"`
}

// Verification methods and unverified choices.
const (
	VerifyProbe           = "probe"
	VerifyList            = "list"
	UnverifiedDefer       = "defer"
	UnverifiedAccept      = "accept"
	defaultPositiveTTL    = 7 * 24 * time.Hour
	defaultNegativeTTL    = 3 * time.Hour
	defaultProbeTimeout   = 20 * time.Second
	defaultMaxProbes      = 8
	defaultVerifyCacheMax = 100000
)

func defaultVerify() Verify {
	return Verify{
		PositiveTTL: Duration{defaultPositiveTTL}, NegativeTTL: Duration{defaultNegativeTTL},
		ProbeTimeout: Duration{defaultProbeTimeout}, MaxProbes: defaultMaxProbes, CacheSize: defaultVerifyCacheMax,
	}
}

// RelayVerifyFor is the verification of a relay domain (lower-case), the
// defaults filled in.
func (c *Config) RelayVerifyFor(domain string) RelayVerify {
	v := RelayVerify{Method: VerifyProbe, Unverified: UnverifiedDefer}
	for d, rv := range c.RelayVerify {
		if strings.EqualFold(strings.TrimSuffix(d, "."), domain) {
			v.List = rv.List
			if rv.Method != "" {
				v.Method = rv.Method
			}
			if rv.Unverified != "" {
				v.Unverified = rv.Unverified
			}
		}
	}
	return v
}

func (c *Config) validateVerify(raw []byte, e *Errors) {
	v := c.Verify
	for _, d := range []struct {
		key      string
		v        time.Duration
		min, max time.Duration
	}{
		{"verify.positive_ttl", v.PositiveTTL.Duration, time.Minute, 90 * 24 * time.Hour},
		{"verify.negative_ttl", v.NegativeTTL.Duration, time.Minute, 30 * 24 * time.Hour},
		{"verify.probe_timeout", v.ProbeTimeout.Duration, time.Second, 5 * time.Minute},
	} {
		if d.v < d.min || d.v > d.max {
			e.add(raw, d.key, fmt.Sprintf("must be from %s to %s", d.min, d.max))
		}
	}
	if v.MaxProbes < 1 || v.MaxProbes > 1000 {
		e.add(raw, "verify.max_probes", "must be from 1 to 1000")
	}
	if v.CacheSize < 100 || v.CacheSize > 10000000 {
		e.add(raw, "verify.cache_size", "must be from 100 to 10000000")
	}
	doms := make([]string, 0, len(c.RelayVerify))
	for d := range c.RelayVerify {
		doms = append(doms, d)
	}
	sort.Strings(doms)
	for _, d := range doms {
		rv := c.RelayVerify[d]
		key := func(k string) string { return `relay_verify."` + d + `".` + k }
		relayed := false
		for _, r := range c.RelayDomains {
			relayed = relayed || strings.EqualFold(r, strings.TrimSuffix(d, "."))
		}
		if !relayed {
			e.List = append(e.List, FieldError{Key: `relay_verify."` + d + `"`, Line: tableLine(raw, d),
				Msg: "not in relay_domains: verification applies to relay domains only"})
		}
		switch rv.Method {
		case "", VerifyProbe:
			if rv.List != "" {
				e.add(raw, key("list"), `a list is read only with method = "list"`)
			}
		case VerifyList:
			if rv.List == "" {
				e.List = append(e.List, FieldError{Key: key("list"), Line: lineOf(raw, key("method")),
					Msg: `method = "list" needs the file of valid recipients`})
			}
		default:
			e.add(raw, key("method"), fmt.Sprintf(`%q: use "probe" or "list"`, rv.Method))
		}
		switch rv.Unverified {
		case "", UnverifiedDefer:
		case UnverifiedAccept:
			c.Warnings = append(c.Warnings, FieldError{Key: key("unverified"), Line: lineOf(raw, key("unverified")),
				Msg: "recipients of " + d + " that cannot be verified are accepted; unknown ones among them " +
					"are then dropped without telling the sender (mail from outside is never bounced)"})
		default:
			e.add(raw, key("unverified"), fmt.Sprintf(`%q: use "defer" or "accept"`, rv.Unverified))
		}
	}
}

// tableLine finds the [relay_verify."DOMAIN"] header line, or 0.
func tableLine(raw []byte, domain string) int {
	for i, line := range strings.Split(string(raw), "\n") {
		t := strings.ReplaceAll(strings.TrimSpace(line), " ", "")
		if t == `[relay_verify."`+domain+`"]` || t == `[relay_verify.`+domain+`]` {
			return i + 1
		}
	}
	return 0
}
