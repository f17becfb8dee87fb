// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package testutil

import (
	"fmt"
	"runtime"
	"testing"
)

// NetNS is a network namespace; outside Linux it has no implementation.
type NetNS struct{}

// NewNetNS skips the test (or fails it, see RequirePrivileged) outside Linux.
func NewNetNS(tb testing.TB) *NetNS {
	tb.Helper()
	skipOrFail(tb, privilegeRequired(), "network namespaces need Linux, running "+runtime.GOOS)
	return &NetNS{}
}

// FD returns -1 outside Linux.
func (*NetNS) FD() int { return -1 }

// Path returns "" outside Linux.
func (*NetNS) Path() string { return "" }

// Do returns ErrNotSupported outside Linux.
func (*NetNS) Do(func() error) error {
	return fmt.Errorf("run in network namespace: %w", ErrNotSupported)
}
