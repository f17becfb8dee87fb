// SPDX-License-Identifier: Apache-2.0

// Package netsim simulates weft nodes and workloads on one Linux machine, for
// the privileged and end-to-end tests: several nodes side by side, each with
// its own network namespace, cgroup v2 subtree and bpffs, joined by a bridge
// that lives in a namespace of its own, so that nothing touches the host's
// interfaces and the test's traffic never leaves the machine.
//
// # Topology
//
//	 fabric netns (Net.NS)
//	+---------------------------------------------------------+
//	|  br0 10.220.0.254/24 (fd00:220::fffe/64)                |
//	|   |  node1           |  node2                           |
//	+---|------------------|----------------------------------+
//	    | veth             | veth
//	+---|-------------+  +-|---------------+
//	|  eth0 10.220.0.1|  | eth0 10.220.0.2 |  node netns (Node.NS), ip_forward=1
//	|  pod1    pod2   |  |  pod1           |  routes: default via 10.220.0.254,
//	+---|-------|-----+  +--|--------------+  10.221.<other>.0/24 via <other node>,
//	    | veth  |           |                 10.221.<n>.<k>/32 dev pod<j>
//	 +--|--+ +--|--+     +--|--+
//	 |eth0 | |eth0 |     |eth0 |   pod netns (Workload.NS): 10.221.<n>.<k>/32,
//	 +-----+ +-----+     +-----+   default via 10.221.<n>.1 (the node's end)
//	 10.221.1.2 10.221.1.3  10.221.2.2
//
// # Addressing
//
// Node i (numbered from 1 in the order of Net.AddNode) has the i-th address
// of the fabric subnet, 10.220.0.i by default; the bridge has the last usable
// one (10.220.0.254) and is every node's default gateway. Node i's pods get
// /32s from its pod CIDR 10.221.i.0/24, from .2 up in the order of
// Node.AddWorkload (host-network workloads take no number); the node's end of
// every pod veth holds the gateway 10.221.i.1/32 and a /32 route points to
// each pod. Nodes route each other's pod CIDRs through their fabric
// addresses, as a host-gw CNI does, so pod to pod traffic is routed by both
// nodes and never NATed. With Options.IPv6 the same plan repeats in
// fd00:220::/64 (fabric) and fd00:221:0:i::/64 (pods), without duplicate
// address detection.
//
// Every Net has its own fabric namespace, so two tests that use the same
// (default) addresses never see each other: the plan is fixed and
// reproducible rather than randomised. Options.Subnet and Options.PodCIDR
// move it if a test needs other numbers.
//
// # Cgroups and bpffs
//
// New makes a scratch cgroup for the test (testutil.TempCgroup); each node's
// cgroup is a child of it (Node.CgroupPath, the subtree the node's agent
// attaches its programs to) and each workload's a child of its node's.
// Node.PinPath is a private bpffs mount for the node's pins. A host-network
// workload (WorkloadOptions{HostNetwork: true}) shares its node's namespace
// and addresses but still has its own cgroup, like a systemd service on a VM.
//
// # Running code in a workload
//
// Cgroup membership belongs to a process, and the cgroup hooks see a
// connection's cgroup from the process that makes it, so code that the
// datapath must treat as the workload has to run as a process of its own.
// Workload.Program, Run, Start and Command start one in the workload's cgroup
// and network namespace from its first instruction:
//
//   - the test binary is started with clone3(CLONE_INTO_CGROUP) straight into
//     the workload's cgroup (it never runs anywhere else);
//   - it is a trampoline: netsim.Main sees WEFT_NETSIM_NETNS, enters that
//     network namespace on a locked thread and execve()s the target, which
//     leaves that thread alone in the namespace;
//   - the target is the executable given to Command, or for the other three
//     the test binary again, which netsim.Main turns into the Go program
//     registered under the name given (WEFT_NETSIM_PROGRAM).
//
// So a test package that starts workload processes calls Main from TestMain,
// first thing, with the table of its programs:
//
//	func TestMain(m *testing.M) {
//		netsim.Main(m, netsim.Programs{
//			"echo-server": netsim.EchoServer,
//			"dial":        netsim.Dial,
//			"client":      client, // func(args []string) int
//		})
//	}
//
// and then runs them: out, err := pod.Run(ctx, "client", "-addr", addr), or
// p, err := pod.Start(ctx, "echo-server", "-listen", ":8080") for a server
// that runs until the test ends. The table is handed to Main rather than
// filled by Register calls so that no package state changes once the tests
// run (house style item 10). A program's process dies with the test binary
// (parent-death signal) and does not pay the race detector's one-second exit
// sleep (GORACE atexit_sleep_ms=0 unless GORACE sets it).
//
// A program that is not a test (`make demo`) does the same with RunMain,
// first thing in main, and hands New a Standalone: a testing.TB whose Fatal
// ends the function given to Standalone.Do and whose Close runs the
// cleanups.
//
// Workload.NS.Do (and Node.NS.Do) run Go code in the namespace on a locked
// thread of the test process itself: quick for listeners and dials that only
// need the namespace, but such code is in the test's cgroup, not the
// workload's.
//
// # Lifecycle
//
// Everything belongs to the test that called New and is removed by its
// Cleanup, also when it fails or calls t.Fatal, in this order: processes
// started with Start are killed and reaped; namespaces are closed, which
// deletes their veths and the bridge; bpffs mounts are unmounted; every
// process still in the test's cgroup tree (grandchildren, commands nobody
// waited for) is killed through cgroup.kill; the cgroups are removed deepest
// first. Nothing is bind-mounted under /run/netns, so `ip netns list` never
// shows a simulated node. TestCleanupLeavesNothing checks all of it after a
// test that fails on purpose.
//
// New, AddNode and AddWorkload fail the test on error and so belong on the
// test's goroutine; call testutil.RequirePrivileged before New.
package netsim
