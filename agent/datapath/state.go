// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// ErrClosed is returned by the methods of a closed Datapath.
var ErrClosed = errors.New("datapath closed")

// ErrLayoutMismatch is wrapped by New (and OpenOrigDst) when the pinned maps
// have another layout than this build: they are never recreated silently.
// Unpin them (uninstall) or run the matching agent version.
var ErrLayoutMismatch = errors.New("pinned maps have an incompatible layout")

// Limits of the map layout (bpf/include/weft_common.h).
const (
	// MaxSlots is the most backend slots of one service: weights are
	// expanded into at most this many slots.
	MaxSlots = 256
	// MaxEgressPorts is the most distinct ports of one egress prefix of a
	// mesh, counting the ports inherited from shorter prefixes.
	MaxEgressPorts = 16
	// DefaultTelemetryInterval is Config.TelemetryInterval's default.
	DefaultTelemetryInterval = 10 * time.Second
)

// String returns "tcp" or "udp".
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	default:
		return fmt.Sprintf("proto(%d)", uint8(p))
	}
}

// String returns "l4" or "l7".
func (m Mode) String() string {
	switch m {
	case ModeL4:
		return "l4"
	case ModeL7:
		return "l7"
	default:
		return fmt.Sprintf("mode(%d)", uint8(m))
	}
}

// withDefaults returns c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.TelemetryInterval == 0 {
		c.TelemetryInterval = DefaultTelemetryInterval
	}
	return c
}

// Validate reports every problem of c at once (errors.Join).
func (c Config) Validate() error {
	var errs []error
	if c.CgroupPath == "" {
		errs = append(errs, errors.New("cgroup path: required"))
	}
	if c.PinPath == "" {
		errs = append(errs, errors.New("pin path: required"))
	}
	if err := validAddrPort(c.ProxyAddr); err != nil {
		errs = append(errs, fmt.Errorf("proxy address: %w", err))
	}
	if err := validAddrPort(c.DNSAddr); err != nil {
		errs = append(errs, fmt.Errorf("dns address: %w", err))
	}
	if c.TelemetryInterval < 0 {
		errs = append(errs, fmt.Errorf("telemetry interval %v: negative", c.TelemetryInterval))
	}
	return errors.Join(errs...)
}

// validAddrPort accepts the zero value (feature off) or a full address and
// port without zone.
func validAddrPort(ap netip.AddrPort) error {
	if ap == (netip.AddrPort{}) {
		return nil
	}
	switch {
	case !ap.Addr().IsValid():
		return fmt.Errorf("%v: no address", ap)
	case ap.Addr().Zone() != "":
		return fmt.Errorf("%v: zones are not supported", ap)
	case ap.Addr().IsUnspecified():
		return fmt.Errorf("%v: unspecified address", ap)
	case ap.Port() == 0:
		return fmt.Errorf("%v: port 0", ap)
	}
	return nil
}

// The compiled desired state: exactly the map contents, in neutral types.

type frontKey struct {
	Addr  netip.Addr // unmapped IPv4 or IPv6
	Port  uint16
	Proto Protocol
}

type frontend struct {
	ID    uint32
	Mode  Mode
	Slots []netip.AddrPort // len = slot count; L7 services have none
}

func (f frontend) equal(o frontend) bool {
	return f.ID == o.ID && f.Mode == o.Mode && slices.Equal(f.Slots, o.Slots)
}

type egressKey struct {
	MeshID uint32
	Prefix netip.Prefix // in the 128-bit space: IPv4 as ::ffff:a.b.c.d/(96+n)
}

type egressEntry struct {
	OwnAny    bool     // the prefix itself allows any port
	Any       bool     // any port, own or inherited
	Own       []uint16 // own ports, sorted, without 0
	Inherited []uint16 // ports of containing prefixes, sorted, not in Own
}

func (e egressEntry) equal(o egressEntry) bool {
	return e.OwnAny == o.OwnAny && e.Any == o.Any && slices.Equal(e.Own, o.Own) &&
		slices.Equal(e.Inherited, o.Inherited)
}

type compiled struct {
	services  map[frontKey]frontend
	workloads map[uint64]Workload
	egress    map[egressKey]egressEntry
}

// compile validates s and turns it into map contents.
func compile(s State) (compiled, error) {
	c := compiled{
		services:  make(map[frontKey]frontend, len(s.Services)),
		workloads: make(map[uint64]Workload, len(s.Workloads)),
		egress:    make(map[egressKey]egressEntry),
	}
	var errs []error
	ids := make(map[uint32]frontKey, len(s.Services))
	for _, svc := range s.Services {
		k := frontKey{Addr: svc.Addr.Unmap(), Port: svc.Port, Proto: svc.Proto}
		name := fmt.Sprintf("service %d (%v %v)", svc.ID, svc.Proto, netip.AddrPortFrom(k.Addr, k.Port))
		var serr []error
		switch {
		case svc.ID == 0:
			serr = append(serr, errors.New("id 0"))
		case !svc.Addr.IsValid() || svc.Addr.Zone() != "":
			serr = append(serr, fmt.Errorf("address %v: want an address without zone", svc.Addr))
		case svc.Port == 0:
			serr = append(serr, errors.New("port 0"))
		}
		if svc.Proto != TCP && svc.Proto != UDP {
			serr = append(serr, fmt.Errorf("protocol %v: want tcp or udp", svc.Proto))
		}
		if svc.Mode != ModeL4 && svc.Mode != ModeL7 {
			serr = append(serr, fmt.Errorf("mode %v: want l4 or l7", svc.Mode))
		}
		if svc.Mode == ModeL7 && svc.Proto != TCP {
			serr = append(serr, errors.New("l7 mode needs tcp"))
		}
		if other, dup := ids[svc.ID]; dup && svc.ID != 0 {
			serr = append(serr, fmt.Errorf("id also used by %v %v", other.Proto, netip.AddrPortFrom(other.Addr, other.Port)))
		}
		if _, dup := c.services[k]; dup {
			serr = append(serr, errors.New("address, port and protocol declared twice"))
		}
		var slots []netip.AddrPort
		if svc.Mode == ModeL4 {
			var err error
			if slots, err = expandSlots(svc.Backends); err != nil {
				serr = append(serr, err)
			}
		}
		if len(serr) > 0 {
			errs = append(errs, fmt.Errorf("%s: %w", name, errors.Join(serr...)))
			continue
		}
		ids[svc.ID] = k
		c.services[k] = frontend{ID: svc.ID, Mode: svc.Mode, Slots: slots}
	}
	for _, w := range s.Workloads {
		switch {
		case w.CgroupID == 0:
			errs = append(errs, fmt.Errorf("workload %d: cgroup id 0", w.ID))
		case w.ID == 0:
			errs = append(errs, fmt.Errorf("workload of cgroup %d: id 0", w.CgroupID))
		default:
			if _, dup := c.workloads[w.CgroupID]; dup {
				errs = append(errs, fmt.Errorf("workload %d: cgroup %d declared twice", w.ID, w.CgroupID))
				continue
			}
			c.workloads[w.CgroupID] = w
		}
	}
	egress, err := compileEgress(s.Egress)
	if err != nil {
		errs = append(errs, err)
	}
	c.egress = egress
	if err := errors.Join(errs...); err != nil {
		return compiled{}, fmt.Errorf("invalid state: %w", err)
	}
	return c, nil
}

// prefix128 maps a prefix into the 128-bit space of the LPM trie.
func prefix128(p netip.Prefix) netip.Prefix {
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	return netip.PrefixFrom(netip.AddrFrom16(p.Addr().As16()), bits).Masked()
}

// prefixUser maps a 128-bit prefix back: IPv4-mapped prefixes of 96 bits or
// more become IPv4 prefixes.
func prefixUser(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// compileEgress merges the rules per (mesh, prefix) and copies into each
// prefix the ports of the shorter prefixes that contain it: an LPM lookup
// finds only the longest match, which must then answer for all of them.
func compileEgress(rules []EgressRule) (map[egressKey]egressEntry, error) {
	var errs []error
	own := make(map[egressKey]map[uint16]bool)
	for _, r := range rules {
		if !r.Prefix.IsValid() || r.Prefix.Addr().Zone() != "" {
			errs = append(errs, fmt.Errorf("egress rule of mesh %d: prefix %v: invalid", r.MeshID, r.Prefix))
			continue
		}
		k := egressKey{MeshID: r.MeshID, Prefix: prefix128(r.Prefix)}
		if own[k] == nil {
			own[k] = make(map[uint16]bool)
		}
		own[k][r.Port] = true
	}
	out := make(map[egressKey]egressEntry, len(own))
	for k, ports := range own {
		var e egressEntry
		e.OwnAny = ports[0]
		e.Any = e.OwnAny
		inherited := make(map[uint16]bool)
		for k2, ports2 := range own {
			if k2.MeshID != k.MeshID || k2.Prefix.Bits() >= k.Prefix.Bits() || !k2.Prefix.Contains(k.Prefix.Addr()) {
				continue
			}
			for p := range ports2 {
				if p == 0 {
					e.Any = true
				} else if !ports[p] {
					inherited[p] = true
				}
			}
		}
		if !e.OwnAny {
			for p := range ports {
				e.Own = append(e.Own, p)
			}
			slices.Sort(e.Own)
		}
		if !e.Any {
			for p := range inherited {
				e.Inherited = append(e.Inherited, p)
			}
			slices.Sort(e.Inherited)
		}
		if n := len(e.Own) + len(e.Inherited); n > MaxEgressPorts {
			errs = append(errs, fmt.Errorf("egress prefix %v of mesh %d: %d ports with those of its shorter prefixes, at most %d",
				prefixUser(k.Prefix), k.MeshID, n, MaxEgressPorts))
			continue
		}
		out[k] = e
	}
	return out, errors.Join(errs...)
}

// expandSlots turns weighted backends into the slot array: duplicates are
// merged, weight-0 backends left out, backends sorted, weights divided by
// their greatest common divisor and, if they sum to more than MaxSlots,
// scaled down to MaxSlots slots (largest remainder, at least one slot each)
// and reduced again. The result is a fixed point: expanding the slot counts
// of a result as weights yields the same slots, which is how Snapshot's
// reconstructed weights reconcile to no change.
func expandSlots(backends []Backend) ([]netip.AddrPort, error) {
	weights := make(map[netip.AddrPort]uint64, len(backends))
	for _, b := range backends {
		ap := netip.AddrPortFrom(b.Addr.Addr().Unmap(), b.Addr.Port())
		if !ap.Addr().IsValid() || ap.Addr().Zone() != "" || ap.Port() == 0 {
			return nil, fmt.Errorf("backend %v: want an address without zone and a port", b.Addr)
		}
		weights[ap] += uint64(b.Weight)
	}
	type bw struct {
		ap netip.AddrPort
		w  uint64
	}
	var bws []bw
	for ap, w := range weights {
		if w > 0 {
			bws = append(bws, bw{ap, w})
		}
	}
	if len(bws) == 0 {
		return nil, nil
	}
	if len(bws) > MaxSlots {
		return nil, fmt.Errorf("%d backends with weight: at most %d", len(bws), MaxSlots)
	}
	slices.SortFunc(bws, func(a, b bw) int { return a.ap.Compare(b.ap) })

	counts := make([]uint64, len(bws))
	for i, b := range bws {
		counts[i] = b.w
	}
	reduce(counts)
	var sum uint64
	for _, c := range counts {
		sum += c
	}
	if sum > MaxSlots {
		scale(counts, sum)
		reduce(counts)
	}
	var slots []netip.AddrPort
	for i, b := range bws {
		for range counts[i] {
			slots = append(slots, b.ap)
		}
	}
	return slots, nil
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// reduce divides counts by their greatest common divisor.
func reduce(counts []uint64) {
	var g uint64
	for _, c := range counts {
		g = gcd(g, c)
	}
	if g > 1 {
		for i := range counts {
			counts[i] /= g
		}
	}
}

// scale distributes MaxSlots slots over counts in proportion (largest
// remainder), giving every entry at least one slot.
func scale(counts []uint64, sum uint64) {
	type rem struct {
		i int
		r uint64
	}
	rems := make([]rem, len(counts))
	var total uint64
	for i, c := range counts {
		// c*MaxSlots fits in 64 bits: c is a sum of uint32 weights.
		counts[i] = c * MaxSlots / sum
		rems[i] = rem{i, c * MaxSlots % sum}
		total += counts[i]
	}
	slices.SortStableFunc(rems, func(a, b rem) int { return cmp.Compare(b.r, a.r) })
	for j := 0; total < MaxSlots; j++ {
		counts[rems[j%len(rems)].i]++
		total++
	}
	for i := range counts {
		if counts[i] > 0 {
			continue
		}
		// Take the slot from the largest count.
		big := 0
		for j := range counts {
			if counts[j] > counts[big] {
				big = j
			}
		}
		counts[big]--
		counts[i] = 1
	}
}

// weightsFromSlots reconstructs backends from a slot array: each backend's
// weight is its number of slots, in order of first appearance.
func weightsFromSlots(slots []netip.AddrPort) []Backend {
	var out []Backend
	idx := make(map[netip.AddrPort]int)
	for _, ap := range slots {
		i, ok := idx[ap]
		if !ok {
			i = len(out)
			idx[ap] = i
			out = append(out, Backend{Addr: ap})
		}
		out[i].Weight++
	}
	return out
}

// state turns map contents back into a State (see Datapath.Snapshot).
func (c compiled) state() State {
	var s State
	for k, f := range c.services {
		s.Services = append(s.Services, Service{
			ID: f.ID, Addr: k.Addr, Port: k.Port, Proto: k.Proto, Mode: f.Mode,
			Backends: weightsFromSlots(f.Slots),
		})
	}
	slices.SortFunc(s.Services, func(a, b Service) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		if a.Port != b.Port {
			return cmp.Compare(a.Port, b.Port)
		}
		return cmp.Compare(a.Proto, b.Proto)
	})
	for _, w := range c.workloads {
		s.Workloads = append(s.Workloads, w)
	}
	slices.SortFunc(s.Workloads, func(a, b Workload) int {
		return cmp.Compare(a.CgroupID, b.CgroupID)
	})
	for k, e := range c.egress {
		p := prefixUser(k.Prefix)
		if e.OwnAny {
			s.Egress = append(s.Egress, EgressRule{MeshID: k.MeshID, Prefix: p})
		}
		for _, port := range e.Own {
			s.Egress = append(s.Egress, EgressRule{MeshID: k.MeshID, Prefix: p, Port: port})
		}
	}
	slices.SortFunc(s.Egress, func(a, b EgressRule) int {
		switch {
		case a.MeshID != b.MeshID:
			return cmp.Compare(a.MeshID, b.MeshID)
		case a.Prefix != b.Prefix:
			if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
				return c
			}
			return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
		}
		return cmp.Compare(a.Port, b.Port)
	})
	return s
}
