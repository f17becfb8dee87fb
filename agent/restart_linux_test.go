// SPDX-License-Identifier: Apache-2.0

package agent_test

import (
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
	"github.com/weft-mesh/weft/test/netsim"
)

// TestE2ERestartUnderTraffic: the weft-agent process is SIGKILLed while a
// meshed workload holds a long-lived connection to an L4 service (one
// exchange every 50ms) and another process of it opens new connections to
// the service in a loop; for 5s no agent runs; then a new agent starts on
// the same pin path and state file. No connect fails, the long-lived
// connection keeps echoing without a reset, and the desired-state maps are
// byte for byte the same before the kill, while no agent runs and after the
// restart (read straight from the pins, read-only), as is the agent's own
// /debug/datapath view of them; the new agent's first reconcile changes
// nothing.
func TestE2ERestartUnderTraffic(t *testing.T) {
	e := newE2E(t)
	client := e.node.AddWorkload("client", netsim.WorkloadOptions{})
	echo1 := e.node.AddWorkload("echo1", netsim.WorkloadOptions{})
	echo2 := e.node.AddWorkload("echo2", netsim.WorkloadOptions{})
	addr1, addr2 := startEcho(t, echo1), startEcho(t, echo2)

	e.writeConfig(e.agentConfig())
	e.writeState(&nodeapiv1.NodeState{
		Version: "restart-1",
		Meshes: []*nodeapiv1.Mesh{{
			Name: meshName, Id: meshID, DropAll: true,
			Allowed: []*nodeapiv1.Destination{{Cidr: "192.0.2.0/24", Port: 443}},
		}},
		Services: []*nodeapiv1.Service{
			l4Service("echo.demo.local", "10.96.0.70", 80, backend(addr1, 3, "echo-v1"), backend(addr2, 1, "echo-v2")),
		},
		Workloads: []*nodeapiv1.Workload{e.workload(client, 1, "client-v1")},
	})
	first := e.startAgent()

	hold, err := client.Start(t.Context(), "hold", "-interval", "50ms", "10.96.0.70:80")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("long-lived connection: %s", waitOutput(t, hold, "connected "))
	churn, err := client.Start(t.Context(), "churn", "-pause", "10ms", "10.96.0.70:80")
	if err != nil {
		t.Fatal(err)
	}
	waitOutput(t, churn, "ok ")

	mapsBefore := pinnedMaps(t, e.pinPath)
	dumpBefore := desiredSections(e.mustGet("/debug/datapath"))
	t.Logf("datapath before the kill:\n  %s", strings.Join(dumpBefore, "\n  "))
	time.Sleep(time.Second) // traffic with the agent running

	killAt := time.Now()
	first.kill()
	deadAt := time.Now() // reaped: no report after this reached the first agent
	t.Logf("agent SIGKILLed (pid %d): %v", first.cmd.Process.Pid, first.err)
	mapsDead := pinnedMaps(t, e.pinPath)
	time.Sleep(5 * time.Second) // traffic with no agent
	mapsDeadLater := pinnedMaps(t, e.pinPath)

	restartAt := time.Now()
	second := e.spawnAgent()
	e.waitReady(second)
	readyAt := time.Now()
	mapsAfter := pinnedMaps(t, e.pinPath)
	dumpAfter := desiredSections(e.mustGet("/debug/datapath"))
	time.Sleep(time.Second) // traffic with the new agent

	for _, p := range []*netsim.Process{churn, hold} {
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(); err != nil {
			t.Errorf("%s: %v; stderr: %s", p.Name, err, p.Stderr())
		}
	}

	// Traffic.
	ok, fail := outcomes(t, churn.Stdout(), "ok", "fail")
	holdOK, holdErr := outcomes(t, hold.Stdout(), "ok", "error")
	window := func(ts []time.Time, from, to time.Time) int {
		return len(slices.DeleteFunc(slices.Clone(ts), func(x time.Time) bool { return x.Before(from) || !x.Before(to) }))
	}
	t.Logf("timeline: agent dead %v, restarted agent ready %v after its start",
		restartAt.Sub(killAt).Round(time.Millisecond), readyAt.Sub(restartAt).Round(time.Millisecond))
	t.Logf("new connections: %d ok, %d failed in all; %d ok while no agent ran, %d while the new agent started, %d after",
		len(ok), len(fail), window(ok, killAt, restartAt), window(ok, restartAt, readyAt), window(ok, readyAt, time.Now()))
	t.Logf("long-lived connection: %d exchanges, %d errors; %d while no agent ran, %d after the restart; %s",
		len(holdOK), len(holdErr), window(holdOK, killAt, restartAt), window(holdOK, restartAt, time.Now()),
		lastLine(hold.Stdout()))
	if len(fail) != 0 {
		t.Errorf("%d connects failed (stderr of the client: %s)", len(fail), churn.Stderr())
	}
	if len(holdErr) != 0 {
		t.Errorf("the long-lived connection broke: %s", hold.Stderr())
	}
	if window(ok, killAt, restartAt) == 0 || window(holdOK, killAt, restartAt) == 0 || window(holdOK, readyAt, time.Now()) == 0 {
		t.Errorf("no traffic while the agent was dead or after its restart")
	}

	// Maps.
	for name, before := range mapsBefore {
		for _, s := range []struct {
			when string
			m    map[string][]string
		}{{"just after the kill", mapsDead}, {"5s later", mapsDeadLater}, {"after the restart", mapsAfter}} {
			if !slices.Equal(before, s.m[name]) {
				t.Errorf("%s %s: %d entries %v, before the kill %d entries %v", name, s.when, len(s.m[name]), s.m[name], len(before), before)
			}
		}
	}
	if !slices.Equal(dumpBefore, dumpAfter) {
		t.Errorf("/debug/datapath after the restart:\n%s\nbefore the kill:\n%s", strings.Join(dumpAfter, "\n"), strings.Join(dumpBefore, "\n"))
	}
	var entries []string
	for name, v := range mapsBefore {
		entries = append(entries, fmt.Sprintf("%s %d", name, len(v)))
	}
	slices.Sort(entries)
	t.Logf("pinned map entries (unchanged): %s", strings.Join(entries, ", "))

	// The new agent adopted the pins and found nothing to change.
	adopted := slices.DeleteFunc(second.logLines("datapath ready"), func(l map[string]any) bool { return l["component"] != "datapath" })
	recs := second.logLines("reconciled datapath")
	if len(adopted) == 0 || len(recs) == 0 {
		t.Fatalf("the new agent logged no datapath start (%d) or reconcile (%d)", len(adopted), len(recs))
	}
	if maps, _ := adopted[0]["adopted_maps"].(float64); maps == 0 {
		t.Errorf("the new agent adopted no pinned maps: %v", adopted[0])
	}
	if links, _ := adopted[0]["adopted_links"].(float64); links == 0 {
		t.Errorf("the new agent adopted no pinned links: %v", adopted[0])
	}
	var changes []string
	for _, k := range []string{"servicesUpserted", "servicesDeleted", "workloadsUpserted", "workloadsDeleted", "egressUpserted", "egressDeleted"} {
		changes = append(changes, fmt.Sprintf("%s %v", k, recs[0][k]))
		if v, ok := recs[0][k].(float64); !ok || v != 0 {
			t.Errorf("the new agent's first reconcile changed something: %s = %v", k, recs[0][k])
		}
	}
	t.Logf("new agent: adopted %v maps and %v links; first reconcile: %s",
		adopted[0]["adopted_maps"], adopted[0]["adopted_links"], strings.Join(changes, ", "))

	// The reports of the connections that closed while no agent ran waited
	// in the ring buffer for the new agent.
	m := e.scrape()
	closed := m.sum("weft_agent_tcp_connections_closed_total", tcpLabels("client-v1", "echo.demo.local")...)
	unknown := m.sum("weft_agent_tcp_connections_closed_total", "source_virtual_node", "unknown")
	lost := m.sum("weft_agent_ringbuf_lost_events_total")
	t.Logf("new agent's telemetry: %.0f closed connections of client-v1 to echo.demo.local, %.0f unnamed, %.0f reports lost", closed, unknown, lost)
	if unknown != 0 {
		t.Errorf("the new agent counted %v connections without names", unknown)
	}
	if away := window(ok, deadAt, readyAt); lost == 0 && closed < float64(away) {
		t.Errorf("the new agent counted %.0f closed connections; %d were made while it was away", closed, away)
	}
}

// outcomes returns the times (t=UNIXNANO) of a program's lines that start
// with good and with bad.
func outcomes(t *testing.T, out []byte, good, bad string) (goodAt, badAt []time.Time) {
	t.Helper()
	for line := range strings.Lines(string(out)) {
		word, _, _ := strings.Cut(line, " ")
		if word != good && word != bad {
			continue
		}
		var at time.Time
		if ts, ok := fields(line)["t"]; ok {
			ns, err := strconv.ParseInt(ts, 10, 64)
			if err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			at = time.Unix(0, ns)
		}
		if word == good {
			goodAt = append(goodAt, at)
		} else {
			badAt = append(badAt, at)
		}
	}
	return goodAt, badAt
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// pinnedMaps reads the maps that hold the desired state straight from their
// pins under pinPath, read-only and without a datapath loader: each entry
// as "key=value" in hex, sorted. The map names are those of bpf/sock.
func pinnedMaps(t *testing.T, pinPath string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, name := range []string{"weft_metadata", "weft_workloads", "weft_services", "weft_backends", "weft_egress"} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(pinPath, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			t.Fatalf("open pinned map: %v", err)
		}
		k, v := make([]byte, m.KeySize()), make([]byte, m.ValueSize())
		var entries []string
		it := m.Iterate()
		for it.Next(k, v) {
			entries = append(entries, hex.EncodeToString(k)+"="+hex.EncodeToString(v))
		}
		err = it.Err()
		m.Close()
		if err != nil {
			t.Fatalf("read pinned map %s: %v", name, err)
		}
		slices.Sort(entries)
		out[name] = entries
	}
	return out
}
