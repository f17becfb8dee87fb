// SPDX-License-Identifier: Apache-2.0

package translate

import (
	"cmp"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// A gateway route is routed twice in App Mesh (§15.5): the gateway route
// matches the request and rewrites it, then the target service's routes
// match the rewritten request. The translator flattens the two stages into
// one route table per gateway port: for each gateway route in order, one
// Envoy route per route of the target service port, in order, whose match
// is the gateway route's match AND the service route's match carried back
// to the original request:
//
//   - no path rewrite: the service route's path condition becomes a :path
//     header matcher (omitted when it is the prefix "/");
//   - a path rewrite to a constant: the service route's path condition is
//     decided here, against the constant;
//   - a prefix rewrite Pg -> Nw: a service prefix Q that extends Nw matches
//     the original prefix Pg+Q[len(Nw):] and rewrites it to Q; a Q that Nw
//     extends matches Pg and rewrites it to Nw; an exact path E extending Nw
//     matches Pg+E[len(Nw):] exactly and rewrites to E. A service regex
//     cannot be carried back through a prefix rewrite: that pair is left out
//     and reported.

// gwStage1 is a gateway route resolved: its match, rewrites and target.
type gwStage1 struct {
	ref     appmesh.Ref
	path    pathCond
	headers []*routev3.HeaderMatcher
	query   []*routev3.QueryParameterMatcher
	host    string // host rewrite, "" for none
	// constPath is the rewritten path when it is a constant.
	constPath *string
	// prefixFrom/prefixTo: a prefix rewrite (prefixFrom != prefixTo).
	prefixFrom, prefixTo string
	service              string
	sp                   servicePort
}

func (ps *proxyState) gateway(gw *gateway) {
	pms := portMappings(gw.spec.Listeners, func(l *appmesh.VirtualGatewayListener) *appmesh.PortMapping { return l.PortMapping })
	routesByPort := map[int32][]*routev3.Route{}
	pools := map[int32]thresholds{}
	for _, l := range gw.spec.Listeners {
		if l.PortMapping != nil && l.PortMapping.Port != nil {
			pools[*l.PortMapping.Port] = gatewayPoolThresholds(l.ConnectionPool)
		}
	}
	var policy *appmesh.ClientPolicy
	if gw.spec.BackendDefaults != nil {
		policy = gw.spec.BackendDefaults.ClientPolicy
	}
	for _, gr := range gw.routes {
		s1, port, ok := ps.gatewayStage1(gr, pms)
		if !ok {
			continue
		}
		for _, r := range ps.flatten(s1, policy, pools[port]) {
			if err := r.ValidateAll(); err != nil {
				ps.problem(gr.ref, "envoy rejects the route: %v", err)
				continue
			}
			routesByPort[port] = append(routesByPort[port], r)
		}
	}
	slices.SortFunc(pms, func(a, b appmesh.PortMapping) int { return cmp.Compare(*a.Port, *b.Port) })
	for _, pm := range pms {
		port := uint32(*pm.Port)
		var l *appmesh.VirtualGatewayListener
		for i := range gw.spec.Listeners {
			if p := gw.spec.Listeners[i].PortMapping; p != nil && p.Port != nil && *p.Port == *pm.Port {
				l = &gw.spec.Listeners[i]
			}
		}
		rds := "rds_ingress_http_" + strconv.Itoa(int(port))
		ps.routes[rds] = &routev3.RouteConfiguration{Name: rds, VirtualHosts: []*routev3.VirtualHost{{
			Name: "ingress", Domains: []string{"*"}, Routes: routesByPort[*pm.Port],
		}}}
		mode := appmesh.TLSDisabled
		if l.TLS != nil {
			mode = l.TLS.Mode
		}
		filters := func() []*listenerv3.Filter { return []*listenerv3.Filter{ps.hcmFilter("ingress", rds, ps.logs)} }
		ts := func() *corev3.TransportSocket { return ps.downstreamTLS(l.TLS.Certificate, l.TLS.Validation) }
		var lf []*listenerv3.ListenerFilter
		if mode == appmesh.TLSStrict || mode == appmesh.TLSPermissive {
			lf = ps.listenerFilters(wellknown.TlsInspector)
		}
		name := "lds_ingress_" + bindName(ps.pref) + "_port_" + strconv.Itoa(int(port))
		ps.listeners[name] = &listenerv3.Listener{
			Name:             name,
			Address:          bindAddress(ps.pref, port),
			ListenerFilters:  lf,
			FilterChains:     ps.tlsChains(port, mode, ts, filters),
			TrafficDirection: corev3.TrafficDirection_INBOUND,
		}
	}
}

// gatewayStage1 resolves a gateway route: its listener port, match,
// rewrites and the target service port.
func (ps *proxyState) gatewayStage1(gr gatewayRouteRes, pms []appmesh.PortMapping) (gwStage1, int32, bool) {
	m := ps.m
	s := gr.spec
	s1 := gwStage1{ref: gr.ref}
	var (
		port     *int32
		want     appmesh.PortProtocol
		tgt      *appmesh.GatewayRouteTarget
		hostname *appmesh.GatewayRouteHostnameMatch
		hostRw   *appmesh.GatewayRouteHostnameRewrite
	)
	switch {
	case s.HTTPRoute != nil || s.HTTP2Route != nil:
		h, p := s.HTTPRoute, appmesh.ProtocolHTTP
		if h == nil {
			h, p = s.HTTP2Route, appmesh.ProtocolHTTP2
		}
		want, port, tgt, hostname = p, h.Match.Port, h.Action.Target, h.Match.Hostname
		var cr compiledRoute
		if err := cr.httpMatch(&appmesh.HTTPRouteMatch{
			Prefix: h.Match.Prefix, Path: h.Match.Path, Headers: h.Match.Headers,
			Method: h.Match.Method, QueryParameters: h.Match.QueryParameters,
		}); err != nil {
			ps.problem(gr.ref, "%v", err)
			return s1, 0, false
		}
		s1.path, s1.headers, s1.query = cr.path, cr.headers, cr.query
		rw := h.Action.Rewrite
		if rw != nil {
			hostRw = rw.Hostname
		}
		switch {
		case rw != nil && rw.Path != nil && rw.Path.Exact != nil:
			c := *rw.Path.Exact
			s1.constPath = &c
		case s1.path.kind == pathPrefix:
			s1.prefixFrom, s1.prefixTo = s1.path.value, "/"
			if rw != nil && rw.Prefix != nil {
				switch {
				case rw.Prefix.Value != nil:
					s1.prefixTo = *rw.Prefix.Value
				case rw.Prefix.DefaultPrefix == appmesh.Disabled:
					s1.prefixTo = s1.prefixFrom
				}
			}
		}
	case s.GRPCRoute != nil:
		g := s.GRPCRoute
		want, port, tgt, hostname = appmesh.ProtocolGRPC, g.Match.Port, g.Action.Target, g.Match.Hostname
		s1.path = pathCond{kind: pathPrefix, value: "/"}
		if g.Match.ServiceName != nil {
			s1.path.value = "/" + *g.Match.ServiceName + "/"
		}
		hs, err := metadataMatchers(g.Match.Metadata)
		if err != nil {
			ps.problem(gr.ref, "%v", err)
			return s1, 0, false
		}
		s1.headers = hs
		if g.Action.Rewrite != nil {
			hostRw = g.Action.Rewrite.Hostname
		}
	default:
		ps.problem(gr.ref, "gateway route has no route type")
		return s1, 0, false
	}
	if hostname != nil {
		hm := &routev3.HeaderMatcher{Name: ":authority"}
		if hostname.Exact != nil {
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: *hostname.Exact}}}
		} else if hostname.Suffix != nil {
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: *hostname.Suffix}}}
		}
		s1.headers = append([]*routev3.HeaderMatcher{hm}, s1.headers...)
	}
	pm, err := selectPort(port, pms)
	if err != nil {
		ps.problem(gr.ref, "virtual gateway %q %v", gr.ref.Parent, err)
		return s1, 0, false
	}
	if pm.Protocol != want {
		ps.problem(gr.ref, "a %s gateway route cannot serve the %s listener on port %d", want, pm.Protocol, *pm.Port)
		return s1, 0, false
	}
	if tgt == nil || tgt.VirtualService == nil {
		ps.problem(gr.ref, "gateway route has no target")
		return s1, 0, false
	}
	s1.service = tgt.VirtualService.VirtualServiceName
	if hostRw == nil || hostRw.DefaultTargetHostname != appmesh.Disabled {
		s1.host = s1.service
	}
	ports, prob := ps.w.servicePorts(m, s1.service)
	if prob != nil {
		ps.problems = append(ps.problems, *prob)
		return s1, 0, false
	}
	if m.services[s1.service] == nil {
		ps.problem(gr.ref, "target virtual service %q not found", s1.service)
		return s1, 0, false
	}
	var found bool
	for _, sp := range ports {
		if (tgt.Port == nil && len(ports) == 1) || (tgt.Port != nil && *tgt.Port == sp.port) {
			s1.sp, found = sp, true
		}
	}
	if !found {
		ps.problem(gr.ref, "target virtual service %q has no single port matching the target", s1.service)
		return s1, 0, false
	}
	if !isHTTPFamily(s1.sp.proto) {
		ps.problem(gr.ref, "target virtual service %q port %d is %s, not HTTP", s1.service, s1.sp.port, s1.sp.proto)
		return s1, 0, false
	}
	return s1, *pm.Port, true
}

// flatten builds the Envoy routes of one gateway route (see the comment at
// the top of this file).
func (ps *proxyState) flatten(s1 gwStage1, policy *appmesh.ClientPolicy, pool thresholds) []*routev3.Route {
	type stage2 struct {
		name    string
		path    pathCond
		headers []*routev3.HeaderMatcher
		query   []*routev3.QueryParameterMatcher
		action  *routev3.RouteAction
	}
	var second []stage2
	if s1.sp.node != "" {
		t := s1.sp.targets()[0]
		name, ok := ps.targetCluster(t, policy, s1.service, pool)
		if !ok {
			return nil
		}
		second = append(second, stage2{path: pathCond{kind: pathPrefix, value: "/"}, action: implicitRoute(name).GetRoute()})
	} else {
		for _, cr := range s1.sp.routes {
			if !ps.routeClusters(cr, policy, s1.service, pool) {
				continue
			}
			second = append(second, stage2{name: cr.ref.Name, path: cr.path, headers: cr.headers, query: cr.query, action: cr.action})
		}
	}
	var out []*routev3.Route
	for _, r := range second {
		name := s1.ref.Name
		if r.name != "" {
			name += "/" + r.name
		}
		path := s1.path
		extra := []*routev3.HeaderMatcher(nil)
		action := proto.Clone(r.action).(*routev3.RouteAction)
		if s1.host != "" {
			action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: s1.host}
		}
		switch {
		case s1.constPath != nil:
			if !pathMatches(r.path, *s1.constPath) {
				continue
			}
			action.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
				Pattern: &matcherv3.RegexMatcher{Regex: "^.*$"}, Substitution: *s1.constPath,
			}
		case s1.prefixFrom != s1.prefixTo:
			from, to := s1.prefixFrom, s1.prefixTo
			switch {
			case r.path.kind == pathPrefix && strings.HasPrefix(r.path.value, to):
				path = pathCond{kind: pathPrefix, value: from + r.path.value[len(to):]}
				action.PrefixRewrite = r.path.value
			case r.path.kind == pathPrefix && strings.HasPrefix(to, r.path.value):
				action.PrefixRewrite = to
			case r.path.kind == pathExact && strings.HasPrefix(r.path.value, to):
				path = pathCond{kind: pathExact, value: from + r.path.value[len(to):]}
				action.PrefixRewrite = r.path.value
			case r.path.kind == pathRegex:
				ps.problem(s1.ref, "route %q matches a regex, which cannot follow the prefix rewrite %q -> %q; left out", r.name, from, to)
				continue
			default:
				continue // the rewritten path can never match this route
			}
		default:
			if hm := pathHeader(r.path); hm != nil {
				extra = append(extra, hm)
			}
		}
		headers := slices.Concat(s1.headers, extra, r.headers)
		query := slices.Concat(s1.query, r.query)
		out = append(out, &routev3.Route{
			Name:   name,
			Match:  routeMatch(path, headers, query),
			Action: &routev3.Route_Route{Route: action},
		})
	}
	return out
}

// pathMatches decides a path condition against a constant path.
func pathMatches(p pathCond, path string) bool {
	switch p.kind {
	case pathExact:
		return path == p.value
	case pathPrefix:
		return strings.HasPrefix(path, p.value)
	}
	re, err := regexp.Compile("^(?:" + p.value + ")$")
	return err == nil && re.MatchString(path)
}

// pathHeader expresses a path condition as a :path header matcher (whose
// value includes the query string), or nil for the prefix "/".
func pathHeader(p pathCond) *routev3.HeaderMatcher {
	var sm *matcherv3.StringMatcher
	switch p.kind {
	case pathPrefix:
		if p.value == "/" {
			return nil
		}
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: p.value}}
	case pathExact:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{
			Regex: "^" + regexp.QuoteMeta(p.value) + `(\?.*)?$`,
		}}}
	case pathRegex:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{
			Regex: "^(?:" + p.value + `)(\?.*)?$`,
		}}}
	}
	return &routev3.HeaderMatcher{Name: ":path", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}
}
