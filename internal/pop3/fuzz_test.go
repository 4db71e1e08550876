package pop3

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"testing"

	"kanmon/internal/maildir"
)

// FuzzCommand checks the command parser's promises on any input: no
// panic; a parsed command has an upper-case letters-only verb, at most
// maxArgs non-empty arguments without spaces or control characters; and a
// PASS or AUTH line never reaches the log with its payload.
func FuzzCommand(f *testing.F) {
	for _, s := range []string{"USER alice@example.com\r\n", "PASS secret with spaces\r\n", "LIST 1\r\n", "TOP 1 10\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, err := parseCommand(line)
		logged := logLine(line)
		trimmed := bytes.TrimLeft(line, " ")
		if len(trimmed) >= 5 {
			head := strings.ToUpper(string(trimmed[:4]))
			if (head == "PASS" || head == "APOP") && !strings.HasSuffix(logged, "[redacted]") {
				t.Fatalf("logLine(%q) = %q: credential not redacted", line, logged)
			}
			if head == "AUTH" {
				payload := bytes.Fields(trimmed)
				if len(payload) >= 3 && strings.Contains(logged, string(payload[2])) && !strings.HasSuffix(logged, "[redacted]") {
					t.Fatalf("logLine(%q) = %q: SASL payload logged", line, logged)
				}
			}
		}
		if err != nil {
			if cmd.verb != "" || cmd.args != nil {
				t.Fatalf("error %v with a command %+v", err, cmd)
			}
			return
		}
		if cmd.verb == "" || len(cmd.verb) > maxVerbLen {
			t.Fatalf("verb %q", cmd.verb)
		}
		for _, c := range []byte(cmd.verb) {
			if c < 'A' || c > 'Z' {
				t.Fatalf("verb %q not upper-case letters", cmd.verb)
			}
		}
		if len(cmd.args) > maxArgs {
			t.Fatalf("%d args", len(cmd.args))
		}
		for _, a := range cmd.args {
			if a == "" || strings.ContainsAny(a, " \r\n\x00\t") {
				t.Fatalf("argument %q", a)
			}
			if n, ok := parseNumber(a); ok && strings.TrimLeft(a, "0") != strings.TrimLeft(strconv.Itoa(n), "0") {
				t.Fatalf("parseNumber(%q) = %d", a, n)
			}
		}
		if strings.ContainsAny(cmd.rest, "\r\n\x00") {
			t.Fatalf("rest %q has a control character", cmd.rest)
		}
		var fields []string
		for _, f := range strings.Split(cmd.rest, " ") {
			if f != "" {
				fields = append(fields, f)
			}
		}
		if strings.Join(fields, " ") != strings.Join(cmd.args, " ") {
			t.Fatalf("args %q do not match rest %q", cmd.args, cmd.rest)
		}
	})
}

// normalize is the reference for what a client receives: every LF
// preceded by CR, and a final CRLF when missing.
func normalize(data []byte) []byte {
	var out []byte
	for i, c := range data {
		if c == '\n' && (i == 0 || data[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\r', '\n')
	}
	return out
}

// unstuff undoes RFC 1939 byte-stuffing of a body without its terminator
// and reports whether a line consisting of "." alone (a premature end)
// appears.
func unstuff(body []byte) ([]byte, bool) {
	var out []byte
	early := false
	for len(body) > 0 {
		i := bytes.Index(body, []byte("\r\n"))
		line := body
		if i >= 0 {
			line = body[:i+2]
		}
		body = body[len(line):]
		if string(line) == ".\r\n" {
			early = true
		}
		if len(line) > 0 && line[0] == '.' {
			line = line[1:]
		}
		out = append(out, line...)
	}
	return out, early
}

func stream(t *testing.T, data []byte, bufSize, bodyLines int) ([]byte, int64) {
	t.Helper()
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	sent, err := writeMessage(w, bufio.NewReaderSize(nil, bufSize), bytes.NewReader(data), bodyLines)
	if err != nil {
		t.Fatal(err)
	}
	w.Flush()
	return out.Bytes(), sent
}

// FuzzMessageStream checks writeMessage against the reference: after
// unstuffing, the body is the normalised message, its size is what
// maildir.WireSize announced, no line ends the response early, and TOP
// sends a prefix of RETR. A 16-octet buffer puts chunk boundaries
// everywhere.
func FuzzMessageStream(f *testing.F) {
	for _, s := range []string{"", "a", ".", "\r", "\n", "\r\n.\r\n", "Subject: x\n\n.\n..\nbody\n", "h: v\r\n\r\nl1\r\nl2\r\nl3", strings.Repeat("x", 40) + "\r\n.\r"} {
		f.Add([]byte(s), int8(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, top int8) {
		out, sent := stream(t, data, 16, -1)
		if !bytes.HasSuffix(out, []byte(".\r\n")) {
			t.Fatalf("no terminator: %q", out)
		}
		body := out[:len(out)-3]
		got, early := unstuff(body)
		if early {
			t.Fatalf("premature end in %q", out)
		}
		want := normalize(data)
		if !bytes.Equal(got, want) {
			t.Fatalf("writeMessage(%q) unstuffed = %q, want %q", data, got, want)
		}
		size, err := maildir.WireSize(bytes.NewReader(data))
		if err != nil || size != int64(len(want)) || sent != size {
			t.Fatalf("WireSize = %d, %v; sent %d; want %d", size, err, sent, len(want))
		}
		big, _ := stream(t, data, 4096, -1)
		if !bytes.Equal(big, out) {
			t.Fatalf("output depends on the buffer size: %q vs %q", big, out)
		}
		if top >= 0 {
			part, _ := stream(t, data, 16, int(top))
			if !bytes.HasPrefix(body, part[:len(part)-3]) {
				t.Fatalf("TOP %d = %q is not a prefix of %q", top, part, out)
			}
		}
	})
}

func TestWriteMessageTop(t *testing.T) {
	msg := "A: 1\r\nB: 2\n\nl1\r\n.l2\nl3\r\nl4\r\n"
	for _, tc := range []struct {
		lines int
		want  string
	}{
		{0, "A: 1\r\nB: 2\r\n\r\n.\r\n"},
		{1, "A: 1\r\nB: 2\r\n\r\nl1\r\n.\r\n"},
		{2, "A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n"},
		{100, "A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\nl3\r\nl4\r\n.\r\n"},
		{-1, "A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\nl3\r\nl4\r\n.\r\n"},
	} {
		for _, size := range []int{16, 4096} {
			if got, _ := stream(t, []byte(msg), size, tc.lines); string(got) != tc.want {
				t.Errorf("TOP %d (buffer %d) = %q, want %q", tc.lines, size, got, tc.want)
			}
		}
	}
	// A header without an empty line: TOP sends it all.
	if got, _ := stream(t, []byte("A: 1\r\nB: 2"), 16, 0); string(got) != "A: 1\r\nB: 2\r\n.\r\n" {
		t.Errorf("header only: %q", got)
	}
}

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		verb string
		args []string
		rest string
		err  bool
	}{
		{"user alice\r\n", "USER", []string{"alice"}, "alice", false},
		{"PASS  two  spaces \r\n", "PASS", []string{"two", "spaces"}, " two  spaces ", false},
		{"STAT\n", "STAT", nil, "", false},
		{"TOP 1 10", "TOP", []string{"1", "10"}, "1 10", false},
		{"\r\n", "", nil, "", true},
		{" STAT\r\n", "", nil, "", true},
		{"ST4T\r\n", "", nil, "", true},
		{"STAT\tx\r\n", "", nil, "", true},
		{"USER a\x00b\r\n", "", nil, "", true},
		{"A B C D E F G H I J\r\n", "", nil, "", true},
		{"PASS pässwörd\r\n", "PASS", []string{"pässwörd"}, "pässwörd", false},
	} {
		cmd, err := parseCommand([]byte(tc.in))
		if (err != nil) != tc.err || cmd.verb != tc.verb || strings.Join(cmd.args, "|") != strings.Join(tc.args, "|") || cmd.rest != tc.rest {
			t.Errorf("parseCommand(%q) = %+v, %v", tc.in, cmd, err)
		}
	}
	for in, want := range map[string]string{
		"PASS secret\r\n":                 "PASS [redacted]",
		"pass\tsecret\r\n":                "PASS [redacted]",
		"AUTH PLAIN AGFsaWNlAHNlY3JldA==": "AUTH PLAIN [redacted]",
		"AUTH PLAIN\r\n":                  "AUTH PLAIN",
		"auth\x00PLAIN secret":            "AUTH [redacted]",
		"APOP alice 0123456789abcdef":     "APOP [redacted]",
		"USER alice\r\n":                  "USER alice",
	} {
		if got := logLine([]byte(in)); got != want {
			t.Errorf("logLine(%q) = %q, want %q", in, got, want)
		}
	}
}
