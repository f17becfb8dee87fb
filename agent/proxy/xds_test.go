// SPDX-License-Identifier: Apache-2.0

package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/weft-mesh/weft/agent/proxy"
	"github.com/weft-mesh/weft/controlplane"
	"github.com/weft-mesh/weft/controlplane/registry"
	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/pkg/appmesh"
	"github.com/weft-mesh/weft/pkg/xdsclient"
	wtestutil "github.com/weft-mesh/weft/test/testutil"
)

const (
	adsFront = "mesh/demo/virtualNode/front"
	adsWeb   = "mesh/demo/virtualNode/web"
	adsGW    = "mesh/demo/virtualGateway/gw"
)

// fakeTarget records what ADS does to the proxy. It refuses the updates
// of node ids in reject.
type fakeTarget struct {
	mu        sync.Mutex
	updates   map[string]int // accepted, by node id
	rejected  map[string]int
	clusters  map[string][]string // cluster names of the last accepted update
	deleted   []string
	workloads map[uint64]string
	reject    map[string]bool
}

func newFakeTarget() *fakeTarget {
	return &fakeTarget{updates: map[string]int{}, rejected: map[string]int{}, clusters: map[string][]string{}, reject: map[string]bool{}}
}

func (f *fakeTarget) Update(id string, res proxy.Resources) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reject[id] {
		f.rejected[id]++
		return errors.New("refused by the test")
	}
	f.updates[id]++
	var names []string
	for _, c := range res.Clusters {
		names = append(names, c.GetName())
	}
	f.clusters[id] = names
	return nil
}

func (f *fakeTarget) Delete(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, id)
	delete(f.updates, id)
	return nil
}

func (f *fakeTarget) SetWorkloads(w map[uint64]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.workloads = maps.Clone(w)
}

func (f *fakeTarget) snapshot() (updates map[string]int, workloads map[uint64]string, deleted []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.updates), maps.Clone(f.workloads), slices.Clone(f.deleted)
}

// adsWorld is mesh demo: front (port 80) calls web.demo.local, provided by
// web (port 8080); gateway gw (port 8088) routes /web/ to it.
func adsWorld(t *testing.T, svc *resources.Service) {
	t.Helper()
	port := func(p int32) *int32 { return &p }
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
	prefix := "/web/"
	for _, in := range []resources.CreateInput{
		{Ref: appmesh.Ref{Kind: appmesh.KindMesh, Name: "demo"}, Spec: &appmesh.MeshSpec{}},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "web"}, Spec: node("web", 8080)},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: "demo", Name: "web.demo.local"}, Spec: &appmesh.VirtualServiceSpec{
			Provider: &appmesh.VirtualServiceProvider{VirtualNode: &appmesh.VirtualNodeServiceProvider{VirtualNodeName: "web"}},
		}},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "front"}, Spec: node("front", 80, "web.demo.local")},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualGateway, Mesh: "demo", Name: "gw"}, Spec: &appmesh.VirtualGatewaySpec{
			Listeners: []appmesh.VirtualGatewayListener{{PortMapping: &appmesh.PortMapping{Port: port(8088), Protocol: appmesh.ProtocolHTTP}}},
		}},
		{Ref: appmesh.Ref{Kind: appmesh.KindGatewayRoute, Mesh: "demo", Parent: "gw", Name: "web"}, Spec: &appmesh.GatewayRouteSpec{
			HTTPRoute: &appmesh.HTTPGatewayRoute{
				Match:  &appmesh.HTTPGatewayRouteMatch{Prefix: &prefix},
				Action: &appmesh.HTTPGatewayRouteAction{Target: &appmesh.GatewayRouteTarget{VirtualService: &appmesh.GatewayRouteVirtualService{VirtualServiceName: "web.demo.local"}}},
			},
		}},
	} {
		if _, err := svc.Create(context.Background(), in); err != nil {
			t.Fatalf("create %s: %v", in.Ref.ResourcePath(), err)
		}
	}
}

// adsController runs a controller without warm-up on addr.
func adsController(t *testing.T, dataDir, addr string) (c *controlplane.Controller, stop func()) {
	t.Helper()
	zero := controlplane.Duration(0)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := controlplane.New(ctx, controlplane.Config{
		DataDir: dataDir, APIListen: "127.0.0.1:0", XDSListen: addr,
		Registry: controlplane.RegistryConfig{WarmUp: &zero},
	}, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("controller: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

// runADS starts ADS with the fake target over a new connection to addr.
func runADS(t *testing.T, addr string, cfg proxy.ADSConfig, target *fakeTarget, reg prometheus.Registerer) (ads *proxy.ADS, stop func()) {
	t.Helper()
	conn, err := xdsclient.Dial(xdsclient.DialConfig{Server: addr})
	if err != nil {
		t.Fatal(err)
	}
	cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	cfg.ResolveInterval = 50 * time.Millisecond
	ads, err = proxy.NewADS(cfg, proxy.ADSDeps{Conn: conn, Target: target, Registerer: reg}, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ads.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ads Run: %v", err)
			}
			_ = conn.Close()
		})
	}
	t.Cleanup(stop)
	return ads, stop
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

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

// TestADS: the proxy's ADS wiring follows the node state (workloads by
// cgroup id, one subscription per local virtual node, plus the gateway's),
// drops a virtual node that leaves, keeps the last good configuration on a
// NACK, and starts from its cache files without the controller.
func TestADS(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	addr := freeAddr(t)
	ctrl, stopCtrl := adsController(t, t.TempDir(), addr)
	adsWorld(t, ctrl.Service())

	root := t.TempDir() // stands in for the cgroup root: only inodes matter
	for _, d := range []string{"front.service", "kubepods/web"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	a := []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	front := registry.Instance{ID: 1, CgroupPath: "front.service", Mesh: "demo", VirtualNode: "front", Addresses: a, Ports: []uint32{80}, Healthy: true}
	web := registry.Instance{ID: 2, CgroupPath: "kubepods/web", Mesh: "demo", VirtualNode: "web", Addresses: a, Ports: []uint32{8080}, Healthy: true}
	if err := ctrl.Registry().Register("node-a", []registry.Instance{front, web}); err != nil {
		t.Fatal(err)
	}

	cache := t.TempDir()
	target := newFakeTarget()
	reg := prometheus.NewRegistry()
	cfg := proxy.ADSConfig{NodeID: "node-a", Gateways: []string{adsGW}, CgroupRoot: root, CacheDir: cache}
	ads, stopADS := runADS(t, addr, cfg, target, reg)

	wantWorkloads := map[uint64]string{inode(t, filepath.Join(root, "front.service")): adsFront, inode(t, filepath.Join(root, "kubepods/web")): adsWeb}
	wtestutil.Eventually(t, 10*time.Second, func() error {
		updates, workloads, _ := target.snapshot()
		if updates[adsFront] == 0 || updates[adsWeb] == 0 || updates[adsGW] == 0 {
			return fmt.Errorf("updates %v", updates)
		}
		if !maps.Equal(workloads, wantWorkloads) {
			return fmt.Errorf("workloads %v, want %v", workloads, wantWorkloads)
		}
		// The client writes its cache file right after the apply call.
		for _, kind := range []string{"nodestate-node-a", "proxy-mesh%2Fdemo%2FvirtualNode%2Ffront", "proxy-mesh%2Fdemo%2FvirtualNode%2Fweb", "proxy-mesh%2Fdemo%2FvirtualGateway%2Fgw"} {
			if _, err := os.Stat(filepath.Join(cache, kind+".json")); err != nil {
				return fmt.Errorf("cache file: %w", err)
			}
		}
		return nil
	})
	if got := ads.Subscriptions(); !slices.Equal(got, []string{adsGW, adsFront, adsWeb}) {
		t.Errorf("subscriptions %v", got)
	}
	if n := metricValue(t, reg, "weft_proxy_xds_subscriptions"); n != 3 {
		t.Errorf("weft_proxy_xds_subscriptions = %v, want 3", n)
	}

	// web leaves the node: its subscription ends and its configuration goes.
	if err := ctrl.Registry().Register("node-a", []registry.Instance{front}); err != nil {
		t.Fatal(err)
	}
	wtestutil.Eventually(t, 10*time.Second, func() error {
		updates, workloads, deleted := target.snapshot()
		if !slices.Equal(deleted, []string{adsWeb}) || updates[adsWeb] != 0 || len(workloads) != 1 {
			return fmt.Errorf("deleted %v, updates %v, workloads %v", deleted, updates, workloads)
		}
		return nil
	})
	if got := ads.Subscriptions(); !slices.Equal(got, []string{adsGW, adsFront}) {
		t.Errorf("subscriptions after web left: %v", got)
	}
	if _, err := os.Stat(filepath.Join(cache, "proxy-mesh%2Fdemo%2FvirtualNode%2Fweb.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("web's cache file is still there: %v", err)
	}

	// A configuration the proxy refuses is NACKed: front keeps its versions.
	before := ads.Versions()[adsFront]
	target.mu.Lock()
	target.reject[adsFront] = true
	target.mu.Unlock()
	prefix := "/v2/"
	if _, err := ctrl.Service().Create(context.Background(), resources.CreateInput{
		Ref: appmesh.Ref{Kind: appmesh.KindGatewayRoute, Mesh: "demo", Parent: "gw", Name: "v2"},
		Spec: &appmesh.GatewayRouteSpec{HTTPRoute: &appmesh.HTTPGatewayRoute{
			Match:  &appmesh.HTTPGatewayRouteMatch{Prefix: &prefix},
			Action: &appmesh.HTTPGatewayRouteAction{Target: &appmesh.GatewayRouteTarget{VirtualService: &appmesh.GatewayRouteVirtualService{VirtualServiceName: "web.demo.local"}}},
		}},
	}); err != nil {
		t.Fatal(err)
	}
	// Make front's configuration change too: web moves to another address.
	moved := registry.Instance{
		ID: 1, CgroupPath: "web", Mesh: "demo", VirtualNode: "web",
		Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, Ports: []uint32{8080}, Healthy: true,
	}
	if err := ctrl.Registry().Register("node-b", []registry.Instance{moved}); err != nil {
		t.Fatal(err)
	}
	wtestutil.Eventually(t, 10*time.Second, func() error {
		target.mu.Lock()
		defer target.mu.Unlock()
		if target.rejected[adsFront] == 0 {
			return errors.New("front's new configuration not offered yet")
		}
		return nil
	})
	if after := ads.Versions()[adsFront]; !maps.Equal(before, after) {
		t.Errorf("front's versions moved on a NACK: %v -> %v", before, after)
	}
	if n := metricValue(t, reg, "weft_proxy_xds_updates_total", "kind", "proxy", "result", "rejected"); n < 1 {
		t.Errorf("rejected updates counted %v", n)
	}
	stopADS()
	stopCtrl()

	// Without a controller, a new proxy starts from the cache files.
	target2 := newFakeTarget()
	_, stop2 := runADS(t, addr, cfg, target2, nil)
	wtestutil.Eventually(t, 10*time.Second, func() error {
		updates, workloads, _ := target2.snapshot()
		if updates[adsFront] == 0 || updates[adsGW] == 0 || len(workloads) != 1 {
			return fmt.Errorf("from the cache: updates %v, workloads %v", updates, workloads)
		}
		return nil
	})
	stop2()
}

// TestADSConfigValidate checks the configuration's rules.
func TestADSConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  proxy.ADSConfig
		ok   bool
	}{
		{"node", proxy.ADSConfig{NodeID: "n", CgroupRoot: "/sys/fs/cgroup"}, true},
		{"gateway only", proxy.ADSConfig{Gateways: []string{adsGW}}, true},
		{"nothing", proxy.ADSConfig{}, false},
		{"no cgroup root", proxy.ADSConfig{NodeID: "n"}, false},
		{"bad gateway", proxy.ADSConfig{Gateways: []string{"mesh/demo/virtualNode/front"}}, false},
		{"gateway twice", proxy.ADSConfig{Gateways: []string{adsGW, adsGW}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// metricValue is the value of the first series of name (gauge or counter)
// with those "key", "value" label pairs, 0 when there is none.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			return m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return 0
}
