// SPDX-License-Identifier: Apache-2.0

package xds_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/weft-mesh/weft/controlplane/registry"
	"github.com/weft-mesh/weft/controlplane/store/boltstore"
	"github.com/weft-mesh/weft/controlplane/xds"
	"github.com/weft-mesh/weft/controlplane/xds/vip"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// The benchmarks build test/bench's control plane world in process: mesh
// cp with n virtual services svc-i.cp.local, each provided by virtual node
// svc-i (TCP 8080) with 3 endpoints registered by `clients` nodes, and a
// virtual node front with every service as a backend and a workload on
// every node, so every node state carries all n services as L4 ports.

const benchClients = 10

// staticLister lists a fixed set of resources.
type staticLister struct{ res []appmesh.Resource }

func (l staticLister) All(context.Context) ([]appmesh.Resource, int64, error) { return l.res, 1, nil }

// staticAddresses allocates every service an address from its index.
type staticAddresses struct{}

func (staticAddresses) Sync(_ context.Context, want []vip.Key) (map[vip.Key]vip.Addresses, error) {
	out := make(map[vip.Key]vip.Addresses, len(want))
	for i, k := range want {
		out[k] = vip.Addresses{IPv4: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})}
	}
	return out, nil
}

// benchWorld is the resources of the bench world with n services.
func benchWorld(n int) []appmesh.Resource {
	p := int32(8080)
	meta := func(i int) appmesh.Metadata { return appmesh.Metadata{UID: fmt.Sprint("uid-", i), Version: 1} }
	res := []appmesh.Resource{{Ref: appmesh.Ref{Kind: appmesh.KindMesh, Mesh: "cp", Name: "cp"}, Spec: &appmesh.MeshSpec{}, Metadata: meta(-1)}}
	front := &appmesh.VirtualNodeSpec{
		Listeners:        []appmesh.Listener{{PortMapping: &appmesh.PortMapping{Port: port(80), Protocol: appmesh.ProtocolHTTP}}},
		ServiceDiscovery: &appmesh.ServiceDiscovery{DNS: &appmesh.DNSServiceDiscovery{Hostname: "front.cp.local"}},
	}
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		vs := name + ".cp.local"
		res = append(res,
			appmesh.Resource{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "cp", Name: name}, Metadata: meta(2 * i), Spec: &appmesh.VirtualNodeSpec{
				Listeners:        []appmesh.Listener{{PortMapping: &appmesh.PortMapping{Port: &p, Protocol: appmesh.ProtocolTCP}}},
				ServiceDiscovery: &appmesh.ServiceDiscovery{DNS: &appmesh.DNSServiceDiscovery{Hostname: vs}},
			}},
			appmesh.Resource{Ref: appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: "cp", Name: vs}, Metadata: meta(2*i + 1), Spec: &appmesh.VirtualServiceSpec{
				Provider: &appmesh.VirtualServiceProvider{VirtualNode: &appmesh.VirtualNodeServiceProvider{VirtualNodeName: name}},
			}})
		front.Backends = append(front.Backends, appmesh.Backend{VirtualService: &appmesh.VirtualServiceBackend{VirtualServiceName: vs}})
	}
	return append(res, appmesh.Resource{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "cp", Name: "front"}, Metadata: meta(-2), Spec: front})
}

// benchInstances are the registrations of the bench world's nodes; gen
// moves endpoint 0 of service moved.
func benchInstances(n, moved, gen int) map[string][]registry.Instance {
	out := map[string][]registry.Instance{}
	for j := range benchClients {
		node := fmt.Sprint("node-", j)
		out[node] = append(out[node], registry.Instance{
			ID: 1, CgroupPath: "front", Mesh: "cp", VirtualNode: "front",
			Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, 99, 0, byte(j)})}, Ports: []uint32{80}, Healthy: true,
		})
	}
	for i := range n {
		for k := range 3 {
			node := fmt.Sprint("node-", (i*3+k)%benchClients)
			g := 0
			if i == moved && k == 0 {
				g = gen
			}
			out[node] = append(out[node], registry.Instance{
				ID: uint32(len(out[node]) + 1), CgroupPath: fmt.Sprintf("svc-%d-%d", i, k), Mesh: "cp", VirtualNode: fmt.Sprintf("svc-%d", i),
				Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(100 + k + 3*(g%8)), byte(i >> 8), byte(i)})},
				Ports:     []uint32{8080}, Healthy: true,
			})
		}
	}
	return out
}

type benchEnv struct {
	reg    *registry.Registry
	syncer *xds.Syncer
	n      int
}

func newBenchEnv(b *testing.B, n int) *benchEnv {
	b.Helper()
	st, err := boltstore.Open(filepath.Join(b.TempDir(), "weft.db"), boltstore.Options{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	reg, err := registry.New(registry.Config{TTL: time.Hour}, nil)
	if err != nil {
		b.Fatal(err)
	}
	for node, ins := range benchInstances(n, -1, 0) {
		if err := reg.Register(node, ins); err != nil {
			b.Fatal(err)
		}
	}
	s, err := xds.NewSyncer(xds.SyncerConfig{}, xds.SyncerDeps{
		Store: st, Resources: staticLister{res: benchWorld(n)}, Addresses: staticAddresses{},
		Cache:     cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil),
		Endpoints: func() xds.EndpointView { return reg.View() },
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Rebuild(context.Background()); err != nil {
		b.Fatal(err)
	}
	return &benchEnv{reg: reg, syncer: s, n: n}
}

// move registers node's instances with endpoint 0 of a service moved
// (generation i).
func (e *benchEnv) move(b *testing.B, i int) {
	b.Helper()
	svc := (i * 7919) % e.n
	node := fmt.Sprint("node-", (svc*3)%benchClients)
	if err := e.reg.Register(node, benchInstances(e.n, svc, i+1)[node]); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRebuild is the full rebuild after one endpoint moved: list,
// translate every proxy and node state, publish.
func BenchmarkRebuild(b *testing.B) {
	benchEndpointChange(b, func(s *xds.Syncer, ctx context.Context) error {
		_, err := s.Rebuild(ctx)
		return err
	})
}

// BenchmarkRefresh is the incremental update after one endpoint moved:
// what the controller does for a batch without store changes.
func BenchmarkRefresh(b *testing.B) {
	benchEndpointChange(b, (*xds.Syncer).Refresh)
}

// benchEndpointChange moves one endpoint per iteration (untimed) and times
// update.
func benchEndpointChange(b *testing.B, update func(*xds.Syncer, context.Context) error) {
	b.Helper()
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint("services=", n), func(b *testing.B) {
			e := newBenchEnv(b, n)
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				e.move(b, i)
				b.StartTimer()
				if err := update(e.syncer, context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
