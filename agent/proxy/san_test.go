// SPDX-License-Identifier: Apache-2.0

package proxy

import "testing"

func TestDNSSANMatch(t *testing.T) {
	for _, tc := range []struct {
		cert, want string
		ok         bool
	}{
		{"a.example.com", "a.example.com", true},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", "example.com", false},
		{"a.example.com", "b.example.com", false},
	} {
		if got := dnsSANMatch(tc.cert, tc.want); got != tc.ok {
			t.Errorf("dnsSANMatch(%q, %q) = %v", tc.cert, tc.want, got)
		}
	}
}
