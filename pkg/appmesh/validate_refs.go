// SPDX-License-Identifier: Apache-2.0

package appmesh

import (
	"fmt"
	"strconv"
	"strings"
)

// Lookup gives access to the other resources of the same mesh, as stored
// (already defaulted).
type Lookup interface {
	// Spec returns the spec (a pointer to the kind's spec struct) of the named
	// resource; parent is the router or gateway name for a Route or
	// GatewayRoute, else "".
	Spec(kind Kind, parent, name string) (spec any, ok bool)
}

// ValidateReferences checks the rules of spec that depend on other resources of
// its mesh (l may be nil: then nothing exists).
//
// A missing resource gives an *APIError of type ErrNotFound naming the field
// path and the resource: a route's parent router and target nodes, a virtual
// service's provider, a gateway route's parent gateway and target service.
// Virtual node backends may name services that do not exist yet.
//
// Ports and protocols that do not fit the resources referred to give a
// ValidationError: route and gateway route match ports (required when the
// router or gateway has several listeners, and one of its ports), the route
// type against the router or gateway listener protocol, weighted target ports
// and the target node listener's protocol, and a gateway route target port
// against the listeners of the target service's provider.
//
// The mesh itself is not looked up: the caller checks that it exists.
func ValidateReferences(ref Ref, spec any, l Lookup) error {
	c := &refChecker{ref: ref, l: l, w: newWalker()}
	var err error
	switch ref.Kind {
	case KindMesh:
		_, err = specAs[MeshSpec](spec)
	case KindVirtualNode:
		_, err = specAs[VirtualNodeSpec](spec)
	case KindVirtualRouter:
		_, err = specAs[VirtualRouterSpec](spec)
	case KindVirtualGateway:
		_, err = specAs[VirtualGatewaySpec](spec)
	case KindVirtualService:
		err = checkRefs(spec, c.virtualService)
	case KindRoute:
		err = checkRefs(spec, c.route)
	case KindGatewayRoute:
		err = checkRefs(spec, c.gatewayRoute)
	default:
		c.w.field("kind").fail("must be one of " + kindList())
	}
	switch {
	case err != nil:
		return err
	case c.internal != nil:
		return c.internal
	case c.missing != nil:
		return c.missing
	}
	return c.w.err()
}

// checkRefs types spec as *T and runs check on it.
func checkRefs[T any](spec any, check func(*T)) error {
	s, err := specAs[T](spec)
	if err != nil {
		return err
	}
	check(s)
	return nil
}

// refChecker checks the references of one resource. It keeps the first
// missing resource apart from the broken rules, because a missing resource is
// a NotFound, not a BadRequest.
type refChecker struct {
	ref      Ref
	l        Lookup
	w        walker
	missing  *APIError
	internal error
}

// get looks a resource up and types its spec.
func get[T any](c *refChecker, kind Kind, parent, name string) (*T, bool) {
	if c.l == nil {
		return nil, false
	}
	spec, ok := c.l.Spec(kind, parent, name)
	if !ok {
		return nil, false
	}
	s, err := specAs[T](spec)
	if err != nil {
		if c.internal == nil {
			c.internal = fmt.Errorf("look up %s %q: %w", kind.Words(), name, err)
		}
		return nil, false
	}
	return s, true
}

// find is get for a resource that must exist; the field at w names it.
func find[T any](c *refChecker, w walker, kind Kind, parent, name string) *T {
	s, ok := get[T](c, kind, parent, name)
	if !ok && c.missing == nil && c.internal == nil {
		c.missing = Errorf(ErrNotFound, "%s: %s %q not found in mesh %q", w.path, kind.Words(), name, c.ref.Mesh)
	}
	return s
}

func (c *refChecker) virtualService(s *VirtualServiceSpec) {
	p := s.Provider
	if p == nil {
		return
	}
	pw := c.w.field("spec").field("provider")
	if p.VirtualNode != nil {
		find[VirtualNodeSpec](c, pw.field("virtualNode").field("virtualNodeName"), KindVirtualNode, "", p.VirtualNode.VirtualNodeName)
	}
	if p.VirtualRouter != nil {
		find[VirtualRouterSpec](c, pw.field("virtualRouter").field("virtualRouterName"), KindVirtualRouter, "", p.VirtualRouter.VirtualRouterName)
	}
}

// routeParts is what the reference checks need from a route or gateway route
// of any type.
type routeParts struct {
	typ     string       // JSON name of the route type ("httpRoute")
	proto   PortProtocol // listener protocol the type goes with
	port    *int32       // match port
	targets []WeightedTarget
	target  *GatewayRouteTarget
}

func (c *refChecker) route(s *RouteSpec) {
	router := find[VirtualRouterSpec](c, c.w.field("virtualRouterName"), KindVirtualRouter, "", c.ref.Parent)
	p, ok := routeSpecParts(s)
	if !ok {
		return
	}
	rw := c.w.field("spec").field(p.typ)
	if router != nil {
		c.parentListener(rw, p, routerPorts(router))
	}
	tw := rw.field("action").field("weightedTargets")
	for i, t := range p.targets {
		iw := tw.index(i)
		node := find[VirtualNodeSpec](c, iw.field("virtualNode"), KindVirtualNode, "", t.VirtualNode)
		if node == nil {
			continue
		}
		ports := nodePorts(node)
		if len(ports) == 0 {
			iw.field("virtualNode").failf("must name a virtual node with listeners (%q has none)", t.VirtualNode)
			continue
		}
		owner := fmt.Sprintf("virtual node %q", t.VirtualNode)
		if l := listenerFor(iw.field("port"), t.Port, owner, ports); l != nil && l.Protocol != p.proto {
			iw.failf("must name a listener with protocol %s (%s listener %d is %s)", p.proto, owner, *l.Port, l.Protocol)
		}
	}
}

// parentListener checks a route's match port and type against the listeners
// of its parent router or gateway.
func (c *refChecker) parentListener(rw walker, p routeParts, ports []PortMapping) {
	owner := fmt.Sprintf("%s %q", c.ref.Kind.ParentKind().Words(), c.ref.Parent)
	if l := listenerFor(rw.field("match").field("port"), p.port, owner, ports); l != nil && l.Protocol != p.proto {
		rw.failf("must match the protocol of %s listener %d (%s)", owner, *l.Port, l.Protocol)
	}
}

// routeSpecParts returns the parts of the route type set in s (the first one,
// if Validate let several through).
func routeSpecParts(s *RouteSpec) (routeParts, bool) {
	httpParts := func(typ string, proto PortProtocol, r *HTTPRoute) routeParts {
		return routeParts{
			typ: typ, proto: proto,
			port:    from(r.Match, func(m *HTTPRouteMatch) *int32 { return m.Port }),
			targets: from(r.Action, func(a *HTTPRouteAction) []WeightedTarget { return a.WeightedTargets }),
		}
	}
	switch {
	case s.HTTPRoute != nil:
		return httpParts("httpRoute", ProtocolHTTP, s.HTTPRoute), true
	case s.HTTP2Route != nil:
		return httpParts("http2Route", ProtocolHTTP2, s.HTTP2Route), true
	case s.GRPCRoute != nil:
		return routeParts{
			typ: "grpcRoute", proto: ProtocolGRPC,
			port:    from(s.GRPCRoute.Match, func(m *GRPCRouteMatch) *int32 { return m.Port }),
			targets: from(s.GRPCRoute.Action, func(a *GRPCRouteAction) []WeightedTarget { return a.WeightedTargets }),
		}, true
	case s.TCPRoute != nil:
		return routeParts{
			typ: "tcpRoute", proto: ProtocolTCP,
			port:    from(s.TCPRoute.Match, func(m *TCPRouteMatch) *int32 { return m.Port }),
			targets: from(s.TCPRoute.Action, func(a *TCPRouteAction) []WeightedTarget { return a.WeightedTargets }),
		}, true
	}
	return routeParts{}, false
}

// gatewayRouteSpecParts is routeSpecParts for a gateway route.
func gatewayRouteSpecParts(s *GatewayRouteSpec) (routeParts, bool) {
	httpParts := func(typ string, proto PortProtocol, r *HTTPGatewayRoute) routeParts {
		return routeParts{
			typ: typ, proto: proto,
			port:   from(r.Match, func(m *HTTPGatewayRouteMatch) *int32 { return m.Port }),
			target: from(r.Action, func(a *HTTPGatewayRouteAction) *GatewayRouteTarget { return a.Target }),
		}
	}
	switch {
	case s.HTTPRoute != nil:
		return httpParts("httpRoute", ProtocolHTTP, s.HTTPRoute), true
	case s.HTTP2Route != nil:
		return httpParts("http2Route", ProtocolHTTP2, s.HTTP2Route), true
	case s.GRPCRoute != nil:
		return routeParts{
			typ: "grpcRoute", proto: ProtocolGRPC,
			port:   from(s.GRPCRoute.Match, func(m *GRPCGatewayRouteMatch) *int32 { return m.Port }),
			target: from(s.GRPCRoute.Action, func(a *GRPCGatewayRouteAction) *GatewayRouteTarget { return a.Target }),
		}, true
	}
	return routeParts{}, false
}

// from returns get(p), or the zero T when p is nil.
func from[P, T any](p *P, get func(*P) T) T {
	if p == nil {
		var zero T
		return zero
	}
	return get(p)
}

func (c *refChecker) gatewayRoute(s *GatewayRouteSpec) {
	gateway := find[VirtualGatewaySpec](c, c.w.field("virtualGatewayName"), KindVirtualGateway, "", c.ref.Parent)
	p, ok := gatewayRouteSpecParts(s)
	if !ok {
		return
	}
	rw := c.w.field("spec").field(p.typ)
	if gateway != nil {
		c.parentListener(rw, p, gatewayPorts(gateway))
	}
	if p.target == nil || p.target.VirtualService == nil {
		return
	}
	aw := rw.field("action").field("target")
	name := p.target.VirtualService.VirtualServiceName
	vs := find[VirtualServiceSpec](c, aw.field("virtualService").field("virtualServiceName"), KindVirtualService, "", name)
	if vs == nil || vs.Provider == nil {
		return
	}
	var owner string
	var ports []PortMapping
	if r := vs.Provider.VirtualRouter; r != nil {
		if router, ok := get[VirtualRouterSpec](c, KindVirtualRouter, "", r.VirtualRouterName); ok {
			owner, ports = fmt.Sprintf("the provider virtual router %q", r.VirtualRouterName), routerPorts(router)
		}
	} else if n := vs.Provider.VirtualNode; n != nil {
		if node, ok := get[VirtualNodeSpec](c, KindVirtualNode, "", n.VirtualNodeName); ok {
			owner, ports = fmt.Sprintf("the provider virtual node %q", n.VirtualNodeName), nodePorts(node)
		}
	}
	if len(ports) > 0 {
		listenerFor(aw.field("port"), p.target.Port, owner, ports)
	}
}

// listenerFor returns the listener of owner that port selects: the listener
// on that port, or the only listener when port is nil. It fails the port field
// at w when the port is missing but needed (several listeners) or is not one
// of owner's, and returns nil then, or when owner has no listeners.
func listenerFor(w walker, port *int32, owner string, listeners []PortMapping) *PortMapping {
	if port == nil {
		switch len(listeners) {
		case 0:
			return nil
		case 1:
			return &listeners[0]
		}
		w.failf("is required when %s has several listeners", owner)
		return nil
	}
	ports := make([]string, len(listeners))
	for i := range listeners {
		if *listeners[i].Port == *port {
			return &listeners[i]
		}
		ports[i] = strconv.Itoa(int(*listeners[i].Port))
	}
	w.failf("must be one of the listener ports of %s (%s)", owner, strings.Join(ports, ", "))
	return nil
}

// portMappings collects the port mappings with a port of a list of listeners.
func portMappings[L any](listeners []L, pm func(*L) *PortMapping) []PortMapping {
	var out []PortMapping
	for i := range listeners {
		if m := pm(&listeners[i]); m != nil && m.Port != nil {
			out = append(out, *m)
		}
	}
	return out
}

func nodePorts(s *VirtualNodeSpec) []PortMapping {
	return portMappings(s.Listeners, func(l *Listener) *PortMapping { return l.PortMapping })
}

func routerPorts(s *VirtualRouterSpec) []PortMapping {
	return portMappings(s.Listeners, func(l *VirtualRouterListener) *PortMapping { return l.PortMapping })
}

func gatewayPorts(s *VirtualGatewaySpec) []PortMapping {
	return portMappings(s.Listeners, func(l *VirtualGatewayListener) *PortMapping { return l.PortMapping })
}
