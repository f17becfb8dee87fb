// SPDX-License-Identifier: Apache-2.0

package translate

import (
	"flag"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-mesh/weft/pkg/appmesh"
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
