// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/test/meshbed"
	"github.com/weft-mesh/weft/test/netsim"
)

// Names of the mesh (test/demo/mesh.yaml).
const (
	colorURL = "http://color.shop.svc.cluster.local:8080"
	grpcAddr = "color-grpc.shop.svc.cluster.local:9090"
	echoAddr = "echo.shop.svc.cluster.local:17000"
	frontID  = "mesh/demo/virtualNode/front_shop"
	manifest = "test/demo/mesh.yaml"
)

// tour is the demo: the mesh and what the steps share.
type tour struct {
	tb    testing.TB
	out   io.Writer
	root  string // the repository
	begin time.Time

	bed              *meshbed.Bed
	front, teller    *netsim.Workload
	red, blue, green *netsim.Workload
	grpc, echo       *netsim.Workload
	redP, grpcP      *netsim.Process
	pids             []int
	finished         bool // the tour's steps all ran
	cgroup, tmp      string
}

func newTour(tb testing.TB, out io.Writer) *tour {
	tb.Helper()
	return &tour{tb: tb, out: out, begin: time.Now()}
}

func (t *tour) run(o opts) {
	tb := t.tb
	root, err := repoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	t.root = root
	fmt.Fprintf(t.out, "%sweft demo%s: an App Mesh service mesh, without sidecars, on two simulated nodes of this machine\n",
		t.esc("\033[1m"), t.esc("\033[0m"))
	t.setUp()
	steps := []struct {
		title string
		fn    func()
	}{
		{"The canary: route canary splits color 90/10 between blue and green", t.canary},
		{"A live weight shift: 50/50, then 0/100", t.weightShift},
		{"A retry rescues a flaky backend", t.retry},
		{"A timeout cuts a slow backend short", t.timeout},
		{"gRPC: a call routed by service and method, retried on UNAVAILABLE", t.grpcRetry},
		{"DROP_ALL: a meshed workload cannot connect where its mesh does not allow", t.dropAll},
		{"A TCP route on the pure eBPF path: balanced in the kernel, no proxy", t.tcpL4},
		{"See for yourself: metrics, flows and the datapath", t.commands},
	}
	for i, s := range steps {
		t.title(fmt.Sprintf("[%d/%d] %s", i+1, len(steps), s.title))
		s.fn()
	}
	t.finished = true
	fmt.Fprintf(t.out, "\n%sThe set-up and the tour took %v.%s\n", t.esc("\033[1m"), time.Since(t.begin).Round(100*time.Millisecond), t.esc("\033[0m"))
	if o.once {
		fmt.Fprintln(t.out, "--once: stopping the mesh.")
		return
	}
	// A little traffic keeps the counters moving while you look.
	meshbed.Start(tb, "http-load (background)", t.bed.Client.Command(context.Background(), t.front, "http-load",
		"-url", colorURL+"/", "-until-signal", "-c", "1", "-pause", "500ms"))
	fmt.Fprintln(t.out, "\nThe mesh keeps running (front calls color twice a second); the commands above work as printed.")
	fmt.Fprintln(t.out, "Press Ctrl-C to stop it and remove everything it created.")
	<-tb.Context().Done()
}

// --- set-up --------------------------------------------------------------------

func (t *tour) setUp() {
	tb := t.tb
	t.section("Setting up")
	start := time.Now()
	bins := meshbed.BuildBinaries(tb, true)
	t.ok(start, "built weft-controller, weft-agent, weft-proxy and weftctl into %s", filepath.Dir(bins.Agent))

	start = time.Now()
	b := meshbed.New(tb, bins)
	t.bed = b
	t.cgroup, t.tmp = b.Net.CgroupPath, filepath.Dir(b.Dir)
	t.front = b.AddPod(b.A, "front", "demo", "front_shop", 8080)
	t.teller = b.AddPod(b.A, "teller", "vault", "teller_vault", 8080)
	t.red = b.AddPod(b.B, "red", "demo", "red_shop", 8080)
	t.blue = b.AddPod(b.B, "blue", "demo", "blue_shop", 8080)
	t.green = b.AddPod(b.B, "green", "demo", "green_shop", 8080)
	t.grpc = b.AddPod(b.B, "color-grpc", "demo", "color-grpc_shop", 9090)
	t.echo = b.AddPod(b.B, "echo", "demo", "echo_shop", 7000)
	t.ok(start, "simulated network: nodes node-a %s, node-b %s and ctrl %s on a bridge, each in a network namespace and a cgroup of its own (under %s)",
		b.A.Node.Addr, b.B.Node.Addr, b.CtrlIP(), t.cgroup)
	for _, mn := range []*meshbed.Node{b.A, b.B} {
		var pods []string
		for _, p := range mn.Pods {
			pods = append(pods, fmt.Sprintf("%s %s (%s)", p.WL.Name, p.WL.Addr, p.VirtualNode))
		}
		fmt.Fprintf(t.out, "      %s pods: %s\n", mn.Node.Name, strings.Join(pods, ", "))
	}
	fmt.Fprintf(t.out, "      $DEMO is %s (configurations, the controller's bbolt store, caches)\n", b.Dir)

	start = time.Now()
	ctrl := b.StartController(0)
	t.pids = append(t.pids, ctrl.Pid())
	t.ok(start, "weft-controller pid %d on ctrl: App Mesh API %s, xDS %s (bearer token $DEMO/token)", ctrl.Pid(), b.APIURL(), b.XDSAddr())

	fmt.Fprintln(t.out, "\n  Applying the App Mesh resources (Kubernetes form, as they are) with weftctl, from the ctrl node:")
	out := t.weftctl("apply", "-f", filepath.Join(t.root, manifest))
	fmt.Fprintf(t.out, "  %s %d resources created in one transaction\n", t.check(), strings.Count(out, " created"))

	start = time.Now()
	for _, s := range []struct {
		pod  *netsim.Workload
		prog string
		args []string
	}{
		{t.red, "color-server", []string{"-name", "red"}},
		{t.blue, "color-server", []string{"-name", "blue"}},
		{t.green, "color-server", []string{"-name", "green"}},
		{t.grpc, "grpc-server", nil},
		{t.echo, "echo-server", []string{"-listen", ":7000"}},
	} {
		p := b.StartServer(s.pod, s.prog, s.args...)
		t.pids = append(t.pids, p.Pid())
		switch s.pod {
		case t.red:
			t.redP = p
		case t.grpc:
			t.grpcP = p
		}
	}
	t.ok(start, "workloads on node-b: red, blue and green (HTTP :8080), color-grpc (gRPC :9090), echo (TCP :7000)")

	start = time.Now()
	b.StartNodes()
	for _, mn := range []*meshbed.Node{b.A, b.B} {
		t.pids = append(t.pids, mn.Agent.Pid(), mn.Proxy.Pid())
		fmt.Fprintf(t.out, "      %s: weft-agent pid %d (eBPF on cgroup %s), weft-proxy pid %d (%s)\n",
			mn.Node.Name, mn.Agent.Pid(), filepath.Base(mn.Node.CgroupPath), mn.Proxy.Pid(), mn.ProxyAddr)
	}
	t.ok(start, "agents ready, proxies subscribed to their pods' configurations over ADS")

	// The nodes learn each other's endpoints through the controller's
	// registry: wait until front reaches all three services by name.
	start = time.Now()
	ctx := tb.Context()
	meshbed.Eventually(tb, 30*time.Second, func() error {
		var res meshbed.LoadResult
		if err := b.Client.Run(ctx, t.front, &res, "http-load", "-url", colorURL+"/", "-n", "1", "-c", "1"); err != nil {
			return err
		}
		if res.Errors > 0 {
			return fmt.Errorf("front cannot reach color yet: %s", res.FirstError)
		}
		var call meshbed.CallResult
		if err := b.Client.Run(ctx, t.front, &call, "grpc-call", "-addr", grpcAddr, "-call", "ready"); err != nil {
			return err
		}
		if call.Code != "OK" {
			return fmt.Errorf("front cannot call color-grpc yet: %s %s", call.Code, call.Message)
		}
		_, err := b.Client.RunText(ctx, t.front, "dial", "-message", "ready", echoAddr)
		return err
	})
	t.ok(start, "front reaches color (HTTP), color-grpc (gRPC) and echo (TCP) by name")
	fmt.Fprintf(t.out, "  The mesh is up, %v after the start.\n", time.Since(t.begin).Round(100*time.Millisecond))
}

// --- the steps -------------------------------------------------------------------

func (t *tour) canary() {
	am := t.agentMetrics(t.bed.A)
	res := t.load("/", 1000, 8, -1)
	t.requests(1000, "/")
	t.bars(res.Counts, "blue", "green")
	t.mustAllOK(res, 1000)
	l7 := t.agentMetrics(t.bed.A).Sum("weft_agent_decisions_total", "decision", "redirected_l7") - am.Sum("weft_agent_decisions_total", "decision", "redirected_l7")
	t.okf("%d answers of 200 in %s; node-a's eBPF program sent front's %v connections to node-a's proxy (redirected_l7), which picked blue or green per request",
		1000, res.Elapsed, l7)
}

func (t *tour) weightShift() {
	for _, w := range [][2]int{{50, 50}, {0, 100}} {
		file := t.canaryFile(w[0], w[1])
		t0 := time.Now()
		t.weftctl("apply", "-f", file)
		applied := time.Since(t0)
		var at time.Time
		meshbed.Eventually(t.tb, 30*time.Second, func() error {
			var ok bool
			if at, ok = t.bed.A.Proxy.FirstApplied(frontID, t0); !ok {
				return errors.New("node-a's proxy has not applied front's new configuration yet")
			}
			return nil
		})
		fmt.Fprintf(t.out, "    weftctl returned after %v; node-a's proxy applied the new route %v after the apply started (pushed over ADS)\n",
			applied.Round(time.Millisecond), at.Sub(t0).Round(time.Millisecond))
		res := t.load("/", 400, 8, -1)
		t.requests(400, "/")
		t.bars(res.Counts, "blue", "green")
		t.mustAllOK(res, 400)
		if w[0] == 0 && res.Counts["blue"] != 0 {
			t.tb.Fatalf("blue answered %d requests at weight 0", res.Counts["blue"])
		}
	}
	t.okf("the split followed each change without a restart or a failed request")
}

func (t *tour) retry() {
	pm := t.proxyMetrics(t.bed.A)
	seen := len(t.redP.Stdout())
	fmt.Fprintln(t.out, "    route flaky (prefix /flaky → red): retryPolicy maxRetries 2 on server-error;")
	fmt.Fprintln(t.out, "    red answers 503 to the first attempt of every request (header x-fail: 1)")
	res := t.load("/flaky", 20, 4, 1)
	t.requests(20, "/flaky")
	attempts := map[string]int{}
	for line := range strings.Lines(string(t.redP.Stdout()[seen:])) {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "flaky" {
			attempts[strings.TrimPrefix(f[3], "code=")]++
		}
	}
	retries := t.proxyMetrics(t.bed.A).Sum("weft_proxy_retries_total", "node", frontID) - pm.Sum("weft_proxy_retries_total", "node", frontID)
	fmt.Fprintf(t.out, "    the client saw:  %s\n", codes(res.Codes))
	fmt.Fprintf(t.out, "    red saw:         %d attempts: %d × 503, %d × 200\n", attempts["503"]+attempts["200"], attempts["503"], attempts["200"])
	fmt.Fprintf(t.out, "    node-a's proxy:  weft_proxy_retries_total{node=%q} +%v\n", frontID, retries)
	t.mustAllOK(res, 20)
	if retries < 20 {
		t.tb.Fatalf("the proxy counted %v retries, want 20", retries)
	}
	t.okf("every request failed once at red and succeeded on the proxy's retry: the client never saw the 503")
}

func (t *tour) timeout() {
	fmt.Fprintln(t.out, "    route slow (prefix /slow → red): timeout.perRequest 500ms; red takes 5s to answer /slow")
	res := t.load("/slow", 3, 3, -1)
	t.requests(3, "/slow")
	fmt.Fprintf(t.out, "    the client saw:  %s, the slowest after %s\n", codes(res.Codes), res.Slowest)
	if res.Codes["504"] != 3 {
		t.tb.Fatalf("answers %v, want 3 × 504", res.Codes)
	}
	t.okf("the proxy gave up after the route's 500ms and answered 504 (upstream request timeout) instead of waiting 5s")
}

func (t *tour) grpcRetry() {
	fmt.Fprintln(t.out, "    route get-color (grpcRoute color.ColorService/GetColor → color-grpc): retryPolicy maxRetries 3 on unavailable;")
	fmt.Fprintln(t.out, "    color-grpc answers UNAVAILABLE to the first N attempts of a call (metadata x-fail: N)")
	for _, c := range []struct {
		call     string
		fail     int
		wantCode string
	}{{"demo-fail-2", 2, "OK"}, {"demo-fail-5", 5, "Unavailable"}} {
		pm := t.proxyMetrics(t.bed.A)
		var res meshbed.CallResult
		if err := t.bed.Client.Run(t.tb.Context(), t.front, &res, "grpc-call", "-addr", grpcAddr, "-call", c.call, "-fail", strconv.Itoa(c.fail)); err != nil {
			t.tb.Fatal(err)
		}
		var seen []string
		for line := range strings.Lines(string(t.grpcP.Stdout())) {
			if f := strings.Fields(line); len(f) == 5 && f[0] == "call" && f[1] == "id="+c.call {
				seen = append(seen, strings.TrimPrefix(f[4], "code="))
			}
		}
		retries := t.proxyMetrics(t.bed.A).Sum("weft_proxy_retries_total", "node", frontID) - pm.Sum("weft_proxy_retries_total", "node", frontID)
		fmt.Fprintf(t.out, "    front → /color.ColorService/GetColor on %s (x-fail: %d)\n", grpcAddr, c.fail)
		reply := res.Reply
		if reply == "" {
			reply = res.Message
		}
		fmt.Fprintf(t.out, "      the client got %s (%q); color-grpc saw %d attempts: %s; node-a's proxy retried %v times\n",
			res.Code, reply, len(seen), strings.Join(seen, ", "), retries)
		if want := min(c.fail+1, 4); res.Code != c.wantCode || len(seen) != want || retries != float64(want-1) {
			t.tb.Fatalf("call %s: %s after %d attempts and %v retries, want %s after %d", c.call, res.Code, len(seen), retries, c.wantCode, want)
		}
	}
	t.okf("the proxy read grpc-status UNAVAILABLE and retried: 2 failures never reached the client; after 5 it gave up at the 4th attempt (maxRetries 3)")
}

func (t *tour) dropAll() {
	target := netip.AddrPortFrom(t.blue.Addr, 8080).String()
	fmt.Fprintf(t.out, "    teller (mesh vault, egressFilter DROP_ALL, no backends) and front (mesh demo, ALLOW_ALL)\n")
	fmt.Fprintf(t.out, "    both connect to %s, blue's pod address, which no backend of theirs names\n", target)
	am := t.agentMetrics(t.bed.A)
	var denied, allowed meshbed.ConnectResult
	if err := t.bed.Client.Run(t.tb.Context(), t.teller, &denied, "connect", target); err != nil {
		t.tb.Fatal(err)
	}
	if err := t.bed.Client.Run(t.tb.Context(), t.front, &allowed, "connect", target); err != nil {
		t.tb.Fatal(err)
	}
	d := t.agentMetrics(t.bed.A).Sum("weft_agent_decisions_total", "decision", "denied_egress") - am.Sum("weft_agent_decisions_total", "decision", "denied_egress")
	fmt.Fprintf(t.out, "    teller: connect(%s) = %s (%s) after %s\n", target, orOK(denied), denied.Error, denied.Elapsed)
	fmt.Fprintf(t.out, "    front:  connect(%s) = %s after %s\n", target, orOK(allowed), allowed.Elapsed)
	fmt.Fprintf(t.out, "    node-a's agent: weft_agent_decisions_total{decision=\"denied_egress\"} +%v\n", d)
	if denied.OK || denied.Errno != "EPERM" || !allowed.OK {
		t.tb.Fatalf("teller: %+v, front: %+v; want EPERM for teller only", denied, allowed)
	}
	t.okf("the cgroup connect hook refused teller's connect before any packet left the pod")
}

func (t *tour) tcpL4() {
	am, pm := t.agentMetrics(t.bed.A), t.proxyMetrics(t.bed.A)
	fmt.Fprintf(t.out, "    front dials %s (router port 17000 → echo's pod on port 7000)\n", echoAddr)
	out, err := t.bed.Client.RunText(t.tb.Context(), t.front, "dial", "-message", "hello-echo", echoAddr)
	if err != nil {
		t.tb.Fatal(err)
	}
	got := map[string]string{}
	for line := range strings.Lines(out) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			got[k] = v
		}
	}
	aa, pa := t.agentMetrics(t.bed.A), t.proxyMetrics(t.bed.A)
	delta := func(a, b meshbed.Metrics, name string, labels ...string) float64 {
		return b.Sum(name, labels...) - a.Sum(name, labels...)
	}
	l4 := delta(am, aa, "weft_agent_decisions_total", "decision", "balanced_l4")
	l7 := delta(am, aa, "weft_agent_decisions_total", "decision", "redirected_l7")
	tcp := delta(pm, pa, "weft_proxy_tcp_connections_total")
	fmt.Fprintf(t.out, "    front's socket: local %s, remote %s (the service address: getpeername undoes the rewrite)\n", got["local"], got["remote"])
	fmt.Fprintf(t.out, "    echo's server saw peer %s (front itself: no proxy in between) and echoed %q\n", got["peer"], got["echo"])
	fmt.Fprintf(t.out, "    node-a's agent: balanced_l4 +%v, redirected_l7 +%v;  node-a's proxy: weft_proxy_tcp_connections_total +%v\n", l4, l7, tcp)
	if got["peer"] != got["local"] || got["echo"] != "hello-echo" || l4 < 1 || l7 != 0 || tcp != 0 {
		t.tb.Fatalf("dial: %v; balanced_l4 +%v, redirected_l7 +%v, proxy +%v: want the L4 path only", got, l4, l7, tcp)
	}
	t.okf("the connect hook picked echo's pod and rewrote the destination in the kernel; the proxy saw nothing")
}

func (t *tour) commands() {
	b := t.bed
	agentNS := func(mn *meshbed.Node) string { return fmt.Sprintf("nsenter --net=/proc/%d/ns/net", mn.Agent.Pid()) }
	weftctl := b.Bins.Weftctl
	fmt.Fprintln(t.out, "    The nodes' admin ports listen on 127.0.0.1 inside each node's network namespace (netsim's")
	fmt.Fprintln(t.out, "    namespaces have no name, so `ip netns exec` does not apply): enter one by a process's pid.")
	for _, c := range []struct{ what, cmd string }{
		{"node-a's agent: the datapath's decisions", agentNS(b.A) + " curl -s http://" + meshbed.AgentHTTP + "/metrics | grep '^weft_agent_decisions_total'"},
		{
			"node-a's agent: flows seen by the kernel (TCP telemetry per source node and destination service)",
			agentNS(b.A) + " curl -s http://" + meshbed.AgentHTTP + "/metrics | grep '^weft_agent_tcp_connections_opened_total'",
		},
		{"node-a's proxy: requests per route and code class (series that moved)", fmt.Sprintf("nsenter --net=/proc/%d/ns/net curl -s http://%s/metrics | grep '^weft_proxy_requests_total' | grep -v ' 0$'", b.A.Proxy.Pid(), meshbed.ProxyAdmin)},
		{"node-a's datapath maps", agentNS(b.A) + " " + weftctl + " datapath dump --agent http://" + meshbed.AgentHTTP},
		{"the controller, from its node", fmt.Sprintf("nsenter --net=/proc/%d/ns/net %s --server %s --token-file %s get virtualnodes --mesh demo",
			b.Ctrl.Pid(), weftctl, b.APIURL(), b.Token)},
	} {
		fmt.Fprintf(t.out, "\n    # %s\n    $ %s\n", c.what, c.cmd)
		out, err := exec.CommandContext(t.tb.Context(), "bash", "-o", "pipefail", "-c", c.cmd).CombinedOutput()
		if err != nil {
			t.tb.Fatalf("%s: %v\n%s", c.cmd, err, out)
		}
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		const most = 8
		for i, l := range lines {
			if i == most {
				fmt.Fprintf(t.out, "      … (%d more lines)\n", len(lines)-most)
				break
			}
			fmt.Fprintf(t.out, "      %s\n", l)
		}
	}
	fmt.Fprintln(t.out)
	t.okf("every command above was run as printed")
}

// --- helpers -----------------------------------------------------------------------

// load runs http-load in front against color's path.
func (t *tour) load(path string, n, c, fail int) meshbed.LoadResult {
	var res meshbed.LoadResult
	if err := t.bed.Client.Run(t.tb.Context(), t.front, &res, "http-load", "-url", colorURL+path,
		"-n", strconv.Itoa(n), "-c", strconv.Itoa(c), "-fail", strconv.Itoa(fail)); err != nil {
		t.tb.Fatal(err)
	}
	return res
}

func (t *tour) requests(n int, path string) {
	fmt.Fprintf(t.out, "    front → GET %s%s × %d\n", colorURL, path, n)
}

func (t *tour) mustAllOK(res meshbed.LoadResult, n int) {
	total := 0
	for _, c := range res.Counts {
		total += c
	}
	if res.Errors != 0 || total != n {
		t.tb.Fatalf("%d answers, %d errors (first: %s); want %d answers of 200", total, res.Errors, res.FirstError, n)
	}
}

// bars prints counts as a bar chart, in the order of names.
func (t *tour) bars(counts map[string]int, names ...string) {
	total := 0
	for _, c := range counts {
		total += c
	}
	const width = 50
	for _, name := range names {
		c := counts[name]
		n := 0
		if total > 0 {
			n = (c*width + total/2) / total
		}
		pct := 0.0
		if total > 0 {
			pct = 100 * float64(c) / float64(total)
		}
		fmt.Fprintf(t.out, "      %-6s %s%s%s%s %4d  %5.1f%%\n", name, t.color(name), strings.Repeat("█", n), t.esc("\033[0m"), strings.Repeat(" ", width-n), c, pct)
	}
}

// canaryFile writes the mesh with route canary's weights set and returns
// its path.
func (t *tour) canaryFile(blue, green int) string {
	b, err := os.ReadFile(filepath.Join(t.root, manifest))
	if err != nil {
		t.tb.Fatal(err)
	}
	s := string(b)
	for _, r := range [][2]string{
		{"{virtualNodeRef: {name: blue}, weight: 90}", fmt.Sprintf("{virtualNodeRef: {name: blue}, weight: %d}", blue)},
		{"{virtualNodeRef: {name: green}, weight: 10}", fmt.Sprintf("{virtualNodeRef: {name: green}, weight: %d}", green)},
	} {
		if !strings.Contains(s, r[0]) {
			t.tb.Fatalf("%s has no %q", manifest, r[0])
		}
		s = strings.Replace(s, r[0], r[1], 1)
	}
	file := filepath.Join(t.bed.Dir, fmt.Sprintf("mesh-%d-%d.yaml", blue, green))
	meshbed.WriteFile(t.tb, file, s)
	return file
}

// weftctl runs weftctl from the ctrl node and prints the command and its
// output (lines that say "unchanged" are counted, not printed).
func (t *tour) weftctl(args ...string) string {
	shown := append([]string{"weftctl", "--server", t.bed.APIURL(), "--token-file", "$DEMO/token"}, args...)
	fmt.Fprintf(t.out, "    $ %s\n", t.short(strings.Join(shown, " ")))
	out := t.bed.Weftctl(args...)
	unchanged := 0
	for line := range strings.Lines(out) {
		if strings.HasSuffix(strings.TrimSpace(line), " unchanged") {
			unchanged++
			continue
		}
		fmt.Fprintf(t.out, "      %s\n", t.short(strings.TrimRight(line, "\n")))
	}
	if unchanged > 0 {
		fmt.Fprintf(t.out, "      (%d resources unchanged)\n", unchanged)
	}
	return out
}

// short replaces the repository's and the mesh directory's paths.
func (t *tour) short(s string) string {
	s = strings.ReplaceAll(s, t.bed.Dir, "$DEMO")
	return strings.ReplaceAll(s, t.root+"/", "")
}

func (t *tour) agentMetrics(mn *meshbed.Node) meshbed.Metrics {
	m, err := mn.AgentMetrics(t.tb.Context())
	if err != nil {
		t.tb.Fatal(err)
	}
	return m
}

func (t *tour) proxyMetrics(mn *meshbed.Node) meshbed.Metrics {
	m, err := mn.ProxyMetrics(t.tb.Context())
	if err != nil {
		t.tb.Fatal(err)
	}
	return m
}

// reportCleanup checks, after the cleanup, that nothing the demo made is
// left, and says so.
func (t *tour) reportCleanup() {
	if t.cgroup == "" {
		return
	}
	var left []string
	for _, p := range t.pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); err == nil {
			left = append(left, fmt.Sprintf("process %d", p))
		}
	}
	for _, path := range []string{t.cgroup, t.tmp} {
		if _, err := os.Stat(path); err == nil {
			left = append(left, path)
		}
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), t.tmp) {
		left = append(left, "mounts under "+t.tmp)
	}
	if len(left) > 0 {
		fmt.Fprintf(t.out, "Left behind: %s\n", strings.Join(left, ", "))
		return
	}
	fmt.Fprintf(t.out, "%s Stopped %d processes and removed the namespaces, the cgroup tree %s, the bpffs mounts and %s.\n",
		t.check(), len(t.pids), t.cgroup, t.tmp)
}

func (t *tour) section(s string) {
	fmt.Fprintf(t.out, "\n%s== %s ==%s\n", t.esc("\033[1m"), s, t.esc("\033[0m"))
}

func (t *tour) title(s string) {
	fmt.Fprintf(t.out, "\n%s%s%s\n", t.esc("\033[1m"), s, t.esc("\033[0m"))
}

func (t *tour) check() string { return t.esc("\033[32m") + "✓" + t.esc("\033[0m") }

// ok prints a done line with the time since start.
func (t *tour) ok(start time.Time, format string, args ...any) {
	fmt.Fprintf(t.out, "  %s %s %s(%v)%s\n", t.check(), fmt.Sprintf(format, args...), t.esc("\033[2m"),
		time.Since(start).Round(10*time.Millisecond), t.esc("\033[0m"))
}

func (t *tour) okf(format string, args ...any) {
	fmt.Fprintf(t.out, "  %s %s\n", t.check(), fmt.Sprintf(format, args...))
}

func (t *tour) color(name string) string {
	switch name {
	case "red":
		return t.esc("\033[31m")
	case "blue":
		return t.esc("\033[34m")
	case "green":
		return t.esc("\033[32m")
	}
	return ""
}

// esc returns a terminal escape sequence, or nothing when the output is not
// a terminal.
func (t *tour) esc(seq string) string {
	if f, ok := t.out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return seq
		}
	}
	return ""
}

// codes formats status code counts: "200 × 20".
func codes(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s × %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "no answer"
	}
	return strings.Join(parts, ", ")
}

func orOK(r meshbed.ConnectResult) string {
	if r.OK {
		return "connected"
	}
	if r.Errno != "" {
		return r.Errno
	}
	return "failed"
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, manifest)); err != nil {
				return "", fmt.Errorf("%s: %w", dir, err)
			}
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the demo from inside the weft repository")
		}
		dir = parent
	}
}
