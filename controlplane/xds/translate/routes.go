// SPDX-License-Identifier: Apache-2.0

package translate

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// Defaults of appmesh-model §13.
const (
	defaultPerRequest = 15 * time.Second
	defaultIdle       = 300 * time.Second
	defaultNumRetries = 2
	// defaultRetryOn is the retry policy App Mesh applies to a route without
	// one, and to the implicit route of a node-provided service.
	defaultRetryOn = "connect-failure,refused-stream,unavailable,reset,retriable-status-codes"
	// unprioritised is the priority of a route without one (§9.1).
	unprioritised = 1001
)

type pathKind int

// Path conditions, in the §9.1 tie-break order: exact before prefix before
// regex.
const (
	pathExact pathKind = iota
	pathPrefix
	pathRegex
)

// pathCond is the path condition of a route.
type pathCond struct {
	kind  pathKind
	value string
}

// length is the length §9.1 sorts by: that of a prefix or exact path; a
// regex counts as 0.
func (p pathCond) length() int {
	if p.kind == pathRegex {
		return 0
	}
	return len(p.value)
}

// target is a weighted target resolved to a node listener.
type target struct {
	node   string
	port   int32
	proto  appmesh.PortProtocol
	weight uint32
}

// compiledRoute is an App Mesh route translated once, independent of the
// caller: its match, its action and its targets.
type compiledRoute struct {
	ref     appmesh.Ref
	proto   appmesh.PortProtocol // the router listener's protocol
	order   orderKey
	path    pathCond
	headers []*routev3.HeaderMatcher
	query   []*routev3.QueryParameterMatcher
	action  *routev3.RouteAction // HTTP family only
	targets []target
	tcpIdle *durationpb.Duration // TCP only
}

// envoyRoute returns a fresh Envoy route for the compiled route.
func (r *compiledRoute) envoyRoute() *routev3.Route {
	return &routev3.Route{
		Name:   r.ref.Name,
		Match:  routeMatch(r.path, r.headers, r.query),
		Action: &routev3.Route_Route{Route: proto.Clone(r.action).(*routev3.RouteAction)},
	}
}

func routeMatch(p pathCond, headers []*routev3.HeaderMatcher, query []*routev3.QueryParameterMatcher) *routev3.RouteMatch {
	m := &routev3.RouteMatch{}
	switch p.kind {
	case pathExact:
		m.PathSpecifier = &routev3.RouteMatch_Path{Path: p.value}
	case pathPrefix:
		m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: p.value}
	case pathRegex:
		m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: p.value}}
	}
	for _, h := range headers {
		m.Headers = append(m.Headers, proto.Clone(h).(*routev3.HeaderMatcher))
	}
	for _, q := range query {
		m.QueryParameters = append(m.QueryParameters, proto.Clone(q).(*routev3.QueryParameterMatcher))
	}
	return m
}

// egressCluster names the caller-side cluster of a target node listener.
func egressCluster(mesh, node string, proto appmesh.PortProtocol, port int32) string {
	return fmt.Sprintf("cds_egress_%s_%s_%s_%d", safeName(mesh), safeName(node), proto, port)
}

// compileRoute resolves and translates one route and files it under its
// router port.
func (w *World) compileRoute(r appmesh.Resource) {
	m := w.meshes[r.Ref.Mesh]
	rt := m.routers[r.Ref.Parent]
	if rt == nil {
		w.problem(r.Ref, "virtual router %q not found", r.Ref.Parent)
		return
	}
	s := r.Spec.(*appmesh.RouteSpec)
	cr := &compiledRoute{ref: r.Ref}
	var (
		port    *int32
		want    appmesh.PortProtocol
		targets []appmesh.WeightedTarget
	)
	switch {
	case s.HTTPRoute != nil || s.HTTP2Route != nil:
		h, p := s.HTTPRoute, appmesh.ProtocolHTTP
		if h == nil {
			h, p = s.HTTP2Route, appmesh.ProtocolHTTP2
		}
		want, port, targets = p, h.Match.Port, h.Action.WeightedTargets
		if err := cr.httpMatch(h.Match); err != nil {
			w.problem(r.Ref, "%v", err)
			return
		}
	case s.GRPCRoute != nil:
		g := s.GRPCRoute
		want, port, targets = appmesh.ProtocolGRPC, g.Match.Port, g.Action.WeightedTargets
		if err := cr.grpcMatch(g.Match); err != nil {
			w.problem(r.Ref, "%v", err)
			return
		}
	case s.TCPRoute != nil:
		want, targets = appmesh.ProtocolTCP, s.TCPRoute.Action.WeightedTargets
		if s.TCPRoute.Match != nil {
			port = s.TCPRoute.Match.Port
		}
	default:
		w.problem(r.Ref, "route has no route type")
		return
	}
	pm, err := selectPort(port, portMappings(rt.spec.Listeners, func(l *appmesh.VirtualRouterListener) *appmesh.PortMapping { return l.PortMapping }))
	if err != nil {
		w.problem(r.Ref, "virtual router %q %v", r.Ref.Parent, err)
		return
	}
	if pm.Protocol != want {
		w.problem(r.Ref, "a %s route cannot serve the %s listener on port %d", want, pm.Protocol, *pm.Port)
		return
	}
	cr.proto = want
	var total uint32
	for _, t := range targets {
		vn := m.nodes[t.VirtualNode]
		if vn == nil {
			w.problem(r.Ref, "target virtual node %q not found", t.VirtualNode)
			return
		}
		var tport int32
		if t.Port != nil {
			tport = *t.Port
		}
		l, err := nodeListener(vn, tport)
		if err != nil {
			w.problem(r.Ref, "target virtual node %q %v", t.VirtualNode, err)
			return
		}
		weight := uint32(*t.Weight)
		total += weight
		cr.targets = append(cr.targets, target{node: t.VirtualNode, port: *l.PortMapping.Port, proto: l.PortMapping.Protocol, weight: weight})
	}
	if total == 0 {
		w.problem(r.Ref, "every weighted target has weight 0")
		return
	}
	prio := int32(unprioritised)
	if s.Priority != nil {
		prio = *s.Priority
	}
	cr.order = orderKey{prio: prio, matchLen: cr.path.length(), kind: cr.path.kind, matchers: len(cr.headers) + len(cr.query), name: r.Ref.Name}
	if want == appmesh.ProtocolTCP {
		var idle *appmesh.Duration
		if s.TCPRoute.Timeout != nil {
			idle = s.TCPRoute.Timeout.Idle
		}
		cr.tcpIdle = durationOr(idle, defaultIdle)
	} else {
		cr.action = w.routeAction(m.name, cr.targets, s)
		if err := cr.envoyRoute().ValidateAll(); err != nil {
			w.problem(r.Ref, "envoy rejects the route: %v", err)
			return
		}
	}
	rt.routes[*pm.Port] = append(rt.routes[*pm.Port], cr)
}

// httpMatch translates an HTTP route match (§15.4).
func (r *compiledRoute) httpMatch(m *appmesh.HTTPRouteMatch) error {
	r.path = pathCond{kind: pathPrefix, value: "/"}
	switch {
	case m.Prefix != nil:
		r.path.value = *m.Prefix
	case m.Path != nil && m.Path.Exact != nil:
		r.path = pathCond{kind: pathExact, value: *m.Path.Exact}
	case m.Path != nil && m.Path.Regex != nil:
		r.path = pathCond{kind: pathRegex, value: *m.Path.Regex}
		if err := checkRegex(*m.Path.Regex); err != nil {
			return fmt.Errorf("match.path.regex: %w", err)
		}
	}
	hs, err := headerMatchers(m.Headers)
	if err != nil {
		return err
	}
	r.headers = hs
	if m.Method != "" {
		r.headers = append(r.headers, exactHeader(":method", string(m.Method)))
	}
	if m.Scheme != "" {
		r.headers = append(r.headers, exactHeader(":scheme", string(m.Scheme)))
	}
	r.query = queryMatchers(m.QueryParameters)
	return nil
}

// grpcMatch translates a gRPC route match: /<service>/<method> exactly, or
// the prefix /<service>/, or every call.
func (r *compiledRoute) grpcMatch(m *appmesh.GRPCRouteMatch) error {
	switch {
	case m.ServiceName != nil && m.MethodName != nil:
		r.path = pathCond{kind: pathExact, value: "/" + *m.ServiceName + "/" + *m.MethodName}
	case m.ServiceName != nil:
		r.path = pathCond{kind: pathPrefix, value: "/" + *m.ServiceName + "/"}
	default:
		r.path = pathCond{kind: pathPrefix, value: "/"}
	}
	var err error
	r.headers, err = metadataMatchers(m.Metadata)
	return err
}

func checkRegex(re string) error {
	if _, err := regexp.Compile(re); err != nil {
		return fmt.Errorf("not a valid RE2 expression: %w", err)
	}
	return nil
}

func exactHeader(name, value string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value}},
	}}
}

func headerMatchers(hs []appmesh.HTTPRouteHeader) ([]*routev3.HeaderMatcher, error) {
	var out []*routev3.HeaderMatcher
	for _, h := range hs {
		hm, err := headerMatcher(h.Name, h.Match, h.Invert)
		if err != nil {
			return nil, err
		}
		out = append(out, hm)
	}
	return out, nil
}

func metadataMatchers(ms []appmesh.GRPCRouteMetadata) ([]*routev3.HeaderMatcher, error) {
	var out []*routev3.HeaderMatcher
	for _, h := range ms {
		hm, err := headerMatcher(h.Name, h.Match, h.Invert)
		if err != nil {
			return nil, err
		}
		out = append(out, hm)
	}
	return out, nil
}

// headerMatcher translates one header or metadata matcher; without a match
// method it tests presence.
func headerMatcher(name string, m *appmesh.HeaderMatchMethod, invert *bool) (*routev3.HeaderMatcher, error) {
	hm := &routev3.HeaderMatcher{Name: strings.ToLower(name), InvertMatch: invert != nil && *invert}
	str := func(sm *matcherv3.StringMatcher) {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: sm}
	}
	switch {
	case m == nil:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	case m.Exact != nil:
		str(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: *m.Exact}})
	case m.Prefix != nil:
		str(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: *m.Prefix}})
	case m.Suffix != nil:
		str(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: *m.Suffix}})
	case m.Regex != nil:
		if err := checkRegex(*m.Regex); err != nil {
			return nil, fmt.Errorf("header %q: %w", name, err)
		}
		str(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: *m.Regex}}})
	case m.Range != nil:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_RangeMatch{RangeMatch: &typev3.Int64Range{Start: *m.Range.Start, End: *m.Range.End}}
	default:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	}
	return hm, nil
}

func queryMatchers(qs []appmesh.HTTPQueryParameter) []*routev3.QueryParameterMatcher {
	var out []*routev3.QueryParameterMatcher
	for _, q := range qs {
		qm := &routev3.QueryParameterMatcher{Name: q.Name}
		if q.Match != nil && q.Match.Exact != nil {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{
				StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: *q.Match.Exact}},
			}
		} else {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		}
		out = append(out, qm)
	}
	return out
}

// routeAction builds the weighted clusters, timeouts and retry policy of an
// HTTP-family route.
func (w *World) routeAction(mesh string, targets []target, s *appmesh.RouteSpec) *routev3.RouteAction {
	a := clusterAction(mesh, targets)
	var perRequest, idle *appmesh.Duration
	switch {
	case s.HTTPRoute != nil || s.HTTP2Route != nil:
		h := s.HTTPRoute
		if h == nil {
			h = s.HTTP2Route
		}
		if h.Timeout != nil {
			perRequest, idle = h.Timeout.PerRequest, h.Timeout.Idle
		}
		if p := h.RetryPolicy; p != nil {
			a.RetryPolicy = retryPolicy(p.MaxRetries, p.PerRetryTimeout, p.HTTPRetryEvents, p.TCPRetryEvents, nil)
		}
	case s.GRPCRoute != nil:
		g := s.GRPCRoute
		if g.Timeout != nil {
			perRequest, idle = g.Timeout.PerRequest, g.Timeout.Idle
		}
		if p := g.RetryPolicy; p != nil {
			a.RetryPolicy = retryPolicy(p.MaxRetries, p.PerRetryTimeout, p.HTTPRetryEvents, p.TCPRetryEvents, p.GRPCRetryEvents)
		}
	}
	if a.RetryPolicy == nil {
		a.RetryPolicy = defaultRetryPolicy()
	}
	a.Timeout = durationOr(perRequest, defaultPerRequest)
	a.IdleTimeout = durationOr(idle, defaultIdle)
	return a
}

// clusterAction routes to one cluster, or to weighted clusters when more
// than one target has a weight. Targets of weight 0 are left out.
func clusterAction(mesh string, targets []target) *routev3.RouteAction {
	var live []target
	for _, t := range targets {
		if t.weight > 0 {
			live = append(live, t)
		}
	}
	if len(live) == 1 {
		t := live[0]
		return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: egressCluster(mesh, t.node, t.proto, t.port)}}
	}
	wc := &routev3.WeightedCluster{}
	for _, t := range live {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
			Name: egressCluster(mesh, t.node, t.proto, t.port), Weight: wrapperspb.UInt32(t.weight),
		})
	}
	return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}}
}

// retryTokens maps App Mesh retry events to Envoy retry_on tokens (§15.4).
var retryTokens = map[string][]string{
	"server-error":       {"5xx", "reset"},
	"gateway-error":      {"gateway-error", "reset"},
	"client-error":       {"retriable-4xx"},
	"stream-error":       {"refused-stream"},
	"connection-error":   {"connect-failure"},
	"cancelled":          {"cancelled"},
	"deadline-exceeded":  {"deadline-exceeded"},
	"internal":           {"internal"},
	"resource-exhausted": {"resource-exhausted"},
	"unavailable":        {"unavailable"},
}

// RetryOn returns the Envoy retry_on string for App Mesh retry events: the
// tokens of the HTTP events, then the TCP events, then the gRPC events, each
// token once, in that order.
func RetryOn(httpEvents, tcpEvents, grpcEvents []string) string {
	var out []string
	for _, list := range [][]string{httpEvents, tcpEvents, grpcEvents} {
		for _, ev := range list {
			for _, tok := range retryTokens[ev] {
				if !slices.Contains(out, tok) {
					out = append(out, tok)
				}
			}
		}
	}
	return strings.Join(out, ",")
}

func retryPolicy(maxRetries *int64, perTry *appmesh.Duration, httpEvents, tcpEvents, grpcEvents []string) *routev3.RetryPolicy {
	n := int64(0)
	if maxRetries != nil {
		n = min(max(*maxRetries, 0), 1<<31)
	}
	p := &routev3.RetryPolicy{
		RetryOn:    RetryOn(httpEvents, tcpEvents, grpcEvents),
		NumRetries: wrapperspb.UInt32(uint32(n)),
	}
	if d, ok := duration(perTry); ok {
		p.PerTryTimeout = durationpb.New(d)
	}
	return p
}

func defaultRetryPolicy() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:              defaultRetryOn,
		RetriableStatusCodes: []uint32{503},
		NumRetries:           wrapperspb.UInt32(defaultNumRetries),
	}
}

// duration converts an App Mesh duration; ok is false when it is absent.
func duration(d *appmesh.Duration) (time.Duration, bool) {
	if d == nil || d.Value == nil {
		return 0, false
	}
	if d.Unit == appmesh.UnitMS {
		return time.Duration(*d.Value) * time.Millisecond, true
	}
	return time.Duration(*d.Value) * time.Second, true
}

// durationOr converts d, or def when d is absent. A zero d stays 0s, which
// Envoy reads as "disabled".
func durationOr(d *appmesh.Duration, def time.Duration) *durationpb.Duration {
	if v, ok := duration(d); ok {
		return durationpb.New(v)
	}
	return durationpb.New(def)
}

// orderKey sorts routes of one port: priority (absent = 1001), then the
// longer path condition, then exact before prefix before regex, then more
// header and query matchers, then the name (§9.1 tie-breaks).
type orderKey struct {
	prio     int32
	matchLen int
	kind     pathKind
	matchers int
	name     string
}

func compareOrder(a, b orderKey) int {
	return cmp.Or(
		cmp.Compare(a.prio, b.prio),
		cmp.Compare(b.matchLen, a.matchLen),
		cmp.Compare(a.kind, b.kind),
		cmp.Compare(b.matchers, a.matchers),
		cmp.Compare(a.name, b.name),
	)
}

func sortRoutes(rs []*compiledRoute) {
	slices.SortFunc(rs, func(a, b *compiledRoute) int { return compareOrder(a.order, b.order) })
}

// gatewayRouteOrder is the orderKey of a gateway route: priority, then the
// longest prefix, with the same tie-breaks as routes.
func gatewayRouteOrder(g gatewayRouteRes) orderKey {
	k := orderKey{prio: unprioritised, kind: pathPrefix, name: g.ref.Name}
	if g.spec.Priority != nil {
		k.prio = *g.spec.Priority
	}
	h := g.spec.HTTPRoute
	if h == nil {
		h = g.spec.HTTP2Route
	}
	switch {
	case h != nil && h.Match != nil:
		m := h.Match
		switch {
		case m.Prefix != nil:
			k.matchLen = len(*m.Prefix)
		case m.Path != nil && m.Path.Exact != nil:
			k.matchLen, k.kind = len(*m.Path.Exact), pathExact
		case m.Path != nil && m.Path.Regex != nil:
			k.kind = pathRegex
		}
		k.matchers = len(m.Headers) + len(m.QueryParameters)
		if m.Method != "" {
			k.matchers++
		}
		if m.Hostname != nil {
			k.matchers++
		}
	case g.spec.GRPCRoute != nil && g.spec.GRPCRoute.Match != nil:
		m := g.spec.GRPCRoute.Match
		if m.ServiceName != nil {
			k.matchLen = len(*m.ServiceName) + 2
		}
		k.matchers = len(m.Metadata)
		if m.Hostname != nil {
			k.matchers++
		}
	}
	return k
}
