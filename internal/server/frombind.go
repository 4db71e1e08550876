package server

import (
	"strings"

	"kanmon/internal/config"
	"kanmon/internal/policy"
)

// headerBinding turns the [submission] section into the header binding's
// input, domains and networks in the forms the binding compares.
func headerBinding(cfg *config.Config) policy.HeaderBinding {
	s := cfg.Submission
	b := policy.HeaderBinding{Action: s.FromBinding, Delegates: map[string][]string{}}
	for _, d := range s.Delegate {
		acct := strings.ToLower(d.Account)
		b.Delegates[acct] = append(b.Delegates[acct], config.FromDomains(d.Domains)...)
	}
	for _, t := range s.TrustedFrom {
		b.TrustedFrom = append(b.TrustedFrom, policy.TrustedFrom{Network: t.TrustedFromPrefix(), Domains: config.FromDomains(t.Domains)})
	}
	return b
}
