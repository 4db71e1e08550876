package cli_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"kanmon/internal/scheduler"
)

// TestQueueListAndShowSayWhyHeld: `kanmon queue list` and `show` print
// the hold reason the server gives, so an operator sees that a message
// was held for crashing the server and how to release it.
func TestQueueListAndShowSayWhyHeld(t *testing.T) {
	const reason = "in flight at 2 consecutive unclean stops; release with kanmon queue release qheld1"
	held := scheduler.Info{ID: "qheld1", From: "alice@example.org", Received: time.Now().Add(-time.Minute),
		Origin: "authenticated", Lane: "normal", Size: 42, Held: true, HoldReason: reason, UncleanStops: 2,
		Rcpts: []scheduler.RcptInfo{{Addr: "bob@remote.test", Status: "pending"}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/queue/list":
			json.NewEncoder(w).Encode([]scheduler.Info{held})
		case "/queue/show":
			json.NewEncoder(w).Encode(held)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	admin := strings.TrimPrefix(srv.URL, "http://")

	r := mustRun(t, "", "queue", "list", "--admin", admin)
	if !strings.Contains(r.stdout, "held: "+reason) {
		t.Errorf("queue list does not say why the message is held:\n%s", r.stdout)
	}
	r = mustRun(t, "", "queue", "show", "qheld1", "--admin", admin)
	for _, want := range []string{"held: true", "hold_reason: " + reason, "unclean_stops: 2"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("queue show lacks %q:\n%s", want, r.stdout)
		}
	}
}
