// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func nsID(t *testing.T, path string) string {
	t.Helper()
	id, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Not parallel: it checks that every thread of the process is back in the
// host namespace, which a concurrent Do would break.
func TestNetNS(t *testing.T) {
	RequirePrivileged(t)
	host := nsID(t, "/proc/self/ns/net")
	ns := NewNetNS(t)

	var inside string
	var ifaces []net.Interface
	err := ns.Do(func() error {
		inside = nsID(t, "/proc/thread-self/ns/net")
		var err error
		ifaces, err = net.Interfaces()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside == host {
		t.Fatalf("Do ran in the host namespace %s", host)
	}
	if got := nsID(t, ns.Path()); got != inside {
		t.Errorf("Path() names %s; want %s", got, inside)
	}
	if len(ifaces) != 1 || ifaces[0].Name != "lo" {
		t.Errorf("interfaces in the namespace: %v; want only lo", ifaces)
	} else if ifaces[0].Flags&net.FlagUp == 0 {
		t.Errorf("lo is down: %v", ifaces[0].Flags)
	}

	// A listener opened inside stays there: the host cannot reach it.
	var ln net.Listener
	err = ns.Do(func() error {
		var err error
		ln, err = (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	assertUnreachable(t, ln)

	// A process started inside Do runs in the namespace.
	if readlink, err := exec.LookPath("readlink"); err == nil {
		var out []byte
		err := ns.Do(func() error {
			var err error
			out, err = exec.CommandContext(t.Context(), readlink, "/proc/self/ns/net").Output()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != inside {
			t.Errorf("child process in %s; want %s", got, inside)
		}
	}

	// Every thread of the test binary is back in the host namespace.
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		id, err := os.Readlink(task)
		if err != nil {
			continue // the thread exited
		}
		if id != host {
			t.Errorf("%s is %s after Do; want the host's %s", task, id, host)
		}
	}
}

// assertUnreachable checks that a connection from the host namespace to ln's
// address does not arrive at ln.
func assertUnreachable(t *testing.T, ln net.Listener) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return // refused: nothing listens there in the host namespace
	}
	defer conn.Close()
	// Something in the host happens to listen on that port; make sure it is
	// not ln.
	if err := ln.(*net.TCPListener).SetDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Errorf("the host reached a listener inside the namespace at %s", ln.Addr())
	}
}

func TestNetNSDoError(t *testing.T) {
	RequirePrivileged(t)
	ns := NewNetNS(t)
	errWant := errors.New("from fn")
	if err := ns.Do(func() error { return errWant }); !errors.Is(err, errWant) {
		t.Errorf("Do = %v; want %v", err, errWant)
	}
	if err := ns.close(); err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(func() error { return nil }); err == nil {
		t.Error("Do on a closed namespace succeeded")
	}
}
