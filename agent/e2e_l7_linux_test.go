// SPDX-License-Identifier: Apache-2.0

package agent_test

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/agent/datapath"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
	"github.com/weft-mesh/weft/test/netsim"
	"github.com/weft-mesh/weft/test/testutil"
)

// TestE2EL7Redirect: a meshed workload's connect to an L7 service of the
// agent's state file reaches the node proxy's listener (the agent's
// proxy.address, the node's address, which pods reach through their
// default route), the workload still sees the service address as its peer,
// and the proxy, a separate reader of the agent's pins, recovers the
// original destination and the caller's cgroup with
// datapath.OpenOrigDst(pinPath).Lookup at accept.
func TestE2EL7Redirect(t *testing.T) {
	e := newE2E(t)
	client := e.node.AddWorkload("client", netsim.WorkloadOptions{})
	e.writeConfig(e.agentConfig())
	e.writeState(&nodeapiv1.NodeState{
		Version:   "l7-1",
		Meshes:    []*nodeapiv1.Mesh{demoMesh(false)},
		Services:  []*nodeapiv1.Service{l7Service("web.demo.local", "10.96.0.10", 80)},
		Workloads: []*nodeapiv1.Workload{e.workload(client, 1, "client-v1")},
	})
	e.startAgent()

	od, err := datapath.OpenOrigDst(e.pinPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { od.Close() })
	accepted := standInProxy(t, e, od)

	out, err := client.Run(t.Context(), "dial", "-message", "hello-l7", "10.96.0.10:80")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("client: %q", out)
	got := parseLines(out)
	if got["remote"] != "10.96.0.10:80" || got["echo"] != "hello-l7" {
		t.Errorf("client saw remote %q and echo %q, want 10.96.0.10:80 (getpeername of the service) and hello-l7", got["remote"], got["echo"])
	}
	var a proxyAccept
	select {
	case a = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the stand-in proxy accepted nothing")
	}
	t.Logf("proxy accepted %v <- %v: original destination %v, cgroup %d, found %t, err %v", a.local, a.remote, a.orig, a.cgroup, a.ok, a.err)
	if a.err != nil || !a.ok || a.orig != netip.MustParseAddrPort("10.96.0.10:80") || a.cgroup != client.CgroupID {
		t.Errorf("OrigDst lookup = %v, cgroup %d, %t, %v; want 10.96.0.10:80, %d, true, nil", a.orig, a.cgroup, a.ok, a.err, client.CgroupID)
	}
	if a.local != e.proxyAddr() || got["peer"] != a.remote.String() || got["local"] != a.remote.String() {
		t.Errorf("proxy accepted on %v from %v; client local %s, peer line %s", a.local, a.remote, got["local"], got["peer"])
	}

	l := tcpLabels("client-v1", "web.demo.local")
	var redirected, closed float64
	testutil.Eventually(t, 5*time.Second, func() error {
		m := e.scrape()
		redirected = m.sum("weft_agent_decisions_total", "decision", "redirected_l7")
		closed = m.sum("weft_agent_tcp_connections_closed_total", l...)
		if redirected < 1 || closed < 1 {
			return fmt.Errorf("redirected_l7 %v, closed connections %v: want 1 each", redirected, closed)
		}
		return nil
	})
	t.Logf("agent metrics: redirected_l7 %v, closed connections for %v: %v", redirected, l, closed)
}

// proxyAccept is what the stand-in proxy saw of one connection.
type proxyAccept struct {
	local, remote netip.AddrPort
	orig          netip.AddrPort
	cgroup        uint64
	ok            bool
	err           error
}

// standInProxy listens on the agent's proxy address in the node's netns
// (in the test's own cgroup, outside the node's, so its sockets are never
// redirected). For each connection it looks the original destination up,
// reports it, and then behaves as netsim.EchoServer: greets with
// "peer <client address>" and echoes.
func standInProxy(t *testing.T, e *e2e, od *datapath.OrigDstReader) <-chan proxyAccept {
	t.Helper()
	var ln net.Listener
	err := e.node.NS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", e.proxyAddr().String())
		return err
	})
	if err != nil {
		t.Fatalf("stand-in proxy: %v", err)
	}
	accepted := make(chan proxyAccept, 8)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			a := proxyAccept{
				local:  netip.MustParseAddrPort(conn.LocalAddr().String()),
				remote: netip.MustParseAddrPort(conn.RemoteAddr().String()),
			}
			a.orig, a.cgroup, a.ok, a.err = od.Lookup(a.local, a.remote)
			select {
			case accepted <- a:
			default:
			}
			wg.Go(func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := fmt.Fprintf(conn, "peer %s\n", conn.RemoteAddr()); err != nil {
					return
				}
				_, _ = io.Copy(conn, conn)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return accepted
}

// parseLines reads netsim.Dial's "key value" lines.
func parseLines(out []byte) map[string]string {
	m := map[string]string{}
	for line := range strings.Lines(string(out)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			m[k] = v
		}
	}
	return m
}
