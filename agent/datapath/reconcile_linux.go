// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
)

const (
	wlDropAll = 1 // WEFT_WL_DROP_ALL

	egressAny    = 1 // WEFT_EGRESS_ANY
	egressOwnAny = 2 // WEFT_EGRESS_OWN_ANY
)

// current is what the maps hold now, in the compiled form, plus the raw
// slot contents (which may hold stale slots beyond a frontend's count).
type current struct {
	compiled
	slots map[uint32]map[uint32]netip.AddrPort // service id -> slot -> backend
}

func addrFrom16(b [16]uint8) netip.Addr {
	return netip.AddrFrom16(b).Unmap()
}

func svcKey(k frontKey) sockWeftSvcKey {
	return sockWeftSvcKey{Addr: k.Addr.As16(), Port: k.Port, Proto: uint8(k.Proto)}
}

func egressMapKey(k egressKey) sockWeftEgressKey {
	return sockWeftEgressKey{
		Prefixlen: uint32(32 + k.Prefix.Bits()),
		MeshId:    k.MeshID,
		Addr:      k.Prefix.Addr().As16(),
	}
}

func egressMapValue(e egressEntry) sockWeftEgress {
	var v sockWeftEgress
	if e.Any {
		v.Flags |= egressAny
	}
	if e.OwnAny {
		v.Flags |= egressOwnAny
	}
	n := copy(v.Ports[:], e.Own)
	n += copy(v.Ports[n:], e.Inherited)
	v.Nports = uint16(n)
	v.Nown = uint16(len(e.Own))
	return v
}

func workloadValue(w Workload) sockWeftWorkload {
	v := sockWeftWorkload{Id: w.ID, MeshId: w.MeshID}
	if w.DropAll {
		v.Flags |= wlDropAll
	}
	return v
}

// read loads the current map contents.
func (d *Datapath) read() (current, error) {
	cur := current{
		compiled: compiled{
			services:  make(map[frontKey]frontend),
			workloads: make(map[uint64]Workload),
			egress:    make(map[egressKey]egressEntry),
		},
		slots: make(map[uint32]map[uint32]netip.AddrPort),
	}
	var (
		bk sockWeftBackendKey
		bv sockWeftBackend
	)
	it := d.objs.WeftBackends.Iterate()
	for it.Next(&bk, &bv) {
		if cur.slots[bk.ServiceId] == nil {
			cur.slots[bk.ServiceId] = make(map[uint32]netip.AddrPort)
		}
		cur.slots[bk.ServiceId][bk.Slot] = netip.AddrPortFrom(addrFrom16(bv.Addr), bv.Port)
	}
	if err := it.Err(); err != nil {
		return current{}, fmt.Errorf("read backends: %w", err)
	}

	var (
		sk sockWeftSvcKey
		sv sockWeftSvc
	)
	it = d.objs.WeftServices.Iterate()
	for it.Next(&sk, &sv) {
		f := frontend{ID: sv.Id, Mode: Mode(sv.Mode)}
		for i := range min(sv.Count, MaxSlots+1) {
			ap, ok := cur.slots[sv.Id][i]
			if !ok {
				// A hole: not written by Reconcile; make the
				// frontend differ so that it is rewritten.
				ap = netip.AddrPort{}
			}
			f.Slots = append(f.Slots, ap)
		}
		cur.services[frontKey{Addr: addrFrom16(sk.Addr), Port: sk.Port, Proto: Protocol(sk.Proto)}] = f
	}
	if err := it.Err(); err != nil {
		return current{}, fmt.Errorf("read services: %w", err)
	}

	var (
		wk uint64
		wv sockWeftWorkload
	)
	it = d.objs.WeftWorkloads.Iterate()
	for it.Next(&wk, &wv) {
		cur.workloads[wk] = Workload{CgroupID: wk, ID: wv.Id, MeshID: wv.MeshId, DropAll: wv.Flags&wlDropAll != 0}
	}
	if err := it.Err(); err != nil {
		return current{}, fmt.Errorf("read workloads: %w", err)
	}

	var (
		ek sockWeftEgressKey
		ev sockWeftEgress
	)
	it = d.objs.WeftEgress.Iterate()
	for it.Next(&ek, &ev) {
		bits := int(ek.Prefixlen) - 32
		if bits < 0 || bits > 128 {
			continue
		}
		k := egressKey{MeshID: ek.MeshId, Prefix: netip.PrefixFrom(netip.AddrFrom16(ek.Addr), bits)}
		n := min(int(ev.Nports), len(ev.Ports))
		own := min(int(ev.Nown), n)
		e := egressEntry{
			Any:    ev.Flags&egressAny != 0,
			OwnAny: ev.Flags&egressOwnAny != 0,
		}
		if own > 0 {
			e.Own = slices.Clone(ev.Ports[:own])
		}
		if n > own {
			e.Inherited = slices.Clone(ev.Ports[own:n])
		}
		cur.egress[k] = e
	}
	if err := it.Err(); err != nil {
		return current{}, fmt.Errorf("read egress: %w", err)
	}
	return cur, nil
}

// Reconcile makes the maps equal to s by difference: it writes what differs
// and deletes what s does not hold, never flushing. The order keeps
// concurrent connects safe: egress rules and services first (for each
// service its backend slots, then the frontend with its slot count, so a
// reader never sees a count beyond the written slots), then workloads; then
// deletions in reverse: workloads, frontends, the slots beyond each new
// count, egress rules. s is validated first; an invalid s changes nothing.
// A failed write leaves the maps partly reconciled and returns the error; the
// next Reconcile completes the job.
func (d *Datapath) Reconcile(ctx context.Context, s State) (Changes, error) {
	var ch Changes
	want, err := compile(s)
	if err != nil {
		return ch, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.closedErr(); err != nil {
		return ch, err
	}
	cur, err := d.read()
	if err != nil {
		return ch, fmt.Errorf("reconcile: %w", err)
	}
	steps := []func(*Changes) error{
		func(ch *Changes) error { return d.upsertEgress(want, cur, ch) },
		func(ch *Changes) error { return d.upsertServices(want, cur, ch) },
		func(ch *Changes) error { return d.upsertWorkloads(want, cur, ch) },
		func(ch *Changes) error { return d.deleteWorkloads(want, cur, ch) },
		func(ch *Changes) error { return d.deleteServices(want, cur, ch) },
		func(ch *Changes) error { return d.deleteEgress(want, cur, ch) },
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return ch, fmt.Errorf("reconcile: %w", err)
		}
		if err := step(&ch); err != nil {
			return ch, fmt.Errorf("reconcile: %w", err)
		}
	}
	if ch != (Changes{}) {
		d.log.Info("datapath reconciled",
			"services_upserted", ch.ServicesUpserted, "services_deleted", ch.ServicesDeleted,
			"workloads_upserted", ch.WorkloadsUpserted, "workloads_deleted", ch.WorkloadsDeleted,
			"egress_upserted", ch.EgressUpserted, "egress_deleted", ch.EgressDeleted)
	}
	return ch, nil
}

func (d *Datapath) upsertEgress(want compiled, cur current, ch *Changes) error {
	for k, e := range want.egress {
		if old, ok := cur.egress[k]; ok && old.equal(e) {
			continue
		}
		if err := d.objs.WeftEgress.Put(egressMapKey(k), egressMapValue(e)); err != nil {
			return fmt.Errorf("write egress %v of mesh %d: %w", prefixUser(k.Prefix), k.MeshID, err)
		}
		ch.EgressUpserted++
	}
	return nil
}

func (d *Datapath) deleteEgress(want compiled, cur current, ch *Changes) error {
	for k := range cur.egress {
		if _, ok := want.egress[k]; ok {
			continue
		}
		if err := d.objs.WeftEgress.Delete(egressMapKey(k)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete egress %v of mesh %d: %w", prefixUser(k.Prefix), k.MeshID, err)
		}
		ch.EgressDeleted++
	}
	return nil
}

// upsertServices writes, per changed service, the slots that differ and then
// the frontend.
func (d *Datapath) upsertServices(want compiled, cur current, ch *Changes) error {
	for k, f := range want.services {
		old, exists := cur.services[k]
		wrote := false
		for i, ap := range f.Slots {
			if cur.slots[f.ID][uint32(i)] == ap {
				continue
			}
			bk := sockWeftBackendKey{ServiceId: f.ID, Slot: uint32(i)}
			bv := sockWeftBackend{Addr: ap.Addr().As16(), Port: ap.Port()}
			if err := d.objs.WeftBackends.Put(bk, bv); err != nil {
				return fmt.Errorf("write slot %d of service %d: %w", i, f.ID, err)
			}
			wrote = true
		}
		if !exists || !old.equal(f) {
			v := sockWeftSvc{Id: f.ID, Count: uint32(len(f.Slots)), Mode: uint8(f.Mode)}
			if err := d.objs.WeftServices.Put(svcKey(k), v); err != nil {
				return fmt.Errorf("write service %d: %w", f.ID, err)
			}
			wrote = true
		}
		if wrote {
			ch.ServicesUpserted++
		}
	}
	return nil
}

// deleteServices removes frontends that are not wanted, then every slot
// beyond its service's wanted count (all slots of services that are gone).
func (d *Datapath) deleteServices(want compiled, cur current, ch *Changes) error {
	for k, f := range cur.services {
		if _, ok := want.services[k]; ok {
			continue
		}
		if err := d.objs.WeftServices.Delete(svcKey(k)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete service %d: %w", f.ID, err)
		}
		ch.ServicesDeleted++
	}
	wantCount := make(map[uint32]uint32, len(want.services))
	for _, f := range want.services {
		wantCount[f.ID] = uint32(len(f.Slots))
	}
	for id, slots := range cur.slots {
		for slot := range slots {
			if slot < wantCount[id] {
				continue
			}
			bk := sockWeftBackendKey{ServiceId: id, Slot: slot}
			if err := d.objs.WeftBackends.Delete(bk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("delete slot %d of service %d: %w", slot, id, err)
			}
		}
	}
	return nil
}

func (d *Datapath) upsertWorkloads(want compiled, cur current, ch *Changes) error {
	for id, w := range want.workloads {
		if old, ok := cur.workloads[id]; ok && old == w {
			continue
		}
		if err := d.objs.WeftWorkloads.Put(id, workloadValue(w)); err != nil {
			return fmt.Errorf("write workload %d (cgroup %d): %w", w.ID, id, err)
		}
		ch.WorkloadsUpserted++
	}
	return nil
}

func (d *Datapath) deleteWorkloads(want compiled, cur current, ch *Changes) error {
	for id, w := range cur.workloads {
		if _, ok := want.workloads[id]; ok {
			continue
		}
		if err := d.objs.WeftWorkloads.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete workload %d (cgroup %d): %w", w.ID, id, err)
		}
		ch.WorkloadsDeleted++
	}
	return nil
}

// Snapshot reads the maps back as a State: services sorted by address, port
// and protocol, with backend weights reconstructed from the slots (a
// backend's weight is its slot count, so weights come back divided by their
// greatest common divisor, or scaled to MaxSlots); workloads sorted by cgroup
// id; egress rules sorted, one per own port of each prefix. Reconcile of a
// Snapshot changes nothing.
func (d *Datapath) Snapshot() (State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.closedErr(); err != nil {
		return State{}, err
	}
	cur, err := d.read()
	if err != nil {
		return State{}, fmt.Errorf("snapshot: %w", err)
	}
	return cur.state(), nil
}
