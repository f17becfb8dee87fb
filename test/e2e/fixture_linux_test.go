// SPDX-License-Identifier: Apache-2.0

//go:build e2e && linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/agent"
	"github.com/weft-mesh/weft/test/netsim"
	"github.com/weft-mesh/weft/test/testutil"
)

// The fixed parts of the topology (see doc.go).
const (
	meshName    = "demo"
	apiPort     = 7480
	xdsPort     = 7481
	proxyPort   = 15001
	agentHTTP   = "127.0.0.1:9465"  // in each node's netns
	proxyAdmin  = "127.0.0.1:15090" // in each node's netns
	dnsUpstream = "127.0.0.1:5353"  // in each node's netns; nothing listens
	registryTTL = 9 * time.Second
	// restartWarmUp is the warm-up of the restarted controller: longer than
	// an agent needs to register again (a renewal every third of the TTL,
	// after gRPC's reconnect backoff), so that no proxy is ever told that
	// its endpoints went away.
	restartWarmUp = 8 * time.Second
)

// binaries are the weft commands the test runs, built once.
type binaries struct{ controller, agent, proxy string }

// buildBinaries builds weft-controller, weft-agent and weft-proxy into a
// temporary directory with one go build. The builds are plain, also when
// the test binary has -race: race-instrumented proxies and agents are
// several times slower, which would stretch the test well beyond its
// budget, and the race detector covers those packages in their own tests.
func buildBinaries(t *testing.T) binaries {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		testutil.SkipOrFail(t, "the end-to-end tests build the weft commands and need the go command: %v", err)
	}
	dir := t.TempDir()
	args := []string{
		"build", "-o", dir + "/",
		"github.com/weft-mesh/weft/cmd/weft-controller",
		"github.com/weft-mesh/weft/cmd/weft-agent",
		"github.com/weft-mesh/weft/cmd/weft-proxy",
	}
	start := time.Now()
	if b, err := exec.CommandContext(t.Context(), goTool, args...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	t.Logf("built weft-controller, weft-agent and weft-proxy in %v", time.Since(start).Round(time.Millisecond))
	return binaries{
		controller: filepath.Join(dir, "weft-controller"),
		agent:      filepath.Join(dir, "weft-agent"),
		proxy:      filepath.Join(dir, "weft-proxy"),
	}
}

// --- processes -------------------------------------------------------------

// process is one run of a weft binary (or a long-running test program) in a
// workload.
type process struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	out    *syncBuffer // stdout and stderr
	done   chan struct{}
	err    error
	killed atomic.Bool
}

// start starts cmd, whose output it collects. The test's cleanup stops it
// with SIGTERM (SIGKILL after 10s) and reports an unclean exit of a process
// that was not killed on purpose; a failed test logs its output.
func start(t *testing.T, name string, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{t: t, name: name, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s (pid %d) ended with %v; its output (the end of it):\n%s", name, cmd.Process.Pid, p.err, tail(p.out.Bytes(), 48<<10))
		}
	})
	return p
}

// exited returns an error when the process has ended.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %w\n%s", p.name, p.err, tail(p.out.Bytes(), 16<<10))
	default:
		return nil
	}
}

// kill sends SIGKILL and waits until the process is reaped.
func (p *process) kill() {
	p.t.Helper()
	p.killed.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Fatalf("kill %s: %v", p.name, err)
	}
	<-p.done
}

// stop ends the process with SIGTERM, SIGKILL after 10s.
func (p *process) stop() {
	t := p.t
	t.Helper()
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not stop within 10s of SIGTERM", p.name)
			p.killed.Store(true)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	if !p.killed.Load() && p.err != nil {
		t.Errorf("%s exited with %v", p.name, p.err)
	}
}

// logLines returns the process's JSON log lines whose msg is msg.
func (p *process) logLines(msg string) []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(string(p.out.Bytes()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func tail(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return append([]byte("...\n"), b[len(b)-n:]...)
}

// waitOutput waits until p has printed a line starting with prefix.
func waitOutput(t *testing.T, p *netsim.Process, prefix string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		for line := range strings.SplitSeq(string(p.Stdout()), "\n") {
			if strings.HasPrefix(line, prefix) {
				return nil
			}
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited (%w) before printing %q; stderr: %s", p.Name, p.Wait(), prefix, p.Stderr())
		default:
		}
		return fmt.Errorf("%s has not printed %q yet", p.Name, prefix)
	})
}

// --- HTTP inside a namespace and metrics ------------------------------------

// nsHTTPClient returns a client whose connections are made inside ns.
func nsHTTPClient(ns *testutil.NetNS) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var conn net.Conn
				err := ns.Do(func() error {
					var err error
					conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
					return err
				})
				return conn, err
			},
		},
	}
}

// get fetches url with c.
func get(ctx context.Context, c *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metrics are the samples of one scrape, keyed by the series as the text
// format prints it.
type metrics map[string]float64

// scrape fetches and parses the Prometheus text at url.
func scrape(ctx context.Context, c *http.Client, url string) (metrics, error) {
	code, body, err := get(ctx, c, url)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d", url, code)
	}
	m := metrics{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// sum adds up the series of name that carry every label given as "key",
// "value" pairs.
func (m metrics) sum(name string, labels ...string) float64 {
	var total float64
	for series, v := range m {
		n, rest, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(","+rest, ","+labels[i]+"="+strconv.Quote(labels[i+1])) {
				ok = false
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// matching returns the series of name whose text contains s.
func (m metrics) matching(name, s string) []string {
	var out []string
	for series := range m {
		if n, _, _ := strings.Cut(series, "{"); n == name && strings.Contains(series, s) {
			out = append(out, series)
		}
	}
	slices.Sort(out)
	return out
}

// --- files -----------------------------------------------------------------

// writeYAML writes v (JSON-tagged) as YAML.
func writeYAML(t *testing.T, path string, v any) {
	t.Helper()
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(y))
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// relCgroup is w's cgroup relative to its node's, as the agent's
// configuration names it.
func relCgroup(t *testing.T, w *netsim.Workload) string {
	t.Helper()
	rel, err := filepath.Rel(w.Node.CgroupPath, w.CgroupPath)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.ToSlash(rel)
}

// syncBuffer is a bytes buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.buf)
}

// --- the mesh ---------------------------------------------------------------

// meshNode is one simulated node with its agent and proxy.
type meshNode struct {
	node     *netsim.Node
	agentWL  *netsim.Workload // host network, the agent's own cgroup
	proxyWL  *netsim.Workload // host network, exempt from redirection
	agent    *process
	proxy    *process
	http     *http.Client // dials from the node's netns
	dir      string
	pods     []podSpec
	pinPath  string
	proxyAdr netip.AddrPort
}

// podSpec is a meshed workload of a node.
type podSpec struct {
	wl          *netsim.Workload
	virtualNode string
	ports       []uint32
}

// agentConfig is the node's weft-agent configuration: ADS from the
// controller, the proxy on the node's fabric address (pods reach it
// through their default route) and exempt by its cgroup, DNS on the
// node's address with an upstream that answers nothing, and the node's
// pods as workloads registered at their own addresses.
func (mn *meshNode) agentConfig(t *testing.T, xds netip.AddrPort, tokenFile string) agent.Config {
	t.Helper()
	cfg := agent.Config{
		NodeName:      mn.node.Name,
		CgroupRoot:    mn.node.CgroupPath,
		PinPath:       mn.pinPath,
		MetricsListen: agentHTTP,
		XDS: agent.XDSConfig{
			Server:    xds.String(),
			CacheFile: filepath.Join(mn.dir, "agent-xds-cache.json"),
			TokenFile: tokenFile,
		},
		Proxy:     agent.ProxyConfig{Address: mn.proxyAdr.String(), CgroupPath: relCgroup(t, mn.proxyWL)},
		DNS:       agent.DNSConfig{Listen: netip.AddrPortFrom(mn.node.Addr, 53).String(), Upstreams: []string{dnsUpstream}},
		Telemetry: agent.TelemetryConfig{Interval: agent.Duration(time.Second)},
	}
	for _, p := range mn.pods {
		cfg.Workloads = append(cfg.Workloads, agent.VMWorkload{
			CgroupPath: relCgroup(t, p.wl), Mesh: meshName, VirtualNode: p.virtualNode,
			ListenerPorts: p.ports, Addresses: []string{p.wl.Addr.String()},
		})
	}
	return cfg
}

// agentMetrics scrapes the node's agent.
func (mn *meshNode) agentMetrics(ctx context.Context) (metrics, error) {
	return scrape(ctx, mn.http, "http://"+agentHTTP+"/metrics")
}

// proxyMetrics scrapes the node's proxy.
func (mn *meshNode) proxyMetrics(ctx context.Context) (metrics, error) {
	return scrape(ctx, mn.http, "http://"+proxyAdmin+"/metrics")
}

// clientEnv is the resolver configuration of the client programs (see
// withResolver).
type clientEnv struct {
	resolvConf, nsswitch, hostMntNS string
}

func newClientEnv(t *testing.T, dir string) clientEnv {
	t.Helper()
	ce := clientEnv{resolvConf: filepath.Join(dir, "resolv.conf"), nsswitch: filepath.Join(dir, "nsswitch.conf")}
	writeFile(t, ce.resolvConf, "# written by test/e2e: nothing answers here; the datapath redirects to the node's agent\nnameserver 192.0.2.53\noptions timeout:2 attempts:2\n")
	writeFile(t, ce.nsswitch, "hosts: files dns\n")
	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	ce.hostMntNS = ns
	return ce
}

// command returns the program prog of w set up to resolve names through
// its normal resolver path in a mount namespace of its own.
func (ce clientEnv) command(ctx context.Context, w *netsim.Workload, prog string, args ...string) *exec.Cmd {
	cmd := w.Program(ctx, prog, args...)
	cmd.SysProcAttr.Unshareflags = unix.CLONE_NEWNS
	cmd.Env = append(cmd.Env, envResolvConf+"="+ce.resolvConf, envNSSwitch+"="+ce.nsswitch, envHostMntNS+"="+ce.hostMntNS)
	return cmd
}

// run runs a client program to completion and decodes its JSON output into
// out.
func (ce clientEnv) run(ctx context.Context, w *netsim.Workload, out any, prog string, args ...string) error {
	cmd := ce.command(ctx, w, prog, args...)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s in %s: %w; stdout: %s; stderr: %s", prog, w, err, stdout.Bytes(), stderr.Bytes())
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		return fmt.Errorf("%s in %s: output %q: %w; stderr: %s", prog, w, stdout.Bytes(), err, stderr.Bytes())
	}
	return nil
}

// runText runs a client program to completion and returns its output.
func (ce clientEnv) runText(ctx context.Context, w *netsim.Workload, prog string, args ...string) (string, error) {
	cmd := ce.command(ctx, w, prog, args...)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return string(stdout.Bytes()), fmt.Errorf("%s in %s: %w; stderr: %s", prog, w, err, stderr.Bytes())
	}
	return string(stdout.Bytes()), nil
}
