// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// RequireEnv names the environment variable that turns the skips of
// RequirePrivileged and SkipOnOldKernel into failures. .ci/run sets it to 1.
const RequireEnv = "WEFT_REQUIRE_PRIVILEGED"

// skipper is the part of testing.TB that the gates use; tests of the gates
// pass a recorder instead.
type skipper interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// privilegeRequired reports whether RequireEnv is set to a true value.
func privilegeRequired() bool {
	v, err := strconv.ParseBool(strings.TrimSpace(os.Getenv(RequireEnv)))
	return err == nil && v
}

// SkipOrFail skips the test with the formatted reason or, when
// WEFT_REQUIRE_PRIVILEGED=1, fails it with that reason. Use it for every
// skip that hides missing setup (a tool not installed, a service not
// running), so that a CI run cannot pass by skipping.
func SkipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	skipOrFail(tb, privilegeRequired(), fmt.Sprintf(format, args...))
}

// skipOrFail skips tb with reason, or fails it when require is set.
func skipOrFail(tb skipper, require bool, reason string) {
	tb.Helper()
	if require {
		tb.Fatalf("%s (%s=1 makes this skip a failure)", reason, RequireEnv)
		return
	}
	tb.Skipf("%s", reason)
}

// RequirePrivileged skips the test unless it can touch the kernel: it must
// run on Linux as root (effective uid 0) with CAP_BPF, CAP_NET_ADMIN and
// CAP_SYS_ADMIN in its effective set, the kernel must support bpffs (mounted
// at /sys/fs/bpf, or mountable with MountBPFFS), and a cgroup v2 hierarchy
// must be mounted (see Cgroup2Path). When WEFT_REQUIRE_PRIVILEGED=1 the skip
// becomes a failure with the same reason. In -short mode it always skips.
//
// Call it first in the test, before any other helper of this package.
func RequirePrivileged(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("privileged test skipped in -short mode")
	}
	if reason := privilegeProblem(); reason != "" {
		skipOrFail(tb, privilegeRequired(), reason)
	}
}

// SkipOnOldKernel skips the test when the running kernel is older than
// minVersion ("6.6", "5.15.12"), naming feature ("tcx") in the reason. When
// WEFT_REQUIRE_PRIVILEGED=1 the skip becomes a failure. An unparsable
// minVersion fails the test.
func SkipOnOldKernel(tb testing.TB, minVersion, feature string) {
	tb.Helper()
	skipOnOldKernel(tb, privilegeRequired(), minVersion, feature, RunningKernel)
}

func skipOnOldKernel(tb skipper, require bool, minVersion, feature string, running func() (KernelVersion, error)) {
	tb.Helper()
	want, err := ParseKernelVersion(minVersion)
	if err != nil {
		tb.Fatalf("SkipOnOldKernel(%q, %q): %v", minVersion, feature, err)
		return
	}
	have, err := running()
	if err != nil {
		skipOrFail(tb, require, fmt.Sprintf("%s needs Linux %s: read kernel version: %v", feature, want, err))
		return
	}
	if have.Less(want) {
		skipOrFail(tb, require, fmt.Sprintf("%s needs Linux %s, running %s", feature, want, have))
	}
}

// KernelVersion is a Linux kernel version.
type KernelVersion struct {
	Major, Minor, Patch int
}

// ParseKernelVersion parses the leading "major.minor[.patch]" of a kernel
// release such as "6.18.44-fc-v657" or "5.15.0-91-generic".
func ParseKernelVersion(s string) (KernelVersion, error) {
	end := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if end < 0 {
		end = len(s)
	}
	parts := strings.Split(strings.TrimSuffix(s[:end], "."), ".")
	if len(parts) < 2 || len(parts) > 3 {
		return KernelVersion{}, fmt.Errorf("parse kernel version %q: want major.minor[.patch]", s)
	}
	var nums [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return KernelVersion{}, fmt.Errorf("parse kernel version %q: %w", s, err)
		}
		nums[i] = n
	}
	return KernelVersion{Major: nums[0], Minor: nums[1], Patch: nums[2]}, nil
}

// Less reports whether v is older than o.
func (v KernelVersion) Less(o KernelVersion) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor < o.Minor
	}
	return v.Patch < o.Patch
}

// String formats v as "major.minor.patch".
func (v KernelVersion) String() string {
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
}
