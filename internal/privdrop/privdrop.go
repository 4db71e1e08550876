// Package privdrop decides whom `kanmon serve` runs as and changes its
// credentials: started as root, it binds its ports and opens its files,
// then becomes the configured unprivileged user for good.
//
// SECURITY: the server parses strangers' input; as root, one memory bug
// would be the whole machine. Without a user to run as, root is refused
// rather than kept. On Linux, Go applies setgroups, setgid and setuid to
// every thread of the process (since Go 1.16), so no thread keeps root;
// Drop checks the result rather than trusting it. The change cannot be
// undone: the saved set-user-ID is changed too.
package privdrop

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"syscall"
)

// Root is the name of the superuser; run_as = "root" is the explicit
// choice to keep root (throwaway test machines only).
const Root = "root"

// User is an account to run as.
type User struct {
	Name   string
	UID    int
	GID    int
	Groups []int // supplementary groups
}

// Lookup finds a user by name or numeric id in the system's user database.
func Lookup(name string) (User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			u, err = user.LookupId(name)
		}
	}
	if err != nil {
		return User{}, fmt.Errorf("privdrop: user %q: %w", name, err)
	}
	out := User{Name: u.Username}
	if out.UID, err = strconv.Atoi(u.Uid); err != nil {
		return User{}, fmt.Errorf("privdrop: user %q: uid %q: %w", name, u.Uid, err)
	}
	if out.GID, err = strconv.Atoi(u.Gid); err != nil {
		return User{}, fmt.Errorf("privdrop: user %q: gid %q: %w", name, u.Gid, err)
	}
	gids, err := u.GroupIds()
	if err != nil {
		// Without the group list the user runs with its primary group
		// only: less access, never more.
		gids = []string{u.Gid}
	}
	for _, g := range gids {
		if n, err := strconv.Atoi(g); err == nil {
			out.Groups = append(out.Groups, n)
		}
	}
	return out, nil
}

// ErrRootWithoutRunAs is the refusal to serve as root with no user to
// become. Its text names the key.
var ErrRootWithoutRunAs = errors.New(`refusing to serve as root: set run_as = "kanmon" (an unprivileged user) in the config; ` +
	`kanmon then binds its ports and opens its files as root and serves as that user`)

// Plan decides, before anything is opened, whom the process will serve
// as. euid is the current effective uid and runAs the config's run_as.
// It returns the user to drop to (nil: keep the current credentials).
func Plan(runAs string, euid int) (*User, error) {
	if euid == 0 {
		switch runAs {
		case "":
			return nil, ErrRootWithoutRunAs
		case Root:
			return nil, nil
		}
		u, err := Lookup(runAs)
		if err != nil {
			return nil, fmt.Errorf("run_as: %w", err)
		}
		if u.UID == 0 {
			return nil, fmt.Errorf("run_as = %q: that user has uid 0; name an unprivileged user", runAs)
		}
		return &u, nil
	}
	if runAs == "" {
		return nil, nil
	}
	u, err := Lookup(runAs)
	if err != nil {
		return nil, fmt.Errorf("run_as: %w", err)
	}
	if u.UID != euid {
		return nil, fmt.Errorf("run_as = %q (uid %d), but kanmon was started as uid %d, which cannot change user: start it as root or as %s",
			runAs, u.UID, euid, u.Name)
	}
	return nil, nil
}

// Drop makes u the real, effective and saved user and group of every
// thread, with u's supplementary groups, and checks that root is gone.
func Drop(u User) error {
	if err := syscall.Setgroups(u.Groups); err != nil {
		return fmt.Errorf("privdrop: setgroups %v for %s: %w", u.Groups, u.Name, err)
	}
	if err := syscall.Setresgid(u.GID, u.GID, u.GID); err != nil {
		return fmt.Errorf("privdrop: setresgid %d for %s: %w", u.GID, u.Name, err)
	}
	if err := syscall.Setresuid(u.UID, u.UID, u.UID); err != nil {
		return fmt.Errorf("privdrop: setresuid %d for %s: %w", u.UID, u.Name, err)
	}
	if syscall.Getuid() != u.UID || syscall.Geteuid() != u.UID || syscall.Getgid() != u.GID || syscall.Getegid() != u.GID {
		return fmt.Errorf("privdrop: credentials of %s did not take (uid %d/%d gid %d/%d)", u.Name,
			syscall.Getuid(), syscall.Geteuid(), syscall.Getgid(), syscall.Getegid())
	}
	// Going back must fail; if it works, the saved uid still held root.
	if u.UID != 0 && syscall.Setreuid(-1, 0) == nil {
		return fmt.Errorf("privdrop: %s could become root again", u.Name)
	}
	return nil
}
