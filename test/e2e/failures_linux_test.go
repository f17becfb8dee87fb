// SPDX-License-Identifier: Apache-2.0

//go:build e2e && linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/test/meshbed"
	"github.com/weft-mesh/weft/test/testutil"
)

// TestFailuresUnderTraffic runs the mesh of TestMesh with front sending
// steady traffic on both paths (program mesh-traffic: new and long-lived
// TCP connections to db on the L4 path, HTTP requests to color on
// keep-alive and new connections through node-a's proxy) while, one after
// the other:
//
//  1. node-a's agent is SIGKILLed and restarted about 3 s later (static
//     stability: the pinned programs and maps keep serving);
//  2. node-a's proxy is handed over: a second weft-proxy with the same
//     flags binds beside the first (SO_REUSEPORT), and once it has its
//     configuration the old one gets SIGTERM and drains. tcp_migrate_req
//     is set to 1 in node-a's network namespace first (docs/proxy.md: the
//     old listener's accept queue is otherwise reset when it closes);
//  3. the controller is killed and restarted on the same data.
//
// Not one request, connect or exchange may fail over the whole test. Every
// one of them is logged (time, path, outcome) when something failed.
// Durations are logged, never asserted.
func TestFailuresUnderTraffic(t *testing.T) {
	testutil.RequirePrivileged(t)
	testutil.SkipOnOldKernel(t, "6.6", "cgroup sock_addr links, bpf_set_retval, tcx")
	w := setUp(t)
	begin := time.Now()

	traffic := meshbed.Start(t, "front/mesh-traffic", w.Client.Command(context.Background(), w.front, "mesh-traffic",
		"-url", colorURL, "-tcp", dbAddr, "-pause", "10ms", "-long-every", "100ms"))
	meshbed.Eventually(t, 30*time.Second, func() error {
		if err := traffic.Exited(); err != nil {
			return err
		}
		if !strings.Contains(string(traffic.Output()), "ready\n") {
			return fmt.Errorf("mesh-traffic is not ready yet")
		}
		return nil
	})

	var phases []phase
	mark := func(name string, fn func()) {
		time.Sleep(time.Second) // steady traffic between the events
		p := phase{name: name, start: time.Now()}
		fn()
		p.end = time.Now()
		t.Logf("%s took %v", name, p.end.Sub(p.start).Round(time.Millisecond))
		phases = append(phases, p)
	}
	mark("agent SIGKILL and restart", func() { w.restartAgent(t) })
	mark("proxy hand-over", func() { w.handOverProxy(t) })
	mark("controller kill and restart", func() { w.restartController(t) })
	time.Sleep(time.Second)

	traffic.Stop()
	events, other := parseTraffic(traffic.Output())
	if len(other) > 0 {
		t.Logf("mesh-traffic also printed: %q", other)
	}
	var failed int
	for _, p := range append([]phase{{name: "whole test", start: begin, end: time.Now()}}, phases...) {
		c := count(events, p.start, p.end)
		t.Logf("%s (%v): %s", p.name, p.end.Sub(p.start).Round(time.Millisecond), c)
	}
	total := count(events, time.Time{}, time.Now().Add(time.Hour))
	for _, path := range []string{meshbed.PathL4New, meshbed.PathL4Long, meshbed.PathL7KeepAlive, meshbed.PathL7New} {
		if total.n[path] == 0 {
			t.Errorf("no %s traffic at all", path)
		}
	}
	for _, ev := range events {
		if !ev.OK {
			failed++
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d requests or exchanges failed (%s); every one of them:", failed, len(events), total)
		for _, ev := range events {
			t.Logf("%s %-12s ok=%-5v %-7s %8dµs %s %s", time.Unix(0, ev.Time).Format("15:04:05.000000"), ev.Path, ev.OK, ev.Fail, ev.Micros, ev.Detail, ev.Error)
		}
		for _, p := range phases {
			t.Logf("%s: %s to %s", p.name, p.start.Format("15:04:05.000000"), p.end.Format("15:04:05.000000"))
		}
	}
	t.Logf("the test took %v after the set-up", time.Since(begin).Round(time.Millisecond))
}

// phase is one event of the test, from its start to when the mesh was
// whole again.
type phase struct {
	name       string
	start, end time.Time
}

// counts are the events of a time window by path, and the failures by
// kind.
type counts struct {
	n, failed map[string]int
	fails     map[string]int
}

func (c counts) String() string {
	var b strings.Builder
	for i, path := range []string{meshbed.PathL4New, meshbed.PathL4Long, meshbed.PathL7KeepAlive, meshbed.PathL7New} {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d (%d failed)", path, c.n[path], c.failed[path])
	}
	fmt.Fprintf(&b, "; failures: %d connect, %d reset, %d other", c.fails[meshbed.FailConnect], c.fails[meshbed.FailReset], c.fails[meshbed.FailOther])
	return b.String()
}

func count(events []meshbed.TrafficEvent, from, to time.Time) counts {
	c := counts{n: map[string]int{}, failed: map[string]int{}, fails: map[string]int{}}
	for _, ev := range events {
		if at := time.Unix(0, ev.Time); at.Before(from) || at.After(to) {
			continue
		}
		c.n[ev.Path]++
		if !ev.OK {
			c.failed[ev.Path]++
			c.fails[ev.Fail]++
		}
	}
	return c
}

// parseTraffic splits mesh-traffic's output into its events and the other
// lines.
func parseTraffic(out []byte) ([]meshbed.TrafficEvent, []string) {
	var events []meshbed.TrafficEvent
	var other []string
	for line := range strings.SplitSeq(string(out), "\n") {
		var ev meshbed.TrafficEvent
		if err := json.Unmarshal([]byte(line), &ev); err == nil && ev.Path != "" {
			events = append(events, ev)
		} else if line != "" && line != "ready" {
			other = append(other, line)
		}
	}
	return events, other
}

// restartAgent SIGKILLs node-a's agent, waits about 3 s and starts it
// again, with the same configuration, until it is ready.
func (w *world) restartAgent(t *testing.T) {
	t.Helper()
	mn := w.A
	mn.Agent.Kill()
	time.Sleep(3 * time.Second)
	mn.Agent = meshbed.Start(t, mn.Node.Name+"/weft-agent (restarted)", mn.AgentWL.Command(context.Background(), w.Bins.Agent,
		"-config", filepath.Join(mn.Dir, "agent.yaml"), "-log-format", "json"))
	meshbed.Eventually(t, 30*time.Second, func() error {
		if err := mn.Agent.Exited(); err != nil {
			return err
		}
		code, body, err := meshbed.Get(t.Context(), mn.HTTP, "http://"+meshbed.AgentHTTP+"/readyz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("agent /readyz: %d %s", code, body)
		}
		return err
	})
}

// handOverProxy starts a second weft-proxy on node-a with the flags of the
// first, waits until it has its node state and front's configuration,
// then SIGTERMs the first and waits until it has drained and exited.
func (w *world) handOverProxy(t *testing.T) {
	t.Helper()
	mn := w.A
	const sysctl = "/proc/sys/net/ipv4/tcp_migrate_req"
	if err := mn.Node.NS.Do(func() error { return os.WriteFile(sysctl, []byte("1\n"), 0o644) }); err != nil {
		t.Fatalf("set net.ipv4.tcp_migrate_req in %s's network namespace: %v", mn.Node.Name, err)
	}
	var got []byte
	if err := mn.Node.NS.Do(func() (err error) { got, err = os.ReadFile(sysctl); return err }); err != nil || strings.TrimSpace(string(got)) != "1" {
		t.Fatalf("net.ipv4.tcp_migrate_req in %s's network namespace is %q (%v), want 1", mn.Node.Name, got, err)
	}
	old := mn.Proxy
	t0 := time.Now()
	mn.Proxy = meshbed.Start(t, mn.Node.Name+"/weft-proxy (new)", mn.ProxyWL.Command(context.Background(), w.Bins.Proxy,
		"-xds-server", w.XDSAddr().String(), "-xds-token-file", w.Token,
		"-node-id", mn.Node.Name, "-cgroup-root", mn.Node.CgroupPath, "-cache-dir", filepath.Join(mn.Dir, "proxy-cache"),
		"-outbound-listen", mn.ProxyAddr.String(), "-tunnel-listen", mn.TunnelAddr.String(),
		"-admin-listen", meshbed.ProxyAdmin, "-pin-path", mn.PinPath,
		"-drain-timeout", "2s", "-log-format", "json"))
	meshbed.Eventually(t, 30*time.Second, func() error {
		if err := mn.Proxy.Exited(); err != nil {
			return err
		}
		if len(mn.Proxy.LogLines("listening")) == 0 || len(mn.Proxy.LogLines("took node state")) == 0 {
			return fmt.Errorf("the new proxy is not listening or has no node state yet")
		}
		if _, ok := mn.Proxy.FirstApplied(frontID, time.Time{}); !ok {
			return fmt.Errorf("the new proxy has not applied %s's configuration yet", frontID)
		}
		return nil
	})
	t.Logf("the new proxy (pid %d) was ready %v after its start", mn.Proxy.Pid(), time.Since(t0).Round(time.Millisecond))
	identitiesBeforeListening(t, mn.Proxy, "spiffe://weft.mesh/node/node-a", "spiffe://weft.mesh/mesh/demo/virtualNode/front_shop")
	t1 := time.Now()
	old.Stop()
	t.Logf("the old proxy (pid %d) drained and exited %v after SIGTERM", old.Pid(), time.Since(t1).Round(time.Millisecond))
}

// identitiesBeforeListening: p logged the tunnel certificates of ids (the
// tunnel listener's and front_shop's caller identity) before it bound its
// first listener, so that a proxy taking over neither accepted tunnel
// handshakes nor took outbound connections it could not serve.
func identitiesBeforeListening(t *testing.T, p *meshbed.Process, ids ...string) {
	t.Helper()
	at := func(l map[string]any) time.Time {
		ts, _ := l["time"].(string)
		tm, _ := time.Parse(time.RFC3339Nano, ts)
		return tm
	}
	listening := p.LogLines("listening")
	if len(listening) == 0 {
		t.Fatal("the new proxy logged no listener")
	}
	first := at(listening[0])
	for _, id := range ids {
		var got time.Time
		for _, l := range p.LogLines("tunnel certificate") {
			if l["identity"] == id {
				got = at(l)
				break
			}
		}
		switch {
		case got.IsZero():
			t.Errorf("the new proxy logged no tunnel certificate %s", id)
		case got.After(first):
			t.Errorf("the new proxy listened at %s, before it had its certificate %s (%s)", first.Format(time.StampMicro), id, got.Format(time.StampMicro))
		default:
			t.Logf("the new proxy had %s %v before it listened", id, first.Sub(got))
		}
	}
}

// restartController kills the controller, waits a second and restarts it
// on the same data, then waits until every stream is open again and the
// warm-up is over.
func (w *world) restartController(t *testing.T) {
	t.Helper()
	w.Ctrl.Kill()
	time.Sleep(time.Second)
	w.StartController(restartWarmUp)
	restarted := time.Now()
	wantStreams := float64(len(w.A.Pods) + len(w.B.Pods) + 2*2)
	meshbed.Eventually(t, 60*time.Second, func() error {
		m, err := meshbed.Scrape(t.Context(), w.CtrlHTTP, w.APIURL()+"/metrics")
		if err != nil {
			return err
		}
		streams, rebuilds := m.Sum("weft_controller_xds_streams"), m.Sum("weft_controller_xds_rebuilds_total", "result", "ok")
		if streams != wantStreams || rebuilds < 1 {
			return fmt.Errorf("the restarted controller has %v streams (want %v) and %v rebuilds", streams, wantStreams, rebuilds)
		}
		return nil
	})
	t.Logf("all streams open again and snapshots published %v after the restart", time.Since(restarted).Round(time.Millisecond))
}
