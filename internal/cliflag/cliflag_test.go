package cliflag

import (
	"flag"
	"io"
	"reflect"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		pos     []string
		config  string
		verbose bool
	}{
		{[]string{"add", "a@b", "--config", "f"}, []string{"add", "a@b"}, "f", false},
		{[]string{"--config", "f", "add", "-v", "a@b"}, []string{"add", "a@b"}, "f", true},
		{[]string{"x", "--", "-v"}, []string{"x", "-v"}, "", false},
		{nil, nil, "", false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		cfg := fs.String("config", "", "")
		v := fs.Bool("v", false, "")
		pos, err := Parse(fs, tc.args)
		if err != nil || !reflect.DeepEqual(pos, tc.pos) || *cfg != tc.config || *v != tc.verbose {
			t.Errorf("Parse(%q) = %q, %v (config %q, v %v)", tc.args, pos, err, *cfg, *v)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := Parse(fs, []string{"a", "--nope"}); err == nil {
		t.Error("unknown flag accepted")
	}
}
