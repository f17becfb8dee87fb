// SPDX-License-Identifier: Apache-2.0

package xds_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/weft-mesh/weft/controlplane/dnsdisco"
	"github.com/weft-mesh/weft/controlplane/registry"
	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/controlplane/store/boltstore"
	"github.com/weft-mesh/weft/controlplane/xds"
	"github.com/weft-mesh/weft/controlplane/xds/translate"
	"github.com/weft-mesh/weft/controlplane/xds/vip"
	"github.com/weft-mesh/weft/pkg/appmesh"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

// tableResolver answers lookups from a table; a name not in it does not
// resolve.
type tableResolver struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	err     error // when set, every lookup fails with it
}

func (r *tableResolver) set(host string, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.answers == nil {
		r.answers = map[string][]netip.Addr{}
	}
	r.answers[host] = nil
	for _, a := range addrs {
		r.answers[host] = append(r.answers[host], netip.MustParseAddr(a))
	}
}

func (r *tableResolver) failAll(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

func (r *tableResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	as, ok := r.answers[host]
	if !ok {
		return nil, errors.New("lookup " + host + ": no such host")
	}
	return as, nil
}

// TestDNSNodes lists S7's external node, with the mesh's IP preference
// unless the node has its own.
func TestDNSNodes(t *testing.T) {
	s := sampleSet(t, "s7")
	want := translate.DNSNode{
		Node:     translate.NodeKey{Mesh: "locked", Name: "httpbin-ext_locked"},
		Ref:      appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "locked", Name: "httpbin-ext_locked"},
		Hostname: "httpbin.org", ResponseType: appmesh.DNSLoadBalancer, Ports: []uint32{443},
	}
	if diff := cmp.Diff([]translate.DNSNode{want}, translate.Compile(s.input()).DNSNodes()); diff != "" {
		t.Fatalf("DNS nodes (-want +got):\n%s", diff)
	}
	for _, r := range s.res {
		if spec, ok := r.Spec.(*appmesh.MeshSpec); ok {
			spec.ServiceDiscovery = &appmesh.MeshServiceDiscovery{IPPreference: appmesh.IPv4Only}
		}
	}
	if got := translate.Compile(s.input()).DNSNodes()[0].IPPreference; got != appmesh.IPv4Only {
		t.Errorf("mesh preference: node has %q", got)
	}
	for _, r := range s.res {
		if spec, ok := r.Spec.(*appmesh.VirtualNodeSpec); ok && r.Ref.Name == want.Node.Name {
			spec.ServiceDiscovery.DNS.IPPreference = appmesh.IPv6Preferred
			spec.ServiceDiscovery.DNS.ResponseType = appmesh.DNSEndpoints
		}
	}
	got := translate.Compile(s.input()).DNSNodes()[0]
	if got.IPPreference != appmesh.IPv6Preferred || got.ResponseType != appmesh.DNSEndpoints {
		t.Errorf("node override: %+v", got)
	}
}

// TestS7ResolvedByController: once the controller resolved httpbin.org,
// the worker's cluster for it is EDS with the first address (LOADBALANCER)
// and the agent's port is L4 with that backend; before, it is a
// LOGICAL_DNS cluster and L7.
func TestS7ResolvedByController(t *testing.T) {
	const worker = "mesh/locked/virtualNode/worker_locked"
	const cluster = "cds_egress_locked_httpbin-ext_locked_tcp_443"
	s := sampleSet(t, "s7")
	res := &tableResolver{}
	res.set("httpbin.org", "203.0.113.7", "203.0.113.8")
	d, err := dnsdisco.New(dnsdisco.Config{Resolver: res, Interval: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := translate.Compile(s.input())
	before := w.WithEndpoints(d.Sync(w.DNSNodes()))
	p, _ := before.Proxy(worker)
	if c := clusterOf(p, cluster); c.GetType() != clusterv3.Cluster_LOGICAL_DNS {
		t.Errorf("unresolved: cluster type %v, want LOGICAL_DNS", c.GetType())
	}
	d.Resolve(context.Background())
	after := w.WithEndpoints(d.View())
	p, probs := after.Proxy(worker)
	if len(probs) > 0 {
		t.Fatalf("problems: %v", probs)
	}
	if c := clusterOf(p, cluster); c.GetType() != clusterv3.Cluster_EDS {
		t.Errorf("resolved: cluster type %v, want EDS", c.GetType())
	}
	if got := claAddrs(p, cluster); !cmp.Equal(got, []string{"203.0.113.7:443"}) {
		t.Errorf("load assignment = %v", got)
	}
	st, _ := after.NodeState(testNode, s.workloads)
	port := st.GetServices()[0].GetPorts()[0]
	if port.GetMode() != nodeapiv1.Mode_MODE_L4 || len(port.GetBackends()) != 1 || port.GetBackends()[0].GetAddress() != "203.0.113.7:443" {
		t.Errorf("httpbin port = %v, want L4 with the resolved backend", port)
	}
}

func clusterOf(p *translate.Proxy, name string) *clusterv3.Cluster {
	for _, c := range p.Clusters {
		if c.GetName() == name {
			return c
		}
	}
	return nil
}

func claAddrs(p *translate.Proxy, name string) []string {
	var out []string
	for _, cla := range p.Endpoints {
		if cla.GetClusterName() != name {
			continue
		}
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				out = append(out, net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)))
			}
		}
	}
	return out
}

// countingLister counts the rebuilds (each lists every resource once).
type countingLister struct {
	*resources.Service
	n atomic.Int64
}

func (c *countingLister) All(ctx context.Context) ([]appmesh.Resource, int64, error) {
	c.n.Add(1)
	return c.Service.All(ctx)
}

type dnsEnv struct {
	svc      *resources.Service
	lister   *countingLister
	reg      *registry.Registry
	dns      *dnsdisco.Discovery
	resolver *tableResolver
	cache    *countingCache
	syncer   *xds.Syncer
	// passes counts the Syncer's translations (rebuilds and refreshes
	// each give the DNS discovery the DNS nodes once).
	passes atomic.Int64
}

// newDNSEnv is newSyncerEnv with controller-side DNS resolution through a
// table resolver. Its Discovery does not run: tests call Resolve.
func newDNSEnv(t *testing.T) *dnsEnv {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "weft.db"), boltstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	svc, err := resources.New(st, resources.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	alloc, err := vip.New(st, vip.Config{})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Config{TTL: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := &tableResolver{}
	d, err := dnsdisco.New(dnsdisco.Config{Resolver: res, Interval: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := &dnsEnv{
		svc: svc, lister: &countingLister{Service: svc}, reg: reg, dns: d, resolver: res,
		cache: &countingCache{SnapshotCache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)},
	}
	env.syncer, err = xds.NewSyncer(xds.SyncerConfig{}, xds.SyncerDeps{
		Store: st, Resources: env.lister, Addresses: alloc, Cache: env.cache,
		Endpoints:        func() xds.EndpointView { return reg.View() },
		EndpointsChanged: reg.Changed(),
		DNS: func(nodes []translate.DNSNode) xds.DNSView {
			env.passes.Add(1)
			return d.Sync(nodes)
		},
		DNSChanged: d.Changed(),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc.SetStatusSource(env.syncer)
	return env
}

// webCluster returns the type of web's cluster in front's snapshot and the
// addresses of its load assignment.
func webCluster(c cachev3.SnapshotCache) (clusterv3.Cluster_DiscoveryType, []string) {
	snap, err := c.GetSnapshot(frontID)
	if err != nil {
		return -1, nil
	}
	cl, ok := snap.GetResources(resourcev3.ClusterType)[webEDS].(*clusterv3.Cluster)
	if !ok {
		return -1, nil
	}
	var addrs []string
	if cla, ok := snap.GetResources(resourcev3.EndpointType)[webEDS].(*endpointv3.ClusterLoadAssignment); ok {
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				addrs = append(addrs, net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)))
			}
		}
	}
	return cl.GetType(), addrs
}

// TestSyncerDNS follows web (web.demo.local, front's backend) through the
// Syncer: a DNS cluster until the name resolves, then EDS endpoints that
// follow re-resolution with one rebuild per change, the last good
// addresses and a problem when lookups fail, and the registry's endpoints
// once an instance of web registers.
func TestSyncerDNS(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	env := newDNSEnv(t)
	createWorld(t, env.svc)
	stop := runSyncer(t, env.syncer)
	defer stop()
	ctx := context.Background()
	type state struct {
		typ   clusterv3.Cluster_DiscoveryType
		addrs []string
	}
	waitFor := func(what string, want state) {
		t.Helper()
		waitUntil(t, what, func() bool {
			typ, addrs := webCluster(env.cache)
			return typ == want.typ && cmp.Equal(addrs, want.addrs)
		})
	}
	// settle waits for the Syncer to be idle and returns its
	// translations (rebuilds and refreshes).
	settle := func() int64 {
		for {
			n := env.passes.Load()
			time.Sleep(400 * time.Millisecond) // > the batcher's 100 ms debounce
			if env.passes.Load() == n {
				return n
			}
		}
	}

	// The name does not resolve yet: today's DNS cluster.
	waitFor("web's DNS cluster", state{typ: clusterv3.Cluster_LOGICAL_DNS})
	if env.dns.Resolve(ctx) {
		t.Error("a name that does not resolve was a change")
	}
	rebuilds := settle()
	listed := env.lister.n.Load()

	// It resolves: LOADBALANCER is the first address, on the listener port.
	env.resolver.set("web.demo.local", "10.9.0.1", "10.9.0.2")
	if !env.dns.Resolve(ctx) {
		t.Fatal("resolving changed nothing")
	}
	waitFor("web's resolved endpoint", state{typ: clusterv3.Cluster_EDS, addrs: []string{"10.9.0.1:8080"}})
	if n := settle(); n != rebuilds+1 {
		t.Errorf("resolution caused %d rebuilds, want 1", n-rebuilds)
	}
	rebuilds = settle()

	// The same answer again: nothing to rebuild.
	if env.dns.Resolve(ctx) {
		t.Error("the same answer was a change")
	}
	// A new answer: one rebuild, the new first address.
	env.resolver.set("web.demo.local", "10.9.0.3", "10.9.0.1")
	env.dns.Resolve(ctx)
	waitFor("web's new endpoint", state{typ: clusterv3.Cluster_EDS, addrs: []string{"10.9.0.3:8080"}})
	if n := settle(); n != rebuilds+1 {
		t.Errorf("re-resolution caused %d rebuilds, want 1", n-rebuilds)
	}
	if n := env.lister.n.Load(); n != listed {
		t.Errorf("DNS changes listed the store %d times; they are endpoint changes only", n-listed)
	}

	// ENDPOINTS: every address (the load assignment sorts them). The
	// response type changed, so the node starts over until looked up.
	webRef := appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "web"}
	cur, err := env.svc.Describe(ctx, webRef, "")
	if err != nil {
		t.Fatal(err)
	}
	spec := cur.Spec.(*appmesh.VirtualNodeSpec)
	spec.ServiceDiscovery.DNS.ResponseType = appmesh.DNSEndpoints
	if _, err := env.svc.Update(ctx, resources.UpdateInput{Ref: webRef, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	waitFor("web's STRICT_DNS cluster", state{typ: clusterv3.Cluster_STRICT_DNS})
	env.dns.Resolve(ctx)
	waitFor("web's endpoints", state{typ: clusterv3.Cluster_EDS, addrs: []string{"10.9.0.1:8080", "10.9.0.3:8080"}})

	// Lookups fail: the last good addresses stay, web reports a problem
	// (and its status says so).
	env.resolver.failAll(errors.New("lookup web.demo.local: i/o timeout"))
	env.dns.Resolve(ctx)
	waitUntil(t, "web's problem", func() bool {
		ps := env.syncer.Problems()
		return len(ps) == 1 && ps[0].Ref == webRef && strings.Contains(ps[0].Message, "i/o timeout")
	})
	if typ, addrs := webCluster(env.cache); typ != clusterv3.Cluster_EDS || !cmp.Equal(addrs, []string{"10.9.0.1:8080", "10.9.0.3:8080"}) {
		t.Errorf("after a failed lookup: %v %v, want the last good endpoints", typ, addrs)
	}
	if got, err := env.svc.Describe(ctx, webRef, ""); err != nil || got.Status.Status != appmesh.StatusInactive || !strings.Contains(got.Status.Message, "i/o timeout") {
		t.Errorf("web's status = %+v (%v)", got.Status, err)
	}

	// An instance of web registers: the registry wins, and DNS is no
	// longer web's business (its problem goes).
	err = env.reg.Register("node-a", []registry.Instance{{
		ID: 2, CgroupPath: "system.slice/web.service", Mesh: "demo", VirtualNode: "web",
		Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, Ports: []uint32{8080}, Healthy: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor("web's registered endpoint", state{typ: clusterv3.Cluster_EDS, addrs: []string{"10.0.0.1:8080"}})
	waitUntil(t, "web's problem to go", func() bool { return len(env.syncer.Problems()) == 0 })
	env.resolver.failAll(nil)
	env.resolver.set("web.demo.local", "10.9.0.9")
	if env.dns.Resolve(ctx) {
		t.Error("a node the registry manages is still resolved")
	}
}
