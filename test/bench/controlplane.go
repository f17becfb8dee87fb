// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weft-mesh/weft/controlplane"
	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/pkg/appmesh"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
	"github.com/weft-mesh/weft/pkg/xdsclient"
)

// The control plane measurement: a controller (controlplane.New, in a child
// process pinned to cpuProxy so that its CPU and memory are its own) and M
// simulated nodes in the bench process (on cpuRest), each a real
// xdsclient.Registrar registering its instances and a real
// xdsclient.SubscribeNodeState client, as an agent has. Mesh "cp" has N
// virtual services svc-i.cp.local, each provided by virtual node svc-i (a
// TCP listener on 8080) with 3 registered endpoints spread over the nodes,
// and a virtual node "front" that lists every service as a backend; every
// node runs a front workload, so every node state holds all N services as
// L4 ports with their 3 backends.

const (
	cpMesh      = "cp"
	cpPort      = 8080
	cpChanges   = 10 // endpoint changes measured
	cpEndpoints = 3
)

// cpResult is the control plane measurement of one size.
type cpResult struct {
	Services int `json:"services"`
	Clients  int `json:"clients"`
	// Apply is the controller's resources.Service.Apply of the 2N+2
	// resources (one transaction).
	Apply float64 `json:"applySeconds"`
	// Converge is from the start of the apply until every client applied
	// a node state with all N services and their 3 backends.
	Converge float64 `json:"convergeSeconds"`
	// ChangeP50 and ChangeP99 are, over cpChanges endpoint changes and
	// every client, the time from a registrar's new registration to the
	// client applying the node state that has it (ms).
	ChangeP50 float64 `json:"changeP50Millis"`
	ChangeP99 float64 `json:"changeP99Millis"`
	ChangeMax float64 `json:"changeMaxMillis"`
	// ControllerCPU is the controller's utime+stime over the whole
	// measurement (s); ControllerRSS its resident set at the end and its
	// peak (VmHWM), MiB.
	ControllerCPU  float64 `json:"controllerCpuSeconds"`
	ControllerRSS  float64 `json:"controllerRssMiB"`
	ControllerPeak float64 `json:"controllerPeakRssMiB"`
	// StateBytes is the size of one node state (protobuf).
	StateBytes int `json:"nodeStateBytes"`
}

// cpNode is one simulated node.
type cpNode struct {
	id  string
	reg *xdsclient.Registrar
	nc  *xdsclient.Client

	mu        sync.Mutex
	instances []*nodeapiv1.Instance
	state     *nodeapiv1.NodeState
	// watch, when set, is checked against each state applied; seen is
	// when it first held.
	watch func(*nodeapiv1.NodeState) bool
	seen  time.Time
}

// apply is the node state client's ApplyFunc: it keeps the state and, when
// a watch is set, notes when it first holds (so the bench never scans the
// states itself while the clients work).
func (n *cpNode) apply(_ context.Context, st *nodeapiv1.NodeState, _ bool) error {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.state = st
	if n.watch != nil && n.seen.IsZero() && n.watch(st) {
		n.seen = now
	}
	return nil
}

// setWatch sets the watch (nil: none) and clears seen; it checks the
// current state at once.
func (n *cpNode) setWatch(w func(*nodeapiv1.NodeState) bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.watch, n.seen = w, time.Time{}
	if w != nil && n.state != nil && w(n.state) {
		n.seen = time.Now()
	}
}

func (n *cpNode) seenAt() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.seen
}

func (n *cpNode) get() *nodeapiv1.NodeState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// endpointAddr is the address of endpoint k of service i; gen changes it.
func endpointAddr(i, k, gen int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(100 + k + 3*gen), byte(i >> 8), byte(i)})
}

func controlPlane(ctx context.Context, services, clients int) (cpResult, error) {
	res := cpResult{Services: services, Clients: clients}
	fmt.Printf("weft bench: control plane, %d services × %d endpoints, %d node clients\n", services, cpEndpoints, clients)
	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp("", "weft-bench-cp-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, "taskset", "-c", strconv.Itoa(cpuProxy), self, dir, strconv.Itoa(services))
	cmd.Env = append(os.Environ(), childEnv+"=controller")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return res, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return res, err
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	out := bufio.NewReader(stdout)
	fail := func(err error) (cpResult, error) {
		return res, fmt.Errorf("%w; controller: %s", err, tail(stderr.String(), 1500))
	}
	addr, err := readLine(out, 30*time.Second)
	if err != nil {
		return fail(fmt.Errorf("controller address: %w", err))
	}
	cpu0, _ := procTicks(cmd.Process.Pid)

	conn, err := xdsclient.Dial(xdsclient.DialConfig{Server: addr})
	if err != nil {
		return res, err
	}
	defer conn.Close()
	nodes := make([]*cpNode, clients)
	for j := range nodes {
		n := &cpNode{id: fmt.Sprintf("node-%d", j)}
		n.instances = []*nodeapiv1.Instance{{
			Id: 1, CgroupPath: "front", Mesh: cpMesh, VirtualNode: "front",
			Addresses: []string{netip.AddrFrom4([4]byte{10, 99, 0, byte(j)}).String()}, Ports: []uint32{80}, Healthy: true,
		}}
		nodes[j] = n
	}
	for i := range services {
		for k := range cpEndpoints {
			n := nodes[(i*cpEndpoints+k)%clients]
			n.instances = append(n.instances, &nodeapiv1.Instance{
				Id: uint32(len(n.instances) + 1), CgroupPath: fmt.Sprintf("svc-%d-%d", i, k), Mesh: cpMesh,
				VirtualNode: fmt.Sprintf("svc-%d", i), Addresses: []string{endpointAddr(i, k, 0).String()},
				Ports: []uint32{cpPort}, Healthy: true,
			})
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	fast := func(c xdsclient.Config) xdsclient.Config {
		c.MinBackoff, c.MaxBackoff = 50*time.Millisecond, time.Second
		return c
	}
	quiet := slog.New(slog.DiscardHandler)
	for _, n := range nodes {
		n.reg, err = xdsclient.NewRegistrar(conn, xdsclient.RegistrarConfig{NodeID: n.id, Instances: func() ([]*nodeapiv1.Instance, bool) {
			n.mu.Lock()
			defer n.mu.Unlock()
			return slices.Clone(n.instances), true
		}}, quiet)
		if err != nil {
			return res, err
		}
		n.nc, err = xdsclient.SubscribeNodeState(conn, fast(xdsclient.Config{NodeID: n.id}), n.apply, quiet)
		if err != nil {
			return res, err
		}
		wg.Go(func() { _ = n.reg.Run(ctx) })
		wg.Go(func() { _ = n.nc.Run(ctx) })
	}
	if err := waitUntil(ctx, 2*time.Minute, func() bool {
		for _, n := range nodes {
			if n.reg.Registered() == 0 {
				return false
			}
		}
		return true
	}); err != nil {
		return fail(fmt.Errorf("registrations: %w", err))
	}

	// Convergence: apply the world, wait for every node's full state.
	complete := func(st *nodeapiv1.NodeState) bool {
		if len(st.GetServices()) != services {
			return false
		}
		for _, s := range st.GetServices() {
			if len(s.GetPorts()) != 1 || len(s.GetPorts()[0].GetBackends()) != cpEndpoints {
				return false
			}
		}
		return true
	}
	for _, n := range nodes {
		n.setWatch(complete)
	}
	start := time.Now()
	if _, err := io.WriteString(stdin, "apply\n"); err != nil {
		return fail(err)
	}
	line, err := readLine(out, 10*time.Minute)
	if err != nil {
		return fail(fmt.Errorf("apply: %w", err))
	}
	if res.Apply, err = strconv.ParseFloat(line, 64); err != nil {
		return fail(fmt.Errorf("apply: %s", line))
	}
	if err := waitUntil(ctx, 10*time.Minute, func() bool {
		for _, n := range nodes {
			if n.seenAt().IsZero() {
				return false
			}
		}
		return true
	}); err != nil {
		return fail(fmt.Errorf("convergence: %w", err))
	}
	for _, n := range nodes {
		res.Converge = max(res.Converge, n.seenAt().Sub(start).Seconds())
	}
	res.StateBytes = proto.Size(nodes[0].get())
	fmt.Printf("  converged in %.2fs (apply %.2fs), node state %d bytes\n", res.Converge, res.Apply, res.StateBytes)

	// Endpoint changes: endpoint 0 of service i moves to a new address;
	// its node registers again; every client's time to the new backend.
	var lat []float64
	for c := range cpChanges {
		i := (c * 7919) % services
		owner := nodes[(i*cpEndpoints)%clients]
		newAddr := endpointAddr(i, 0, c+1).String()
		svcName := fmt.Sprintf("svc-%d.%s.local", i, cpMesh)
		backend := netip.AddrPortFrom(endpointAddr(i, 0, c+1), cpPort).String()
		has := func(st *nodeapiv1.NodeState) bool {
			for _, s := range st.GetServices() {
				if s.GetName() != svcName {
					continue
				}
				for _, b := range s.GetPorts()[0].GetBackends() {
					if b.GetAddress() == backend {
						return true
					}
				}
			}
			return false
		}
		for _, n := range nodes {
			n.setWatch(has)
		}
		owner.mu.Lock()
		for _, in := range owner.instances {
			if in.GetCgroupPath() == fmt.Sprintf("svc-%d-0", i) {
				in.Addresses = []string{newAddr}
			}
		}
		owner.mu.Unlock()
		t0 := time.Now()
		owner.reg.Kick()
		if err := waitUntil(ctx, time.Minute, func() bool {
			for _, n := range nodes {
				if n.seenAt().IsZero() {
					return false
				}
			}
			return true
		}); err != nil {
			return fail(fmt.Errorf("endpoint change %d: %w", c, err))
		}
		for _, n := range nodes {
			lat = append(lat, float64(n.seenAt().Sub(t0))/float64(time.Millisecond))
		}
		// Let the renewals and rebuilds of this change settle.
		time.Sleep(200 * time.Millisecond)
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	res.ChangeP50, res.ChangeP99, res.ChangeMax = q(0.5), q(0.99), lat[len(lat)-1]
	cpu1, _ := procTicks(cmd.Process.Pid)
	res.ControllerCPU = float64(cpu1-cpu0) / clkTck
	res.ControllerRSS, res.ControllerPeak = procMem(cmd.Process.Pid)
	fmt.Printf("  endpoint change to all %d clients: p50 %.1fms p99 %.1fms max %.1fms; controller CPU %.2fs, RSS %.0f MiB (peak %.0f)\n",
		clients, res.ChangeP50, res.ChangeP99, res.ChangeMax, res.ControllerCPU, res.ControllerRSS, res.ControllerPeak)
	cancel()
	return res, nil
}

func waitUntil(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %v", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// procMem returns VmRSS and VmHWM of a process, MiB.
func procMem(pid int) (rss, hwm float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		var kb float64
		if _, err := fmt.Sscanf(line, "VmRSS: %f kB", &kb); err == nil {
			rss = kb / 1024
		}
		if _, err := fmt.Sscanf(line, "VmHWM: %f kB", &kb); err == nil {
			hwm = kb / 1024
		}
	}
	return rss, hwm
}

// controllerMain is the controller program: DIR SERVICES. It starts a
// controller on DIR (xDS on a free loopback port, printed first), and on
// "apply" from its standard input applies the world of SERVICES services
// in one transaction and prints how long that took (seconds).
func controllerMain(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "controller: want DIR SERVICES")
		return 2
	}
	n, err := strconv.Atoi(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "controller:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	zero := controlplane.Duration(0)
	q := resources.DefaultQuotas()
	q.VirtualNodesPerMesh, q.VirtualServicesPerMesh, q.BackendsPerVirtualNode = n+10, n+10, n+10
	c, err := controlplane.New(ctx, controlplane.Config{
		DataDir: args[0], APIListen: "127.0.0.1:0", XDSListen: "127.0.0.1:0",
		Registry: controlplane.RegistryConfig{WarmUp: &zero}, Quotas: q,
	}, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Fprintln(os.Stderr, "controller:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	fmt.Println(c.XDSAddr().String())
	go func() {
		r := bufio.NewReader(os.Stdin)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				stop()
				return
			}
			if line != "apply\n" {
				continue
			}
			start := time.Now()
			if err := applyWorld(ctx, c.Service(), n); err != nil {
				fmt.Fprintln(os.Stderr, "controller: apply:", err)
				stop()
				return
			}
			fmt.Println(time.Since(start).Seconds())
		}
	}()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "controller:", err)
		return 1
	}
	return 0
}

// applyWorld applies mesh cp: n virtual nodes and services and front.
func applyWorld(ctx context.Context, svc *resources.Service, n int) error {
	port := int32(cpPort)
	items := []resources.ApplyItem{{Ref: appmesh.Ref{Kind: appmesh.KindMesh, Name: cpMesh}, Spec: &appmesh.MeshSpec{}}}
	front := &appmesh.VirtualNodeSpec{
		Listeners:        []appmesh.Listener{{PortMapping: &appmesh.PortMapping{Port: ptr(int32(80)), Protocol: appmesh.ProtocolHTTP}}},
		ServiceDiscovery: &appmesh.ServiceDiscovery{DNS: &appmesh.DNSServiceDiscovery{Hostname: "front." + cpMesh + ".local"}},
	}
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		vs := name + "." + cpMesh + ".local"
		items = append(items,
			resources.ApplyItem{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: cpMesh, Name: name}, Spec: &appmesh.VirtualNodeSpec{
				Listeners:        []appmesh.Listener{{PortMapping: &appmesh.PortMapping{Port: &port, Protocol: appmesh.ProtocolTCP}}},
				ServiceDiscovery: &appmesh.ServiceDiscovery{DNS: &appmesh.DNSServiceDiscovery{Hostname: vs}},
			}},
			resources.ApplyItem{Ref: appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: cpMesh, Name: vs}, Spec: &appmesh.VirtualServiceSpec{
				Provider: &appmesh.VirtualServiceProvider{VirtualNode: &appmesh.VirtualNodeServiceProvider{VirtualNodeName: name}},
			}})
		front.Backends = append(front.Backends, appmesh.Backend{VirtualService: &appmesh.VirtualServiceBackend{VirtualServiceName: vs}})
	}
	items = append(items, resources.ApplyItem{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: cpMesh, Name: "front"}, Spec: front})
	_, err := svc.Apply(ctx, items, false)
	return err
}

func ptr[T any](v T) *T { return &v }
