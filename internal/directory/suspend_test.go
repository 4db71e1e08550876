package directory_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"kanmon/internal/directory"
)

// A suspension survives reopening the database, and another process's
// unsuspend reaches an open directory.
func TestSuspendPersists(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kanmon.db")
	d, err := directory.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AddUser(ctx, "alice@example.org", "x"); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Suspended("alice@example.org"); ok {
		t.Fatal("a new account is suspended")
	}
	if err := d.Suspend(ctx, "Alice@example.org", "rate: 3x messages_per_hour"); err != nil {
		t.Fatal(err)
	}
	if err := d.Suspend(ctx, "alice@example.org", "second reason"); err != nil {
		t.Fatal(err)
	}
	if err := d.Suspend(ctx, "nobody@example.org", ""); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("suspending a missing account: %v, want ErrNotFound", err)
	}
	d.Close()

	d2, err := directory.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if r, ok := d2.Suspended("alice@example.org"); !ok || r != "rate: 3x messages_per_hour" {
		t.Fatalf("after reopening: suspended=%v reason=%q, want the first reason", ok, r)
	}
	if err := d2.Unsuspend(ctx, "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if _, ok := d2.Suspended("alice@example.org"); ok {
		t.Fatal("still suspended after Unsuspend")
	}
}
