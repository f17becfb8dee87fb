// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Host states, the values of weft_proxy_upstream_hosts' state label.
const (
	stateHealthy   = "healthy"
	stateUnhealthy = "unhealthy"
	stateEjected   = "ejected"
)

// metrics is the manager's prometheus.Collector. Every series has the
// node id and cluster name (a cluster name can be in several node ids'
// configurations); label values come from the configuration or a fixed
// set, and a removed cluster's series are deleted.
type metrics struct {
	m         *Manager
	requests  *prometheus.CounterVec
	overflow  *prometheus.CounterVec
	ejections *prometheus.CounterVec
	checks    *prometheus.CounterVec
	hosts     *prometheus.Desc
}

func newMetrics(m *Manager) *metrics {
	return &metrics{
		m: m,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_upstream_requests_total",
			Help: "Requests (and TCP connections) given a host of the cluster.",
		}, []string{"node", "cluster"}),
		overflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_upstream_overflow_total",
			Help: "Times a circuit breaker of the cluster overflowed: max_requests, max_pending_requests and max_retries refuse the request (503); max_connections counts requests that had to wait for a connection and refused tcp_proxy connections.",
		}, []string{"node", "cluster", "breaker"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_outlier_ejections_total",
			Help: "Hosts ejected by outlier detection.",
		}, []string{"node", "cluster"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_proxy_health_checks_total",
			Help: "Active health checks of the cluster's hosts, by result: success or failure.",
		}, []string{"node", "cluster", "result"}),
		hosts: prometheus.NewDesc("weft_proxy_upstream_hosts",
			"Hosts of the cluster by state: healthy, unhealthy (failed active health checks or marked so by EDS) or ejected (outlier detection).",
			[]string{"node", "cluster", "state"}, nil),
	}
}

// bind creates a new cluster's series.
func (x *metrics) bind(c *Cluster) {
	c.requests = x.requests.WithLabelValues(c.node, c.name)
	c.ejections = x.ejections.WithLabelValues(c.node, c.name)
	c.overflows = map[string]prometheus.Counter{}
	for _, b := range []string{breakerConnections, breakerPending, breakerRequests, breakerRetries} {
		c.overflows[b] = x.overflow.WithLabelValues(c.node, c.name, b)
	}
	c.hcResults = map[string]prometheus.Counter{}
	for _, r := range []string{resultSuccess, resultFailure} {
		c.hcResults[r] = x.checks.WithLabelValues(c.node, c.name, r)
	}
}

// forget deletes a removed cluster's series.
func (x *metrics) forget(node, name string) {
	l := prometheus.Labels{"node": node, "cluster": name}
	x.requests.DeletePartialMatch(l)
	x.overflow.DeletePartialMatch(l)
	x.ejections.DeletePartialMatch(l)
	x.checks.DeletePartialMatch(l)
}

// Describe implements prometheus.Collector.
func (x *metrics) Describe(ch chan<- *prometheus.Desc) {
	x.requests.Describe(ch)
	x.overflow.Describe(ch)
	x.ejections.Describe(ch)
	x.checks.Describe(ch)
	ch <- x.hosts
}

// Collect implements prometheus.Collector; the host gauge is counted at
// scrape time.
func (x *metrics) Collect(ch chan<- prometheus.Metric) {
	x.requests.Collect(ch)
	x.overflow.Collect(ch)
	x.ejections.Collect(ch)
	x.checks.Collect(ch)
	x.m.mu.Lock()
	clusters := x.m.allLocked()
	x.m.mu.Unlock()
	for _, c := range clusters {
		n := map[string]int{}
		c.mu.Lock()
		for _, h := range c.hosts {
			n[h.state()]++
		}
		c.mu.Unlock()
		for _, st := range []string{stateHealthy, stateUnhealthy, stateEjected} {
			ch <- prometheus.MustNewConstMetric(x.hosts, prometheus.GaugeValue, float64(n[st]), c.node, c.name, st)
		}
	}
}
