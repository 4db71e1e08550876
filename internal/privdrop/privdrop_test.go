package privdrop

import (
	"errors"
	"os/user"
	"strconv"
	"strings"
	"testing"
)

func TestPlanRefusesRootWithoutRunAs(t *testing.T) {
	_, err := Plan("", 0)
	if !errors.Is(err, ErrRootWithoutRunAs) || !strings.Contains(err.Error(), "run_as") {
		t.Fatalf("Plan(\"\", root) = %v, want a refusal naming run_as", err)
	}
}

func TestPlanRootKeepsRootOnlyWhenAsked(t *testing.T) {
	u, err := Plan(Root, 0)
	if err != nil || u != nil {
		t.Fatalf("Plan(root, root) = %v, %v; want keep, no error", u, err)
	}
}

func TestPlanDropsToNamedUser(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody on this system")
	}
	u, err := Plan("nobody", 0)
	if err != nil || u == nil || strconv.Itoa(u.UID) != nobody.Uid || strconv.Itoa(u.GID) != nobody.Gid {
		t.Fatalf("Plan(nobody, root) = %+v, %v; want uid %s gid %s", u, err, nobody.Uid, nobody.Gid)
	}
}

func TestPlanRefusesUID0Alias(t *testing.T) {
	if _, err := Plan("0", 0); err == nil || !strings.Contains(err.Error(), "uid 0") {
		t.Fatalf("Plan(0, root) = %v, want a refusal", err)
	}
}

func TestPlanUnknownUser(t *testing.T) {
	if _, err := Plan("no-such-user-kanmon-test", 0); err == nil || !strings.Contains(err.Error(), "run_as") {
		t.Fatalf("Plan(unknown) = %v, want an error naming run_as", err)
	}
}

func TestPlanOrdinaryUser(t *testing.T) {
	if u, err := Plan("", 1234); u != nil || err != nil {
		t.Fatalf("Plan(\"\", 1234) = %v, %v; want run as is", u, err)
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody on this system")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	if u, err := Plan("nobody", uid); u != nil || err != nil {
		t.Fatalf("Plan(nobody, as nobody) = %v, %v; want run as is", u, err)
	}
	if _, err := Plan("nobody", uid+1); err == nil || !strings.Contains(err.Error(), "cannot change user") {
		t.Fatalf("Plan(nobody, as another user) = %v, want a refusal", err)
	}
}
