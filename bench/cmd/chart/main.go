// Command chart draws the comparison's chart: accepted and end-to-end
// messages per second against concurrent sessions, one line per server,
// from the TSV that compare.sh writes (server, shape, sessions, round,
// accepted/s, end-to-end/s, ...), medians over rounds, 1 KiB shape.
package main

import (
	"bufio"
	"flag"
	"log"
	"os"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

func main() {
	in := flag.String("in", "runs.tsv", "runs from compare.sh")
	out := flag.String("out", "throughput.svg", "chart file (.svg or .png)")
	shape := flag.String("shape", "1k", "load shape to draw")
	flag.Parse()
	f, err := os.Open(*in)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	// vals[server+" "+what][sessions] = values over rounds
	vals := map[string]map[float64][]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if len(c) < 6 || c[1] != *shape {
			continue
		}
		s, err1 := strconv.ParseFloat(c[2], 64)
		acc, err2 := strconv.ParseFloat(c[4], 64)
		e2e, err3 := strconv.ParseFloat(c[5], 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue // header
		}
		for what, v := range map[string]float64{"accepted": acc, "end to end": e2e} {
			k := c[0] + " " + what
			if vals[k] == nil {
				vals[k] = map[float64][]float64{}
			}
			vals[k][s] = append(vals[k][s], v)
		}
	}
	p := plot.New()
	p.Title.Text = "messages per second against concurrent sessions (" + *shape + ", medians)"
	p.X.Label.Text = "sessions"
	p.Y.Label.Text = "msg/s"
	var args []any
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		var pts plotter.XYs
		xs := make([]float64, 0, len(vals[k]))
		for x := range vals[k] {
			xs = append(xs, x)
		}
		slices.Sort(xs)
		for _, x := range xs {
			v := vals[k][x]
			slices.Sort(v)
			pts = append(pts, plotter.XY{X: x, Y: v[len(v)/2]})
		}
		args = append(args, k, pts)
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		log.Fatal(err)
	}
	if err := p.Save(8*vg.Inch, 5*vg.Inch, *out); err != nil {
		log.Fatal(err)
	}
}
