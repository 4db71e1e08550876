package trace

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// ScanLog calls fn for every JSON object line of kanmon's log r (the same
// reader `kanmon trace` uses: lines over its bound and lines that are not
// JSON objects are skipped and counted). raw is the line as read; fn may
// keep it.
func ScanLog(r io.Reader, fn func(m map[string]any, raw []byte)) (skipped int, err error) {
	err = scanLog(r, func(_ int, m map[string]any, raw []byte) { fn(m, raw) }, &skipped)
	return skipped, err
}

// ScanLogFiltered is ScanLog for a reader that wants few lines: a line
// keep refuses (looking at its raw text) is not decoded at all, which
// makes a pass over a large log several times faster. lines counts every
// non-empty line read; skipped only the lines that were kept and were not
// JSON objects, and the lines over the bound.
func ScanLogFiltered(r io.Reader, keep func(raw []byte) bool, fn func(m map[string]any, raw []byte)) (lines, skipped int, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, tooLong, err := readLogLine(br)
		if len(line) > 0 || tooLong {
			lines++
			switch {
			case tooLong:
				skipped++
			case !keep(line):
			default:
				if m := parseObject(line); m != nil {
					fn(m, line)
				} else if len(bytes.TrimSpace(line)) > 0 {
					skipped++
				}
			}
		}
		if err == io.EOF {
			return lines, skipped, nil
		}
		if err != nil {
			return lines, skipped, fmt.Errorf("trace: reading the log: %w", err)
		}
	}
}
