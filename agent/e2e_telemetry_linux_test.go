// SPDX-License-Identifier: Apache-2.0

package agent_test

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
	"github.com/weft-mesh/weft/test/netsim"
	"github.com/weft-mesh/weft/test/testutil"
)

// TestE2ETelemetry: after a meshed workload's TCP transfers to L4
// services, the agent's /metrics carries the kernel's TCP telemetry per
// (mesh, source virtual node, destination virtual service): bytes each
// way, connections opened and closed, the RTT histogram, retransmits, and
// the datapath's balanced_l4 decisions.
//
// Retransmits need loss. This kernel has no netem qdisc (sch_netem is not
// built), so, as the datapath's own tests do, a small tcx program on the
// ingress of the lossy backend pod's eth0 drops one in ten packets longer
// than 1000 bytes: the client's data segments get lost and the client
// retransmits them.
func TestE2ETelemetry(t *testing.T) {
	e := newE2E(t)
	client := e.node.AddWorkload("client", netsim.WorkloadOptions{})
	echo := e.node.AddWorkload("echo", netsim.WorkloadOptions{})
	lossy := e.node.AddWorkload("lossy", netsim.WorkloadOptions{})
	echoAddr, lossyAddr := startEcho(t, echo), startEcho(t, lossy)

	e.writeConfig(e.agentConfig())
	e.writeState(&nodeapiv1.NodeState{
		Version: "telemetry-1",
		Meshes:  []*nodeapiv1.Mesh{demoMesh(false)},
		Services: []*nodeapiv1.Service{
			l4Service("echo.demo.local", "10.96.0.60", 80, backend(echoAddr, 1, "echo-v1")),
			l4Service("lossy.demo.local", "10.96.0.61", 80, backend(lossyAddr, 1, "lossy-v1")),
		},
		Workloads: []*nodeapiv1.Workload{e.workload(client, 1, "client-v1")},
	})
	e.startAgent()
	before := e.scrape().sum("weft_agent_decisions_total", "decision", "balanced_l4")

	// A clean transfer of 1 MiB each way.
	const n = 1 << 20
	out, err := client.Run(t.Context(), "transfer", "-bytes", strconv.Itoa(n), "10.96.0.60:80")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("clean: %s", strings.TrimSpace(string(out)))
	echoLabels := tcpLabels("client-v1", "echo.demo.local")
	var m metrics
	testutil.Eventually(t, 10*time.Second, func() error {
		m = e.scrape()
		if c := m.sum("weft_agent_tcp_connections_closed_total", echoLabels...); c < 1 {
			return fmt.Errorf("no closed connection counted for %v yet", echoLabels)
		}
		return nil
	})
	sent := m.sum("weft_agent_tcp_bytes_sent_total", echoLabels...)
	recv := m.sum("weft_agent_tcp_bytes_received_total", echoLabels...)
	opened := m.sum("weft_agent_tcp_connections_opened_total", echoLabels...)
	closed := m.sum("weft_agent_tcp_connections_closed_total", echoLabels...)
	rttCount := m.sum("weft_agent_tcp_rtt_seconds_count", echoLabels...)
	rttSum := m.sum("weft_agent_tcp_rtt_seconds_sum", echoLabels...)
	retrans := m.sum("weft_agent_tcp_retransmits_total", echoLabels...)
	balanced := m.sum("weft_agent_decisions_total", "decision", "balanced_l4") - before
	t.Logf("metrics for %v: bytes sent %.0f received %.0f, connections opened %.0f closed %.0f, rtt count %.0f sum %.6fs, retransmits %.0f; balanced_l4 +%.0f",
		echoLabels, sent, recv, opened, closed, rttCount, rttSum, retrans, balanced)
	// Sequence space: the SYN or FIN adds a byte; the echo server's
	// greeting ("peer <address>\n") comes on top of the echoed bytes.
	if sent < n || sent > n+2 {
		t.Errorf("bytes sent %v, want %d (+ at most 2 for SYN and FIN)", sent, n)
	}
	if recv < n || recv > n+64 {
		t.Errorf("bytes received %v, want %d plus the greeting", recv, n)
	}
	if opened != 1 || closed != 1 {
		t.Errorf("connections opened %v, closed %v: want 1 and 1", opened, closed)
	}
	if rttCount < 1 || rttSum <= 0 {
		t.Errorf("rtt histogram count %v sum %v: want a closed connection's non-zero RTT", rttCount, rttSum)
	}
	if balanced < 1 {
		t.Errorf("balanced_l4 grew by %v, want at least 1", balanced)
	}
	if !m.has("weft_agent_tcp_rtt_seconds_bucket", append(echoLabels, "le", "+Inf")...) {
		t.Errorf("no RTT histogram buckets for %v", echoLabels)
	}

	// A lossy transfer: 4 MiB each way to the backend that drops 10% of
	// its large ingress packets.
	dropSome(t, lossy)
	const lossyBytes = 4 << 20
	out, err = client.Run(t.Context(), "transfer", "-bytes", strconv.Itoa(lossyBytes), "10.96.0.61:80")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lossy: %s", strings.TrimSpace(string(out)))
	lossyLabels := tcpLabels("client-v1", "lossy.demo.local")
	testutil.Eventually(t, 10*time.Second, func() error {
		m = e.scrape()
		if c := m.sum("weft_agent_tcp_connections_closed_total", lossyLabels...); c < 1 {
			return fmt.Errorf("no closed connection counted for %v yet", lossyLabels)
		}
		return nil
	})
	retrans = m.sum("weft_agent_tcp_retransmits_total", lossyLabels...)
	t.Logf("metrics for %v: retransmits %.0f, bytes sent %.0f, rtt sum %.6fs over %.0f connections",
		lossyLabels, retrans, m.sum("weft_agent_tcp_bytes_sent_total", lossyLabels...),
		m.sum("weft_agent_tcp_rtt_seconds_sum", lossyLabels...), m.sum("weft_agent_tcp_rtt_seconds_count", lossyLabels...))
	if retrans <= 0 {
		t.Errorf("weft_agent_tcp_retransmits_total for %v is %v after %d bytes with 10%% loss", lossyLabels, retrans, lossyBytes)
	}
	if lost := m.sum("weft_agent_ringbuf_lost_events_total"); lost != 0 {
		t.Errorf("ring buffer lost %v reports", lost)
	}
}

// dropSome attaches a tcx ingress program to eth0 of w's netns that drops
// one in ten packets longer than 1000 bytes (the approach of the
// datapath's TestTelemetryRetransmits; this kernel has no sch_netem). At
// ingress, because a drop at egress is reported back to TCP as local
// congestion and the segment is sent again without counting as a
// retransmit.
func dropSome(t *testing.T, w *netsim.Workload) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "Dual BSD/GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // skb->len
			asm.JLT.Imm(asm.R2, 1000, "next"),
			asm.FnGetPrandomU32.Call(),
			asm.Mod.Imm(asm.R0, 10),
			asm.JNE.Imm(asm.R0, 0, "next"),
			asm.Mov.Imm(asm.R0, 2), // TCX_DROP
			asm.Return(),
			asm.Mov.Imm(asm.R0, -1).WithSymbol("next"), // TCX_NEXT
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	var l link.Link
	err = w.NS.Do(func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		l, err = link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: prog, Attach: ebpf.AttachTCXIngress})
		return err
	})
	if err != nil {
		t.Fatalf("attach the drop program in %s: %v", w, err)
	}
	t.Cleanup(func() { l.Close() })
}
