// SPDX-License-Identifier: Apache-2.0

package xds_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/weft-mesh/weft/controlplane/registry"
	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/controlplane/store/boltstore"
	"github.com/weft-mesh/weft/controlplane/xds"
	"github.com/weft-mesh/weft/controlplane/xds/vip"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

const (
	frontID = "mesh/demo/virtualNode/front"
	webEDS  = "cds_egress_demo_web_http_8080"
)

// countingCache counts the snapshots set in a real snapshot cache.
type countingCache struct {
	cachev3.SnapshotCache
	sets atomic.Int64
}

func (c *countingCache) SetSnapshot(ctx context.Context, node string, s cachev3.ResourceSnapshot) error {
	c.sets.Add(1)
	return c.SnapshotCache.SetSnapshot(ctx, node, s)
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type syncerEnv struct {
	svc    *resources.Service
	reg    *registry.Registry
	clock  *fakeClock
	cache  *countingCache
	syncer *xds.Syncer
}

func newSyncerEnv(t *testing.T) *syncerEnv {
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
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	reg, err := registry.New(registry.Config{TTL: 30 * time.Second, Now: clock.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cache := &countingCache{SnapshotCache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)}
	s, err := xds.NewSyncer(xds.SyncerConfig{}, xds.SyncerDeps{
		Store: st, Resources: svc, Addresses: alloc, Cache: cache,
		Endpoints:        func() xds.EndpointView { return reg.View() },
		EndpointsChanged: reg.Changed(),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &syncerEnv{svc: svc, reg: reg, clock: clock, cache: cache, syncer: s}
}

func port(p int32) *int32 { return &p }

// createWorld creates mesh demo: front (port 80) calls web.demo.local,
// provided by web (port 8080), both HTTP.
func createWorld(t *testing.T, svc *resources.Service) {
	t.Helper()
	ctx := context.Background()
	node := func(name string, p int32, backends ...string) *appmesh.VirtualNodeSpec {
		s := &appmesh.VirtualNodeSpec{
			Listeners:        []appmesh.Listener{{PortMapping: &appmesh.PortMapping{Port: port(p), Protocol: appmesh.ProtocolHTTP}}},
			ServiceDiscovery: &appmesh.ServiceDiscovery{DNS: &appmesh.DNSServiceDiscovery{Hostname: name + ".demo.local"}},
		}
		for _, b := range backends {
			s.Backends = append(s.Backends, appmesh.Backend{VirtualService: &appmesh.VirtualServiceBackend{VirtualServiceName: b}})
		}
		return s
	}
	for _, in := range []resources.CreateInput{
		{Ref: appmesh.Ref{Kind: appmesh.KindMesh, Name: "demo"}, Spec: &appmesh.MeshSpec{}},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "web"}, Spec: node("web", 8080)},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: "demo", Name: "web.demo.local"}, Spec: &appmesh.VirtualServiceSpec{
			Provider: &appmesh.VirtualServiceProvider{VirtualNode: &appmesh.VirtualNodeServiceProvider{VirtualNodeName: "web"}},
		}},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "front"}, Spec: node("front", 80, "web.demo.local")},
	} {
		if _, err := svc.Create(ctx, in); err != nil {
			t.Fatalf("create %s: %v", in.Ref.ResourcePath(), err)
		}
	}
}

// nodeAInstances are node-a's workloads: one front and one web.
func nodeAInstances() []registry.Instance {
	a := []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	return []registry.Instance{
		{ID: 1, CgroupPath: "system.slice/front.service", Mesh: "demo", VirtualNode: "front", Addresses: a, Ports: []uint32{80}, Healthy: true},
		{ID: 2, CgroupPath: "system.slice/web.service", Mesh: "demo", VirtualNode: "web", Addresses: a, Ports: []uint32{8080}, Healthy: true},
	}
}

// webEndpoints returns the endpoints of web in front's snapshot, or -1
// without a snapshot or without a load assignment (web is not managed).
func webEndpoints(t *testing.T, c cachev3.SnapshotCache) int {
	t.Helper()
	snap, err := c.GetSnapshot(frontID)
	if err != nil {
		return -1
	}
	cla, ok := snap.GetResources(resourcev3.EndpointType)[webEDS].(*endpointv3.ClusterLoadAssignment)
	if !ok {
		return -1
	}
	n := 0
	for _, l := range cla.GetEndpoints() {
		n += len(l.GetLbEndpoints())
	}
	return n
}

// waitUntil polls cond; the deadline only guards against a hang.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runSyncer(t *testing.T, s *xds.Syncer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// TestSyncerBurstFewPushes writes 1,000 changes of front's access log path
// and expects them to reach the cache as a few snapshots.
func TestSyncerBurstFewPushes(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	env := newSyncerEnv(t)
	createWorld(t, env.svc)
	stop := runSyncer(t, env.syncer)
	defer stop()
	waitUntil(t, "front's first snapshot", func() bool {
		_, err := env.cache.GetSnapshot(frontID)
		return err == nil
	})
	before := env.cache.sets.Load()

	ctx := context.Background()
	ref := appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "front"}
	start := time.Now()
	const writes = 1000
	for i := range writes {
		cur, err := env.svc.Describe(ctx, ref, "")
		if err != nil {
			t.Fatal(err)
		}
		spec := cur.Spec.(*appmesh.VirtualNodeSpec)
		spec.Logging = &appmesh.Logging{AccessLog: &appmesh.AccessLog{File: &appmesh.FileAccessLog{Path: fmt.Sprintf("/var/log/front-%d.log", i)}}}
		if _, err := env.svc.Update(ctx, resources.UpdateInput{Ref: ref, Spec: spec}); err != nil {
			t.Fatal(err)
		}
	}
	wrote := time.Since(start)
	last := fmt.Sprintf("/var/log/front-%d.log", writes-1)
	waitUntil(t, "the last write in front's snapshot", func() bool {
		snap, err := env.cache.GetSnapshot(frontID)
		if err != nil {
			return false
		}
		for _, l := range snap.GetResources(resourcev3.ListenerType) {
			b, _ := protojson.Marshal(l)
			if strings.Contains(string(b), last) {
				return true
			}
		}
		return false
	})
	pushes := env.cache.sets.Load() - before
	t.Logf("%d writes in %s became %d snapshot updates", writes, wrote, pushes)
	// The batcher rebuilds at most about once a second while writes keep
	// coming (MaxDelay), plus once at the end: far fewer than the writes.
	if limit := int64(wrote/time.Second) + 10; pushes > limit || pushes >= writes/10 {
		t.Errorf("%d writes became %d snapshot updates, want at most %d", writes, pushes, limit)
	}
}

// TestSyncerLeaseExpiry registers node-a's endpoints, lets the lease lapse
// and expects a new snapshot without them, and node-a's node state gone.
func TestSyncerLeaseExpiry(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	env := newSyncerEnv(t)
	createWorld(t, env.svc)
	if err := env.reg.Register("node-a", nodeAInstances()); err != nil {
		t.Fatal(err)
	}
	stop := runSyncer(t, env.syncer)
	defer stop()
	waitUntil(t, "web's endpoint and node-a's node state", func() bool {
		_, err := env.cache.GetSnapshot("node-a")
		return err == nil && webEndpoints(t, env.cache) == 1
	})

	// A renewal with the same instances is not a change.
	sets := env.cache.sets.Load()
	env.clock.Add(20 * time.Second)
	if err := env.reg.Register("node-a", nodeAInstances()); err != nil {
		t.Fatal(err)
	}
	env.clock.Add(20 * time.Second)
	if n := env.reg.Expire(); n != 0 {
		t.Fatalf("a renewed lease expired (%d)", n)
	}

	env.clock.Add(11 * time.Second)
	if n := env.reg.Expire(); n != 1 {
		t.Fatalf("Expire dropped %d nodes, want 1", n)
	}
	// node-a's snapshot goes too: it is not connected.
	waitUntil(t, "web's endpoint and node-a's node state to go", func() bool {
		_, err := env.cache.GetSnapshot("node-a")
		return err != nil && webEndpoints(t, env.cache) == 0
	})
	if got := env.cache.sets.Load() - sets; got != 1 {
		t.Errorf("the expiry set %d snapshots, want 1 (front's)", got)
	}
}

// TestSyncerUnchangedWorldSetsNothing rebuilds twice without a change.
func TestSyncerUnchangedWorldSetsNothing(t *testing.T) {
	env := newSyncerEnv(t)
	createWorld(t, env.svc)
	if err := env.reg.Register("node-a", nodeAInstances()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := env.syncer.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	first := env.cache.sets.Load()
	if first != 3 { // front, web, node-a
		t.Errorf("first rebuild set %d snapshots, want 3", first)
	}
	if _, err := env.syncer.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if got := env.cache.sets.Load(); got != first {
		t.Errorf("an unchanged world set %d more snapshots", got-first)
	}
	if ps := env.syncer.Problems(); len(ps) != 0 {
		t.Errorf("problems: %v", ps)
	}
}

// TestSyncerIgnoresOwnAddressWrites starts a Syncer on a world without
// service addresses: its first rebuild allocates them (a store write),
// and that write, which the rebuild translated with already, is not
// another rebuild.
func TestSyncerIgnoresOwnAddressWrites(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	env := newDNSEnv(t)
	createWorld(t, env.svc)
	stop := runSyncer(t, env.syncer)
	defer stop()
	waitUntil(t, "front's snapshot", func() bool {
		_, err := env.cache.GetSnapshot(frontID)
		return err == nil
	})
	time.Sleep(400 * time.Millisecond) // > the batcher's 100 ms debounce
	if n := env.lister.n.Load(); n != 1 {
		t.Errorf("%d rebuilds, want 1 (the address allocation is no change to translate)", n)
	}
}
