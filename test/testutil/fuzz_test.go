// SPDX-License-Identifier: Apache-2.0

package testutil

import "testing"

// FuzzParseKernelVersion checks that any accepted release string yields a
// version that formats and parses back to itself.
func FuzzParseKernelVersion(f *testing.F) {
	for _, s := range []string{"6.18.44-fc-v657", "5.15.0-91-generic", "6.6", "4.19.0+", "", "6.x", "1.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseKernelVersion(s)
		if err != nil {
			return
		}
		if v.Major < 0 || v.Minor < 0 || v.Patch < 0 {
			t.Fatalf("ParseKernelVersion(%q) = %v: negative part", s, v)
		}
		again, err := ParseKernelVersion(v.String())
		if err != nil || again != v {
			t.Fatalf("ParseKernelVersion(%q) = %v, which reparses as %v, %v", s, v, again, err)
		}
	})
}
