// SPDX-License-Identifier: Apache-2.0

package controlplane_test

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/weft-mesh/weft/controlplane"
	"github.com/weft-mesh/weft/controlplane/registry"
	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/pkg/appmesh"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
	"github.com/weft-mesh/weft/pkg/xdsclient"
)

const frontID = "mesh/demo/virtualNode/front"

// freeAddr returns a loopback address nobody listens on, so that a
// controller can be restarted on the same address.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

type testController struct {
	c    *controlplane.Controller
	stop func()
}

// startController starts a controller on dataDir serving xDS on xdsAddr,
// without warm-up; before runs between New and Run.
func startController(t *testing.T, dataDir, xdsAddr string, before func(*controlplane.Controller)) *testController {
	t.Helper()
	zero := controlplane.Duration(0)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := controlplane.New(ctx, controlplane.Config{
		DataDir: dataDir, APIListen: "127.0.0.1:0", XDSListen: xdsAddr,
		Registry: controlplane.RegistryConfig{WarmUp: &zero},
		// No lookup leaves the test: the names here never resolve.
		DNS: controlplane.DNSConfig{Resolver: hostsResolver{}},
	}, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if before != nil {
		before(c)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	tc := &testController{c: c, stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("controller Run: %v", err)
			}
		})
	}}
	t.Cleanup(tc.stop)
	return tc
}

func ptr32(p int32) *int32 { return &p }

func vnSpec(name string, port int32, backends ...string) *appmesh.VirtualNodeSpec {
	s := &appmesh.VirtualNodeSpec{
		Listeners:        []appmesh.Listener{{PortMapping: &appmesh.PortMapping{Port: ptr32(port), Protocol: appmesh.ProtocolHTTP}}},
		ServiceDiscovery: &appmesh.ServiceDiscovery{DNS: &appmesh.DNSServiceDiscovery{Hostname: name + ".demo.local"}},
	}
	for _, b := range backends {
		s.Backends = append(s.Backends, appmesh.Backend{VirtualService: &appmesh.VirtualServiceBackend{VirtualServiceName: b}})
	}
	return s
}

func vsSpec(node string) *appmesh.VirtualServiceSpec {
	return &appmesh.VirtualServiceSpec{Provider: &appmesh.VirtualServiceProvider{VirtualNode: &appmesh.VirtualNodeServiceProvider{VirtualNodeName: node}}}
}

// createWorld creates mesh demo: front calls web.demo.local, provided by
// web.
func createWorld(t *testing.T, svc *resources.Service) {
	t.Helper()
	for _, in := range []resources.CreateInput{
		{Ref: appmesh.Ref{Kind: appmesh.KindMesh, Name: "demo"}, Spec: &appmesh.MeshSpec{}},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "web"}, Spec: vnSpec("web", 8080)},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: "demo", Name: "web.demo.local"}, Spec: vsSpec("web")},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "front"}, Spec: vnSpec("front", 80, "web.demo.local")},
	} {
		if _, err := svc.Create(context.Background(), in); err != nil {
			t.Fatalf("create %s: %v", in.Ref.ResourcePath(), err)
		}
	}
}

// addBackend creates service name (provided by web) and makes it a
// backend of front.
func addBackend(t *testing.T, svc *resources.Service, name string) {
	t.Helper()
	ctx := context.Background()
	if _, err := svc.Create(ctx, resources.CreateInput{Ref: appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: "demo", Name: name}, Spec: vsSpec("web")}); err != nil {
		t.Fatal(err)
	}
	ref := appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "front"}
	cur, err := svc.Describe(ctx, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	spec := cur.Spec.(*appmesh.VirtualNodeSpec)
	spec.Backends = append(spec.Backends, appmesh.Backend{VirtualService: &appmesh.VirtualServiceBackend{VirtualServiceName: name}})
	if _, err := svc.Update(ctx, resources.UpdateInput{Ref: ref, Spec: spec}); err != nil {
		t.Fatal(err)
	}
}

func nodeAInstances() []registry.Instance {
	a := []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	return []registry.Instance{
		{ID: 1, CgroupPath: "system.slice/front.service", Mesh: "demo", VirtualNode: "front", Addresses: a, Ports: []uint32{80}, Healthy: true},
		{ID: 2, CgroupPath: "system.slice/web.service", Mesh: "demo", VirtualNode: "web", Addresses: a, Ports: []uint32{8080}, Healthy: true},
	}
}

func register(t *testing.T, c *controlplane.Controller) {
	t.Helper()
	if err := c.Registry().Register("node-a", nodeAInstances()); err != nil {
		t.Fatal(err)
	}
}

// checkLeaks checks for leaked goroutines after every cleanup of the test
// (clients and connections) ran.
func checkLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// waitFor polls cond; the deadline only guards against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// states records what a node state client applied.
type states struct {
	mu     sync.Mutex
	last   *nodeapiv1.NodeState
	cached bool
	at     time.Time
	reject atomic.Bool
}

func (s *states) apply(_ context.Context, st *nodeapiv1.NodeState, fromCache bool) error {
	if s.reject.Load() {
		return errors.New("test rejects every node state")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.cached, s.at = st, fromCache, time.Now()
	return nil
}

func (s *states) get() (*nodeapiv1.NodeState, bool, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.cached, s.at
}

func (s *states) services() []string {
	st, _, _ := s.get()
	var out []string
	for _, svc := range st.GetServices() {
		out = append(out, svc.GetName())
	}
	return out
}

// runClient runs c until the test ends.
func runClient(t *testing.T, c interface{ Run(context.Context) error }) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("client Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := xdsclient.Dial(xdsclient.DialConfig{Server: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func fastBackoff(cfg xdsclient.Config) xdsclient.Config {
	cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	return cfg
}

// TestXDSChangeReachesClient registers node-a through the registry service,
// follows its node state and front's Envoy configuration, applies a change
// through the resource service and logs how long it took to arrive.
func TestXDSChangeReachesClient(t *testing.T) {
	checkLeaks(t)
	addr := freeAddr(t)
	tc := startController(t, t.TempDir(), addr, nil)
	createWorld(t, tc.c.Service())
	conn := dial(t, addr)

	var insts []*nodeapiv1.Instance
	for _, in := range nodeAInstances() {
		insts = append(insts, &nodeapiv1.Instance{
			Id: in.ID, CgroupPath: in.CgroupPath, Mesh: in.Mesh, VirtualNode: in.VirtualNode,
			Addresses: []string{in.Addresses[0].String()}, Ports: in.Ports, Healthy: true,
		})
	}
	reg, err := xdsclient.NewRegistrar(conn, xdsclient.RegistrarConfig{NodeID: "node-a", Instances: func() ([]*nodeapiv1.Instance, bool) { return insts, true }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopReg := runClient(t, reg)

	var ns states
	nc, err := xdsclient.SubscribeNodeState(conn, fastBackoff(xdsclient.Config{NodeID: "node-a"}), ns.apply, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopNC := runClient(t, nc)
	var (
		pmu sync.Mutex
		pr  xdsclient.ProxyResources
	)
	pc, err := xdsclient.Subscribe(conn, fastBackoff(xdsclient.Config{NodeID: frontID}), func(_ context.Context, r xdsclient.ProxyResources) error {
		pmu.Lock()
		defer pmu.Unlock()
		pr = r
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopPC := runClient(t, pc)

	waitFor(t, "node-a's node state", func() bool { return slices.Equal(ns.services(), []string{"web.demo.local"}) })
	waitFor(t, "front's endpoints of web", func() bool {
		pmu.Lock()
		defer pmu.Unlock()
		for _, cla := range pr.Endpoints {
			if cla.GetClusterName() == "cds_egress_demo_web_http_8080" && len(cla.GetEndpoints()) == 1 &&
				len(cla.GetEndpoints()[0].GetLbEndpoints()) == 1 {
				return true
			}
		}
		return false
	})
	if st, _, _ := ns.get(); len(st.GetWorkloads()) != 2 {
		t.Errorf("node state workloads: %v", st.GetWorkloads())
	}

	start := time.Now()
	addBackend(t, tc.c.Service(), "api.demo.local")
	waitFor(t, "the new backend in the node state", func() bool { return slices.Contains(ns.services(), "api.demo.local") })
	_, _, at := ns.get()
	t.Logf("a change applied through the resource service reached the client in %s", at.Sub(start))
	waitFor(t, "the new backend in front's routes", func() bool {
		pmu.Lock()
		defer pmu.Unlock()
		for _, rc := range pr.Routes {
			for _, vh := range rc.GetVirtualHosts() {
				if vh.GetName() == "api.demo.local" || slices.Contains(vh.GetDomains(), "api.demo.local") {
					return true
				}
			}
		}
		return false
	})
	stopPC()
	stopNC()
	stopReg()
	tc.stop()
}

// TestXDSControllerRestart stops the controller under connected clients,
// which keep their configuration and reconnect with backoff, and restarts
// it on the same data: the versions are the same and nothing is applied
// again.
func TestXDSControllerRestart(t *testing.T) {
	checkLeaks(t)
	addr, dir := freeAddr(t), t.TempDir()
	tc := startController(t, dir, addr, func(c *controlplane.Controller) {
		createWorld(t, c.Service())
		register(t, c)
	})
	conn := dial(t, addr)
	var ns states
	nc, err := xdsclient.SubscribeNodeState(conn, fastBackoff(xdsclient.Config{NodeID: "node-a"}), ns.apply, nil)
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, nc)
	pc, err := xdsclient.Subscribe(conn, fastBackoff(xdsclient.Config{NodeID: frontID}), func(context.Context, xdsclient.ProxyResources) error { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, pc)
	waitFor(t, "both configurations", func() bool { return nc.Stats().Applied == 1 && pc.Stats().Applied == 1 })
	nsVersions, pcVersions := nc.Versions(), pc.Versions()
	before, _, _ := ns.get()
	responses := pc.Stats().Responses

	tc.stop()
	waitFor(t, "the clients to notice", func() bool { return !nc.Connected() && !pc.Connected() })
	if st, _, _ := ns.get(); st != before || nc.Stats().Applied != 1 {
		t.Fatal("the node state changed while the controller was away")
	}

	tc2 := startController(t, dir, addr, func(c *controlplane.Controller) { register(t, c) })
	// Both streams reach the new controller. The server sends the proxy's
	// four types again on its new stream (go-control-plane answers a new
	// stream whatever version it names); the node state client may get
	// nothing at all when its stream arrived before the first snapshot was
	// set with the very version it names. Either way nothing is new.
	waitFor(t, "both streams on the new controller, and the proxy's four answers", func() bool {
		_, body := get(t, "http://"+tc2.c.Addr().String()+"/metrics")
		return strings.Contains(body, `weft_controller_xds_streams{kind="sotw"} 2`) && pc.Stats().Responses >= responses+4
	})
	if got := nc.Versions(); !maps.Equal(got, nsVersions) {
		t.Errorf("node state versions after the restart: %v, before: %v", got, nsVersions)
	}
	if got := pc.Versions(); !maps.Equal(got, pcVersions) {
		t.Errorf("proxy versions after the restart: %v, before: %v", got, pcVersions)
	}
	if a, b := nc.Stats().Applied, pc.Stats().Applied; a != 1 || b != 1 {
		t.Errorf("the restart re-applied configuration: node state %d, proxy %d times", a, b)
	}
	t.Logf("node state client: %+v; proxy client: %+v", nc.Stats(), pc.Stats())
}

// TestXDSNackKeepsLastGood has the client reject a change: it keeps the
// last good node state, and takes the next good one.
func TestXDSNackKeepsLastGood(t *testing.T) {
	checkLeaks(t)
	addr := freeAddr(t)
	tc := startController(t, t.TempDir(), addr, func(c *controlplane.Controller) {
		createWorld(t, c.Service())
		register(t, c)
	})
	conn := dial(t, addr)
	var ns states
	nc, err := xdsclient.SubscribeNodeState(conn, fastBackoff(xdsclient.Config{NodeID: "node-a"}), ns.apply, nil)
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, nc)
	waitFor(t, "the node state", func() bool { return nc.Stats().Applied == 1 })
	good := nc.Versions()

	ns.reject.Store(true)
	addBackend(t, tc.c.Service(), "api.demo.local")
	waitFor(t, "the rejection", func() bool { return nc.Stats().Rejected == 1 })
	if got := nc.Versions(); !maps.Equal(got, good) {
		t.Errorf("versions after a NACK: %v, want the last good %v", got, good)
	}
	if slices.Contains(ns.services(), "api.demo.local") {
		t.Error("the rejected state was applied")
	}
	waitFor(t, "the NACK in the controller's metrics", func() bool {
		_, body := get(t, "http://"+tc.c.Addr().String()+"/metrics")
		return strings.Contains(body, `weft_controller_xds_nacks_total{type="`+xdsclient.NodeStateType+`"} 1`)
	})

	ns.reject.Store(false)
	addBackend(t, tc.c.Service(), "db.demo.local")
	waitFor(t, "the next good state", func() bool { return slices.Contains(ns.services(), "db.demo.local") })
	if r := nc.Stats().Rejected; r != 1 {
		t.Errorf("rejected %d times, want once (no NACK loop)", r)
	}
}

// TestXDSCacheFileWithoutController lets a client start from its cache file
// while no controller runs.
func TestXDSCacheFileWithoutController(t *testing.T) {
	checkLeaks(t)
	addr := freeAddr(t)
	cache := filepath.Join(t.TempDir(), "node-a.json")
	tc := startController(t, t.TempDir(), addr, func(c *controlplane.Controller) {
		createWorld(t, c.Service())
		register(t, c)
	})
	var first states
	nc, err := xdsclient.SubscribeNodeState(dial(t, addr), fastBackoff(xdsclient.Config{NodeID: "node-a", CacheFile: cache}), first.apply, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runClient(t, nc)
	waitFor(t, "the node state", func() bool { return nc.Stats().Applied == 1 })
	want := nc.Versions()
	stop()
	tc.stop()

	var second states
	nc2, err := xdsclient.SubscribeNodeState(dial(t, addr), fastBackoff(xdsclient.Config{NodeID: "node-a", CacheFile: cache}), second.apply, nil)
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, nc2)
	waitFor(t, "the cached node state", func() bool { return nc2.Stats().Applied == 1 })
	st, cached, _ := second.get()
	if !cached || st.GetNode() != "node-a" || !slices.Equal(second.services(), []string{"web.demo.local"}) {
		t.Errorf("cached state: %v (from cache: %v)", st, cached)
	}
	if got := nc2.Versions(); !maps.Equal(got, want) || nc2.Connected() {
		t.Errorf("versions %v (connected %v), want %v", got, nc2.Connected(), want)
	}

	// Another node's client ignores the file.
	var other states
	oc, err := xdsclient.SubscribeNodeState(dial(t, addr), fastBackoff(xdsclient.Config{NodeID: "node-b", CacheFile: cache}), other.apply, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopOther := runClient(t, oc)
	time.Sleep(50 * time.Millisecond)
	stopOther()
	if oc.Stats().Applied != 0 {
		t.Error("node-b applied node-a's cache file")
	}
}

// TestXDSTypeURL keeps the client's and the controller's type URLs equal.
func TestXDSTypeURL(t *testing.T) {
	if xdsclient.NodeStateType != resourcev3.APITypePrefix+string((&nodeapiv1.NodeState{}).ProtoReflect().Descriptor().FullName()) {
		t.Errorf("xdsclient.NodeStateType is %s", xdsclient.NodeStateType)
	}
}
