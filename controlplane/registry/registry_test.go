// SPDX-License-Identifier: Apache-2.0

package registry_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weft-mesh/weft/controlplane/registry"
	"github.com/weft-mesh/weft/controlplane/xds/translate"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newRegistry(t *testing.T) (*registry.Registry, *clock) {
	t.Helper()
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	r, err := registry.New(registry.Config{TTL: 30 * time.Second, Now: c.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r, c
}

func web(addr string, ports ...uint32) registry.Instance {
	return registry.Instance{
		ID: 7, CgroupPath: "kubepods/pod-" + addr, Mesh: "demo", VirtualNode: "web",
		Addresses: []netip.Addr{netip.MustParseAddr(addr)}, Ports: ports, Healthy: true,
	}
}

func changed(r *registry.Registry) bool {
	select {
	case <-r.Changed():
		return true
	default:
		return false
	}
}

func TestRegisterRenewExpire(t *testing.T) {
	r, c := newRegistry(t)
	webKey := translate.NodeKey{Mesh: "demo", Name: "web"}
	if _, managed := r.View().Endpoints(webKey); managed {
		t.Fatal("web is managed before any registration")
	}
	if err := r.Register("node-b", []registry.Instance{web("10.0.0.2", 8080)}); err != nil {
		t.Fatal(err)
	}
	if err := r.Register("node-a", []registry.Instance{web("10.0.0.1", 8080, 9090)}); err != nil {
		t.Fatal(err)
	}
	if !changed(r) {
		t.Fatal("no change signalled")
	}
	v := r.View()
	eps, managed := v.Endpoints(webKey)
	if !managed || len(eps) != 3 || eps[0].Address.String() != "10.0.0.1" || eps[0].Node != "node-a" || eps[2].Node != "node-b" {
		t.Fatalf("endpoints: %v (managed %v)", eps, managed)
	}
	if got := v.Nodes(); len(got) != 2 || got[0] != "node-a" {
		t.Errorf("nodes: %v", got)
	}
	if wls := v.Workloads("node-a"); len(wls) != 1 || wls[0].ID != 7 || wls[0].VirtualNode != "web" {
		t.Errorf("workloads: %v", wls)
	}

	// A renewal with the same content, in another order, is no change.
	c.Add(20 * time.Second)
	if err := r.Register("node-a", []registry.Instance{web("10.0.0.1", 9090, 8080)}); err != nil {
		t.Fatal(err)
	}
	if changed(r) {
		t.Error("a renewal signalled a change")
	}
	if r.View() != v {
		t.Error("a renewal rebuilt the view")
	}

	c.Add(15 * time.Second) // node-b lapsed, node-a renewed 15s ago
	if n := r.Expire(); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	if !changed(r) {
		t.Error("the expiry signalled no change")
	}
	eps, managed = r.View().Endpoints(webKey)
	if !managed || len(eps) != 2 {
		t.Errorf("after node-b's expiry: %v (managed %v)", eps, managed)
	}
	r.Deregister("node-a")
	eps, managed = r.View().Endpoints(webKey)
	if !managed || len(eps) != 0 {
		t.Errorf("after deregistration: %v (managed %v); web stays managed", eps, managed)
	}
}

func TestRegisterRefusesBadInstances(t *testing.T) {
	r, _ := newRegistry(t)
	bad := []registry.Instance{
		{CgroupPath: "", Mesh: "demo", VirtualNode: "web"},
		{CgroupPath: "../escape", Mesh: "demo", VirtualNode: "web"},
		{CgroupPath: "a", Mesh: "", VirtualNode: "web", Ports: []uint32{0}},
		{ID: 3, CgroupPath: "b", Mesh: "demo", VirtualNode: "web", Addresses: []netip.Addr{{}}},
		{ID: 3, CgroupPath: "b/", Mesh: "demo", VirtualNode: "web"},
		{CgroupPath: "c", Mesh: "demo", VirtualNode: "web", Attributes: map[string]string{"version": ""}},
	}
	err := r.Register("node-a", bad)
	if err == nil {
		t.Fatal("bad instances were registered")
	}
	for _, want := range []string{"instances[0]: cgroupPath: is required", "instances[1]", "instances[2]: mesh", "instances[2]: port 0", "instances[3]: address", "instances[4]: cgroupPath \"b\": registered twice", "id 3", "instances[5]: attribute \"version\": value"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if len(r.View().Nodes()) != 0 {
		t.Error("a refused registration left a node")
	}
	if err := r.Register("", nil); err == nil {
		t.Error("a registration without node was accepted")
	}
}

func TestService(t *testing.T) {
	r, _ := newRegistry(t)
	s := r.Service()
	ctx := context.Background()
	resp, err := s.Register(ctx, &nodeapiv1.RegisterRequest{Node: "node-a", Instances: []*nodeapiv1.Instance{{
		Id: 1, CgroupPath: "system.slice/web.service", Mesh: "demo", VirtualNode: "web",
		Addresses: []string{"10.0.0.1", "fd00::1"}, Ports: []uint32{8080}, Healthy: true,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetLease().AsDuration() != 30*time.Second {
		t.Errorf("lease %v", resp.GetLease().AsDuration())
	}
	if eps, _ := r.View().Endpoints(translate.NodeKey{Mesh: "demo", Name: "web"}); len(eps) != 2 {
		t.Errorf("endpoints: %v", eps)
	}
	// Attributes travel to the endpoints; a change of them alone is a
	// change, the same ones again are not.
	for i, tc := range []struct {
		version     string
		wantChanged bool
	}{{"v1", true}, {"v2", true}, {"v2", false}} {
		changed(r)
		if _, err := s.Register(ctx, &nodeapiv1.RegisterRequest{Node: "node-a", Instances: []*nodeapiv1.Instance{{
			Id: 1, CgroupPath: "system.slice/web.service", Mesh: "demo", VirtualNode: "web",
			Addresses: []string{"10.0.0.1"}, Ports: []uint32{8080}, Healthy: true, Attributes: map[string]string{"version": tc.version},
		}}}); err != nil {
			t.Fatal(err)
		}
		eps, _ := r.View().Endpoints(translate.NodeKey{Mesh: "demo", Name: "web"})
		if c := changed(r); len(eps) != 1 || eps[0].Attributes["version"] != tc.version || c != tc.wantChanged {
			t.Errorf("registration %d (version %s): endpoints %v, changed %v (want %v)", i, tc.version, eps, c, tc.wantChanged)
		}
	}
	_, err = s.Register(ctx, &nodeapiv1.RegisterRequest{Node: "node-a", Instances: []*nodeapiv1.Instance{{CgroupPath: "x", Mesh: "m", VirtualNode: "v", Addresses: []string{"nope"}}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("a bad address: %v", err)
	}
	// The tunnel listener reaches the endpoints, the addresses the workloads.
	_, err = s.Register(ctx, &nodeapiv1.RegisterRequest{Node: "node-a", TunnelAddress: "10.0.0.254:15008", Instances: []*nodeapiv1.Instance{{
		Id: 1, CgroupPath: "system.slice/web.service", Mesh: "demo", VirtualNode: "web",
		Addresses: []string{"10.0.0.1"}, Ports: []uint32{8080}, Healthy: true,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	eps, _ := r.View().Endpoints(translate.NodeKey{Mesh: "demo", Name: "web"})
	if len(eps) != 1 || eps[0].Tunnel.String() != "10.0.0.254:15008" || eps[0].Node != "node-a" {
		t.Errorf("endpoints with a tunnel: %+v", eps)
	}
	if wls := r.View().Workloads("node-a"); len(wls) != 1 || len(wls[0].Addresses) != 1 || wls[0].Addresses[0].String() != "10.0.0.1" {
		t.Errorf("workloads: %+v", wls)
	}
	for _, bad := range []string{"10.0.0.254", "0.0.0.0:15008", "10.0.0.254:0"} {
		_, err = s.Register(ctx, &nodeapiv1.RegisterRequest{Node: "node-a", TunnelAddress: bad})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "tunnel_address") {
			t.Errorf("tunnel address %q: %v", bad, err)
		}
	}
	if _, err := s.Deregister(ctx, &nodeapiv1.DeregisterRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("deregister without node: %v", err)
	}
	if _, err := s.Deregister(ctx, &nodeapiv1.DeregisterRequest{Node: "node-a"}); err != nil || len(r.View().Nodes()) != 0 {
		t.Errorf("deregister: %v, nodes %v", err, r.View().Nodes())
	}
}

func TestRunExpires(t *testing.T) {
	defer goleak.VerifyNone(t)
	r, err := registry.New(registry.Config{TTL: 30 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Register("node-a", []registry.Instance{web("10.0.0.1", 8080)}); err != nil {
		t.Fatal(err)
	}
	<-r.Changed()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-r.Changed() // the expiry; no deadline: Run expires it eventually
	if n := len(r.View().Nodes()); n != 0 {
		t.Errorf("%d nodes after the lease lapsed", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := registry.New(registry.Config{TTL: -time.Second}, nil); err == nil {
		t.Error("a negative ttl was accepted")
	}
	r, err := registry.New(registry.Config{}, nil)
	if err != nil || r.TTL() != registry.DefaultTTL {
		t.Errorf("default ttl: %v %v", r, err)
	}
}

// TestViewUpdatesEqualFreshViews registers, deregisters and expires nodes
// at random and checks after each change that the view (copied from the
// last one, with only what changed computed again) equals a view built from
// scratch.
func TestViewUpdatesEqualFreshViews(t *testing.T) {
	r, c := newRegistry(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	nodes := []string{"node-a", "node-b", "node-c"}
	vns := []string{"web", "db", "api", "front"}
	var keys []translate.NodeKey
	for _, vn := range vns {
		keys = append(keys, translate.NodeKey{Mesh: "demo", Name: vn})
	}
	for step := range 300 {
		node := nodes[rng.IntN(len(nodes))]
		switch op := rng.IntN(8); {
		case op < 5:
			var ins []registry.Instance
			for i := range rng.IntN(4) {
				in := registry.Instance{
					ID: uint32(i + 1), CgroupPath: fmt.Sprint("kubepods/pod-", i), Mesh: "demo", VirtualNode: vns[rng.IntN(len(vns))],
					Ports: []uint32{uint32(8080 + rng.IntN(2))}, Healthy: rng.IntN(3) > 0,
				}
				for range rng.IntN(3) {
					in.Addresses = append(in.Addresses, netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(2)), byte(1 + rng.IntN(3))}))
				}
				ins = append(ins, in)
			}
			if err := r.Register(node, ins); err != nil {
				t.Fatal(err)
			}
		case op == 5:
			r.Deregister(node)
		case op == 6:
			c.Add(20 * time.Second) // some leases lapse
			r.Expire()
		default:
			// no change: the cached view
		}
		got, want := r.View(), r.FreshView()
		if !slices.Equal(got.Nodes(), want.Nodes()) {
			t.Fatalf("step %d: nodes %v, want %v", step, got.Nodes(), want.Nodes())
		}
		for _, n := range nodes {
			if !slices.EqualFunc(got.Workloads(n), want.Workloads(n), translate.Workload.Equal) {
				t.Fatalf("step %d: workloads of %s %v, want %v", step, n, got.Workloads(n), want.Workloads(n))
			}
		}
		for _, k := range keys {
			ge, gm := got.Endpoints(k)
			we, wm := want.Endpoints(k)
			if gm != wm || !slices.EqualFunc(ge, we, translate.Endpoint.Equal) {
				t.Fatalf("step %d: endpoints of %v %v (managed %v), want %v (%v)", step, k, ge, gm, we, wm)
			}
		}
	}
}

// BenchmarkView is the view after one endpoint of a registry of 10 nodes
// and 30,000 instances (test/bench's 10,000 services) moved: updated from
// the last view, and built from scratch as before.
func BenchmarkView(b *testing.B) {
	const nodes, services = 10, 10000
	ins := make([][]registry.Instance, nodes)
	for i := range services {
		for k := range 3 {
			n := (i*3 + k) % nodes
			ins[n] = append(ins[n], registry.Instance{
				ID: uint32(len(ins[n]) + 1), CgroupPath: fmt.Sprintf("svc-%d-%d", i, k), Mesh: "cp", VirtualNode: fmt.Sprint("svc-", i),
				Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(100 + k), byte(i >> 8), byte(i)})}, Ports: []uint32{8080}, Healthy: true,
			})
		}
	}
	for _, fresh := range []bool{false, true} {
		b.Run(fmt.Sprint("fresh=", fresh), func(b *testing.B) {
			r, err := registry.New(registry.Config{TTL: time.Hour}, nil)
			if err != nil {
				b.Fatal(err)
			}
			for n := range nodes {
				if err := r.Register(fmt.Sprint("node-", n), ins[n]); err != nil {
					b.Fatal(err)
				}
			}
			r.View()
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				moved := slices.Clone(ins[0])
				moved[i%len(moved)].Addresses = []netip.Addr{netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)})}
				if err := r.Register("node-0", moved); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if fresh {
					r.FreshView()
				} else {
					r.View()
				}
			}
		})
	}
}
