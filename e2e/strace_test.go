package e2e

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// straceCall is one system call of the trace: where it started and where
// it returned (a call cut by another thread's output is printed as
// "<unfinished ...>" and returns on a later "<... resumed>" line).
type straceCall struct {
	tid         string
	name, line  string
	start, done int
}

var (
	straceLine    = regexp.MustCompile(`^(\d+) +(.*)$`)
	straceCallRE  = regexp.MustCompile(`^([a-z0-9_]+)\(`)
	straceResumed = regexp.MustCompile(`^<\.\.\. ([a-z0-9_]+) resumed>`)
)

// parseStrace reads strace -f -o output into calls in order of start.
func parseStrace(t *testing.T, path string) []*straceCall {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var calls []*straceCall
	pending := map[string]*straceCall{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for i := 0; sc.Scan(); i++ {
		m := straceLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		tid, rest := m[1], m[2]
		if r := straceResumed.FindStringSubmatch(rest); r != nil {
			if c := pending[tid]; c != nil && c.name == r[1] {
				c.done = i
				c.line += " " + rest
				delete(pending, tid)
			}
			continue
		}
		n := straceCallRE.FindStringSubmatch(rest)
		if n == nil {
			continue // signals, exits
		}
		c := &straceCall{tid: tid, name: n[1], line: rest, start: i, done: i}
		if strings.HasSuffix(rest, "<unfinished ...>") {
			c.done = -1
			pending[tid] = c
		}
		calls = append(calls, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return calls
}

// ok reports whether the call returned and succeeded.
func (c *straceCall) ok() bool {
	return c.done >= 0 && strings.HasSuffix(strings.TrimSpace(c.line), "= 0")
}

// TestStraceAcceptOrder watches law 1 from outside the process: with the
// server under strace, the queue file is fsynced, then linked (or renamed)
// into msg/, then msg/ is fsynced, and only after that is "250 … queued
// as ID" written to the client. After delivery, the Maildir file and new/
// are fsynced before the message leaves the queue. A missing or reordered
// fsync fails it even though no crash test could notice.
func TestStraceAcceptOrder(t *testing.T) {
	t.Parallel()
	strace := needTool(t, "strace")
	trace := filepath.Join(t.TempDir(), "strace.out")
	s := startServer(t, options{wrap: []string{strace, "-f", "-qq", "-s", "128", "-yy", "-o", trace,
		"-e", "trace=fsync,fdatasync,linkat,renameat,renameat2,unlinkat,write,writev"}})
	id := sendMail(t, s.MX, "bob@remote.test", []string{alice}, message("bob@remote.test", alice, "strace", newMessageID(t), "traced\n"))
	waitMaildir(t, s.Maildir(alice), "traced")
	waitGone(t, s.QueueMsg(id))
	s.Stop(t)

	calls := parseStrace(t, trace)
	find := func(what string, from int, match func(c *straceCall) bool) *straceCall {
		t.Helper()
		for _, c := range calls {
			if c.start >= from && match(c) {
				return c
			}
		}
		var b strings.Builder
		for _, c := range calls {
			if c.name != "write" || !strings.Contains(c.line, "{\"time\"") {
				b.WriteString(c.line + "\n")
			}
		}
		t.Fatalf("strace: no %s after line %d; calls (log writes left out):\n%s", what, from, b.String())
		return nil
	}
	msgPath := "/queue/msg/" + id
	link := find("link or rename of the message into msg/", 0, func(c *straceCall) bool {
		return (c.name == "linkat" || strings.HasPrefix(c.name, "rename")) && strings.Contains(c.line, msgPath+"\"") && c.ok()
	})
	// The file linked: /proc/self/fd/N (O_TMPFILE) or tmp/ID (rename).
	src := regexp.MustCompile(`/proc/self/fd/(\d+)`).FindStringSubmatch(link.line)
	fileSync := find("fsync of the queue file", 0, func(c *straceCall) bool {
		if c.name != "fsync" && c.name != "fdatasync" || !c.ok() || c.done > link.start {
			return false
		}
		if src != nil {
			return strings.HasPrefix(c.line, c.name+"("+src[1]+"<") && strings.Contains(c.line, "/queue/tmp")
		}
		return strings.Contains(c.line, "/queue/tmp/"+id+">")
	})
	dirSync := find("fsync of msg/ after the link", link.done, func(c *straceCall) bool {
		return c.name == "fsync" && strings.Contains(c.line, "/queue/msg>") && c.ok()
	})
	reply := find("the 250 reply", 0, func(c *straceCall) bool {
		return (c.name == "write" || c.name == "writev") && strings.Contains(c.line, "250 2.0.0") && strings.Contains(c.line, id)
	})
	if !(fileSync.done < link.start && link.done < dirSync.start && dirSync.done < reply.start) {
		t.Errorf("law 1 order broken: file fsync (lines %d-%d), link (%d-%d), msg/ fsync (%d-%d), 250 written (%d); want each to finish before the next starts\n%s\n%s\n%s\n%s",
			fileSync.start, fileSync.done, link.start, link.done, dirSync.start, dirSync.done, reply.start,
			fileSync.line, link.line, dirSync.line, reply.line)
	}

	// Delivery: Maildir tmp/ file fsynced, renamed into new/, new/ fsynced,
	// and only then the queue file unlinked.
	unlink := find("unlink of the delivered message", reply.start, func(c *straceCall) bool {
		return c.name == "unlinkat" && strings.Contains(c.line, msgPath+"\"") && c.ok()
	})
	mdRename := find("rename into the Maildir's new/", reply.start, func(c *straceCall) bool {
		return strings.HasPrefix(c.name, "rename") && strings.Contains(c.line, "/alice/new/") && c.ok()
	})
	tmpName := regexp.MustCompile(`/alice/tmp/([^"]+)"`).FindStringSubmatch(mdRename.line)
	if tmpName == nil {
		t.Fatalf("rename into new/ not from tmp/: %s", mdRename.line)
	}
	mdFile := find("fsync of the Maildir file", reply.start, func(c *straceCall) bool {
		return c.name == "fsync" && strings.Contains(c.line, "/alice/tmp/"+tmpName[1]+">") && c.ok()
	})
	mdDir := find("fsync of the Maildir's new/", mdRename.done, func(c *straceCall) bool {
		return c.name == "fsync" && strings.Contains(c.line, "/alice/new>") && c.ok()
	})
	if !(mdFile.done < mdRename.start && mdDir.done < unlink.start) {
		t.Errorf("delivery order broken: Maildir file fsync (%d-%d), rename (%d-%d), new/ fsync (%d-%d), queue unlink (%d)",
			mdFile.start, mdFile.done, mdRename.start, mdRename.done, mdDir.start, mdDir.done, unlink.start)
	}
}

// waitGone waits (at most deliveryWait) until path no longer exists.
func waitGone(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(deliveryWait)
	for {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still there after %s", path, deliveryWait)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
