// SPDX-License-Identifier: Apache-2.0

//go:build e2e && linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
	"github.com/weft-mesh/weft/test/meshbed"
	"github.com/weft-mesh/weft/test/netsim"
	"github.com/weft-mesh/weft/test/testutil"
)

func TestMain(m *testing.M) {
	netsim.Main(m, meshbed.Programs())
}

// Names of the mesh (AWS names of the Kubernetes resources in
// testdata/mesh.yaml).
const (
	meshName = "demo"
	colorURL = "http://color.shop.svc.cluster.local:8080/"
	grpcAddr = "color-grpc.shop.svc.cluster.local:9090"
	dbAddr   = "db.shop.svc.cluster.local:15432"
	frontID  = "mesh/demo/virtualNode/front_shop"
	// restartWarmUp is the warm-up of the restarted controller: longer than
	// an agent needs to register again (a renewal every third of the TTL,
	// after gRPC's reconnect backoff), so that no proxy is ever told that
	// its endpoints went away.
	restartWarmUp = 8 * time.Second
)

// world is the running mesh of TestMesh (package test/meshbed).
type world struct {
	*meshbed.Bed
	front *netsim.Workload
	blue  *netsim.Workload
	green *netsim.Workload
	grpc  *netsim.Workload
	db    *netsim.Workload
	grpcP *netsim.Process
}

// TestMesh runs the whole mesh on simulated nodes (see doc.go): the
// controller, two agents and two proxies as their real binaries, the
// resources of appmesh-model.md §16 S1, S3 and S4 applied through the
// controller's API, and real servers and clients in pods. It checks the
// canary split, gRPC routing and retries, the L4 path of the TCP route, a
// weight change reaching the proxy, and that the nodes keep serving while
// the controller is killed and restarted.
func TestMesh(t *testing.T) {
	testutil.RequirePrivileged(t)
	testutil.SkipOnOldKernel(t, "6.6", "cgroup sock_addr links, bpf_set_retval, tcx")
	w := setUp(t)
	begin := time.Now()
	t.Run("CanarySplit", w.canarySplit)
	t.Run("GRPCRouteAndRetries", w.grpcRetries)
	t.Run("TCPRouteStaysL4", w.tcpL4)
	t.Run("WeightChange", w.weightChange)
	t.Run("ControllerRestart", w.controllerRestart)
	t.Logf("the checks took %v", time.Since(begin).Round(time.Millisecond))
}

// setUp builds the binaries and the nodes, starts the controller, applies
// the mesh, starts the workloads, agents and proxies, and waits until
// front reaches color.
func setUp(t *testing.T) *world {
	t.Helper()
	begin := time.Now()
	w := &world{Bed: meshbed.New(t, meshbed.BuildBinaries(t, false))}
	w.front = w.AddPod(w.A, "front", meshName, "front_shop", 8080)
	w.blue = w.AddPod(w.B, "blue", meshName, "blue_shop", 8080)
	w.green = w.AddPod(w.B, "green", meshName, "green_shop", 8080)
	w.grpc = w.AddPod(w.B, "color-grpc", meshName, "color-grpc_shop", 9090)
	w.db = w.AddPod(w.B, "db", meshName, "db-primary_shop", 5432)

	w.StartController(0)
	w.Weftctl("apply", "-f", filepath.Join("testdata", "mesh.yaml"))

	w.StartServer(w.blue, "color-server", "-name", "blue")
	w.StartServer(w.green, "color-server", "-name", "green")
	w.grpcP = w.StartServer(w.grpc, "grpc-server")
	w.StartServer(w.db, "echo-server", "-listen", ":5432")

	w.StartNodes()

	// Node A's state takes the backends of node B's registration: wait
	// until db is on the L4 path with its pod as backend, and until front
	// reaches color.
	ctx := t.Context()
	meshbed.Eventually(t, 30*time.Second, func() error {
		st, err := w.A.NodeState(ctx)
		if err != nil {
			return err
		}
		want := netip.AddrPortFrom(w.db.Addr, 5432).String()
		for _, s := range st.GetServices() {
			if s.GetName() != "db.shop.svc.cluster.local" {
				continue
			}
			for _, p := range s.GetPorts() {
				if p.GetPort() == 15432 && p.GetMode() == nodeapiv1.Mode_MODE_L4 && len(p.GetBackends()) == 1 && p.GetBackends()[0].GetAddress() == want {
					return nil
				}
			}
			return fmt.Errorf("db is not on the L4 path to %s yet: %v", want, s)
		}
		return fmt.Errorf("node-a's state has no db service yet: %d services", len(st.GetServices()))
	})
	meshbed.Eventually(t, 30*time.Second, func() error {
		var res meshbed.LoadResult
		if err := w.Client.Run(ctx, w.front, &res, "http-load", "-url", colorURL, "-n", "1", "-c", "1"); err != nil {
			return err
		}
		if res.Errors > 0 {
			return fmt.Errorf("front cannot reach color yet: %s", res.FirstError)
		}
		return nil
	})
	t.Logf("the mesh is up after %v", time.Since(begin).Round(time.Millisecond))
	return w
}

// load runs http-load in front against color.
func (w *world) load(t *testing.T, n, c int) meshbed.LoadResult {
	t.Helper()
	var res meshbed.LoadResult
	if err := w.Client.Run(t.Context(), w.front, &res, "http-load", "-url", colorURL, "-n", fmt.Sprint(n), "-c", fmt.Sprint(c)); err != nil {
		t.Fatal(err)
	}
	return res
}

// mustScrape scrapes or fails the test.
func mustScrape(t *testing.T, f func(context.Context) (meshbed.Metrics, error)) meshbed.Metrics {
	t.Helper()
	m, err := f(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// canarySplit: front calls color by name; the proxy on node A splits
// 90/10 between blue and green on node B.
func (w *world) canarySplit(t *testing.T) {
	before := mustScrape(t, w.A.AgentMetrics)
	b0 := mustScrape(t, w.B.ProxyMetrics)
	const n = 1000
	res := w.load(t, n, 8)
	blue, green := res.Counts["blue"], res.Counts["green"]
	t.Logf("%d requests in %s: blue %d, green %d, errors %d (%s)", n, res.Elapsed, blue, green, res.Errors, res.FirstError)
	if res.Errors != 0 || blue+green != n || len(res.Counts) != 2 {
		t.Errorf("answers %v, %d errors (%s); want %d from blue and green", res.Counts, res.Errors, res.FirstError, n)
	}
	// Binomial(1000, 0.1): mean 100, standard deviation 9.5. Five of them
	// either way fails a correct split about once in 3.5 million runs.
	sd := math.Sqrt(n * 0.1 * 0.9)
	if lo, hi := 100-5*sd, 100+5*sd; float64(green) < lo || float64(green) > hi {
		t.Errorf("green answered %d of %d, outside [%.0f, %.0f] around the 10%% weight", green, n, lo, hi)
	}
	after := mustScrape(t, w.A.AgentMetrics)
	pm := mustScrape(t, w.A.ProxyMetrics)
	l7 := after.Sum("weft_agent_decisions_total", "decision", "redirected_l7") - before.Sum("weft_agent_decisions_total", "decision", "redirected_l7")
	served := pm.Sum("weft_proxy_requests_total", "node", frontID)
	t.Logf("node-a: agent redirected %v connections to the proxy; the proxy counts %v requests of front_shop", l7, served)
	if l7 < 1 || served < n {
		t.Errorf("redirected_l7 moved by %v and the proxy served %v requests for front_shop: the traffic did not go through the node proxy", l7, served)
	}
	if lines := strings.Count(string(w.A.Proxy.Output()), " 200 cds_egress_demo_"); lines < n {
		t.Errorf("front_shop's access log (the proxy's stdout) has %d lines of 200 answers, want at least %d", lines, n)
	}
	w.crossNodeTunnel(t, b0, map[string]float64{"blue": float64(blue), "green": float64(green)})
}

// crossNodeTunnel: the cross-node L7 requests went through node B's
// tunnel listener (product.md §2 path 3), not straight to the pods: node
// B's proxy counts each answer of blue and green on their inbound
// listener, and rejected none. The tunnel is mutual TLS: both proxies
// logged the certificates the mesh CA signed for them (node B's listener
// identity, front_shop's caller identity) and the tunnel listener takes
// nothing else (TestInboundMTLS's tunnelRefusals).
func (w *world) crossNodeTunnel(t *testing.T, b0 meshbed.Metrics, want map[string]float64) {
	t.Helper()
	b1 := mustScrape(t, w.B.ProxyMetrics)
	for name, n := range want {
		id := "mesh/demo/virtualNode/" + name + "_shop"
		got := b1.Sum("weft_proxy_requests_total", "node", id, "route_config", "rds_ingress_http_8080") -
			b0.Sum("weft_proxy_requests_total", "node", id, "route_config", "rds_ingress_http_8080")
		t.Logf("node-b's proxy counted %v requests on %s's inbound listener (%v answered)", got, name, n)
		if got != n {
			t.Errorf("node-b's proxy counted %v requests on %s's inbound listener, want %v: the traffic did not go through its tunnel", got, name, n)
		}
	}
	if r := b1.Sum("weft_proxy_connections_rejected_total") - b0.Sum("weft_proxy_connections_rejected_total"); r != 0 {
		t.Errorf("node-b rejected %v connections during good traffic", r)
	}
	for _, c := range []struct {
		name string
		node *meshbed.Node
		id   string
	}{{"node-b", w.B, "spiffe://weft.mesh/node/node-b"}, {"node-a", w.A, "spiffe://weft.mesh/mesh/demo/virtualNode/front_shop"}} {
		if !hasLine(c.node.Proxy.Output(), "tunnel certificate", c.id) {
			t.Errorf("%s's proxy logged no tunnel certificate %s: the tunnel is not mutual TLS", c.name, c.id)
		}
	}
}

// hasLine tells whether a line of out holds every one of words.
func hasLine(out []byte, words ...string) bool {
	for line := range strings.Lines(string(out)) {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			return true
		}
	}
	return false
}

// grpcRetries: a gRPC client in front calls color-grpc by name. GetColor
// with x-tenant acme-* takes route get-color (3 retries on UNAVAILABLE):
// a backend failing 3 times is retried until it answers. Another tenant
// takes any-method, whose default policy retries twice, so the same
// failure reaches the client after 3 attempts.
func (w *world) grpcRetries(t *testing.T) {
	for _, tc := range []struct {
		tenant, call string
		wantCode     string
		wantAttempts int
	}{
		{"acme-corp", "acme-1", "OK", 4},
		{"globex", "globex-1", "Unavailable", 3},
	} {
		var res meshbed.CallResult
		if err := w.Client.Run(t.Context(), w.front, &res, "grpc-call", "-addr", grpcAddr, "-tenant", tc.tenant, "-call", tc.call, "-fail", "3"); err != nil {
			t.Fatal(err)
		}
		attempts := w.grpcAttempts(tc.call)
		t.Logf("tenant %s, backend failing 3 times: client got %s %q (reply %q); the backend saw %d attempts %v",
			tc.tenant, res.Code, res.Message, res.Reply, len(attempts), attempts)
		if res.Code != tc.wantCode || len(attempts) != tc.wantAttempts {
			t.Errorf("tenant %s: %s after %d attempts, want %s after %d", tc.tenant, res.Code, len(attempts), tc.wantCode, tc.wantAttempts)
		}
		if tc.wantCode == "OK" && res.Reply != "color-grpc" {
			t.Errorf("reply %q", res.Reply)
		}
	}
	pm := mustScrape(t, w.A.ProxyMetrics)
	t.Logf("node-a proxy retries of front_shop: %v", pm.Sum("weft_proxy_retries_total", "node", frontID))
}

// grpcAttempts returns the backend's lines for a call id.
func (w *world) grpcAttempts(call string) []string {
	var out []string
	for line := range strings.SplitSeq(string(w.grpcP.Stdout()), "\n") {
		if strings.HasPrefix(line, "call id="+call+" ") {
			out = append(out, strings.TrimPrefix(line, "call id="+call+" "))
		}
	}
	return out
}

// tcpL4: front connects to db by name; the kernel sends the connection to
// db-primary's pod on node B, with no proxy in between.
func (w *world) tcpL4(t *testing.T) {
	ab := mustScrape(t, w.A.AgentMetrics)
	pb := mustScrape(t, w.A.ProxyMetrics)
	logBefore := len(w.A.Proxy.Output())
	out, err := w.Client.RunText(t.Context(), w.front, "dial", "-message", "hello-db", dbAddr)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for line := range strings.Lines(out) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			got[k] = v
		}
	}
	t.Logf("front dialled %s: local %s, remote %s, the server saw peer %s, echo %q", dbAddr, got["local"], got["remote"], got["peer"], got["echo"])
	peer, err := netip.ParseAddrPort(got["peer"])
	if err != nil || peer.Addr() != w.front.Addr || got["peer"] != got["local"] || got["echo"] != "hello-db" {
		t.Errorf("db-primary saw peer %q, want front's own address %s (its local %s): the connection was not direct", got["peer"], w.front.Addr, got["local"])
	}
	if remote, err := netip.ParseAddrPort(got["remote"]); err != nil || remote.Port() != 15432 {
		t.Errorf("front sees remote %q, want the service address on 15432 (getpeername undoes the rewrite)", got["remote"])
	}
	aa := mustScrape(t, w.A.AgentMetrics)
	pa := mustScrape(t, w.A.ProxyMetrics)
	l4 := aa.Sum("weft_agent_decisions_total", "decision", "balanced_l4") - ab.Sum("weft_agent_decisions_total", "decision", "balanced_l4")
	l7 := aa.Sum("weft_agent_decisions_total", "decision", "redirected_l7") - ab.Sum("weft_agent_decisions_total", "decision", "redirected_l7")
	tcp := pa.Sum("weft_proxy_tcp_connections_total") - pb.Sum("weft_proxy_tcp_connections_total")
	t.Logf("node-a: balanced_l4 +%v, redirected_l7 +%v; proxy tcp connections +%v %v", l4, l7, tcp, pa.Matching("weft_proxy_tcp_connections_total", "db"))
	if l4 < 1 || l7 != 0 || tcp != 0 {
		t.Errorf("balanced_l4 +%v, redirected_l7 +%v, proxy tcp connections +%v: want the L4 path only", l4, l7, tcp)
	}
	if log := string(w.A.Proxy.Output()[logBefore:]); strings.Contains(log, "db-primary") {
		t.Errorf("the proxy logged something about db-primary:\n%s", log)
	}
}

// weightChange: the canary goes 90/10 → 0/100 through the API; the proxy
// gets the new routes and every request goes to green.
func (w *world) weightChange(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, r := range [][2]string{
		{"{virtualNodeRef: {name: blue}, weight: 90}", "{virtualNodeRef: {name: blue}, weight: 0}"},
		{"{virtualNodeRef: {name: green}, weight: 10}", "{virtualNodeRef: {name: green}, weight: 100}"},
	} {
		if !strings.Contains(s, r[0]) {
			t.Fatalf("testdata/mesh.yaml has no %q", r[0])
		}
		s = strings.Replace(s, r[0], r[1], 1)
	}
	file := filepath.Join(w.Dir, "mesh-0-100.yaml")
	meshbed.WriteFile(t, file, s)
	t0 := time.Now()
	out := w.Weftctl("apply", "-f", file)
	for line := range strings.Lines(out) {
		if !strings.HasSuffix(strings.TrimSpace(line), " unchanged") {
			t.Logf("weftctl apply: %s", strings.TrimSpace(line))
		}
	}
	var tries int
	meshbed.Eventually(t, 60*time.Second, func() error {
		tries++
		res := w.load(t, 20, 4)
		if res.Errors != 0 || res.Counts["green"] != 20 {
			return fmt.Errorf("not all green yet: %v, %d errors", res.Counts, res.Errors)
		}
		return nil
	})
	t.Logf("the 0/100 split was in force %v after the apply (%d probes of 20 requests)", time.Since(t0).Round(time.Millisecond), tries)
	if at, ok := w.A.Proxy.FirstApplied(frontID, t0); ok {
		t.Logf("node-a's proxy applied front_shop's new configuration %v after the apply (its log)", at.Sub(t0).Round(time.Millisecond))
	}
	res := w.load(t, 500, 8)
	t.Logf("500 requests in %s: %v, %d errors", res.Elapsed, res.Counts, res.Errors)
	if res.Errors != 0 || res.Counts["green"] != 500 {
		t.Errorf("after the change: %v, %d errors (%s); want 500 green", res.Counts, res.Errors, res.FirstError)
	}
}

// counters are the configuration counters of the nodes.
type counters map[string]float64

func (w *world) counters(t *testing.T) counters {
	t.Helper()
	c := counters{}
	for _, mn := range []*meshbed.Node{w.A, w.B} {
		pm := mustScrape(t, mn.ProxyMetrics)
		am := mustScrape(t, mn.AgentMetrics)
		c[mn.Node.Name+" proxy config updates accepted"] = pm.Sum("weft_proxy_config_updates_total", "result", "accepted")
		c[mn.Node.Name+" proxy xds updates (proxy, ok)"] = pm.Sum("weft_proxy_xds_updates_total", "kind", "proxy", "result", "ok")
		c[mn.Node.Name+" proxy xds updates (node_state, ok)"] = pm.Sum("weft_proxy_xds_updates_total", "kind", "node_state", "result", "ok")
		c[mn.Node.Name+" agent xds updates ok"] = am.Sum("weft_agent_xds_updates_total", "result", "ok")
	}
	return c
}

// streamsDown waits until no proxy has an ADS stream up.
func (w *world) streamsDown(t *testing.T) {
	t.Helper()
	meshbed.Eventually(t, 30*time.Second, func() error {
		for _, mn := range []*meshbed.Node{w.A, w.B} {
			m, err := mn.ProxyMetrics(t.Context())
			if err != nil {
				return err
			}
			if c := m.Sum("weft_proxy_xds_streams_connected"); c != 0 {
				return fmt.Errorf("%s proxy: %v streams still connected", mn.Node.Name, c)
			}
		}
		return nil
	})
}

// controllerRestart: with a client calling color all along, the
// controller is killed: the proxies and agents keep the split; then it
// restarts on the same data: the nodes reconnect and apply nothing new,
// because the same world gives the same versions.
func (w *world) controllerRestart(t *testing.T) {
	before := w.counters(t)
	load := meshbed.Start(t, "http-load (background)", w.Client.Command(context.Background(), w.front, "http-load",
		"-url", colorURL, "-until-signal", "-c", "2", "-pause", "5ms"))

	time.Sleep(500 * time.Millisecond)
	w.Ctrl.Kill()
	killed := time.Now()
	w.streamsDown(t)
	t.Logf("every proxy stream saw the controller go within %v", time.Since(killed).Round(time.Millisecond))
	// The L4 path and the DNS answers come from the agents alone.
	if _, err := w.Client.RunText(t.Context(), w.front, "dial", "-message", "controller-down", dbAddr); err != nil {
		t.Errorf("dial db while the controller is down: %v", err)
	}
	time.Sleep(time.Second)

	w.StartController(restartWarmUp)
	restarted := time.Now()
	t.Logf("controller down for %v", restarted.Sub(killed).Round(time.Millisecond))
	// The clients reconnect and name the versions they hold; a controller
	// that computes the same versions has nothing to send them, so there
	// is no first answer to wait for. Wait instead until every stream is
	// open again (node-a: agent 1 + proxy 2; node-b: agent 1 + proxy 5)
	// and the warm-up is over (the first rebuild).
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
	t.Logf("all streams open again and snapshots published %v after the restart (warm-up %v)", time.Since(restarted).Round(time.Millisecond), restartWarmUp)
	// A new configuration would be sent and applied right after the
	// rebuild; give it time to show.
	time.Sleep(2 * time.Second)

	load.Stop()
	var res meshbed.LoadResult
	if err := json.Unmarshal(load.Output(), &res); err != nil {
		t.Fatalf("background load: %q: %v", load.Output(), err)
	}
	t.Logf("background load across the kill and the restart: %v, %d errors in %s", res.Counts, res.Errors, res.Elapsed)
	if res.Errors != 0 || res.Counts["green"] == 0 || len(res.Counts) != 1 {
		t.Errorf("background load: %v, %d errors (%s); want green only, no error", res.Counts, res.Errors, res.FirstError)
	}
	res = w.load(t, 300, 4)
	if res.Errors != 0 || res.Counts["green"] != 300 {
		t.Errorf("after the restart: %v, %d errors (%s); want 300 green", res.Counts, res.Errors, res.FirstError)
	}

	after := w.counters(t)
	for _, k := range slices.Sorted(maps.Keys(before)) {
		t.Logf("%s: %v -> %v", k, before[k], after[k])
		if before[k] != after[k] {
			t.Errorf("%s moved from %v to %v across the controller restart: a configuration was applied again", k, before[k], after[k])
		}
	}

	// The nodes follow the restarted controller: the canary goes back to
	// 90/10 and blue answers again.
	t0 := time.Now()
	w.Weftctl("apply", "-f", filepath.Join("testdata", "mesh.yaml"))
	meshbed.Eventually(t, 60*time.Second, func() error {
		if res := w.load(t, 50, 4); res.Counts["blue"] == 0 {
			return fmt.Errorf("no blue answer yet: %v", res.Counts)
		}
		return nil
	})
	t.Logf("the restarted controller's change (0/100 -> 90/10) was in force %v after the apply", time.Since(t0).Round(time.Millisecond))
}
