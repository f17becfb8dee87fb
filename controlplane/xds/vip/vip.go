// SPDX-License-Identifier: Apache-2.0

package vip

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/big"
	"net/netip"
	"strings"

	"github.com/weft-mesh/weft/controlplane/store"
)

// DefaultIPv4CIDR is the IPv4 range used when Config.IPv4 is not set. It lies
// in 240.0.0.0/4 (reserved, never routed), as Istio's DNS auto-allocation
// does, so a service address cannot shadow a real pod, node or Kubernetes
// ClusterIP address (10.96.0.0/12 by default, 10.100.0.0/16 or 172.20.0.0/16
// on EKS). The agent rewrites connect() to these addresses before routing,
// so they never need a route.
const DefaultIPv4CIDR = "240.240.0.0/16"

// Store key prefixes.
const (
	keyPrefix     = "a/"
	servicePrefix = keyPrefix + "s/"
	addrPrefix    = keyPrefix + "i/"
)

// ErrExhausted is returned when a range has no free address left.
var ErrExhausted = errors.New("address range exhausted")

// Key names a virtual service.
type Key struct {
	Mesh    string
	Service string
}

func (k Key) String() string { return k.Mesh + "/" + k.Service }

// Addresses are the addresses of one service. IPv6 is the zero Addr when no
// IPv6 range is configured.
type Addresses struct {
	IPv4 netip.Addr
	IPv6 netip.Addr
}

// List returns the valid addresses, IPv4 first.
func (a Addresses) List() []netip.Addr {
	var out []netip.Addr
	for _, ip := range []netip.Addr{a.IPv4, a.IPv6} {
		if ip.IsValid() {
			out = append(out, ip)
		}
	}
	return out
}

func (a Addresses) encode() string {
	var parts []string
	for _, ip := range a.List() {
		parts = append(parts, ip.String())
	}
	return strings.Join(parts, ",")
}

func decode(s string) (Addresses, error) {
	var a Addresses
	for p := range strings.SplitSeq(s, ",") {
		ip, err := netip.ParseAddr(p)
		if err != nil {
			return Addresses{}, fmt.Errorf("decode addresses %q: %w", s, err)
		}
		if ip.Is4() {
			a.IPv4 = ip
		} else {
			a.IPv6 = ip
		}
	}
	return a, nil
}

// Config configures an Allocator.
type Config struct {
	// IPv4 is the IPv4 range; the zero Prefix means DefaultIPv4CIDR.
	IPv4 netip.Prefix
	// IPv6 is the optional IPv6 range; the zero Prefix means no IPv6
	// addresses.
	IPv6 netip.Prefix
}

// Validate checks the ranges: IPv4 of at most /30, IPv6 of at most /126,
// each in its family.
func (c Config) Validate() error {
	var errs []error
	if c.IPv4.IsValid() && (!c.IPv4.Addr().Is4() || c.IPv4.Bits() > 30) {
		errs = append(errs, fmt.Errorf("ipv4 range %s: must be an IPv4 prefix of /30 or larger", c.IPv4))
	}
	if c.IPv6.IsValid() && (!c.IPv6.Addr().Is6() || c.IPv6.Addr().Is4In6() || c.IPv6.Bits() > 126) {
		errs = append(errs, fmt.Errorf("ipv6 range %s: must be an IPv6 prefix of /126 or larger", c.IPv6))
	}
	return errors.Join(errs...)
}

// Allocator hands out service addresses and keeps them in a store.
type Allocator struct {
	st store.Store
	v4 netip.Prefix
	v6 netip.Prefix
}

// New returns an Allocator over st.
func New(st store.Store, cfg Config) (*Allocator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.IPv4.IsValid() {
		cfg.IPv4 = netip.MustParsePrefix(DefaultIPv4CIDR)
	}
	return &Allocator{st: st, v4: cfg.IPv4.Masked(), v6: cfg.IPv6.Masked()}, nil
}

// OwnsKey reports whether a store key is one of the allocator's. Only Sync,
// Ensure and Release write them; the Syncer, the only caller of Sync,
// translates with what Sync returned and therefore ignores their changes.
func OwnsKey(key string) bool { return strings.HasPrefix(key, keyPrefix) }

// Sync makes the allocations equal to want in one transaction: services of
// want without addresses (or with addresses outside the configured ranges)
// get them, and every allocation of a service not in want is released. It
// returns the addresses of every service of want. The controller calls it
// with all virtual services of all meshes before each translation.
func (a *Allocator) Sync(ctx context.Context, want []Key) (map[Key]Addresses, error) {
	out := make(map[Key]Addresses, len(want))
	_, err := a.st.Update(ctx, func(tx store.Txn) error {
		clear(out)
		keep := make(map[string]bool, len(want))
		for _, k := range want {
			keep[serviceKey(k)] = true
		}
		kvs, err := tx.List(servicePrefix, "", 0)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			if !keep[kv.Key] {
				if err := releaseKey(tx, kv.Key, string(kv.Value)); err != nil {
					return err
				}
			}
		}
		for _, k := range want {
			addrs, err := a.ensure(tx, k)
			if err != nil {
				return err
			}
			out[k] = addrs
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sync service addresses: %w", err)
	}
	return out, nil
}

// Ensure allocates addresses for the services that have none, in one
// transaction, and returns the addresses of every one of them.
func (a *Allocator) Ensure(ctx context.Context, keys ...Key) (map[Key]Addresses, error) {
	out := make(map[Key]Addresses, len(keys))
	_, err := a.st.Update(ctx, func(tx store.Txn) error {
		clear(out)
		for _, k := range keys {
			addrs, err := a.ensure(tx, k)
			if err != nil {
				return err
			}
			out[k] = addrs
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("allocate service addresses: %w", err)
	}
	return out, nil
}

// Release frees the addresses of a service. Releasing a service without
// addresses does nothing.
func (a *Allocator) Release(ctx context.Context, k Key) error {
	_, err := a.st.Update(ctx, func(tx store.Txn) error {
		v, ok, err := tx.Get(serviceKey(k))
		if err != nil || !ok {
			return err
		}
		return releaseKey(tx, serviceKey(k), string(v))
	})
	if err != nil {
		return fmt.Errorf("release addresses of %s: %w", k, err)
	}
	return nil
}

// All returns every allocation.
func (a *Allocator) All(ctx context.Context) (map[Key]Addresses, error) {
	out := make(map[Key]Addresses)
	err := a.st.View(ctx, func(r store.Reader) error {
		clear(out)
		kvs, err := r.List(servicePrefix, "", 0)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			k, ok := parseServiceKey(kv.Key)
			if !ok {
				return fmt.Errorf("malformed address key %q", kv.Key)
			}
			addrs, err := decode(string(kv.Value))
			if err != nil {
				return err
			}
			out[k] = addrs
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list service addresses: %w", err)
	}
	return out, nil
}

// ensure returns the addresses of k, allocating what is missing.
func (a *Allocator) ensure(tx store.Txn, k Key) (Addresses, error) {
	sk := serviceKey(k)
	var cur Addresses
	v, ok, err := tx.Get(sk)
	if err != nil {
		return Addresses{}, err
	}
	if ok {
		if cur, err = decode(string(v)); err != nil {
			return Addresses{}, err
		}
	}
	next := cur
	// An address outside the configured range (the range changed) is
	// replaced; so is a missing one.
	if !cur.IPv4.IsValid() || !a.v4.Contains(cur.IPv4) {
		next.IPv4 = netip.Addr{}
	}
	if !a.v6.IsValid() || (cur.IPv6.IsValid() && !a.v6.Contains(cur.IPv6)) {
		next.IPv6 = netip.Addr{}
	}
	for _, ip := range []netip.Addr{cur.IPv4, cur.IPv6} {
		if ip.IsValid() && ip != next.IPv4 && ip != next.IPv6 {
			if err := tx.Delete(addrPrefix + ip.String()); err != nil {
				return Addresses{}, err
			}
		}
	}
	if !next.IPv4.IsValid() {
		if next.IPv4, err = probe(tx, a.v4, k); err != nil {
			return Addresses{}, err
		}
	}
	if a.v6.IsValid() && !next.IPv6.IsValid() {
		if next.IPv6, err = probe(tx, a.v6, k); err != nil {
			return Addresses{}, err
		}
	}
	if ok && next == cur {
		return cur, nil
	}
	for _, ip := range next.List() {
		if ip != cur.IPv4 && ip != cur.IPv6 {
			if err := tx.Put(addrPrefix+ip.String(), []byte(k.String())); err != nil {
				return Addresses{}, err
			}
		}
	}
	if err := tx.Put(sk, []byte(next.encode())); err != nil {
		return Addresses{}, err
	}
	return next, nil
}

// probe finds the first free address of p at or after the hash of k.
func probe(tx store.Reader, p netip.Prefix, k Key) (netip.Addr, error) {
	hostBits := p.Addr().BitLen() - p.Bits()
	if hostBits > 64 {
		hostBits = 64 // an IPv6 range larger than /64 uses its first /64
	}
	size := new(big.Int).Lsh(big.NewInt(1), uint(hostBits))
	// Usable offsets: 1 .. size-2 for IPv4 (no network or broadcast
	// address), 1 .. size-1 for IPv6 (no subnet-router anycast address).
	usable := new(big.Int).Sub(size, big.NewInt(1))
	if p.Addr().Is4() {
		usable.Sub(usable, big.NewInt(1))
	}
	h := fnv.New64a()
	h.Write([]byte(k.String()))
	start := new(big.Int).SetUint64(h.Sum64())
	start.Mod(start, usable)
	// Probe at most the whole range, but never loop forever on a huge one:
	// a range with more than a million candidates is not going to be full.
	limit := int64(1 << 20)
	if usable.IsInt64() && usable.Int64() < limit {
		limit = usable.Int64()
	}
	off := new(big.Int)
	base := p.Addr().AsSlice()
	for i := int64(0); i < limit; i++ {
		off.Add(start, big.NewInt(i))
		off.Mod(off, usable)
		off.Add(off, big.NewInt(1))
		ip := addOffset(base, off)
		_, taken, err := tx.Get(addrPrefix + ip.String())
		if err != nil {
			return netip.Addr{}, err
		}
		if !taken {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("allocate address in %s for %s: %w", p, k, ErrExhausted)
}

// addOffset adds off to the address base (big-endian bytes).
func addOffset(base []byte, off *big.Int) netip.Addr {
	n := new(big.Int).SetBytes(base)
	n.Add(n, off)
	b := n.FillBytes(make([]byte, len(base)))
	ip, _ := netip.AddrFromSlice(b)
	return ip
}

// releaseKey deletes a service's allocation and its reverse entries.
func releaseKey(tx store.Txn, sk, value string) error {
	addrs, err := decode(value)
	if err != nil {
		return err
	}
	for _, ip := range addrs.List() {
		if err := tx.Delete(addrPrefix + ip.String()); err != nil {
			return err
		}
	}
	return tx.Delete(sk)
}

func serviceKey(k Key) string { return servicePrefix + k.Mesh + "/" + k.Service }

func parseServiceKey(s string) (Key, bool) {
	rest, ok := strings.CutPrefix(s, servicePrefix)
	if !ok {
		return Key{}, false
	}
	mesh, svc, ok := strings.Cut(rest, "/")
	return Key{Mesh: mesh, Service: svc}, ok && mesh != "" && svc != ""
}
