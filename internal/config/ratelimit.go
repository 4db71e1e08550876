package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Greylisting values of inbound.greylist.
const (
	GreylistOn  = "on"
	GreylistLog = "log"
	GreylistOff = "off"
)

// Greylisting configures greylisting on the MX listener (inbound.greylist
// and its keys, internal/inbound greylist.go). It is part of [inbound].
type Greylisting struct {
	// Greylist is "on", "log" (note what would be refused) or "off".
	Greylist string `toml:"greylist"`
	// GreylistDelay is how long a new (client network, sender, recipient)
	// triplet is refused with 451 4.7.1 before a retry passes.
	GreylistDelay Duration `toml:"greylist_delay"`
	// GreylistExpiry is how long a refused triplet waits for its retry.
	GreylistExpiry Duration `toml:"greylist_expiry"`
	// GreylistPassTTL is how long a triplet that passed is let through at
	// once, renewed by each message.
	GreylistPassTTL Duration `toml:"greylist_pass_ttl"`
}

// DefaultGreylisting is off, with postgrey-like times when turned on.
func DefaultGreylisting() Greylisting {
	return Greylisting{Greylist: GreylistOff, GreylistDelay: Duration{5 * time.Minute},
		GreylistExpiry: Duration{4 * time.Hour}, GreylistPassTTL: Duration{35 * 24 * time.Hour}}
}

// Anomaly actions of ratelimit.anomaly.
const (
	AnomalyOff     = "off"
	AnomalyLog     = "log"
	AnomalySuspend = "suspend"
)

// RateLimit is [ratelimit]: the limits on what authenticated users send
// through submission and SMTPS, automatic suspension, the detection of
// compromised accounts, and the connection rate of MX clients
// (internal/ratelimit; docs/ratelimits.md).
type RateLimit struct {
	// Per authenticated account: messages, recipients and distinct
	// recipient domains per hour, each a token bucket with its burst.
	MessagesPerHour   int64 `toml:"messages_per_hour"`
	MessagesBurst     int64 `toml:"messages_burst"`
	RecipientsPerHour int64 `toml:"recipients_per_hour"`
	RecipientsBurst   int64 `toml:"recipients_burst"`
	DomainsPerHour    int64 `toml:"domains_per_hour"`
	DomainsBurst      int64 `toml:"domains_burst"`
	// The same per client address (IPv4, IPv6 /64) on submission and
	// SMTPS: higher, since an office behind one NAT address shares them.
	AddressMessagesPerHour   int64 `toml:"address_messages_per_hour"`
	AddressMessagesBurst     int64 `toml:"address_messages_burst"`
	AddressRecipientsPerHour int64 `toml:"address_recipients_per_hour"`
	AddressRecipientsBurst   int64 `toml:"address_recipients_burst"`
	AddressDomainsPerHour    int64 `toml:"address_domains_per_hour"`
	AddressDomainsBurst      int64 `toml:"address_domains_burst"`
	// SuspendFactor suspends an account that tries to send at this many
	// times one of its limits (rate and burst); 0 never suspends.
	SuspendFactor float64 `toml:"suspend_factor"`
	// Anomaly is what a sudden rise of an account's volume or of its
	// share of first-time recipients does: "off", "log" (alert) or
	// "suspend" (alert and suspend).
	Anomaly string `toml:"anomaly"`
	// AnomalyFactor: the hour's recipients above this many times the
	// account's hourly average, and above AnomalyFloor, is a rise.
	AnomalyFactor float64 `toml:"anomaly_factor"`
	AnomalyFloor  int64   `toml:"anomaly_floor"`
	// AnomalyNewShare: more than this share of the hour's recipients
	// never written to before, out of at least AnomalyMinSample, is a rise.
	AnomalyNewShare  float64 `toml:"anomaly_new_share"`
	AnomalyMinSample int64   `toml:"anomaly_min_sample"`
	// MXConnectionsPerMinute bounds new connections per client (IPv4
	// address, IPv6 /64) on the MX listener, as a bucket of that size;
	// 0 turns it off. Trusted networks are exempt.
	MXConnectionsPerMinute int64 `toml:"mx_connections_per_minute"`
}

// DefaultRateLimit returns the production defaults of [ratelimit]: well
// above what a person sends, well below what a spam run needs.
func DefaultRateLimit() RateLimit {
	return RateLimit{
		MessagesPerHour: 100, MessagesBurst: 50,
		RecipientsPerHour: 500, RecipientsBurst: 200,
		DomainsPerHour: 100, DomainsBurst: 50,
		AddressMessagesPerHour: 1000, AddressMessagesBurst: 300,
		AddressRecipientsPerHour: 5000, AddressRecipientsBurst: 1000,
		AddressDomainsPerHour: 1000, AddressDomainsBurst: 300,
		SuspendFactor: 3,
		Anomaly:       AnomalyLog, AnomalyFactor: 5, AnomalyFloor: 50,
		AnomalyNewShare: 0.9, AnomalyMinSample: 40,
		MXConnectionsPerMinute: 60,
	}
}

// StatePath is the state database under the data directory.
func (c *Config) StatePath() string { return filepath.Join(c.DataDir, "state.db") }

func (c *Config) validateRateLimit(raw []byte, e *Errors) {
	r := c.RateLimit
	for _, p := range []struct {
		key string
		v   int64
	}{
		{"ratelimit.messages_per_hour", r.MessagesPerHour}, {"ratelimit.messages_burst", r.MessagesBurst},
		{"ratelimit.recipients_per_hour", r.RecipientsPerHour}, {"ratelimit.recipients_burst", r.RecipientsBurst},
		{"ratelimit.domains_per_hour", r.DomainsPerHour}, {"ratelimit.domains_burst", r.DomainsBurst},
		{"ratelimit.address_messages_per_hour", r.AddressMessagesPerHour}, {"ratelimit.address_messages_burst", r.AddressMessagesBurst},
		{"ratelimit.address_recipients_per_hour", r.AddressRecipientsPerHour}, {"ratelimit.address_recipients_burst", r.AddressRecipientsBurst},
		{"ratelimit.address_domains_per_hour", r.AddressDomainsPerHour}, {"ratelimit.address_domains_burst", r.AddressDomainsBurst},
		{"ratelimit.anomaly_floor", r.AnomalyFloor}, {"ratelimit.anomaly_min_sample", r.AnomalyMinSample},
	} {
		if p.v < 1 {
			e.add(raw, p.key, "must be at least 1 (a zero or negative bound would mean no bound)")
		}
	}
	if r.MXConnectionsPerMinute < 0 {
		e.add(raw, "ratelimit.mx_connections_per_minute", "must not be negative (0 turns it off)")
	}
	if r.SuspendFactor != 0 && r.SuspendFactor < 1.5 {
		e.add(raw, "ratelimit.suspend_factor", "must be 0 (never suspend) or at least 1.5 (nearer 1 would suspend a user who only reached a limit)")
	}
	if r.AnomalyFactor < 1.5 {
		e.add(raw, "ratelimit.anomaly_factor", "must be at least 1.5")
	}
	if r.AnomalyNewShare <= 0 || r.AnomalyNewShare > 1 {
		e.add(raw, "ratelimit.anomaly_new_share", "must be above 0 and at most 1 (a share of the hour's recipients)")
	}
	actions := []string{AnomalyOff, AnomalyLog, AnomalySuspend}
	if !slices.Contains(actions, r.Anomaly) {
		e.add(raw, "ratelimit.anomaly", fmt.Sprintf("unknown action %q (one of: %s)", r.Anomaly, strings.Join(actions, ", ")))
	}
	g := c.Inbound.Greylisting
	modes := []string{GreylistOn, GreylistLog, GreylistOff}
	if !slices.Contains(modes, g.Greylist) {
		e.add(raw, "inbound.greylist", fmt.Sprintf("unknown action %q (one of: %s)", g.Greylist, strings.Join(modes, ", ")))
	}
	for _, d := range []struct {
		key       string
		d, lo, hi time.Duration
	}{
		{"inbound.greylist_delay", g.GreylistDelay.Duration, time.Second, 24 * time.Hour},
		{"inbound.greylist_expiry", g.GreylistExpiry.Duration, time.Minute, 7 * 24 * time.Hour},
		{"inbound.greylist_pass_ttl", g.GreylistPassTTL.Duration, time.Hour, 365 * 24 * time.Hour},
	} {
		if d.d < d.lo || d.d > d.hi {
			e.add(raw, d.key, fmt.Sprintf("must be between %s and %s", d.lo, d.hi))
		}
	}
	if g.GreylistExpiry.Duration <= g.GreylistDelay.Duration {
		e.add(raw, "inbound.greylist_expiry", "must be longer than greylist_delay (a retry must have time to come)")
	}
}
