// SPDX-License-Identifier: Apache-2.0

package appmesh

// This file checks virtual services, virtual routers and routes, and the match
// blocks that gateway routes share with routes.

// Allowed values of the enums checked here.
var (
	httpMethods     = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
	httpSchemes     = []string{"http", "https"}
	httpRetryEvents = []string{"server-error", "gateway-error", "client-error", "stream-error"}
	tcpRetryEvents  = []string{"connection-error"}
	grpcRetryEvents = []string{"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}
)

func validateVirtualService(w walker, s *VirtualServiceSpec) {
	p := s.Provider
	if p == nil {
		return
	}
	pw := w.field("provider")
	pw.exactlyOne(member{"virtualNode", p.VirtualNode != nil}, member{"virtualRouter", p.VirtualRouter != nil})
	if p.VirtualNode != nil {
		pw.field("virtualNode").field("virtualNodeName").resourceName(p.VirtualNode.VirtualNodeName)
	}
	if p.VirtualRouter != nil {
		pw.field("virtualRouter").field("virtualRouterName").resourceName(p.VirtualRouter.VirtualRouterName)
	}
}

func validateVirtualRouter(w walker, s *VirtualRouterSpec) {
	lw := w.field("listeners")
	lw.minItems(len(s.Listeners), 1)
	ports := newUniq[int32]("listeners")
	for i, l := range s.Listeners {
		lw.index(i).portMapping(l.PortMapping, i, ports, nodeProtocols)
	}
}

func validateRoute(w walker, s *RouteSpec) {
	w.exactlyOne(
		member{"httpRoute", s.HTTPRoute != nil}, member{"http2Route", s.HTTP2Route != nil},
		member{"grpcRoute", s.GRPCRoute != nil}, member{"tcpRoute", s.TCPRoute != nil})
	if s.HTTPRoute != nil {
		w.field("httpRoute").httpRoute(s.HTTPRoute, false)
	}
	if s.HTTP2Route != nil {
		w.field("http2Route").httpRoute(s.HTTP2Route, true)
	}
	if s.GRPCRoute != nil {
		w.field("grpcRoute").grpcRoute(s.GRPCRoute)
	}
	if r := s.TCPRoute; r != nil {
		rw := w.field("tcpRoute")
		if r.Match != nil {
			rw.field("match").field("port").port(r.Match.Port)
		}
		if aw := rw.field("action"); aw.required(r.Action != nil) {
			aw.field("weightedTargets").weightedTargets(r.Action.WeightedTargets)
		}
		if r.Timeout != nil {
			rw.field("timeout").field("idle").duration(r.Timeout.Idle)
		}
	}
	optBetween(w.field("priority"), s.Priority, 0, maxPriority)
}

// httpRoute checks an httpRoute (http2 false) or http2Route (http2 true).
func (w walker) httpRoute(r *HTTPRoute, http2 bool) {
	if mw := w.field("match"); mw.required(r.Match != nil) {
		m := r.Match
		mw.exactlyOne(member{"prefix", m.Prefix != nil}, member{"path", m.Path != nil})
		if m.Prefix != nil {
			mw.field("prefix").startsWithSlash(*m.Prefix)
		}
		mw.field("path").pathMatch(m.Path)
		mw.field("headers").headers(m.Headers)
		mw.field("method").enum(string(m.Method), httpMethods...)
		if sw := mw.field("scheme"); m.Scheme != "" && !http2 {
			sw.fail("is only allowed in http2Route")
		} else {
			sw.enum(string(m.Scheme), httpSchemes...)
		}
		mw.field("queryParameters").queryParameters(m.QueryParameters)
		mw.field("port").port(m.Port)
	}
	if aw := w.field("action"); aw.required(r.Action != nil) {
		aw.field("weightedTargets").weightedTargets(r.Action.WeightedTargets)
	}
	if p := r.RetryPolicy; p != nil {
		w.field("retryPolicy").retryPolicy(&GRPCRetryPolicy{
			MaxRetries: p.MaxRetries, PerRetryTimeout: p.PerRetryTimeout,
			HTTPRetryEvents: p.HTTPRetryEvents, TCPRetryEvents: p.TCPRetryEvents,
		}, false)
	}
	if r.Timeout != nil {
		w.field("timeout").timeouts(r.Timeout.PerRequest, r.Timeout.Idle)
	}
}

// grpcRoute checks a grpcRoute.
func (w walker) grpcRoute(r *GRPCRoute) {
	if mw := w.field("match"); mw.required(r.Match != nil) {
		m := r.Match
		if m.ServiceName != nil {
			mw.field("serviceName").nonEmpty(*m.ServiceName)
		}
		if nw := mw.field("methodName"); m.MethodName != nil {
			if m.ServiceName == nil {
				nw.fail("requires serviceName")
			} else {
				nw.length(*m.MethodName, 1, 50)
			}
		}
		mw.field("metadata").metadata(m.Metadata)
		mw.field("port").port(m.Port)
	}
	if aw := w.field("action"); aw.required(r.Action != nil) {
		aw.field("weightedTargets").weightedTargets(r.Action.WeightedTargets)
	}
	if r.RetryPolicy != nil {
		w.field("retryPolicy").retryPolicy(r.RetryPolicy, true)
	}
	if r.Timeout != nil {
		w.field("timeout").timeouts(r.Timeout.PerRequest, r.Timeout.Idle)
	}
}

// retryPolicy checks a retry policy: maxRetries, perRetryTimeout and at least
// one list of events are required. grpc says whether the route is a grpcRoute,
// the only type with grpcRetryEvents (an HTTP policy comes converted).
func (w walker) retryPolicy(p *GRPCRetryPolicy, grpc bool) {
	reqBetween(w.field("maxRetries"), p.MaxRetries, 0, maxUint32)
	if pw := w.field("perRetryTimeout"); pw.required(p.PerRetryTimeout != nil) {
		pw.duration(p.PerRetryTimeout)
	}
	lists := []member{{"httpRetryEvents", len(p.HTTPRetryEvents) > 0}, {"tcpRetryEvents", len(p.TCPRetryEvents) > 0}}
	if grpc {
		lists = append([]member{{"grpcRetryEvents", len(p.GRPCRetryEvents) > 0}}, lists...)
	}
	w.atLeastOne(lists...)
	w.field("grpcRetryEvents").retryEvents(p.GRPCRetryEvents, 1, 5, grpcRetryEvents)
	w.field("httpRetryEvents").retryEvents(p.HTTPRetryEvents, 1, 25, httpRetryEvents)
	w.field("tcpRetryEvents").retryEvents(p.TCPRetryEvents, 1, 1, tcpRetryEvents)
}

// retryEvents checks an optional list of retry events: lo..hi distinct values
// out of allowed. An empty list is an absent one, as everywhere: the JSON
// encoding of the spec types drops empty lists.
func (w walker) retryEvents(events []string, lo, hi int, allowed []string) {
	if len(events) == 0 || !w.count(len(events), lo, hi) {
		return
	}
	seen := newUniq[string](lastField(w.path))
	for i, e := range events {
		if iw := w.index(i); iw.reqEnum(e, allowed...) {
			seen.check(iw, e, i)
		}
	}
}

// lastField is the last member name of a path ("b" for "a.b").
func lastField(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '.' {
			return path[i+1:]
		}
	}
	return path
}

// weightedTargets checks the targets of a route action: 1–10 distinct targets
// (node and port) whose weights add up to 1–100.
func (w walker) weightedTargets(targets []WeightedTarget) {
	if !w.count(len(targets), 1, maxTargets) {
		return
	}
	type key struct {
		node string
		port int32
	}
	seen := newUniq[key]("weightedTargets")
	sum, weighed := int64(0), true
	for i, t := range targets {
		iw := w.index(i)
		iw.field("virtualNode").resourceName(t.VirtualNode)
		if ww := iw.field("weight"); ww.required(t.Weight != nil) && ww.between(int64(*t.Weight), 0, maxWeight) {
			sum += int64(*t.Weight)
		} else {
			weighed = false
		}
		iw.field("port").port(t.Port)
		k := key{node: t.VirtualNode}
		if t.Port != nil {
			k.port = *t.Port
		}
		seen.check(iw, k, i)
	}
	if weighed && (sum < 1 || sum > maxWeight) {
		w.failf("sum of weights must be between 1 and %d (is %d)", maxWeight, sum)
	}
}

// pathMatch checks an optional path match: exactly one of exact or regex.
func (w walker) pathMatch(p *HTTPPathMatch) {
	if p == nil {
		return
	}
	w.exactlyOne(member{"exact", p.Exact != nil}, member{"regex", p.Regex != nil})
	if ew := w.field("exact"); p.Exact != nil && ew.length(*p.Exact, 1, maxMatcherLength) {
		ew.startsWithSlash(*p.Exact)
	}
	if p.Regex != nil {
		w.field("regex").regex(*p.Regex)
	}
}

// headers checks an optional list of HTTP header matchers.
func (w walker) headers(hs []HTTPRouteHeader) {
	if len(hs) == 0 || !w.count(len(hs), 1, maxMatchers) {
		return
	}
	for i, h := range hs {
		w.index(i).headerMatcher(h.Name, h.Match)
	}
}

// metadata checks an optional list of gRPC metadata matchers.
func (w walker) metadata(ms []GRPCRouteMetadata) {
	if len(ms) == 0 || !w.count(len(ms), 1, maxMatchers) {
		return
	}
	for i, m := range ms {
		w.index(i).headerMatcher(m.Name, m.Match)
	}
}

// headerMatcher checks one header or metadata entry: a name of 1–50
// characters and an optional matcher with exactly one method.
func (w walker) headerMatcher(name string, m *HeaderMatchMethod) {
	w.field("name").length(name, 1, 50)
	if m == nil {
		return
	}
	mw := w.field("match")
	mw.exactlyOne(
		member{"exact", m.Exact != nil}, member{"prefix", m.Prefix != nil}, member{"suffix", m.Suffix != nil},
		member{"regex", m.Regex != nil}, member{"range", m.Range != nil})
	mw.field("exact").optLength(m.Exact, 1, maxMatcherLength)
	mw.field("prefix").optLength(m.Prefix, 1, maxMatcherLength)
	mw.field("suffix").optLength(m.Suffix, 1, maxMatcherLength)
	if m.Regex != nil {
		mw.field("regex").regex(*m.Regex)
	}
	if r := m.Range; r != nil {
		rw := mw.field("range")
		okStart := rw.field("start").required(r.Start != nil)
		okEnd := rw.field("end").required(r.End != nil)
		if okStart && okEnd && *r.Start >= *r.End {
			rw.field("end").fail("must be greater than start")
		}
	}
}

// queryParameters checks an optional list of query parameter matchers.
func (w walker) queryParameters(qs []HTTPQueryParameter) {
	if len(qs) == 0 || !w.count(len(qs), 1, maxMatchers) {
		return
	}
	for i, q := range qs {
		iw := w.index(i)
		iw.field("name").nonEmpty(q.Name)
		if q.Match != nil {
			iw.field("match").field("exact").required(q.Match.Exact != nil)
		}
	}
}
