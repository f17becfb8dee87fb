// SPDX-License-Identifier: Apache-2.0

package dns

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestResolvConfUpstreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	conf := "# comment\nsearch cluster.local\nnameserver 169.254.20.10\nnameserver 10.0.0.2\nnameserver fd00::53\nnameserver 127.0.0.53\noptions ndots:5\n"
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		self string
		want []string
	}{
		{"skips-self", "169.254.20.10:53", []string{"10.0.0.2:53", "[fd00::53]:53", "127.0.0.53:53"}},
		{"other-port-is-not-self", "169.254.20.10:5353", []string{"169.254.20.10:53", "10.0.0.2:53", "[fd00::53]:53", "127.0.0.53:53"}},
		{"wildcard-covers-loopback", "0.0.0.0:53", []string{"169.254.20.10:53", "10.0.0.2:53", "[fd00::53]:53"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolvConfUpstreams(path, netip.MustParseAddrPort(tc.self))
			if err != nil {
				t.Fatal(err)
			}
			var gs []string
			for _, g := range got {
				gs = append(gs, g.String())
			}
			if !slices.Equal(gs, tc.want) {
				t.Errorf("upstreams %v; want %v", gs, tc.want)
			}
		})
	}
	if _, err := resolvConfUpstreams(filepath.Join(t.TempDir(), "missing"), netip.AddrPort{}); err == nil {
		t.Error("a missing resolv.conf gave no error")
	}
}
