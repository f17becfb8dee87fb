// SPDX-License-Identifier: Apache-2.0

package xds_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/google/go-cmp/cmp"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"

	"github.com/weft-mesh/weft/controlplane/xds"
	"github.com/weft-mesh/weft/controlplane/xds/translate"
	"github.com/weft-mesh/weft/pkg/appmesh"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

func sampleSet(t *testing.T, name string) *sample {
	t.Helper()
	for _, s := range sampleSets {
		if s.name == name {
			return loadSample(t, s.paths)
		}
	}
	t.Fatalf("no sample set %s", name)
	return nil
}

func proxyOf(t *testing.T, in translate.Input, nodeID string) *translate.Proxy {
	t.Helper()
	p, probs := translate.Compile(in).Proxy(nodeID)
	if p == nil {
		t.Fatalf("no proxy %s", nodeID)
	}
	for _, pr := range probs {
		t.Errorf("problem: %s: %s", pr.Ref, pr.Message)
	}
	return p
}

func routeConfig(t *testing.T, p *translate.Proxy, name string) *routev3.RouteConfiguration {
	t.Helper()
	for _, r := range p.Routes {
		if r.GetName() == name {
			return r
		}
	}
	t.Fatalf("%s has no route configuration %s", p.NodeID, name)
	return nil
}

func virtualHost(t *testing.T, rc *routev3.RouteConfiguration, name string) *routev3.VirtualHost {
	t.Helper()
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() == name {
			return vh
		}
	}
	t.Fatalf("%s has no virtual host %s", rc.GetName(), name)
	return nil
}

func routeNames(vh *routev3.VirtualHost) []string {
	var out []string
	for _, r := range vh.GetRoutes() {
		out = append(out, r.GetName())
	}
	return out
}

func listener(p *translate.Proxy, name string) *listenerv3.Listener {
	for _, l := range p.Listeners {
		if l.GetName() == name {
			return l
		}
	}
	return nil
}

func snapshotVersions(t *testing.T, in translate.Input) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, p := range translate.Translate(in).Proxies {
		s, err := xds.NewSnapshot(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		out[p.NodeID] = s.Versions()
	}
	return out
}

const front = "mesh/demo/virtualNode/front_shop"

// TestVersionsFollowContent translates S1 twice (identical versions), then
// with the canary at 50/50: only front's route configurations change.
func TestVersionsFollowContent(t *testing.T) {
	s := sampleSet(t, "s1")
	before := snapshotVersions(t, s.input())
	if again := snapshotVersions(t, s.input()); !cmp.Equal(before, again) {
		t.Fatalf("an unchanged world changed versions:\n%s", cmp.Diff(before, again))
	}
	for _, r := range s.res {
		if r.Ref.Kind == appmesh.KindRoute && r.Ref.Name == "canary" {
			ts := r.Spec.(*appmesh.RouteSpec).HTTPRoute.Action.WeightedTargets
			fifty := int32(50)
			ts[0].Weight, ts[1].Weight = &fifty, &fifty
		}
	}
	after := snapshotVersions(t, s.input())
	for id, v := range before {
		for typ, ver := range v {
			changed := after[id][typ] != ver
			want := typ == resourcev3.RouteType && (id == front || strings.HasSuffix(id, "/"+clientNode))
			if changed != want {
				t.Errorf("%s %s: changed = %v, want %v", id, typ, changed, want)
			}
		}
	}
	vh := virtualHost(t, routeConfig(t, proxyOf(t, s.input(), front), "rds_egress_http_8080"), "color.shop.svc.cluster.local")
	for _, c := range vh.GetRoutes()[0].GetRoute().GetWeightedClusters().GetClusters() {
		if c.GetWeight().GetValue() != 50 {
			t.Errorf("%s weight %d, want 50", c.GetName(), c.GetWeight().GetValue())
		}
	}
}

// TestS2RouteOrder: priorities ascending, the unprioritised default last.
func TestS2RouteOrder(t *testing.T) {
	s := sampleSet(t, "s2")
	p := proxyOf(t, s.input(), "mesh/demo/virtualNode/"+clientNode)
	vh := virtualHost(t, routeConfig(t, p, "rds_egress_http_8080"), "color-headers.shop.svc.cluster.local")
	want := []string{"exact-blue", "regex-green", "beta-users-post", "header-present", "default"}
	if diff := cmp.Diff(want, routeNames(vh)); diff != "" {
		t.Errorf("route order (-want +got):\n%s", diff)
	}
	post := vh.GetRoutes()[2].GetMatch()
	if post.GetPath() != "/order" || len(post.GetQueryParameters()) != 1 {
		t.Errorf("beta-users-post match = %v", post)
	}
	var inverted bool
	for _, h := range post.GetHeaders() {
		if h.GetName() == "x-user-tier" {
			inverted = h.GetInvertMatch() && h.GetRangeMatch().GetStart() == 100 && h.GetRangeMatch().GetEnd() == 200
		}
	}
	if !inverted {
		t.Errorf("x-user-tier is not an inverted range 100-200: %v", post.GetHeaders())
	}
}

// TestRouteOrderTieBreaks checks §9.1's deterministic tie-breaks among
// unprioritised routes: longer path, exact before prefix before regex, more matchers,
// then the name; and that input order does not matter.
func TestRouteOrderTieBreaks(t *testing.T) {
	str := func(s string) *string { return &s }
	one := int32(1)
	port := int32(80)
	route := func(name string, m appmesh.HTTPRouteMatch) appmesh.Resource {
		return appmesh.Resource{
			Ref: appmesh.Ref{Kind: appmesh.KindRoute, Mesh: "m", Parent: "r", Name: name},
			Spec: &appmesh.RouteSpec{HTTPRoute: &appmesh.HTTPRoute{
				Match:  &m,
				Action: &appmesh.HTTPRouteAction{WeightedTargets: []appmesh.WeightedTarget{{VirtualNode: "n", Weight: &one}}},
			}},
		}
	}
	base := []appmesh.Resource{
		{Ref: appmesh.Ref{Kind: appmesh.KindMesh, Mesh: "m", Name: "m"}, Spec: &appmesh.MeshSpec{}},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "m", Name: "n"}, Spec: &appmesh.VirtualNodeSpec{
			Listeners:        []appmesh.Listener{{PortMapping: &appmesh.PortMapping{Port: &port, Protocol: appmesh.ProtocolHTTP}}},
			ServiceDiscovery: &appmesh.ServiceDiscovery{DNS: &appmesh.DNSServiceDiscovery{Hostname: "n.local"}},
		}},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "m", Name: "caller"}, Spec: &appmesh.VirtualNodeSpec{
			Backends: []appmesh.Backend{{VirtualService: &appmesh.VirtualServiceBackend{VirtualServiceName: "s.local"}}},
		}},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualRouter, Mesh: "m", Name: "r"}, Spec: &appmesh.VirtualRouterSpec{
			Listeners: []appmesh.VirtualRouterListener{{PortMapping: &appmesh.PortMapping{Port: &port, Protocol: appmesh.ProtocolHTTP}}},
		}},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: "m", Name: "s.local"}, Spec: &appmesh.VirtualServiceSpec{
			Provider: &appmesh.VirtualServiceProvider{VirtualRouter: &appmesh.VirtualRouterServiceProvider{VirtualRouterName: "r"}},
		}},
	}
	routes := []appmesh.Resource{
		route("root", appmesh.HTTPRouteMatch{Prefix: str("/")}),
		route("api", appmesh.HTTPRouteMatch{Prefix: str("/api/")}),
		route("api-v1", appmesh.HTTPRouteMatch{Prefix: str("/api/v1/")}),
		route("regex", appmesh.HTTPRouteMatch{Path: &appmesh.HTTPPathMatch{Regex: str("/api/v1/x.*")}}),
		route("exact", appmesh.HTTPRouteMatch{Path: &appmesh.HTTPPathMatch{Exact: str("/api/")}}),
		route("api-hdr", appmesh.HTTPRouteMatch{Prefix: str("/api/"), Headers: []appmesh.HTTPRouteHeader{{Name: "x"}}}),
		route("b-tie", appmesh.HTTPRouteMatch{Prefix: str("/z")}),
		route("a-tie", appmesh.HTTPRouteMatch{Prefix: str("/y")}),
	}
	want := []string{"api-v1", "exact", "api-hdr", "api", "a-tie", "b-tie", "root", "regex"}
	for _, order := range [][]appmesh.Resource{routes, reversed(routes)} {
		in := translate.Input{Resources: slices.Concat(base, order)}
		p := proxyOf(t, in, "mesh/m/virtualNode/caller")
		got := routeNames(virtualHost(t, routeConfig(t, p, "rds_egress_http_80"), "s.local"))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("order (-want +got):\n%s", diff)
		}
	}
}

func reversed[T any](s []T) []T {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

// TestRetryOn checks the retry policies of S1 and S3 (§15.4 tokens) and the
// default policy.
func TestRetryOn(t *testing.T) {
	s1 := proxyOf(t, sampleSet(t, "s1").input(), front)
	canary := virtualHost(t, routeConfig(t, s1, "rds_egress_http_8080"), "color.shop.svc.cluster.local").GetRoutes()[0].GetRoute()
	s3 := proxyOf(t, sampleSet(t, "s3").input(), "mesh/demo/virtualNode/"+clientNode)
	grpc := virtualHost(t, routeConfig(t, s3, "rds_egress_http_9090"), "color-grpc.shop.svc.cluster.local").GetRoutes()
	if got := routeNames(&routev3.VirtualHost{Routes: grpc}); !cmp.Equal(got, []string{"get-color", "any-method"}) {
		t.Fatalf("S3 routes = %v", got)
	}
	for _, tc := range []struct {
		name       string
		action     *routev3.RouteAction
		retryOn    string
		retries    uint32
		perTry     time.Duration
		timeout    time.Duration
		statusCode []uint32
	}{
		{"s1 canary", canary, "gateway-error,reset,refused-stream,connect-failure", 2, 2 * time.Second, 10 * time.Second, nil},
		{"s3 get-color", grpc[0].GetRoute(), "refused-stream,connect-failure,unavailable,cancelled,deadline-exceeded", 3, 5 * time.Second, 20 * time.Second, nil},
		{"s3 any-method (default)", grpc[1].GetRoute(), "connect-failure,refused-stream,unavailable,reset,retriable-status-codes", 2, 0, 15 * time.Second, []uint32{503}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := tc.action.GetRetryPolicy()
			if rp.GetRetryOn() != tc.retryOn || rp.GetNumRetries().GetValue() != tc.retries ||
				rp.GetPerTryTimeout().AsDuration() != tc.perTry || !slices.Equal(rp.GetRetriableStatusCodes(), tc.statusCode) {
				t.Errorf("retry policy = %v", rp)
			}
			if got := tc.action.GetTimeout().AsDuration(); got != tc.timeout {
				t.Errorf("timeout = %s, want %s", got, tc.timeout)
			}
			if got := tc.action.GetIdleTimeout().AsDuration(); got != 300*time.Second {
				t.Errorf("idle timeout = %s, want 300s", got)
			}
		})
	}
	if got := grpc[0].GetMatch().GetPath(); got != "/color.ColorService/GetColor" {
		t.Errorf("get-color path = %q", got)
	}
	if got := grpc[1].GetMatch().GetPrefix(); got != "/color.ColorService/" {
		t.Errorf("any-method prefix = %q", got)
	}
}

// TestS4IsL4: the TCP service becomes MODE_L4 with backends on 5432, and
// the proxy has a tcp_proxy chain (fallback) but no HTTP route table for it.
func TestS4IsL4(t *testing.T) {
	s := sampleSet(t, "s4")
	st, probs := translate.Compile(s.input()).NodeState(testNode, s.workloads)
	if len(probs) > 0 {
		t.Fatalf("problems: %v", probs)
	}
	if len(st.GetServices()) != 1 {
		t.Fatalf("services = %v", st.GetServices())
	}
	port := st.GetServices()[0].GetPorts()[0]
	if port.GetPort() != 15432 || port.GetMode() != nodeapiv1.Mode_MODE_L4 {
		t.Fatalf("db port = %v", port)
	}
	var addrs []string
	for _, b := range port.GetBackends() {
		addrs = append(addrs, b.GetAddress())
		if b.GetWeight() != 1 || b.GetVirtualNode() != "db-primary_shop" {
			t.Errorf("backend %v", b)
		}
	}
	if diff := cmp.Diff([]string{"10.1.0.1:5432", "10.1.0.2:5432"}, addrs); diff != "" {
		t.Errorf("backends (healthy endpoints on 5432; -want +got):\n%s", diff)
	}
	p := proxyOf(t, s.input(), "mesh/demo/virtualNode/"+clientNode)
	for _, rc := range p.Routes {
		if strings.Contains(rc.GetName(), "15432") {
			t.Errorf("route configuration %s for the TCP port", rc.GetName())
		}
	}
	var tcp bool
	for _, fc := range listener(p, "lds_egress_0.0.0.0_15001").GetFilterChains() {
		if fc.GetFilterChainMatch().GetDestinationPort().GetValue() == 15432 {
			if fc.GetFilters()[0].GetName() != wellknown.TCPProxy {
				t.Errorf("chain for 15432 is %s", fc.GetFilters()[0].GetName())
			}
			tcp = true
		}
	}
	if !tcp {
		t.Error("no tcp_proxy chain for 15432")
	}
}

// TestL4Weights: a TCP route 90/10 over three and two endpoints gives
// endpoint weights 90/3 : 10/2, multiplied out to integers.
func TestL4Weights(t *testing.T) {
	s := sampleSet(t, "s4")
	w90, w10 := int32(90), int32(10)
	// A second primary with two endpoints, and the route split 90/10.
	port := int32(5432)
	second := appmesh.Resource{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "db-replica_shop"}, Spec: &appmesh.VirtualNodeSpec{
		Listeners:        []appmesh.Listener{{PortMapping: &appmesh.PortMapping{Port: &port, Protocol: appmesh.ProtocolTCP}}},
		ServiceDiscovery: &appmesh.ServiceDiscovery{DNS: &appmesh.DNSServiceDiscovery{Hostname: "db-replica.shop"}},
	}}
	s.res = append(s.res, second)
	for _, r := range s.res {
		if r.Ref.Kind == appmesh.KindRoute {
			r.Spec.(*appmesh.RouteSpec).TCPRoute.Action.WeightedTargets = []appmesh.WeightedTarget{
				{VirtualNode: "db-primary_shop", Weight: &w90}, {VirtualNode: "db-replica_shop", Weight: &w10},
			}
		}
	}
	primary := s.eps.eps[translate.NodeKey{Mesh: "demo", Name: "db-primary_shop"}]
	primary[2].Healthy = true // three healthy primaries
	s.eps.eps[translate.NodeKey{Mesh: "demo", Name: "db-replica_shop"}] = []translate.Endpoint{
		{Address: netip.MustParseAddr("10.2.0.1"), Port: 5432, Healthy: true}, {Address: netip.MustParseAddr("10.2.0.2"), Port: 5432, Healthy: true},
	}
	st, _ := translate.Compile(s.input()).NodeState(testNode, s.workloads)
	got := map[string]uint32{}
	for _, b := range st.GetServices()[0].GetPorts()[0].GetBackends() {
		got[b.GetAddress()] = b.GetWeight()
	}
	// 90/3 = 30 and 10/2 = 5 per endpoint: 6:1 after dividing by 5.
	want := map[string]uint32{"10.1.0.1:5432": 6, "10.1.0.2:5432": 6, "10.1.0.3:5432": 6, "10.2.0.1:5432": 1, "10.2.0.2:5432": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("weights (-want +got):\n%s", diff)
	}
}

// TestS7EgressFilter: DROP_ALL has no catch-all chain and a drop_all mesh;
// ALLOW_ALL adds the passthrough chain, cluster and virtual hosts.
func TestS7EgressFilter(t *testing.T) {
	s := sampleSet(t, "s7")
	worker := "mesh/locked/virtualNode/worker_locked"
	hasCatchAll := func(p *translate.Proxy) bool {
		for _, fc := range listener(p, "lds_egress_0.0.0.0_15001").GetFilterChains() {
			m := fc.GetFilterChainMatch()
			if m.GetDestinationPort() == nil && len(m.GetServerNames()) == 0 && len(m.GetPrefixRanges()) == 0 {
				return true
			}
		}
		return false
	}
	hasCluster := func(p *translate.Proxy, name string) *clusterv3.Cluster {
		for _, c := range p.Clusters {
			if c.GetName() == name {
				return c
			}
		}
		return nil
	}
	p := proxyOf(t, s.input(), worker)
	if hasCatchAll(p) || hasCluster(p, "cds_egress_locked_mesh-allow-all") != nil {
		t.Error("DROP_ALL has a passthrough")
	}
	if hasCluster(p, "cds_egress_locked_amazonaws") == nil {
		t.Error("DROP_ALL lost the amazonaws passthrough")
	}
	ext := hasCluster(p, "cds_egress_locked_httpbin-ext_locked_tcp_443")
	if ext.GetType() != clusterv3.Cluster_LOGICAL_DNS {
		t.Errorf("unmanaged httpbin-ext cluster type = %v, want LOGICAL_DNS", ext.GetType())
	}
	st, _ := translate.Compile(s.input()).NodeState(testNode, s.workloads)
	if m := st.GetMeshes()[0]; !m.GetDropAll() {
		t.Errorf("mesh %v not drop_all", m)
	}
	if mode := st.GetServices()[0].GetPorts()[0].GetMode(); mode != nodeapiv1.Mode_MODE_L7 {
		t.Errorf("httpbin (DNS, unmanaged) mode = %v, want L7", mode)
	}

	for _, r := range s.res {
		if r.Ref.Kind == appmesh.KindMesh {
			r.Spec.(*appmesh.MeshSpec).EgressFilter.Type = appmesh.EgressAllowAll
		}
	}
	p = proxyOf(t, s.input(), worker)
	if !hasCatchAll(p) {
		t.Error("ALLOW_ALL has no catch-all chain")
	}
	c := hasCluster(p, "cds_egress_locked_mesh-allow-all")
	if c.GetType() != clusterv3.Cluster_ORIGINAL_DST || c.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED {
		t.Errorf("passthrough cluster = %v", c)
	}
	for _, fc := range listener(p, "lds_egress_0.0.0.0_15001").GetFilterChains() {
		if fc.GetName() == "mesh-allow-all" {
			var tp tcpproxyv3.TcpProxy
			if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(&tp); err != nil || tp.GetCluster() != c.GetName() {
				t.Errorf("catch-all chain goes to %q (%v)", tp.GetCluster(), err)
			}
		}
	}
	st, _ = translate.Compile(s.input()).NodeState(testNode, s.workloads)
	if st.GetMeshes()[0].GetDropAll() {
		t.Error("ALLOW_ALL mesh is drop_all")
	}
}

// TestS5GatewayRewrites checks the flattened gateway routes of S5.
func TestS5GatewayRewrites(t *testing.T) {
	p := proxyOf(t, sampleSet(t, "s5").input(), "mesh/demo/virtualGateway/ingress-gw_shop")
	if listener(p, "lds_ingress_0.0.0.0_port_8088") == nil {
		t.Fatal("no gateway listener on 8088")
	}
	routes := virtualHost(t, routeConfig(t, p, "rds_ingress_http_8088"), "ingress").GetRoutes()
	byName := map[string]*routev3.Route{}
	for _, r := range routes {
		byName[r.GetName()] = r
	}
	wantOrder := []string{
		"status_shop/canary",
		"maroon-is-blue_shop/exact-blue", "maroon-is-blue_shop/regex-green", "maroon-is-blue_shop/header-present", "maroon-is-blue_shop/default",
		"colors_shop/exact-blue", "colors_shop/regex-green", "colors_shop/beta-users-post", "colors_shop/header-present", "colors_shop/default",
		"keep-prefix_shop/canary",
	}
	if diff := cmp.Diff(wantOrder, routeNames(&routev3.VirtualHost{Routes: routes})); diff != "" {
		t.Errorf("gateway route order (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		route, prefix, path, prefixRewrite, regexRewrite, host string
	}{
		{"status_shop/canary", "", "/status", "", "/ping", "color.shop.svc.cluster.local"},
		{"maroon-is-blue_shop/default", "/maroon/", "", "/blue/", "", "color-headers.shop.svc.cluster.local"},
		{"colors_shop/default", "/colors/", "", "/", "", "color-headers.shop.svc.cluster.local"},
		{"colors_shop/beta-users-post", "", "/colors/order", "/order", "", "color-headers.shop.svc.cluster.local"},
		{"keep-prefix_shop/canary", "/api/", "", "", "", "color.shop.svc.cluster.local"},
	} {
		r := byName[tc.route]
		a := r.GetRoute()
		if r.GetMatch().GetPrefix() != tc.prefix || r.GetMatch().GetPath() != tc.path ||
			a.GetPrefixRewrite() != tc.prefixRewrite || a.GetRegexRewrite().GetSubstitution() != tc.regexRewrite ||
			a.GetHostRewriteLiteral() != tc.host {
			t.Errorf("%s: match %v, action prefix_rewrite=%q regex_rewrite=%v host=%q", tc.route, r.GetMatch(), a.GetPrefixRewrite(), a.GetRegexRewrite(), a.GetHostRewriteLiteral())
		}
	}
	// The host match of colors: suffix .example.com on :authority.
	h := byName["colors_shop/default"].GetMatch().GetHeaders()[0]
	if h.GetName() != ":authority" || h.GetStringMatch().GetSuffix() != ".example.com" {
		t.Errorf("colors host match = %v", h)
	}
	// maroon's query parameter is kept on every flattened route.
	if q := byName["maroon-is-blue_shop/exact-blue"].GetMatch().GetQueryParameters(); len(q) != 1 || q[0].GetName() != "fish" {
		t.Errorf("maroon query = %v", q)
	}
	// The gateway's connection pool limits its clusters.
	for _, c := range p.Clusters {
		th := c.GetCircuitBreakers().GetThresholds()[0]
		if th.GetMaxConnections().GetValue() != 1024 || th.GetMaxPendingRequests().GetValue() != 2048 {
			t.Errorf("%s thresholds = %v", c.GetName(), th)
		}
	}
}

// TestS8TwoRouteTables: the REST and h2c ports of inventory get separate
// route tables and clusters; outlier detection lands on the 8080 cluster.
func TestS8TwoRouteTables(t *testing.T) {
	p := proxyOf(t, sampleSet(t, "s8").input(), "mesh/demo/virtualNode/"+clientNode)
	rest := virtualHost(t, routeConfig(t, p, "rds_egress_http_8080"), "inventory.shop.svc.cluster.local").GetRoutes()
	h2 := virtualHost(t, routeConfig(t, p, "rds_egress_http_9090"), "inventory.shop.svc.cluster.local").GetRoutes()
	if len(rest) != 1 || rest[0].GetName() != "rest" || rest[0].GetRoute().GetCluster() != "cds_egress_demo_inventory_shop_http_8080" {
		t.Errorf("8080 routes = %v", rest)
	}
	if rest[0].GetRoute().GetTimeout().AsDuration() != 60*time.Second {
		t.Errorf("rest timeout = %v", rest[0].GetRoute().GetTimeout())
	}
	if len(h2) != 1 || h2[0].GetName() != "h2" || h2[0].GetRoute().GetCluster() != "cds_egress_demo_inventory_shop_http2_9090" {
		t.Errorf("9090 routes = %v", h2)
	}
	for _, c := range p.Clusters {
		if c.GetName() == "cds_egress_demo_inventory_shop_http_8080" {
			od := c.GetOutlierDetection()
			if od.GetConsecutive_5Xx().GetValue() != 5 || od.GetBaseEjectionTime().AsDuration() != 30*time.Second || od.GetMaxEjectionPercent().GetValue() != 50 {
				t.Errorf("outlier detection = %v", od)
			}
		}
	}
	inv := proxyOf(t, sampleSet(t, "s8").input(), "mesh/demo/virtualNode/inventory_shop")
	ingress := virtualHost(t, routeConfig(t, inv, "rds_ingress_http_8080"), "ingress").GetRoutes()[0].GetRoute()
	if ingress.GetTimeout().AsDuration() != 60*time.Second || ingress.GetIdleTimeout().AsDuration() != 120*time.Second {
		t.Errorf("inventory ingress timeouts = %v / %v", ingress.GetTimeout(), ingress.GetIdleTimeout())
	}
}

// TestBadResourcesDoNotBlockOthers adds a route with a target that does not
// exist and one on a port the router lacks: both are reported and left out,
// and the rest of S1 is translated as before.
func TestBadResourcesDoNotBlockOthers(t *testing.T) {
	s := sampleSet(t, "s1")
	want := proxyOf(t, s.input(), front)
	one, bad := int32(1), int32(9999)
	prefix := "/x"
	for _, r := range []struct {
		name string
		spec *appmesh.RouteSpec
	}{
		{"ghost", &appmesh.RouteSpec{HTTPRoute: &appmesh.HTTPRoute{
			Match:  &appmesh.HTTPRouteMatch{Prefix: &prefix},
			Action: &appmesh.HTTPRouteAction{WeightedTargets: []appmesh.WeightedTarget{{VirtualNode: "nobody", Weight: &one}}},
		}}},
		{"wrong-port", &appmesh.RouteSpec{HTTPRoute: &appmesh.HTTPRoute{
			Match:  &appmesh.HTTPRouteMatch{Prefix: &prefix, Port: &bad},
			Action: &appmesh.HTTPRouteAction{WeightedTargets: []appmesh.WeightedTarget{{VirtualNode: "blue_shop", Weight: &one}}},
		}}},
	} {
		s.res = append(s.res, appmesh.Resource{Ref: appmesh.Ref{Kind: appmesh.KindRoute, Mesh: "demo", Parent: "color_shop", Name: r.name}, Spec: r.spec})
	}
	res := translate.Translate(s.input())
	var got []string
	for _, p := range res.Problems {
		got = append(got, p.Ref.Name+": "+p.Message)
	}
	wantProbs := []string{
		`ghost: target virtual node "nobody" not found`,
		`wrong-port: virtual router "color_shop" has no listener on port 9999`,
	}
	if diff := cmp.Diff(wantProbs, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	for _, p := range res.Proxies {
		if p.NodeID == front {
			if diff := cmp.Diff(render(t, want), render(t, p)); diff != "" {
				t.Errorf("front changed (-want +got):\n%s", diff)
			}
		}
	}
}

// TestInvalidRegexIsReported: a route whose regex RE2 rejects is reported
// and left out.
func TestInvalidRegexIsReported(t *testing.T) {
	s := sampleSet(t, "s2")
	for _, r := range s.res {
		if r.Ref.Name == "regex-green" {
			re := "(unclosed"
			r.Spec.(*appmesh.RouteSpec).HTTPRoute.Match.Headers[0].Match.Regex = &re
		}
	}
	res := translate.Translate(s.input())
	if len(res.Problems) != 1 || res.Problems[0].Ref.Name != "regex-green" {
		t.Fatalf("problems = %v", res.Problems)
	}
	p := proxyOf(t, s.input(), "mesh/demo/virtualNode/"+clientNode)
	vh := virtualHost(t, routeConfig(t, p, "rds_egress_http_8080"), "color-headers.shop.svc.cluster.local")
	if diff := cmp.Diff([]string{"exact-blue", "beta-users-post", "header-present", "default"}, routeNames(vh)); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
}

// TestNodeStateServedByCache sets a snapshot holding a node state in
// go-control-plane's ADS snapshot cache and watches NodeStateType, as the
// agent will.
func TestNodeStateServedByCache(t *testing.T) {
	s := sampleSet(t, "s4")
	st, _ := translate.Compile(s.input()).NodeState(testNode, s.workloads)
	snap, err := xds.NewSnapshot(nil, st)
	if err != nil {
		t.Fatal(err)
	}
	c := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	if err := c.SetSnapshot(context.Background(), testNode, snap); err != nil {
		t.Fatal(err)
	}
	out := make(chan cachev3.Response, 1)
	req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: testNode}, TypeUrl: xds.NodeStateType}
	cancel, err := c.CreateWatch(req, stream.NewSotwSubscription(nil, true), out)
	if err != nil {
		t.Fatal(err)
	}
	if cancel != nil {
		defer cancel()
	}
	select {
	case resp := <-out:
		dr, err := resp.GetDiscoveryResponse()
		if err != nil {
			t.Fatal(err)
		}
		if dr.GetTypeUrl() != xds.NodeStateType || len(dr.GetResources()) != 1 || dr.GetVersionInfo() != snap.GetVersion(xds.NodeStateType) {
			t.Fatalf("response = %v", dr)
		}
		var got nodeapiv1.NodeState
		if err := dr.GetResources()[0].UnmarshalTo(&got); err != nil {
			t.Fatal(err)
		}
		if got.GetNode() != testNode || got.GetVersion() != st.GetVersion() {
			t.Errorf("served node state %s/%s", got.GetNode(), got.GetVersion())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no response for the node state type")
	}
	if err := snap.ConstructVersionMap(); err != nil {
		t.Fatal(err)
	}
	if len(snap.GetVersionMap(xds.NodeStateType)) != 1 {
		t.Error("no delta version for the node state")
	}
}
