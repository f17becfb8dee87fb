// SPDX-License-Identifier: Apache-2.0

package translate

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"hash/fnv"
	"net/netip"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/weft-mesh/weft/controlplane/xds/vip"
	"github.com/weft-mesh/weft/pkg/appmesh"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

// maxExactScale bounds the common multiple of endpoint counts used to
// multiply L4 weights out exactly; beyond it weights are rounded.
const maxExactScale = 1000

// maxL4Backends is the most weighted backends the agent takes for one L4
// port (docs/agent.md); a port with more is served by the proxy instead.
const maxL4Backends = 256

// NodeState computes the datapath state of one (physical) node from the
// workloads running on it:
//
//   - Meshes: the meshes of the workloads, with DROP_ALL.
//   - Services: every virtual service a workload's virtual node lists as a
//     backend, with its addresses and provider ports. A port is MODE_L4
//     when the kernel can serve it alone: its protocol is tcp, no TLS
//     applies on any target (no client policy of a workload of this node
//     for the service, no STRICT or PERMISSIVE listener on the target), and
//     the registry manages every target's endpoints, and there are at most
//     256 backends (the agent's limit). Its backends are the
//     healthy endpoints of the targets of the port's first route, weighted
//     route weight x equal endpoint share. Every other port is MODE_L7.
//   - Workloads, with their virtual node's listener ports, their addresses
//     and the callers allowed through the tunnel (allowedCallers).
//
// Version is a content hash of the rest.
func (w *World) NodeState(node string, workloads []Workload) (*nodeapiv1.NodeState, []Problem) {
	st := &nodeapiv1.NodeState{Node: node}
	var probs []Problem
	wls := slices.Clone(workloads)
	slices.SortFunc(wls, func(a, b Workload) int { return cmp.Compare(a.ID, b.ID) })

	meshNames := map[string]bool{}
	type svcUse struct {
		mesh, name string
		policies   []*appmesh.ClientPolicy
	}
	uses := map[vip.Key]*svcUse{}
	for _, wl := range wls {
		meshNames[wl.Mesh] = true
		out := &nodeapiv1.Workload{Id: wl.ID, CgroupPath: wl.CgroupPath, Mesh: wl.Mesh, VirtualNode: wl.VirtualNode}
		for _, a := range wl.Addresses {
			out.Addresses = append(out.Addresses, a.Unmap().String())
		}
		st.Workloads = append(st.Workloads, out)
		m := w.meshes[wl.Mesh]
		if m == nil || m.nodes[wl.VirtualNode] == nil {
			continue
		}
		vn := m.nodes[wl.VirtualNode]
		for _, pm := range portMappings(vn.Listeners, func(l *appmesh.Listener) *appmesh.PortMapping { return l.PortMapping }) {
			out.ListenerPorts = append(out.ListenerPorts, uint32(*pm.Port))
		}
		slices.Sort(out.ListenerPorts)
		out.AllowedCallers = w.allowedCallers(m, wl.VirtualNode)
		for _, b := range backends(vn) {
			k := vip.Key{Mesh: wl.Mesh, Service: b.service}
			u := uses[k]
			if u == nil {
				u = &svcUse{mesh: wl.Mesh, name: b.service}
				uses[k] = u
			}
			u.policies = append(u.policies, b.policy)
		}
	}

	names := make([]string, 0, len(meshNames))
	for n := range meshNames {
		names = append(names, n)
	}
	slices.Sort(names)
	ids := meshIDs(names)
	for _, n := range names {
		out := &nodeapiv1.Mesh{Name: n, Id: ids[n], DropAll: true}
		if m := w.meshes[n]; m != nil {
			out.DropAll = !m.egressAllowAll()
		}
		st.Meshes = append(st.Meshes, out)
	}

	keys := make([]vip.Key, 0, len(uses))
	for k := range uses {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b vip.Key) int { return cmp.Or(cmp.Compare(a.Mesh, b.Mesh), cmp.Compare(a.Service, b.Service)) })
	for _, k := range keys {
		u := uses[k]
		m := w.meshes[u.mesh]
		if m == nil || m.services[u.name] == nil {
			continue // a dangling backend
		}
		ref := appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: u.mesh, Name: u.name}
		addrs := w.in.Addresses[k].List()
		if len(addrs) == 0 {
			probs = append(probs, Problem{Ref: ref, Message: "no service address allocated"})
			continue
		}
		ports, prob := w.servicePorts(m, u.name)
		if prob != nil {
			probs = append(probs, *prob)
			continue
		}
		svc := &nodeapiv1.Service{Name: u.name, Mesh: u.mesh}
		for _, a := range addrs {
			svc.Addresses = append(svc.Addresses, a.String())
		}
		for _, sp := range ports {
			svc.Ports = append(svc.Ports, w.servicePortState(m, sp, u.policies))
		}
		st.Services = append(st.Services, svc)
	}
	st.Version = stateVersion(st)
	sortProblems(probs)
	return st, probs
}

// servicePortState decides the mode of a service port and, for L4, its
// backends.
func (w *World) servicePortState(m *mesh, sp servicePort, policies []*appmesh.ClientPolicy) *nodeapiv1.ServicePort {
	out := &nodeapiv1.ServicePort{Port: uint32(sp.port), Protocol: nodeapiv1.Protocol_PROTOCOL_TCP, Mode: nodeapiv1.Mode_MODE_L7}
	if sp.proto != appmesh.ProtocolTCP {
		return out
	}
	targets := sp.targets()
	if len(targets) == 0 {
		return out
	}
	type share struct {
		t   target
		eps []Endpoint
	}
	var shares []share
	for _, t := range targets {
		vn := m.nodes[t.node]
		l, err := nodeListener(vn, t.port)
		if err != nil {
			return out
		}
		if l.TLS != nil && (l.TLS.Mode == appmesh.TLSStrict || l.TLS.Mode == appmesh.TLSPermissive) {
			return out
		}
		for _, p := range policies {
			if applyingPolicy(p, t.port) != nil {
				return out
			}
		}
		if w.in.Endpoints == nil {
			return out
		}
		eps, managed := w.in.Endpoints.Endpoints(NodeKey{Mesh: m.name, Name: t.node})
		if !managed {
			return out
		}
		var healthy []Endpoint
		for _, ep := range eps {
			if ep.Healthy && ep.Port == uint32(t.port) && ep.Address.IsValid() {
				healthy = append(healthy, ep)
			}
		}
		if t.weight > 0 && len(healthy) > 0 {
			shares = append(shares, share{t: t, eps: healthy})
		}
	}
	total := 0
	for _, s := range shares {
		total += len(s.eps)
	}
	if total > maxL4Backends {
		return out
	}
	out.Mode = nodeapiv1.Mode_MODE_L4
	scale := uint64(1)
	for _, s := range shares {
		scale = lcm(scale, uint64(len(s.eps)))
		if scale > maxExactScale {
			break
		}
	}
	for _, s := range shares {
		n := uint64(len(s.eps))
		var wgt uint64
		if scale <= maxExactScale {
			wgt = uint64(s.t.weight) * scale / n
		} else {
			wgt = max(1, (uint64(s.t.weight)*maxExactScale+n/2)/n)
		}
		for _, ep := range s.eps {
			out.Backends = append(out.Backends, &nodeapiv1.Backend{
				Address:     netip.AddrPortFrom(ep.Address.Unmap(), uint16(s.t.port)).String(),
				Weight:      uint32(min(wgt, 1<<32-1)),
				VirtualNode: s.t.node,
			})
		}
	}
	var g uint64
	for _, b := range out.Backends {
		g = gcd(g, uint64(b.Weight))
	}
	for _, b := range out.Backends {
		if g > 1 {
			b.Weight /= uint32(g)
		}
	}
	slices.SortFunc(out.Backends, func(a, b *nodeapiv1.Backend) int {
		return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(a.VirtualNode, b.VirtualNode))
	})
	return out
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func lcm(a, b uint64) uint64 { return a / gcd(a, b) * b }

// meshIDs gives each mesh a small number derived from its name (FNV-1a,
// never 0), so that it stays the same as meshes come and go; a collision
// moves the later name (in sorted order) to the next free number.
func meshIDs(sorted []string) map[string]uint32 {
	ids := map[string]uint32{}
	used := map[uint32]bool{}
	for _, n := range sorted {
		h := fnv.New32a()
		h.Write([]byte(n))
		id := h.Sum32()
		for id == 0 || used[id] {
			id++
		}
		used[id] = true
		ids[n] = id
	}
	return ids
}

// stateVersion hashes a node state without its version.
func stateVersion(st *nodeapiv1.NodeState) string {
	c := proto.Clone(st).(*nodeapiv1.NodeState)
	c.Version = ""
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
