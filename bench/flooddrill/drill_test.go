package flooddrill

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// Settings is one drill's shape.
type Settings struct {
	Bounces  int64   // forged bounces, at least
	Ordinary int     // ordinary messages on submission
	Rate     float64 // ordinary messages per second
	Conns    int     // flood connections at once
	PerConn  int     // forged bounces per flood connection
}

// Report is what one drill measured on one server.
type Report struct {
	Server   string
	Settings Settings
	Flood    FloodResult
	// Ordinary mail.
	OrdinarySent, OrdinaryFailed, OrdinaryDelivered int
	P50, P99, Max                                   time.Duration
	// Queue file counts at start, at most during the drill, at its end.
	QueueStart, QueueMax, QueueEnd int
	CPU                            time.Duration
	// ForgerySeen is when kanmon's forgery counter for bounces first
	// moved (negative: never, or no counter); ForgeryCount its last value.
	ForgerySeen  time.Duration
	ForgeryCount float64
	FirstError   string
}

// forgerySeries is the /metrics line that counts refused forged bounces.
const forgerySeries = `kanmon_forgery_total{kind="bounce"}`

// Drill runs the flood and the ordinary stream against t at once and
// waits (bounded) for the ordinary mail to reach the sink.
func Drill(tb testing.TB, t *target, sink *Sink, s Settings) Report {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	r := Report{Server: t.name, Settings: s, ForgerySeen: -1}
	cpu0, err := TreeCPU(t.pid)
	if err != nil {
		tb.Fatal(err)
	}
	qs := SampleQueue(t.queueDirs, 250*time.Millisecond)
	var watch *MetricWatch
	if t.metricsURL != "" {
		watch = WatchMetric(ctx, t.metricsURL, forgerySeries, 1, time.Second)
	}
	ordinaryDone := make(chan struct{})
	floodOut := make(chan FloodResult, 1)
	go func() {
		floodOut <- Flood(ctx, FloodOptions{
			Addr: t.mx, Recipients: floodRecipients, Total: s.Bounces,
			Conns: s.Conns, PerConn: s.PerConn, SourceNet: "127.1.", Until: ordinaryDone,
		})
	}()
	ord := Ordinary(ctx, s.Ordinary, s.Rate, "sender@example.org", "sink.test", t.submit)
	close(ordinaryDone)
	r.Flood = <-floodOut
	for _, at := range ord.Sent {
		if !at.IsZero() {
			r.OrdinarySent++
		}
	}
	r.OrdinaryFailed = ord.Failed
	if ord.FirstError != nil {
		r.FirstError = ord.FirstError.Error()
	}
	// Wait for the ordinary mail to arrive: bounded, the sink is local.
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if len(sink.Arrivals()) >= r.OrdinarySent {
			break
		}
	}
	if cpu1, err := TreeCPU(t.pid); err == nil {
		r.CPU = cpu1 - cpu0
	}
	r.QueueStart, r.QueueMax, r.QueueEnd = qs.Stop()
	lat, _ := Latencies(ord.Sent, sink.Arrivals())
	r.OrdinaryDelivered = len(lat)
	r.P50, r.P99 = Percentile(lat, 50), Percentile(lat, 99)
	if len(lat) > 0 {
		r.Max = lat[len(lat)-1]
	}
	if watch != nil {
		time.Sleep(1500 * time.Millisecond) // one more scrape after the flood
		r.ForgerySeen, r.ForgeryCount = watch.Result()
	}
	return r
}

// Markdown is the report's table row.
func (r Report) Markdown() string {
	f := r.Flood
	pct := func(n int64) string {
		if f.Sent == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f %%", 100*float64(n)/float64(f.Sent))
	}
	seen := "-"
	if r.ForgerySeen >= 0 {
		seen = fmt.Sprintf("%.0f s (%.0f counted)", r.ForgerySeen.Seconds(), r.ForgeryCount)
	}
	return fmt.Sprintf("| %s | %d in %.0f s (%.0f/s) | %s | %d | %d | %d/%d | %v | %v | %d → max %d → %d | %.1f s (%.3f ms per bounce) | %s |",
		r.Server, f.Sent, f.Elapsed.Seconds(), float64(f.Sent)/f.Elapsed.Seconds(),
		pct(f.RefusedAtRcpt), f.Queued, f.TempAtRcpt+f.RefusedEarly+f.Errors,
		r.OrdinaryDelivered, r.Settings.Ordinary, r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond),
		r.QueueStart, r.QueueMax, r.QueueEnd,
		r.CPU.Seconds(), 1000*r.CPU.Seconds()/float64(max(f.Sent, 1)), seen)
}

// MarkdownHeader heads the table Markdown rows belong to.
const MarkdownHeader = "| server | forged bounces sent | refused at RCPT | taken (queued) | other answers | ordinary delivered | ordinary p50 | ordinary p99 | queue files start → max → end | server CPU | forgery counter moved after |\n" +
	"|---|---|---|---|---|---|---|---|---|---|---|"

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// fullSettings is the drill of bench/flood-drill.sh: 100,000 forged
// bounces (at least: the flood lasts as long as the ordinary stream)
// while 1,000 ordinary messages arrive at 20 per second.
func fullSettings() Settings {
	return Settings{
		Bounces:  int64(envInt("DRILL_BOUNCES", 100000)),
		Ordinary: envInt("DRILL_ORDINARY", 1000),
		Rate:     float64(envInt("DRILL_RATE", 20)),
		Conns:    envInt("DRILL_CONNS", 50),
		PerConn:  envInt("DRILL_PER_CONN", 10),
	}
}

func benchDrill(b *testing.B, start func(testing.TB, *Sink) *target) {
	sink, err := StartSink()
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	t := start(b, sink)
	r := Drill(b, t, sink, fullSettings())
	t.stop()
	b.ReportMetric(100*float64(r.Flood.RefusedAtRcpt)/float64(max(r.Flood.Sent, 1)), "%refused@rcpt")
	b.ReportMetric(float64(r.Flood.Queued), "bounces-queued")
	b.ReportMetric(r.P50.Seconds(), "ordinary-p50-s")
	b.ReportMetric(r.P99.Seconds(), "ordinary-p99-s")
	b.ReportMetric(float64(r.QueueMax-r.QueueStart), "queue-growth")
	b.Log(MarkdownHeader + "\n" + r.Markdown())
	if r.FirstError != "" {
		b.Logf("first ordinary failure: %s", r.FirstError)
	}
	if out := os.Getenv("DRILL_REPORT"); out != "" {
		f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintln(f, r.Markdown())
		f.Close()
	}
}

// BenchmarkFloodDrillKanmon is the drill against kanmon; run it with
// -benchtime=1x (bench/flood-drill.sh does).
func BenchmarkFloodDrillKanmon(b *testing.B) { benchDrill(b, startKanmon) }

// BenchmarkFloodDrillPostfix is the same drill against Postfix.
func BenchmarkFloodDrillPostfix(b *testing.B) { benchDrill(b, startPostfix) }

// TestFloodDrillSmall runs a short drill against the real binary and
// holds kanmon to the drill's targets: every forged bounce refused at
// RCPT, none queued, the queue not grown by them, all ordinary mail
// delivered, and the forgery counter showing the flood.
func TestFloodDrillSmall(t *testing.T) {
	sink, err := StartSink()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	k := startKanmon(t, sink)
	r := Drill(t, k, sink, Settings{Bounces: 2000, Ordinary: 40, Rate: 20, Conns: 10, PerConn: 10})
	t.Log(MarkdownHeader + "\n" + r.Markdown())
	f := r.Flood
	if f.Sent < 2000 || f.RefusedAtRcpt != f.Sent {
		t.Errorf("forged bounces: %d sent, %d refused at RCPT (want all); %d taken, %d other", f.Sent, f.RefusedAtRcpt, f.Accepted, f.TempAtRcpt+f.RefusedEarly+f.Errors)
	}
	if f.Queued != 0 {
		t.Errorf("%d forged bounces were queued", f.Queued)
	}
	if r.OrdinaryDelivered != 40 || r.OrdinaryFailed != 0 {
		t.Errorf("ordinary mail: %d of 40 delivered, %d refused (%s)", r.OrdinaryDelivered, r.OrdinaryFailed, r.FirstError)
	}
	// The ordinary stream may leave a few files in flight; the bounces
	// add none.
	if r.QueueMax-r.QueueStart > 40 {
		t.Errorf("queue grew by %d files during the flood", r.QueueMax-r.QueueStart)
	}
	if r.ForgerySeen < 0 || r.ForgerySeen > time.Minute || r.ForgeryCount < float64(f.RefusedAtRcpt) {
		t.Errorf("forgery counter: moved after %v, last %v (want within a minute, ≥ %d)", r.ForgerySeen, r.ForgeryCount, f.RefusedAtRcpt)
	}
}
