// Package metrics defines kanmon's Prometheus metrics, served on the admin
// listener at /metrics.
//
// SECURITY: label values are fixed names (listeners, rules, commands we
// know), never client-supplied strings, so a client cannot blow up the
// number of series.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the collectors.
type Metrics struct {
	Registry    *prometheus.Registry
	Connections *prometheus.CounterVec // listener
	Active      *prometheus.GaugeVec   // listener
	Stress      *prometheus.GaugeVec   // listener: 1 while its pool is in stress mode
	Commands    *prometheus.CounterVec // listener, command
	Accepted    *prometheus.CounterVec // listener
	Rejected    *prometheus.CounterVec // rule
	Deliveries  *prometheus.CounterVec // kind (local, remote), result
	// Panics counts panics recovered, by where they happened: "delivery"
	// (one delivery attempt), "smtp" or "pop3" (one session).
	Panics *prometheus.CounterVec // where
	// RcptVerify counts verifications of relay-domain recipients, by
	// source (probe, cache, list) and result (valid, invalid, unverified).
	RcptVerify *prometheus.CounterVec // source, result
	// Inbound counts the findings of the checks of incoming mail, by
	// rule and the action taken (reject, tempfail, log).
	Inbound       *prometheus.CounterVec // rule, action
	AcceptedBytes prometheus.Counter

	// Suspensions counts accounts suspended automatically, by cause
	// (rate, anomaly); Anomalies the compromised-account alerts, by
	// signal (volume, new_recipients). See internal/ratelimit.
	Suspensions *prometheus.CounterVec // cause
	Anomalies   *prometheus.CounterVec // signal
	// Forgery counts refusals that are evidence of others forging our
	// domains, by kind (internal/forgery: bounce, local_sender, dmarc).
	Forgery *prometheus.CounterVec // kind
}

// New registers kanmon's metrics. queueDepth and queueBytes are read at
// scrape time.
func New(queueDepth func() float64, queueBytes func() float64) *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		Connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanmon_connections_total", Help: "Connections accepted, by listener.",
		}, []string{"listener"}),
		Active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kanmon_connections_active", Help: "Connections open now, by listener.",
		}, []string{"listener"}),
		Stress: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kanmon_listener_stress", Help: "1 while a listener's connection pool is in stress mode (short timeouts), by listener.",
		}, []string{"listener"}),
		Commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanmon_commands_total", Help: "Protocol commands received, by listener and command.",
		}, []string{"listener", "command"}),
		Accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanmon_messages_accepted_total", Help: "Messages accepted into the queue, by listener.",
		}, []string{"listener"}),
		AcceptedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kanmon_messages_accepted_bytes_total", Help: "Bytes of messages accepted into the queue.",
		}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanmon_rejections_total", Help: "Rejections, by the rule that decided.",
		}, []string{"rule"}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanmon_deliveries_total", Help: "Delivery attempts per recipient, by kind and result.",
		}, []string{"kind", "result"}),
		Panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanmon_panics_total", Help: "Panics recovered (the work in hand is retried or the session ended), by where.",
		}, []string{"where"}),
		RcptVerify: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanmon_rcpt_verify_total", Help: "Verifications of relay-domain recipients at RCPT, by source (probe, cache, list) and result (valid, invalid, unverified).",
		}, []string{"source", "result"}),
		Inbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanmon_inbound_checks_total", Help: "Findings of the checks of incoming mail, by rule and action taken.",
		}, []string{"rule", "action"}),
		Suspensions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanmon_account_suspensions_total", Help: "Accounts suspended automatically, by cause (rate, anomaly).",
		}, []string{"cause"}),
		Anomalies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanmon_account_anomalies_total", Help: "Compromised-account alerts (rule account.anomaly), by signal (volume, new_recipients).",
		}, []string{"signal"}),
		Forgery: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanmon_forgery_total", Help: "Refusals that are evidence of others forging our domains, by kind (bounce, local_sender, dmarc).",
		}, []string{"kind"}),
	}
	for _, k := range []string{"bounce", "local_sender", "dmarc"} {
		m.Forgery.WithLabelValues(k) // present at 0, so a rate() sees the first one
	}
	r.MustRegister(m.Suspensions, m.Anomalies)
	r.MustRegister(m.Connections, m.Active, m.Stress, m.Commands, m.Accepted, m.AcceptedBytes, m.Rejected, m.Deliveries, m.Panics, m.RcptVerify, m.Inbound, m.Forgery,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kanmon_queue_messages", Help: "Messages in the queue."}, queueDepth),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kanmon_queue_bytes", Help: "Bytes in the queue."}, queueBytes),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}
