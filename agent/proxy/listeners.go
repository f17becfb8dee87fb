// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
)

// listener is a compiled Listener.
type listener struct {
	name    string
	address string // host:port
	port    uint16 // the configured port, what filter chains of a directly bound listener match
	chains  []*filterChain
}

// filterChain is a compiled FilterChain.
type filterChain struct {
	name        string
	port        uint32 // 0: any
	prefixes    []netip.Prefix
	serverNames []string  // exact or "*.suffix"
	transport   string    // "", "tls" or "raw_buffer"
	tls         *chainTLS // nil: plaintext
	hcm         *hcm
	tcp         *tcpProxy
}

// hcm is a compiled HttpConnectionManager.
type hcm struct {
	statPrefix string
	rds        string
	inline     *routeTable
	logs       []*accessLogger
	websocket  bool
	normalize  bool
	merge      bool
	streamIdle time.Duration
	alpn       []string // the ALPN protocols offered over TLS without alpn_protocols
}

// tcpProxy is a compiled TcpProxy.
type tcpProxy struct {
	statPrefix  string
	clusters    []tcpCluster
	totalWeight uint32
	idle        time.Duration // 0: none
	logs        []*accessLogger
	attempts    int
}

type tcpCluster struct {
	name  string
	cum   uint32
	stats *tcpStats
}

// compiler holds what compiling one node id's resources needs.
type compiler struct {
	nodeID   string
	hostname string
	m        *metrics
	sink     func(path string) (*logSink, error)
}

func (c *compiler) listener(l *listenerv3.Listener) (*listener, error) {
	out := &listener{name: l.GetName()}
	if sa := l.GetAddress().GetSocketAddress(); sa != nil {
		out.address = net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
		out.port = uint16(sa.GetPortValue())
	}
	for _, lf := range l.GetListenerFilters() {
		switch lf.GetName() {
		case wellknown.OriginalDestination, wellknown.TlsInspector:
		default:
			return nil, fmt.Errorf("listener filter %q is not supported", lf.GetName())
		}
	}
	if l.GetDefaultFilterChain() != nil {
		return nil, errors.New("default_filter_chain is not supported")
	}
	for i, fc := range l.GetFilterChains() {
		name := fc.GetName()
		if name == "" {
			name = "#" + strconv.Itoa(i)
		}
		ch, err := c.filterChain(fc)
		if err != nil {
			return nil, fmt.Errorf("filter chain %s: %w", name, err)
		}
		ch.name = name
		out.chains = append(out.chains, ch)
	}
	return out, nil
}

func (c *compiler) filterChain(fc *listenerv3.FilterChain) (*filterChain, error) {
	ch := &filterChain{}
	m := fc.GetFilterChainMatch()
	switch {
	case len(m.GetSourcePrefixRanges())+len(m.GetDirectSourcePrefixRanges())+len(m.GetSourcePorts())+len(m.GetApplicationProtocols()) > 0,
		m.GetSourceType() != listenerv3.FilterChainMatch_ANY, m.GetAddressSuffix() != "", m.GetSuffixLen() != nil:
		return nil, errors.New("only destination_port, prefix_ranges, server_names and transport_protocol matches are supported")
	}
	ch.port = m.GetDestinationPort().GetValue()
	for _, r := range m.GetPrefixRanges() {
		a, err := netip.ParseAddr(r.GetAddressPrefix())
		if err != nil {
			return nil, fmt.Errorf("prefix range: %w", err)
		}
		bits := a.BitLen()
		if r.GetPrefixLen() != nil {
			bits = int(r.GetPrefixLen().GetValue())
		}
		p, err := a.Prefix(bits)
		if err != nil {
			return nil, fmt.Errorf("prefix range: %w", err)
		}
		ch.prefixes = append(ch.prefixes, p)
	}
	for _, sn := range m.GetServerNames() {
		ch.serverNames = append(ch.serverNames, strings.ToLower(sn))
	}
	ch.transport = m.GetTransportProtocol()
	if ch.transport != "" && ch.transport != "tls" && ch.transport != "raw_buffer" {
		return nil, fmt.Errorf("transport protocol %q is not supported", ch.transport)
	}
	if len(fc.GetFilters()) != 1 {
		return nil, fmt.Errorf("want exactly one network filter, have %d", len(fc.GetFilters()))
	}
	f := fc.GetFilters()[0]
	tc := f.GetTypedConfig()
	if tc == nil {
		return nil, fmt.Errorf("filter %q has no typed config", f.GetName())
	}
	switch {
	case tc.MessageIs(&hcmv3.HttpConnectionManager{}):
		var h hcmv3.HttpConnectionManager
		if err := tc.UnmarshalTo(&h); err != nil {
			return nil, fmt.Errorf("http connection manager: %w", err)
		}
		compiled, err := c.hcm(&h)
		if err != nil {
			return nil, fmt.Errorf("http connection manager: %w", err)
		}
		ch.hcm = compiled
	case tc.MessageIs(&tcpproxyv3.TcpProxy{}):
		var t tcpproxyv3.TcpProxy
		if err := tc.UnmarshalTo(&t); err != nil {
			return nil, fmt.Errorf("tcp proxy: %w", err)
		}
		compiled, err := c.tcpProxy(&t)
		if err != nil {
			return nil, fmt.Errorf("tcp proxy: %w", err)
		}
		ch.tcp = compiled
	default:
		return nil, fmt.Errorf("network filter %q is not supported", f.GetName())
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		var alpn []string
		if ch.hcm != nil {
			alpn = ch.hcm.alpn
		}
		t, err := compileDownstreamTLS(ts, alpn, ch.hcm != nil)
		if err != nil {
			return nil, err
		}
		if t != nil {
			t.timeout = fc.GetTransportSocketConnectTimeout().AsDuration()
		}
		ch.tls = t
	}
	return ch, nil
}

func (c *compiler) hcm(h *hcmv3.HttpConnectionManager) (*hcm, error) {
	out := &hcm{
		statPrefix: h.GetStatPrefix(),
		normalize:  h.GetNormalizePath().GetValue(),
		merge:      h.GetMergeSlashes(),
		streamIdle: durationOr(h.GetStreamIdleTimeout(), 5*time.Minute),
	}
	switch h.GetCodecType() {
	case hcmv3.HttpConnectionManager_HTTP1:
		out.alpn = []string{alpnHTTP11}
	case hcmv3.HttpConnectionManager_HTTP2:
		out.alpn = []string{alpnH2}
	default:
		out.alpn = []string{alpnH2, alpnHTTP11}
	}
	switch rs := h.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		out.rds = rs.Rds.GetRouteConfigName()
	case *hcmv3.HttpConnectionManager_RouteConfig:
		rt, err := compileRouteTable(rs.RouteConfig, c.statsFor(rs.RouteConfig.GetName()), c.durationFor(rs.RouteConfig.GetName()))
		if err != nil {
			return nil, fmt.Errorf("inline route configuration %q: %w", rs.RouteConfig.GetName(), err)
		}
		out.inline = rt
	default:
		return nil, fmt.Errorf("route specifier %T is not supported", rs)
	}
	if h.GetScopedRoutes() != nil {
		return nil, errors.New("scoped routes are not supported")
	}
	for _, f := range h.GetHttpFilters() {
		if tc := f.GetTypedConfig(); f.GetName() != wellknown.Router && (tc == nil || !tc.MessageIs(&routerv3.Router{})) {
			return nil, fmt.Errorf("http filter %q is not supported (only the router is)", f.GetName())
		}
	}
	for _, u := range h.GetUpgradeConfigs() {
		if !strings.EqualFold(u.GetUpgradeType(), "websocket") {
			return nil, fmt.Errorf("upgrade type %q is not supported", u.GetUpgradeType())
		}
		out.websocket = u.GetEnabled() == nil || u.GetEnabled().GetValue()
	}
	logs, err := compileAccessLogs(h.GetAccessLog(), c.hostname, c.sink)
	if err != nil {
		return nil, err
	}
	out.logs = logs
	return out, nil
}

func (c *compiler) tcpProxy(t *tcpproxyv3.TcpProxy) (*tcpProxy, error) {
	out := &tcpProxy{statPrefix: t.GetStatPrefix(), idle: durationOr(t.GetIdleTimeout(), envoyDefaultTCPIdle), attempts: 1}
	if n := t.GetMaxConnectAttempts(); n != nil && n.GetValue() > 1 {
		out.attempts = int(n.GetValue())
	}
	switch cs := t.GetClusterSpecifier().(type) {
	case *tcpproxyv3.TcpProxy_Cluster:
		out.clusters, out.totalWeight = []tcpCluster{{name: cs.Cluster, cum: 1, stats: c.m.tcpStats(c.nodeID, cs.Cluster)}}, 1
	case *tcpproxyv3.TcpProxy_WeightedClusters:
		var sum uint32
		for _, wc := range cs.WeightedClusters.GetClusters() {
			if wc.GetWeight() == 0 {
				continue
			}
			sum += wc.GetWeight()
			out.clusters = append(out.clusters, tcpCluster{name: wc.GetName(), cum: sum, stats: c.m.tcpStats(c.nodeID, wc.GetName())})
		}
		if sum == 0 {
			return nil, errors.New("weighted clusters have no weight")
		}
		out.totalWeight = sum
	default:
		return nil, fmt.Errorf("cluster specifier %T is not supported", cs)
	}
	if t.GetTunnelingConfig() != nil || t.GetOnDemand() != nil || t.GetMetadataMatch() != nil || len(t.GetHashPolicy()) > 0 {
		return nil, errors.New("only cluster, weighted_clusters, idle_timeout, max_connect_attempts and access_log are supported")
	}
	logs, err := compileAccessLogs(t.GetAccessLog(), c.hostname, c.sink)
	if err != nil {
		return nil, err
	}
	out.logs = logs
	return out, nil
}

func (c *compiler) statsFor(rc string) func(vh, cluster string) *clusterStats {
	return func(vh, cluster string) *clusterStats { return c.m.clusterStats(c.nodeID, rc, vh, cluster) }
}

func (c *compiler) durationFor(rc string) func(vh string) interface{ Observe(float64) } {
	return func(vh string) interface{ Observe(float64) } { return c.m.duration.WithLabelValues(c.nodeID, rc, vh) }
}

// connMeta is what a filter chain is chosen by.
type connMeta struct {
	dst        netip.AddrPort
	serverName string
	tls        bool
}

// candidates returns the chains a connection's destination selects, the
// way Envoy does: the most specific destination port, then the longest
// matching prefix.
func (l *listener) candidates(dst netip.AddrPort) []*filterChain {
	var cands []*filterChain
	// Destination port: chains naming the port win over those without.
	for _, wantPort := range []bool{true, false} {
		for _, ch := range l.chains {
			if (ch.port != 0) == wantPort && (!wantPort || ch.port == uint32(dst.Port())) {
				cands = append(cands, ch)
			}
		}
		if len(cands) > 0 {
			break
		}
	}
	// Destination address: the longest prefix wins; no prefix matches all.
	best := -1
	var byAddr []*filterChain
	addr := dst.Addr().Unmap()
	for _, ch := range cands {
		bits := -1
		if len(ch.prefixes) == 0 {
			bits = 0
		}
		for _, p := range ch.prefixes {
			if p.Contains(addr) {
				bits = max(bits, p.Bits()+1)
			}
		}
		switch {
		case bits > best:
			best, byAddr = bits, []*filterChain{ch}
		case bits == best && bits >= 0:
			byAddr = append(byAddr, ch)
		}
	}
	return byAddr
}

// needsInspection tells whether the candidates differ by server name or
// transport protocol, so that the ClientHello must be read.
func needsInspection(cands []*filterChain) bool {
	for _, ch := range cands {
		if len(ch.serverNames) > 0 || ch.transport != "" {
			return true
		}
	}
	return false
}

// selectChain finishes the choice among candidates: the most specific
// server name (exact, then the longest wildcard, then none), then the
// transport protocol (a chain naming the detected one, else one without).
func selectChain(cands []*filterChain, cm connMeta) *filterChain {
	var bySNI []*filterChain
	bestSNI := -1
	for _, ch := range cands {
		score := -1
		if len(ch.serverNames) == 0 {
			score = 0
		}
		for _, sn := range ch.serverNames {
			switch {
			case sn == cm.serverName && cm.serverName != "":
				score = max(score, 1<<16)
			case strings.HasPrefix(sn, "*.") && strings.HasSuffix(cm.serverName, sn[1:]):
				score = max(score, len(sn))
			}
		}
		switch {
		case score > bestSNI:
			bestSNI, bySNI = score, []*filterChain{ch}
		case score == bestSNI && score >= 0:
			bySNI = append(bySNI, ch)
		}
	}
	proto := "raw_buffer"
	if cm.tls {
		proto = "tls"
	}
	var fallback *filterChain
	for _, ch := range bySNI {
		if ch.transport == proto {
			return ch
		}
		if ch.transport == "" && fallback == nil {
			fallback = ch
		}
	}
	return fallback
}

// isOutbound tells the egress listener of a virtual node.
func isOutbound(l *listenerv3.Listener) bool {
	return l.GetTrafficDirection() == corev3.TrafficDirection_OUTBOUND ||
		(l.GetTrafficDirection() == corev3.TrafficDirection_UNSPECIFIED && strings.HasPrefix(l.GetName(), "lds_egress_"))
}
