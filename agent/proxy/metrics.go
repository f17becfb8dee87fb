// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Label values of weft_proxy_connections_rejected_total.
const (
	rejectUnknownCaller = "unknown_caller"
	rejectNoChain       = "no_filter_chain"
	rejectNoOrigDst     = "no_original_destination"
	rejectSNITimeout    = "listener_filter_timeout"
	rejectTLSHandshake  = "tls_handshake_failed"
	rejectUnknownTarget = "unknown_target" // a tunnel CONNECT to no local workload's inbound listener
	rejectUnauthorized  = "unauthorized"   // a tunnel caller the workload's virtual node does not serve
)

// metrics are the weft_proxy_* series. Every label value comes from the
// configuration (node ids, resource names) or a fixed set, never from a
// request.
type metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	retries        *prometheus.CounterVec
	overflows      *prometheus.CounterVec
	rejected       *prometheus.CounterVec
	tcpConns       *prometheus.CounterVec
	tcpBytes       *prometheus.CounterVec
	configUpdates  *prometheus.CounterVec
	activeRequests prometheus.Gauge
	activeTCP      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_requests_total",
			Help: "HTTP requests by node id, route configuration, virtual host, target cluster and response code class.",
		}, []string{"node", "route_config", "virtual_host", "cluster", "code_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "weft_proxy_request_duration_seconds",
			Help:    "Time from the request's arrival to the end of the response, by node id, route configuration and virtual host.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"node", "route_config", "virtual_host"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_retries_total",
			Help: "Request retries by node id and cluster.",
		}, []string{"node", "cluster"}),
		overflows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_upstream_overflows_total",
			Help: "Requests and connections refused because a circuit breaker was full, by node id and cluster.",
		}, []string{"node", "cluster"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_connections_rejected_total",
			Help: "Downstream connections closed at once: unknown caller, no matching filter chain, no original destination, listener filter timeout, failed TLS handshake.",
		}, []string{"reason"}),
		tcpConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_tcp_connections_total",
			Help: "Proxied TCP connections by node id, cluster and result (ok, connect_failure, overflow, no_cluster).",
		}, []string{"node", "cluster", "result"}),
		tcpBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_tcp_bytes_total",
			Help: "Bytes proxied by tcp_proxy, by node id, cluster and direction (upstream: sent to the cluster).",
		}, []string{"node", "cluster", "direction"}),
		configUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_config_updates_total",
			Help: "Configuration updates by result (accepted, rejected).",
		}, []string{"result"}),
		activeRequests: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_proxy_active_requests",
			Help: "HTTP requests in flight.",
		}),
		activeTCP: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_proxy_active_tcp_connections",
			Help: "Proxied TCP connections open.",
		}),
	}
	for _, c := range []prometheus.Collector{
		m.requests, m.duration, m.retries, m.overflows, m.rejected,
		m.tcpConns, m.tcpBytes, m.configUpdates, m.activeRequests, m.activeTCP,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{rejectUnknownCaller, rejectNoChain, rejectNoOrigDst, rejectSNITimeout} {
		m.rejected.WithLabelValues(r)
	}
	return m, nil
}

// forget drops the series of a node id that is gone.
func (m *metrics) forget(nodeID string) {
	l := prometheus.Labels{"node": nodeID}
	m.requests.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
	m.retries.DeletePartialMatch(l)
	m.overflows.DeletePartialMatch(l)
	m.tcpConns.DeletePartialMatch(l)
	m.tcpBytes.DeletePartialMatch(l)
}

// clusterStats are the series of one target cluster in one virtual host,
// resolved when the configuration is compiled so that the request path
// does no label lookups.
type clusterStats struct {
	codes     [6]prometheus.Counter // index status/100; 0 for anything else
	retries   prometheus.Counter
	overflows prometheus.Counter
}

func (m *metrics) clusterStats(node, rc, vh, cluster string) *clusterStats {
	s := &clusterStats{
		retries:   m.retries.WithLabelValues(node, cluster),
		overflows: m.overflows.WithLabelValues(node, cluster),
	}
	for i, class := range []string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"} {
		s.codes[i] = m.requests.WithLabelValues(node, rc, vh, cluster, class)
	}
	return s
}

func (s *clusterStats) count(status int) {
	i := status / 100
	if i < 1 || i > 5 {
		i = 0
	}
	s.codes[i].Inc()
}

// tcpStats are the series of one tcp_proxy cluster.
type tcpStats struct {
	ok, connectFailure, overflow, noCluster prometheus.Counter
	up, down                                prometheus.Counter
}

func (m *metrics) tcpStats(node, cluster string) *tcpStats {
	return &tcpStats{
		ok:             m.tcpConns.WithLabelValues(node, cluster, "ok"),
		connectFailure: m.tcpConns.WithLabelValues(node, cluster, "connect_failure"),
		overflow:       m.tcpConns.WithLabelValues(node, cluster, "overflow"),
		noCluster:      m.tcpConns.WithLabelValues(node, cluster, "no_cluster"),
		up:             m.tcpBytes.WithLabelValues(node, cluster, "upstream"),
		down:           m.tcpBytes.WithLabelValues(node, cluster, "downstream"),
	}
}
