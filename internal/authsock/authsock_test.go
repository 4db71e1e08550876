package authsock

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kanmon/internal/auth"
)

type fakeAuth struct{ remote netip.Addr }

func (f *fakeAuth) Authenticate(_ context.Context, user, pass string, remote netip.Addr) (string, error) {
	f.remote = remote
	switch {
	case pass == "throttle":
		return "", auth.ErrThrottled
	case strings.EqualFold(user, "Alice@Example.org") && pass == "right":
		return "alice@example.org", nil
	}
	return "", auth.ErrInvalid
}

func serve(t *testing.T, allowed bool) (string, *fakeAuth) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	fa := &fakeAuth{}
	s := &Server{Auth: fa, Allowed: func(uint32) bool { return allowed }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return path, fa
}

func TestAskAnswers(t *testing.T) {
	path, fa := serve(t, true)
	for _, c := range []struct {
		pass    string
		want    Result
		account string
	}{{"right", OK, "alice@example.org"}, {"wrong", No, ""}, {"throttle", Temp, "throttled"}} {
		res, acct, err := Ask(path, Request{Service: "imap", Remote: "192.0.2.7", User: "Alice@Example.org", Password: c.pass}, 5*time.Second)
		if err != nil || res != c.want || acct != c.account {
			t.Errorf("password %q: %v %q %v, want %v %q", c.pass, res, acct, err, c.want, c.account)
		}
	}
	if fa.remote != netip.MustParseAddr("192.0.2.7") {
		t.Errorf("the throttle saw %v, want the client address 192.0.2.7", fa.remote)
	}
}

func TestPeerNotAllowed(t *testing.T) {
	path, _ := serve(t, false)
	if res, _, _ := Ask(path, Request{User: "alice@example.org", Password: "right"}, 5*time.Second); res != No {
		t.Errorf("a Unix user not in [checkpassword] users got %v, want No", res)
	}
}

func TestRequestBounded(t *testing.T) {
	long := bytes.Repeat([]byte("A"), MaxRequest+10)
	if _, err := readRequest(bytes.NewReader(long)); err == nil {
		t.Error("a request over MaxRequest was read")
	}
	r := Request{Service: "im\tap", Remote: "1.2.3.4\n", User: "a\tb", Password: "p\x00w\n"}
	got, err := readRequest(bytes.NewReader(r.encode()))
	if err != nil || got.User != r.User || got.Password != r.Password || got.Service != "im_ap" || got.Remote != "1.2.3.4_" {
		t.Errorf("round trip: %+v, %v", got, err)
	}
}
