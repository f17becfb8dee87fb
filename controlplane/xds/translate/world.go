// SPDX-License-Identifier: Apache-2.0

package translate

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// World is the input indexed by mesh, with every route compiled and checked
// once. Proxy and NodeState read it; it is never modified after Compile, so
// they may run concurrently.
type World struct {
	// compiled is the World Compile returned; WithEndpoints keeps it, so
	// that a StateCache knows the views of one compile.
	compiled *World
	in       Input
	meshes   map[string]*mesh
	problems []Problem
}

type mesh struct {
	name     string
	spec     *appmesh.MeshSpec
	ref      appmesh.Ref
	nodes    map[string]*appmesh.VirtualNodeSpec
	services map[string]*appmesh.VirtualServiceSpec
	routers  map[string]*router
	gateways map[string]*gateway

	// callers maps a virtual node to its allowed callers (allowedCallers),
	// computed once for the whole mesh on first use.
	callersOnce sync.Once
	callers     map[string][]string
}

type router struct {
	ref  appmesh.Ref
	spec *appmesh.VirtualRouterSpec
	// routes holds the valid routes of each router port, in §9.1 order.
	routes map[int32][]*compiledRoute
}

type gateway struct {
	ref    appmesh.Ref
	spec   *appmesh.VirtualGatewaySpec
	routes []gatewayRouteRes
}

type gatewayRouteRes struct {
	ref  appmesh.Ref
	spec *appmesh.GatewayRouteSpec
}

// Compile indexes and checks the input. Resources whose spec does not pass
// appmesh.Validate, routes whose references do not resolve and routes Envoy
// would reject are left out and reported by Problems.
func Compile(in Input) *World {
	w := &World{in: in, meshes: map[string]*mesh{}}
	w.compiled = w
	getMesh := func(name string) *mesh {
		m := w.meshes[name]
		if m == nil {
			m = &mesh{
				name: name, ref: appmesh.Ref{Kind: appmesh.KindMesh, Mesh: name, Name: name},
				nodes: map[string]*appmesh.VirtualNodeSpec{}, services: map[string]*appmesh.VirtualServiceSpec{},
				routers: map[string]*router{}, gateways: map[string]*gateway{},
			}
			w.meshes[name] = m
		}
		return m
	}
	var routes, gwRoutes []appmesh.Resource
	for _, r := range in.Resources {
		if r.Spec == nil {
			continue
		}
		if err := appmesh.Validate(r.Ref, r.Spec); err != nil {
			w.problem(r.Ref, "invalid spec: %v", err)
			continue
		}
		m := getMesh(r.Ref.Mesh)
		switch s := r.Spec.(type) {
		case *appmesh.MeshSpec:
			m.spec = s
		case *appmesh.VirtualNodeSpec:
			m.nodes[r.Ref.Name] = s
		case *appmesh.VirtualServiceSpec:
			m.services[r.Ref.Name] = s
		case *appmesh.VirtualRouterSpec:
			m.routers[r.Ref.Name] = &router{ref: r.Ref, spec: s, routes: map[int32][]*compiledRoute{}}
		case *appmesh.VirtualGatewaySpec:
			m.gateways[r.Ref.Name] = &gateway{ref: r.Ref, spec: s}
		case *appmesh.RouteSpec:
			routes = append(routes, r)
		case *appmesh.GatewayRouteSpec:
			gwRoutes = append(gwRoutes, r)
		}
	}
	for _, m := range w.meshes {
		if m.spec == nil {
			// Resources of a mesh that is not in the input are translated
			// with the mesh defaults.
			m.spec = &appmesh.MeshSpec{}
		}
	}
	for _, r := range routes {
		w.compileRoute(r)
	}
	for _, m := range w.meshes {
		for _, rt := range m.routers {
			for port, list := range rt.routes {
				sortRoutes(list)
				rt.routes[port] = list
			}
		}
	}
	for _, r := range gwRoutes {
		m := w.meshes[r.Ref.Mesh]
		gw := m.gateways[r.Ref.Parent]
		if gw == nil {
			w.problem(r.Ref, "virtual gateway %q not found", r.Ref.Parent)
			continue
		}
		gw.routes = append(gw.routes, gatewayRouteRes{ref: r.Ref, spec: r.Spec.(*appmesh.GatewayRouteSpec)})
	}
	for _, m := range w.meshes {
		for _, gw := range m.gateways {
			slices.SortFunc(gw.routes, func(a, b gatewayRouteRes) int {
				return compareOrder(gatewayRouteOrder(a), gatewayRouteOrder(b))
			})
		}
	}
	return w
}

func (w *World) problem(ref appmesh.Ref, format string, args ...any) {
	w.problems = append(w.problems, Problem{Ref: ref, Message: fmt.Sprintf(format, args...)})
}

// Problems returns the problems found by Compile.
func (w *World) Problems() []Problem {
	out := slices.Clone(w.problems)
	sortProblems(out)
	return out
}

// ProxyIDs returns the node ids of every virtual node and virtual gateway,
// sorted.
func (w *World) ProxyIDs() []string {
	var ids []string
	for _, m := range w.meshes {
		for name := range m.nodes {
			ids = append(ids, appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: m.name, Name: name}.ResourcePath())
		}
		for name := range m.gateways {
			ids = append(ids, appmesh.Ref{Kind: appmesh.KindVirtualGateway, Mesh: m.name, Name: name}.ResourcePath())
		}
	}
	slices.Sort(ids)
	return ids
}

// egressAllowAll reports whether the mesh's egress filter is ALLOW_ALL (the
// default, when absent, is DROP_ALL).
func (m *mesh) egressAllowAll() bool {
	return m.spec.EgressFilter != nil && m.spec.EgressFilter.Type == appmesh.EgressAllowAll
}

// nodeIPPreference is the node's own preference, else the mesh's.
func (m *mesh) nodeIPPreference(vn *appmesh.VirtualNodeSpec) appmesh.IPPreference {
	if vn != nil && vn.ServiceDiscovery != nil {
		if d := vn.ServiceDiscovery.DNS; d != nil && d.IPPreference != "" {
			return d.IPPreference
		}
		if c := vn.ServiceDiscovery.AWSCloudMap; c != nil && c.IPPreference != "" {
			return c.IPPreference
		}
	}
	if m.spec.ServiceDiscovery != nil {
		return m.spec.ServiceDiscovery.IPPreference
	}
	return ""
}

// nodeListener finds the listener of a node on port (or its only listener
// when port is 0).
func nodeListener(vn *appmesh.VirtualNodeSpec, port int32) (*appmesh.Listener, error) {
	if port == 0 {
		switch len(vn.Listeners) {
		case 0:
			return nil, fmt.Errorf("has no listener")
		case 1:
			return &vn.Listeners[0], nil
		}
		return nil, fmt.Errorf("has %d listeners and no port is given", len(vn.Listeners))
	}
	for i := range vn.Listeners {
		if pm := vn.Listeners[i].PortMapping; pm != nil && pm.Port != nil && *pm.Port == port {
			return &vn.Listeners[i], nil
		}
	}
	return nil, fmt.Errorf("has no listener on port %d", port)
}

// portMappings lists the port mappings of listeners that have one.
func portMappings[L any](ls []L, pm func(*L) *appmesh.PortMapping) []appmesh.PortMapping {
	var out []appmesh.PortMapping
	for i := range ls {
		if p := pm(&ls[i]); p != nil && p.Port != nil {
			out = append(out, *p)
		}
	}
	return out
}

// selectPort resolves the listener a route or target refers to: port when
// given, else the only listener.
func selectPort(port *int32, pms []appmesh.PortMapping) (appmesh.PortMapping, error) {
	if port == nil {
		switch len(pms) {
		case 0:
			return appmesh.PortMapping{}, fmt.Errorf("has no listener")
		case 1:
			return pms[0], nil
		}
		return appmesh.PortMapping{}, fmt.Errorf("has %d listeners and no port is given", len(pms))
	}
	for _, pm := range pms {
		if *pm.Port == *port {
			return pm, nil
		}
	}
	return appmesh.PortMapping{}, fmt.Errorf("has no listener on port %d", *port)
}

// cloudMapInstances keeps the endpoints that carry every attribute of the
// node's serviceDiscovery.awsCloudMap (all of them for another discovery,
// or none listed), as Cloud Map's DiscoverInstances does.
func cloudMapInstances(vn *appmesh.VirtualNodeSpec, eps []Endpoint) []Endpoint {
	if vn == nil || vn.ServiceDiscovery == nil || vn.ServiceDiscovery.AWSCloudMap == nil || len(vn.ServiceDiscovery.AWSCloudMap.Attributes) == 0 {
		return eps
	}
	attrs := vn.ServiceDiscovery.AWSCloudMap.Attributes
	var out []Endpoint
	for _, ep := range eps {
		if !slices.ContainsFunc(attrs, func(a appmesh.CloudMapInstanceAttribute) bool {
			v, ok := ep.Attributes[a.Key]
			return !ok || v != a.Value
		}) {
			out = append(out, ep)
		}
	}
	return out
}

// discoveryName is the node's service discovery name: the DNS hostname, or
// <serviceName>.<namespaceName> for Cloud Map (§4.5).
func discoveryName(vn *appmesh.VirtualNodeSpec) string {
	if vn.ServiceDiscovery == nil {
		return ""
	}
	if d := vn.ServiceDiscovery.DNS; d != nil {
		return d.Hostname
	}
	if c := vn.ServiceDiscovery.AWSCloudMap; c != nil {
		return c.ServiceName + "." + c.NamespaceName
	}
	return ""
}

// isHTTPFamily reports whether the protocol is served by an HTTP connection
// manager.
func isHTTPFamily(p appmesh.PortProtocol) bool {
	return p == appmesh.ProtocolHTTP || p == appmesh.ProtocolHTTP2 || p == appmesh.ProtocolGRPC
}

// safeName is a name as it appears in Envoy resource names.
func safeName(s string) string { return strings.ReplaceAll(s, "/", "_") }
