package trace

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestMain(t *testing.T) {
	logData, err := os.ReadFile("testdata/kanmon.log")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := os.ReadFile("testdata/forged-domain.eml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		stdin []byte
		want  int
		out   string
		err   string
	}{
		{"story from file", []string{"trace", "c3", "--log", "testdata/kanmon.log"}, nil, ExitOK, "authenticated as alice", ""},
		{"flag first", []string{"--log=testdata/kanmon.log", "q1"}, nil, ExitOK, "Story of q1", ""},
		{"story from stdin", []string{"trace", "<m2@sender.example>"}, logData, ExitOK, "queued from <evil@sender.example>", ""},
		{"story from dash", []string{"trace", "q2", "--log", "-"}, logData, ExitOK, "failed", ""},
		{"not found", []string{"trace", "zzz", "--log", "testdata/kanmon.log"}, nil, ExitNotFound, "", "no log line mentions"},
		{"missing log", []string{"trace", "c1", "--log", "testdata/nope.log"}, nil, ExitError, "", "no such file"},
		{"no id", []string{"trace"}, nil, ExitError, "", "exactly one ID"},
		{"two ids", []string{"trace", "a", "b"}, nil, ExitError, "", "exactly one ID"},
		{"received", []string{"trace", "--received", "testdata/forged-domain.eml", "--ours", "kanmon.example,198.51.100.0/28"}, nil, ExitOK, "Likely origin: bot-7.isp.example [203.0.113.200]", ""},
		{"received stdin", []string{"trace", "--received", "-", "--ours", "kanmon.example"}, msg, ExitOK, "FORGED?", ""},
		{"received without ours", []string{"trace", "--received", "testdata/forged-domain.eml"}, nil, ExitOK, "did not pass through them", "no --ours given"},
		{"received with id", []string{"trace", "c1", "--received", "testdata/forged-domain.eml"}, nil, ExitError, "", "takes no ID"},
		{"received missing", []string{"trace", "--received", "testdata/nope.eml"}, nil, ExitError, "", "no such file"},
		{"bad flag", []string{"trace", "--lgo", "x"}, nil, ExitError, "", "flag provided but not defined"},
		{"help", []string{"trace", "-h"}, nil, ExitOK, "", "usage:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			got := Main(tc.args, bytes.NewReader(tc.stdin), &stdout, &stderr)
			if got != tc.want {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", got, tc.want, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.out) {
				t.Errorf("stdout lacks %q:\n%s", tc.out, stdout.String())
			}
			if !strings.Contains(stderr.String(), tc.err) {
				t.Errorf("stderr lacks %q:\n%s", tc.err, stderr.String())
			}
		})
	}
}
