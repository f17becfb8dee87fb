// SPDX-License-Identifier: Apache-2.0

package xds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-mesh/weft/controlplane/store"
	"github.com/weft-mesh/weft/controlplane/xds/translate"
	"github.com/weft-mesh/weft/controlplane/xds/vip"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// Log keys of the Syncer.
const (
	keyError    = "error"
	keyRevision = "revision"
	keyNodeID   = "nodeID"
	keyRef      = "ref"
	keyMessage  = "message"
	keyUpdated  = "updated"
	keyCleared  = "cleared"
	keyProxies  = "proxies"
	keyNodes    = "nodes"
	keyDuration = "duration"
	keyRetryIn  = "retryIn"
	keyWarmUp   = "warmUp"
	keyReused   = "reused"
	keyPatched  = "patched"
)

// ResourceLister lists every resource (resources.Service.All).
type ResourceLister interface {
	// All returns every resource of every mesh and the store revision of
	// the consistent view they were read in.
	All(ctx context.Context) ([]appmesh.Resource, int64, error)
}

// AddressSyncer keeps the service addresses (vip.Allocator.Sync).
type AddressSyncer interface {
	Sync(ctx context.Context, want []vip.Key) (map[vip.Key]vip.Addresses, error)
}

// EndpointView is a consistent view of the endpoint registry
// (registry.View).
type EndpointView interface {
	translate.EndpointSource
	// Workloads returns the workloads registered by the agent of node.
	Workloads(node string) []translate.Workload
	// Nodes returns the (physical) nodes holding a registration, sorted.
	Nodes() []string
}

// DNSView is what the DNS nodes resolve to (dnsdisco.View): their endpoints,
// managed once resolved, and the problems of nodes whose lookups fail.
type DNSView interface {
	translate.EndpointSource
	Problems() []translate.Problem
}

// SyncerConfig tunes a Syncer.
type SyncerConfig struct {
	// Batcher coalesces changes into rebuilds.
	Batcher BatcherConfig
	// WarmUp is how long after Run starts the Syncer waits before it
	// publishes its first snapshots, so that the agents re-register their
	// endpoints after a controller restart first; until then connected
	// clients keep their last configuration. 0 publishes at once.
	WarmUp time.Duration
}

// SyncerDeps are the Syncer's collaborators. Store, Resources, Addresses
// and Cache are required.
type SyncerDeps struct {
	// Store is watched for changes.
	Store store.Store
	// Resources lists the resources to translate.
	Resources ResourceLister
	// Addresses allocates the service addresses.
	Addresses AddressSyncer
	// Endpoints returns the registry's current view; nil means no node is
	// managed and no node state is computed.
	Endpoints func() EndpointView
	// EndpointsChanged receives a value when the registry changed.
	EndpointsChanged <-chan struct{}
	// DNS resolves DNS service discovery in the controller
	// (dnsdisco.Discovery.Sync): each rebuild gives it the virtual nodes
	// with DNS service discovery that the registry does not manage and
	// takes the endpoints of those that resolved. Nil: none, every such
	// node gets a DNS cluster.
	DNS func(nodes []translate.DNSNode) DNSView
	// DNSChanged receives a value when what a DNS node resolves to changed.
	DNSChanged <-chan struct{}
	// Connected returns the node ids of the clients connected now; their
	// snapshots are kept even when their node id left the world, so that
	// a stream is never left without an answer. Nil: none.
	Connected func() map[string]bool
	// Cache is the snapshot cache the ADS server serves.
	Cache cachev3.SnapshotCache
	// Registerer takes the Syncer's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Syncer keeps the snapshot cache equal to the translation of the store and
// the registry: it watches the store, batches changes (Batcher), and on
// each batch lists every resource, syncs the service addresses, translates,
// builds one snapshot per node id (a virtual node's or gateway's Envoy
// resources; a physical node's NodeState) and sets the snapshots whose
// versions changed. See docs/xds.md.
type Syncer struct {
	cfg     SyncerConfig
	deps    SyncerDeps
	log     *slog.Logger
	batcher *Batcher
	metrics *syncerMetrics

	// Owned by the rebuild (Run's goroutine, one at a time).
	published map[string]published // by node id
	last      *built               // nil until a Rebuild succeeded

	mu       sync.Mutex
	problems []translate.Problem
	status   map[string]resourceProblem // resource path → its problems
	rebuilt  bool
}

// resourceProblem is what the last rebuild found wrong with one version of
// a resource.
type resourceProblem struct {
	uid     string
	version int64
	message string
}

// NewSyncer returns a Syncer; Run starts it.
func NewSyncer(cfg SyncerConfig, deps SyncerDeps, log *slog.Logger) (*Syncer, error) {
	if deps.Store == nil || deps.Resources == nil || deps.Addresses == nil || deps.Cache == nil {
		return nil, errors.New("new syncer: Store, Resources, Addresses and Cache are required")
	}
	if cfg.WarmUp < 0 {
		return nil, errors.New("new syncer: warm-up must not be negative")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Syncer{
		cfg: cfg, deps: deps, log: log,
		published: map[string]published{},
		metrics:   newSyncerMetrics(deps.Registerer),
	}
	b, err := NewBatcher(cfg.Batcher, func(ctx context.Context, b Batch) error {
		if !b.Store {
			return s.Refresh(ctx)
		}
		_, err := s.Rebuild(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.batcher = b
	return s, nil
}

// Problems returns the translation problems of the last rebuild, sorted by
// resource.
func (s *Syncer) Problems() []translate.Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.problems)
}

// Synced reports whether a rebuild has published snapshots.
func (s *Syncer) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rebuilt
}

// Run publishes snapshots until ctx ends, which returns nil. After the
// warm-up it rebuilds from a full listing, watches the store from that
// listing's revision and rebuilds on each batch of changes; when the change
// stream ends (the watcher fell behind, store.ErrCompacted) or a rebuild
// fails, it lists everything again, with backoff after a failure.
func (s *Syncer) Run(ctx context.Context) error {
	if s.cfg.WarmUp > 0 {
		s.log.Info("holding back snapshots while agents re-register", keyWarmUp, s.cfg.WarmUp)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.cfg.WarmUp):
		}
	}
	backoff := time.Second
	fail := func(err error) bool {
		s.log.Error("sync snapshots", keyError, err, keyRetryIn, backoff)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
		return true
	}
	for ctx.Err() == nil {
		rev, err := s.Rebuild(ctx)
		if err != nil {
			if ctx.Err() != nil || !fail(err) {
				return nil
			}
			continue
		}
		err = s.follow(ctx, rev)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, store.ErrCompacted), errors.Is(err, ErrEventsClosed):
			s.log.Info("store change stream ended; listing again", keyError, err)
		case err != nil:
			if !fail(err) {
				return nil
			}
			continue
		}
		backoff = time.Second
	}
	return nil
}

// follow watches the store after rev, merges the registry's change signal
// into the change stream, and batches it into rebuilds.
func (s *Syncer) follow(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := s.deps.Store.Watch(wctx, rev)
	if err != nil {
		return fmt.Errorf("watch store after revision %d: %w", rev, err)
	}
	merged := make(chan store.Event)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		defer close(merged)
		for {
			var ev store.Event
			select {
			case <-wctx.Done():
				return
			case e, ok := <-events:
				if !ok {
					return
				}
				if vip.OwnsKey(e.Key) {
					// The addresses the last rebuild's Sync wrote: it
					// translated with them already.
					continue
				}
				ev = e
			case <-s.deps.EndpointsChanged: // nil: never
			case <-s.deps.DNSChanged: // nil: never
			}
			select {
			case merged <- ev:
			case <-wctx.Done():
				return
			}
		}
	})
	return s.batcher.Run(wctx, merged)
}

// Rebuild translates the current store and registry and publishes the
// snapshots whose versions changed. It returns the store revision it read.
// Run calls it; it must not run concurrently with itself or Refresh.
func (s *Syncer) Rebuild(ctx context.Context) (int64, error) {
	start := time.Now()
	rev, err := s.rebuild(ctx)
	if err != nil {
		s.metrics.rebuilds.WithLabelValues("error").Inc()
		return 0, err
	}
	s.metrics.rebuilds.WithLabelValues("ok").Inc()
	s.metrics.duration.Observe(time.Since(start).Seconds())
	return rev, nil
}

// Refresh publishes what changed in the registry and the DNS discovery
// since the last Rebuild or Refresh, with the resources of the last
// Rebuild: it translates again only the proxies and node states whose
// endpoints changed (a proxy whose changed nodes stay managed gets new load
// assignments alone), and gives the same snapshots as a Rebuild would. It
// rebuilds when there was none yet. Run calls it for batches without store
// changes; it must not run concurrently with itself or Rebuild.
func (s *Syncer) Refresh(ctx context.Context) error {
	if s.last == nil {
		_, err := s.Rebuild(ctx)
		return err
	}
	start := time.Now()
	if err := s.translate(ctx, start); err != nil {
		s.metrics.refreshes.WithLabelValues("error").Inc()
		return err
	}
	s.metrics.refreshes.WithLabelValues("ok").Inc()
	s.metrics.refreshDuration.Observe(time.Since(start).Seconds())
	return nil
}

// built is what a Rebuild compiled, kept for Refresh: the resources, their
// compiled world (without endpoints) and the translations made from it.
type built struct {
	res      []appmesh.Resource
	rev      int64
	world    *translate.World
	problems []translate.Problem // Compile's
	proxyIDs []string
	dnsNodes []translate.DNSNode
	states   *translate.StateCache
	proxies  map[string]*proxyEntry
	nodes    map[string]*Snapshot // node → its node state's snapshot
}

// proxyEntry is the last translation of one proxy.
type proxyEntry struct {
	p        *translate.Proxy
	snap     *Snapshot
	problems []translate.Problem
}

func (s *Syncer) rebuild(ctx context.Context) (int64, error) {
	start := time.Now()
	res, rev, err := s.deps.Resources.All(ctx)
	if err != nil {
		return 0, err
	}
	var keys []vip.Key
	for _, r := range res {
		if r.Ref.Kind == appmesh.KindVirtualService {
			keys = append(keys, vip.Key{Mesh: r.Ref.Mesh, Service: r.Ref.Name})
		}
	}
	addrs, err := s.deps.Addresses.Sync(ctx, keys)
	if err != nil {
		return 0, err
	}
	w := translate.Compile(translate.Input{Resources: res, Addresses: addrs})
	s.last = &built{
		res: res, rev: rev, world: w, problems: w.Problems(), proxyIDs: w.ProxyIDs(),
		states: translate.NewStateCache(), proxies: map[string]*proxyEntry{}, nodes: map[string]*Snapshot{},
	}
	if s.deps.DNS != nil {
		s.last.dnsNodes = w.DNSNodes()
	}
	if err := s.translate(ctx, start); err != nil {
		s.last = nil
		return 0, err
	}
	return rev, nil
}

// translate translates the last build's world with the current endpoints,
// reusing what they leave unchanged, and publishes.
func (s *Syncer) translate(ctx context.Context, start time.Time) error {
	b := s.last
	probs := map[translate.Problem]bool{}
	for _, p := range b.problems {
		probs[p] = true
	}
	var view EndpointView
	var src translate.EndpointSource
	if s.deps.Endpoints != nil {
		view = s.deps.Endpoints()
		src = view
	}
	if s.deps.DNS != nil {
		src = s.withDNS(b.dnsNodes, view, probs)
	}
	w := b.world.WithEndpoints(translate.Memoize(src))
	snaps := map[string]*Snapshot{}
	keep := map[string]bool{} // node ids whose new snapshot failed: they keep theirs
	reused, patched := 0, 0
	for _, id := range b.proxyIDs {
		e := b.proxies[id]
		if e != nil {
			if q, ok := w.UpdateEndpoints(e.p); ok {
				if q == e.p {
					reused++
				} else if snap, err := e.snap.withEndpoints(q); err == nil {
					e = &proxyEntry{p: q, snap: snap, problems: e.problems}
					b.proxies[id] = e
					patched++
				} else {
					s.log.Error("update load assignments; translating the proxy again", keyNodeID, id, keyError, err)
					e = nil
				}
				if e != nil {
					for _, pr := range e.problems {
						probs[pr] = true
					}
					snaps[id] = e.snap
					continue
				}
			}
		}
		delete(b.proxies, id)
		p, ps := w.Proxy(id)
		for _, pr := range ps {
			probs[pr] = true
		}
		if p == nil {
			continue
		}
		snap, err := NewSnapshot(p, nil)
		if err != nil {
			// The translator guarantees consistency; this is a bug, and
			// the node keeps its previous snapshot.
			s.log.Error("build snapshot; node keeps its previous one", keyNodeID, id, keyError, err)
			keep[id] = true
			continue
		}
		snaps[id] = snap
		b.proxies[id] = &proxyEntry{p: p, snap: snap, problems: ps}
	}
	var nodes []string
	if view != nil {
		nodes = view.Nodes()
	}
	for _, node := range nodes {
		if _, clash := snaps[node]; clash {
			s.log.Error("node name is also a proxy's node id; no node state for it", keyNodeID, node)
			continue
		}
		st, ps := w.CachedNodeState(b.states, node, view.Workloads(node))
		for _, pr := range ps {
			probs[pr] = true
		}
		if prev := b.nodes[node]; prev != nil && prev.GetVersion(NodeStateType) == st.GetVersion() {
			snaps[node] = prev
			continue
		}
		snap, err := NewSnapshot(nil, st)
		if err != nil {
			s.log.Error("build node state snapshot; node keeps its previous one", keyNodeID, node, keyError, err)
			keep[node] = true
			delete(b.nodes, node)
			continue
		}
		snaps[node] = snap
		b.nodes[node] = snap
	}
	for node := range b.nodes {
		if _, ok := snaps[node]; !ok {
			delete(b.nodes, node)
		}
	}
	b.states.Retain(nodes)
	updated, cleared, err := s.publish(ctx, snaps, keep)
	if err != nil {
		return err
	}
	s.setProblems(slices.Collect(maps.Keys(probs)), b.res)
	s.metrics.nodes.WithLabelValues("proxy").Set(float64(len(b.proxyIDs)))
	s.metrics.nodes.WithLabelValues("agent").Set(float64(len(nodes)))
	lvl := slog.LevelDebug
	if updated > 0 || cleared > 0 {
		lvl = slog.LevelInfo
	}
	s.log.Log(ctx, lvl, "translated snapshots", keyRevision, b.rev, keyProxies, len(b.proxyIDs), keyNodes, len(nodes),
		keyReused, reused, keyPatched, patched, keyUpdated, updated, keyCleared, cleared, keyDuration, time.Since(start))
	return nil
}

// published is the snapshot last set for a node id and its versions.
type published struct {
	snap     *Snapshot
	versions map[string]string // type URL → version
}

// publish sets the snapshots whose versions differ from the published ones
// and clears those of node ids that left the world and have no client.
func (s *Syncer) publish(ctx context.Context, snaps map[string]*Snapshot, keep map[string]bool) (updated, cleared int, err error) {
	for _, id := range slices.Sorted(maps.Keys(snaps)) {
		snap := snaps[id]
		if s.published[id].snap == snap {
			continue // reused by a refresh
		}
		v := snap.Versions()
		if maps.Equal(v, s.published[id].versions) {
			// The same content: the cache keeps the snapshot it has.
			s.published[id] = published{snap: snap, versions: v}
			continue
		}
		// Every snapshot was checked when it was built (NewSnapshot,
		// withEndpoints).
		if err := s.deps.Cache.SetSnapshot(ctx, id, snap); err != nil {
			return updated, cleared, fmt.Errorf("set snapshot of %s: %w", id, err)
		}
		s.published[id] = published{snap: snap, versions: v}
		s.metrics.updates.Inc()
		updated++
	}
	var connected map[string]bool
	if s.deps.Connected != nil {
		connected = s.deps.Connected()
	}
	for id := range s.published {
		if _, ok := snaps[id]; ok || keep[id] || connected[id] {
			continue
		}
		s.deps.Cache.ClearSnapshot(id)
		delete(s.published, id)
		cleared++
	}
	s.mu.Lock()
	s.rebuilt = true
	s.mu.Unlock()
	return updated, cleared, nil
}

// withDNS gives the DNS nodes the registry does not manage to the DNS
// discovery and returns the endpoint source with the registry's endpoints
// first and the resolved DNS nodes' second; the discovery's problems go to
// probs.
func (s *Syncer) withDNS(all []translate.DNSNode, reg EndpointView, probs map[translate.Problem]bool) translate.EndpointSource {
	var nodes []translate.DNSNode
	for _, n := range all {
		if reg != nil {
			if _, managed := reg.Endpoints(n.Node); managed {
				continue // registered instances win over DNS
			}
		}
		nodes = append(nodes, n)
	}
	dv := s.deps.DNS(nodes)
	for _, p := range dv.Problems() {
		probs[p] = true
	}
	return chainedEndpoints{first: reg, then: dv}
}

// chainedEndpoints answers from first when it manages the node, else from
// then.
type chainedEndpoints struct {
	first translate.EndpointSource // nil: none
	then  translate.EndpointSource
}

func (c chainedEndpoints) Endpoints(k translate.NodeKey) ([]translate.Endpoint, bool) {
	if c.first != nil {
		if eps, managed := c.first.Endpoints(k); managed {
			return eps, true
		}
	}
	return c.then.Endpoints(k)
}

// ResourceProblem returns why version version of the resource ref (with
// uid) is not, or not entirely, in effect: the messages of the last
// rebuild's problems of that resource, joined with "; ". ok is false when
// it had none, or when they were found in another version (or in an
// earlier resource of the same name): a newer version has not been
// translated yet. It implements resources.StatusSource.
func (s *Syncer) ResourceProblem(ref appmesh.Ref, uid string, version int64) (message string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.status[ref.ResourcePath()]
	if !ok || p.uid != uid || p.version != version {
		return "", false
	}
	return p.message, true
}

// setProblems keeps the problems, indexes them by resource (with the uid
// and version of the resource they were found in, from res) and logs those
// that appeared or went away.
func (s *Syncer) setProblems(ps []translate.Problem, res []appmesh.Resource) {
	slices.SortFunc(ps, func(a, b translate.Problem) int {
		return cmp.Or(cmp.Compare(a.Ref.ResourcePath(), b.Ref.ResourcePath()), cmp.Compare(a.Message, b.Message))
	})
	status := map[string]resourceProblem{}
	if len(ps) > 0 {
		md := make(map[string]appmesh.Metadata, len(res))
		for _, r := range res {
			md[r.Ref.ResourcePath()] = r.Metadata
		}
		for _, p := range ps {
			path := p.Ref.ResourcePath()
			m, ok := md[path]
			if !ok {
				continue
			}
			rp, seen := status[path]
			if seen {
				rp.message += "; " + p.Message
			} else {
				rp = resourceProblem{uid: m.UID, version: m.Version, message: p.Message}
			}
			status[path] = rp
		}
	}
	s.mu.Lock()
	prev := s.problems
	s.problems = ps
	s.status = status
	s.mu.Unlock()
	for _, p := range ps {
		if !slices.Contains(prev, p) {
			s.log.Warn("resource not translated", keyRef, p.Ref.ResourcePath(), keyMessage, p.Message)
		}
	}
	for _, p := range prev {
		if !slices.Contains(ps, p) {
			s.log.Info("translation problem resolved", keyRef, p.Ref.ResourcePath(), keyMessage, p.Message)
		}
	}
	s.metrics.problems.Set(float64(len(ps)))
}

type syncerMetrics struct {
	rebuilds        *prometheus.CounterVec
	duration        prometheus.Histogram
	refreshes       *prometheus.CounterVec
	refreshDuration prometheus.Histogram
	updates         prometheus.Counter
	problems        prometheus.Gauge
	nodes           *prometheus.GaugeVec
}

func newSyncerMetrics(reg prometheus.Registerer) *syncerMetrics {
	m := &syncerMetrics{
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_controller_xds_rebuilds_total",
			Help: "Translations of the whole store and registry into snapshots, by result.",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "weft_controller_xds_rebuild_duration_seconds",
			Help:    "Time of a successful rebuild: list, allocate addresses, translate, publish.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_controller_xds_refreshes_total",
			Help: "Incremental updates of the snapshots whose endpoints changed (no store change), by result.",
		}, []string{"result"}),
		refreshDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "weft_controller_xds_refresh_duration_seconds",
			Help:    "Time of a successful refresh: read the registry and DNS, update the affected snapshots, publish.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8),
		}),
		updates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_controller_xds_snapshot_updates_total",
			Help: "Snapshots set in the ADS cache because a version changed.",
		}),
		problems: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_controller_xds_translation_problems",
			Help: "Resources (or parts of them) the last translation left out; GET /weft/v1/problems lists them.",
		}),
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_controller_xds_node_ids",
			Help: "Node ids with a snapshot: proxy (virtual node or gateway) and agent (physical node).",
		}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.rebuilds, m.duration, m.refreshes, m.refreshDuration, m.updates, m.problems, m.nodes)
	}
	return m
}
