package trace

import "io"

// ScanLog calls fn for every JSON object line of kanmon's log r (the same
// reader `kanmon trace` uses: lines over its bound and lines that are not
// JSON objects are skipped and counted). raw is the line as read; fn may
// keep it.
func ScanLog(r io.Reader, fn func(m map[string]any, raw []byte)) (skipped int, err error) {
	err = scanLog(r, func(_ int, m map[string]any, raw []byte) { fn(m, raw) }, &skipped)
	return skipped, err
}
