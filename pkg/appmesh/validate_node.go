// SPDX-License-Identifier: Apache-2.0

package appmesh

import "strings"

// This file checks meshes and virtual nodes, and the listener, TLS and logging
// blocks that virtual gateways share with nodes.

// Allowed values of the enums checked here.
var (
	nodeProtocols    = []string{string(ProtocolHTTP), string(ProtocolHTTP2), string(ProtocolGRPC), string(ProtocolTCP)}
	gatewayProtocols = []string{string(ProtocolHTTP), string(ProtocolHTTP2), string(ProtocolGRPC)}
	healthProtocols  = []string{string(ProtocolHTTP), string(ProtocolTCP), string(ProtocolHTTP2), string(ProtocolGRPC)}
	ipPreferences    = []string{string(IPv6Preferred), string(IPv4Preferred), string(IPv4Only), string(IPv6Only)}
	tlsModes         = []string{string(TLSStrict), string(TLSPermissive), string(TLSDisabled)}
)

func validateMesh(w walker, s *MeshSpec) {
	if s.EgressFilter != nil {
		w.field("egressFilter").field("type").reqEnum(string(s.EgressFilter.Type), string(EgressAllowAll), string(EgressDropAll))
	}
	if s.ServiceDiscovery != nil {
		w.field("serviceDiscovery").field("ipPreference").enum(string(s.ServiceDiscovery.IPPreference), ipPreferences...)
	}
}

func validateVirtualNode(w walker, s *VirtualNodeSpec) {
	lw := w.field("listeners")
	ports := newUniq[int32]("listeners")
	for i := range s.Listeners {
		l := &s.Listeners[i]
		iw := lw.index(i)
		proto := iw.portMapping(l.PortMapping, i, ports, nodeProtocols)
		iw.field("healthCheck").healthCheck(l.HealthCheck, l.PortMapping, healthProtocols)
		iw.field("outlierDetection").outlierDetection(l.OutlierDetection)
		iw.field("timeout").listenerTimeout(l.Timeout, proto)
		iw.field("tls").listenerTLS(l.TLS)
		iw.field("connectionPool").connectionPool(l.ConnectionPool, proto, true)
	}

	sw := w.field("serviceDiscovery")
	if s.ServiceDiscovery == nil {
		if len(s.Listeners) > 0 {
			sw.fail("is required when listeners are set")
		}
	} else {
		sw.serviceDiscovery(s.ServiceDiscovery)
	}

	bw := w.field("backends")
	names := newUniq[string]("backends")
	for i, b := range s.Backends {
		vw := bw.index(i).field("virtualService")
		if !vw.required(b.VirtualService != nil) {
			continue
		}
		nw := vw.field("virtualServiceName")
		if nw.serviceName(b.VirtualService.VirtualServiceName) {
			names.check(nw, b.VirtualService.VirtualServiceName, i)
		}
		vw.field("clientPolicy").clientPolicy(b.VirtualService.ClientPolicy)
	}
	if s.BackendDefaults != nil {
		w.field("backendDefaults").field("clientPolicy").clientPolicy(s.BackendDefaults.ClientPolicy)
	}
	w.field("logging").logging(s.Logging)
}

// portMapping checks the port mapping of a listener (item i of its list) and
// returns its protocol, or "" when the protocol is missing or not allowed.
func (w walker) portMapping(pm *PortMapping, i int, ports *uniq[int32], protocols []string) PortProtocol {
	pw := w.field("portMapping")
	if !pw.required(pm != nil) {
		return ""
	}
	portW := pw.field("port")
	if portW.required(pm.Port != nil) && portW.between(int64(*pm.Port), 1, maxPort) {
		ports.check(portW, *pm.Port, i)
	}
	if pw.field("protocol").reqEnum(string(pm.Protocol), protocols...) {
		return pm.Protocol
	}
	return ""
}

// healthCheck checks an optional health check policy of a listener.
func (w walker) healthCheck(hc *HealthCheckPolicy, pm *PortMapping, protocols []string) {
	if hc == nil {
		return
	}
	w.field("protocol").reqEnum(string(hc.Protocol), protocols...)
	if hc.Path != nil {
		w.field("path").startsWithSlash(*hc.Path)
	}
	pw := w.field("port")
	if hc.Port != nil && pw.between(int64(*hc.Port), 1, maxPort) &&
		pm != nil && pm.Port != nil && *hc.Port != *pm.Port {
		pw.failf("must equal the listener port %d", *pm.Port)
	}
	reqBetween(w.field("healthyThreshold"), hc.HealthyThreshold, 2, 10)
	reqBetween(w.field("unhealthyThreshold"), hc.UnhealthyThreshold, 2, 10)
	reqBetween(w.field("intervalMillis"), hc.IntervalMillis, 5000, 300000)
	reqBetween(w.field("timeoutMillis"), hc.TimeoutMillis, 2000, 60000)
}

// outlierDetection checks an optional outlier detection block; all its fields
// are required.
func (w walker) outlierDetection(od *OutlierDetection) {
	if od == nil {
		return
	}
	reqBetween(w.field("maxServerErrors"), od.MaxServerErrors, 1, maxUint32)
	w.field("interval").positiveDuration(od.Interval)
	w.field("baseEjectionDuration").positiveDuration(od.BaseEjectionDuration)
	reqBetween(w.field("maxEjectionPercent"), od.MaxEjectionPercent, 0, 100)
}

// listenerTimeout checks a listener timeout: one member, the one of the
// listener's protocol.
func (w walker) listenerTimeout(t *ListenerTimeout, proto PortProtocol) {
	if t == nil {
		return
	}
	set := w.exactlyOne(
		member{"http", t.HTTP != nil}, member{"http2", t.HTTP2 != nil},
		member{"grpc", t.GRPC != nil}, member{"tcp", t.TCP != nil})
	w.matchesProtocol(set, proto)
	if t.HTTP != nil {
		w.field("http").timeouts(t.HTTP.PerRequest, t.HTTP.Idle)
	}
	if t.HTTP2 != nil {
		w.field("http2").timeouts(t.HTTP2.PerRequest, t.HTTP2.Idle)
	}
	if t.GRPC != nil {
		w.field("grpc").timeouts(t.GRPC.PerRequest, t.GRPC.Idle)
	}
	if t.TCP != nil {
		w.field("tcp").field("idle").duration(t.TCP.Idle)
	}
}

// matchesProtocol fails the member set of a per-protocol one-of when it is not
// the listener's protocol. Either being "" skips the check.
func (w walker) matchesProtocol(set string, proto PortProtocol) {
	if set != "" && proto != "" && set != string(proto) {
		w.field(set).failf("must match the listener protocol (%s)", proto)
	}
}

// timeouts checks the perRequest and idle durations of an HTTP or gRPC timeout.
func (w walker) timeouts(perRequest, idle *Duration) {
	w.field("perRequest").duration(perRequest)
	w.field("idle").duration(idle)
}

// connectionPool checks a listener connection pool: one member, the one of the
// listener's protocol. withTCP says whether tcp is a member (a gateway pool has
// none).
func (w walker) connectionPool(p *VirtualNodeConnectionPool, proto PortProtocol, withTCP bool) {
	if p == nil {
		return
	}
	members := []member{{"http", p.HTTP != nil}, {"http2", p.HTTP2 != nil}, {"grpc", p.GRPC != nil}}
	if withTCP {
		members = append([]member{{"tcp", p.TCP != nil}}, members...)
	}
	w.matchesProtocol(w.exactlyOne(members...), proto)
	if p.TCP != nil {
		reqAtLeast(w.field("tcp").field("maxConnections"), p.TCP.MaxConnections, 1)
	}
	if p.HTTP != nil {
		hw := w.field("http")
		reqAtLeast(hw.field("maxConnections"), p.HTTP.MaxConnections, 1)
		if p.HTTP.MaxPendingRequests != nil {
			hw.field("maxPendingRequests").atLeast(int64(*p.HTTP.MaxPendingRequests), 1)
		}
	}
	if p.HTTP2 != nil {
		reqAtLeast(w.field("http2").field("maxRequests"), p.HTTP2.MaxRequests, 1)
	}
	if p.GRPC != nil {
		reqAtLeast(w.field("grpc").field("maxRequests"), p.GRPC.MaxRequests, 1)
	}
}

// listenerTLS checks the TLS block of a node or gateway listener.
func (w walker) listenerTLS(t *ListenerTLS) {
	if t == nil {
		return
	}
	w.field("mode").reqEnum(string(t.Mode), tlsModes...)
	cw := w.field("certificate")
	if cw.required(t.Certificate != nil) {
		cw.certificate(t.Certificate, true)
	}
	if v := t.Validation; v != nil {
		vw := w.field("validation")
		var trust *TLSValidationContextTrust
		if v.Trust != nil {
			trust = &TLSValidationContextTrust{File: v.Trust.File, SDS: v.Trust.SDS}
		}
		vw.field("trust").trust(trust, false)
		vw.field("subjectAlternativeNames").subjectAltNames(v.SubjectAlternativeNames, false)
	}
}

// certificate checks a certificate source; withACM says whether acm is one of
// the allowed members (listeners) or not (client certificates).
func (w walker) certificate(c *ListenerTLSCertificate, withACM bool) {
	members := []member{{"file", c.File != nil}, {"sds", c.SDS != nil}}
	if withACM {
		members = append([]member{{"acm", c.ACM != nil}}, members...)
	}
	w.exactlyOne(members...)
	if c.ACM != nil {
		w.field("acm").field("certificateArn").arn(c.ACM.CertificateARN)
	}
	if c.File != nil {
		fw := w.field("file")
		fw.field("certificateChain").length(c.File.CertificateChain, 1, 255)
		fw.field("privateKey").length(c.File.PrivateKey, 1, 255)
	}
	if c.SDS != nil {
		w.field("sds").field("secretName").nonEmpty(c.SDS.SecretName)
	}
}

// trust checks a required validation trust; withACM as for certificate.
func (w walker) trust(t *TLSValidationContextTrust, withACM bool) {
	if !w.required(t != nil) {
		return
	}
	members := []member{{"file", t.File != nil}, {"sds", t.SDS != nil}}
	if withACM {
		members = append([]member{{"acm", t.ACM != nil}}, members...)
	}
	w.exactlyOne(members...)
	if t.ACM != nil {
		aw := w.field("acm").field("certificateAuthorityArns")
		if aw.required(len(t.ACM.CertificateAuthorityARNs) > 0) && aw.count(len(t.ACM.CertificateAuthorityARNs), 1, 3) {
			for i, arn := range t.ACM.CertificateAuthorityARNs {
				aw.index(i).arn(arn)
			}
		}
	}
	if t.File != nil {
		w.field("file").field("certificateChain").length(t.File.CertificateChain, 1, 255)
	}
	if t.SDS != nil {
		w.field("sds").field("secretName").nonEmpty(t.SDS.SecretName)
	}
}

// arn checks that s is given and looks like an ARN.
func (w walker) arn(s string) {
	if w.nonEmpty(s) && !strings.HasPrefix(s, "arn:") {
		w.fail(`must be an ARN ("arn:...")`)
	}
}

// subjectAltNames checks an optional SAN list. A client policy that enforces
// TLS accepts no wildcard SANs (noWildcards).
func (w walker) subjectAltNames(s *SubjectAlternativeNames, noWildcards bool) {
	if s == nil {
		return
	}
	mw := w.field("match")
	if !mw.required(s.Match != nil) {
		return
	}
	ew := mw.field("exact")
	if !ew.required(len(s.Match.Exact) > 0) {
		return
	}
	for i, san := range s.Match.Exact {
		iw := ew.index(i)
		if iw.length(san, 1, 254) && noWildcards && strings.Contains(san, "*") {
			iw.fail("must not contain a wildcard when the client policy enforces TLS")
		}
	}
}

// clientPolicy checks an optional client policy of a node backend, node
// backendDefaults or gateway backendDefaults.
func (w walker) clientPolicy(p *ClientPolicy) {
	if p == nil || p.TLS == nil {
		return
	}
	t := p.TLS
	tw := w.field("tls")
	for i, port := range t.Ports {
		tw.field("ports").index(i).between(int64(port), 1, maxPort)
	}
	if t.Certificate != nil {
		tw.field("certificate").certificate(&ListenerTLSCertificate{File: t.Certificate.File, SDS: t.Certificate.SDS}, false)
	}
	vw := tw.field("validation")
	if !vw.required(t.Validation != nil) {
		return
	}
	vw.field("trust").trust(t.Validation.Trust, true)
	enforce := t.Enforce == nil || *t.Enforce
	vw.field("subjectAlternativeNames").subjectAltNames(t.Validation.SubjectAlternativeNames, enforce)
}

// serviceDiscovery checks a node's service discovery.
func (w walker) serviceDiscovery(sd *ServiceDiscovery) {
	w.exactlyOne(member{"dns", sd.DNS != nil}, member{"awsCloudMap", sd.AWSCloudMap != nil})
	if d := sd.DNS; d != nil {
		dw := w.field("dns")
		dw.field("hostname").length(d.Hostname, 1, 255)
		dw.field("responseType").enum(string(d.ResponseType), string(DNSLoadBalancer), string(DNSEndpoints))
		dw.field("ipPreference").enum(string(d.IPPreference), ipPreferences...)
	}
	if c := sd.AWSCloudMap; c != nil {
		cw := w.field("awsCloudMap")
		cw.field("namespaceName").length(c.NamespaceName, 1, 1024)
		cw.field("serviceName").length(c.ServiceName, 1, 1024)
		aw := cw.field("attributes")
		for i, a := range c.Attributes {
			iw := aw.index(i)
			if kw := iw.field("key"); kw.length(a.Key, 1, 255) && !cloudMapAttrKeyRE.MatchString(a.Key) {
				kw.fail("must match ^[a-zA-Z0-9!-~]+$")
			}
			iw.field("value").length(a.Value, 1, 1024)
		}
		cw.field("ipPreference").enum(string(c.IPPreference), ipPreferences...)
	}
}

// logging checks an optional access log configuration.
func (w walker) logging(l *Logging) {
	if l == nil || l.AccessLog == nil {
		return
	}
	fw := w.field("accessLog").field("file")
	if !fw.required(l.AccessLog.File != nil) {
		return
	}
	f := l.AccessLog.File
	fw.field("path").length(f.Path, 1, 255)
	if f.Format == nil {
		return
	}
	mw := fw.field("format")
	mw.exactlyOne(member{"text", f.Format.Text != nil}, member{"json", len(f.Format.JSON) > 0})
	mw.field("text").optLength(f.Format.Text, 1, 1000)
	jw := mw.field("json")
	for i, kv := range f.Format.JSON {
		jw.index(i).field("key").length(kv.Key, 1, 100)
		jw.index(i).field("value").length(kv.Value, 1, 100)
	}
}
