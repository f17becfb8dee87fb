// SPDX-License-Identifier: Apache-2.0

package translate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-mesh/weft/controlplane/xds/vip"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// proxyState collects the resources of one proxy while they are built.
type proxyState struct {
	builder
	w               *World
	m               *mesh
	ref             appmesh.Ref
	pref            appmesh.IPPreference
	logs            []*accesslogv3.AccessLog
	listeners       map[string]*listenerv3.Listener
	routes          map[string]*routev3.RouteConfiguration
	clusters        map[string]*clusterv3.Cluster
	loadAssignments map[string]*endpointv3.ClusterLoadAssignment
	// tlsFrom names the service whose client policy decided a cluster's TLS.
	tlsFrom  map[string]string
	problems []Problem
	// deps are the endpoint answers read; eds how each EDS load
	// assignment was made (its index is set by finish).
	deps deps
	eds  map[string]edsAssignment
}

// endpoints asks the world's endpoint source and records the answer.
func (ps *proxyState) endpoints(k NodeKey) ([]Endpoint, bool) {
	a := ask(ps.w.in.Endpoints, k)
	ps.deps[k] = a
	return a.eps, a.managed
}

func (ps *proxyState) problem(ref appmesh.Ref, format string, args ...any) {
	ps.problems = append(ps.problems, Problem{Ref: ref, Message: fmt.Sprintf(format, args...)})
}

// Proxy translates the virtual node or virtual gateway with the node id
// (mesh/<mesh>/virtualNode/<name> or mesh/<mesh>/virtualGateway/<name>). It
// returns nil when the input has no such node or gateway. The problems are
// those of this proxy only; Compile's are in World.Problems.
func (w *World) Proxy(nodeID string) (*Proxy, []Problem) {
	ref, err := appmesh.ParseResourcePath(nodeID)
	if err != nil {
		return nil, nil
	}
	m := w.meshes[ref.Mesh]
	if m == nil {
		return nil, nil
	}
	ps := &proxyState{
		w: w, m: m, ref: ref,
		listeners: map[string]*listenerv3.Listener{}, routes: map[string]*routev3.RouteConfiguration{},
		clusters: map[string]*clusterv3.Cluster{}, loadAssignments: map[string]*endpointv3.ClusterLoadAssignment{},
		tlsFrom: map[string]string{}, deps: deps{}, eds: map[string]edsAssignment{},
	}
	switch ref.Kind {
	case appmesh.KindVirtualNode:
		vn := m.nodes[ref.Name]
		if vn == nil {
			return nil, nil
		}
		ps.pref = m.nodeIPPreference(vn)
		ps.logs = ps.accessLogs(vn.Logging)
		ps.nodeEgress(vn)
		ps.nodeIngress(vn)
	case appmesh.KindVirtualGateway:
		gw := m.gateways[ref.Name]
		if gw == nil {
			return nil, nil
		}
		ps.pref = m.nodeIPPreference(nil)
		ps.logs = ps.accessLogs(gw.spec.Logging)
		ps.gateway(gw)
	default:
		return nil, nil
	}
	if ps.err != nil {
		ps.problem(ref, "%v", ps.err)
		return nil, dedup(ps.problems)
	}
	p := ps.finish(nodeID)
	return p, dedup(ps.problems)
}

func dedup(ps []Problem) []Problem {
	set := problemSet{}
	set.add(ps...)
	return set.list()
}

// finish validates every resource, drops the invalid ones (reporting them)
// and whatever is no longer referenced, and sorts the lists.
func (ps *proxyState) finish(nodeID string) *Proxy {
	p := &Proxy{NodeID: nodeID, deps: ps.deps}
	valid := func(kind, name string, err error) bool {
		if err != nil {
			ps.problem(ps.ref, "envoy rejects %s %s: %v", kind, name, err)
			return false
		}
		return true
	}
	referencedRoutes := map[string]bool{}
	for _, name := range sortedKeys(ps.listeners) {
		l := ps.listeners[name]
		if !valid("listener", name, l.ValidateAll()) {
			continue
		}
		p.Listeners = append(p.Listeners, l)
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if f.GetName() == wellknown.HTTPConnectionManager {
					referencedRoutes[rdsName(f)] = true
				}
			}
		}
	}
	for _, name := range sortedKeys(ps.routes) {
		if rc := ps.routes[name]; referencedRoutes[name] && valid("route configuration", name, rc.ValidateAll()) {
			p.Routes = append(p.Routes, rc)
		}
	}
	eds := map[string]bool{}
	for _, name := range sortedKeys(ps.clusters) {
		c := ps.clusters[name]
		if !valid("cluster", name, c.ValidateAll()) {
			continue
		}
		p.Clusters = append(p.Clusters, c)
		if c.GetType() == clusterv3.Cluster_EDS {
			eds[name] = true
		}
	}
	for _, name := range sortedKeys(ps.loadAssignments) {
		cla := ps.loadAssignments[name]
		if !eds[name] {
			continue
		}
		if !valid("load assignment", name, cla.ValidateAll()) {
			p.edsDropped = true
			continue
		}
		if a, ok := ps.eds[name]; ok {
			a.index = len(p.Endpoints)
			p.eds = append(p.eds, a)
		}
		p.Endpoints = append(p.Endpoints, cla)
	}
	return p
}

// rdsName returns the route configuration an HCM filter names.
func rdsName(f *listenerv3.Filter) string {
	var hcm hcmv3.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		return ""
	}
	return hcm.GetRds().GetRouteConfigName()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// servicePort is one port of a virtual service with what serves it.
type servicePort struct {
	port  int32
	proto appmesh.PortProtocol
	// routes are the router's routes of the port, in order (router
	// provider); node is the providing node (node provider).
	routes []*compiledRoute
	node   string
}

// targets returns what the port sends to: the targets of its first route
// for a router, the node's listener for a node.
func (sp servicePort) targets() []target {
	if sp.node != "" {
		return []target{{node: sp.node, port: sp.port, proto: sp.proto, weight: 1}}
	}
	if len(sp.routes) == 0 {
		return nil
	}
	return sp.routes[0].targets
}

// servicePorts lists the ports of a virtual service's provider.
func (w *World) servicePorts(m *mesh, name string) ([]servicePort, *Problem) {
	svc := m.services[name]
	if svc == nil || svc.Provider == nil {
		return nil, nil
	}
	ref := appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: m.name, Name: name}
	var out []servicePort
	switch p := svc.Provider; {
	case p.VirtualRouter != nil:
		rt := m.routers[p.VirtualRouter.VirtualRouterName]
		if rt == nil {
			return nil, &Problem{Ref: ref, Message: fmt.Sprintf("provider virtual router %q not found", p.VirtualRouter.VirtualRouterName)}
		}
		for _, pm := range portMappings(rt.spec.Listeners, func(l *appmesh.VirtualRouterListener) *appmesh.PortMapping { return l.PortMapping }) {
			out = append(out, servicePort{port: *pm.Port, proto: pm.Protocol, routes: rt.routes[*pm.Port]})
		}
	case p.VirtualNode != nil:
		n := p.VirtualNode.VirtualNodeName
		vn := m.nodes[n]
		if vn == nil {
			return nil, &Problem{Ref: ref, Message: fmt.Sprintf("provider virtual node %q not found", n)}
		}
		for _, pm := range portMappings(vn.Listeners, func(l *appmesh.Listener) *appmesh.PortMapping { return l.PortMapping }) {
			out = append(out, servicePort{port: *pm.Port, proto: pm.Protocol, node: n})
		}
	}
	slices.SortFunc(out, func(a, b servicePort) int { return cmp.Compare(a.port, b.port) })
	return out, nil
}

// backend is one backend of a node: a virtual service and the client policy
// that applies to it.
type backend struct {
	service string
	policy  *appmesh.ClientPolicy
}

// backends lists a node's backends sorted by name, once each, with their
// effective client policy (the backend's own, else backendDefaults).
func backends(vn *appmesh.VirtualNodeSpec) []backend {
	var def *appmesh.ClientPolicy
	if vn.BackendDefaults != nil {
		def = vn.BackendDefaults.ClientPolicy
	}
	seen := map[string]bool{}
	var out []backend
	for _, b := range vn.Backends {
		if b.VirtualService == nil || seen[b.VirtualService.VirtualServiceName] {
			continue
		}
		seen[b.VirtualService.VirtualServiceName] = true
		p := b.VirtualService.ClientPolicy
		if p == nil {
			p = def
		}
		out = append(out, backend{service: b.VirtualService.VirtualServiceName, policy: p})
	}
	slices.SortFunc(out, func(a, b backend) int { return cmp.Compare(a.service, b.service) })
	return out
}

// tcpChain is an egress filter chain of a TCP service port.
type tcpChain struct {
	port     int32
	service  string
	prefixes []netip.Addr
	clusters []weightedName
	idle     *durationpb.Duration
}

// nodeEgress builds the egress listener, its route configurations and the
// clusters of every target a node's backends can reach.
func (ps *proxyState) nodeEgress(vn *appmesh.VirtualNodeSpec) {
	m := ps.m
	vhosts := map[int32][]*routev3.VirtualHost{}
	var tcp []tcpChain
	for _, b := range backends(vn) {
		ports, prob := ps.w.servicePorts(m, b.service)
		if prob != nil {
			ps.problems = append(ps.problems, *prob)
			continue
		}
		addrs := ps.w.in.Addresses[vip.Key{Mesh: m.name, Service: b.service}].List()
		for _, sp := range ports {
			if isHTTPFamily(sp.proto) {
				if vh := ps.virtualHost(b, sp); vh != nil {
					vhosts[sp.port] = append(vhosts[sp.port], vh)
				}
				continue
			}
			targets := sp.targets()
			idle := durationpb.New(defaultIdle)
			if sp.node == "" && len(sp.routes) > 0 {
				idle = sp.routes[0].tcpIdle
			}
			var clusters []weightedName
			for _, t := range targets {
				if t.weight == 0 {
					continue
				}
				name, ok := ps.targetCluster(t, b.policy, b.service, thresholds{})
				if !ok {
					clusters = nil
					break
				}
				clusters = append(clusters, weightedName{name: name, weight: t.weight})
			}
			if len(clusters) == 0 {
				continue
			}
			tcp = append(tcp, tcpChain{port: sp.port, service: b.service, prefixes: addrs, clusters: clusters, idle: idle})
		}
	}

	var chains []*listenerv3.FilterChain
	for _, port := range sortedInt32Keys(vhosts) {
		name := "rds_egress_http_" + strconv.Itoa(int(port))
		vhs := vhosts[port]
		slices.SortFunc(vhs, func(a, b *routev3.VirtualHost) int { return cmp.Compare(a.GetName(), b.GetName()) })
		if m.egressAllowAll() {
			vhs = append(vhs, &routev3.VirtualHost{
				Name: "mesh-allow-all", Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ps.allowAllCluster()}}},
				}},
			})
		}
		ps.routes[name] = &routev3.RouteConfiguration{Name: name, VirtualHosts: vhs}
		chains = append(chains, &listenerv3.FilterChain{
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(port))},
			Filters:          []*listenerv3.Filter{ps.hcmFilter("egress", name, ps.logs)},
		})
	}
	slices.SortFunc(tcp, func(a, b tcpChain) int { return cmp.Or(cmp.Compare(a.port, b.port), cmp.Compare(a.service, b.service)) })
	plainTCP := map[int32]string{}
	for _, c := range tcp {
		match := &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(c.port))}
		for _, ip := range c.prefixes {
			match.PrefixRanges = append(match.PrefixRanges, &corev3.CidrRange{AddressPrefix: ip.String(), PrefixLen: wrapperspb.UInt32(uint32(ip.BitLen()))})
		}
		if len(c.prefixes) == 0 {
			if _, http := vhosts[c.port]; http {
				ps.problem(appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: m.name, Name: c.service},
					"tcp port %d is also an HTTP port of another backend and the service has no address", c.port)
				continue
			}
			if other, dup := plainTCP[c.port]; dup {
				ps.problem(appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: m.name, Name: c.service},
					"tcp port %d is already used by virtual service %q and the service has no address", c.port, other)
				continue
			}
			plainTCP[c.port] = c.service
		}
		chains = append(chains, &listenerv3.FilterChain{
			Name:             c.service + ":" + strconv.Itoa(int(c.port)),
			FilterChainMatch: match,
			Filters:          []*listenerv3.Filter{ps.tcpProxyFilter("egress", c.clusters, c.idle, ps.logs)},
		})
	}
	// AWS APIs stay reachable whatever the egress filter (§13).
	aws := "cds_egress_" + safeName(m.name) + "_amazonaws"
	ps.clusters[aws] = passthroughCluster(aws)
	chains = append(chains, &listenerv3.FilterChain{
		Name:             "amazonaws",
		FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(443), ServerNames: []string{"*.amazonaws.com"}},
		Filters:          []*listenerv3.Filter{ps.tcpProxyFilter("egress", []weightedName{{name: aws, weight: 1}}, nil, ps.logs)},
	})
	if m.egressAllowAll() {
		chains = append(chains, &listenerv3.FilterChain{
			Name:             "mesh-allow-all",
			FilterChainMatch: &listenerv3.FilterChainMatch{},
			Filters:          []*listenerv3.Filter{ps.tcpProxyFilter("egress", []weightedName{{name: ps.allowAllCluster(), weight: 1}}, nil, ps.logs)},
		})
	}
	name := "lds_egress_" + bindName(ps.pref) + "_" + strconv.Itoa(egressPort)
	ps.listeners[name] = &listenerv3.Listener{
		Name:             name,
		Address:          bindAddress(ps.pref, egressPort),
		ListenerFilters:  ps.listenerFilters(wellknown.OriginalDestination, wellknown.TlsInspector),
		FilterChains:     chains,
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
	}
}

func (ps *proxyState) allowAllCluster() string {
	name := "cds_egress_" + safeName(ps.m.name) + "_mesh-allow-all"
	ps.clusters[name] = passthroughCluster(name)
	return name
}

func sortedInt32Keys[V any](m map[int32]V) []int32 {
	keys := make([]int32, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// virtualHost is the virtual host of one HTTP-family service port: the
// router's routes of the port, or the implicit catch-all route of a
// node-provided service. nil when no route is usable.
func (ps *proxyState) virtualHost(b backend, sp servicePort) *routev3.VirtualHost {
	vh := &routev3.VirtualHost{
		Name:    b.service,
		Domains: []string{b.service, b.service + ":" + strconv.Itoa(int(sp.port))},
	}
	if sp.node != "" {
		t := sp.targets()[0]
		name, ok := ps.targetCluster(t, b.policy, b.service, thresholds{})
		if !ok {
			return nil
		}
		vh.Routes = []*routev3.Route{implicitRoute(name)}
		return vh
	}
	for _, cr := range sp.routes {
		if ps.routeClusters(cr, b.policy, b.service, thresholds{}) {
			vh.Routes = append(vh.Routes, cr.envoyRoute())
		}
	}
	if len(vh.Routes) == 0 {
		return nil
	}
	return vh
}

// implicitRoute is the single route of a node-provided service: everything
// to the node, with the default retry policy and timeouts.
func implicitRoute(cluster string) *routev3.Route {
	return &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			RetryPolicy:      defaultRetryPolicy(),
			Timeout:          durationpb.New(defaultPerRequest),
			IdleTimeout:      durationpb.New(defaultIdle),
		}},
	}
}

// routeClusters makes the clusters of a route's targets; false when one
// cannot be made (the route is then left out).
func (ps *proxyState) routeClusters(cr *compiledRoute, policy *appmesh.ClientPolicy, via string, pool thresholds) bool {
	for _, t := range cr.targets {
		if t.weight == 0 {
			continue
		}
		if _, ok := ps.targetCluster(t, policy, via, pool); !ok {
			return false
		}
	}
	return true
}

// targetCluster makes (once) the caller-side cluster of a target node
// listener, with its endpoints, health checks, outlier detection and TLS.
// via names the service the caller reaches it through.
func (ps *proxyState) targetCluster(t target, policy *appmesh.ClientPolicy, via string, pool thresholds) (string, bool) {
	m := ps.m
	name := egressCluster(m.name, t.node, t.proto, t.port)
	vn := m.nodes[t.node]
	nodeRef := appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: m.name, Name: t.node}
	l, err := nodeListener(vn, t.port)
	if err != nil {
		ps.problem(nodeRef, "%v", err)
		return "", false
	}
	ts, err := ps.upstreamTLS(policy, vn, l, t.port)
	if err != nil {
		ps.problem(ps.ref, "backend %q: %v", via, err)
		return "", false
	}
	if c, ok := ps.clusters[name]; ok {
		if !proto.Equal(c.GetTransportSocket(), ts) {
			ps.problem(ps.ref, "cluster %s is reached through virtual services %q and %q with different TLS client policies; %q's applies",
				name, ps.tlsFrom[name], via, ps.tlsFrom[name])
		}
		return name, true
	}
	ps.tlsFrom[name] = via
	c := &clusterv3.Cluster{
		Name:            name,
		ConnectTimeout:  durationpb.New(remoteConnectTimeout),
		LbPolicy:        clusterv3.Cluster_ROUND_ROBIN,
		CircuitBreakers: circuitBreakers(pool),
		TransportSocket: ts,
	}
	pref := m.nodeIPPreference(vn)
	var hcPort uint32
	if hc := l.HealthCheck; hc != nil {
		c.HealthChecks = []*corev3.HealthCheck{healthCheck(hc)}
		hcPort = u32(hc.Port)
	}
	c.OutlierDetection = outlierDetection(l.OutlierDetection)
	ps.setUpstreamProtocol(c, t.proto)

	key := NodeKey{Mesh: m.name, Name: t.node}
	eps, managed := ps.endpoints(key)
	eps = cloudMapInstances(vn, eps)
	sd := vn.ServiceDiscovery
	if !managed && sd != nil && sd.DNS != nil {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS}
		if sd.DNS.ResponseType == appmesh.DNSEndpoints {
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		}
		c.DnsLookupFamily = dnsLookupFamily(pref)
		c.LoadAssignment = loadAssignment(name, lbEndpoint(sd.DNS.Hostname, uint32(t.port), hcPort, corev3.HealthStatus_UNKNOWN))
		ps.clusters[name] = c
		return name, true
	}
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
	c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()}
	ps.clusters[name] = c
	cla := endpointsCLA(name, eps, uint32(t.port), hcPort, pref)
	tlsIn := inboundTLS(l)
	setTunnelMetadata(cla, eps, tlsIn)
	ps.loadAssignments[name] = cla
	ps.eds[name] = edsAssignment{node: key, port: uint32(t.port), hcPort: hcPort, pref: pref, vn: vn, inboundTLS: tlsIn}
	return name, true
}

// endpointsCLA is the load assignment of a target listener: the endpoints
// serving its port, in address order.
func endpointsCLA(name string, eps []Endpoint, port, hcPort uint32, pref appmesh.IPPreference) *endpointv3.ClusterLoadAssignment {
	var mine []Endpoint
	for _, ep := range eps {
		if ep.Port == port && ep.Address.IsValid() && keepFamily(pref, ep.Address) {
			mine = append(mine, ep)
		}
	}
	slices.SortFunc(mine, func(a, b Endpoint) int { return cmp.Or(a.Address.Compare(b.Address), cmp.Compare(a.Node, b.Node)) })
	var lbs []*endpointv3.LbEndpoint
	for _, ep := range mine {
		health := corev3.HealthStatus_HEALTHY
		if !ep.Healthy {
			health = corev3.HealthStatus_UNHEALTHY
		}
		lbs = append(lbs, lbEndpoint(ep.Address.Unmap().String(), port, hcPort, health))
	}
	return loadAssignment(name, lbs...)
}

// upstreamTLS decides a caller's TLS toward a target listener (§12).
func (ps *proxyState) upstreamTLS(policy *appmesh.ClientPolicy, vn *appmesh.VirtualNodeSpec, l *appmesh.Listener, port int32) (*corev3.TransportSocket, error) {
	sni := discoveryName(vn)
	if cp := applyingPolicy(policy, port); cp != nil {
		ctx := &tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: &tlsv3.CommonTlsContext{}}
		if c := cp.Certificate; c != nil {
			setCertificate(ctx.CommonTlsContext, c.File, c.SDS, nil)
		}
		v := cp.Validation
		if v == nil || v.Trust == nil {
			return nil, fmt.Errorf("client policy has no validation trust")
		}
		t := trust{}
		switch {
		case v.Trust.File != nil:
			t.caFile = v.Trust.File.CertificateChain
		case v.Trust.SDS != nil:
			t.sdsSecret = v.Trust.SDS.SecretName
		case v.Trust.ACM != nil:
			t.sdsSecret, t.overADS = strings.Join(v.Trust.ACM.CertificateAuthorityARNs, ","), true
		}
		if v.SubjectAlternativeNames != nil && v.SubjectAlternativeNames.Match != nil && len(v.SubjectAlternativeNames.Match.Exact) > 0 {
			t.sans = v.SubjectAlternativeNames.Match.Exact
		} else if sni != "" {
			t.sans = []string{sni}
		}
		setValidation(ctx.CommonTlsContext, t)
		return ps.transportSocket(ctx), nil
	}
	if l.TLS != nil && (l.TLS.Mode == appmesh.TLSStrict || l.TLS.Mode == appmesh.TLSPermissive) {
		// The server terminates TLS and the caller has no policy: originate
		// TLS without verifying the server (file and SDS certificates, and
		// ACM until the control plane serves ACM-equivalent trust).
		return ps.transportSocket(&tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: &tlsv3.CommonTlsContext{}}), nil
	}
	return nil, nil
}

// applyingPolicy returns the policy's TLS when it applies to the target
// port: enforce (default true) and ports empty or naming it.
func applyingPolicy(p *appmesh.ClientPolicy, port int32) *appmesh.ClientPolicyTLS {
	if p == nil || p.TLS == nil {
		return nil
	}
	if p.TLS.Enforce != nil && !*p.TLS.Enforce {
		return nil
	}
	if len(p.TLS.Ports) > 0 && !slices.Contains(p.TLS.Ports, port) {
		return nil
	}
	return p.TLS
}

// listenerHTTPTimeouts returns the per-request and idle timeouts of an
// HTTP-family node listener.
func listenerHTTPTimeouts(l *appmesh.Listener) (perRequest, idle *appmesh.Duration) {
	t := l.Timeout
	if t == nil {
		return nil, nil
	}
	switch l.PortMapping.Protocol {
	case appmesh.ProtocolHTTP:
		if t.HTTP != nil {
			return t.HTTP.PerRequest, t.HTTP.Idle
		}
	case appmesh.ProtocolHTTP2:
		if t.HTTP2 != nil {
			return t.HTTP2.PerRequest, t.HTTP2.Idle
		}
	case appmesh.ProtocolGRPC:
		if t.GRPC != nil {
			return t.GRPC.PerRequest, t.GRPC.Idle
		}
	}
	return nil, nil
}

// nodeIngress builds the ingress listener of a node's listeners, their
// route configurations and the local-app clusters.
func (ps *proxyState) nodeIngress(vn *appmesh.VirtualNodeSpec) {
	ls := slices.Clone(vn.Listeners)
	slices.SortFunc(ls, func(a, b appmesh.Listener) int { return cmp.Compare(*a.PortMapping.Port, *b.PortMapping.Port) })
	if len(ls) == 0 {
		return
	}
	m := ps.m
	var chains []*listenerv3.FilterChain
	for i := range ls {
		l := &ls[i]
		port, proto := uint32(*l.PortMapping.Port), l.PortMapping.Protocol
		local := fmt.Sprintf("cds_ingress_%s_%s_%s_%d", safeName(m.name), safeName(ps.ref.Name), proto, port)
		// The node proxy is shared by every workload of its node: the local
		// app is the workload the tunnel's CONNECT named (pod ip:port), its
		// original destination, not a loopback address.
		c := &clusterv3.Cluster{
			Name:                 local,
			ConnectTimeout:       durationpb.New(localConnectTimeout),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
			LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
			CircuitBreakers:      circuitBreakers(nodePoolThresholds(l.ConnectionPool)),
		}
		ps.setUpstreamProtocol(c, proto)
		ps.clusters[local] = c

		stat := "ingress"
		if len(ls) > 1 {
			stat = fmt.Sprintf("ingress.%s.%d", proto, port)
		}
		var filters func() []*listenerv3.Filter
		if isHTTPFamily(proto) {
			rds := "rds_ingress_http_" + strconv.Itoa(int(port))
			perRequest, idle := listenerHTTPTimeouts(l)
			ps.routes[rds] = &routev3.RouteConfiguration{Name: rds, VirtualHosts: []*routev3.VirtualHost{{
				Name: "ingress", Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: local},
						Timeout:          durationOr(perRequest, defaultPerRequest),
						IdleTimeout:      durationOr(idle, defaultIdle),
					}},
				}},
			}}}
			filters = func() []*listenerv3.Filter { return []*listenerv3.Filter{ps.hcmFilter(stat, rds, ps.logs)} }
		} else {
			var idle *appmesh.Duration
			if l.Timeout != nil && l.Timeout.TCP != nil {
				idle = l.Timeout.TCP.Idle
			}
			filters = func() []*listenerv3.Filter {
				return []*listenerv3.Filter{ps.tcpProxyFilter(stat, []weightedName{{name: local, weight: 1}}, durationOr(idle, defaultIdle), ps.logs)}
			}
		}
		mode := appmesh.TLSDisabled
		if l.TLS != nil {
			mode = l.TLS.Mode
		}
		ts := func() *corev3.TransportSocket { return ps.downstreamTLS(l.TLS.Certificate, l.TLS.Validation) }
		chains = append(chains, ps.tlsChains(port, mode, ts, filters)...)
	}
	name := "lds_ingress_" + bindName(ps.pref) + "_" + strconv.Itoa(ingressPort)
	ps.listeners[name] = &listenerv3.Listener{
		Name:             name,
		Address:          bindAddress(ps.pref, ingressPort),
		ListenerFilters:  ps.listenerFilters(wellknown.OriginalDestination, wellknown.TlsInspector),
		FilterChains:     chains,
		TrafficDirection: corev3.TrafficDirection_INBOUND,
	}
}
