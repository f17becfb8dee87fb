// SPDX-License-Identifier: Apache-2.0

package translate

import (
	"flag"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/weft-mesh/weft/controlplane/xds/vip"
	"github.com/weft-mesh/weft/pkg/appmesh"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

// update is accepted (and unused here) so that
// go test ./controlplane/xds/... -update rewrites the golden files of
// package xds without failing on this package.
var _ = flag.Bool("update", false, "rewrite golden files (none in this package)")

func TestRetryOn(t *testing.T) {
	for _, tc := range []struct {
		name             string
		http, tcp, grpcs []string
		want             string
	}{
		{"none", nil, nil, nil, ""},
		{"server-error", []string{"server-error"}, nil, nil, "5xx,reset"},
		{"reset once", []string{"server-error", "gateway-error"}, nil, nil, "5xx,reset,gateway-error"},
		{"client and stream", []string{"client-error", "stream-error"}, nil, nil, "retriable-4xx,refused-stream"},
		{"tcp", nil, []string{"connection-error"}, nil, "connect-failure"},
		{
			"grpc", nil, nil,
			[]string{"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"},
			"cancelled,deadline-exceeded,internal,resource-exhausted,unavailable",
		},
		{"order http tcp grpc", []string{"stream-error"}, []string{"connection-error"}, []string{"unavailable"}, "refused-stream,connect-failure,unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RetryOn(tc.http, tc.tcp, tc.grpcs); got != tc.want {
				t.Errorf("RetryOn = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPathMatches(t *testing.T) {
	for _, tc := range []struct {
		cond pathCond
		path string
		want bool
	}{
		{pathCond{pathPrefix, "/"}, "/ping", true},
		{pathCond{pathPrefix, "/pi"}, "/ping", true},
		{pathCond{pathPrefix, "/x"}, "/ping", false},
		{pathCond{pathExact, "/ping"}, "/ping", true},
		{pathCond{pathExact, "/ping"}, "/ping/", false},
		{pathCond{pathRegex, "/p.*g"}, "/ping", true},
		{pathCond{pathRegex, "/p"}, "/ping", false}, // whole-path match
	} {
		if got := pathMatches(tc.cond, tc.path); got != tc.want {
			t.Errorf("pathMatches(%v, %q) = %v", tc.cond, tc.path, got)
		}
	}
}

func TestMeshIDsStable(t *testing.T) {
	a := meshIDs([]string{"demo", "locked"})
	b := meshIDs([]string{"a-new-mesh", "demo", "locked"})
	if a["demo"] != b["demo"] || a["locked"] != b["locked"] {
		t.Errorf("ids moved when a mesh was added: %v vs %v", a, b)
	}
	if a["demo"] == 0 || a["demo"] == a["locked"] {
		t.Errorf("ids = %v", a)
	}
}

// fakeSource is a hand-written EndpointSource.
type fakeSource map[NodeKey][]Endpoint

func (f fakeSource) Endpoints(n NodeKey) ([]Endpoint, bool) {
	eps, ok := f[n]
	return eps, ok
}

// TestL4WeightsRounded: endpoint counts whose least common multiple is too
// large fall back to rounded shares.
func TestL4WeightsRounded(t *testing.T) {
	port := int32(5432)
	var targets []target
	src := fakeSource{}
	w := &World{in: Input{Endpoints: src}}
	m := &mesh{name: "m", nodes: map[string]*appmesh.VirtualNodeSpec{}}
	for i, n := range []int{7, 11, 13, 17} { // lcm 17017 > maxExactScale
		name := string(rune('a' + i))
		m.nodes[name] = &appmesh.VirtualNodeSpec{Listeners: []appmesh.Listener{{PortMapping: &appmesh.PortMapping{Port: &port, Protocol: appmesh.ProtocolTCP}}}}
		for h := range n {
			src[NodeKey{Mesh: "m", Name: name}] = append(src[NodeKey{Mesh: "m", Name: name}], Endpoint{
				Address: netip.AddrFrom4([4]byte{10, byte(i), 0, byte(h + 1)}), Port: 5432, Healthy: true,
			})
		}
		targets = append(targets, target{node: name, port: port, proto: appmesh.ProtocolTCP, weight: 25})
	}
	cr := &compiledRoute{targets: targets}
	sp := servicePort{port: 5432, proto: appmesh.ProtocolTCP, routes: []*compiledRoute{cr}}
	out := w.servicePortState(m, sp, nil, deps{})
	sums := map[string]uint32{}
	for _, b := range out.GetBackends() {
		sums[b.GetVirtualNode()] += b.GetWeight()
	}
	// Each target has a quarter of the traffic, within rounding.
	for name, s := range sums {
		if d := float64(s)/float64(sums["a"]) - 1; d > 0.01 || d < -0.01 {
			t.Errorf("target %s total weight %d vs %d", name, s, sums["a"])
		}
	}
	if diff := cmp.Diff(4, len(sums)); diff != "" {
		t.Error(diff)
	}
}

// TestCloudMapAttributes: a node discovered through Cloud Map with
// attributes takes only the registered endpoints that carry all of them,
// on the L4 path as in the proxy's load assignments; without attributes it
// takes every one.
func TestCloudMapAttributes(t *testing.T) {
	port := int32(5432)
	ep := func(last byte, attrs map[string]string) Endpoint {
		return Endpoint{Address: netip.AddrFrom4([4]byte{10, 0, 0, last}), Port: 5432, Healthy: true, Attributes: attrs}
	}
	eps := []Endpoint{
		ep(1, map[string]string{"version": "v1", "zone": "a"}),
		ep(2, map[string]string{"version": "v2"}),
		ep(3, nil),
		ep(4, map[string]string{"version": "v1"}),
	}
	node := func(attrs ...appmesh.CloudMapInstanceAttribute) *appmesh.VirtualNodeSpec {
		return &appmesh.VirtualNodeSpec{
			Listeners: []appmesh.Listener{{PortMapping: &appmesh.PortMapping{Port: &port, Protocol: appmesh.ProtocolTCP}}},
			ServiceDiscovery: &appmesh.ServiceDiscovery{AWSCloudMap: &appmesh.CloudMapServiceDiscovery{
				NamespaceName: "shop.local", ServiceName: "db", Attributes: attrs,
			}},
		}
	}
	v1 := appmesh.CloudMapInstanceAttribute{Key: "version", Value: "v1"}
	zoneA := appmesh.CloudMapInstanceAttribute{Key: "zone", Value: "a"}
	for _, tc := range []struct {
		name string
		vn   *appmesh.VirtualNodeSpec
		want []string
	}{
		{"no attributes", node(), []string{"10.0.0.1:5432", "10.0.0.2:5432", "10.0.0.3:5432", "10.0.0.4:5432"}},
		{"version=v1", node(v1), []string{"10.0.0.1:5432", "10.0.0.4:5432"}},
		{"version=v1 and zone=a", node(v1, zoneA), []string{"10.0.0.1:5432"}},
		{"version=v3", node(appmesh.CloudMapInstanceAttribute{Key: "version", Value: "v3"}), nil},
	} {
		w := &World{in: Input{Endpoints: fakeSource{{Mesh: "m", Name: "db"}: eps}}}
		m := &mesh{name: "m", nodes: map[string]*appmesh.VirtualNodeSpec{"db": tc.vn}}
		cr := &compiledRoute{targets: []target{{node: "db", port: port, proto: appmesh.ProtocolTCP, weight: 1}}}
		out := w.servicePortState(m, servicePort{port: 5432, proto: appmesh.ProtocolTCP, routes: []*compiledRoute{cr}}, nil, deps{})
		var got []string
		for _, b := range out.GetBackends() {
			got = append(got, b.GetAddress())
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: L4 backends (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestStateCacheRetain computes the states of two nodes through a cache,
// forgets one, and checks that the cache still gives both the states a
// cache-less NodeState gives.
func TestStateCacheRetain(t *testing.T) {
	port := int32(8080)
	res := []appmesh.Resource{
		{Ref: appmesh.Ref{Kind: appmesh.KindMesh, Mesh: "m", Name: "m"}, Spec: &appmesh.MeshSpec{}},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "m", Name: "db"}, Spec: &appmesh.VirtualNodeSpec{
			Listeners:        []appmesh.Listener{{PortMapping: &appmesh.PortMapping{Port: &port, Protocol: appmesh.ProtocolTCP}}},
			ServiceDiscovery: &appmesh.ServiceDiscovery{DNS: &appmesh.DNSServiceDiscovery{Hostname: "db.m"}},
		}},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: "m", Name: "db.m"}, Spec: &appmesh.VirtualServiceSpec{
			Provider: &appmesh.VirtualServiceProvider{VirtualNode: &appmesh.VirtualNodeServiceProvider{VirtualNodeName: "db"}},
		}},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "m", Name: "app"}, Spec: &appmesh.VirtualNodeSpec{
			Backends: []appmesh.Backend{{VirtualService: &appmesh.VirtualServiceBackend{VirtualServiceName: "db.m"}}},
		}},
	}
	src := fakeSource{{Mesh: "m", Name: "db"}: {{Address: netip.MustParseAddr("10.0.0.1"), Port: 8080, Healthy: true}}}
	w := Compile(Input{Resources: res, Addresses: map[vip.Key]vip.Addresses{
		{Mesh: "m", Service: "db.m"}: {IPv4: netip.MustParseAddr("240.240.0.1")},
	}, Endpoints: src})
	wls := map[string][]Workload{
		"a": {{ID: 1, CgroupPath: "app", Mesh: "m", VirtualNode: "app"}},
		"b": {{ID: 1, CgroupPath: "app", Mesh: "m", VirtualNode: "app"}, {ID: 2, CgroupPath: "db", Mesh: "m", VirtualNode: "db"}},
	}
	c := NewStateCache()
	check := func() {
		t.Helper()
		for node, ws := range wls {
			got, _ := w.CachedNodeState(c, node, ws)
			want, _ := w.NodeState(node, ws)
			if !proto.Equal(got, want) {
				t.Errorf("node %s: cached state\n%v\nwant\n%v", node, got, want)
			}
			if len(got.GetServices()) != 1 || got.GetServices()[0].GetPorts()[0].GetMode() != nodeapiv1.Mode_MODE_L4 {
				t.Errorf("node %s: services %v, want db.m as L4", node, got.GetServices())
			}
		}
	}
	check()
	c.Retain([]string{"b"})
	if _, ok := c.plans["a"]; ok || len(c.plans) != 1 {
		t.Errorf("plans after Retain(b): %d, a kept: %v", len(c.plans), ok)
	}
	check()
}
