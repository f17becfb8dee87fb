// SPDX-License-Identifier: Apache-2.0

//go:build e2e && linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/weft-mesh/weft/controlplane"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
	"github.com/weft-mesh/weft/test/netsim"
	"github.com/weft-mesh/weft/test/testutil"
)

func TestMain(m *testing.M) {
	netsim.Main(m, netsim.Programs{
		"weftctl":      weftctlMain,
		"color-server": colorServerMain,
		"grpc-server":  grpcServerMain,
		"echo-server":  netsim.EchoServer,
		"http-load":    withResolver(httpLoadMain),
		"grpc-call":    withResolver(grpcCallMain),
		"dial":         withResolver(netsim.Dial),
	})
}

// Names of the mesh (AWS names of the Kubernetes resources in
// testdata/mesh.yaml).
const (
	colorURL = "http://color.shop.svc.cluster.local:8080/"
	grpcAddr = "color-grpc.shop.svc.cluster.local:9090"
	dbAddr   = "db.shop.svc.cluster.local:15432"
	frontID  = "mesh/demo/virtualNode/front_shop"
)

// world is the running mesh of TestMesh.
type world struct {
	t      *testing.T
	bins   binaries
	dir    string
	ctrlWL *netsim.Workload
	ctrl   *process
	ctrlIP netip.Addr
	ctrlC  *http.Client
	token  string // token file
	a, b   *meshNode
	front  *netsim.Workload
	blue   *netsim.Workload
	green  *netsim.Workload
	grpc   *netsim.Workload
	db     *netsim.Workload
	grpcP  *netsim.Process
	client clientEnv
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
	bins := buildBinaries(t)
	n := netsim.New(t, netsim.Options{})
	nodeA, nodeB, ctrlNode := n.AddNode("node-a"), n.AddNode("node-b"), n.AddNode("ctrl")
	dir := t.TempDir()
	w := &world{
		t: t, bins: bins, dir: dir,
		ctrlWL: ctrlNode.AddWorkload("controller", netsim.WorkloadOptions{HostNetwork: true}),
		ctrlIP: ctrlNode.Addr,
		ctrlC:  nsHTTPClient(ctrlNode.NS),
		token:  filepath.Join(dir, "token"),
		client: newClientEnv(t, dir),
	}
	t.Cleanup(w.ctrlC.CloseIdleConnections)
	writeFile(t, w.token, "e2e-"+fmt.Sprint(time.Now().UnixNano())+"\n")
	w.a, w.b = w.newNode(nodeA), w.newNode(nodeB)
	w.front = w.addPod(w.a, "front", "front_shop", 8080)
	w.blue = w.addPod(w.b, "blue", "blue_shop", 8080)
	w.green = w.addPod(w.b, "green", "green_shop", 8080)
	w.grpc = w.addPod(w.b, "color-grpc", "color-grpc_shop", 9090)
	w.db = w.addPod(w.b, "db", "db-primary_shop", 5432)

	w.ctrl = w.startController(0)
	w.weftctl("apply", "-f", filepath.Join("testdata", "mesh.yaml"))

	ctx := t.Context()
	for _, s := range []struct {
		pod  *netsim.Workload
		prog string
		args []string
	}{
		{w.blue, "color-server", []string{"-name", "blue"}},
		{w.green, "color-server", []string{"-name", "green"}},
		{w.grpc, "grpc-server", nil},
		{w.db, "echo-server", []string{"-listen", ":5432"}},
	} {
		p, err := s.pod.Start(ctx, s.prog, s.args...)
		if err != nil {
			t.Fatal(err)
		}
		waitOutput(t, p, "listening ")
		if s.pod == w.grpc {
			w.grpcP = p
		}
	}

	for _, mn := range []*meshNode{w.a, w.b} {
		writeYAML(t, filepath.Join(mn.dir, "agent.yaml"), mn.agentConfig(t, w.xdsAddr(), w.token))
		mn.agent = start(t, mn.node.Name+"/weft-agent", mn.agentWL.Command(context.Background(), bins.agent,
			"-config", filepath.Join(mn.dir, "agent.yaml"), "-log-format", "json"))
	}
	for _, mn := range []*meshNode{w.a, w.b} {
		testutil.Eventually(t, 30*time.Second, func() error {
			if err := mn.agent.exited(); err != nil {
				return err
			}
			code, body, err := get(ctx, mn.http, "http://"+agentHTTP+"/readyz")
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("%s agent /readyz: %d %s", mn.node.Name, code, body)
			}
			return err
		})
		// The proxy opens the agent's pinned maps at start: after the agent.
		mn.proxy = start(t, mn.node.Name+"/weft-proxy", mn.proxyWL.Command(context.Background(), bins.proxy,
			"-xds-server", w.xdsAddr().String(), "-xds-token-file", w.token,
			"-node-id", mn.node.Name, "-cgroup-root", mn.node.CgroupPath, "-cache-dir", filepath.Join(mn.dir, "proxy-cache"),
			"-outbound-listen", mn.proxyAdr.String(), "-admin-listen", proxyAdmin, "-pin-path", mn.pinPath,
			"-drain-timeout", "2s", "-log-format", "json"))
	}
	for _, mn := range []*meshNode{w.a, w.b} {
		subs := float64(len(mn.pods))
		testutil.Eventually(t, 30*time.Second, func() error {
			if err := mn.proxy.exited(); err != nil {
				return err
			}
			m, err := mn.proxyMetrics(ctx)
			if err != nil {
				return err
			}
			if s, c := m.sum("weft_proxy_xds_subscriptions"), m.sum("weft_proxy_xds_streams_connected"); s != subs || c != subs+1 {
				return fmt.Errorf("%s proxy: %v subscriptions, %v streams connected; want %v and %v", mn.node.Name, s, c, subs, subs+1)
			}
			return nil
		})
	}

	// Node A's state takes the backends of node B's registration: wait
	// until db is on the L4 path with its pod as backend, and until front
	// reaches color.
	testutil.Eventually(t, 30*time.Second, func() error {
		st, err := w.a.nodeState(ctx)
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
	testutil.Eventually(t, 30*time.Second, func() error {
		var res loadResult
		if err := w.client.run(ctx, w.front, &res, "http-load", "-url", colorURL, "-n", "1", "-c", "1"); err != nil {
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

func (w *world) xdsAddr() netip.AddrPort { return netip.AddrPortFrom(w.ctrlIP, xdsPort) }

func (w *world) apiURL() string {
	return fmt.Sprintf("http://%s", netip.AddrPortFrom(w.ctrlIP, apiPort))
}

// newNode prepares a node's directories, its agent's and proxy's
// host-network workloads.
func (w *world) newNode(node *netsim.Node) *meshNode {
	w.t.Helper()
	dir := filepath.Join(w.dir, node.Name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		w.t.Fatal(err)
	}
	mn := &meshNode{
		node:     node,
		agentWL:  node.AddWorkload("weft-agent", netsim.WorkloadOptions{HostNetwork: true}),
		proxyWL:  node.AddWorkload("weft-proxy", netsim.WorkloadOptions{HostNetwork: true}),
		http:     nsHTTPClient(node.NS),
		dir:      dir,
		pinPath:  filepath.Join(node.PinPath, "weft"),
		proxyAdr: netip.AddrPortFrom(node.Addr, proxyPort),
	}
	w.t.Cleanup(mn.http.CloseIdleConnections)
	return mn
}

// addPod adds a pod of virtual node vn serving port to mn.
func (w *world) addPod(mn *meshNode, name, vn string, port uint32) *netsim.Workload {
	w.t.Helper()
	pod := mn.node.AddWorkload(name, netsim.WorkloadOptions{})
	mn.pods = append(mn.pods, podSpec{wl: pod, virtualNode: vn, ports: []uint32{port}})
	return pod
}

// startController starts weft-controller in the ctrl node with the given
// warm-up, on the test's data directory, and waits until it is ready.
func (w *world) startController(warmUp time.Duration) *process {
	w.t.Helper()
	wu := controlplane.Duration(warmUp)
	cfg := controlplane.Config{
		DataDir:   filepath.Join(w.dir, "controller"),
		APIListen: netip.AddrPortFrom(w.ctrlIP, apiPort).String(),
		XDSListen: w.xdsAddr().String(),
		Auth:      controlplane.AuthConfig{BearerTokenFile: w.token},
		Registry:  controlplane.RegistryConfig{TTL: controlplane.Duration(registryTTL), WarmUp: &wu},
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		w.t.Fatal(err)
	}
	file := filepath.Join(w.dir, "controller.yaml")
	writeYAML(w.t, file, cfg)
	p := start(w.t, "weft-controller", w.ctrlWL.Command(context.Background(), w.bins.controller, "-config", file, "-log-format", "json"))
	testutil.Eventually(w.t, 15*time.Second, func() error {
		if err := p.exited(); err != nil {
			return err
		}
		code, _, err := get(w.t.Context(), w.ctrlC, w.apiURL()+"/readyz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("controller /readyz: %d", code)
		}
		return err
	})
	return p
}

// weftctl runs weftctl against the controller from the ctrl node.
func (w *world) weftctl(args ...string) string {
	w.t.Helper()
	abs := slices.Clone(args)
	for i, a := range abs {
		if i > 0 && abs[i-1] == "-f" && !filepath.IsAbs(a) {
			p, err := filepath.Abs(a)
			if err != nil {
				w.t.Fatal(err)
			}
			abs[i] = p
		}
	}
	out, err := w.ctrlWL.Run(w.t.Context(), "weftctl", append([]string{"--server", w.apiURL(), "--token-file", w.token}, abs...)...)
	if err != nil {
		w.t.Fatalf("weftctl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// nodeState returns the node state node's agent applies.
func (mn *meshNode) nodeState(ctx context.Context) (*nodeapiv1.NodeState, error) {
	code, body, err := get(ctx, mn.http, "http://"+agentHTTP+"/debug/state")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/debug/state: %d %s", code, body)
	}
	var d struct {
		NodeState json.RawMessage `json:"nodeState"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		return nil, err
	}
	var st nodeapiv1.NodeState
	if err := protojson.Unmarshal(d.NodeState, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// load runs http-load in front against color.
func (w *world) load(t *testing.T, n, c int) loadResult {
	t.Helper()
	var res loadResult
	if err := w.client.run(t.Context(), w.front, &res, "http-load", "-url", colorURL, "-n", fmt.Sprint(n), "-c", fmt.Sprint(c)); err != nil {
		t.Fatal(err)
	}
	return res
}

// mustScrape scrapes or fails the test.
func mustScrape(t *testing.T, f func(context.Context) (metrics, error)) metrics {
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
	before := mustScrape(t, w.a.agentMetrics)
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
	after := mustScrape(t, w.a.agentMetrics)
	pm := mustScrape(t, w.a.proxyMetrics)
	l7 := after.sum("weft_agent_decisions_total", "decision", "redirected_l7") - before.sum("weft_agent_decisions_total", "decision", "redirected_l7")
	served := pm.sum("weft_proxy_requests_total", "node", frontID)
	t.Logf("node-a: agent redirected %v connections to the proxy; the proxy counts %v requests of front_shop", l7, served)
	if l7 < 1 || served < n {
		t.Errorf("redirected_l7 moved by %v and the proxy served %v requests for front_shop: the traffic did not go through the node proxy", l7, served)
	}
	if lines := strings.Count(string(w.a.proxy.out.Bytes()), " 200 cds_egress_demo_"); lines < n {
		t.Errorf("front_shop's access log (the proxy's stdout) has %d lines of 200 answers, want at least %d", lines, n)
	}
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
		var res callResult
		if err := w.client.run(t.Context(), w.front, &res, "grpc-call", "-addr", grpcAddr, "-tenant", tc.tenant, "-call", tc.call, "-fail", "3"); err != nil {
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
	pm := mustScrape(t, w.a.proxyMetrics)
	t.Logf("node-a proxy retries of front_shop: %v", pm.sum("weft_proxy_retries_total", "node", frontID))
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
	ab := mustScrape(t, w.a.agentMetrics)
	pb := mustScrape(t, w.a.proxyMetrics)
	logBefore := len(w.a.proxy.out.Bytes())
	out, err := w.client.runText(t.Context(), w.front, "dial", "-message", "hello-db", dbAddr)
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
	aa := mustScrape(t, w.a.agentMetrics)
	pa := mustScrape(t, w.a.proxyMetrics)
	l4 := aa.sum("weft_agent_decisions_total", "decision", "balanced_l4") - ab.sum("weft_agent_decisions_total", "decision", "balanced_l4")
	l7 := aa.sum("weft_agent_decisions_total", "decision", "redirected_l7") - ab.sum("weft_agent_decisions_total", "decision", "redirected_l7")
	tcp := pa.sum("weft_proxy_tcp_connections_total") - pb.sum("weft_proxy_tcp_connections_total")
	t.Logf("node-a: balanced_l4 +%v, redirected_l7 +%v; proxy tcp connections +%v %v", l4, l7, tcp, pa.matching("weft_proxy_tcp_connections_total", "db"))
	if l4 < 1 || l7 != 0 || tcp != 0 {
		t.Errorf("balanced_l4 +%v, redirected_l7 +%v, proxy tcp connections +%v: want the L4 path only", l4, l7, tcp)
	}
	if log := string(w.a.proxy.out.Bytes()[logBefore:]); strings.Contains(log, "db-primary") {
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
	file := filepath.Join(w.dir, "mesh-0-100.yaml")
	writeFile(t, file, s)
	t0 := time.Now()
	out := w.weftctl("apply", "-f", file)
	for line := range strings.Lines(out) {
		if !strings.HasSuffix(strings.TrimSpace(line), " unchanged") {
			t.Logf("weftctl apply: %s", strings.TrimSpace(line))
		}
	}
	var tries int
	testutil.Eventually(t, 60*time.Second, func() error {
		tries++
		res := w.load(t, 20, 4)
		if res.Errors != 0 || res.Counts["green"] != 20 {
			return fmt.Errorf("not all green yet: %v, %d errors", res.Counts, res.Errors)
		}
		return nil
	})
	t.Logf("the 0/100 split was in force %v after the apply (%d probes of 20 requests)", time.Since(t0).Round(time.Millisecond), tries)
	if at, ok := w.a.proxy.firstApplied(frontID, t0); ok {
		t.Logf("node-a's proxy applied front_shop's new configuration %v after the apply (its log)", at.Sub(t0).Round(time.Millisecond))
	}
	res := w.load(t, 500, 8)
	t.Logf("500 requests in %s: %v, %d errors", res.Elapsed, res.Counts, res.Errors)
	if res.Errors != 0 || res.Counts["green"] != 500 {
		t.Errorf("after the change: %v, %d errors (%s); want 500 green", res.Counts, res.Errors, res.FirstError)
	}
}

// firstApplied returns the time of the proxy's first "configuration
// applied" of node id after t0, from its JSON log.
func (p *process) firstApplied(nodeID string, t0 time.Time) (time.Time, bool) {
	for _, l := range p.logLines("configuration applied") {
		ts, _ := l["time"].(string)
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err == nil && l["node"] == nodeID && at.After(t0) {
			return at, true
		}
	}
	return time.Time{}, false
}

// counters are the configuration counters of the nodes.
type counters map[string]float64

func (w *world) counters(t *testing.T) counters {
	t.Helper()
	c := counters{}
	for _, mn := range []*meshNode{w.a, w.b} {
		pm := mustScrape(t, mn.proxyMetrics)
		am := mustScrape(t, mn.agentMetrics)
		c[mn.node.Name+" proxy config updates accepted"] = pm.sum("weft_proxy_config_updates_total", "result", "accepted")
		c[mn.node.Name+" proxy xds updates (proxy, ok)"] = pm.sum("weft_proxy_xds_updates_total", "kind", "proxy", "result", "ok")
		c[mn.node.Name+" proxy xds updates (node_state, ok)"] = pm.sum("weft_proxy_xds_updates_total", "kind", "node_state", "result", "ok")
		c[mn.node.Name+" agent xds updates ok"] = am.sum("weft_agent_xds_updates_total", "result", "ok")
	}
	return c
}

// streamsDown waits until no proxy has an ADS stream up.
func (w *world) streamsDown(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, mn := range []*meshNode{w.a, w.b} {
			m, err := mn.proxyMetrics(t.Context())
			if err != nil {
				return err
			}
			if c := m.sum("weft_proxy_xds_streams_connected"); c != 0 {
				return fmt.Errorf("%s proxy: %v streams still connected", mn.node.Name, c)
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
	load := start(t, "http-load (background)", w.client.command(context.Background(), w.front, "http-load",
		"-url", colorURL, "-until-signal", "-c", "2", "-pause", "5ms"))

	time.Sleep(500 * time.Millisecond)
	w.ctrl.kill()
	killed := time.Now()
	w.streamsDown(t)
	t.Logf("every proxy stream saw the controller go within %v", time.Since(killed).Round(time.Millisecond))
	// The L4 path and the DNS answers come from the agents alone.
	if _, err := w.client.runText(t.Context(), w.front, "dial", "-message", "controller-down", dbAddr); err != nil {
		t.Errorf("dial db while the controller is down: %v", err)
	}
	time.Sleep(time.Second)

	w.ctrl = w.startController(restartWarmUp)
	restarted := time.Now()
	t.Logf("controller down for %v", restarted.Sub(killed).Round(time.Millisecond))
	// The clients reconnect and name the versions they hold; a controller
	// that computes the same versions has nothing to send them, so there
	// is no first answer to wait for. Wait instead until every stream is
	// open again (node-a: agent 1 + proxy 2; node-b: agent 1 + proxy 5)
	// and the warm-up is over (the first rebuild).
	wantStreams := float64(len(w.a.pods) + len(w.b.pods) + 2*2)
	testutil.Eventually(t, 60*time.Second, func() error {
		m, err := scrape(t.Context(), w.ctrlC, w.apiURL()+"/metrics")
		if err != nil {
			return err
		}
		streams, rebuilds := m.sum("weft_controller_xds_streams"), m.sum("weft_controller_xds_rebuilds_total", "result", "ok")
		if streams != wantStreams || rebuilds < 1 {
			return fmt.Errorf("the restarted controller has %v streams (want %v) and %v rebuilds", streams, wantStreams, rebuilds)
		}
		return nil
	})
	t.Logf("all streams open again and snapshots published %v after the restart (warm-up %v)", time.Since(restarted).Round(time.Millisecond), restartWarmUp)
	// A new configuration would be sent and applied right after the
	// rebuild; give it time to show.
	time.Sleep(2 * time.Second)

	load.stop()
	var res loadResult
	if err := json.Unmarshal(load.out.Bytes(), &res); err != nil {
		t.Fatalf("background load: %q: %v", load.out.Bytes(), err)
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
	w.weftctl("apply", "-f", filepath.Join("testdata", "mesh.yaml"))
	testutil.Eventually(t, 60*time.Second, func() error {
		if res := w.load(t, 50, 4); res.Counts["blue"] == 0 {
			return fmt.Errorf("no blue answer yet: %v", res.Counts)
		}
		return nil
	})
	t.Logf("the restarted controller's change (0/100 -> 90/10) was in force %v after the apply", time.Since(t0).Round(time.Millisecond))
}
