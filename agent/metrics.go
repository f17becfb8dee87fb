// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-mesh/weft/agent/datapath"
)

// Reconcile results, the values of weft_agent_reconciles_total's label.
const (
	resultOK      = "ok"
	resultInvalid = "invalid"
	resultError   = "error"
)

// datapathCollector reads the datapath's decision counters at scrape time:
// the datapath keeps them in per-CPU maps, and the agent does no per-packet
// or per-connect work.
type datapathCollector struct {
	counters  func() (datapath.Counters, error)
	decisions *prometheus.Desc
	lost      *prometheus.Desc
}

func newDatapathCollector(counters func() (datapath.Counters, error)) *datapathCollector {
	return &datapathCollector{
		counters: counters,
		decisions: prometheus.NewDesc("weft_agent_decisions_total",
			"Decisions of the datapath's programs: connects redirected to the node proxy (redirected_l7) or balanced to a backend (balanced_l4), connects refused by the egress filter (denied_egress) or for want of a backend (no_backend), DNS queries redirected to the agent (dns_redirected).",
			[]string{"decision"}, nil),
		lost: prometheus.NewDesc("weft_agent_ringbuf_lost_events_total",
			"Connection reports the datapath dropped because its ring buffer was full.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *datapathCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.decisions
	ch <- c.lost
}

// Collect implements prometheus.Collector.
func (c *datapathCollector) Collect(ch chan<- prometheus.Metric) {
	n, err := c.counters()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.decisions, err)
		return
	}
	for _, d := range []struct {
		name string
		v    uint64
	}{
		{"redirected_l7", n.RedirectedL7},
		{"balanced_l4", n.BalancedL4},
		{"denied_egress", n.DeniedEgress},
		{"no_backend", n.NoBackend},
		{"dns_redirected", n.DNSRedirected},
	} {
		ch <- prometheus.MustNewConstMetric(c.decisions, prometheus.CounterValue, float64(d.v), d.name)
	}
	ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(n.RingbufFull))
}

// agentMetrics are the agent's own metrics.
type agentMetrics struct {
	reconciles *prometheus.CounterVec
	stateLoads *prometheus.CounterVec
	xdsUpdates *prometheus.CounterVec
	version    *prometheus.GaugeVec
	objects    *prometheus.GaugeVec
	ready      prometheus.Gauge
}

func newAgentMetrics(reg prometheus.Registerer) *agentMetrics {
	m := &agentMetrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_agent_reconciles_total",
			Help: "Reconciles of the datapath with the desired state, by result: ok, invalid (the desired state could not be translated) or error (the datapath refused it; retried).",
		}, []string{"result"}),
		stateLoads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_agent_state_file_loads_total",
			Help: "Reads of the state file after it changed, by result: ok, or error (the last good state is kept).",
		}, []string{"result"}),
		xdsUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_agent_xds_updates_total",
			Help: "Node states from the controller over ADS, by result: ok, cache (the cache file's, at start), or error (refused and NACKed; the last good state is kept).",
		}, []string{"result"}),
		version: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_agent_state_version_info",
			Help: "The version of the node state the datapath holds (value 1).",
		}, []string{"version"}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_agent_desired_objects",
			Help: "Objects of the state the datapath holds: services (address and port pairs), workloads and egress_rules.",
		}, []string{"kind"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weft_agent_ready",
			Help: "1 once the datapath holds a reconciled state.",
		}),
	}
	for _, r := range []string{resultOK, resultInvalid, resultError} {
		m.reconciles.WithLabelValues(r)
	}
	for _, r := range []string{resultOK, resultError} {
		m.stateLoads.WithLabelValues(r)
	}
	reg.MustRegister(m.reconciles, m.stateLoads, m.xdsUpdates, m.version, m.objects, m.ready)
	return m
}

// applied records the state the datapath now holds.
func (m *agentMetrics) applied(d *desired) {
	m.version.Reset()
	m.version.WithLabelValues(d.Version).Set(1)
	m.objects.WithLabelValues("services").Set(float64(len(d.State.Services)))
	m.objects.WithLabelValues("workloads").Set(float64(len(d.State.Workloads)))
	m.objects.WithLabelValues("egress_rules").Set(float64(len(d.State.Egress)))
	m.ready.Set(1)
}
