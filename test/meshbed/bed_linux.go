// SPDX-License-Identifier: Apache-2.0

package meshbed

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/agent"
	"github.com/weft-mesh/weft/controlplane"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
	"github.com/weft-mesh/weft/test/netsim"
	"github.com/weft-mesh/weft/test/testutil"
)

// The fixed parts of the topology (see the package doc).
const (
	APIPort   = 7480
	XDSPort   = 7481
	ProxyPort = 15001
	// TunnelPort is the proxies' tunnel listener, on each node's fabric
	// address: other nodes' proxies reach the node's workloads whose
	// listeners terminate TLS through it (docs/proxy.md, "Inbound side").
	TunnelPort = 15008
	// AgentHTTP is the agents' /metrics, /readyz and /debug/ address, in
	// each node's network namespace.
	AgentHTTP = "127.0.0.1:9465"
	// ProxyAdmin is the proxies' admin address (/metrics), in each node's
	// network namespace.
	ProxyAdmin = "127.0.0.1:15090"
	// DNSUpstream is the agents' DNS upstream: nothing listens there.
	DNSUpstream = "127.0.0.1:5353"
	// RegistryTTL is the controller's registration lease.
	RegistryTTL = 9 * time.Second
)

// Binaries are the weft commands the mesh runs.
type Binaries struct {
	Controller, Agent, Proxy string
	// Weftctl is empty unless BuildBinaries was asked for it: the mesh
	// runs weftctl as a program (pkg/ctl).
	Weftctl string
}

// BuildBinaries builds weft-controller, weft-agent and weft-proxy (and
// weftctl with withWeftctl) into a temporary directory of tb with one go
// build, from the module that holds the working directory. The builds are
// plain, also when the test binary has -race: race-instrumented proxies and
// agents are several times slower, and the race detector covers those
// packages in their own tests.
func BuildBinaries(tb testing.TB, withWeftctl bool) Binaries {
	tb.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		testutil.SkipOrFail(tb, "the mesh builds the weft commands and needs the go command: %v", err)
	}
	dir := tb.TempDir()
	cmds := []string{"weft-controller", "weft-agent", "weft-proxy"}
	if withWeftctl {
		cmds = append(cmds, "weftctl")
	}
	args := []string{"build", "-o", dir + "/"}
	for _, c := range cmds {
		args = append(args, "github.com/weft-mesh/weft/cmd/"+c)
	}
	start := time.Now()
	if b, err := exec.CommandContext(tb.Context(), goTool, args...).CombinedOutput(); err != nil {
		tb.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	tb.Logf("built %s in %v", strings.Join(cmds, ", "), time.Since(start).Round(time.Millisecond))
	bins := Binaries{
		Controller: filepath.Join(dir, "weft-controller"),
		Agent:      filepath.Join(dir, "weft-agent"),
		Proxy:      filepath.Join(dir, "weft-proxy"),
	}
	if withWeftctl {
		bins.Weftctl = filepath.Join(dir, "weftctl")
	}
	return bins
}

// Bed is a running mesh: the fabric, the controller's node and two mesh
// nodes.
type Bed struct {
	TB   testing.TB
	Bins Binaries
	// Dir is the mesh's directory: configurations, the controller's data,
	// caches.
	Dir string
	// Net is the simulated network.
	Net *netsim.Net
	// CtrlWL is the controller's host-network workload on node ctrl; Ctrl
	// the running controller (StartController).
	CtrlWL *netsim.Workload
	Ctrl   *Process
	// CtrlHTTP dials from the ctrl node.
	CtrlHTTP *http.Client
	// Token is the bearer token file of the controller, the agents, the
	// proxies and weftctl.
	Token string
	// A and B are the mesh nodes node-a and node-b.
	A, B *Node
	// Client runs client programs in pods.
	Client ClientEnv
	// DNSServers, when set before StartController, are the nameservers of
	// the controller's DNS discovery (its dns.servers).
	DNSServers []string
}

// Node is one simulated node with its agent and proxy.
type Node struct {
	Node    *netsim.Node
	AgentWL *netsim.Workload // host network, the agent's own cgroup
	ProxyWL *netsim.Workload // host network, exempt from redirection
	Agent   *Process
	Proxy   *Process
	// HTTP dials from the node's network namespace.
	HTTP      *http.Client
	Dir       string
	Pods      []Pod
	PinPath   string
	ProxyAddr netip.AddrPort
	// TunnelAddr is the proxy's tunnel listener.
	TunnelAddr netip.AddrPort
}

// Pod is a meshed workload of a node.
type Pod struct {
	WL          *netsim.Workload
	Mesh        string
	VirtualNode string
	Ports       []uint32
	// Attributes are registered with it (its Cloud Map attributes).
	Attributes map[string]string
}

// New builds the simulated network of the mesh with bins: nodes node-a,
// node-b and ctrl, a fresh token, and the agents' and proxies' workloads.
// Call testutil.RequirePrivileged first (a test).
func New(tb testing.TB, bins Binaries) *Bed {
	tb.Helper()
	n := netsim.New(tb, netsim.Options{})
	nodeA, nodeB, ctrlNode := n.AddNode("node-a"), n.AddNode("node-b"), n.AddNode("ctrl")
	dir := tb.TempDir()
	b := &Bed{
		TB: tb, Bins: bins, Dir: dir, Net: n,
		CtrlWL:   ctrlNode.AddWorkload("controller", netsim.WorkloadOptions{HostNetwork: true}),
		CtrlHTTP: NSHTTPClient(ctrlNode.NS),
		Token:    filepath.Join(dir, "token"),
		Client:   NewClientEnv(tb, dir),
	}
	tb.Cleanup(b.CtrlHTTP.CloseIdleConnections)
	WriteFile(tb, b.Token, fmt.Sprintf("meshbed-%d\n", time.Now().UnixNano()))
	b.A, b.B = b.newNode(nodeA), b.newNode(nodeB)
	return b
}

// CtrlIP is the controller's address.
func (b *Bed) CtrlIP() netip.Addr { return b.CtrlWL.Addr }

// XDSAddr is the controller's ADS address.
func (b *Bed) XDSAddr() netip.AddrPort { return netip.AddrPortFrom(b.CtrlIP(), XDSPort) }

// APIURL is the controller's API URL.
func (b *Bed) APIURL() string {
	return fmt.Sprintf("http://%s", netip.AddrPortFrom(b.CtrlIP(), APIPort))
}

// newNode prepares a node's directories, its agent's and proxy's
// host-network workloads.
func (b *Bed) newNode(node *netsim.Node) *Node {
	b.TB.Helper()
	dir := filepath.Join(b.Dir, node.Name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		b.TB.Fatal(err)
	}
	mn := &Node{
		Node:       node,
		AgentWL:    node.AddWorkload("weft-agent", netsim.WorkloadOptions{HostNetwork: true}),
		ProxyWL:    node.AddWorkload("weft-proxy", netsim.WorkloadOptions{HostNetwork: true}),
		HTTP:       NSHTTPClient(node.NS),
		Dir:        dir,
		PinPath:    filepath.Join(node.PinPath, "weft"),
		ProxyAddr:  netip.AddrPortFrom(node.Addr, ProxyPort),
		TunnelAddr: netip.AddrPortFrom(node.Addr, TunnelPort),
	}
	b.TB.Cleanup(mn.HTTP.CloseIdleConnections)
	return mn
}

// AddPod adds a pod of virtual node vn of mesh serving ports (0: none) to
// mn. Add every pod before StartNodes.
func (b *Bed) AddPod(mn *Node, name, mesh, vn string, ports ...uint32) *netsim.Workload {
	b.TB.Helper()
	return b.AddPodAttrs(mn, name, mesh, vn, nil, ports...)
}

// AddPodAttrs is AddPod for a pod registered with Cloud Map attributes
// (the agent's workloads[].attributes).
func (b *Bed) AddPodAttrs(mn *Node, name, mesh, vn string, attrs map[string]string, ports ...uint32) *netsim.Workload {
	b.TB.Helper()
	pod := mn.Node.AddWorkload(name, netsim.WorkloadOptions{})
	p := Pod{WL: pod, Mesh: mesh, VirtualNode: vn, Attributes: attrs}
	for _, port := range ports {
		if port != 0 {
			p.Ports = append(p.Ports, port)
		}
	}
	mn.Pods = append(mn.Pods, p)
	return pod
}

// StartController starts weft-controller in the ctrl node with the given
// warm-up (0: none), on the mesh's data directory, and waits until it is
// ready.
func (b *Bed) StartController(warmUp time.Duration) *Process {
	tb := b.TB
	tb.Helper()
	wu := controlplane.Duration(warmUp)
	cfg := controlplane.Config{
		DataDir:   filepath.Join(b.Dir, "controller"),
		APIListen: netip.AddrPortFrom(b.CtrlIP(), APIPort).String(),
		XDSListen: b.XDSAddr().String(),
		Auth:      controlplane.AuthConfig{BearerTokenFile: b.Token},
		Registry:  controlplane.RegistryConfig{TTL: controlplane.Duration(RegistryTTL), WarmUp: &wu},
		DNS:       controlplane.DNSConfig{Servers: b.DNSServers},
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	file := filepath.Join(b.Dir, "controller.yaml")
	WriteYAML(tb, file, cfg)
	p := Start(tb, "weft-controller", b.CtrlWL.Command(context.Background(), b.Bins.Controller, "-config", file, "-log-format", "json"))
	Eventually(tb, 15*time.Second, func() error {
		if err := p.Exited(); err != nil {
			return err
		}
		code, _, err := Get(tb.Context(), b.CtrlHTTP, b.APIURL()+"/readyz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("controller /readyz: %d", code)
		}
		return err
	})
	b.Ctrl = p
	return p
}

// WeftctlArgs returns the arguments that point weftctl at the controller.
func (b *Bed) WeftctlArgs() []string {
	return []string{"--server", b.APIURL(), "--token-file", b.Token}
}

// RunWeftctl runs weftctl against the controller from the ctrl node and
// returns its output (stdout, then stderr) and error. Relative paths
// after -f are made absolute.
func (b *Bed) RunWeftctl(ctx context.Context, args ...string) (string, error) {
	abs := slices.Clone(args)
	for i, a := range abs {
		if i > 0 && abs[i-1] == "-f" && !filepath.IsAbs(a) {
			p, err := filepath.Abs(a)
			if err != nil {
				return "", err
			}
			abs[i] = p
		}
	}
	cmd := b.CtrlWL.Program(ctx, "weftctl", append(b.WeftctlArgs(), abs...)...)
	var stdout, stderr SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	return string(stdout.Bytes()) + string(stderr.Bytes()), err
}

// Weftctl runs weftctl (RunWeftctl) and fails tb when it fails.
func (b *Bed) Weftctl(args ...string) string {
	b.TB.Helper()
	out, err := b.RunWeftctl(b.TB.Context(), args...)
	if err != nil {
		b.TB.Fatalf("weftctl %v: %v\n%s", args, err, out)
	}
	return out
}

// StartServer starts the server program prog in pod and waits until it
// listens.
func (b *Bed) StartServer(pod *netsim.Workload, prog string, args ...string) *netsim.Process {
	b.TB.Helper()
	p, err := pod.Start(b.TB.Context(), prog, args...)
	if err != nil {
		b.TB.Fatal(err)
	}
	WaitOutput(b.TB, p, "listening ")
	return p
}

// StartNodes starts each node's agent and waits until it is ready, then
// its proxy, and waits until every proxy has subscribed to its node state
// and to the configuration of each of its pods.
func (b *Bed) StartNodes() {
	tb := b.TB
	tb.Helper()
	ctx := tb.Context()
	nodes := []*Node{b.A, b.B}
	for _, mn := range nodes {
		WriteYAML(tb, filepath.Join(mn.Dir, "agent.yaml"), mn.AgentConfig(tb, b.XDSAddr(), b.Token))
		mn.Agent = Start(tb, mn.Node.Name+"/weft-agent", mn.AgentWL.Command(context.Background(), b.Bins.Agent,
			"-config", filepath.Join(mn.Dir, "agent.yaml"), "-log-format", "json"))
	}
	for _, mn := range nodes {
		Eventually(tb, 30*time.Second, func() error {
			if err := mn.Agent.Exited(); err != nil {
				return err
			}
			code, body, err := Get(ctx, mn.HTTP, "http://"+AgentHTTP+"/readyz")
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("%s agent /readyz: %d %s", mn.Node.Name, code, body)
			}
			return err
		})
		// The proxy opens the agent's pinned maps at start: after the agent.
		mn.Proxy = Start(tb, mn.Node.Name+"/weft-proxy", mn.ProxyWL.Command(context.Background(), b.Bins.Proxy,
			"-xds-server", b.XDSAddr().String(), "-xds-token-file", b.Token,
			"-node-id", mn.Node.Name, "-cgroup-root", mn.Node.CgroupPath, "-cache-dir", filepath.Join(mn.Dir, "proxy-cache"),
			"-outbound-listen", mn.ProxyAddr.String(), "-tunnel-listen", mn.TunnelAddr.String(),
			"-admin-listen", ProxyAdmin, "-pin-path", mn.PinPath,
			"-drain-timeout", "2s", "-log-format", "json"))
	}
	for _, mn := range nodes {
		// One subscription per virtual node of the node's pods.
		vns := map[string]bool{}
		for _, p := range mn.Pods {
			vns[p.Mesh+"/"+p.VirtualNode] = true
		}
		subs := float64(len(vns))
		Eventually(tb, 30*time.Second, func() error {
			if err := mn.Proxy.Exited(); err != nil {
				return err
			}
			m, err := mn.ProxyMetrics(ctx)
			if err != nil {
				return err
			}
			if s, c := m.Sum("weft_proxy_xds_subscriptions"), m.Sum("weft_proxy_xds_streams_connected"); s != subs || c != subs+1 {
				return fmt.Errorf("%s proxy: %v subscriptions, %v streams connected; want %v and %v", mn.Node.Name, s, c, subs, subs+1)
			}
			return nil
		})
	}
}

// GatewayAdmin is the admin address (/metrics) of a gateway's weft-proxy
// (StartGateway), in its node's network namespace.
const GatewayAdmin = "127.0.0.1:15091"

// StartGateway starts a weft-proxy that serves virtual gateway id
// (mesh/<mesh>/virtualGateway/<name>) on mn, in a host-network workload of
// its own (its upstream connections go to pod addresses, which the agent
// lets through), as a gateway deployment would: no node state, no
// outbound listener, the gateway's listeners bound on the node's
// addresses. It waits until the gateway's configuration is applied (its
// listeners are bound).
func (b *Bed) StartGateway(mn *Node, id string) *Process {
	tb := b.TB
	tb.Helper()
	wl := mn.Node.AddWorkload("gateway", netsim.WorkloadOptions{HostNetwork: true})
	p := Start(tb, mn.Node.Name+"/weft-proxy (gateway)", wl.Command(context.Background(), b.Bins.Proxy,
		"-xds-server", b.XDSAddr().String(), "-xds-token-file", b.Token, "-node-id", "", "-gateway", id,
		"-cache-dir", filepath.Join(mn.Dir, "gateway-cache"), "-outbound-listen", "", "-admin-listen", GatewayAdmin,
		"-drain-timeout", "2s", "-log-format", "json"))
	Eventually(tb, 30*time.Second, func() error {
		if err := p.Exited(); err != nil {
			return err
		}
		for _, l := range p.LogLines("configuration applied") {
			if l["node"] == id {
				return nil
			}
		}
		return fmt.Errorf("the gateway has not applied %s yet", id)
	})
	return p
}

// AgentConfig is the node's weft-agent configuration: ADS from the
// controller, the proxy on the node's fabric address (pods reach it
// through their default route) and exempt by its cgroup, DNS on the
// node's address with an upstream that answers nothing, and the node's
// pods as workloads registered at their own addresses.
func (mn *Node) AgentConfig(tb testing.TB, xds netip.AddrPort, tokenFile string) agent.Config {
	tb.Helper()
	cfg := agent.Config{
		NodeName:      mn.Node.Name,
		CgroupRoot:    mn.Node.CgroupPath,
		PinPath:       mn.PinPath,
		MetricsListen: AgentHTTP,
		XDS: agent.XDSConfig{
			Server:    xds.String(),
			CacheFile: filepath.Join(mn.Dir, "agent-xds-cache.json"),
			TokenFile: tokenFile,
		},
		Proxy: agent.ProxyConfig{
			Address: mn.ProxyAddr.String(), CgroupPath: RelCgroup(tb, mn.ProxyWL),
			TunnelAddress: mn.TunnelAddr.String(),
		},
		DNS:       agent.DNSConfig{Listen: netip.AddrPortFrom(mn.Node.Addr, 53).String(), Upstreams: []string{DNSUpstream}},
		Telemetry: agent.TelemetryConfig{Interval: agent.Duration(time.Second)},
	}
	for _, p := range mn.Pods {
		cfg.Workloads = append(cfg.Workloads, agent.VMWorkload{
			CgroupPath: RelCgroup(tb, p.WL), Mesh: p.Mesh, VirtualNode: p.VirtualNode,
			ListenerPorts: p.Ports, Addresses: []string{p.WL.Addr.String()}, Attributes: p.Attributes,
		})
	}
	return cfg
}

// AgentMetrics scrapes the node's agent.
func (mn *Node) AgentMetrics(ctx context.Context) (Metrics, error) {
	return Scrape(ctx, mn.HTTP, "http://"+AgentHTTP+"/metrics")
}

// ProxyMetrics scrapes the node's proxy.
func (mn *Node) ProxyMetrics(ctx context.Context) (Metrics, error) {
	return Scrape(ctx, mn.HTTP, "http://"+ProxyAdmin+"/metrics")
}

// NodeState returns the node state the node's agent applies.
func (mn *Node) NodeState(ctx context.Context) (*nodeapiv1.NodeState, error) {
	code, body, err := Get(ctx, mn.HTTP, "http://"+AgentHTTP+"/debug/state")
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

// --- clients -----------------------------------------------------------------

// ClientEnv is the resolver configuration of the client programs (see
// withResolver): a resolv.conf whose nameserver nothing answers at, so that
// a name resolves only because the datapath redirects the query to the
// node's agent.
type ClientEnv struct {
	resolvConf, nsswitch, hostMntNS string
}

// NewClientEnv writes the client programs' resolver files into dir.
func NewClientEnv(tb testing.TB, dir string) ClientEnv {
	tb.Helper()
	ce := ClientEnv{resolvConf: filepath.Join(dir, "resolv.conf"), nsswitch: filepath.Join(dir, "nsswitch.conf")}
	WriteFile(tb, ce.resolvConf, "# written by test/meshbed: nothing answers here; the datapath redirects to the node's agent\nnameserver 192.0.2.53\noptions timeout:2 attempts:2\n")
	WriteFile(tb, ce.nsswitch, "hosts: files dns\n")
	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		tb.Fatal(err)
	}
	ce.hostMntNS = ns
	return ce
}

// Command returns the program prog of w set up to resolve names through
// its normal resolver path in a mount namespace of its own.
func (ce ClientEnv) Command(ctx context.Context, w *netsim.Workload, prog string, args ...string) *exec.Cmd {
	cmd := w.Program(ctx, prog, args...)
	cmd.SysProcAttr.Unshareflags = unix.CLONE_NEWNS
	cmd.Env = append(cmd.Env, envResolvConf+"="+ce.resolvConf, envNSSwitch+"="+ce.nsswitch, envHostMntNS+"="+ce.hostMntNS)
	return cmd
}

// Run runs a client program to completion and decodes its JSON output into
// out.
func (ce ClientEnv) Run(ctx context.Context, w *netsim.Workload, out any, prog string, args ...string) error {
	cmd := ce.Command(ctx, w, prog, args...)
	var stdout, stderr SyncBuffer
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

// RunText runs a client program to completion and returns its output.
func (ce ClientEnv) RunText(ctx context.Context, w *netsim.Workload, prog string, args ...string) (string, error) {
	cmd := ce.Command(ctx, w, prog, args...)
	var stdout, stderr SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return string(stdout.Bytes()), fmt.Errorf("%s in %s: %w; stderr: %s", prog, w, err, stderr.Bytes())
	}
	return string(stdout.Bytes()), nil
}

// --- files -------------------------------------------------------------------

// WriteYAML writes v (JSON-tagged) as YAML.
func WriteYAML(tb testing.TB, path string, v any) {
	tb.Helper()
	j, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		tb.Fatal(err)
	}
	WriteFile(tb, path, string(y))
}

// WriteFile writes body to path.
func WriteFile(tb testing.TB, path, body string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// RelCgroup is w's cgroup relative to its node's, as the agent's
// configuration names it.
func RelCgroup(tb testing.TB, w *netsim.Workload) string {
	tb.Helper()
	rel, err := filepath.Rel(w.Node.CgroupPath, w.CgroupPath)
	if err != nil {
		tb.Fatal(err)
	}
	return filepath.ToSlash(rel)
}
