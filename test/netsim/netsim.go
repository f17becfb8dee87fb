// SPDX-License-Identifier: Apache-2.0

package netsim

import (
	"net/netip"
	"os/exec"
	"sync"
	"testing"

	"github.com/weft-mesh/weft/test/testutil"
)

// Options configure a simulated network. The zero value is usable.
type Options struct {
	// Subnet is the fabric's IPv4 subnet, /16 to /24. Node i (counting from
	// 1) gets its i-th address and the bridge the last usable one. The
	// default is 10.220.0.0/24: node 1 is 10.220.0.1, the bridge
	// 10.220.0.254.
	Subnet netip.Prefix
	// PodCIDR is the IPv4 /16 that pod CIDRs are cut from: node i's pods
	// are in the /24 whose third octet is i. The default is 10.221.0.0/16:
	// node 1's pods are 10.221.1.2, 10.221.1.3, ... and their gateway on the
	// node is 10.221.1.1.
	PodCIDR netip.Prefix
	// IPv6 adds IPv6 addresses and routes next to the IPv4 ones: the fabric
	// is fd00:220::/64 (node i is fd00:220::i, the bridge fd00:220::fffe)
	// and node i's pods are in fd00:221:0:i::/64 (gateway ::1, pods from
	// ::2), mirroring the IPv4 plan.
	IPv6 bool
}

// WorkloadOptions configure a workload.
type WorkloadOptions struct {
	// HostNetwork runs the workload in its node's network namespace, like
	// a process on a VM or a hostNetwork pod: it has the node's addresses
	// and only its own cgroup.
	HostNetwork bool
}

// Net is a simulated network: a fabric bridge in a private network
// namespace and the nodes plugged into it. Create it with New; everything it
// creates is removed by the Cleanup of the test that created it.
type Net struct {
	// Subnet is the fabric's IPv4 subnet.
	Subnet netip.Prefix
	// Gateway is the bridge's IPv4 address, the nodes' default gateway.
	Gateway netip.Addr
	// Subnet6 and Gateway6 are the IPv6 counterparts, zero unless
	// Options.IPv6.
	Subnet6  netip.Prefix
	Gateway6 netip.Addr
	// NS is the fabric's network namespace; it holds only the bridge and
	// the fabric ends of the nodes' veths.
	NS *testutil.NetNS
	// CgroupPath is the test's cgroup; every node's cgroup is a child.
	CgroupPath string

	t       testing.TB
	podCIDR netip.Prefix
	ipv6    bool

	mu    sync.Mutex
	nodes []*Node
	res   resources
}

// Node is a simulated node: a network namespace with one interface on the
// fabric, a cgroup v2 subtree for the node's agent to attach to, and a
// private bpffs.
type Node struct {
	// Name is the name given to AddNode.
	Name string
	// Index is the node's number, from 1, in the order of AddNode; it picks
	// the node's addresses.
	Index int
	// NS is the node's network namespace. NS.Do runs Go code in it (on a
	// locked OS thread, not in the node's cgroup).
	NS *testutil.NetNS
	// Addr is the node's IPv4 address on the fabric (interface eth0).
	Addr netip.Addr
	// Addr6 is the node's IPv6 address on the fabric, zero unless
	// Options.IPv6.
	Addr6 netip.Addr
	// PodCIDR (and PodCIDR6) hold the node's pods' addresses. The other
	// nodes route them through this node.
	PodCIDR  netip.Prefix
	PodCIDR6 netip.Prefix
	// PodGateway (and PodGateway6) is the node's address on every pod veth,
	// the pods' default gateway.
	PodGateway  netip.Addr
	PodGateway6 netip.Addr
	// CgroupPath is the node's cgroup v2 directory: the subtree the node's
	// agent attaches its programs to. Every workload's cgroup is a child.
	CgroupPath string
	// CgroupID is the id of that cgroup (what bpf_get_current_cgroup_id
	// returns for its processes).
	CgroupID uint64
	// PinPath is the node's own bpffs mount, standing in for
	// /sys/fs/bpf on a real node.
	PinPath string

	net       *Net
	workloads []*Workload
}

// Workload is a pod-like (or, with HostNetwork, VM-process-like) workload on
// a node: a cgroup under the node's and, for pods, a network namespace routed
// through the node.
type Workload struct {
	// Name is the name given to AddWorkload.
	Name string
	// Node is the node the workload runs on.
	Node *Node
	// HostNetwork reports whether the workload shares its node's network
	// namespace.
	HostNetwork bool
	// Addr is the workload's IPv4 address: a /32 in the node's PodCIDR, or
	// the node's address with HostNetwork.
	Addr netip.Addr
	// Addr6 is the workload's IPv6 address, zero unless Options.IPv6.
	Addr6 netip.Addr
	// NS is the workload's network namespace (the node's with HostNetwork).
	// NS.Do runs Go code in it but not in the workload's cgroup: cgroup
	// membership belongs to a process, so use Program, Run, Start or
	// Command for code that the cgroup hooks must see.
	NS *testutil.NetNS
	// CgroupPath is the workload's cgroup v2 directory.
	CgroupPath string
	// CgroupID is the id of that cgroup.
	CgroupID uint64

	index    int
	cgroupFD int
}

// Programs maps names to the Go programs that workloads can run as real
// processes (Workload.Program, Run, Start). A program receives its arguments
// (without the program name) and returns its exit code.
type Programs map[string]func(args []string) int

// Process is a program started with Workload.Start. The Net owns it: its
// waiter reaps it, and the test's Cleanup kills it if it still runs.
type Process struct {
	// Name is the program's name.
	Name string

	cmd    *exec.Cmd
	out    *syncBuffer
	errOut *syncBuffer
	done   chan struct{}
	err    error
}

// resources is the Net's bookkeeping of what it created, for the cleanup
// test.
type resources struct {
	NetNS   []uint64 `json:"netns"`
	Cgroups []string `json:"cgroups"`
	Mounts  []string `json:"mounts"`
	Pids    []int    `json:"pids"`
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

// Write appends p to the buffer.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Bytes returns a copy of the buffer's contents.
func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}
