package auth

import (
	"context"
	"testing"
)

// TestAuthenticateCacheKeepsEveryAccount: the cache is emptied only when
// it is at its bound, so several accounts that log in stay cached side by
// side (a cache emptied before every insert would make each login of a
// busy server a full argon2id verification).
func TestAuthenticateCacheKeepsEveryAccount(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	users := []string{testUser, "bob@example.org", "carol@example.org"}
	for _, u := range users[1:] {
		st.set(u, mustHash(t, testPass))
	}
	a := New(st, nil)
	for _, u := range users {
		if _, err := a.Authenticate(context.Background(), u, testPass, client); err != nil {
			t.Fatalf("Authenticate(%s): %v", u, err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, u := range users {
		if _, ok := a.cache[u]; !ok {
			t.Errorf("%s is not cached after its login; cache holds %d entries, want %d", u, len(a.cache), len(users))
		}
	}
}
