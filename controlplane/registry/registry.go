// SPDX-License-Identifier: Apache-2.0

package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weft-mesh/weft/controlplane/xds/translate"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// DefaultTTL is the lease of a registration when Config.TTL is not set.
const DefaultTTL = 30 * time.Second

// Log keys.
const (
	keyNode      = "node"
	keyInstances = "instances"
	keyTTL       = "ttl"
)

// Config configures a Registry.
type Config struct {
	// TTL is how long a registration lives without a renewal; agents renew
	// every TTL/3. 0 means DefaultTTL.
	TTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.TTL < 0 {
		return errors.New("registry: ttl must not be negative")
	}
	if c.TTL > 0 && c.TTL < 3*time.Millisecond {
		return fmt.Errorf("registry: ttl %s is too short", c.TTL)
	}
	return nil
}

// Instance is one registered workload instance.
type Instance struct {
	// ID is the workload's id within its node; 0 when unassigned.
	ID uint32
	// CgroupPath identifies the workload within its node.
	CgroupPath  string
	Mesh        string
	VirtualNode string
	// Addresses are the IPs it serves on.
	Addresses []netip.Addr
	// Ports are the ports it serves its virtual node's listeners on.
	Ports   []uint32
	Healthy bool
	// Attributes are its Cloud Map attributes (translate.Endpoint's).
	Attributes map[string]string
}

type lease struct {
	instances []Instance     // normalised: sorted, addresses and ports sorted
	tunnel    netip.AddrPort // the node proxy's tunnel listener; invalid: none
	expires   time.Time
}

// Registry holds the registrations of every node. It is safe for concurrent
// use.
type Registry struct {
	ttl time.Duration
	now func() time.Time
	log *slog.Logger

	mu      sync.Mutex
	nodes   map[string]*lease
	managed map[translate.NodeKey]bool // every virtual node ever registered
	view    *View                      // nil when stale
	changed chan struct{}
	// last is the last view built; the next one copies it and computes
	// again only the virtual nodes and nodes that changed since (dirty),
	// and the managed set when it grew.
	last           *View
	dirtyKeys      map[translate.NodeKey]bool
	dirtyNodes     map[string]bool
	managedChanged bool
}

// New returns an empty Registry.
func New(cfg Config, log *slog.Logger) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{
		ttl: cfg.TTL, now: cfg.Now, log: log,
		nodes:     map[string]*lease{},
		managed:   map[translate.NodeKey]bool{},
		changed:   make(chan struct{}, 1),
		dirtyKeys: map[translate.NodeKey]bool{}, dirtyNodes: map[string]bool{},
	}, nil
}

// TTL is the lease of a registration.
func (r *Registry) TTL() time.Duration { return r.ttl }

// Changed receives a value after the registrations changed (coalesced: one
// value stands for any number of changes since the last receive).
func (r *Registry) Changed() <-chan struct{} { return r.changed }

// Register replaces the registration of node with instances and renews its
// lease. It checks the instances first and registers nothing when one is
// wrong. The node registers no tunnel listener (RegisterNode).
func (r *Registry) Register(node string, instances []Instance) error {
	return r.RegisterNode(node, netip.AddrPort{}, instances)
}

// RegisterNode is Register for a node whose proxy serves a tunnel listener
// at tunnel (invalid: none): the endpoints of its instances carry it, so
// that other nodes' proxies reach them through it.
func (r *Registry) RegisterNode(node string, tunnel netip.AddrPort, instances []Instance) error {
	norm, err := normalize(node, instances)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.nodes[node]
	expires := r.now().Add(r.ttl)
	if ok && cur.tunnel == tunnel && slices.EqualFunc(cur.instances, norm, equalInstance) {
		cur.expires = expires
		return nil
	}
	if ok {
		r.dirtyLocked(node, cur.instances)
	}
	r.dirtyLocked(node, norm)
	r.nodes[node] = &lease{instances: norm, tunnel: tunnel, expires: expires}
	for _, in := range norm {
		k := translate.NodeKey{Mesh: in.Mesh, Name: in.VirtualNode}
		if !r.managed[k] {
			r.managed[k] = true
			r.managedChanged = true
		}
	}
	if !ok {
		r.log.Info("registered node", keyNode, node, keyInstances, len(norm))
	} else {
		r.log.Debug("registration changed", keyNode, node, keyInstances, len(norm))
	}
	r.changedLocked()
	return nil
}

// Deregister drops the registration of node, if any.
func (r *Registry) Deregister(node string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.nodes[node]
	if !ok {
		return
	}
	r.dirtyLocked(node, cur.instances)
	delete(r.nodes, node)
	r.log.Info("deregistered node", keyNode, node)
	r.changedLocked()
}

// Expire drops every registration whose lease lapsed and returns how many.
// Run calls it periodically.
func (r *Registry) Expire() int {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for node, l := range r.nodes {
		if !now.Before(l.expires) {
			r.dirtyLocked(node, l.instances)
			delete(r.nodes, node)
			n++
			r.log.Warn("registration expired: the node's agent did not renew it", keyNode, node, keyInstances, len(l.instances), keyTTL, r.ttl)
		}
	}
	if n > 0 {
		r.changedLocked()
	}
	return n
}

// Run expires lapsed leases, checking every tenth of the lease (at most
// every second), until ctx ends; it returns nil then.
func (r *Registry) Run(ctx context.Context) error {
	t := time.NewTicker(min(r.ttl/10, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.Expire()
		}
	}
}

func (r *Registry) changedLocked() {
	r.view = nil
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// dirtyLocked notes that node and the virtual nodes of instances changed.
func (r *Registry) dirtyLocked(node string, instances []Instance) {
	r.dirtyNodes[node] = true
	for _, in := range instances {
		r.dirtyKeys[translate.NodeKey{Mesh: in.Mesh, Name: in.VirtualNode}] = true
	}
}

// View returns a consistent, immutable copy of the registrations. After a
// change it copies the last view and computes again only what changed (one
// pass over the registrations for the endpoints of the changed virtual
// nodes), so that a change of one node costs little in a large registry;
// the result is the same as a view built from scratch.
func (r *Registry) View() *View {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.view != nil {
		return r.view
	}
	if r.last == nil {
		r.view = r.buildLocked()
	} else {
		r.view = r.updateLocked(r.last)
	}
	r.last = r.view
	clear(r.dirtyKeys)
	clear(r.dirtyNodes)
	r.managedChanged = false
	return r.view
}

// buildLocked builds a view from scratch.
func (r *Registry) buildLocked() *View {
	v := &View{
		endpoints: map[translate.NodeKey][]translate.Endpoint{},
		managed:   maps.Clone(r.managed),
		workloads: make(map[string][]translate.Workload, len(r.nodes)),
	}
	for node, l := range r.nodes {
		v.workloads[node] = workloads(l)
		for _, in := range l.instances {
			k := translate.NodeKey{Mesh: in.Mesh, Name: in.VirtualNode}
			v.endpoints[k] = appendEndpoints(v.endpoints[k], node, l.tunnel, in)
		}
	}
	for _, eps := range v.endpoints {
		sortEndpoints(eps)
	}
	v.nodes = slices.Sorted(maps.Keys(r.nodes))
	return v
}

// updateLocked builds a view from last and the dirty sets.
func (r *Registry) updateLocked(last *View) *View {
	v := &View{
		endpoints: maps.Clone(last.endpoints),
		managed:   last.managed,
		workloads: maps.Clone(last.workloads),
	}
	if r.managedChanged {
		v.managed = maps.Clone(r.managed)
	}
	for node := range r.dirtyNodes {
		if l, ok := r.nodes[node]; ok {
			v.workloads[node] = workloads(l)
		} else {
			delete(v.workloads, node)
		}
	}
	if len(r.dirtyKeys) > 0 {
		fresh := make(map[translate.NodeKey][]translate.Endpoint, len(r.dirtyKeys))
		for node, l := range r.nodes {
			for _, in := range l.instances {
				k := translate.NodeKey{Mesh: in.Mesh, Name: in.VirtualNode}
				if r.dirtyKeys[k] {
					fresh[k] = appendEndpoints(fresh[k], node, l.tunnel, in)
				}
			}
		}
		for k := range r.dirtyKeys {
			if eps, ok := fresh[k]; ok {
				sortEndpoints(eps)
				v.endpoints[k] = eps
			} else {
				delete(v.endpoints, k)
			}
		}
	}
	v.nodes = slices.Sorted(maps.Keys(r.nodes))
	return v
}

func workloads(l *lease) []translate.Workload {
	wls := make([]translate.Workload, 0, len(l.instances))
	for _, in := range l.instances {
		wls = append(wls, translate.Workload{
			ID: in.ID, CgroupPath: in.CgroupPath, Mesh: in.Mesh, VirtualNode: in.VirtualNode,
			Addresses: slices.Clone(in.Addresses),
		})
	}
	return wls
}

// appendEndpoints appends an instance's endpoints: one per address and
// port.
func appendEndpoints(eps []translate.Endpoint, node string, tunnel netip.AddrPort, in Instance) []translate.Endpoint {
	for _, a := range in.Addresses {
		for _, p := range in.Ports {
			eps = append(eps, translate.Endpoint{Address: a, Port: p, Node: node, Tunnel: tunnel, Healthy: in.Healthy, Attributes: in.Attributes})
		}
	}
	return eps
}

func sortEndpoints(eps []translate.Endpoint) {
	slices.SortFunc(eps, func(a, b translate.Endpoint) int {
		return cmp.Or(a.Address.Compare(b.Address), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Node, b.Node), compareBool(a.Healthy, b.Healthy))
	})
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// View is an immutable copy of the registrations. It implements
// translate.EndpointSource.
type View struct {
	endpoints map[translate.NodeKey][]translate.Endpoint
	managed   map[translate.NodeKey]bool
	workloads map[string][]translate.Workload
	nodes     []string
}

var _ translate.EndpointSource = (*View)(nil)

// Endpoints implements translate.EndpointSource: the endpoints of a virtual
// node, sorted, and whether the registry manages it (an instance of it was
// registered since the controller started).
func (v *View) Endpoints(k translate.NodeKey) ([]translate.Endpoint, bool) {
	return slices.Clone(v.endpoints[k]), v.managed[k]
}

// Workloads returns the workloads registered by the agent of node, sorted
// by cgroup path.
func (v *View) Workloads(node string) []translate.Workload {
	return slices.Clone(v.workloads[node])
}

// Nodes returns the nodes that hold a registration, sorted.
func (v *View) Nodes() []string { return slices.Clone(v.nodes) }

// normalize checks instances and returns them sorted by cgroup path, with
// sorted addresses and ports, so that equal registrations compare equal.
func normalize(node string, instances []Instance) ([]Instance, error) {
	var errs []error
	if node == "" {
		errs = append(errs, errors.New("node: is required"))
	}
	out := make([]Instance, 0, len(instances))
	paths := map[string]bool{}
	ids := map[uint32]string{}
	for i, in := range instances {
		name := fmt.Sprintf("instances[%d]", i)
		p := path.Clean(in.CgroupPath)
		switch {
		case in.CgroupPath == "":
			errs = append(errs, fmt.Errorf("%s: cgroupPath: is required", name))
		case path.IsAbs(p) || p == "." || p == ".." || strings.HasPrefix(p, "../"):
			errs = append(errs, fmt.Errorf("%s: cgroupPath %q: must stay inside the cgroup root", name, in.CgroupPath))
		case paths[p]:
			errs = append(errs, fmt.Errorf("%s: cgroupPath %q: registered twice", name, p))
		}
		paths[p] = true
		if in.ID != 0 {
			if other, dup := ids[in.ID]; dup {
				errs = append(errs, fmt.Errorf("%s: id %d: also the id of %s", name, in.ID, other))
			}
			ids[in.ID] = p
		}
		if in.Mesh == "" || in.VirtualNode == "" {
			errs = append(errs, fmt.Errorf("%s: mesh and virtualNode: are required", name))
		}
		addrs := make([]netip.Addr, 0, len(in.Addresses))
		for _, a := range in.Addresses {
			if !a.IsValid() || a.IsUnspecified() {
				errs = append(errs, fmt.Errorf("%s: address %q: is not a usable address", name, a))
				continue
			}
			addrs = append(addrs, a.Unmap())
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		addrs = slices.Compact(addrs)
		ports := slices.Clone(in.Ports)
		for _, port := range ports {
			if port == 0 || port > 65535 {
				errs = append(errs, fmt.Errorf("%s: port %d: is not a port", name, port))
			}
		}
		slices.Sort(ports)
		ports = slices.Compact(ports)
		for _, k := range slices.Sorted(maps.Keys(in.Attributes)) {
			if err := appmesh.CheckCloudMapAttribute(k, in.Attributes[k]); err != nil {
				errs = append(errs, fmt.Errorf("%s: attribute %q: %w", name, k, err))
			}
		}
		var attrs map[string]string
		if len(in.Attributes) > 0 {
			attrs = maps.Clone(in.Attributes)
		}
		out = append(out, Instance{
			ID: in.ID, CgroupPath: p, Mesh: in.Mesh, VirtualNode: in.VirtualNode,
			Addresses: addrs, Ports: ports, Healthy: in.Healthy, Attributes: attrs,
		})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registration of node %q: %w", node, err)
	}
	slices.SortFunc(out, func(a, b Instance) int { return cmp.Compare(a.CgroupPath, b.CgroupPath) })
	return out, nil
}

func equalInstance(a, b Instance) bool {
	return a.ID == b.ID && a.CgroupPath == b.CgroupPath && a.Mesh == b.Mesh && a.VirtualNode == b.VirtualNode &&
		a.Healthy == b.Healthy && slices.Equal(a.Addresses, b.Addresses) && slices.Equal(a.Ports, b.Ports) &&
		maps.Equal(a.Attributes, b.Attributes)
}
