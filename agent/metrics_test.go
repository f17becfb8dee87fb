// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/weft-mesh/weft/agent/datapath"
)

func TestDatapathCollector(t *testing.T) {
	t.Parallel()
	c := newDatapathCollector(func() (datapath.Counters, error) {
		return datapath.Counters{RedirectedL7: 10, BalancedL4: 20, DeniedEgress: 3, NoBackend: 4, DNSRedirected: 50, RingbufFull: 6}, nil
	})
	const want = `
# HELP weft_agent_decisions_total Decisions of the datapath's programs: connects redirected to the node proxy (redirected_l7) or balanced to a backend (balanced_l4), connects refused by the egress filter (denied_egress) or for want of a backend (no_backend), DNS queries redirected to the agent (dns_redirected).
# TYPE weft_agent_decisions_total counter
weft_agent_decisions_total{decision="balanced_l4"} 20
weft_agent_decisions_total{decision="denied_egress"} 3
weft_agent_decisions_total{decision="dns_redirected"} 50
weft_agent_decisions_total{decision="no_backend"} 4
weft_agent_decisions_total{decision="redirected_l7"} 10
# HELP weft_agent_ringbuf_lost_events_total Connection reports the datapath dropped because its ring buffer was full.
# TYPE weft_agent_ringbuf_lost_events_total counter
weft_agent_ringbuf_lost_events_total 6
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}

	failing := newDatapathCollector(func() (datapath.Counters, error) { return datapath.Counters{}, errors.New("map gone") })
	if err := testutil.CollectAndCompare(failing, strings.NewReader("")); err == nil || !strings.Contains(err.Error(), "map gone") {
		t.Errorf("failing counters: err = %v", err)
	}
}

// labelsOf names connections like the agent does from its applied state.
func labelsOf(names map[uint32]string, services map[uint32]string) func(uint32, uint32) connLabels {
	return func(w, s uint32) connLabels {
		l := connLabels{labelUnknown, labelUnknown, labelUnknown}
		if n, ok := names[w]; ok {
			l.mesh, l.source = "demo", n
		}
		if n, ok := services[s]; ok {
			l.destination = n
		}
		return l
	}
}

// histogram renders the exposition lines of an RTT histogram holding obs.
func histogram(labels string, obs ...float64) string {
	var b strings.Builder
	var sum float64
	for _, ub := range rttBuckets {
		n := 0
		for _, o := range obs {
			if o <= ub {
				n++
			}
		}
		fmt.Fprintf(&b, "weft_agent_tcp_rtt_seconds_bucket{%s,le=\"%s\"} %d\n", labels, strconv.FormatFloat(ub, 'g', -1, 64), n)
	}
	for _, o := range obs {
		sum += o
	}
	fmt.Fprintf(&b, "weft_agent_tcp_rtt_seconds_bucket{%s,le=\"+Inf\"} %d\n", labels, len(obs))
	fmt.Fprintf(&b, "weft_agent_tcp_rtt_seconds_sum{%s} %s\n", labels, strconv.FormatFloat(sum, 'g', -1, 64))
	fmt.Fprintf(&b, "weft_agent_tcp_rtt_seconds_count{%s} %d\n", labels, len(obs))
	return b.String()
}

func TestTelemetry(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(2, 2)
	name := labelsOf(map[uint32]string{1: "web", 2: "batch"}, map[uint32]string{10: "db.demo.local", 11: "cache.demo.local"})
	events := []datapath.ConnEvent{
		// A long connection: two periodic reports, then its close; only the
		// increases count.
		{Cookie: 100, WorkloadID: 1, ServiceID: 10, BytesSent: 100, BytesReceived: 50, Retransmits: 1},
		{Cookie: 100, WorkloadID: 1, ServiceID: 10, BytesSent: 300, BytesReceived: 80, Retransmits: 1},
		{Cookie: 100, WorkloadID: 1, ServiceID: 10, BytesSent: 400, BytesReceived: 100, Retransmits: 2, SRTT: 2 * time.Millisecond, Closed: true},
		// A short one: only its close.
		{Cookie: 101, WorkloadID: 1, ServiceID: 10, BytesSent: 10, BytesReceived: 20, SRTT: 100 * time.Microsecond, Closed: true},
		// Unknown ids.
		{Cookie: 102, WorkloadID: 99, ServiceID: 98, BytesSent: 1, Closed: true},
		// The label set cap (2) is reached: a third set counts as other.
		{Cookie: 103, WorkloadID: 2, ServiceID: 11, BytesSent: 5, Closed: true},
		// The connection table cap (2): two open, a third one's periodic
		// report is ignored, and it counts whole when it closes.
		{Cookie: 200, WorkloadID: 1, ServiceID: 10, BytesSent: 1},
		{Cookie: 201, WorkloadID: 1, ServiceID: 10, BytesSent: 1},
		{Cookie: 202, WorkloadID: 1, ServiceID: 10, BytesSent: 7},
		{Cookie: 202, WorkloadID: 1, ServiceID: 10, BytesSent: 9, Closed: true},
	}
	for _, ev := range events {
		tel.observe(ev, name)
	}
	const web = `destination_virtual_service="db.demo.local",mesh="demo",source_virtual_node="web"`
	const unknown = `destination_virtual_service="unknown",mesh="unknown",source_virtual_node="unknown"`
	const other = `destination_virtual_service="other",mesh="other",source_virtual_node="other"`
	want := `
# HELP weft_agent_tcp_bytes_received_total Bytes received on TCP connections of meshed workloads.
# TYPE weft_agent_tcp_bytes_received_total counter
weft_agent_tcp_bytes_received_total{` + web + `} 120
weft_agent_tcp_bytes_received_total{` + unknown + `} 0
weft_agent_tcp_bytes_received_total{` + other + `} 0
# HELP weft_agent_tcp_bytes_sent_total Bytes sent (acknowledged) on TCP connections of meshed workloads.
# TYPE weft_agent_tcp_bytes_sent_total counter
weft_agent_tcp_bytes_sent_total{` + web + `} 421
weft_agent_tcp_bytes_sent_total{` + unknown + `} 1
weft_agent_tcp_bytes_sent_total{` + other + `} 5
# HELP weft_agent_tcp_connections_closed_total TCP connections of meshed workloads that closed.
# TYPE weft_agent_tcp_connections_closed_total counter
weft_agent_tcp_connections_closed_total{` + web + `} 3
weft_agent_tcp_connections_closed_total{` + unknown + `} 1
weft_agent_tcp_connections_closed_total{` + other + `} 1
# HELP weft_agent_tcp_connections_opened_total TCP connections of meshed workloads seen by the datapath.
# TYPE weft_agent_tcp_connections_opened_total counter
weft_agent_tcp_connections_opened_total{` + web + `} 5
weft_agent_tcp_connections_opened_total{` + unknown + `} 1
weft_agent_tcp_connections_opened_total{` + other + `} 1
# HELP weft_agent_tcp_retransmits_total TCP segments retransmitted on connections of meshed workloads.
# TYPE weft_agent_tcp_retransmits_total counter
weft_agent_tcp_retransmits_total{` + web + `} 2
weft_agent_tcp_retransmits_total{` + unknown + `} 0
weft_agent_tcp_retransmits_total{` + other + `} 0
# HELP weft_agent_tcp_untracked_reports_total Periodic connection reports ignored because the connection table was full; the connection is counted when it closes.
# TYPE weft_agent_tcp_untracked_reports_total counter
weft_agent_tcp_untracked_reports_total 1
# HELP weft_agent_tcp_rtt_seconds Smoothed round-trip time of closed TCP connections of meshed workloads.
# TYPE weft_agent_tcp_rtt_seconds histogram
` + histogram(web, 0.002, 0.0001) + histogram(unknown) + histogram(other)
	if err := testutil.CollectAndCompare(tel, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	// The two open connections are still tracked; closed ones are not.
	if len(tel.conns) != 2 {
		t.Errorf("%d tracked connections, want 2", len(tel.conns))
	}
}

func TestAgentMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	m := newAgentMetrics(reg)
	m.reconciles.WithLabelValues(resultOK).Inc()
	m.applied(&desired{Version: "v1", State: datapath.State{Services: make([]datapath.Service, 3)}})
	m.applied(&desired{Version: "v2", State: datapath.State{Services: make([]datapath.Service, 4), Workloads: make([]datapath.Workload, 1)}})
	const want = `
# HELP weft_agent_reconciles_total Reconciles of the datapath with the desired state, by result: ok, invalid (the desired state could not be translated) or error (the datapath refused it; retried).
# TYPE weft_agent_reconciles_total counter
weft_agent_reconciles_total{result="error"} 0
weft_agent_reconciles_total{result="invalid"} 0
weft_agent_reconciles_total{result="ok"} 1
# HELP weft_agent_state_version_info The version of the node state the datapath holds (value 1).
# TYPE weft_agent_state_version_info gauge
weft_agent_state_version_info{version="v2"} 1
# HELP weft_agent_desired_objects Objects of the state the datapath holds: services (address and port pairs), workloads and egress_rules.
# TYPE weft_agent_desired_objects gauge
weft_agent_desired_objects{kind="egress_rules"} 0
weft_agent_desired_objects{kind="services"} 4
weft_agent_desired_objects{kind="workloads"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "weft_agent_reconciles_total", "weft_agent_state_version_info", "weft_agent_desired_objects"); err != nil {
		t.Error(err)
	}
}
