// SPDX-License-Identifier: Apache-2.0

package translate

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// Envoy-side constants of §15.
const (
	egressPort  = 15001
	ingressPort = 15000
	// unlimited is App Mesh's circuit-breaker default on every cluster (§13).
	unlimited = 2147483647
	// sdsCluster is the bootstrap cluster of the SDS unix socket (§15.1).
	sdsCluster           = "static_cluster_sds_unix_socket"
	httpProtocolOptions  = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	localConnectTimeout  = 250 * time.Millisecond
	remoteConnectTimeout = time.Second
)

// builder accumulates the first marshalling error, so that the many small
// constructors stay expressions.
type builder struct {
	err error
}

// any wraps m in an Any, marshalled deterministically so that content
// hashes are stable.
func (b *builder) any(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil && b.err == nil {
		b.err = fmt.Errorf("marshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return a
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func sdsSocketSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
			ApiType:             corev3.ApiConfigSource_GRPC,
			TransportApiVersion: corev3.ApiVersion_V3,
			GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: sdsCluster},
			}}},
		}},
	}
}

func socketAddress(ip string, port uint32, ipv4Compat bool) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}, Ipv4Compat: ipv4Compat,
	}}}
}

// bindAddress is where a listener binds for an IP preference (§4.7).
func bindAddress(pref appmesh.IPPreference, port uint32) *corev3.Address {
	if pref == "" {
		return socketAddress("0.0.0.0", port, false)
	}
	return socketAddress("::", port, true)
}

// bindName is the address part of a listener name.
func bindName(pref appmesh.IPPreference) string {
	if pref == "" {
		return "0.0.0.0"
	}
	return "::"
}

func (b *builder) listenerFilters(names ...string) []*listenerv3.ListenerFilter {
	var out []*listenerv3.ListenerFilter
	for _, n := range names {
		var cfg proto.Message
		switch n {
		case wellknown.OriginalDestination:
			cfg = &originaldstv3.OriginalDst{}
		case wellknown.TlsInspector:
			cfg = &tlsinspectorv3.TlsInspector{}
		}
		out = append(out, &listenerv3.ListenerFilter{Name: n, ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: b.any(cfg)}})
	}
	return out
}

// accessLogs translates a node's or gateway's logging (§4.6).
func (b *builder) accessLogs(l *appmesh.Logging) []*accesslogv3.AccessLog {
	if l == nil || l.AccessLog == nil || l.AccessLog.File == nil {
		return nil
	}
	f := l.AccessLog.File
	fal := &filev3.FileAccessLog{Path: f.Path}
	if f.Format != nil {
		switch {
		case f.Format.Text != nil:
			fal.AccessLogFormat = &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
				Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
					Specifier: &corev3.DataSource_InlineString{InlineString: *f.Format.Text},
				}},
			}}
		case len(f.Format.JSON) > 0:
			fields := map[string]*structpb.Value{}
			for _, kv := range f.Format.JSON {
				fields[kv.Key] = structpb.NewStringValue(kv.Value)
			}
			fal.AccessLogFormat = &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
				Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: &structpb.Struct{Fields: fields}},
			}}
		}
	}
	return []*accesslogv3.AccessLog{{Name: wellknown.FileAccessLog, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: b.any(fal)}}}
}

// hcmFilter is an HTTP connection manager reading its routes over ADS.
func (b *builder) hcmFilter(statPrefix, routeConfig string, logs []*accesslogv3.AccessLog) *listenerv3.Filter {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: adsSource(), RouteConfigName: routeConfig,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: b.any(&routerv3.Router{})},
		}},
		NormalizePath:  wrapperspb.Bool(true),
		MergeSlashes:   true,
		UpgradeConfigs: []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}},
		AccessLog:      logs,
	}
	return &listenerv3.Filter{Name: wellknown.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: b.any(hcm)}}
}

// tcpProxyFilter proxies to one cluster or to weighted clusters.
func (b *builder) tcpProxyFilter(statPrefix string, clusters []weightedName, idle *durationpb.Duration, logs []*accesslogv3.AccessLog) *listenerv3.Filter {
	tp := &tcpproxyv3.TcpProxy{StatPrefix: statPrefix, IdleTimeout: idle, AccessLog: logs}
	if len(clusters) == 1 {
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: clusters[0].name}
	} else {
		wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
		for _, c := range clusters {
			wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: c.name, Weight: c.weight})
		}
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	return &listenerv3.Filter{Name: wellknown.TCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: b.any(tp)}}
}

type weightedName struct {
	name   string
	weight uint32
}

func (b *builder) transportSocket(m proto.Message) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: wellknown.TransportSocketTLS, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: b.any(m)}}
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

// sanMatchers matches SANs exactly: URI SANs (with a scheme, like SPIFFE
// ids) as URI, the others as DNS names.
func sanMatchers(sans []string) []*tlsv3.SubjectAltNameMatcher {
	var out []*tlsv3.SubjectAltNameMatcher
	for _, s := range sans {
		typ := tlsv3.SubjectAltNameMatcher_DNS
		if strings.Contains(s, "://") {
			typ = tlsv3.SubjectAltNameMatcher_URI
		}
		out = append(out, &tlsv3.SubjectAltNameMatcher{SanType: typ, Matcher: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s},
		}})
	}
	return out
}

// trust describes a validation context: a CA file, or an SDS secret (from
// the SDS socket, or over ADS for ACM-style trust), plus SANs.
type trust struct {
	caFile    string
	sdsSecret string
	overADS   bool
	sans      []string
}

// setValidation puts the trust in a common TLS context.
func setValidation(c *tlsv3.CommonTlsContext, t trust) {
	vc := &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatchers(t.sans)}
	if t.sdsSecret == "" {
		vc.TrustedCa = fileSource(t.caFile)
		c.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
		return
	}
	src := sdsSocketSource()
	if t.overADS {
		src = adsSource()
	}
	c.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
		CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         vc,
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: t.sdsSecret, SdsConfig: src},
		},
	}
}

// setCertificate puts a certificate (file, SDS, or ACM served over ADS) in a
// common TLS context.
func setCertificate(c *tlsv3.CommonTlsContext, file *appmesh.TLSFileCertificate, sds *appmesh.TLSSDSCertificate, acm *appmesh.TLSACMCertificate) {
	switch {
	case file != nil:
		c.TlsCertificates = []*tlsv3.TlsCertificate{{
			CertificateChain: fileSource(file.CertificateChain), PrivateKey: fileSource(file.PrivateKey),
		}}
	case sds != nil:
		c.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: sds.SecretName, SdsConfig: sdsSocketSource()}}
	case acm != nil:
		c.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: acm.CertificateARN, SdsConfig: adsSource()}}
	}
}

// downstreamTLS is the server side of a listener's TLS (§15.4 listener.tls).
func (b *builder) downstreamTLS(cert *appmesh.ListenerTLSCertificate, v *appmesh.ListenerTLSValidationContext) *corev3.TransportSocket {
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{}}
	if cert != nil {
		setCertificate(ctx.CommonTlsContext, cert.File, cert.SDS, cert.ACM)
	}
	if v != nil && v.Trust != nil {
		t := trust{}
		if v.Trust.File != nil {
			t.caFile = v.Trust.File.CertificateChain
		}
		if v.Trust.SDS != nil {
			t.sdsSecret = v.Trust.SDS.SecretName
		}
		if v.SubjectAlternativeNames != nil && v.SubjectAlternativeNames.Match != nil {
			t.sans = v.SubjectAlternativeNames.Match.Exact
		}
		setValidation(ctx.CommonTlsContext, t)
		ctx.RequireClientCertificate = wrapperspb.Bool(true)
	}
	return b.transportSocket(ctx)
}

// tlsChains returns the filter chains of a listener port for its TLS mode:
// STRICT only a TLS chain, PERMISSIVE a TLS and a plaintext chain, else a
// plaintext chain. filters makes the chain's filters.
func (b *builder) tlsChains(port uint32, mode appmesh.TLSMode, ts func() *corev3.TransportSocket, filters func() []*listenerv3.Filter) []*listenerv3.FilterChain {
	plain := &listenerv3.FilterChain{
		FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port)},
		Filters:          filters(),
	}
	tls := func() *listenerv3.FilterChain {
		return &listenerv3.FilterChain{
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port), TransportProtocol: "tls"},
			Filters:          filters(),
			TransportSocket:  ts(),
		}
	}
	switch mode {
	case appmesh.TLSStrict:
		return []*listenerv3.FilterChain{tls()}
	case appmesh.TLSPermissive:
		plain.FilterChainMatch.TransportProtocol = "raw_buffer"
		return []*listenerv3.FilterChain{tls(), plain}
	}
	return []*listenerv3.FilterChain{plain}
}

// thresholds are circuit-breaker limits; zero fields mean unlimited.
type thresholds struct {
	maxConnections, maxPending, maxRequests uint32
}

func circuitBreakers(t thresholds) *clusterv3.CircuitBreakers {
	or := func(v uint32) *wrapperspb.UInt32Value {
		if v == 0 {
			v = unlimited
		}
		return wrapperspb.UInt32(v)
	}
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxConnections: or(t.maxConnections), MaxPendingRequests: or(t.maxPending),
		MaxRequests: or(t.maxRequests), MaxRetries: wrapperspb.UInt32(unlimited),
	}}}
}

// nodePoolThresholds maps a node listener's connectionPool (§15.4).
func nodePoolThresholds(p *appmesh.VirtualNodeConnectionPool) thresholds {
	var t thresholds
	if p == nil {
		return t
	}
	switch {
	case p.TCP != nil:
		t.maxConnections = u32(p.TCP.MaxConnections)
	case p.HTTP != nil:
		t.maxConnections, t.maxPending = u32(p.HTTP.MaxConnections), u32(p.HTTP.MaxPendingRequests)
	case p.HTTP2 != nil:
		t.maxRequests = u32(p.HTTP2.MaxRequests)
	case p.GRPC != nil:
		t.maxRequests = u32(p.GRPC.MaxRequests)
	}
	return t
}

// gatewayPoolThresholds maps a gateway listener's connectionPool.
func gatewayPoolThresholds(p *appmesh.VirtualGatewayConnectionPool) thresholds {
	if p == nil {
		return thresholds{}
	}
	return nodePoolThresholds(&appmesh.VirtualNodeConnectionPool{HTTP: p.HTTP, HTTP2: p.HTTP2, GRPC: p.GRPC})
}

func u32(p *int32) uint32 {
	if p == nil || *p < 0 {
		return 0
	}
	return uint32(*p)
}

// setUpstreamProtocol makes a cluster speak HTTP/2 to an http2 or grpc port.
func (b *builder) setUpstreamProtocol(c *clusterv3.Cluster, proto appmesh.PortProtocol) {
	if proto != appmesh.ProtocolHTTP2 && proto != appmesh.ProtocolGRPC {
		return
	}
	opts := &upstreamhttpv3.HttpProtocolOptions{UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		},
	}}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptions: b.any(opts)}
}

// healthCheck maps a listener's healthCheck (§15.4).
func healthCheck(hc *appmesh.HealthCheckPolicy) *corev3.HealthCheck {
	if hc == nil {
		return nil
	}
	ms := func(p *int64) *durationpb.Duration {
		if p == nil {
			return nil
		}
		return durationpb.New(time.Duration(*p) * time.Millisecond)
	}
	h := &corev3.HealthCheck{
		Timeout: ms(hc.TimeoutMillis), Interval: ms(hc.IntervalMillis),
		HealthyThreshold: wrapperspb.UInt32(u32(hc.HealthyThreshold)), UnhealthyThreshold: wrapperspb.UInt32(u32(hc.UnhealthyThreshold)),
	}
	switch hc.Protocol {
	case appmesh.ProtocolHTTP, appmesh.ProtocolHTTP2:
		path := "/"
		if hc.Path != nil && *hc.Path != "" {
			path = *hc.Path
		}
		hh := &corev3.HealthCheck_HttpHealthCheck{Path: path}
		if hc.Protocol == appmesh.ProtocolHTTP2 {
			hh.CodecClientType = typev3.CodecClientType_HTTP2
		}
		h.HealthChecker = &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: hh}
	case appmesh.ProtocolGRPC:
		h.HealthChecker = &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: &corev3.HealthCheck_GrpcHealthCheck{}}
	default:
		h.HealthChecker = &corev3.HealthCheck_TcpHealthCheck_{TcpHealthCheck: &corev3.HealthCheck_TcpHealthCheck{}}
	}
	return h
}

// outlierDetection maps a listener's outlierDetection (§15.4).
func outlierDetection(od *appmesh.OutlierDetection) *clusterv3.OutlierDetection {
	if od == nil {
		return nil
	}
	o := &clusterv3.OutlierDetection{MaxEjectionPercent: wrapperspb.UInt32(u32(od.MaxEjectionPercent))}
	if od.MaxServerErrors != nil {
		o.Consecutive_5Xx = wrapperspb.UInt32(uint32(min(max(*od.MaxServerErrors, 0), 1<<31)))
	}
	if d, ok := duration(od.Interval); ok {
		o.Interval = durationpb.New(d)
	}
	if d, ok := duration(od.BaseEjectionDuration); ok {
		o.BaseEjectionTime = durationpb.New(d)
	}
	return o
}

// dnsLookupFamily maps an IP preference (§4.7).
func dnsLookupFamily(p appmesh.IPPreference) clusterv3.Cluster_DnsLookupFamily {
	switch p {
	case appmesh.IPv4Preferred:
		return clusterv3.Cluster_V4_PREFERRED
	case appmesh.IPv4Only:
		return clusterv3.Cluster_V4_ONLY
	case appmesh.IPv6Only:
		return clusterv3.Cluster_V6_ONLY
	}
	return clusterv3.Cluster_AUTO
}

// keepFamily reports whether an endpoint address suits an IP preference.
func keepFamily(p appmesh.IPPreference, ip netip.Addr) bool {
	switch p {
	case appmesh.IPv4Only:
		return ip.Is4() || ip.Is4In6()
	case appmesh.IPv6Only:
		return ip.Is6() && !ip.Is4In6()
	}
	return true
}

func lbEndpoint(host string, port uint32, hcPort uint32, health corev3.HealthStatus) *endpointv3.LbEndpoint {
	ep := &endpointv3.Endpoint{Address: socketAddress(host, port, false)}
	if hcPort != 0 && hcPort != port {
		ep.HealthCheckConfig = &endpointv3.Endpoint_HealthCheckConfig{PortValue: hcPort}
	}
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: ep}, HealthStatus: health}
}

func loadAssignment(name string, eps ...*endpointv3.LbEndpoint) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	if len(eps) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}
	}
	return cla
}

// passthroughCluster forwards to the original destination (amazonaws and
// mesh-allow-all).
func passthroughCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(remoteConnectTimeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		CircuitBreakers:      circuitBreakers(thresholds{}),
	}
}
