package remote

import (
	"testing"

	"kanmon/internal/queue"
)

type prefixTagger struct{}

func (prefixTagger) Sender(from string) string { return "prvs=tagged=" + from }

// The envelope sender sent to other servers is tagged for our own users'
// mail only: never for mail from outside (backup MX) or our DSNs.
func TestMailFromTagsOwnUsersOnly(t *testing.T) {
	r := &Remote{Tagger: prefixTagger{}}
	for _, c := range []struct {
		origin queue.Origin
		from   string
		want   string
	}{
		{queue.OriginAuthenticated, "alice@example.org", "prvs=tagged=alice@example.org"},
		{queue.OriginTrusted, "app@example.org", "prvs=tagged=app@example.org"},
		{queue.OriginPopBeforeSMTP, "bob@example.org", "prvs=tagged=bob@example.org"},
		{queue.OriginInbound, "someone@remote.test", "someone@remote.test"},
		{queue.OriginLocal, "", ""},
	} {
		env := &queue.Envelope{From: c.from, Origin: c.origin}
		if got := r.mailFrom(env); got != c.want {
			t.Errorf("%s %q: MAIL FROM %q, want %q", c.origin, c.from, got, c.want)
		}
	}
	if got := (&Remote{}).mailFrom(&queue.Envelope{From: "alice@example.org", Origin: queue.OriginAuthenticated}); got != "alice@example.org" {
		t.Errorf("without a tagger: %q", got)
	}
}
