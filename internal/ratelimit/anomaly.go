package ratelimit

import (
	"math"
	"strconv"
	"time"

	"kanmon/internal/address"
	"kanmon/internal/config"
	"kanmon/internal/policy"
	"kanmon/internal/state"
)

// The compromised-account signals (docs/ratelimits.md says why these):
//
//   - volume: the recipients of the current hour exceed anomaly_factor
//     times the account's own hourly average (an exponentially weighted
//     moving average over about a day, ewmaAlpha) and anomaly_floor;
//   - new_recipients: of at least anomaly_min_sample recipients this
//     hour, more than anomaly_new_share were never written to by the
//     account before (within recipientMemory).
//
// Each raises one alert per account and hour (rule account.anomaly), and
// with anomaly = "suspend" suspends the account.

// ewmaAlpha weighs the last hour in the average: 1/24, a memory of
// about a day, so a quiet night does not make a busy morning anomalous.
const ewmaAlpha = 1.0 / 24

// recipientMemory is how long an account's recipients count as known.
const recipientMemory = 90 * 24 * time.Hour

// hourly is an account's current hour as the signals see it.
type hourly struct {
	Hour     int64   // hours since the Unix epoch
	Count    int64   // recipients this hour
	New      int64   // of which first-time recipients
	Alerted  int64   // signals already alerted this hour (bit set)
	Baseline float64 // average recipients per hour before this one
}

const (
	alertVolume int64 = 1 << iota
	alertNew
)

// roll moves h to hour, folding the hours that ended into the average
// (empty hours count as zero).
func roll(h hourly, hour int64) hourly {
	if h.Hour == 0 {
		return hourly{Hour: hour}
	}
	if hour <= h.Hour {
		return h
	}
	b := (1-ewmaAlpha)*h.Baseline + ewmaAlpha*float64(h.Count)
	if gap := hour - h.Hour - 1; gap > 0 {
		b *= math.Pow(1-ewmaAlpha, float64(min(gap, 24*365)))
	}
	return hourly{Hour: hour, Baseline: b}
}

// signals returns the signals h raises that were not alerted this hour.
func signals(h hourly, c config.RateLimit) int64 {
	var s int64
	if h.Count >= c.AnomalyFloor && float64(h.Count) > c.AnomalyFactor*h.Baseline {
		s |= alertVolume
	}
	if h.Count >= c.AnomalyMinSample && float64(h.New) > c.AnomalyNewShare*float64(h.Count) {
		s |= alertNew
	}
	return s &^ h.Alerted
}

// observe counts an accepted recipient toward the signals and alerts on
// a new one; with anomaly = "suspend" the account is suspended and the
// recipient refused.
func (l *Limiter) observe(s Sender, to address.Addr, now time.Time) policy.Verdict {
	if l.cfg.Anomaly == config.AnomalyOff {
		return ok()
	}
	first := !state.Seen(l.st, "sr:"+s.Account+"\x00"+to.Local+"@"+to.Domain, recipientMemory, now)
	var h hourly
	var raised int64
	l.st.Update("an:"+s.Account, now, func(r *state.Record, _ bool) bool {
		h = roll(hourly{Hour: r.A, Count: r.B, New: r.C, Alerted: r.D, Baseline: r.F}, now.Unix()/3600)
		h.Count++
		if first {
			h.New++
		}
		raised = signals(h, l.cfg)
		h.Alerted |= raised
		*r = state.Record{A: h.Hour, B: h.Count, C: h.New, D: h.Alerted, F: h.Baseline,
			Expires: now.Add(30 * 24 * time.Hour).UnixNano()}
		return true
	})
	if raised == 0 {
		return ok()
	}
	for _, sig := range []struct {
		bit  int64
		name string
	}{{alertVolume, "volume"}, {alertNew, "new_recipients"}} {
		if raised&sig.bit != 0 {
			l.alert(s, sig.name, h)
		}
	}
	if l.cfg.Anomaly != config.AnomalySuspend {
		return ok()
	}
	l.suspend(s, "anomaly", "sudden rise: "+strconv.FormatInt(h.Count, 10)+" recipients this hour ("+
		strconv.FormatInt(h.New, 10)+" first-time) against an average of "+strconv.FormatFloat(h.Baseline, 'f', 1, 64), now)
	return suspendedVerdict(s.Account)
}

// alert is the log line and metric of one signal.
func (l *Limiter) alert(s Sender, signal string, h hourly) {
	if l.met != nil {
		l.met.Anomalies.WithLabelValues(signal).Inc()
	}
	if s.Log != nil {
		s.Log.Warn("alert", "rule", "account.anomaly", "signal", signal, "user", s.Account, "action", l.cfg.Anomaly,
			"hour_recipients", h.Count, "first_time_recipients", h.New,
			"baseline_per_hour", strconv.FormatFloat(h.Baseline, 'f', 2, 64),
			"reason", "sudden rise in the account's sending against its own history: compromised?")
	}
}
