// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/weft-mesh/weft/agent/proxy"
)

// Log keys.
const (
	keyComponent = "component"
	keyCluster   = "cluster"
	keyNode      = "node"
	keyHost      = "host"
	keyError     = "error"
	keyEjections = "ejections"
	keyClusters  = "clusters"
)

// Options configure a Manager.
type Options struct {
	// Registerer receives the manager's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Resolver resolves STRICT_DNS and LOGICAL_DNS names; nil is
	// net.DefaultResolver.
	Resolver Resolver
	// TunnelIdentity gives the tunnels to other nodes' proxies their
	// mutual TLS; nil: plaintext h2c tunnels.
	TunnelIdentity TunnelIdentity
	// Node is the node the proxy runs on (its node state's id): its own
	// tunnel metadata is skipped, its pods dialled directly, unless their
	// listener has App Mesh TLS. Empty: every tunnel is taken.
	Node string
	// Mark, when not 0, is set as SO_MARK on every upstream socket (requests,
	// tcp_proxy and health checks), so that a datapath exempting that mark
	// (weft-agent's proxy.mark) does not redirect the proxy's own
	// connections. Setting it needs CAP_NET_ADMIN.
	Mark uint32
}

// Manager holds weft-proxy's upstream clusters, one set per node id (each
// virtual node or gateway the proxy serves has its own CDS and EDS): it
// compiles them into Clusters, runs their health checks, outlier-detection
// timers and DNS refreshes, and keeps hosts' pools and state across
// updates.
type Manager struct {
	log      *slog.Logger
	resolver Resolver
	mark     uint32
	node     string // Options.Node
	metrics  *metrics

	mu     sync.Mutex
	nodes  map[string]map[string]*Cluster // node id → name → cluster
	group  *errgroup.Group                // set while Run runs
	runCtx context.Context

	tunnels   *tunnels                                // streams to other nodes' tunnel listeners
	view      atomic.Pointer[map[clusterKey]*Cluster] // what Get reads, lock-free
	closed    atomic.Bool
	closeOnce sync.Once
}

type clusterKey struct{ node, name string }

// NewManager returns a Manager without clusters. Its metrics are registered
// on opts.Registerer; NewManager panics if they are already registered
// there, as prometheus.MustRegister does.
func NewManager(opts Options, log *slog.Logger) *Manager {
	m := &Manager{
		log:      log.With(keyComponent, "upstreams"),
		resolver: opts.Resolver,
		mark:     opts.Mark,
		node:     opts.Node,
		nodes:    map[string]map[string]*Cluster{},
		tunnels:  newTunnels(opts.TunnelIdentity, opts.Mark),
	}
	if m.resolver == nil {
		m.resolver = net.DefaultResolver
	}
	m.view.Store(&map[clusterKey]*Cluster{})
	m.metrics = newMetrics(m)
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(m.metrics)
	}
	return m
}

// Get returns a node id's current cluster by name. It does not block.
func (m *Manager) Get(nodeID, name string) (proxy.Cluster, bool) {
	c, ok := m.cluster(nodeID, name)
	if !ok {
		return nil, false
	}
	return c, true
}

func (m *Manager) cluster(nodeID, name string) (*Cluster, bool) {
	c, ok := (*m.view.Load())[clusterKey{nodeID, name}]
	return c, ok
}

// all returns every cluster; m.mu must be held.
func (m *Manager) allLocked() []*Cluster {
	var out []*Cluster
	for _, set := range m.nodes {
		for _, c := range set {
			out = append(out, c)
		}
	}
	return out
}

// Update replaces a node id's clusters and the load assignments of its EDS
// clusters (both complete sets, as SotW xDS delivers them; an EDS cluster
// takes the assignment named by its eds_cluster_config service_name, or
// else by its own name, and has no hosts without one). An empty set removes
// the node id. Everything is validated first: on error, naming every
// offending cluster, nothing changes. Hosts that remain keep their pool,
// health and ejection state; a pool is rebuilt only when its connection
// settings change; the pools of removed hosts and clusters close once
// their leases are done.
func (m *Manager) Update(nodeID string, clusters []*clusterv3.Cluster, loadAssignments []*endpointv3.ClusterLoadAssignment) error {
	if m.closed.Load() {
		return ErrClosed
	}
	assignments := make(map[string]*endpointv3.ClusterLoadAssignment, len(loadAssignments))
	for _, cla := range loadAssignments {
		assignments[cla.GetClusterName()] = cla
	}
	var errs []error
	specs := make(map[string]*spec, len(clusters))
	for _, c := range clusters {
		var cla *endpointv3.ClusterLoadAssignment
		if c.GetType() == clusterv3.Cluster_EDS {
			cla = assignments[cmp.Or(c.GetEdsClusterConfig().GetServiceName(), c.GetName())]
		}
		s, err := compile(c, cla)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.mark = m.mark
		if _, dup := specs[s.name]; dup {
			errs = append(errs, fmt.Errorf("cluster %s: defined twice", s.name))
			continue
		}
		specs[s.name] = s
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("update clusters of %s: %w", nodeID, err)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	set := m.nodes[nodeID]
	if set == nil {
		set = map[string]*Cluster{}
	}
	for name, c := range set {
		if _, ok := specs[name]; !ok {
			c.remove()
			delete(set, name)
			m.metrics.forget(nodeID, name)
		}
	}
	for name, s := range specs {
		c, ok := set[name]
		if !ok {
			c = m.newCluster(nodeID, name)
			set[name] = c
		}
		c.apply(m.runCtx, s, m.group)
	}
	if len(set) == 0 {
		delete(m.nodes, nodeID)
	} else {
		m.nodes[nodeID] = set
	}
	view := map[clusterKey]*Cluster{}
	for _, c := range m.allLocked() {
		view[clusterKey{c.node, c.name}] = c
	}
	m.view.Store(&view)
	m.log.Debug("updated clusters", keyNode, nodeID, keyClusters, len(specs))
	return nil
}

func (m *Manager) newCluster(node, name string) *Cluster {
	c := &Cluster{node: node, name: name, m: m, byKey: map[string]*host{}}
	c.log = m.log.With(keyNode, node, keyCluster, name)
	m.metrics.bind(c)
	return c
}

// apply installs a new spec: hosts are merged, and the background workers
// restart when what they depend on changed.
func (c *Cluster) apply(ctx context.Context, s *spec, g *errgroup.Group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.spec
	c.spec = s
	restart := !sameWorkers(old, s)
	switch {
	case (s.discovery.isDNS() || s.discovery == discoveryOriginalDst) && old != nil && old.discovery == s.discovery:
		// Keep the resolved (or original-destination) hosts until the
		// next resolution; only their pools may need rebuilding.
		c.refreshPoolsLocked(s)
	case s.discovery.isDNS() || s.discovery == discoveryOriginalDst:
		c.setHostsLocked(s, nil)
	default:
		c.setHostsLocked(s, s.endpoints)
	}
	c.recountPendingLocked()
	if restart || !c.workers {
		c.stopWorkersLocked()
		if g != nil {
			c.startWorkersLocked(ctx, g)
		}
	}
}

// setHostsLocked makes the host set eps: hosts with a known key stay (with
// their pool unless its settings changed), new ones start healthy, the
// others are dropped and their pools retired.
func (c *Cluster) setHostsLocked(s *spec, eps []endpointSpec) {
	next := make(map[string]*host, len(eps))
	hosts := make([]*host, 0, len(eps))
	for _, e := range eps {
		key := e.addr.String()
		if s.discovery == discoveryLogicalDNS {
			key = net.JoinHostPort(e.hostname, strconv.Itoa(int(e.port)))
		}
		if h, dup := next[key]; dup {
			h.weight += e.weight // the same address twice
			continue
		}
		h, ok := c.byKey[key]
		if !ok {
			h = newHost(key, e.addr)
		}
		if h.address() != e.addr {
			h.setAddress(e.addr)
		}
		h.weight, h.hcPort, h.edsHealthy = e.weight, e.hcPort, e.edsHealthy
		h.tunnel = e.tunnel.on(c.m.node)
		if s.health == nil {
			h.hcHealthy, h.hcOK, h.hcFail = true, 0, 0
		}
		if s.outlier == nil && h.ejected {
			h.ejected = false
		}
		if h.pool == nil || h.pool.key != s.poolKey() || h.pool.tunnel != h.tunnel {
			if h.pool != nil {
				h.pool.retire()
			}
			h.pool = newPool(c, h, s)
		}
		next[key] = h
		hosts = append(hosts, h)
	}
	for key, h := range c.byKey {
		if _, ok := next[key]; !ok {
			h.pool.retire()
		}
	}
	slices.SortFunc(hosts, func(a, b *host) int { return cmp.Compare(a.key, b.key) })
	c.hosts, c.byKey = hosts, next
}

// refreshPoolsLocked rebuilds the pools whose settings changed.
func (c *Cluster) refreshPoolsLocked(s *spec) {
	key := s.poolKey()
	for _, h := range c.hosts {
		if h.pool.key != key {
			h.pool.retire()
			h.pool = newPool(c, h, s)
		}
		if s.health == nil {
			h.hcHealthy = true
		}
		if s.outlier == nil {
			h.ejected = false
		}
	}
}

func (c *Cluster) recountPendingLocked() {
	c.pending = 0
	if c.spec.http2 || unlimited(c.spec.limits.maxConnections) {
		return
	}
	for _, h := range c.hosts {
		c.pending += max(0, h.active-c.spec.limits.maxConnections)
	}
}

// startWorkersLocked starts the goroutines the spec needs on g: active
// health checks, the outlier-detection interval, DNS refreshes and
// ORIGINAL_DST clean-up.
func (c *Cluster) startWorkersLocked(parent context.Context, g *errgroup.Group) {
	ctx, cancel := context.WithCancel(parent)
	c.stop, c.workers = cancel, true
	c.gen++
	s, gen := c.spec, c.gen
	if s.discovery.isDNS() {
		resolved := make(chan struct{})
		c.resolved = resolved
		g.Go(func() error { c.dnsLoop(ctx, s, gen, resolved); return nil })
	}
	if s.health != nil {
		g.Go(func() error { c.healthLoop(ctx, s); return nil })
	}
	if s.outlier != nil {
		g.Go(func() error { tick(ctx, s.outlier.interval, c.outlierTick); return nil })
	}
	if s.discovery == discoveryOriginalDst {
		g.Go(func() error { tick(ctx, s.cleanupInterval, c.cleanupOriginalDst); return nil })
	}
}

func (c *Cluster) stopWorkersLocked() {
	if c.stop != nil {
		c.stop()
	}
	if c.resolved != nil {
		close(c.resolved) // waiters look again
		c.resolved = nil
	}
	c.stop, c.workers = nil, false
}

// remove takes the cluster out of service: workers stop and pools close
// once their leases are done.
func (c *Cluster) remove() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopWorkersLocked()
	for _, h := range c.hosts {
		h.pool.retire()
	}
}

func tick(ctx context.Context, every time.Duration, fn func(time.Time)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			fn(now)
		}
	}
}

// Run runs the clusters' health checks, outlier-detection timers, DNS
// refreshes and ORIGINAL_DST clean-ups, including those of clusters added
// by later updates, until ctx ends; it returns after all of them stopped.
// Without Run hosts are never health-checked, ejected hosts never return
// and DNS clusters have no hosts.
func (m *Manager) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	m.mu.Lock()
	if m.group != nil {
		m.mu.Unlock()
		return errors.New("run clusters: already running")
	}
	m.group, m.runCtx = g, gctx
	for _, c := range m.allLocked() {
		c.mu.Lock()
		c.stopWorkersLocked()
		c.startWorkersLocked(gctx, g)
		c.mu.Unlock()
	}
	m.mu.Unlock()

	<-gctx.Done()

	m.mu.Lock()
	m.group, m.runCtx = nil, nil
	for _, c := range m.allLocked() {
		c.mu.Lock()
		c.stopWorkersLocked()
		c.mu.Unlock()
	}
	m.mu.Unlock()
	return g.Wait()
}

// Close closes every pool's idle connections (in-flight requests finish)
// and makes Acquire and Update fail with ErrClosed. It does not stop Run;
// cancel Run's context for that. Close is idempotent.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.closed.Store(true)
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, c := range m.allLocked() {
			c.remove()
		}
		m.tunnels.close()
	})
	return nil
}
