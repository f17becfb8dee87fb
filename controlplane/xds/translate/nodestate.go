// SPDX-License-Identifier: Apache-2.0

package translate

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"sync"

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
	return w.CachedNodeState(NewStateCache(), node, workloads)
}

// StateCache keeps the services of node states between calls of
// CachedNodeState, so that a node state is assembled from the services it
// had, and only the services whose endpoints changed are computed again.
// A service of a node state depends only on the compiled resources, on the
// client policies of the workloads that use it and on the endpoints of its
// targets; an entry is used again when the world is a view of the same
// compile and the endpoint source gives the answers it was computed with.
// The result is the same as without a cache, version included. It is safe
// for concurrent use.
type StateCache struct {
	mu       sync.Mutex
	compiled *World // the Compile the entries belong to
	policies map[*appmesh.ClientPolicy]int
	entries  map[serviceUse]*serviceEntry
	plans    map[string]*nodePlan // by node
	callers  map[*appmesh.VirtualNodeSpec]*vnUses
}

// NewStateCache returns an empty cache.
func NewStateCache() *StateCache { return &StateCache{} }

// serviceUse is a virtual service as the workloads of a node use it: the
// indexes of their (non-nil) client policies, sorted.
type serviceUse struct {
	key      vip.Key
	policies string
}

type serviceEntry struct {
	svc  *nodeapiv1.Service // nil: left out (dangling backend or problem)
	prob *Problem
	deps deps
	hash [sha256.Size]byte // of svc, deterministic marshalling
	// checked is the memoized source the deps were last found current
	// in: within one pass over a view, an entry is checked once.
	checked *memo
}

// nodePlan is what a node state takes from its workloads alone, and the
// state last assembled from it.
type nodePlan struct {
	workloads []Workload // sorted by id
	header    []byte     // the state without services and version, marshalled
	meshes    []*nodeapiv1.Mesh
	wls       []*nodeapiv1.Workload
	st        *nodeapiv1.NodeState // last assembled; nil before
	uses      []serviceUse         // sorted by service
	policies  [][]*appmesh.ClientPolicy
	entries   []*serviceEntry
	probs     []Problem
}

// CachedNodeState is NodeState with the services of earlier node states
// taken from c where they are still current.
func (w *World) CachedNodeState(c *StateCache, node string, workloads []Workload) (*nodeapiv1.NodeState, []Problem) {
	wls := slices.Clone(workloads)
	slices.SortFunc(wls, func(a, b Workload) int { return cmp.Compare(a.ID, b.ID) })
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reset(w)
	p := c.plans[node]
	if p == nil || !slices.EqualFunc(p.workloads, wls, Workload.Equal) {
		p = c.plan(w, node, wls)
		c.plans[node] = p
	}
	same := p.st != nil
	entries := make([]*serviceEntry, len(p.uses))
	for i, use := range p.uses {
		e := c.current(w, p.entries[i], use, p.policies[i])
		entries[i] = e
		same = same && e == p.entries[i]
	}
	if same {
		return p.st, slices.Clone(p.probs)
	}
	st := &nodeapiv1.NodeState{Node: node, Meshes: p.meshes, Workloads: p.wls}
	var probs []Problem
	h := sha256.New()
	h.Write(p.header)
	for _, e := range entries {
		if e.prob != nil {
			probs = append(probs, *e.prob)
		}
		if e.svc != nil {
			st.Services = append(st.Services, e.svc)
			h.Write(e.hash[:])
		}
	}
	st.Version = hex.EncodeToString(h.Sum(nil)[:8])
	sortProblems(probs)
	p.st, p.entries, p.probs = st, entries, probs
	return st, slices.Clone(probs)
}

// plan computes what the state of node takes from its workloads.
func (c *StateCache) plan(w *World, node string, wls []Workload) *nodePlan {
	st := &nodeapiv1.NodeState{Node: node}
	meshNames := map[string]bool{}
	var callers []*vnUses // distinct virtual nodes with backends
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
		if u := c.vnUses(wl.Mesh, vn); len(u.uses) > 0 && !slices.Contains(callers, u) {
			callers = append(callers, u)
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

	p := &nodePlan{workloads: wls, header: marshalHeader(st), meshes: st.Meshes, wls: st.Workloads}
	switch len(callers) {
	case 0:
	case 1:
		// The usual node: one calling virtual node (however many
		// workloads), whose list every node running it shares.
		p.uses, p.policies = callers[0].uses, callers[0].policies
	default:
		uses := map[vip.Key][]*appmesh.ClientPolicy{}
		for _, u := range callers {
			for i, use := range u.uses {
				uses[use.key] = append(uses[use.key], u.policies[i]...)
			}
		}
		keys := slices.SortedFunc(maps.Keys(uses), compareKeys)
		for _, k := range keys {
			p.uses = append(p.uses, c.use(k, uses[k]))
			p.policies = append(p.policies, uses[k])
		}
	}
	p.entries = make([]*serviceEntry, len(p.uses))
	return p
}

func compareKeys(a, b vip.Key) int {
	return cmp.Or(cmp.Compare(a.Mesh, b.Mesh), cmp.Compare(a.Service, b.Service))
}

// vnUses are the services a virtual node's workloads use, sorted, each
// with its client policy.
type vnUses struct {
	uses     []serviceUse
	policies [][]*appmesh.ClientPolicy
}

// vnUses returns (once per virtual node) what a virtual node uses.
func (c *StateCache) vnUses(mesh string, vn *appmesh.VirtualNodeSpec) *vnUses {
	if u, ok := c.callers[vn]; ok {
		return u
	}
	u := &vnUses{}
	for _, b := range backends(vn) { // sorted by service, once each
		pol := []*appmesh.ClientPolicy{b.policy}
		k := vip.Key{Mesh: mesh, Service: b.service}
		u.uses = append(u.uses, c.use(k, pol))
		u.policies = append(u.policies, pol)
	}
	c.callers[vn] = u
	return u
}

// Retain forgets what the cache keeps for nodes not in nodes, so that
// nodes that come and go between compiles do not accumulate.
func (c *StateCache) Retain(nodes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for node := range c.plans {
		if !slices.Contains(nodes, node) {
			delete(c.plans, node)
		}
	}
}

// reset empties the cache when w is not a view of its compile.
func (c *StateCache) reset(w *World) {
	if c.compiled == w.compiled && c.entries != nil {
		return
	}
	c.compiled = w.compiled
	c.policies = map[*appmesh.ClientPolicy]int{}
	c.entries = map[serviceUse]*serviceEntry{}
	c.plans = map[string]*nodePlan{}
	c.callers = map[*appmesh.VirtualNodeSpec]*vnUses{}
}

// use names a service used with policies.
func (c *StateCache) use(k vip.Key, policies []*appmesh.ClientPolicy) serviceUse {
	var idx []int
	for _, p := range policies {
		if p == nil {
			continue // applies to nothing
		}
		i, ok := c.policies[p]
		if !ok {
			i = len(c.policies)
			c.policies[p] = i
		}
		idx = append(idx, i)
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	use := serviceUse{key: k}
	if len(idx) > 0 {
		b := make([]byte, 0, 4*len(idx))
		for _, i := range idx {
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, ',')
		}
		use.policies = string(b)
	}
	return use
}

// current returns the entry of a service use that is current for w's
// endpoints: e (the plan's last one, may be nil) when it is, else the
// cache's, else a new one.
func (c *StateCache) current(w *World, e *serviceEntry, use serviceUse, policies []*appmesh.ClientPolicy) *serviceEntry {
	m, _ := w.in.Endpoints.(*memo)
	valid := func(e *serviceEntry) bool {
		if e == nil {
			return false
		}
		if m != nil && e.checked == m {
			return true
		}
		if !e.deps.current(w.in.Endpoints) {
			return false
		}
		e.checked = m
		return true
	}
	if valid(e) {
		return e
	}
	if e = c.entries[use]; valid(e) {
		return e
	}
	e = w.serviceState(use.key, policies)
	e.checked = m
	c.entries[use] = e
	return e
}

// marshalHeader marshals a message deterministically, length first: a
// node state without services and version, or one service.
func marshalHeader(m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		// Only invalid UTF-8 fails; the strings are names that passed
		// validation. Hash the error so that the version still follows.
		b = []byte(err.Error())
	}
	return fmt.Appendf(nil, "%d:%s", len(b), b)
}

// serviceState computes the node state entry of a virtual service used
// with policies.
func (w *World) serviceState(k vip.Key, policies []*appmesh.ClientPolicy) *serviceEntry {
	e := &serviceEntry{deps: deps{}}
	m := w.meshes[k.Mesh]
	if m == nil || m.services[k.Service] == nil {
		return e // a dangling backend
	}
	ref := appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: k.Mesh, Name: k.Service}
	addrs := w.in.Addresses[k].List()
	if len(addrs) == 0 {
		e.prob = &Problem{Ref: ref, Message: "no service address allocated"}
		return e
	}
	ports, prob := w.servicePorts(m, k.Service)
	if prob != nil {
		e.prob = prob
		return e
	}
	svc := &nodeapiv1.Service{Name: k.Service, Mesh: k.Mesh}
	for _, a := range addrs {
		svc.Addresses = append(svc.Addresses, a.String())
	}
	for _, sp := range ports {
		svc.Ports = append(svc.Ports, w.servicePortState(m, sp, policies, e.deps))
	}
	e.svc = svc
	e.hash = sha256.Sum256(marshalHeader(svc))
	return e
}

// servicePortState decides the mode of a service port and, for L4, its
// backends.
func (w *World) servicePortState(m *mesh, sp servicePort, policies []*appmesh.ClientPolicy, read deps) *nodeapiv1.ServicePort {
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
		key := NodeKey{Mesh: m.name, Name: t.node}
		a := ask(w.in.Endpoints, key)
		read[key] = a
		eps, managed := a.eps, a.managed
		if !managed {
			return out
		}
		eps = cloudMapInstances(vn, eps)
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
