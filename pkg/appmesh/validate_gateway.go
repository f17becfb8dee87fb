// SPDX-License-Identifier: Apache-2.0

package appmesh

import "strings"

// This file checks virtual gateways and gateway routes.

var defaultStates = []string{string(Enabled), string(Disabled)}

func validateVirtualGateway(w walker, s *VirtualGatewaySpec) {
	lw := w.field("listeners")
	lw.minItems(len(s.Listeners), 1)
	ports := newUniq[int32]("listeners")
	for i, l := range s.Listeners {
		iw := lw.index(i)
		proto := iw.portMapping(l.PortMapping, i, ports, gatewayProtocols)
		iw.field("healthCheck").healthCheck(l.HealthCheck, l.PortMapping, gatewayProtocols)
		if p := l.ConnectionPool; p != nil {
			pool := &VirtualNodeConnectionPool{HTTP: p.HTTP, HTTP2: p.HTTP2, GRPC: p.GRPC}
			iw.field("connectionPool").connectionPool(pool, proto, false)
		}
		if t := l.TLS; t != nil {
			iw.field("tls").listenerTLS(&ListenerTLS{Mode: t.Mode, Certificate: t.Certificate, Validation: t.Validation})
		}
	}
	if s.BackendDefaults != nil {
		w.field("backendDefaults").field("clientPolicy").clientPolicy(s.BackendDefaults.ClientPolicy)
	}
	w.field("logging").logging(s.Logging)
}

func validateGatewayRoute(w walker, s *GatewayRouteSpec) {
	w.exactlyOne(
		member{"httpRoute", s.HTTPRoute != nil}, member{"http2Route", s.HTTP2Route != nil},
		member{"grpcRoute", s.GRPCRoute != nil})
	if s.HTTPRoute != nil {
		w.field("httpRoute").httpGatewayRoute(s.HTTPRoute)
	}
	if s.HTTP2Route != nil {
		w.field("http2Route").httpGatewayRoute(s.HTTP2Route)
	}
	if s.GRPCRoute != nil {
		w.field("grpcRoute").grpcGatewayRoute(s.GRPCRoute)
	}
	optBetween(w.field("priority"), s.Priority, 0, maxPriority)
}

// httpGatewayRoute checks an httpRoute or http2Route of a gateway.
func (w walker) httpGatewayRoute(r *HTTPGatewayRoute) {
	m := r.Match
	if mw := w.field("match"); mw.required(m != nil) {
		mw.atLeastOne(member{"prefix", m.Prefix != nil}, member{"path", m.Path != nil}, member{"hostname", m.Hostname != nil})
		if pw := mw.field("prefix"); m.Prefix != nil && pw.startsWithSlash(*m.Prefix) &&
			(strings.HasPrefix(*m.Prefix, "/aws-appmesh") || strings.HasPrefix(*m.Prefix, "/aws-app-mesh")) {
			pw.fail("must not start with /aws-appmesh or /aws-app-mesh")
		}
		if m.Prefix != nil && m.Path != nil {
			mw.field("path").fail("must not be set together with prefix")
		}
		mw.field("path").pathMatch(m.Path)
		mw.field("hostname").hostnameMatch(m.Hostname)
		mw.field("headers").headers(m.Headers)
		mw.field("method").enum(string(m.Method), httpMethods...)
		mw.field("queryParameters").queryParameters(m.QueryParameters)
		mw.field("port").port(m.Port)
	}
	aw := w.field("action")
	if !aw.required(r.Action != nil) {
		return
	}
	aw.field("target").gatewayTarget(r.Action.Target)
	rw := aw.field("rewrite")
	rr := r.Action.Rewrite
	if rr == nil {
		return
	}
	rw.atLeastOne(member{"prefix", rr.Prefix != nil}, member{"path", rr.Path != nil}, member{"hostname", rr.Hostname != nil})
	if rr.Hostname != nil {
		rw.field("hostname").field("defaultTargetHostname").enum(string(rr.Hostname.DefaultTargetHostname), defaultStates...)
	}
	if p := rr.Prefix; p != nil {
		pw := rw.field("prefix")
		if m != nil && m.Prefix == nil {
			pw.fail("requires a prefix match")
		}
		pw.exactlyOne(member{"defaultPrefix", p.DefaultPrefix != ""}, member{"value", p.Value != nil})
		pw.field("defaultPrefix").enum(string(p.DefaultPrefix), defaultStates...)
		if vw := pw.field("value"); p.Value != nil && vw.length(*p.Value, 1, maxMatcherLength) &&
			(!strings.HasPrefix(*p.Value, "/") || !strings.HasSuffix(*p.Value, "/")) {
			vw.fail(`must start and end with "/"`)
		}
	}
	if p := rr.Path; p != nil {
		pw := rw.field("path")
		if rr.Prefix != nil {
			pw.fail("must not be set together with prefix")
		}
		if m != nil && m.Path == nil {
			pw.fail("requires a path match")
		}
		if ew := pw.field("exact"); ew.required(p.Exact != nil) && ew.length(*p.Exact, 1, maxMatcherLength) {
			ew.startsWithSlash(*p.Exact)
		}
	}
}

// grpcGatewayRoute checks a grpcRoute of a gateway.
func (w walker) grpcGatewayRoute(r *GRPCGatewayRoute) {
	if mw := w.field("match"); mw.required(r.Match != nil) {
		m := r.Match
		mw.atLeastOne(member{"serviceName", m.ServiceName != nil}, member{"hostname", m.Hostname != nil})
		if sw := mw.field("serviceName"); m.ServiceName != nil && sw.nonEmpty(*m.ServiceName) &&
			(*m.ServiceName == "aws.appmesh" || strings.HasPrefix(*m.ServiceName, "aws.app-mesh")) {
			sw.fail("must not be aws.appmesh or start with aws.app-mesh")
		}
		mw.field("hostname").hostnameMatch(m.Hostname)
		mw.field("metadata").metadata(m.Metadata)
		mw.field("port").port(m.Port)
	}
	aw := w.field("action")
	if !aw.required(r.Action != nil) {
		return
	}
	aw.field("target").gatewayTarget(r.Action.Target)
	if rr := r.Action.Rewrite; rr != nil && rr.Hostname != nil {
		aw.field("rewrite").field("hostname").field("defaultTargetHostname").
			enum(string(rr.Hostname.DefaultTargetHostname), defaultStates...)
	}
}

// hostnameMatch checks an optional hostname match: exactly one of exact or
// suffix, 1–253 characters.
func (w walker) hostnameMatch(h *GatewayRouteHostnameMatch) {
	if h == nil {
		return
	}
	w.exactlyOne(member{"exact", h.Exact != nil}, member{"suffix", h.Suffix != nil})
	w.field("exact").optLength(h.Exact, 1, maxHostnameMatch)
	w.field("suffix").optLength(h.Suffix, 1, maxHostnameMatch)
}

// gatewayTarget checks the required target of a gateway route.
func (w walker) gatewayTarget(t *GatewayRouteTarget) {
	if !w.required(t != nil) {
		return
	}
	if vw := w.field("virtualService"); vw.required(t.VirtualService != nil) {
		vw.field("virtualServiceName").serviceName(t.VirtualService.VirtualServiceName)
	}
	w.field("port").port(t.Port)
}
