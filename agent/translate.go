// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"path"
	"slices"

	"github.com/weft-mesh/weft/agent/datapath"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

// firstAutoWorkloadID is the first id the agent assigns to a workload that
// has none (a VM workload of the configuration, or a state file workload
// with id 0). The controller numbers its workloads from 1, so the two ranges
// meet only on nodes with two billion workloads; a collision is still
// detected and resolved in favour of the explicit id.
const firstAutoWorkloadID = 1 << 31

// desired is one reconcile's input, as translated from the node state and
// the workloads, with the names the telemetry and the debug endpoint need.
type desired struct {
	Version   string
	Node      string
	Workloads []Workload
	State     datapath.State
	// Records are the DNS answers: virtual service name → addresses.
	Records map[string][]netip.Addr
	// Skipped are the workloads left out, with the reason.
	Skipped []skippedWorkload

	workloadNames map[uint32]workloadName
	serviceNames  map[uint32]serviceName
	// source is the node state it was translated from.
	source *nodeapiv1.NodeState
}

type workloadName struct{ mesh, virtualNode string }

type serviceName struct{ mesh, name string }

type skippedWorkload struct {
	CgroupPath string `json:"cgroupPath"`
	Reason     string `json:"reason"`
}

// frontend is what identifies a datapath service: one address and port.
type frontend struct {
	addr  netip.Addr
	port  uint16
	proto datapath.Protocol
}

// translator turns node states into datapath states. It keeps the ids it
// assigned, so that a service address and port, or a workload without an
// explicit id, keeps its id across reconciles for as long as it exists.
// Only a successful translation changes them.
type translator struct {
	serviceIDs   map[frontend]uint32
	nextService  uint32
	workloadIDs  map[string]uint32 // cgroup path → assigned id
	nextWorkload uint32
}

func newTranslator() *translator {
	return &translator{
		serviceIDs:   map[frontend]uint32{},
		nextService:  1,
		workloadIDs:  map[string]uint32{},
		nextWorkload: firstAutoWorkloadID,
	}
}

// translate computes the datapath state of ns and workloads (the merged
// workloads, with cgroup ids) and the DNS records. dns is the agent's
// resolver, which workloads of DROP_ALL meshes may always reach. Every
// problem of ns is reported, each naming the mesh, service or workload.
//
// Each address of a service times each of its ports is one datapath
// service, with an id of its own: telemetry reports that id, and the agent
// maps it back to the virtual service.
func (t *translator) translate(ns *nodeapiv1.NodeState, workloads []Workload, dns netip.AddrPort) (*desired, error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	d := &desired{
		Version:       ns.GetVersion(),
		Node:          ns.GetNode(),
		Records:       map[string][]netip.Addr{},
		workloadNames: map[uint32]workloadName{},
		serviceNames:  map[uint32]serviceName{},
	}

	// Meshes.
	meshes := map[string]*nodeapiv1.Mesh{}
	meshByID := map[uint32]string{}
	for i, m := range ns.GetMeshes() {
		name := m.GetName()
		if name == "" {
			fail("meshes[%d]: name is required", i)
			continue
		}
		if _, dup := meshes[name]; dup {
			fail("mesh %q: listed twice", name)
			continue
		}
		meshes[name] = m
		switch other, dup := meshByID[m.GetId()]; {
		case m.GetId() == 0:
			fail("mesh %q: id 0 is reserved (ids start at 1)", name)
		case dup:
			fail("mesh %q: id %d is also mesh %q's", name, m.GetId(), other)
		default:
			meshByID[m.GetId()] = name
		}
	}

	// Egress rules of DROP_ALL meshes, with the agent's resolver.
	type ruleKey struct {
		mesh   uint32
		prefix netip.Prefix
		port   uint16
	}
	rules := map[ruleKey]bool{}
	for _, m := range ns.GetMeshes() {
		if !m.GetDropAll() || m.GetId() == 0 {
			for j, a := range m.GetAllowed() {
				if _, err := parseDestination(a); err != nil {
					fail("mesh %q: allowed[%d]: %w", m.GetName(), j, err)
				}
			}
			continue
		}
		for j, a := range m.GetAllowed() {
			r, err := parseDestination(a)
			if err != nil {
				fail("mesh %q: allowed[%d]: %w", m.GetName(), j, err)
				continue
			}
			r.MeshID = m.GetId()
			rules[ruleKey{r.MeshID, r.Prefix, r.Port}] = true
		}
		if dns.IsValid() {
			rules[ruleKey{m.GetId(), netip.PrefixFrom(dns.Addr(), dns.Addr().BitLen()), dns.Port()}] = true
		}
	}
	for k := range rules {
		d.State.Egress = append(d.State.Egress, datapath.EgressRule{MeshID: k.mesh, Prefix: k.prefix, Port: k.port})
	}
	slices.SortFunc(d.State.Egress, func(a, b datapath.EgressRule) int {
		return cmp.Or(cmp.Compare(a.MeshID, b.MeshID), a.Prefix.Addr().Compare(b.Prefix.Addr()),
			cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()), cmp.Compare(a.Port, b.Port))
	})

	// Services: one datapath service per address and port.
	type entry struct {
		svc  datapath.Service
		name serviceName
	}
	var entries []entry
	owners := map[frontend]string{}
	for i, s := range ns.GetServices() {
		name := s.GetName()
		if name == "" {
			fail("services[%d]: name is required", i)
			continue
		}
		label := fmt.Sprintf("service %q", name)
		if s.GetMesh() != "" {
			label = fmt.Sprintf("service %q (mesh %q)", name, s.GetMesh())
		}
		var addrs []netip.Addr
		for _, a := range s.GetAddresses() {
			ip, err := netip.ParseAddr(a)
			if err != nil || ip.Zone() != "" {
				fail("%s: address %q: want an IPv4 or IPv6 address", label, a)
				continue
			}
			if ip = ip.Unmap(); !slices.Contains(addrs, ip) {
				addrs = append(addrs, ip)
			}
		}
		if len(s.GetAddresses()) == 0 {
			fail("%s: has no address", label)
		}
		if len(addrs) > 0 {
			d.Records[name] = append(d.Records[name], addrs...)
		}
		for _, p := range s.GetPorts() {
			port, proto, mode, backends, err := parsePort(p)
			if err != nil {
				fail("%s: %w", label, err)
				continue
			}
			for _, a := range addrs {
				fe := frontend{addr: a, port: port, proto: proto}
				if other, dup := owners[fe]; dup {
					fail("%s: %s/%s is also %s's", label, netip.AddrPortFrom(a, port), protoName(proto), other)
					continue
				}
				owners[fe] = label
				svc := datapath.Service{Addr: a, Port: port, Proto: proto, Mode: mode}
				if mode == datapath.ModeL4 {
					// A connect4 program cannot rewrite to an IPv6 backend nor
					// connect6 to an IPv4 one: each address family of a
					// dual-stack service takes the backends of its family.
					for _, b := range backends {
						if b.Addr.Addr().Is4() == a.Is4() {
							svc.Backends = append(svc.Backends, b)
						}
					}
				}
				entries = append(entries, entry{svc: svc, name: serviceName{mesh: s.GetMesh(), name: name}})
			}
		}
	}

	// Workloads.
	explicit := map[uint32]string{}
	byCgroup := map[uint64]string{}
	var kept []Workload
	for _, w := range workloads {
		p := path.Clean(w.CgroupPath)
		m, ok := meshes[w.Mesh]
		switch {
		case w.Mesh == "":
			fail("workload %s: mesh is required", p)
			continue
		case !ok:
			// A configured VM workload may name a mesh before the state
			// file has it; it stays unmeshed until then.
			d.Skipped = append(d.Skipped, skippedWorkload{CgroupPath: p, Reason: fmt.Sprintf("mesh %q is not in the node state", w.Mesh)})
			continue
		case m.GetId() == 0:
			continue // reported with the mesh
		case w.CgroupID == 0:
			fail("workload %s: has no cgroup id", p)
			continue
		}
		if other, dup := byCgroup[w.CgroupID]; dup {
			fail("workload %s: is the same cgroup (id %d) as workload %s", p, w.CgroupID, other)
			continue
		}
		byCgroup[w.CgroupID] = p
		if w.ID != 0 {
			if other, dup := explicit[w.ID]; dup {
				fail("workload %s: id %d is also workload %s's", p, w.ID, other)
				continue
			}
			explicit[w.ID] = p
		}
		w.CgroupPath = p
		kept = append(kept, w)
	}

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	// Ids: only now, on success, are the tables replaced.
	serviceIDs, nextService := assignIDs(t.serviceIDs, t.nextService, 1, nil,
		len(entries), func(i int) frontend {
			s := entries[i].svc
			return frontend{addr: s.Addr, port: s.Port, proto: s.Proto}
		})
	for i := range entries {
		e := &entries[i]
		e.svc.ID = serviceIDs[frontend{addr: e.svc.Addr, port: e.svc.Port, proto: e.svc.Proto}]
		d.serviceNames[e.svc.ID] = e.name
		d.State.Services = append(d.State.Services, e.svc)
	}
	var auto []int
	for i, w := range kept {
		if w.ID == 0 {
			auto = append(auto, i)
		}
	}
	workloadIDs, nextWorkload := assignIDs(t.workloadIDs, t.nextWorkload, firstAutoWorkloadID, explicit,
		len(auto), func(i int) string { return kept[auto[i]].CgroupPath })
	for _, i := range auto {
		kept[i].ID = workloadIDs[kept[i].CgroupPath]
	}
	for _, w := range kept {
		m := meshes[w.Mesh]
		d.State.Workloads = append(d.State.Workloads, datapath.Workload{
			CgroupID: w.CgroupID,
			ID:       w.ID,
			MeshID:   m.GetId(),
			DropAll:  m.GetDropAll(),
		})
		d.workloadNames[w.ID] = workloadName{mesh: w.Mesh, virtualNode: w.VirtualNode}
	}
	d.Workloads = kept
	t.serviceIDs, t.nextService = serviceIDs, nextService
	t.workloadIDs, t.nextWorkload = workloadIDs, nextWorkload

	slices.SortFunc(d.State.Services, func(a, b datapath.Service) int {
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Proto, b.Proto))
	})
	slices.SortFunc(d.State.Workloads, func(a, b datapath.Workload) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(d.Workloads, func(a, b Workload) int { return cmp.Compare(a.ID, b.ID) })
	for name, addrs := range d.Records {
		slices.SortFunc(addrs, netip.Addr.Compare)
		d.Records[name] = slices.Compact(addrs)
	}
	return d, nil
}

// assignIDs gives each of the n keys an id: the one it had in old, unless
// reserved holds it, otherwise a fresh one counted from next (wrapping to
// first after the largest uint32), skipping ids in use. It returns the new
// table, holding only the n keys, and the next counter.
func assignIDs[K comparable](old map[K]uint32, next, first uint32, reserved map[uint32]string, n int, key func(int) K) (map[K]uint32, uint32) {
	ids := make(map[K]uint32, n)
	used := map[uint32]bool{}
	for i := range n {
		k := key(i)
		if id, ok := old[k]; ok && !used[id] {
			if _, taken := reserved[id]; !taken {
				ids[k] = id
				used[id] = true
			}
		}
	}
	for i := range n {
		k := key(i)
		if _, ok := ids[k]; ok {
			continue
		}
		for {
			id := next
			if next == math.MaxUint32 {
				next = first
			} else {
				next++
			}
			_, taken := reserved[id]
			if !used[id] && !taken {
				ids[k] = id
				used[id] = true
				break
			}
		}
	}
	return ids, next
}

// parsePort checks a service port and parses its backends.
func parsePort(p *nodeapiv1.ServicePort) (uint16, datapath.Protocol, datapath.Mode, []datapath.Backend, error) {
	if p.GetPort() == 0 || p.GetPort() > math.MaxUint16 {
		return 0, 0, 0, nil, fmt.Errorf("port %d: not a port", p.GetPort())
	}
	port := uint16(p.GetPort())
	var proto datapath.Protocol
	switch p.GetProtocol() {
	case nodeapiv1.Protocol_PROTOCOL_UNSPECIFIED, nodeapiv1.Protocol_PROTOCOL_TCP:
		proto = datapath.TCP
	case nodeapiv1.Protocol_PROTOCOL_UDP:
		proto = datapath.UDP
	default:
		return 0, 0, 0, nil, fmt.Errorf("port %d: unknown protocol %d", port, p.GetProtocol())
	}
	var mode datapath.Mode
	switch p.GetMode() {
	case nodeapiv1.Mode_MODE_L4:
		mode = datapath.ModeL4
	case nodeapiv1.Mode_MODE_L7:
		mode = datapath.ModeL7
		if proto != datapath.TCP {
			return 0, 0, 0, nil, fmt.Errorf("port %d: L7 needs TCP", port)
		}
		// Backends of L7 ports are the proxy's business: ignored.
		return port, proto, mode, nil, nil
	default:
		return 0, 0, 0, nil, fmt.Errorf("port %d: mode is required (L4 or L7)", port)
	}
	var backends []datapath.Backend
	var errs []error
	for _, b := range p.GetBackends() {
		ap, err := netip.ParseAddrPort(b.GetAddress())
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
			errs = append(errs, fmt.Errorf("port %d: backend %q: want ip:port", port, b.GetAddress()))
			continue
		}
		if b.GetWeight() == 0 {
			// Weight 0 is a drained target (a canary at 0%): it gets no
			// connections, so it is left out.
			continue
		}
		backends = append(backends, datapath.Backend{Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), Weight: b.GetWeight()})
	}
	if len(backends) > datapath.MaxSlots {
		errs = append(errs, fmt.Errorf("port %d: %d backends with weight: at most %d", port, len(backends), datapath.MaxSlots))
	}
	if len(errs) > 0 {
		return 0, 0, 0, nil, errors.Join(errs...)
	}
	return port, proto, mode, backends, nil
}

// parseDestination reads an allowed destination: a CIDR (or a bare address,
// taken as a host prefix) and a port (0: any). The protocol is not kept: the
// datapath's egress rules allow TCP and UDP alike.
func parseDestination(a *nodeapiv1.Destination) (datapath.EgressRule, error) {
	if a.GetPort() > math.MaxUint16 {
		return datapath.EgressRule{}, fmt.Errorf("port %d: not a port", a.GetPort())
	}
	pfx, err := netip.ParsePrefix(a.GetCidr())
	if err != nil {
		ip, err2 := netip.ParseAddr(a.GetCidr())
		if err2 != nil || ip.Zone() != "" {
			return datapath.EgressRule{}, fmt.Errorf("cidr %q: want a CIDR such as 10.0.0.0/8", a.GetCidr())
		}
		pfx = netip.PrefixFrom(ip, ip.BitLen())
	}
	if pfx.Addr().Is4In6() {
		if pfx.Bits() < 96 {
			return datapath.EgressRule{}, fmt.Errorf("cidr %q: mixes IPv4 and IPv6", a.GetCidr())
		}
		pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
	}
	return datapath.EgressRule{Prefix: pfx.Masked(), Port: uint16(a.GetPort())}, nil
}

func protoName(p datapath.Protocol) string {
	if p == datapath.UDP {
		return "udp"
	}
	return "tcp"
}
