// SPDX-License-Identifier: Apache-2.0

package main

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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/weft-mesh/weft/agent"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
	"github.com/weft-mesh/weft/test/netsim"
	"github.com/weft-mesh/weft/test/testutil"
)

// CPU pinning (2 CPUs): the proxy under test alone on cpuProxy; the load
// generator, the backend, the agent and the bench itself on cpuRest.
const (
	cpuRest  = 0
	cpuProxy = 1
)

// Addresses of the test bed.
var (
	vipL4 = netip.MustParseAddr("10.96.0.10") // L4 service: connect() rewritten to the backend
	vipL7 = netip.MustParseAddr("10.96.0.20") // L7 service: redirected to weft-proxy
)

// Proxy listener ports on the node's address, one per protocol (http1,
// h2c, grpc) and proxy.
const (
	portWeftProxy  = 15001 // weft-proxy's outbound listener (the datapath redirects to it)
	portWeftAdmin  = 15090
	portNginx      = 15010
	portHAProxy    = 15020
	portHAProxyTCP = 15030
	portRevProxy   = 15040
	agentMetrics   = "127.0.0.1:9465"
)

const meshName = "bench"

// bed is the test bed: one simulated node (netsim) with a client pod and a
// server pod, each in its own network namespace behind a routed veth pair
// to the node's namespace, where the agent and the proxies run.
//
//	client ns --veth-- node ns (agent, weft-proxy, nginx, HAProxy) --veth-- server ns
//
// The meshed client is the client pod's cgroup, under the node's cgroup
// that the agent attaches the datapath to. Unmeshed processes (the direct
// client, the clients of nginx and HAProxy, and the backend) run in
// cgroups outside the node's, so no eBPF program sees their sockets; they
// use the same namespaces, veths and routes.
type bed struct {
	h    *netsim.Standalone
	dir  string
	bins binaries
	net  *netsim.Net
	node *netsim.Node

	client, server *netsim.Workload
	// plainClient and plainServer are the unmeshed cgroups.
	plainClient, plainServer string

	agent *proc
	// proxies by variant name.
	proxies map[string]*proc
	backend *proc
	// nodeHTTP dials from the node's namespace.
	nodeHTTP *http.Client
}

// binaries are the executables the bench runs.
type binaries struct {
	self, agent, proxy string
}

// proc is a process of the bench, in a cgroup of its own.
type proc struct {
	name   string
	cmd    *exec.Cmd
	cgroup string
	stderr *lockedBuffer
	done   chan struct{}
	err    error
}

// lockedBuffer keeps the tail of a process's standard error.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 64<<10 {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-32<<10:]...)
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// newBed builds the namespaces and cgroups, and starts the backend, the
// agent and every proxy. Everything is removed by h's cleanups.
func newBed(ctx context.Context, h *netsim.Standalone, bins binaries, services int) (*bed, error) {
	b := &bed{h: h, bins: bins, proxies: map[string]*proc{}}
	err := do(h, func() error {
		b.dir = h.TempDir()
		b.net = netsim.New(h, netsim.Options{})
		b.node = b.net.AddNode("node")
		b.client = b.node.AddWorkload("client", netsim.WorkloadOptions{})
		b.server = b.node.AddWorkload("server", netsim.WorkloadOptions{})
		// Host-network workloads: cgroups of their own in the node's
		// namespace.
		for _, name := range []string{"agent", "weft-proxy", "nginx", "haproxy", "haproxy-tcp", "revproxy", "weft-proxy-fp"} {
			b.node.AddWorkload(name, netsim.WorkloadOptions{HostNetwork: true})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	b.plainClient = filepath.Join(b.net.CgroupPath, "unmeshed-client")
	b.plainServer = filepath.Join(b.net.CgroupPath, "unmeshed-server")
	for _, d := range []string{b.plainClient, b.plainServer} {
		// Removed by netsim's sweep of the bench's cgroup.
		if err := os.Mkdir(d, 0o750); err != nil {
			return nil, err
		}
	}
	// Many short connections: a wide port range and TIME_WAIT reuse on
	// the client and the node (the proxies' upstream side).
	for _, ns := range []*testutil.NetNS{b.client.NS, b.node.NS, b.server.NS} {
		if err := ns.Do(func() error {
			return writeSysctls(map[string]string{
				"net/ipv4/ip_local_port_range": "1024 65000",
				"net/ipv4/tcp_tw_reuse":        "1",
				"net/core/somaxconn":           "8192",
				"net/ipv4/tcp_max_syn_backlog": "8192",
			})
		}); err != nil {
			return nil, err
		}
	}
	b.nodeHTTP = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := b.node.NS.Do(func() error {
				var err error
				c, err = dialer.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}

	var err2 error
	b.backend, err2 = b.startBackend(ctx)
	if err2 != nil {
		return nil, err2
	}
	if err := b.startAgent(ctx, services); err != nil {
		return nil, err
	}
	if err := b.startProxies(ctx, services); err != nil {
		return nil, err
	}
	return b, nil
}

func writeSysctls(kv map[string]string) error {
	for k, v := range kv {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o600); err != nil {
			return fmt.Errorf("sysctl %s: %w", strings.ReplaceAll(k, "/", "."), err)
		}
	}
	return nil
}

// workloadCgroup returns the cgroup of the node's workload name.
func (b *bed) workloadCgroup(name string) string {
	for _, w := range b.node.Workloads() {
		if w.Name == name {
			return w.CgroupPath
		}
	}
	panic("no workload " + name)
}

// command returns a command that runs argv in the network namespace ns and
// the cgroup (from its first instruction: clone3 into the cgroup, then
// nsenter and taskset exec in turn), pinned to cpu.
func (b *bed) command(ctx context.Context, ns *testutil.NetNS, cgroup string, cpu int, env []string, argv ...string) (*exec.Cmd, func(), error) {
	fd, err := unix.Open(cgroup, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open cgroup %s: %w", cgroup, err)
	}
	args := append([]string{"--net=" + ns.Path(), "--", "taskset", "-c", strconv.Itoa(cpu)}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...) //nolint:gosec // G702: the bench's own programs; WEFT_BENCH_PROXY_ARGS adds flags, run as the bench's user
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	return cmd, func() { _ = unix.Close(fd) }, nil
}

// start starts a long-running process; a cleanup of h stops it (SIGTERM, then
// SIGKILL after 5 s) when the bench ends. netsim's sweep of the cgroups
// kills anything left after that.
func (b *bed) start(ctx context.Context, name string, ns *testutil.NetNS, cgroup string, cpu int, env []string, argv ...string) (*proc, error) {
	cmd, closeFD, err := b.command(ctx, ns, cgroup, cpu, env, argv...)
	if err != nil {
		return nil, err
	}
	defer closeFD()
	p := &proc{name: name, cmd: cmd, cgroup: cgroup, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	b.h.Cleanup(p.stop)
	return p, nil
}

// exited returns an error with the process's output if it has ended.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); output:\n%s", p.name, p.cmd.ProcessState, tail(p.stderr.String(), 2000))
	default:
		return nil
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// waitFor polls check until it succeeds, the process exits or 20 s pass.
func waitFor(ctx context.Context, p *proc, what string, check func() error) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if e := p.exited(); e != nil {
			return e
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not ready after 20s: %w; output:\n%s", what, err, tail(p.stderr.String(), 2000))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// get fetches url from the node's namespace and wants a 200.
func (b *bed) get(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return err
	}
	resp, err := b.nodeHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func (b *bed) startBackend(ctx context.Context) (*proc, error) {
	p, err := b.start(ctx, "backend", b.server.NS, b.plainServer, cpuRest, []string{childEnv + "=backend"}, b.bins.self)
	if err != nil {
		return nil, err
	}
	url := "http://" + netip.AddrPortFrom(b.server.Addr, portHTTP1).String() + "/"
	return p, waitFor(ctx, p, "backend", func() error { return b.get(ctx, url) })
}

func (b *bed) serverAddr(port uint16) netip.AddrPort { return netip.AddrPortFrom(b.server.Addr, port) }

// nodeState is the node state the agent applies and weft-proxy reads: the
// L4 and L7 services of the bench, extra L7 services (footprint), and the
// meshed client workload.
func (b *bed) nodeState(extra int) *nodeapiv1.NodeState {
	tcp := nodeapiv1.Protocol_PROTOCOL_TCP
	l4 := &nodeapiv1.Service{Name: "l4.bench.local", Mesh: meshName, Addresses: []string{vipL4.String()}}
	l7 := &nodeapiv1.Service{Name: "l7.bench.local", Mesh: meshName, Addresses: []string{vipL7.String()}}
	for _, port := range []uint16{portHTTP1, portH2C, portGRPC} {
		l4.Ports = append(l4.Ports, &nodeapiv1.ServicePort{
			Port: uint32(port), Protocol: tcp, Mode: nodeapiv1.Mode_MODE_L4,
			Backends: []*nodeapiv1.Backend{{Address: b.serverAddr(port).String(), Weight: 1}},
		})
		l7.Ports = append(l7.Ports, &nodeapiv1.ServicePort{Port: uint32(port), Protocol: tcp, Mode: nodeapiv1.Mode_MODE_L7})
	}
	st := &nodeapiv1.NodeState{
		Node: b.node.Name, Version: fmt.Sprintf("services-%d", extra),
		Meshes:   []*nodeapiv1.Mesh{{Name: meshName, Id: 1}},
		Services: []*nodeapiv1.Service{l4, l7},
		Workloads: []*nodeapiv1.Workload{{
			Id: 1, CgroupPath: b.client.Name, Mesh: meshName, VirtualNode: "client",
			ListenerPorts: []uint32{portHTTP1},
		}},
	}
	for i := range extra {
		st.Services = append(st.Services, &nodeapiv1.Service{
			Name: fmt.Sprintf("svc-%d.bench.local", i), Mesh: meshName,
			Addresses: []string{extraVIP(i).String()},
			Ports:     []*nodeapiv1.ServicePort{{Port: 80, Protocol: tcp, Mode: nodeapiv1.Mode_MODE_L7}},
		})
	}
	return st
}

// extraVIP is the address of the i-th extra service, in 10.97.0.0/16.
func extraVIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 97, byte(i >> 8), byte(i)})
}

func (b *bed) startAgent(ctx context.Context, services int) error {
	st, err := protojson.Marshal(b.nodeState(services))
	if err != nil {
		return err
	}
	stateFile := filepath.Join(b.dir, "nodestate.json")
	if err := os.WriteFile(stateFile, st, 0o600); err != nil {
		return err
	}
	cfg := agent.Config{
		NodeName:      b.node.Name,
		CgroupRoot:    b.node.CgroupPath,
		PinPath:       filepath.Join(b.node.PinPath, "weft"),
		StateFile:     stateFile,
		MetricsListen: agentMetrics,
		Proxy: agent.ProxyConfig{
			Address:    netip.AddrPortFrom(b.node.Addr, portWeftProxy).String(),
			CgroupPath: "weft-proxy",
		},
		// Nothing answers at the upstream: the bench resolves no names.
		DNS: agent.DNSConfig{Listen: netip.AddrPortFrom(b.node.Addr, 53).String(), Upstreams: []string{"192.0.2.53"}},
	}
	j, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgFile := filepath.Join(b.dir, "agent.json")
	if err := os.WriteFile(cfgFile, j, 0o600); err != nil {
		return err
	}
	b.agent, err = b.start(ctx, "weft-agent", b.node.NS, b.workloadCgroup("agent"), cpuRest, nil,
		b.bins.agent, "-config", cfgFile, "-log-level", "warn")
	if err != nil {
		return err
	}
	return waitFor(ctx, b.agent, "weft-agent", func() error { return b.get(ctx, "http://"+agentMetrics+"/readyz") })
}

// expectLine reads one line from r and wants it to be want.
func expectLine(r *bufio.Reader, want string, d time.Duration) error {
	l, err := readLine(r, d)
	if err != nil {
		return fmt.Errorf("waiting for %q: %w", want, err)
	}
	if l != want {
		return fmt.Errorf("waiting for %q: got %q", want, l)
	}
	return nil
}

// readLine reads one line from r, with a timeout.
func readLine(r *bufio.Reader, d time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := r.ReadString('\n')
		ch <- res{strings.TrimSpace(s), err}
	}()
	select {
	case x := <-ch:
		return x.s, x.err
	case <-time.After(d):
		return "", errors.New("timeout")
	}
}

// stop ends the process (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// fetch GETs url from the node's namespace and returns the body.
func (b *bed) fetch(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return "", err
	}
	resp, err := b.nodeHTTP.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

// do runs fn with s: a Fatal of a helper inside fn ends fn, and its message
// comes back as the error, joined with fn's own.
func do(s *netsim.Standalone, fn func() error) error {
	var ferr error
	err := s.Do(func() { ferr = fn() })
	return errors.Join(ferr, err)
}
