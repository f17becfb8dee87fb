// SPDX-License-Identifier: Apache-2.0

package vip_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-mesh/weft/controlplane/store/boltstore"
	"github.com/weft-mesh/weft/controlplane/xds/vip"
)

// update is accepted (and unused here) so that
// go test ./controlplane/xds/... -update rewrites the golden files of
// package xds without failing on this package.
var _ = flag.Bool("update", false, "rewrite golden files (none in this package)")

func openStore(t *testing.T, path string) *boltstore.Store {
	t.Helper()
	st, err := boltstore.Open(path, boltstore.Options{}, nil)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return st
}

func newAllocator(t *testing.T, st *boltstore.Store, cfg vip.Config) *vip.Allocator {
	t.Helper()
	a, err := vip.New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func keys(n int) []vip.Key {
	out := make([]vip.Key, n)
	for i := range out {
		out[i] = vip.Key{Mesh: fmt.Sprintf("mesh-%d", i%7), Service: fmt.Sprintf("svc-%d.ns.svc.cluster.local", i)}
	}
	return out
}

// TestStableAcrossReopen allocates, closes the store, opens it again with a
// new allocator and a different order of services, and expects the same
// addresses.
func TestStableAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "weft.db")
	cfg := vip.Config{IPv6: netip.MustParsePrefix("fd00:77::/64")}
	ks := keys(200)

	st := openStore(t, path)
	first, err := newAllocator(t, st, cfg).Sync(ctx, ks)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = openStore(t, path)
	t.Cleanup(func() { _ = st.Close() })
	a := newAllocator(t, st, cfg)
	reversed := make([]vip.Key, len(ks))
	for i, k := range ks {
		reversed[len(ks)-1-i] = k
	}
	second, err := a.Sync(ctx, reversed)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, second, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("addresses changed across reopen (-first +second):\n%s", diff)
	}
	all, err := a.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(ks) {
		t.Errorf("All has %d entries, want %d", len(all), len(ks))
	}
	for k, addrs := range first {
		if !addrs.IPv4.Is4() || !netip.MustParsePrefix(vip.DefaultIPv4CIDR).Contains(addrs.IPv4) {
			t.Errorf("%s: IPv4 %s outside the default range", k, addrs.IPv4)
		}
		if !cfg.IPv6.Contains(addrs.IPv6) {
			t.Errorf("%s: IPv6 %s outside %s", k, addrs.IPv6, cfg.IPv6)
		}
	}
}

// TestNoDuplicates allocates 10,000 services in a /18 (16,382 addresses) so
// that probing is exercised, and expects no address twice.
func TestNoDuplicates(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "weft.db"))
	t.Cleanup(func() { _ = st.Close() })
	a := newAllocator(t, st, vip.Config{IPv4: netip.MustParsePrefix("10.200.0.0/18")})
	got, err := a.Sync(context.Background(), keys(10000))
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[netip.Addr]vip.Key, len(got))
	for k, addrs := range got {
		ip := addrs.IPv4
		if other, dup := seen[ip]; dup {
			t.Fatalf("%s given to %s and %s", ip, other, k)
		}
		seen[ip] = k
		if ip == netip.MustParseAddr("10.200.0.0") || ip == netip.MustParseAddr("10.200.63.255") {
			t.Errorf("%s: got the network or broadcast address %s", k, ip)
		}
	}
	if len(seen) != 10000 {
		t.Errorf("%d distinct addresses, want 10000", len(seen))
	}
}

// TestReleaseAndReuse fills a /30 (two usable addresses), checks that a third
// service is refused, releases one and expects the third to get its address.
func TestReleaseAndReuse(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "weft.db"))
	t.Cleanup(func() { _ = st.Close() })
	a := newAllocator(t, st, vip.Config{IPv4: netip.MustParsePrefix("192.0.2.0/30")})
	x, y, z := vip.Key{Mesh: "m", Service: "x"}, vip.Key{Mesh: "m", Service: "y"}, vip.Key{Mesh: "m", Service: "z"}
	got, err := a.Ensure(ctx, x, y)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Ensure(ctx, z); !errors.Is(err, vip.ErrExhausted) {
		t.Fatalf("Ensure on a full range: err = %v, want ErrExhausted", err)
	}
	if err := a.Release(ctx, x); err != nil {
		t.Fatal(err)
	}
	again, err := a.Ensure(ctx, z, y)
	if err != nil {
		t.Fatal(err)
	}
	if again[z] != got[x] {
		t.Errorf("z got %s, want x's released %s", again[z].IPv4, got[x].IPv4)
	}
	if again[y] != got[y] {
		t.Errorf("y moved from %s to %s", got[y].IPv4, again[y].IPv4)
	}

	// Sync releases what is no longer wanted.
	if _, err := a.Sync(ctx, []vip.Key{z}); err != nil {
		t.Fatal(err)
	}
	all, err := a.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[z] != again[z] {
		t.Errorf("after Sync(z): %v", all)
	}
}

// TestRangeChange moves services into a new range when the configured one
// changes, and frees the old addresses.
func TestRangeChange(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "weft.db"))
	t.Cleanup(func() { _ = st.Close() })
	k := vip.Key{Mesh: "m", Service: "s"}
	if _, err := newAllocator(t, st, vip.Config{}).Sync(ctx, []vip.Key{k}); err != nil {
		t.Fatal(err)
	}
	next := netip.MustParsePrefix("10.1.0.0/24")
	got, err := newAllocator(t, st, vip.Config{IPv4: next}).Sync(ctx, []vip.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	if !next.Contains(got[k].IPv4) {
		t.Errorf("address %s not moved into %s", got[k].IPv4, next)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  vip.Config
		ok   bool
	}{
		{"zero", vip.Config{}, true},
		{"both", vip.Config{IPv4: netip.MustParsePrefix("10.0.0.0/8"), IPv6: netip.MustParsePrefix("fd00::/48")}, true},
		{"v6 as v4", vip.Config{IPv4: netip.MustParsePrefix("fd00::/48")}, false},
		{"v4 too small", vip.Config{IPv4: netip.MustParsePrefix("10.0.0.0/31")}, false},
		{"v4 as v6", vip.Config{IPv6: netip.MustParsePrefix("10.0.0.0/8")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
