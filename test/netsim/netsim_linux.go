// SPDX-License-Identifier: Apache-2.0

package netsim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/test/testutil"
)

// Fixed parts of the address plan (see Options).
var (
	defaultSubnet  = netip.MustParsePrefix("10.220.0.0/24")
	defaultPodCIDR = netip.MustParsePrefix("10.221.0.0/16")
	fabric6        = netip.MustParsePrefix("fd00:220::/64")
	fabric6Gateway = netip.MustParseAddr("fd00:220::fffe")
)

// Interface names.
const (
	bridgeName = "br0"
	podIfName  = "eth0" // inside a node and inside a pod
)

// namePattern is what node and workload names must look like: they become
// cgroup directory names and appear in logs.
var namePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// New creates a simulated network for the test: a fabric namespace holding a
// bridge, and the test's cgroup that nodes' cgroups go under. It starts with
// no nodes. Call testutil.RequirePrivileged first; New fails the test when
// it cannot build the network.
//
// Everything is removed by t's Cleanup, also when the test fails: processes
// in the test's cgroups are killed, namespaces are closed (which deletes
// their interfaces), bpffs mounts are unmounted and cgroups removed.
func New(tb testing.TB, opts Options) *Net {
	tb.Helper()
	subnet, podCIDR, err := opts.addressPlan()
	if err != nil {
		tb.Fatalf("netsim: %v", err)
	}
	n := &Net{
		Subnet:  subnet,
		Gateway: lastHost(subnet),
		t:       tb,
		podCIDR: podCIDR,
		ipv6:    opts.IPv6,
	}
	if opts.IPv6 {
		n.Subnet6, n.Gateway6 = fabric6, fabric6Gateway
	}

	// Cleanups run last-in first-out: the sweep of the test's cgroup runs
	// after every namespace, mount and process cleanup registered later,
	// and just before TempCgroup's own removal of the (then empty) root.
	n.CgroupPath = testutil.TempCgroup(tb)
	n.res.Cgroups = append(n.res.Cgroups, n.CgroupPath)
	tb.Cleanup(func() {
		if err := sweepCgroup(n.CgroupPath, 10*time.Second); err != nil {
			tb.Errorf("netsim: %v", err)
		}
	})

	n.NS = testutil.NewNetNS(tb)
	n.trackNS(n.NS)
	err = withHandle(n.NS, func(h *netlink.Handle) error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge: %w", err)
		}
		if err := h.AddrAdd(br, ipAddr(n.Gateway, subnet.Bits(), false)); err != nil {
			return fmt.Errorf("add bridge address: %w", err)
		}
		if n.ipv6 {
			if err := h.AddrAdd(br, ipAddr(n.Gateway6, n.Subnet6.Bits(), true)); err != nil {
				return fmt.Errorf("add bridge address: %w", err)
			}
		}
		if err := h.LinkSetUp(br); err != nil {
			return fmt.Errorf("set bridge up: %w", err)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("netsim: create fabric: %v", err)
	}
	return n
}

// addressPlan applies the defaults of o and checks the result.
func (o Options) addressPlan() (subnet, podCIDR netip.Prefix, err error) {
	subnet, podCIDR = o.Subnet, o.PodCIDR
	if !subnet.IsValid() {
		subnet = defaultSubnet
	}
	if !podCIDR.IsValid() {
		podCIDR = defaultPodCIDR
	}
	subnet, podCIDR = subnet.Masked(), podCIDR.Masked()
	if !subnet.Addr().Is4() || subnet.Bits() < 16 || subnet.Bits() > 24 {
		return subnet, podCIDR, fmt.Errorf("subnet %s: want an IPv4 prefix of /16 to /24", subnet)
	}
	if !podCIDR.Addr().Is4() || podCIDR.Bits() != 16 {
		return subnet, podCIDR, fmt.Errorf("pod CIDR %s: want an IPv4 /16", podCIDR)
	}
	if subnet.Overlaps(podCIDR) {
		return subnet, podCIDR, fmt.Errorf("subnet %s overlaps pod CIDR %s", subnet, podCIDR)
	}
	return subnet, podCIDR, nil
}

// AddNode adds a node named name (lower-case letters, digits and '-',
// unique in the Net): a network namespace whose eth0 is plugged into the
// fabric bridge, with the next fabric address, a default route through the
// bridge and routes to every other node's pod CIDR; IP forwarding on; a
// cgroup under the test's; and a private bpffs. It fails the test on error,
// so call it from the test's goroutine.
func (n *Net) AddNode(name string) *Node {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	node, err := n.addNode(name)
	if err != nil {
		n.t.Fatalf("netsim: add node %s: %v", name, err)
	}
	return node
}

func (n *Net) addNode(name string) (*Node, error) {
	if !namePattern.MatchString(name) {
		return nil, fmt.Errorf("invalid name: want %s", namePattern)
	}
	if slices.ContainsFunc(n.nodes, func(o *Node) bool { return o.Name == name }) {
		return nil, errors.New("name taken")
	}
	idx := len(n.nodes) + 1
	if idx > 250 || idx >= 1<<(32-n.Subnet.Bits())-2 {
		return nil, fmt.Errorf("too many nodes for subnet %s", n.Subnet)
	}
	node := &Node{
		Name:       name,
		Index:      idx,
		Addr:       nthAddr(n.Subnet.Addr(), idx),
		PodCIDR:    netip.PrefixFrom(nthAddr(n.podCIDR.Addr(), idx<<8), 24),
		CgroupPath: filepath.Join(n.CgroupPath, name),
		net:        n,
	}
	node.PodGateway = nthAddr(node.PodCIDR.Addr(), 1)
	if n.ipv6 {
		node.Addr6 = nthAddr(fabric6.Addr(), idx)
		// fd00:221:0:<idx>::/64
		node.PodCIDR6 = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0x00, 0x02, 0x21, 0, 0, byte(idx >> 8), byte(idx)}), 64)
		node.PodGateway6 = nthAddr(node.PodCIDR6.Addr(), 1)
	}

	var err error
	if node.CgroupID, err = n.mkCgroup(node.CgroupPath); err != nil {
		return nil, err
	}
	node.PinPath = testutil.MountBPFFS(n.t)
	n.res.Mounts = append(n.res.Mounts, node.PinPath)
	node.NS = testutil.NewNetNS(n.t)
	n.trackNS(node.NS)

	fabricIf := fmt.Sprintf("node%d", idx)
	err = withHandle(node.NS, func(h *netlink.Handle) error {
		if err := writeSysctls(n.ipv6, true); err != nil {
			return err
		}
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: podIfName},
			PeerName:      fabricIf,
			PeerNamespace: netlink.NsFd(n.NS.FD()),
		}
		if err := h.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth: %w", err)
		}
		link, err := h.LinkByName(podIfName)
		if err != nil {
			return fmt.Errorf("find %s: %w", podIfName, err)
		}
		if err := h.AddrAdd(link, ipAddr(node.Addr, n.Subnet.Bits(), false)); err != nil {
			return fmt.Errorf("add address: %w", err)
		}
		if n.ipv6 {
			if err := h.AddrAdd(link, ipAddr(node.Addr6, fabric6.Bits(), true)); err != nil {
				return fmt.Errorf("add address: %w", err)
			}
		}
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", podIfName, err)
		}
		if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: n.Gateway.AsSlice()}); err != nil {
			return fmt.Errorf("add default route: %w", err)
		}
		if n.ipv6 {
			if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: n.Gateway6.AsSlice()}); err != nil {
				return fmt.Errorf("add default route: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("set up node namespace: %w", err)
	}
	err = withHandle(n.NS, func(h *netlink.Handle) error {
		link, err := h.LinkByName(fabricIf)
		if err != nil {
			return fmt.Errorf("find %s: %w", fabricIf, err)
		}
		br, err := h.LinkByName(bridgeName)
		if err != nil {
			return fmt.Errorf("find %s: %w", bridgeName, err)
		}
		if err := h.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("plug %s into %s: %w", fabricIf, bridgeName, err)
		}
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", fabricIf, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("plug node into fabric: %w", err)
	}

	// Flat routing between nodes, like a host-gw CNI: each node reaches the
	// others' pods through their fabric addresses.
	for _, other := range n.nodes {
		if err := addPodRoutes(node, other); err != nil {
			return nil, err
		}
		if err := addPodRoutes(other, node); err != nil {
			return nil, err
		}
	}
	n.nodes = append(n.nodes, node)
	return node, nil
}

// addPodRoutes adds routes in from's namespace to to's pod CIDRs via to's
// fabric addresses.
func addPodRoutes(from, to *Node) error {
	ipv6 := to.Addr6.IsValid()
	err := withHandle(from.NS, func(h *netlink.Handle) error {
		link, err := h.LinkByName(podIfName)
		if err != nil {
			return fmt.Errorf("find %s: %w", podIfName, err)
		}
		routes := []*netlink.Route{{LinkIndex: link.Attrs().Index, Dst: ipNet(to.PodCIDR), Gw: to.Addr.AsSlice()}}
		if ipv6 {
			routes = append(routes, &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(to.PodCIDR6), Gw: to.Addr6.AsSlice()})
		}
		for _, r := range routes {
			if err := h.RouteAdd(r); err != nil {
				return fmt.Errorf("add route to %s: %w", r.Dst, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("route pods of %s on %s: %w", to.Name, from.Name, err)
	}
	return nil
}

// AddWorkload adds a workload named name (lower-case letters, digits and
// '-', unique on the node) with a cgroup under the node's. A pod (the
// default) also gets a network namespace with a veth to the node: eth0
// holds the pod's /32 and routes everything through the node's end, which
// holds PodGateway; the node routes the /32 to that veth. It fails the test
// on error, so call it from the test's goroutine.
func (node *Node) AddWorkload(name string, opts WorkloadOptions) *Workload {
	n := node.net
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	w, err := node.addWorkload(name, opts)
	if err != nil {
		n.t.Fatalf("netsim: add workload %s on %s: %v", name, node.Name, err)
	}
	return w
}

func (node *Node) addWorkload(name string, opts WorkloadOptions) (*Workload, error) {
	n := node.net
	if !namePattern.MatchString(name) {
		return nil, fmt.Errorf("invalid name: want %s", namePattern)
	}
	if slices.ContainsFunc(node.workloads, func(o *Workload) bool { return o.Name == name }) {
		return nil, errors.New("name taken")
	}
	w := &Workload{
		Name:        name,
		Node:        node,
		HostNetwork: opts.HostNetwork,
		CgroupPath:  filepath.Join(node.CgroupPath, name),
		cgroupFD:    -1,
	}
	var err error
	if w.CgroupID, err = n.mkCgroup(w.CgroupPath); err != nil {
		return nil, err
	}
	fd, err := unix.Open(w.CgroupPath, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open cgroup: %w", err)
	}
	w.cgroupFD = fd
	n.t.Cleanup(func() { _ = unix.Close(fd) })

	if opts.HostNetwork {
		w.NS, w.Addr, w.Addr6 = node.NS, node.Addr, node.Addr6
		node.workloads = append(node.workloads, w)
		return w, nil
	}

	pods := 0
	for _, o := range node.workloads {
		if !o.HostNetwork {
			pods++
		}
	}
	w.index = pods + 1
	if w.index > 253 {
		return nil, errors.New("too many pods on the node")
	}
	w.Addr = nthAddr(node.PodCIDR.Addr(), w.index+1)
	if n.ipv6 {
		w.Addr6 = nthAddr(node.PodCIDR6.Addr(), w.index+1)
	}
	w.NS = testutil.NewNetNS(n.t)
	n.trackNS(w.NS)

	nodeIf := fmt.Sprintf("pod%d", w.index)
	err = withHandle(w.NS, func(h *netlink.Handle) error {
		if err := writeSysctls(n.ipv6, false); err != nil {
			return err
		}
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: podIfName},
			PeerName:      nodeIf,
			PeerNamespace: netlink.NsFd(node.NS.FD()),
		}
		if err := h.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth: %w", err)
		}
		link, err := h.LinkByName(podIfName)
		if err != nil {
			return fmt.Errorf("find %s: %w", podIfName, err)
		}
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", podIfName, err)
		}
		type fam struct {
			addr, gw netip.Addr
		}
		fams := []fam{{w.Addr, node.PodGateway}}
		if n.ipv6 {
			fams = append(fams, fam{w.Addr6, node.PodGateway6})
		}
		for _, f := range fams {
			if err := h.AddrAdd(link, ipAddr(f.addr, f.addr.BitLen(), f.addr.Is6())); err != nil {
				return fmt.Errorf("add address %s: %w", f.addr, err)
			}
			gw := netip.PrefixFrom(f.gw, f.gw.BitLen())
			if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(gw), Scope: netlink.SCOPE_LINK}); err != nil {
				return fmt.Errorf("add route to %s: %w", f.gw, err)
			}
			if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: f.gw.AsSlice()}); err != nil {
				return fmt.Errorf("add default route via %s: %w", f.gw, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("set up pod namespace: %w", err)
	}
	err = withHandle(node.NS, func(h *netlink.Handle) error {
		link, err := h.LinkByName(nodeIf)
		if err != nil {
			return fmt.Errorf("find %s: %w", nodeIf, err)
		}
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", nodeIf, err)
		}
		type fam struct {
			addr, gw netip.Addr
		}
		fams := []fam{{w.Addr, node.PodGateway}}
		if n.ipv6 {
			fams = append(fams, fam{w.Addr6, node.PodGateway6})
		}
		for _, f := range fams {
			// The same gateway /32 sits on every pod veth of the node, as
			// with Calico's or Cilium's per-pod routes.
			if err := h.AddrAdd(link, ipAddr(f.gw, f.gw.BitLen(), f.gw.Is6())); err != nil {
				return fmt.Errorf("add address %s: %w", f.gw, err)
			}
			dst := netip.PrefixFrom(f.addr, f.addr.BitLen())
			if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(dst), Scope: netlink.SCOPE_LINK}); err != nil {
				return fmt.Errorf("add route to %s: %w", f.addr, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("plug pod into node: %w", err)
	}
	node.workloads = append(node.workloads, w)
	return w, nil
}

// Nodes returns the nodes in the order they were added.
func (n *Net) Nodes() []*Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.nodes)
}

// Workloads returns the node's workloads in the order they were added.
func (node *Node) Workloads() []*Workload {
	node.net.mu.Lock()
	defer node.net.mu.Unlock()
	return slices.Clone(node.workloads)
}

// mkCgroup creates a cgroup directory and returns its id.
func (n *Net) mkCgroup(path string) (uint64, error) {
	if err := os.Mkdir(path, 0o750); err != nil {
		return 0, fmt.Errorf("create cgroup: %w", err)
	}
	n.res.Cgroups = append(n.res.Cgroups, path)
	id, err := CgroupID(path)
	if err != nil {
		return 0, err
	}
	return id, nil
}

func (n *Net) trackNS(ns *testutil.NetNS) {
	var st unix.Stat_t
	if err := unix.Stat(ns.Path(), &st); err == nil {
		n.res.NetNS = append(n.res.NetNS, st.Ino)
	}
}

// CgroupID returns the id of the cgroup v2 directory at path: the value
// bpf_get_current_cgroup_id returns for its processes and the key that
// cgroup-aware BPF maps use.
func CgroupID(path string) (uint64, error) {
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, path, 0)
	if err != nil {
		return 0, fmt.Errorf("read cgroup id of %s: %w", path, err)
	}
	b := h.Bytes()
	if len(b) != 8 {
		return 0, fmt.Errorf("read cgroup id of %s: handle of %d bytes, want 8", path, len(b))
	}
	return binary.NativeEndian.Uint64(b), nil
}

// withHandle runs fn inside ns with a netlink handle opened there. The
// handle is opened on the namespace's locked thread (netlink.NewHandleAt
// would switch namespaces itself and ignore a failed switch back).
func withHandle(ns *testutil.NetNS, fn func(h *netlink.Handle) error) error {
	return ns.Do(func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("open netlink handle: %w", err)
		}
		defer h.Close()
		return fn(h)
	})
}

// writeSysctls sets the namespace's sysctls; call it inside the namespace.
// Forwarding is on for nodes; IPv6 duplicate address detection is off so
// addresses are usable at once.
func writeSysctls(ipv6, forward bool) error {
	var kv [][2]string
	if forward {
		kv = append(kv, [2]string{"net/ipv4/ip_forward", "1"})
	}
	if ipv6 {
		kv = append(kv,
			[2]string{"net/ipv6/conf/all/accept_dad", "0"},
			[2]string{"net/ipv6/conf/default/accept_dad", "0"})
		if forward {
			kv = append(kv, [2]string{"net/ipv6/conf/all/forwarding", "1"})
		}
	}
	for _, s := range kv {
		if err := os.WriteFile("/proc/sys/"+s[0], []byte(s[1]), 0o600); err != nil {
			return fmt.Errorf("set sysctl %s: %w", strings.ReplaceAll(s[0], "/", "."), err)
		}
	}
	return nil
}

// sweepCgroup kills every process left in the cgroup tree at root, waits
// until it is empty, and removes its descendants bottom-up (root itself is
// left to its owner).
func sweepCgroup(root string, timeout time.Duration) error {
	if _, err := os.Stat(root); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// cgroup.kill SIGKILLs every process of the subtree, and only those: no
	// pid read from cgroup.procs can be reused by an unrelated process in
	// between.
	if populated(root) {
		if err := os.WriteFile(filepath.Join(root, "cgroup.kill"), []byte("1"), 0o600); err != nil {
			return fmt.Errorf("kill processes in %s: %w", root, err)
		}
		deadline := time.Now().Add(timeout)
		for populated(root) {
			if time.Now().After(deadline) {
				return fmt.Errorf("empty cgroup %s: processes left after %v: %v", root, timeout, cgroupPids(root))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root {
			dirs = append(dirs, path)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list cgroups under %s: %w", root, err)
	}
	// Deepest first.
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
		}
	}
	return errors.Join(errs...)
}

// populated reports whether any process is in the cgroup tree at path.
func populated(path string) bool {
	ev, err := os.ReadFile(filepath.Join(path, "cgroup.events"))
	if err != nil {
		return false
	}
	return bytes.Contains(ev, []byte("populated 1"))
}

// cgroupPids lists the processes in the cgroup tree at root, for error
// messages.
func cgroupPids(root string) []string {
	var pids []string
	_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil //nolint:nilerr // best effort: a cgroup may vanish during the walk
		}
		b, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		pids = append(pids, strings.Fields(string(b))...)
		return nil
	})
	return pids
}

// nthAddr returns base + i.
func nthAddr(base netip.Addr, i int) netip.Addr {
	a := base.As16()
	carry := uint(i)
	for k := 15; k >= 0 && carry > 0; k-- {
		sum := uint(a[k]) + carry&0xff
		a[k] = byte(sum)
		carry = carry>>8 + sum>>8
	}
	if base.Is4() {
		return netip.AddrFrom16(a).Unmap()
	}
	return netip.AddrFrom16(a)
}

// lastHost returns the last usable address of an IPv4 prefix.
func lastHost(p netip.Prefix) netip.Addr {
	return nthAddr(p.Addr(), 1<<(32-p.Bits())-2)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// ipAddr builds a netlink address; IPv6 addresses skip duplicate address
// detection.
func ipAddr(a netip.Addr, bits int, v6 bool) *netlink.Addr {
	addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, bits))}
	if v6 {
		addr.Flags = unix.IFA_F_NODAD
	}
	return addr
}
