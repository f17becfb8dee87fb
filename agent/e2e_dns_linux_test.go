// SPDX-License-Identifier: Apache-2.0

package agent_test

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"

	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
	"github.com/weft-mesh/weft/test/netsim"
)

// TestE2EDNS: a meshed workload resolves names through its normal resolver
// path, both Go's (net.DefaultResolver, reading /etc/resolv.conf) and
// glibc's (getent hosts): the datapath redirects its port 53 traffic to the
// agent, which answers the mesh's service name itself and forwards any
// other name to its upstream.
//
// Resolver configuration: the workload process gets its own mount
// namespace in which /etc/resolv.conf names 192.0.2.53 (TEST-NET-1, where
// nothing answers and which the pod cannot even route to) and
// /etc/nsswitch.conf says "hosts: files dns". So the test does not depend
// on the host's resolver (this machine's /etc/resolv.conf names
// 10.255.255.53, which the pod cannot reach either), on what the host's
// nsswitch.conf sends to which service, or on search domains, and an answer
// can only have come through the redirect. The upstream is a fake DNS
// server the test runs in the node's netns (127.0.0.1 there), answering
// other.example. with 192.0.2.7 and NXDOMAIN for the rest; the mesh is
// DROP_ALL, which must not stop DNS.
func TestE2EDNS(t *testing.T) {
	e := newE2E(t)
	client := e.node.AddWorkload("client", netsim.WorkloadOptions{})
	up := startUpstream(t, e)

	cfg := e.agentConfig()
	cfg.DNS.Upstreams = []string{up.addr.String()}
	e.writeConfig(cfg)
	e.writeState(&nodeapiv1.NodeState{
		Version:   "dns-1",
		Meshes:    []*nodeapiv1.Mesh{demoMesh(true)},
		Services:  []*nodeapiv1.Service{l7Service("web.demo.local", "10.96.0.10", 80)},
		Workloads: []*nodeapiv1.Workload{e.workload(client, 1, "client-v1")},
	})
	e.startAgent()

	resolvConf := filepath.Join(e.dir, "resolv.conf")
	nsswitch := filepath.Join(e.dir, "nsswitch.conf")
	writeFile(t, resolvConf, "# written by TestE2EDNS: nothing answers here; the datapath redirects to the agent\nnameserver 192.0.2.53\noptions timeout:2 attempts:2\n")
	writeFile(t, nsswitch, "hosts: files dns\n")
	hostMntNS, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}

	cmd := client.Program(t.Context(), "resolve", "-resolv-conf", resolvConf, "-nsswitch", nsswitch,
		"-host-mntns", hostMntNS, "web.demo.local", "other.example")
	cmd.SysProcAttr.Unshareflags = unix.CLONE_NEWNS
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("resolve: %v\nstdout: %s\nstderr: %s", err, stdout.Bytes(), stderr.Bytes())
	}
	t.Logf("resolve took %v; stdout:\n%sstderr: %s", time.Since(start).Round(time.Millisecond), stdout.Bytes(), stderr.Bytes())

	want := map[string]string{
		"go web.demo.local":     "10.96.0.10",
		"getent web.demo.local": "10.96.0.10",
		"go other.example":      "192.0.2.7",
		"getent other.example":  "192.0.2.7",
	}
	got := map[string]string{}
	for line := range strings.Lines(string(stdout.Bytes())) {
		f := fields(line)
		got[strings.Fields(line)[0]+" "+f["name"]] = f["addrs"]
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s resolved to %q, want %q", k, got[k], v)
		}
	}

	asked := up.questions()
	t.Logf("the upstream was asked %v", asked)
	if !slices.ContainsFunc(asked, func(q string) bool { return strings.HasPrefix(q, "other.example. A") }) {
		t.Errorf("the upstream was never asked other.example. A: %v", asked)
	}
	if slices.ContainsFunc(asked, func(q string) bool { return strings.HasPrefix(q, "web.demo.local.") }) {
		t.Errorf("the upstream was asked about the mesh name: %v", asked)
	}

	m := e.scrape()
	answered := m.sum("weft_agent_dns_queries_total", "result", "answered")
	forwarded := m.sum("weft_agent_dns_queries_total", "result", "forwarded")
	failed := m.sum("weft_agent_dns_queries_total", "result", "failed")
	redirected := m.sum("weft_agent_decisions_total", "decision", "dns_redirected")
	t.Logf("agent metrics: dns queries answered %v, forwarded %v, failed %v; dns_redirected decisions %v", answered, forwarded, failed, redirected)
	// Each resolver asks for A and AAAA of each name.
	if answered < 4 || forwarded < 4 || redirected < 2 {
		t.Errorf("dns queries answered %v, forwarded %v, redirected sockets %v: want at least 4, 4 and 2", answered, forwarded, redirected)
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil { // the workload runs as root too
		t.Fatal(err)
	}
}

// upstream is a fake DNS server for the agent to forward to.
type upstream struct {
	addr netip.AddrPort
	mu   sync.Mutex
	seen []string // "name. TYPE" of each question
}

// startUpstream serves DNS on UDP and TCP 127.0.0.1 (a free port) in the
// node's netns: other.example. has the A record 192.0.2.7 (and no AAAA);
// every other name is NXDOMAIN.
func startUpstream(t *testing.T, e *e2e) *upstream {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	err := e.node.NS.Do(func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", pc.LocalAddr().String())
		return err
	})
	if err != nil {
		if pc != nil {
			pc.Close()
		}
		t.Fatalf("fake upstream: %v", err)
	}
	u := &upstream{addr: netip.MustParseAddrPort(pc.LocalAddr().String())}
	handler := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			u.mu.Lock()
			u.seen = append(u.seen, q.Name+" "+mdns.TypeToString[q.Qtype])
			u.mu.Unlock()
			if !strings.EqualFold(q.Name, "other.example.") {
				m.Rcode = mdns.RcodeNameError
				continue
			}
			if q.Qtype == mdns.TypeA {
				m.Answer = append(m.Answer, &mdns.A{
					Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 30},
					A:   net.IPv4(192, 0, 2, 7),
				})
			}
		}
		_ = w.WriteMsg(m)
	})
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the servers' shutdowns, registered below
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Go(func() {
			if err := srv.ActivateAndServe(); err != nil {
				t.Errorf("fake upstream: %v", err)
			}
		})
		<-started
		t.Cleanup(func() {
			if err := srv.Shutdown(); err != nil {
				t.Errorf("fake upstream shutdown: %v", err)
			}
		})
	}
	return u
}

func (u *upstream) questions() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.seen)
}
