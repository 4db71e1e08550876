package flooddrill

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TreeCPU returns the CPU time (user+system) used so far by the process
// pid and every process under it, counting the children they have
// already reaped (cutime/cstime): Postfix's master reaps its smtpd and
// delivery agents, so their time stays counted after they exit.
func TreeCPU(pid int) (time.Duration, error) {
	children := map[int][]int{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("treecpu: %w", err)
	}
	ticks := map[int]int64{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, t, err := procStat(p)
		if err != nil {
			continue // gone meanwhile
		}
		children[ppid] = append(children[ppid], p)
		ticks[p] = t
	}
	if _, ok := ticks[pid]; !ok {
		return 0, fmt.Errorf("treecpu: process %d not found", pid)
	}
	var total int64
	todo := []int{pid}
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		total += ticks[p]
		todo = append(todo, children[p]...)
	}
	// Linux reports these fields in USER_HZ, 100 on every supported
	// architecture.
	return time.Duration(total) * 10 * time.Millisecond, nil
}

// procStat reads a process's parent and utime+stime+cutime+cstime.
func procStat(pid int) (ppid int, ticks int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces; fields start after its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("stat %d: malformed", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("stat %d: short", pid)
	}
	ppid, _ = strconv.Atoi(f[1])
	for _, k := range f[11:15] { // utime stime cutime cstime
		v, _ := strconv.ParseInt(k, 10, 64)
		ticks += v
	}
	return ppid, ticks, nil
}

// QueueSampler counts the files under some queue directories every
// interval and keeps the largest count seen.
type QueueSampler struct {
	mu    sync.Mutex
	max   int
	first int
	last  int
	stop  chan struct{}
	done  chan struct{}
}

// SampleQueue starts sampling dirs.
func SampleQueue(dirs []string, every time.Duration) *QueueSampler {
	q := &QueueSampler{stop: make(chan struct{}), done: make(chan struct{})}
	q.first = countFiles(dirs)
	q.max, q.last = q.first, q.first
	go func() {
		defer close(q.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-q.stop:
				return
			case <-t.C:
				n := countFiles(dirs)
				q.mu.Lock()
				q.last = n
				if n > q.max {
					q.max = n
				}
				q.mu.Unlock()
			}
		}
	}()
	return q
}

// Stop ends sampling and returns the count at start, the largest and the
// last.
func (q *QueueSampler) Stop() (first, max, last int) {
	close(q.stop)
	<-q.done
	return q.first, q.max, q.last
}

func countFiles(dirs []string) int {
	n := 0
	for _, d := range dirs {
		filepath.WalkDir(d, func(_ string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				n++
			}
			return nil
		})
	}
	return n
}

// MetricWatch polls a Prometheus text endpoint for one series and notes
// when its value first reached at least min.
type MetricWatch struct {
	mu      sync.Mutex
	seenAt  time.Duration
	value   float64
	started time.Time
}

// WatchMetric polls url every interval until ctx ends, for the series
// whose line starts with series (name and labels as printed).
func WatchMetric(ctx context.Context, url, series string, min float64, every time.Duration) *MetricWatch {
	w := &MetricWatch{started: time.Now(), seenAt: -1}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if v, ok := scrape(ctx, url, series); ok {
				w.mu.Lock()
				w.value = v
				if w.seenAt < 0 && v >= min {
					w.seenAt = time.Since(w.started)
				}
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// Result returns when the series first reached min (negative: never) and
// its last value.
func (w *MetricWatch) Result() (time.Duration, float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seenAt, w.value
}

func scrape(ctx context.Context, url, series string) (float64, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// Latencies returns the submission-to-delivery time of every ordinary
// message that was both sent and delivered, sorted, and how many sent
// messages never arrived.
func Latencies(sent []time.Time, arrived map[int]time.Time) (lat []time.Duration, missing int) {
	for i, t := range sent {
		if t.IsZero() {
			continue
		}
		a, ok := arrived[i]
		if !ok {
			missing++
			continue
		}
		lat = append(lat, a.Sub(t))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat, missing
}

// Percentile returns the p-th percentile (0..100) of sorted durations.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}
