// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Envoy's defaults for what a Cluster leaves unset.
const (
	defaultConnectTimeout   = 5 * time.Second
	defaultIdleTimeout      = time.Hour // common_http_protocol_options.idle_timeout
	defaultDNSRefresh       = 5 * time.Second
	defaultCleanupInterval  = 5 * time.Second // ORIGINAL_DST host clean-up
	defaultPanicThreshold   = 50.0            // percent
	defaultOverprovisioning = 140             // percent, ClusterLoadAssignment.Policy
	defaultChoiceCount      = 2               // least request
	defaultMaxBreaker       = 1024            // circuit breakers without thresholds
	defaultMaxRetries       = 3

	defaultConsecutive5xx        = 5
	defaultConsecutiveGateway    = 5
	defaultODInterval            = 10 * time.Second
	defaultBaseEjection          = 30 * time.Second
	defaultMaxEjection           = 300 * time.Second
	defaultMaxEjectionPercent    = 10
	defaultEnforcing5xx          = 100
	defaultEnforcingGatewayError = 0

	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

type discovery int

const (
	discoveryStatic discovery = iota
	discoveryEDS
	discoveryStrictDNS
	discoveryLogicalDNS
	discoveryOriginalDst
)

func (d discovery) isDNS() bool { return d == discoveryStrictDNS || d == discoveryLogicalDNS }

type lbPolicy int

const (
	lbRoundRobin lbPolicy = iota
	lbLeastRequest
	lbRandom
	lbClusterProvided
)

// limits are the circuit-breaker thresholds of the default priority.
type limits struct {
	maxConnections, maxPending, maxRequests, maxRetries int64
}

// healthSpec is an active health check (Cluster.health_checks[0]).
type healthSpec struct {
	kind                  healthKind
	interval, timeout     time.Duration
	healthy, unhealthy    int
	path, host            string
	http2                 bool
	expected              []*typev3.Int64Range // nil: 200–399
	grpcService           string
	grpcAuthority         string
	altPort               uint32
	requestHeadersToAdd   [][2]string
	requestHeadersRemoved []string
}

type healthKind int

const (
	healthHTTP healthKind = iota
	healthGRPC
	healthTCP
)

// outlierSpec is the consecutive-errors part of outlier detection.
type outlierSpec struct {
	consecutive5xx, consecutiveGateway  int
	enforcing5xx, enforcingGateway      uint32
	interval, baseEjection, maxEjection time.Duration
	maxEjectionPercent                  uint32
	unejectOnHealthCheck                bool
}

// endpointSpec is one endpoint of a load assignment, or a name to resolve
// for the DNS types.
type endpointSpec struct {
	addr       netip.AddrPort // STATIC, EDS
	hostname   string         // STRICT_DNS, LOGICAL_DNS
	port       uint16
	weight     uint32
	hcPort     uint16
	edsHealthy bool
	tunnel     tunnelRef // the node proxy's tunnel listener (EDS metadata); none: dial addr
}

// spec is a compiled, validated Cluster.
type spec struct {
	name            string
	msg             *clusterv3.Cluster
	discovery       discovery
	lb              lbPolicy
	choiceCount     int
	panicThreshold  float64
	overprov        uint32
	connectTimeout  time.Duration
	mark            uint32 // SO_MARK of upstream sockets (Options.Mark)
	http2           bool
	idleTimeout     time.Duration
	limits          limits
	tls             *tlsSpec
	health          *healthSpec
	outlier         *outlierSpec
	endpoints       []endpointSpec
	dnsNetwork      string // "ip", "ip4", "ip6"
	dnsFamily       clusterv3.Cluster_DnsLookupFamily
	dnsRefresh      time.Duration
	cleanupInterval time.Duration
}

// poolKey identifies what a host's connection pool depends on: a host keeps
// its pool across updates while this stays the same.
func (s *spec) poolKey() string {
	h := sha256.New()
	fmt.Fprintf(h, "%v|%v|%v|%d|%d|", s.http2, s.connectTimeout, s.idleTimeout, s.limits.maxConnections, s.mark)
	if s.tls != nil {
		h.Write([]byte(s.tls.fingerprint))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// compile validates a Cluster and its load assignment (EDS only) and turns
// them into a spec. Unsupported settings are errors.
func compile(c *clusterv3.Cluster, cla *endpointv3.ClusterLoadAssignment) (*spec, error) {
	if c.GetName() == "" {
		return nil, errors.New("cluster without a name")
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	s := &spec{
		name:            c.GetName(),
		msg:             c,
		connectTimeout:  durationOr(c.GetConnectTimeout(), defaultConnectTimeout),
		idleTimeout:     defaultIdleTimeout,
		panicThreshold:  defaultPanicThreshold,
		overprov:        defaultOverprovisioning,
		choiceCount:     defaultChoiceCount,
		dnsRefresh:      durationOr(c.GetDnsRefreshRate(), defaultDNSRefresh), //nolint:staticcheck // what the translator and most control planes still set
		cleanupInterval: durationOr(c.GetCleanupInterval(), defaultCleanupInterval),
	}
	if s.connectTimeout <= 0 {
		s.connectTimeout = defaultConnectTimeout
	}

	switch t := c.GetClusterDiscoveryType().(type) {
	case *clusterv3.Cluster_Type:
		switch t.Type {
		case clusterv3.Cluster_STATIC:
			s.discovery = discoveryStatic
		case clusterv3.Cluster_EDS:
			s.discovery = discoveryEDS
		case clusterv3.Cluster_STRICT_DNS:
			s.discovery = discoveryStrictDNS
		case clusterv3.Cluster_LOGICAL_DNS:
			s.discovery = discoveryLogicalDNS
		case clusterv3.Cluster_ORIGINAL_DST:
			s.discovery = discoveryOriginalDst
		default:
			bad("discovery type %s not supported", t.Type)
		}
	case nil:
		s.discovery = discoveryStatic // the proto default
	default:
		bad("custom cluster_type not supported")
	}

	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		s.lb = lbRoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		s.lb = lbLeastRequest
		if n := c.GetLeastRequestLbConfig().GetChoiceCount(); n != nil {
			s.choiceCount = max(2, int(n.GetValue()))
		}
	case clusterv3.Cluster_RANDOM:
		s.lb = lbRandom
	case clusterv3.Cluster_CLUSTER_PROVIDED:
		s.lb = lbClusterProvided
	default:
		bad("lb_policy %s not supported", c.GetLbPolicy())
	}
	if (s.discovery == discoveryOriginalDst) != (s.lb == lbClusterProvided) {
		bad("ORIGINAL_DST needs lb_policy CLUSTER_PROVIDED and CLUSTER_PROVIDED needs ORIGINAL_DST")
	}
	if c.GetLoadBalancingPolicy() != nil {
		bad("load_balancing_policy not supported")
	}
	if od := c.GetOriginalDstLbConfig(); od != nil && (od.GetUseHttpHeader() || od.GetHttpHeaderName() != "" || od.GetUpstreamPortOverride() != nil || od.GetMetadataKey() != nil) {
		bad("original_dst_lb_config not supported")
	}
	if cl := c.GetCommonLbConfig(); cl != nil {
		if p := cl.GetHealthyPanicThreshold(); p != nil {
			s.panicThreshold = p.GetValue()
		}
		if cl.GetZoneAwareLbConfig() != nil || cl.GetLocalityWeightedLbConfig() != nil || cl.GetConsistentHashingLbConfig() != nil {
			bad("common_lb_config: only healthy_panic_threshold is supported")
		}
	}
	if c.GetUpstreamBindConfig() != nil {
		bad("upstream_bind_config not supported")
	}
	if c.GetLrsServer() != nil {
		bad("lrs_server not supported")
	}

	// Protocol.
	if c.GetHttp2ProtocolOptions() != nil { //nolint:staticcheck // the deprecated field still selects HTTP/2
		s.http2 = true
	}
	if c.GetProtocolSelection() == clusterv3.Cluster_USE_DOWNSTREAM_PROTOCOL { //nolint:staticcheck // rejecting a deprecated field
		bad("protocol_selection USE_DOWNSTREAM_PROTOCOL not supported")
	}
	for k, a := range c.GetTypedExtensionProtocolOptions() {
		if k != httpProtocolOptionsKey {
			bad("typed_extension_protocol_options %q not supported", k)
			continue
		}
		var o upstreamhttpv3.HttpProtocolOptions
		if err := a.UnmarshalTo(&o); err != nil {
			bad("typed_extension_protocol_options %q: %w", k, err)
			continue
		}
		switch p := o.GetUpstreamProtocolOptions().(type) {
		case *upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_:
			switch p.ExplicitHttpConfig.GetProtocolConfig().(type) {
			case *upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions:
				s.http2 = true
			case *upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions:
				s.http2 = false
			default:
				bad("explicit_http_config: only http_protocol_options and http2_protocol_options are supported")
			}
		case nil:
		default:
			bad("upstream protocol options: only explicit_http_config is supported")
		}
		if d := o.GetCommonHttpProtocolOptions().GetIdleTimeout(); d != nil {
			s.idleTimeout = d.AsDuration() // 0 disables, as in Envoy
		}
	}

	s.limits = compileLimits(c.GetCircuitBreakers(), bad)

	if ts := c.GetTransportSocket(); ts != nil {
		t, err := compileTLS(ts, s.http2)
		if err != nil {
			bad("%w", err)
		}
		s.tls = t
	}
	if len(c.GetTransportSocketMatches()) > 0 {
		bad("transport_socket_matches not supported")
	}

	switch n := len(c.GetHealthChecks()); {
	case n > 1:
		bad("%d health checks: at most one is supported", n)
	case n == 1:
		h, err := compileHealth(c.GetHealthChecks()[0])
		if err != nil {
			bad("health_checks[0]: %w", err)
		}
		s.health = h
	}
	if od := c.GetOutlierDetection(); od != nil {
		o, err := compileOutlier(od)
		if err != nil {
			bad("outlier_detection: %w", err)
		}
		s.outlier = o
	}

	// Endpoints.
	switch s.discovery {
	case discoveryStatic:
		s.endpoints = compileEndpoints(c.GetLoadAssignment(), false, bad)
		s.setPolicy(c.GetLoadAssignment())
	case discoveryEDS:
		if cla != nil {
			s.endpoints = compileEndpoints(cla, false, bad)
			s.setPolicy(cla)
		}
	case discoveryStrictDNS, discoveryLogicalDNS:
		s.endpoints = compileEndpoints(c.GetLoadAssignment(), true, bad)
		s.setPolicy(c.GetLoadAssignment())
		if s.discovery == discoveryLogicalDNS && len(s.endpoints) != 1 {
			bad("LOGICAL_DNS needs exactly one endpoint, not %d", len(s.endpoints))
		}
		s.dnsFamily = c.GetDnsLookupFamily()
		s.dnsNetwork = "ip"
		switch s.dnsFamily {
		case clusterv3.Cluster_V4_ONLY:
			s.dnsNetwork = "ip4"
		case clusterv3.Cluster_V6_ONLY:
			s.dnsNetwork = "ip6"
		}
		if s.dnsRefresh <= 0 {
			s.dnsRefresh = defaultDNSRefresh
		}
	case discoveryOriginalDst:
		if len(c.GetLoadAssignment().GetEndpoints()) > 0 {
			bad("ORIGINAL_DST takes no endpoints")
		}
		if s.cleanupInterval <= 0 {
			s.cleanupInterval = defaultCleanupInterval
		}
	}

	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", s.name, err)
	}
	return s, nil
}

func (s *spec) setPolicy(cla *endpointv3.ClusterLoadAssignment) {
	if f := cla.GetPolicy().GetOverprovisioningFactor(); f != nil && f.GetValue() > 0 {
		s.overprov = f.GetValue()
	}
}

// compileLimits reads thresholds of the DEFAULT priority; Envoy's defaults
// fill what is unset (1024 connections, pending and requests, 3 retries).
func compileLimits(cb *clusterv3.CircuitBreakers, bad func(string, ...any)) limits {
	l := limits{defaultMaxBreaker, defaultMaxBreaker, defaultMaxBreaker, defaultMaxRetries}
	for _, t := range cb.GetThresholds() {
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue
		}
		set := func(dst *int64, v *wrapperspb.UInt32Value) {
			if v != nil {
				*dst = int64(v.GetValue())
			}
		}
		set(&l.maxConnections, t.GetMaxConnections())
		set(&l.maxPending, t.GetMaxPendingRequests())
		set(&l.maxRequests, t.GetMaxRequests())
		set(&l.maxRetries, t.GetMaxRetries())
		if t.GetRetryBudget() != nil {
			bad("circuit_breakers retry_budget not supported")
		}
		break
	}
	return l
}

func compileEndpoints(cla *endpointv3.ClusterLoadAssignment, dns bool, bad func(string, ...any)) []endpointSpec {
	var out []endpointSpec
	for _, loc := range cla.GetEndpoints() {
		if loc.GetPriority() != 0 {
			bad("endpoint priority %d not supported", loc.GetPriority())
			continue
		}
		for _, lbe := range loc.GetLbEndpoints() {
			ep := lbe.GetEndpoint()
			if ep == nil {
				bad("named endpoints not supported")
				continue
			}
			sa := ep.GetAddress().GetSocketAddress()
			if sa == nil || sa.GetProtocol() != corev3.SocketAddress_TCP || sa.GetNamedPort() != "" {
				bad("endpoint %v: only TCP socket addresses with port_value are supported", ep.GetAddress())
				continue
			}
			if sa.GetPortValue() == 0 || sa.GetPortValue() > 65535 {
				bad("endpoint %s: port %d out of range", sa.GetAddress(), sa.GetPortValue())
				continue
			}
			e := endpointSpec{port: uint16(sa.GetPortValue()), weight: 1, edsHealthy: true, tunnel: endpointTunnel(lbe, bad)}
			if w := lbe.GetLoadBalancingWeight(); w != nil && w.GetValue() > 0 {
				e.weight = w.GetValue()
			}
			switch lbe.GetHealthStatus() {
			case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT:
				e.edsHealthy = false
			}
			if p := ep.GetHealthCheckConfig().GetPortValue(); p != 0 {
				if p > 65535 {
					bad("endpoint %s: health check port %d out of range", sa.GetAddress(), p)
					continue
				}
				e.hcPort = uint16(p)
			}
			if ep.GetHealthCheckConfig().GetAddress() != nil {
				bad("endpoint %s: health_check_config.address not supported", sa.GetAddress())
			}
			ip, err := netip.ParseAddr(sa.GetAddress())
			switch {
			case dns && err != nil:
				e.hostname = sa.GetAddress()
			case dns:
				e.hostname = ip.String() // an address resolves to itself
			case err != nil:
				bad("endpoint %q: not an IP address", sa.GetAddress())
				continue
			default:
				e.addr = netip.AddrPortFrom(ip.Unmap(), e.port)
			}
			out = append(out, e)
		}
	}
	return out
}

func compileHealth(hc *corev3.HealthCheck) (*healthSpec, error) {
	var errs []error
	h := &healthSpec{
		interval:  hc.GetInterval().AsDuration(),
		timeout:   hc.GetTimeout().AsDuration(),
		healthy:   int(hc.GetHealthyThreshold().GetValue()),
		unhealthy: int(hc.GetUnhealthyThreshold().GetValue()),
		altPort:   hc.GetAltPort().GetValue(),
	}
	if h.interval <= 0 || h.timeout <= 0 {
		errs = append(errs, errors.New("interval and timeout must be positive"))
	}
	h.healthy, h.unhealthy = max(h.healthy, 1), max(h.unhealthy, 1)
	if h.altPort > 65535 {
		errs = append(errs, fmt.Errorf("alt_port %d out of range", h.altPort))
	}
	if hc.GetTlsOptions() != nil || hc.GetTransportSocketMatchCriteria() != nil {
		errs = append(errs, errors.New("tls_options and transport_socket_match_criteria not supported"))
	}
	switch c := hc.GetHealthChecker().(type) {
	case *corev3.HealthCheck_HttpHealthCheck_:
		hh := c.HttpHealthCheck
		h.kind, h.path, h.host = healthHTTP, hh.GetPath(), hh.GetHost()
		if h.path == "" {
			errs = append(errs, errors.New("http_health_check needs a path"))
		}
		switch hh.GetCodecClientType() {
		case typev3.CodecClientType_HTTP1:
		case typev3.CodecClientType_HTTP2:
			h.http2 = true
		default:
			errs = append(errs, fmt.Errorf("codec_client_type %s not supported", hh.GetCodecClientType()))
		}
		h.expected = hh.GetExpectedStatuses()
		for _, hv := range hh.GetRequestHeadersToAdd() {
			h.requestHeadersToAdd = append(h.requestHeadersToAdd, [2]string{hv.GetHeader().GetKey(), hv.GetHeader().GetValue()})
		}
		h.requestHeadersRemoved = hh.GetRequestHeadersToRemove()
		if hh.GetSend() != nil || len(hh.GetReceive()) > 0 || hh.GetServiceNameMatcher() != nil ||
			hh.GetMethod() != corev3.RequestMethod_METHOD_UNSPECIFIED && hh.GetMethod() != corev3.RequestMethod_GET {
			errs = append(errs, errors.New("http_health_check: send, receive, service_name_matcher and methods other than GET not supported"))
		}
	case *corev3.HealthCheck_GrpcHealthCheck_:
		h.kind, h.http2 = healthGRPC, true
		h.grpcService, h.grpcAuthority = c.GrpcHealthCheck.GetServiceName(), c.GrpcHealthCheck.GetAuthority()
	case *corev3.HealthCheck_TcpHealthCheck_:
		h.kind = healthTCP
		if c.TcpHealthCheck.GetSend() != nil || len(c.TcpHealthCheck.GetReceive()) > 0 {
			errs = append(errs, errors.New("tcp_health_check send/receive payloads not supported"))
		}
	default:
		errs = append(errs, fmt.Errorf("health checker %T not supported", c))
	}
	return h, errors.Join(errs...)
}

func compileOutlier(od *clusterv3.OutlierDetection) (*outlierSpec, error) {
	u32 := func(v *wrapperspb.UInt32Value, def uint32) uint32 {
		if v == nil {
			return def
		}
		return v.GetValue()
	}
	o := &outlierSpec{
		consecutive5xx:       int(u32(od.GetConsecutive_5Xx(), defaultConsecutive5xx)),
		consecutiveGateway:   int(u32(od.GetConsecutiveGatewayFailure(), defaultConsecutiveGateway)),
		enforcing5xx:         min(100, u32(od.GetEnforcingConsecutive_5Xx(), defaultEnforcing5xx)),
		enforcingGateway:     min(100, u32(od.GetEnforcingConsecutiveGatewayFailure(), defaultEnforcingGatewayError)),
		interval:             durationOr(od.GetInterval(), defaultODInterval),
		baseEjection:         durationOr(od.GetBaseEjectionTime(), defaultBaseEjection),
		maxEjection:          durationOr(od.GetMaxEjectionTime(), defaultMaxEjection),
		maxEjectionPercent:   min(100, u32(od.GetMaxEjectionPercent(), defaultMaxEjectionPercent)),
		unejectOnHealthCheck: od.GetSuccessfulActiveHealthCheckUnejectHost().GetValue(),
	}
	var errs []error
	if o.interval <= 0 {
		errs = append(errs, errors.New("interval must be positive"))
	}
	o.maxEjection = max(o.maxEjection, o.baseEjection)
	if od.GetSplitExternalLocalOriginErrors() {
		errs = append(errs, errors.New("split_external_local_origin_errors not supported"))
	}
	if u32(od.GetEnforcingFailurePercentage(), 0) > 0 || u32(od.GetEnforcingFailurePercentageLocalOrigin(), 0) > 0 {
		errs = append(errs, errors.New("failure percentage ejection not supported"))
	}
	if od.GetSuccessRateMinimumHosts() != nil || od.GetSuccessRateRequestVolume() != nil || od.GetSuccessRateStdevFactor() != nil ||
		u32(od.GetEnforcingSuccessRate(), 0) > 0 {
		errs = append(errs, errors.New("success rate ejection not supported"))
	}
	if len(od.GetMonitors()) > 0 || od.GetDetectDegradedHosts().GetValue() {
		errs = append(errs, errors.New("monitors and detect_degraded_hosts not supported"))
	}
	return o, errors.Join(errs...)
}

func durationOr(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.AsDuration()
}

// unlimited reports whether a limit is App Mesh's "off" value or more.
func unlimited(v int64) bool { return v >= math.MaxInt32 }

// sameWorkers reports whether two specs need the same background workers
// (health checks, outlier timer, DNS, clean-up), so that an update can keep
// them running.
func sameWorkers(a, b *spec) bool {
	if a == nil || b == nil {
		return false
	}
	return proto.Equal(a.msg, b.msg) && tlsEqual(a.tls, b.tls)
}

func tlsEqual(a, b *tlsSpec) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.fingerprint == b.fingerprint
}
