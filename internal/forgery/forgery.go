// Package forgery gathers the evidence that others forge kanmon's own
// domains: bounces of mail we never sent (backscatter), mail from outside
// claiming one of our domains as its sender, and messages that fail DMARC
// for one of our domains. KindOf maps a policy decision to its kind, so
// the server counts it (kanmon_forgery_total) where every decision is
// logged, and Build summarises the same decision lines of the JSON log for
// `kanmon report forgery`.
//
// SECURITY: the log lines are read as untrusted text (an address in them
// came from a client); the report prints them escaped (JSON, CSV) or
// stripped of control characters (table). Memory is bounded: the
// connection-to-address map keeps the most recent connections only, and
// samples are a few lines per kind.
package forgery

import (
	"strings"
)

// Kinds of forgery evidence, the values of the metric's label.
const (
	KindBounce      = "bounce"       // a bounce to a local address without a valid BATV tag, or to several recipients
	KindLocalSender = "local_sender" // mail from outside claiming one of our domains as envelope sender
	KindDMARC       = "dmarc"        // a message failing DMARC for one of our domains
)

// Kinds lists every kind, in report order.
var Kinds = []string{KindBounce, KindLocalSender, KindDMARC}

// ruleKinds maps the rules that are evidence of forgery to their kind.
var ruleKinds = map[string]string{
	"rcpt.batv":              KindBounce,
	"rcpt.bounce_recipients": KindBounce,
	"sender.forged_local":    KindLocalSender,
	"data.dmarc":             KindDMARC,
}

// domainKeys are the attributes a DMARC decision may carry the header
// From: domain in, first found wins; "header_from" is an address.
var domainKeys = []string{"from_domain", "header_from_domain", "dmarc_domain", "domain", "header_from"}

// KindOf returns the kind of forgery a decision with rule and attributes
// attr is evidence of, or "". A DMARC failure counts only when its
// domain is one of ours (local); the others are someone else's forgers.
func KindOf(rule string, attr func(key string) string, local func(domain string) bool) string {
	k := ruleKinds[rule]
	if k != KindDMARC {
		return k
	}
	for _, key := range domainKeys {
		v := attr(key)
		if v == "" {
			continue
		}
		if i := strings.LastIndexByte(v, '@'); i >= 0 {
			v = v[i+1:]
		}
		v = strings.TrimSuffix(strings.ToLower(strings.Trim(v, "<> ")), ".")
		if local != nil && local(v) {
			return KindDMARC
		}
		return ""
	}
	return ""
}

// KindOfAttrs is KindOf for a slog key/value list, as the server's
// decision lines are built.
func KindOfAttrs(rule string, attrs []any, local func(domain string) bool) string {
	if ruleKinds[rule] == "" {
		return "" // the common case costs one map lookup
	}
	return KindOf(rule, func(key string) string {
		for i := 0; i+1 < len(attrs); i += 2 {
			if k, ok := attrs[i].(string); ok && k == key {
				s, _ := attrs[i+1].(string)
				return s
			}
		}
		return ""
	}, local)
}
