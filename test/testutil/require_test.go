// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// recorder stands in for testing.TB in tests of the gates.
type recorder struct {
	skipped, failed string
}

func (*recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) { r.skipped = fmt.Sprintf(format, args...) }

func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestSkipOrFail(t *testing.T) {
	t.Parallel()
	var r recorder
	skipOrFail(&r, false, "needs root")
	if r.skipped != "needs root" || r.failed != "" {
		t.Errorf("without require: skipped %q, failed %q; want a skip", r.skipped, r.failed)
	}
	r = recorder{}
	skipOrFail(&r, true, "needs root")
	if r.skipped != "" || !strings.HasPrefix(r.failed, "needs root (WEFT_REQUIRE_PRIVILEGED=1") {
		t.Errorf("with require: skipped %q, failed %q; want a failure", r.skipped, r.failed)
	}
}

func TestParseKernelVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    KernelVersion
		wantErr bool
	}{
		{in: "6.18.44-fc-v657", want: KernelVersion{6, 18, 44}},
		{in: "5.15.0-91-generic", want: KernelVersion{5, 15, 0}},
		{in: "6.6", want: KernelVersion{6, 6, 0}},
		{in: "4.19.0+", want: KernelVersion{4, 19, 0}},
		{in: "6.1.0-rc7", want: KernelVersion{6, 1, 0}},
		{in: "6", wantErr: true},
		{in: "", wantErr: true},
		{in: "linux", wantErr: true},
		{in: "6.x", wantErr: true},
		{in: "1.2.3.4", wantErr: true},
	} {
		got, err := ParseKernelVersion(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseKernelVersion(%q) = %v, %v; want %v, error %t", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestKernelVersionLess(t *testing.T) {
	t.Parallel()
	ordered := []KernelVersion{{4, 19, 300}, {5, 4, 0}, {5, 15, 2}, {5, 15, 12}, {6, 6, 0}, {6, 18, 44}}
	for i, a := range ordered {
		for j, b := range ordered {
			if got := a.Less(b); got != (i < j) {
				t.Errorf("%v.Less(%v) = %t", a, b, got)
			}
		}
	}
}

func TestSkipOnOldKernel(t *testing.T) {
	t.Parallel()
	running := func(v KernelVersion, err error) func() (KernelVersion, error) {
		return func() (KernelVersion, error) { return v, err }
	}
	for _, tc := range []struct {
		name                  string
		min                   string
		have                  func() (KernelVersion, error)
		require               bool
		wantSkipped, wantFail string
	}{
		{name: "new enough", min: "6.6", have: running(KernelVersion{6, 18, 44}, nil)},
		{name: "exactly", min: "6.6", have: running(KernelVersion{6, 6, 0}, nil)},
		{name: "too old", min: "6.6", have: running(KernelVersion{6, 1, 90}, nil), wantSkipped: "tcx needs Linux 6.6.0, running 6.1.90"},
		{name: "too old required", min: "6.6", require: true, have: running(KernelVersion{6, 1, 90}, nil), wantFail: "tcx needs Linux 6.6.0, running 6.1.90 (WEFT_REQUIRE_PRIVILEGED=1"},
		{name: "unknown", min: "6.6", have: running(KernelVersion{}, ErrNotSupported), wantSkipped: "tcx needs Linux 6.6.0: read kernel version: not supported"},
		{name: "bad minimum", min: "six", have: running(KernelVersion{6, 18, 0}, nil), wantFail: `SkipOnOldKernel("six", "tcx")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r recorder
			skipOnOldKernel(&r, tc.require, tc.min, "tcx", tc.have)
			if !strings.HasPrefix(r.skipped, tc.wantSkipped) || (tc.wantSkipped == "") != (r.skipped == "") {
				t.Errorf("skipped %q; want prefix %q", r.skipped, tc.wantSkipped)
			}
			if !strings.HasPrefix(r.failed, tc.wantFail) || (tc.wantFail == "") != (r.failed == "") {
				t.Errorf("failed %q; want prefix %q", r.failed, tc.wantFail)
			}
		})
	}
}

func TestEventually(t *testing.T) {
	t.Parallel()
	calls := 0
	Eventually(t, 5e9, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Errorf("fn called %d times; want 3", calls)
	}

	errNever := errors.New("never")
	err := eventually(50e6, func() error { return errNever })
	if !errors.Is(err, errNever) {
		t.Errorf("eventually = %v; want an error wrapping %v", err, errNever)
	}
}

func TestFreePort(t *testing.T) {
	t.Parallel()
	if p := FreePort(t); p <= 0 || p > 65535 {
		t.Errorf("FreePort() = %d", p)
	}
}
