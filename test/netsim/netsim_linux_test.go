// SPDX-License-Identifier: Apache-2.0

package netsim_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/test/netsim"
	"github.com/weft-mesh/weft/test/testutil"
)

// families are the address families the connectivity tests run over.
var families = []struct {
	name string
	addr func(netip.Addr, netip.Addr) netip.Addr // (v4, v6) -> the one to use
}{
	{"ipv4", func(v4, _ netip.Addr) netip.Addr { return v4 }},
	{"ipv6", func(_, v6 netip.Addr) netip.Addr { return v6 }},
}

func TestNodesReachEachOther(t *testing.T) {
	testutil.RequirePrivileged(t)
	t.Parallel()
	n := netsim.New(t, netsim.Options{IPv6: true})
	a, b := n.AddNode("a"), n.AddNode("b")

	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			t.Parallel()
			src, dst := fam.addr(a.Addr, a.Addr6), fam.addr(b.Addr, b.Addr6)
			var ln net.Listener
			err := b.NS.Do(func() error {
				var err error
				ln, err = (&net.ListenConfig{}).Listen(t.Context(), "tcp", netip.AddrPortFrom(dst, 0).String())
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			peers := make(chan string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					peers <- err.Error()
					return
				}
				defer c.Close()
				peers <- c.RemoteAddr().String()
				_, _ = io.Copy(c, c)
			}()

			var got string
			err = a.NS.Do(func() error {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				c, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
				if err != nil {
					return err
				}
				defer c.Close()
				if _, err := c.Write([]byte("hello\n")); err != nil {
					return err
				}
				got, err = bufio.NewReader(c).ReadString('\n')
				return err
			})
			if err != nil {
				t.Fatalf("dial %s from node a: %v", ln.Addr(), err)
			}
			if got != "hello\n" {
				t.Errorf("echo = %q; want %q", got, "hello\n")
			}
			if peer, err := netip.ParseAddrPort(<-peers); err != nil || peer.Addr() != src {
				t.Errorf("node b saw the connection from %s (%v); want node a's %s", peer, err, src)
			}
		})
	}
}

// parseLines turns "key value" lines into a map.
func parseLines(out []byte) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, " ")
		m[k] = v
	}
	return m
}

// waitListening waits until an EchoServer process says it listens.
func waitListening(t *testing.T, p *netsim.Process) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		select {
		case <-p.Done():
			return fmt.Errorf("server exited: %w; stderr: %s", p.Wait(), p.Stderr())
		default:
		}
		if !bytes.Contains(p.Stdout(), []byte("listening")) {
			return errors.New("server not listening yet")
		}
		return nil
	})
}

func TestPodToPodAcrossNodes(t *testing.T) {
	testutil.RequirePrivileged(t)
	t.Parallel()
	n := netsim.New(t, netsim.Options{IPv6: true})
	a, b := n.AddNode("a"), n.AddNode("b")
	// A host-network workload first, so that pod numbering skips it.
	b.AddWorkload("daemon", netsim.WorkloadOptions{HostNetwork: true})
	pa := a.AddWorkload("client", netsim.WorkloadOptions{})
	pb := b.AddWorkload("server", netsim.WorkloadOptions{})
	host := a.AddWorkload("host", netsim.WorkloadOptions{HostNetwork: true})

	if want := netip.MustParseAddr("10.221.1.2"); pa.Addr != want {
		t.Errorf("first pod on node 1 has %s; want %s", pa.Addr, want)
	}
	if want := netip.MustParseAddr("fd00:221:0:2::2"); pb.Addr6 != want {
		t.Errorf("first pod on node 2 has %s; want %s", pb.Addr6, want)
	}

	srv, err := pb.Start(t.Context(), "echo-server", "-listen", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	waitListening(t, srv)

	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			t.Parallel()
			src, dst := fam.addr(pa.Addr, pa.Addr6), fam.addr(pb.Addr, pb.Addr6)
			out, err := pa.Run(t.Context(), "dial", "-message", "across", netip.AddrPortFrom(dst, 8080).String())
			if err != nil {
				t.Fatal(err)
			}
			got := parseLines(out)
			if got["echo"] != "across" {
				t.Errorf("echo %q; want %q (output %q)", got["echo"], "across", out)
			}
			// The server sees the pod's own address: routed, not NATed.
			peer, err := netip.ParseAddrPort(got["peer"])
			if err != nil || peer.Addr() != src {
				t.Errorf("server saw the client as %q; want %s", got["peer"], src)
			}
		})
	}

	// The pod also reaches the remote node, and node a the remote pod.
	t.Run("pod-to-node", func(t *testing.T) {
		t.Parallel()
		ln := listenIn(t, b.NS, netip.AddrPortFrom(b.Addr, 0))
		if _, err := pa.Run(t.Context(), "dial", ln.Addr().String()); err != nil {
			t.Error(err)
		}
	})
	t.Run("node-to-pod", func(t *testing.T) {
		t.Parallel()
		out, err := host.Run(t.Context(), "dial", netip.AddrPortFrom(pb.Addr, 8080).String())
		if err != nil {
			t.Fatal(err)
		}
		if peer, _ := netip.ParseAddrPort(parseLines(out)["peer"]); peer.Addr() != a.Addr {
			t.Errorf("server saw node a's process as %s; want %s", peer, a.Addr)
		}
	})
}

// listenIn starts an echo listener (with the EchoServer greeting) inside ns
// for the rest of the test.
func listenIn(t *testing.T, ns *testutil.NetNS, addr netip.AddrPort) net.Listener {
	t.Helper()
	var ln net.Listener
	err := ns.Do(func() error {
		var err error
		ln, err = (&net.ListenConfig{}).Listen(t.Context(), "tcp", addr.String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "peer %s\n", c.RemoteAddr())
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestWorkloadProcessPlacement(t *testing.T) {
	testutil.RequirePrivileged(t)
	t.Parallel()
	cg2, err := testutil.Cgroup2Path()
	if err != nil {
		t.Fatal(err)
	}
	n := netsim.New(t, netsim.Options{})
	node := n.AddNode("node")
	other := n.AddNode("other")
	if node.PinPath == other.PinPath {
		t.Errorf("nodes share the pin path %s", node.PinPath)
	}
	for _, nd := range []*netsim.Node{node, other} {
		var st unix.Statfs_t
		if err := unix.Statfs(nd.PinPath, &st); err != nil || uint32(st.Type) != unix.BPF_FS_MAGIC {
			t.Errorf("%s's PinPath %s is not a bpffs (statfs: %v)", nd, nd.PinPath, err)
		}
		if filepath.Dir(nd.CgroupPath) != n.CgroupPath {
			t.Errorf("%s's cgroup %s is not under the test's %s", nd, nd.CgroupPath, n.CgroupPath)
		}
	}

	// Workloads are added on the test's goroutine (AddWorkload fails the
	// test that owns the Net), then checked in parallel.
	for _, tc := range []struct {
		name string
		opts netsim.WorkloadOptions
		w    *netsim.Workload
	}{
		{"pod", netsim.WorkloadOptions{}, node.AddWorkload("pod", netsim.WorkloadOptions{})},
		{"host-network", netsim.WorkloadOptions{HostNetwork: true}, node.AddWorkload("host-network", netsim.WorkloadOptions{HostNetwork: true})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := tc.w
			wantCgroup := "0::" + strings.TrimPrefix(w.CgroupPath, cg2) + "\n"
			wantNS := fmt.Sprintf("net:[%d]", nsInode(t, w.NS.Path()))

			if filepath.Dir(w.CgroupPath) != node.CgroupPath {
				t.Errorf("cgroup %s is not under the node's %s", w.CgroupPath, node.CgroupPath)
			}
			if ino := nsInode(t, w.CgroupPath); w.CgroupID != ino {
				t.Errorf("CgroupID = %d; want the cgroup's inode %d", w.CgroupID, ino)
			}
			nodeNS := nsInode(t, node.NS.Path())
			if shared := nsInode(t, w.NS.Path()) == nodeNS; shared != tc.opts.HostNetwork {
				t.Errorf("workload shares the node's network namespace: %v; want %v", shared, tc.opts.HostNetwork)
			}
			if tc.opts.HostNetwork && w.Addr != node.Addr {
				t.Errorf("host-network workload has %s; want the node's %s", w.Addr, node.Addr)
			}

			// A started program, seen from outside.
			p, err := w.Start(t.Context(), "whoami", "wait")
			if err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, func() error {
				if !bytes.Contains(p.Stdout(), []byte("netns")) {
					return fmt.Errorf("no output yet; stderr %q", p.Stderr())
				}
				return nil
			})
			cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.Pid()))
			if err != nil {
				t.Fatal(err)
			}
			if got := lastLine(cg); got != wantCgroup {
				t.Errorf("/proc/%d/cgroup ends with %q; want %q", p.Pid(), got, wantCgroup)
			}
			if got, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", p.Pid())); err != nil || got != wantNS {
				t.Errorf("process in network namespace %s (%v); want %s", got, err, wantNS)
			}
			// ... and from inside, as its very first action.
			if out := string(p.Stdout()); !strings.Contains(out, wantCgroup) || !strings.Contains(out, "netns "+wantNS) {
				t.Errorf("the program saw itself in\n%s\nwant cgroup %q and %s", out, wantCgroup, wantNS)
			}
			if err := p.Kill(); err != nil {
				t.Error(err)
			}
			if err := p.Wait(); err == nil {
				t.Error("Wait after Kill returned nil")
			}
			if err := p.Wait(); err == nil {
				t.Error("second Wait returned nil")
			}

			// An ordinary executable through Command.
			out, err := w.Command(t.Context(), "cat", "/proc/self/cgroup").Output()
			if err != nil {
				t.Fatal(err)
			}
			if got := lastLine(out); got != wantCgroup {
				t.Errorf("cat /proc/self/cgroup ends with %q; want %q", got, wantCgroup)
			}
			out, err = w.Command(t.Context(), "readlink", "/proc/self/ns/net").Output()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(out)); got != wantNS {
				t.Errorf("readlink /proc/self/ns/net = %q; want %q", got, wantNS)
			}
		})
	}
}

// lastLine returns the last line of b with its newline ("0::/..." in a
// hybrid hierarchy's /proc/pid/cgroup).
func lastLine(b []byte) string {
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	return strings.TrimSuffix(lines[len(lines)-1], "\n") + "\n"
}

func TestRunErrors(t *testing.T) {
	testutil.RequirePrivileged(t)
	t.Parallel()
	n := netsim.New(t, netsim.Options{})
	w := n.AddNode("node").AddWorkload("pod", netsim.WorkloadOptions{})

	if _, err := w.Run(t.Context(), "no-such-program"); err == nil || !strings.Contains(err.Error(), "unknown program") {
		t.Errorf("Run of an unknown program: %v; want an unknown program error", err)
	}
	_, err := w.Run(t.Context(), "fail", "boom")
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Run of a failing program: %v; want exit status 3 and its stderr", err)
	}
	if err := w.Command(t.Context(), "no-such-binary-netsim").Start(); err == nil {
		t.Error("Command of a missing executable started")
	}
	out, err := w.Run(t.Context(), "whoami")
	if err != nil || !bytes.Contains(out, []byte("netns")) {
		t.Errorf("Run(whoami) = %q, %v", out, err)
	}
	// A context that ends kills the program.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := w.Run(ctx, "sleep"); err == nil {
		t.Error("Run(sleep) with an ending context returned nil")
	}
	t.Logf("Run(sleep) returned %v after its context ended", time.Since(start))
}

func TestHostSeesNoAddresses(t *testing.T) {
	testutil.RequirePrivileged(t)
	t.Parallel()
	before := hostInterfaces(t)
	n := netsim.New(t, netsim.Options{IPv6: true})
	var ours []netip.Addr
	ours = append(ours, n.Gateway, n.Gateway6)
	for _, name := range []string{"a", "b"} {
		node := n.AddNode(name)
		ours = append(ours, node.Addr, node.Addr6, node.PodGateway, node.PodGateway6)
		for _, pod := range []string{"p1", "p2"} {
			w := node.AddWorkload(pod, netsim.WorkloadOptions{})
			ours = append(ours, w.Addr, w.Addr6)
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		for _, o := range ours {
			if p.Addr() == o {
				t.Errorf("the host namespace has %s", o)
			}
		}
	}
	if after := hostInterfaces(t); after != before {
		t.Errorf("host interfaces changed:\nbefore %s\nafter  %s", before, after)
	}
}

// hostInterfaces lists the host namespace's interface names.
func hostInterfaces(t *testing.T) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name+"#"+strconv.Itoa(i.Index))
	}
	return strings.Join(names, " ")
}
