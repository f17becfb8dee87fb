// SPDX-License-Identifier: Apache-2.0

package agent_test

// End-to-end tests of the real weft-agent: the cmd/weft-agent binary, built
// by the test (with -race when the test binary has it), runs as a process of
// its own on a simulated node (package test/netsim) with the real datapath
// and DNS responder, and real workload processes talk through it.
//
// The fixture of every test is one node:
//
//	node1 netns, cgroup <test>/node1 (the agent's cgroupRoot), bpffs node1.PinPath
//	  agent   host-network workload: the weft-agent process, in the node's
//	          netns and its own cgroup (like a systemd unit on a VM); it is
//	          not a meshed workload, so its own sockets pass untouched
//	  <pods>  the test's workloads, each with its netns and cgroup
//
// The agent's addresses are the node's fabric address (10.220.0.1): DNS on
// :53, the proxy's listener on :15001 (where the link-local dummy interface
// of a real node would be; pods reach it through their default route), and
// /metrics on 127.0.0.1:9465 inside the node's netns, which the test reaches
// with an HTTP client that dials from there.

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
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/agent"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
	"github.com/weft-mesh/weft/test/netsim"
	"github.com/weft-mesh/weft/test/testutil"
)

// TestMain lets the test binary run the workload programs of the
// end-to-end tests (see e2e_programs_linux_test.go) as processes in a
// workload's cgroup and network namespace.
func TestMain(m *testing.M) {
	netsim.Main(m, netsim.Programs{
		"echo-server": netsim.EchoServer,
		"dial":        netsim.Dial,
		"resolve":     resolveMain,
		"transfer":    transferMain,
		"hold":        holdMain,
		"churn":       churnMain,
	})
}

// The fixed parts of the fixture.
const (
	meshName      = "demo"
	meshID        = 1
	metricsListen = "127.0.0.1:9465" // inside the node's netns
	proxyPort     = 15001
)

// e2e is one test's node with the files of its agent.
type e2e struct {
	t    *testing.T
	net  *netsim.Net
	node *netsim.Node
	// agentWL is the host-network workload the agent process runs in.
	agentWL *netsim.Workload
	bin     string // the weft-agent binary
	dir     string
	// stateFile and configFile are the agent's inputs.
	stateFile, configFile string
	pinPath               string
	http                  *http.Client
}

// newE2E builds the node, the agent binary and the agent's directory. It
// writes no configuration; writeConfig and writeState do.
func newE2E(t *testing.T) *e2e {
	t.Helper()
	testutil.RequirePrivileged(t)
	testutil.SkipOnOldKernel(t, "6.6", "cgroup sock_addr links, bpf_set_retval, tcx")
	bin := buildAgent(t)
	n := netsim.New(t, netsim.Options{})
	node := n.AddNode("node1")
	dir := t.TempDir()
	e := &e2e{
		t:          t,
		net:        n,
		node:       node,
		agentWL:    node.AddWorkload("agent", netsim.WorkloadOptions{HostNetwork: true}),
		bin:        bin,
		dir:        dir,
		stateFile:  filepath.Join(dir, "state.json"),
		configFile: filepath.Join(dir, "agent.yaml"),
		pinPath:    filepath.Join(node.PinPath, "weft"),
		http:       nsHTTPClient(node.NS),
	}
	t.Cleanup(e.http.CloseIdleConnections)
	return e
}

// buildAgent builds cmd/weft-agent into the test's temporary directory,
// with -race when this test binary was built with it. The build cache makes
// this quick after the first time.
func buildAgent(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		testutil.SkipOrFail(t, "the end-to-end tests build cmd/weft-agent and need the go command: %v", err)
	}
	out := filepath.Join(t.TempDir(), "weft-agent")
	args := []string{"build", "-o", out}
	race := raceEnabled()
	if race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/weft-mesh/weft/cmd/weft-agent")
	start := time.Now()
	if b, err := exec.CommandContext(t.Context(), goTool, args...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	t.Logf("built weft-agent (race %t) in %v", race, time.Since(start).Round(time.Millisecond))
	return out
}

// raceEnabled reports whether this binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// agentConfig returns the agent configuration of the fixture: the node's
// cgroup as root, a pin directory in the node's bpffs, the test's state
// file, the proxy and DNS on the node's address, a 200ms telemetry
// interval. The DNS upstream is a port of the node's loopback where nothing
// listens (TestE2EDNS puts its fake upstream there), so that no test
// depends on the host's /etc/resolv.conf, the default.
func (e *e2e) agentConfig() agent.Config {
	return agent.Config{
		NodeName:      e.node.Name,
		CgroupRoot:    e.node.CgroupPath,
		PinPath:       e.pinPath,
		StateFile:     e.stateFile,
		MetricsListen: metricsListen,
		Proxy:         agent.ProxyConfig{Address: e.proxyAddr().String()},
		DNS:           agent.DNSConfig{Listen: e.dnsAddr().String(), Upstreams: []string{"127.0.0.1:5353"}},
		Telemetry:     agent.TelemetryConfig{Interval: agent.Duration(200 * time.Millisecond)},
	}
}

// proxyAddr is where the fixture's agent sends L7 connections.
func (e *e2e) proxyAddr() netip.AddrPort { return netip.AddrPortFrom(e.node.Addr, proxyPort) }

// dnsAddr is where the fixture's agent answers DNS.
func (e *e2e) dnsAddr() netip.AddrPort { return netip.AddrPortFrom(e.node.Addr, 53) }

// writeConfig writes cfg as the agent's YAML configuration file.
func (e *e2e) writeConfig(cfg agent.Config) {
	e.t.Helper()
	j, err := json.Marshal(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(e.configFile, y, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// writeState writes ns, for this node, as the agent's state file,
// atomically (a temporary file renamed over it), as docs/agent.md asks.
func (e *e2e) writeState(ns *nodeapiv1.NodeState) {
	e.t.Helper()
	ns.Node = e.node.Name
	b, err := protojson.Marshal(ns)
	if err != nil {
		e.t.Fatal(err)
	}
	tmp := e.stateFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.stateFile); err != nil {
		e.t.Fatal(err)
	}
}

// workload is w as a state file workload of the demo mesh.
func (e *e2e) workload(w *netsim.Workload, id uint32, virtualNode string) *nodeapiv1.Workload {
	e.t.Helper()
	rel, err := filepath.Rel(e.node.CgroupPath, w.CgroupPath)
	if err != nil {
		e.t.Fatal(err)
	}
	return &nodeapiv1.Workload{Id: id, CgroupPath: filepath.ToSlash(rel), Mesh: meshName, VirtualNode: virtualNode}
}

// demoMesh is the fixture's mesh.
func demoMesh(dropAll bool) *nodeapiv1.Mesh {
	return &nodeapiv1.Mesh{Name: meshName, Id: meshID, DropAll: dropAll}
}

// l4Service is a TCP service of the demo mesh on addr:port, balanced in the
// kernel to the backends.
func l4Service(name, addr string, port uint32, backends ...*nodeapiv1.Backend) *nodeapiv1.Service {
	return &nodeapiv1.Service{Name: name, Mesh: meshName, Addresses: []string{addr}, Ports: []*nodeapiv1.ServicePort{{
		Port: port, Protocol: nodeapiv1.Protocol_PROTOCOL_TCP, Mode: nodeapiv1.Mode_MODE_L4, Backends: backends,
	}}}
}

// l7Service is a TCP service of the demo mesh on addr:port that the
// datapath redirects to the node proxy.
func l7Service(name, addr string, port uint32) *nodeapiv1.Service {
	return &nodeapiv1.Service{Name: name, Mesh: meshName, Addresses: []string{addr}, Ports: []*nodeapiv1.ServicePort{{
		Port: port, Protocol: nodeapiv1.Protocol_PROTOCOL_TCP, Mode: nodeapiv1.Mode_MODE_L7,
	}}}
}

// backend is an L4 backend at addr.
func backend(addr netip.AddrPort, weight uint32, virtualNode string) *nodeapiv1.Backend {
	return &nodeapiv1.Backend{Address: addr.String(), Weight: weight, VirtualNode: virtualNode}
}

// --- the agent process -----------------------------------------------------

// agentProcess is one run of the weft-agent binary on the node.
type agentProcess struct {
	e    *e2e
	cmd  *exec.Cmd
	out  *syncBuffer // stdout and stderr: JSON log lines
	done chan struct{}
	err  error

	mu     sync.Mutex
	killed bool
}

// startAgent starts weft-agent with the fixture's configuration file in the
// node's netns and the agent workload's cgroup, and waits until /readyz
// answers ok. The test's cleanup stops it with SIGTERM and expects a clean
// exit (a race report would make it exit 66).
func (e *e2e) startAgent() *agentProcess {
	e.t.Helper()
	p := e.spawnAgent()
	e.waitReady(p)
	return p
}

// spawnAgent starts weft-agent without waiting for it.
func (e *e2e) spawnAgent() *agentProcess {
	e.t.Helper()
	cmd := e.agentWL.Command(context.Background(), e.bin,
		"-config", e.configFile, "-log-level", "debug", "-log-format", "json")
	p := &agentProcess{e: e, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start weft-agent: %v", err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		p.stop()
		if e.t.Failed() {
			e.t.Logf("weft-agent (pid %d) ended with %v; its log:\n%s", cmd.Process.Pid, p.err, p.out.Bytes())
		}
	})
	return p
}

// waitReady waits until the agent answers /readyz with 200, failing early
// if the process exits.
func (e *e2e) waitReady(p *agentProcess) {
	e.t.Helper()
	testutil.Eventually(e.t, 15*time.Second, func() error {
		select {
		case <-p.done:
			return fmt.Errorf("weft-agent exited: %w\n%s", p.err, p.out.Bytes())
		default:
		}
		code, body, err := e.get("/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("/readyz: %d %s", code, body)
		}
		return nil
	})
}

// kill sends SIGKILL and waits until the process is reaped.
func (p *agentProcess) kill() {
	p.e.t.Helper()
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.e.t.Fatalf("kill weft-agent: %v", err)
	}
	<-p.done
}

// stop ends the agent with SIGTERM (SIGKILL after 10s) and reports an
// unclean exit of an agent that was not killed on purpose.
func (p *agentProcess) stop() {
	t := p.e.t
	t.Helper()
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("weft-agent did not stop within 10s of SIGTERM")
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	p.mu.Lock()
	killed := p.killed
	p.mu.Unlock()
	if !killed && p.err != nil {
		t.Errorf("weft-agent exited with %v", p.err)
	}
}

// logLines returns the agent's JSON log lines whose msg is msg.
func (p *agentProcess) logLines(msg string) []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(string(p.out.Bytes()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// --- HTTP and metrics ------------------------------------------------------

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

// get fetches path from the agent's HTTP server.
func (e *e2e) get(path string) (int, string, error) {
	req, err := http.NewRequestWithContext(e.t.Context(), http.MethodGet, "http://"+metricsListen+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// mustGet fetches path and fails the test unless it answers 200.
func (e *e2e) mustGet(path string) string {
	e.t.Helper()
	code, body, err := e.get(path)
	if err != nil || code != http.StatusOK {
		e.t.Fatalf("GET %s: %d, %v\n%s", path, code, err, body)
	}
	return body
}

// metrics are the samples of one scrape, keyed by the series as the text
// format prints it: name{label="value",...} (labels in the exporter's
// order, which is sorted).
type metrics map[string]float64

// scrape fetches and parses the agent's /metrics.
func (e *e2e) scrape() metrics {
	e.t.Helper()
	body := e.mustGet("/metrics")
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
			e.t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// sum adds up the series of name that carry every label given as
// "key", "value" pairs (all series of name when none are given).
func (m metrics) sum(name string, labels ...string) float64 {
	var total float64
	for series, v := range m {
		if m.matches(series, name, labels) {
			total += v
		}
	}
	return total
}

// has reports whether a series of name with those labels exists.
func (m metrics) has(name string, labels ...string) bool {
	for series := range m {
		if m.matches(series, name, labels) {
			return true
		}
	}
	return false
}

func (metrics) matches(series, name string, labels []string) bool {
	n, rest, _ := strings.Cut(series, "{")
	if n != name {
		return false
	}
	for i := 0; i+1 < len(labels); i += 2 {
		if !strings.Contains(","+rest, ","+labels[i]+"="+strconv.Quote(labels[i+1])) {
			return false
		}
	}
	return true
}

// tcpLabels are the labels of the TCP telemetry for a connection of
// virtualNode to service.
func tcpLabels(virtualNode, service string) []string {
	return []string{"mesh", meshName, "source_virtual_node", virtualNode, "destination_virtual_service", service}
}

// --- workloads -------------------------------------------------------------

// startEcho starts netsim's echo server on :8080 in w and waits until it
// listens. It returns the address L4 backends use.
func startEcho(t *testing.T, w *netsim.Workload) netip.AddrPort {
	t.Helper()
	p, err := w.Start(t.Context(), "echo-server", "-listen", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	waitOutput(t, p, "listening ")
	return netip.AddrPortFrom(w.Addr, 8080)
}

// waitOutput waits until p has printed a line starting with prefix and
// returns that line.
func waitOutput(t *testing.T, p *netsim.Process, prefix string) string {
	t.Helper()
	var found string
	testutil.Eventually(t, 10*time.Second, func() error {
		for line := range strings.SplitSeq(string(p.Stdout()), "\n") {
			if strings.HasPrefix(line, prefix) {
				found = line
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
	return found
}

// fields parses "key=value" words of a program's output line.
func fields(line string) map[string]string {
	out := map[string]string{}
	for f := range strings.FieldsSeq(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			out[k] = v
		}
	}
	return out
}

// desiredSections returns the lines of a /debug/datapath dump that describe the
// desired state (workloads, services and their backends, egress): the
// sections between the maps' headers, without the adoption details and the
// connection-driven maps and counters.
func desiredSections(dump string) []string {
	var out []string
	keep := false
	for line := range strings.SplitSeq(dump, "\n") {
		if line != "" && !strings.HasPrefix(line, " ") {
			keep = slices.ContainsFunc([]string{"weft_workloads", "weft_services", "weft_egress"}, func(p string) bool {
				return strings.HasPrefix(line, p)
			})
		}
		if keep && line != "" {
			out = append(out, line)
		}
	}
	return out
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
