// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Another
// process can take it before the test binds it; prefer listening on port 0
// and passing the listener where the code under test allows it.
func FreePort(tb testing.TB) int {
	tb.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		tb.Fatalf("find free port: %v", err)
	}
	return port
}

// Eventually calls fn until it returns nil and fails the test with fn's last
// error if that does not happen within timeout. The interval between calls
// starts at 10ms and doubles up to 250ms.
func Eventually(tb testing.TB, timeout time.Duration, fn func() error) {
	tb.Helper()
	if err := eventually(timeout, fn); err != nil {
		tb.Fatal(err)
	}
}

func eventually(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for tries := 1; ; tries++ {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("condition not met after %v (%d tries): %w", timeout, tries, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 250*time.Millisecond)
	}
}
