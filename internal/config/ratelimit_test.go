package config_test

import (
	"fmt"
	"strings"
	"testing"

	"kanmon/internal/config"
)

// TestBadRateLimitConfig: the greylisting and [ratelimit] keys refuse
// unknown actions and meaningless numbers with the key and the line.
func TestBadRateLimitConfig(t *testing.T) {
	t.Parallel()
	const path = "/srv/mail/kanmon.toml"
	sec := func(table string, lines ...string) string {
		return base + "\n[" + table + "]\n" + strings.Join(lines, "\n") + "\n"
	}
	for _, tc := range []badCase{
		{name: "greylist action", toml: sec("inbound", `greylist = "yes"`), key: "inbound.greylist", at: "greylist =", msg: `unknown action "yes"`},
		{name: "greylist delay zero", toml: sec("inbound", `greylist_delay = "0s"`), key: "inbound.greylist_delay", at: "greylist_delay =", msg: "must be between"},
		{name: "greylist expiry before delay", toml: sec("inbound", `greylist_delay = "2h"`, `greylist_expiry = "1h"`), key: "inbound.greylist_expiry", at: "greylist_expiry =", msg: "longer than greylist_delay"},
		{name: "anomaly action", toml: sec("ratelimit", `anomaly = "block"`), key: "ratelimit.anomaly", at: "anomaly =", msg: `unknown action "block"`},
		{name: "messages per hour zero", toml: sec("ratelimit", "messages_per_hour = 0"), key: "ratelimit.messages_per_hour", at: "messages_per_hour =", msg: "at least 1"},
		{name: "address burst zero", toml: sec("ratelimit", "address_domains_burst = 0"), key: "ratelimit.address_domains_burst", at: "address_domains_burst =", msg: "at least 1"},
		{name: "suspend factor near 1", toml: sec("ratelimit", "suspend_factor = 1.1"), key: "ratelimit.suspend_factor", at: "suspend_factor =", msg: "at least 1.5"},
		{name: "new share above 1", toml: sec("ratelimit", "anomaly_new_share = 1.5"), key: "ratelimit.anomaly_new_share", at: "anomaly_new_share =", msg: "at most 1"},
		{name: "connection rate negative", toml: sec("ratelimit", "mx_connections_per_minute = -1"), key: "ratelimit.mx_connections_per_minute", at: "mx_connections_per_minute =", msg: "0 turns it off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.toml), path)
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.toml)
			}
			want := fmt.Sprintf("%s:%d: %s: ", path, lineContaining(tc.toml, tc.at), tc.key)
			if got := err.Error(); !strings.Contains(got, want) || !strings.Contains(got, tc.msg) {
				t.Errorf("error:\n%s\nwant %q and %q", got, want, tc.msg)
			}
		})
	}
	ok := sec("ratelimit", "suspend_factor = 0", "mx_connections_per_minute = 0")
	if _, err := config.Parse([]byte(ok), path); err != nil {
		t.Errorf("0 (off) refused for suspend_factor or mx_connections_per_minute: %v", err)
	}
}
