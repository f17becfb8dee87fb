// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// NetNS is a network namespace owned by one test. The design follows
// cilium/ebpf's internal/testutils: the namespace is created, and entered,
// only by a dedicated goroutine locked to its OS thread, so the test's own
// threads never change namespace, and a thread that cannot be restored to the
// host namespace is left locked so that the Go runtime terminates it instead
// of reusing it.
type NetNS struct {
	f *os.File
}

// NewNetNS creates a network namespace with only a loopback interface, which
// it brings up. The namespace lives until the test's Cleanup closes the last
// handle to it (and every process started inside it has exited). Call
// RequirePrivileged first.
func NewNetNS(tb testing.TB) *NetNS {
	tb.Helper()
	ns, err := newNetNS()
	if err != nil {
		tb.Fatalf("create network namespace: %v", err)
	}
	tb.Cleanup(func() {
		if err := ns.close(); err != nil {
			tb.Errorf("close network namespace: %v", err)
		}
	})
	return ns
}

// FD returns a file descriptor of the namespace, for setns(2) or
// netlink.NewHandleAt. It stays valid until the test ends.
func (ns *NetNS) FD() int {
	return int(ns.f.Fd())
}

// Path returns a path that names the namespace, such as nsenter --net= and
// netns.GetFromPath accept. It stays valid until the test ends.
func (ns *NetNS) Path() string {
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), ns.f.Fd())
}

// Do runs fn on a new goroutine, locked to its OS thread, inside the
// namespace, and returns fn's error. The caller's thread never changes
// namespace. Sockets that fn opens stay in the namespace after Do returns,
// and processes that fn starts with os/exec start inside it.
//
// Goroutines that fn starts do not run in the namespace, and fn must not call
// runtime.UnlockOSThread.
func (ns *NetNS) Do(fn func() error) error {
	if ns.f == nil {
		return errors.New("run in network namespace: namespace is closed")
	}
	return onLockedThread(func() error {
		if err := unix.Setns(int(ns.f.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("enter network namespace: %w", err)
		}
		return fn()
	})
}

func newNetNS() (*NetNS, error) {
	var f *os.File
	err := onLockedThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		var err error
		if f, err = threadNetNS(); err != nil {
			return err
		}
		return setLinkUp("lo")
	})
	if err != nil {
		if f != nil {
			_ = f.Close()
		}
		return nil, err
	}
	return &NetNS{f: f}, nil
}

func (ns *NetNS) close() error {
	if ns.f == nil {
		return nil
	}
	err := ns.f.Close()
	ns.f = nil
	return err
}

// onLockedThread runs fn on a new goroutine locked to its OS thread and then
// moves the thread back to the network namespace it started in. If that move
// fails the goroutine exits still locked, so the runtime terminates the
// thread rather than hand a goroutine a thread in the wrong namespace.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := threadNetNS()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()

		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("restore network namespace (terminating OS thread): %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// threadNetNS opens the network namespace of the calling OS thread.
func threadNetNS() (*os.File, error) {
	f, err := os.OpenFile("/proc/thread-self/ns/net", os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open thread network namespace: %w", err)
	}
	return f, nil
}

// setLinkUp sets IFF_UP on the named interface of the calling thread's
// network namespace.
func setLinkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("set %s up: socket: %w", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: get flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: set flags: %w", name, err)
	}
	return nil
}
