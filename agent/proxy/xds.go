// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
	"github.com/weft-mesh/weft/pkg/xdsclient"
)

// DefaultResolveInterval is how often ADS reads the workloads' cgroup ids
// again (a restarted systemd unit or pod gets a new cgroup on the same
// path).
const DefaultResolveInterval = time.Second

// Log keys of the ADS wiring.
const (
	keyADSVersions = "versions"
	keyADSCached   = "cached"
	keyADSMissing  = "missing_cgroups"
)

// Results of weft_proxy_xds_updates_total.
const (
	adsResultOK       = "ok"
	adsResultCache    = "cache"
	adsResultRejected = "rejected"
)

// ADSConfig configures the proxy's ADS wiring (see ADS).
type ADSConfig struct {
	// NodeID is the node's id on ADS, the agent's (its node name): the
	// NodeState of that id lists the node's workloads. Empty subscribes to
	// no node state (a proxy of virtual gateways only).
	NodeID string
	// Gateways are the node ids of the virtual gateways this proxy serves,
	// mesh/<mesh>/virtualGateway/<name>.
	Gateways []string
	// CgroupRoot is the cgroup v2 directory the node state's cgroup paths
	// are relative to (the agent's cgroupRoot).
	CgroupRoot string
	// CacheDir keeps the last good configuration of every subscription, one
	// file each, so that the proxy starts while the controller is down. ""
	// keeps none.
	CacheDir string
	// MinBackoff and MaxBackoff bound the clients' reconnect delay; zero
	// takes xdsclient's defaults.
	MinBackoff, MaxBackoff time.Duration
	// ResolveInterval is how often the cgroup ids are read again. Zero
	// means DefaultResolveInterval.
	ResolveInterval time.Duration
}

// Validate reports every problem of the configuration at once.
func (c ADSConfig) Validate() error {
	var errs []error
	if c.NodeID == "" && len(c.Gateways) == 0 {
		errs = append(errs, errors.New("ads: a node id or a gateway is required"))
	}
	if c.NodeID != "" && c.CgroupRoot == "" {
		errs = append(errs, errors.New("ads: the cgroup root is required with a node id"))
	}
	seen := map[string]bool{}
	for _, g := range c.Gateways {
		if err := CheckGatewayID(g); err != nil {
			errs = append(errs, err)
		}
		if seen[g] {
			errs = append(errs, fmt.Errorf("ads: gateway %s is listed twice", g))
		}
		seen[g] = true
	}
	if c.ResolveInterval < 0 {
		errs = append(errs, errors.New("ads: the resolve interval is negative"))
	}
	return errors.Join(errs...)
}

// CheckGatewayID accepts a virtual gateway's node id,
// mesh/<mesh>/virtualGateway/<name>.
func CheckGatewayID(id string) error {
	p := strings.Split(id, "/")
	if len(p) != 4 || p[0] != "mesh" || p[1] == "" || p[2] != "virtualGateway" || p[3] == "" {
		return fmt.Errorf("ads: gateway %q: want mesh/<mesh>/virtualGateway/<name>", id)
	}
	return nil
}

// ADSTarget is what ADS configures: a *Proxy.
type ADSTarget interface {
	Update(nodeID string, res Resources) error
	Delete(nodeID string) error
	SetWorkloads(w map[uint64]string)
}

// ADSDeps are the collaborators of ADS.
type ADSDeps struct {
	// Conn is the connection to the controller (xdsclient.Dial), shared by
	// every subscription; the caller closes it after Run returned.
	// Required.
	Conn grpc.ClientConnInterface
	// Target receives the configuration. Required.
	Target ADSTarget
	// Registerer receives the weft_proxy_xds_* metrics; nil registers none.
	Registerer prometheus.Registerer
	// Identities, when set, is told the virtual nodes and gateways the
	// proxy serves (their tunnel certificates).
	Identities interface{ Set(ids []string) }
}

// ADS feeds a proxy from the controller. It subscribes to the node's
// NodeState (ADSConfig.NodeID) to learn the local workloads, maps their
// cgroup ids (the inode of each cgroup directory under ADSConfig.CgroupRoot)
// to their virtual nodes' node ids for SetWorkloads, and keeps one Envoy
// subscription (xdsclient.Subscribe) per distinct virtual node, plus one
// per configured gateway, all on one connection. Each subscription's
// configuration goes to Update; an Update error NACKs it and the last good
// configuration keeps serving. A virtual node that leaves the node state
// loses its subscription and is deleted from the target. Every subscription
// keeps its last good configuration in a cache file (ADSConfig.CacheDir)
// and starts from it, so the proxy serves without the controller.
type ADS struct {
	cfg  ADSConfig
	deps ADSDeps
	log  *slog.Logger
	ns   *xdsclient.Client // nil without a node id

	changed chan struct{}
	updates *prometheus.CounterVec

	mu        sync.Mutex
	state     *nodeapiv1.NodeState // last node state applied
	subs      map[string]*subscription
	workloads map[uint64]string     // last given to the target
	local     map[netip.Addr]string // workload addresses last given to the target (inbound.go)
	allowed   map[string][]string   // allowed tunnel callers last given to the target
	missing   []string              // cgroup paths not found at the last resolve
	applied   map[string]bool       // subscriptions that applied a configuration

	warm     chan struct{} // closed once every subscription applied one
	warmOnce sync.Once
}

// subscription is one node id's Envoy subscription.
type subscription struct {
	client  *xdsclient.Client
	cancel  context.CancelFunc
	done    chan struct{}
	gateway bool
}

// NewADS checks the configuration and builds the clients; Run starts them.
func NewADS(cfg ADSConfig, deps ADSDeps, log *slog.Logger) (*ADS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Conn == nil || deps.Target == nil {
		return nil, errors.New("ads: a connection and a target are required")
	}
	if cfg.ResolveInterval == 0 {
		cfg.ResolveInterval = DefaultResolveInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.CacheDir != "" {
		if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("ads: cache directory: %w", err)
		}
	}
	a := &ADS{
		cfg: cfg, deps: deps, log: log.With(keyComponent, "ads"),
		changed: make(chan struct{}, 1), subs: map[string]*subscription{},
		applied: map[string]bool{}, warm: make(chan struct{}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_xds_updates_total",
			Help: "Configurations received over ADS (or from the cache files), by kind (node_state, proxy) and result (ok, cache, rejected).",
		}, []string{"kind", "result"}),
	}
	if reg := deps.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{
			a.updates,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "weft_proxy_xds_subscriptions",
				Help: "Envoy configuration subscriptions (one per local virtual node and per gateway).",
			}, func() float64 { return float64(len(a.Subscriptions())) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "weft_proxy_xds_streams_connected",
				Help: "ADS streams (node state and subscriptions) that received a response from the controller and are up.",
			}, func() float64 { return float64(a.connected()) }),
		} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("ads metrics: %w", err)
			}
		}
	}
	if cfg.NodeID != "" {
		c, err := xdsclient.SubscribeNodeState(deps.Conn, xdsclient.Config{
			NodeID:     cfg.NodeID,
			CacheFile:  a.cacheFile("nodestate", cfg.NodeID),
			MinBackoff: cfg.MinBackoff, MaxBackoff: cfg.MaxBackoff,
		}, a.takeNodeState, a.log)
		if err != nil {
			return nil, err
		}
		a.ns = c
	}
	return a, nil
}

// cacheFile is the cache file of one subscription, "" without a cache
// directory.
func (a *ADS) cacheFile(kind, id string) string {
	if a.cfg.CacheDir == "" {
		return ""
	}
	return filepath.Join(a.cfg.CacheDir, kind+"-"+url.PathEscape(id)+".json")
}

// Subscriptions returns the node ids subscribed to, sorted.
func (a *ADS) Subscriptions() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Sorted(maps.Keys(a.subs))
}

// Versions returns, by node id, the versions (by type URL) of the
// configuration each subscription holds.
func (a *ADS) Versions() map[string]map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]map[string]string, len(a.subs))
	for id, s := range a.subs {
		out[id] = s.client.Versions()
	}
	return out
}

// connected counts the streams that are up.
func (a *ADS) connected() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	if a.ns != nil && a.ns.Connected() {
		n++
	}
	for _, s := range a.subs {
		if s.client.Connected() {
			n++
		}
	}
	return n
}

// Run starts the gateways' subscriptions and the node state's, then keeps
// the virtual nodes' subscriptions and the workloads equal to the node
// state until ctx ends. It returns nil once every client it started has
// stopped.
func (a *ADS) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer func() {
		a.mu.Lock()
		subs := slices.Collect(maps.Values(a.subs))
		a.mu.Unlock()
		for _, s := range subs {
			s.cancel()
		}
		wg.Wait()
	}()
	for _, g := range a.cfg.Gateways {
		if err := a.open(ctx, &wg, g, true); err != nil {
			return err
		}
	}
	if a.ns == nil {
		<-ctx.Done()
		return nil
	}
	wg.Go(func() { _ = a.ns.Run(ctx) })
	tick := time.NewTicker(a.cfg.ResolveInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.changed:
		case <-tick.C:
		}
		if err := a.reconcile(ctx, &wg); err != nil {
			return err
		}
	}
}

// takeNodeState is the node state client's apply function.
func (a *ADS) takeNodeState(_ context.Context, st *nodeapiv1.NodeState, fromCache bool) error {
	var errs []error
	for _, w := range st.GetWorkloads() {
		p := w.GetCgroupPath()
		if p == "" || !filepath.IsLocal(filepath.FromSlash(p)) {
			errs = append(errs, fmt.Errorf("workload %d: cgroup path %q leaves the cgroup root", w.GetId(), p))
		}
		if w.GetMesh() == "" || w.GetVirtualNode() == "" {
			errs = append(errs, fmt.Errorf("workload %d: no mesh or virtual node", w.GetId()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		a.updates.WithLabelValues("node_state", adsResultRejected).Inc()
		return fmt.Errorf("node state %s: %w", st.GetVersion(), err)
	}
	res := adsResultOK
	if fromCache {
		res = adsResultCache
	}
	a.updates.WithLabelValues("node_state", res).Inc()
	a.log.Info("took node state", keyNode, st.GetNode(), keyADSVersions, st.GetVersion(), keyADSCached, fromCache, keyWorkloads, len(st.GetWorkloads()))
	a.mu.Lock()
	a.state = st
	a.mu.Unlock()
	select {
	case a.changed <- struct{}{}:
	default:
	}
	return nil
}

// reconcile resolves the workloads' cgroups, hands the target the
// workloads when they changed, and opens and closes the virtual nodes'
// subscriptions.
func (a *ADS) reconcile(ctx context.Context, wg *sync.WaitGroup) error {
	a.mu.Lock()
	st := a.state
	a.mu.Unlock()
	if st == nil {
		return nil // nothing known yet: the workloads stay as they are
	}
	workloads := map[uint64]string{}
	want := map[string]bool{}
	var missing []string
	for _, w := range st.GetWorkloads() {
		id := "mesh/" + w.GetMesh() + "/virtualNode/" + w.GetVirtualNode()
		want[id] = true
		cg, err := cgroupID(filepath.Join(a.cfg.CgroupRoot, filepath.FromSlash(w.GetCgroupPath())))
		if err != nil {
			missing = append(missing, w.GetCgroupPath())
			continue
		}
		workloads[cg] = id
	}
	// Open first, so that callers find their configuration (from the cache
	// file at least) as soon as possible.
	for _, id := range slices.Sorted(maps.Keys(want)) {
		a.mu.Lock()
		_, have := a.subs[id]
		a.mu.Unlock()
		if !have {
			if err := a.open(ctx, wg, id, false); err != nil {
				return err
			}
		}
	}
	local, allowed := localAddressesOf(st), allowedCallersOf(st)
	a.mu.Lock()
	changed := !maps.Equal(workloads, a.workloads)
	if changed {
		a.workloads = workloads
	}
	localChanged := a.local == nil || !maps.Equal(local, a.local)
	if localChanged {
		a.local = local
	}
	allowedChanged := a.allowed == nil || !maps.EqualFunc(allowed, a.allowed, slices.Equal)
	if allowedChanged {
		a.allowed = allowed
	}
	if !slices.Equal(missing, a.missing) {
		a.missing = missing
		if len(missing) > 0 {
			a.log.Warn("workloads whose cgroup does not exist (yet) are left out", keyADSMissing, missing)
		}
	}
	var gone []string
	for id, s := range a.subs {
		if !s.gateway && !want[id] {
			gone = append(gone, id)
		}
	}
	a.mu.Unlock()
	if changed {
		a.deps.Target.SetWorkloads(workloads)
	}
	if t, ok := a.deps.Target.(interface {
		SetLocalAddresses(map[netip.Addr]string)
	}); ok && localChanged {
		t.SetLocalAddresses(local)
	}
	if t, ok := a.deps.Target.(interface {
		SetAllowedCallers(map[string][]string)
	}); ok && allowedChanged {
		t.SetAllowedCallers(allowed)
	}
	if a.deps.Identities != nil {
		a.deps.Identities.Set(append(slices.Sorted(maps.Keys(want)), a.cfg.Gateways...))
	}
	slices.Sort(gone)
	for _, id := range gone {
		a.unsubscribe(id)
	}
	a.checkWarm()
	return nil
}

// open starts the subscription of one node id.
func (a *ADS) open(ctx context.Context, wg *sync.WaitGroup, id string, gateway bool) error {
	c, err := xdsclient.Subscribe(a.deps.Conn, xdsclient.Config{
		NodeID:     id,
		CacheFile:  a.cacheFile("proxy", id),
		MinBackoff: a.cfg.MinBackoff, MaxBackoff: a.cfg.MaxBackoff,
	}, func(_ context.Context, r xdsclient.ProxyResources) error {
		return a.apply(id, r)
	}, a.log)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	s := &subscription{client: c, cancel: cancel, done: make(chan struct{}), gateway: gateway}
	a.mu.Lock()
	a.subs[id] = s
	a.mu.Unlock()
	a.log.Info("subscribed", keyNode, id)
	wg.Go(func() {
		defer close(s.done)
		_ = c.Run(sctx)
	})
	return nil
}

// apply hands one subscription's configuration to the target.
func (a *ADS) apply(id string, r xdsclient.ProxyResources) error {
	err := a.deps.Target.Update(id, Resources{Listeners: r.Listeners, Routes: r.Routes, Clusters: r.Clusters, Endpoints: r.Endpoints})
	switch {
	case err != nil:
		a.updates.WithLabelValues("proxy", adsResultRejected).Inc()
		return err
	case r.FromCache:
		a.updates.WithLabelValues("proxy", adsResultCache).Inc()
	default:
		a.updates.WithLabelValues("proxy", adsResultOK).Inc()
	}
	a.log.Info("configuration applied", keyNode, id, keyADSCached, r.FromCache, keyADSVersions, versionList(r.Versions))
	a.mu.Lock()
	a.applied[id] = true
	a.mu.Unlock()
	a.checkWarm()
	return nil
}

// Warm is closed once the node state (when there is a node id) and a
// configuration of every subscription it opened have been applied, from the
// controller or the cache files. The proxy binds its outbound listener only
// then (Proxy.WaitFor), so that the new process of a hand-over takes no
// connection it cannot serve yet.
func (a *ADS) Warm() <-chan struct{} { return a.warm }

// checkWarm closes warm when every subscription has applied once.
func (a *ADS) checkWarm() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ns != nil && a.state == nil {
		return
	}
	for id := range a.subs {
		if !a.applied[id] {
			return
		}
	}
	if a.ns != nil && len(a.subs) == 0 && len(a.state.GetWorkloads()) > 0 {
		return // the subscriptions are not opened yet
	}
	a.warmOnce.Do(func() {
		a.log.Info("warm: every subscription has a configuration")
		close(a.warm)
	})
}

// unsubscribe ends the subscription of a virtual node that left the node
// state, waits for it, drops its configuration from the target and its
// cache file.
func (a *ADS) unsubscribe(id string) {
	a.mu.Lock()
	s := a.subs[id]
	delete(a.subs, id)
	delete(a.applied, id)
	a.mu.Unlock()
	if s == nil {
		return
	}
	s.cancel()
	<-s.done
	if err := a.deps.Target.Delete(id); err != nil {
		a.log.Warn("delete configuration", keyNode, id, keyError, err)
	}
	if f := a.cacheFile("proxy", id); f != "" {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("remove cache file", keyNode, id, keyError, err)
		}
	}
	a.log.Info("unsubscribed: the virtual node left the node", keyNode, id)
}

// versionList renders versions by type URL as "Cluster=v1,Listener=v2".
func versionList(v map[string]string) string {
	parts := make([]string, 0, len(v))
	for _, t := range slices.Sorted(maps.Keys(v)) {
		name := t[strings.LastIndexByte(t, '.')+1:]
		parts = append(parts, name+"="+v[t])
	}
	return strings.Join(parts, ",")
}

// cgroupID is the id of the cgroup v2 directory at path: its inode number,
// what bpf_get_current_cgroup_id returns.
func cgroupID(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("%s: no inode number", path)
	}
	return st.Ino, nil
}
