// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-mesh/weft/agent/datapath"
)

// Label values of connections that cannot be named, or that exceed the
// label set cap.
const (
	labelUnknown = "unknown"
	labelOther   = "other"
)

// rttBuckets are the upper bounds, in seconds, of the RTT histogram: 50µs
// (same node) to 1.6s (a congested long-haul path), doubling.
var rttBuckets = prometheus.ExponentialBuckets(50e-6, 2, 16)

// connLabels is a label set of the TCP metrics.
type connLabels struct {
	mesh, source, destination string
}

// connStats are the counts of one label set.
type connStats struct {
	opened, closed, sent, received, retransmits uint64
	rttCounts                                   []uint64 // per bucket, not cumulative; last is +Inf
	rttSum                                      float64
}

// connLast is what the last report of an open connection said.
type connLast struct {
	labels      connLabels
	sent, recv  uint64
	retransmits uint32
}

// telemetry aggregates the datapath's connection reports into counters per
// (mesh, source virtual node, destination virtual service). It holds at
// most maxSets label sets, counting connections beyond them under "other",
// and the last report of at most maxConns open connections: the periodic
// reports of a long connection carry its totals so far, and only the
// increase since the previous report is counted. A connection that arrives
// while the table is full is counted once, whole, when it closes.
type telemetry struct {
	maxSets, maxConns int

	mu        sync.Mutex
	sets      map[connLabels]*connStats
	conns     map[uint64]connLast
	untracked uint64

	opened, closed, sent, received, retransmits, rtt, untrackedDesc *prometheus.Desc
}

func newTelemetry(maxSets, maxConns int) *telemetry {
	// In alphabetical order, as the exposition format prints them.
	labels := []string{"destination_virtual_service", "mesh", "source_virtual_node"}
	desc := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("weft_agent_tcp_"+name, help, labels, nil)
	}
	return &telemetry{
		maxSets:       maxSets,
		maxConns:      maxConns,
		sets:          map[connLabels]*connStats{},
		conns:         map[uint64]connLast{},
		opened:        desc("connections_opened_total", "TCP connections of meshed workloads seen by the datapath.", labels),
		closed:        desc("connections_closed_total", "TCP connections of meshed workloads that closed.", labels),
		sent:          desc("bytes_sent_total", "Bytes sent (acknowledged) on TCP connections of meshed workloads.", labels),
		received:      desc("bytes_received_total", "Bytes received on TCP connections of meshed workloads.", labels),
		retransmits:   desc("retransmits_total", "TCP segments retransmitted on connections of meshed workloads.", labels),
		rtt:           desc("rtt_seconds", "Smoothed round-trip time of closed TCP connections of meshed workloads.", labels),
		untrackedDesc: desc("untracked_reports_total", "Periodic connection reports ignored because the connection table was full; the connection is counted when it closes.", nil),
	}
}

// observe counts one connection report, named by labels (called for the
// first report of a connection only).
func (t *telemetry) observe(ev datapath.ConnEvent, labels func(workloadID, serviceID uint32) connLabels) {
	t.mu.Lock()
	defer t.mu.Unlock()
	last, tracked := t.conns[ev.Cookie]
	if !tracked {
		if !ev.Closed && len(t.conns) >= t.maxConns {
			t.untracked++
			return
		}
		last = connLast{labels: t.bound(labels(ev.WorkloadID, ev.ServiceID))}
	}
	s := t.sets[last.labels]
	if !tracked {
		s.opened++
	}
	s.sent += delta(ev.BytesSent, last.sent)
	s.received += delta(ev.BytesReceived, last.recv)
	s.retransmits += delta(uint64(ev.Retransmits), uint64(last.retransmits))
	if ev.Closed {
		s.closed++
		if ev.SRTT > 0 {
			v := ev.SRTT.Seconds()
			i := 0
			for i < len(rttBuckets) && v > rttBuckets[i] {
				i++
			}
			s.rttCounts[i]++
			s.rttSum += v
		}
		delete(t.conns, ev.Cookie)
		return
	}
	last.sent, last.recv, last.retransmits = ev.BytesSent, ev.BytesReceived, ev.Retransmits
	t.conns[ev.Cookie] = last
}

// bound returns l, or the "other" set when l is new and the cap is reached;
// the set exists when it returns. Called with mu held.
func (t *telemetry) bound(l connLabels) connLabels {
	if _, ok := t.sets[l]; ok {
		return l
	}
	if len(t.sets) >= t.maxSets {
		l = connLabels{labelOther, labelOther, labelOther}
		if _, ok := t.sets[l]; ok {
			return l
		}
	}
	t.sets[l] = &connStats{rttCounts: make([]uint64, len(rttBuckets)+1)}
	return l
}

// delta is the increase from last to cur; a counter that went backwards
// (which a connection's totals should not) counts as nothing.
func delta(cur, last uint64) uint64 {
	if cur < last {
		return 0
	}
	return cur - last
}

// Describe implements prometheus.Collector.
func (t *telemetry) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{t.opened, t.closed, t.sent, t.received, t.retransmits, t.rtt, t.untrackedDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (t *telemetry) Collect(ch chan<- prometheus.Metric) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(t.untrackedDesc, prometheus.CounterValue, float64(t.untracked))
	for l, s := range t.sets {
		lv := []string{l.destination, l.mesh, l.source}
		ch <- prometheus.MustNewConstMetric(t.opened, prometheus.CounterValue, float64(s.opened), lv...)
		ch <- prometheus.MustNewConstMetric(t.closed, prometheus.CounterValue, float64(s.closed), lv...)
		ch <- prometheus.MustNewConstMetric(t.sent, prometheus.CounterValue, float64(s.sent), lv...)
		ch <- prometheus.MustNewConstMetric(t.received, prometheus.CounterValue, float64(s.received), lv...)
		ch <- prometheus.MustNewConstMetric(t.retransmits, prometheus.CounterValue, float64(s.retransmits), lv...)
		buckets := make(map[float64]uint64, len(rttBuckets))
		var cum uint64
		for i, ub := range rttBuckets {
			cum += s.rttCounts[i]
			buckets[ub] = cum
		}
		count := cum + s.rttCounts[len(rttBuckets)]
		ch <- prometheus.MustNewConstHistogram(t.rtt, count, s.rttSum, buckets, lv...)
	}
}
