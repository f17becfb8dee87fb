// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package testutil

import (
	"fmt"
	"runtime"
	"testing"
)

func privilegeProblem() string {
	return "privileged test needs Linux, running " + runtime.GOOS
}

// Cgroup2Path returns ErrNotSupported outside Linux.
func Cgroup2Path() (string, error) {
	return "", fmt.Errorf("find cgroup2 mount: %w", ErrNotSupported)
}

// MountBPFFS skips the test (or fails it, see RequirePrivileged) outside
// Linux.
func MountBPFFS(tb testing.TB) string {
	tb.Helper()
	skipOrFail(tb, privilegeRequired(), "bpffs needs Linux, running "+runtime.GOOS)
	return ""
}

// TempCgroup skips the test (or fails it, see RequirePrivileged) outside
// Linux.
func TempCgroup(tb testing.TB) string {
	tb.Helper()
	skipOrFail(tb, privilegeRequired(), "cgroup v2 needs Linux, running "+runtime.GOOS)
	return ""
}

// RunningKernel returns ErrNotSupported outside Linux.
func RunningKernel() (KernelVersion, error) {
	return KernelVersion{}, fmt.Errorf("read kernel version: %w", ErrNotSupported)
}
