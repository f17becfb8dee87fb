// SPDX-License-Identifier: Apache-2.0

package dns

import "github.com/prometheus/client_golang/prometheus"

// Collector returns a prometheus.Collector that reads the server's counters
// at scrape time, as weft_agent_dns_queries_total with the label result
// ("answered", "forwarded" or "failed"). Register it with the agent's
// registry; the server itself registers nothing.
func (s *Server) Collector() prometheus.Collector {
	return &collector{
		s: s,
		queries: prometheus.NewDesc("weft_agent_dns_queries_total",
			"DNS queries by result: answered from the mesh records, forwarded to an upstream, or failed.",
			[]string{"result"}, nil),
	}
}

type collector struct {
	s       *Server
	queries *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queries
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for _, v := range []struct {
		result string
		n      uint64
	}{
		{"answered", st.Answered},
		{"forwarded", st.Forwarded},
		{"failed", st.Failed},
	} {
		ch <- prometheus.MustNewConstMetric(c.queries, prometheus.CounterValue, float64(v.n), v.result)
	}
}
