// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// dumpLimit caps the lines printed per LRU map.
const dumpLimit = 1000

// Dump renders every map of the datapath as text, for the agent's debug
// endpoint: configuration, layout, workloads, services with their slots,
// egress, reverse translations, original destinations and counters. The
// socket storage map cannot be iterated and the ring buffer is not a table;
// they are named only.
func (d *Datapath) Dump() (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.closedErr(); err != nil {
		return "", err
	}
	var b strings.Builder
	cfg := d.cfg
	fmt.Fprintf(&b, "config: cgroup=%s (id %d) pin=%s proxy=%v proxy_cgroup=%d proxy_mark=%#x dns=%v telemetry=%v accelerate=%t\n",
		cfg.CgroupPath, d.cgroupID, cfg.PinPath, cfg.ProxyAddr, cfg.ProxyCgroupID, cfg.ProxyMark, cfg.DNSAddr, cfg.TelemetryInterval, cfg.Accelerate)
	fmt.Fprintf(&b, "layout: version %d; adopted maps %v; adopted links %v\n", layoutVersion, d.adoptedMaps, d.adoptedLinks)

	cur, err := d.read()
	if err != nil {
		return "", fmt.Errorf("dump: %w", err)
	}
	st := cur.state()
	fmt.Fprintf(&b, "\n%s (%d):\n", sockMapWeftWorkloads, len(st.Workloads))
	for _, w := range st.Workloads {
		fmt.Fprintf(&b, "  cgroup %d -> workload %d mesh %d drop_all=%t\n", w.CgroupID, w.ID, w.MeshID, w.DropAll)
	}
	fmt.Fprintf(&b, "\n%s (%d) and %s:\n", sockMapWeftServices, len(st.Services), sockMapWeftBackends)
	for _, s := range st.Services {
		k := frontKey{Addr: s.Addr, Port: s.Port, Proto: s.Proto}
		f := cur.services[k]
		fmt.Fprintf(&b, "  %v %v -> service %d %v slots %d\n", s.Proto, netip.AddrPortFrom(s.Addr, s.Port), s.ID, s.Mode, len(f.Slots))
		for _, be := range s.Backends {
			fmt.Fprintf(&b, "      %v weight %d\n", be.Addr, be.Weight)
		}
	}
	var stale int
	for id, slots := range cur.slots {
		n := uint32(0)
		for _, f := range cur.services {
			if f.ID == id {
				n = uint32(len(f.Slots))
			}
		}
		for slot := range slots {
			if slot >= n {
				stale++
			}
		}
	}
	fmt.Fprintf(&b, "  (%d slots beyond their service's count)\n", stale)

	fmt.Fprintf(&b, "\n%s (%d prefixes):\n", sockMapWeftEgress, len(cur.egress))
	keys := make([]egressKey, 0, len(cur.egress))
	for k := range cur.egress {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b egressKey) int {
		if a.MeshID != b.MeshID {
			return cmp.Compare(a.MeshID, b.MeshID)
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	for _, k := range keys {
		e := cur.egress[k]
		fmt.Fprintf(&b, "  mesh %d %v -> any=%t own_any=%t own=%v inherited=%v\n",
			k.MeshID, prefixUser(k.Prefix), e.Any, e.OwnAny, e.Own, e.Inherited)
	}

	fmt.Fprintf(&b, "\n%s:\n", sockMapWeftRevnat)
	var (
		rk sockWeftRevnatKey
		rv sockWeftRevnat
		n  int
	)
	it := d.objs.WeftRevnat.Iterate()
	for it.Next(&rk, &rv) {
		if n++; n <= dumpLimit {
			fmt.Fprintf(&b, "  cookie %d %v -> %v kind %d service %d\n", rk.Cookie,
				netip.AddrPortFrom(addrFrom16(rk.Addr), rk.Port), netip.AddrPortFrom(addrFrom16(rv.Addr), rv.Port), rv.Kind, rv.ServiceId)
		}
	}
	if err := it.Err(); err != nil {
		fmt.Fprintf(&b, "  (iteration stopped: %v)\n", err)
	}
	fmt.Fprintf(&b, "  (%d entries)\n", n)

	fmt.Fprintf(&b, "\n%s (key: client src -> proxy dst):\n", sockMapWeftOrigdst)
	var (
		ok sockWeftOrigdstKey
		ov sockWeftOrigdst
	)
	n = 0
	it = d.objs.WeftOrigdst.Iterate()
	for it.Next(&ok, &ov) {
		if n++; n <= dumpLimit {
			fmt.Fprintf(&b, "  %v -> %v: orig %v service %d cgroup %d\n",
				netip.AddrPortFrom(addrFrom16(ok.SrcAddr), ok.SrcPort), netip.AddrPortFrom(addrFrom16(ok.DstAddr), ok.DstPort),
				netip.AddrPortFrom(addrFrom16(ov.Addr), ov.Port), ov.ServiceId, ov.CgroupId)
		}
	}
	if err := it.Err(); err != nil {
		fmt.Fprintf(&b, "  (iteration stopped: %v)\n", err)
	}
	fmt.Fprintf(&b, "  (%d entries)\n", n)

	if cfg.Accelerate {
		fmt.Fprintf(&b, "\n%s (key: socket's own view, local -> remote):\n", sockMapWeftAccel)
		acc, err := d.accelEntries(dumpLimit)
		if err != nil {
			fmt.Fprintf(&b, "  (iteration stopped: %v)\n", err)
		}
		for _, e := range acc {
			fmt.Fprintf(&b, "  netns %d %v -> %v: cookie %d\n", e.key.Netns,
				netip.AddrPortFrom(addrFrom16(e.key.SrcAddr), e.key.SrcPort),
				netip.AddrPortFrom(addrFrom16(e.key.DstAddr), e.key.DstPort), e.cookie)
		}
		fmt.Fprintf(&b, "  (%d entries shown, at most %d)\n", len(acc), dumpLimit)
	}

	c, err := d.readCounters()
	if err != nil {
		return "", fmt.Errorf("dump: %w", err)
	}
	fmt.Fprintf(&b, "\n%s: %+v\n", sockMapWeftCounters, c)
	fmt.Fprintf(&b, "%s: socket storage (not iterable); %s: ring buffer\n", sockMapWeftSockstate, sockMapWeftEvents)
	return b.String(), nil
}
