// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/test/testutil"
)

// checkBinomial fails unless k of n trials is within 5 sigma of n*p.
func checkBinomial(t *testing.T, what string, k, n int, p float64) {
	t.Helper()
	mean := float64(n) * p
	sigma := math.Sqrt(float64(n) * p * (1 - p))
	t.Logf("%s: %d of %d (expected %.0f, sigma %.1f, %.2f sigma off)", what, k, n, mean, sigma, (float64(k)-mean)/sigma)
	if math.Abs(float64(k)-mean) > 5*sigma {
		t.Errorf("%s: %d of %d, want %.0f ± %.0f (5 sigma)", what, k, n, mean, 5*sigma)
	}
}

func l4(id uint32, vip string, port uint16, proto Protocol, backends ...Backend) Service {
	return Service{ID: id, Addr: netip.MustParseAddr(vip), Port: port, Proto: proto, Mode: ModeL4, Backends: backends}
}

// Test 1: TCP 90/10, getpeername, weight change affects new connections only.
func TestTCPWeights(t *testing.T) {
	e := newEnv(t)
	a := e.tcpServer("127.0.0.1:0", "a", false)
	b := e.tcpServer("127.0.0.2:0", "b", false)
	d := e.start(e.config())
	wl := []Workload{{CgroupID: e.wl.id, ID: 1, MeshID: 1}}
	svc := func(wa, wb uint32) State {
		return State{Workloads: wl, Services: []Service{l4(10, "10.96.0.10", 80, TCP, Backend{a, wa}, Backend{b, wb})}}
	}
	if ch := reconcile(t, d, svc(90, 10)); ch != (Changes{ServicesUpserted: 1, WorkloadsUpserted: 1}) {
		t.Errorf("first Reconcile: %+v", ch)
	}

	c := e.child(e.wl)
	held := c.must(childCmd{Op: "hold", Addr: "10.96.0.10:80"})
	if held.Peer != "10.96.0.10:80" {
		t.Errorf("getpeername of held connection: %s, want the service address", held.Peer)
	}

	const n = 2000
	start := time.Now()
	r := c.must(childCmd{Op: "tcp", Addr: "10.96.0.10:80", N: n})
	t.Logf("90/10: %d connections in %v: %v", n, time.Since(start).Round(time.Millisecond), r.IDs)
	checkBinomial(t, "90/10 backend a", r.IDs["a"], n, 0.9)
	if r.IDs["a"]+r.IDs["b"] != n {
		t.Errorf("connections reached %v, want only a and b", r.IDs)
	}
	if r.Peers["10.96.0.10:80"] != n {
		t.Errorf("getpeername answers %v, want 10.96.0.10:80 for all %d", r.Peers, n)
	}

	if ch := reconcile(t, d, svc(50, 50)); ch != (Changes{ServicesUpserted: 1}) {
		t.Errorf("weight change: %+v, want one service upserted", ch)
	}
	if ask := c.must(childCmd{Op: "ask"}); ask.ID != held.ID {
		t.Errorf("connection opened before the change moved from %s to %s", held.ID, ask.ID)
	}
	r = c.must(childCmd{Op: "tcp", Addr: "10.96.0.10:80", N: n})
	t.Logf("50/50: %v", r.IDs)
	checkBinomial(t, "50/50 backend a", r.IDs["a"], n, 0.5)

	// An unmeshed process is untouched: nobody owns the VIP and there is
	// no route to it in the namespace.
	other := e.child(e.other).do(childCmd{Op: "dialerr", Addr: "10.96.0.10:80"})
	if other.Errno != int(unix.ENETUNREACH) {
		t.Errorf("unmeshed connect to the VIP: %q (errno %d), want ENETUNREACH", other.Err, other.Errno)
	}
	if got := counters(t, d); got.BalancedL4 < 2*n+1 || got.RevNAT < 2*n+1 {
		t.Errorf("counters %+v: want BalancedL4 and RevNAT >= %d", got, 2*n+1)
	}
}

// Test 2: unconnected UDP sticks per socket, splits by weight across sockets.
func TestUDPPerSocket(t *testing.T) {
	e := newEnv(t)
	a := e.udpServer("127.0.0.1:0", "a")
	b := e.udpServer("127.0.0.2:0", "b")
	d := e.start(e.config())
	reconcile(t, d, State{
		Workloads: []Workload{{CgroupID: e.wl.id, ID: 1, MeshID: 1}},
		Services:  []Service{l4(20, "10.96.0.20", 5000, UDP, Backend{a, 90}, Backend{b, 10})},
	})
	const sockets, each = 400, 5
	r := e.child(e.wl).must(childCmd{Op: "udp", Addr: "10.96.0.20:5000", N: sockets, M: each})
	t.Logf("UDP: %d sockets x %d datagrams: %v, sources %v", sockets, each, r.IDs, r.Peers)
	if r.Mixed != 0 {
		t.Errorf("%d sockets talked to two backends", r.Mixed)
	}
	checkBinomial(t, "UDP sockets on backend a", r.IDs["a"], sockets, 0.9)
	if r.Peers["10.96.0.20:5000"] != sockets*each {
		t.Errorf("recvfrom sources %v, want 10.96.0.20:5000 for all %d", r.Peers, sockets*each)
	}
	if got := counters(t, d); got.UDPSticky < sockets*(each-1) {
		t.Errorf("counters %+v: want UDPSticky >= %d", got, sockets*(each-1))
	}
}

// Test 3: no backends (or L7 without proxy) fail the connect at once.
func TestNoBackendRefused(t *testing.T) {
	e := newEnv(t)
	d := e.start(e.config()) // no ProxyAddr: L7 services are refused
	reconcile(t, d, State{
		Workloads: []Workload{{CgroupID: e.wl.id, ID: 1, MeshID: 1}},
		Services: []Service{
			l4(30, "10.96.0.30", 80, TCP),
			l4(31, "10.96.0.31", 80, TCP, Backend{netip.MustParseAddrPort("127.0.0.1:9"), 0}),
			{ID: 32, Addr: netip.MustParseAddr("10.96.0.32"), Port: 80, Proto: TCP, Mode: ModeL7},
		},
	})
	c := e.child(e.wl)
	for _, addr := range []string{"10.96.0.30:80", "10.96.0.31:80", "10.96.0.32:80"} {
		r := c.do(childCmd{Op: "dialerr", Addr: addr})
		elapsed := time.Duration(r.ElapsedNs)
		t.Logf("connect %s: %q in %v", addr, r.Err, elapsed)
		if r.Errno != int(unix.ECONNREFUSED) {
			t.Errorf("connect %s: %q (errno %d), want ECONNREFUSED", addr, r.Err, r.Errno)
		}
	}
	// The same address from an unmeshed process is not refused by us:
	// without a route it is ENETUNREACH, so no SYN was ever due above.
	if r := e.child(e.other).do(childCmd{Op: "dialerr", Addr: "10.96.0.30:80"}); r.Errno != int(unix.ENETUNREACH) {
		t.Errorf("unmeshed connect: %q, want ENETUNREACH", r.Err)
	}
	if got := counters(t, d); got.NoBackend != 2 || got.L7NoProxy != 1 || got.BalancedL4 != 0 {
		t.Errorf("counters %+v: want NoBackend 2, L7NoProxy 1, BalancedL4 0", got)
	}
}

// Test 4: L7 redirect, original destination for the proxy, proxy exemption,
// entry deleted at close.
func TestL7Redirect(t *testing.T) {
	e := newEnv(t)
	realSrv := e.tcpServer("127.0.0.5:0", "real", false)

	// The test stands in for the proxy: it accepts redirected connections
	// and looks their original destination up.
	type accepted struct {
		local, remote netip.AddrPort
	}
	acc := make(chan accepted, 4)
	var proxy netip.AddrPort
	{
		ln := e.tcpListener("127.0.0.1:0")
		proxy = netip.MustParseAddrPort(ln.Addr().String())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				acc <- accepted{netip.MustParseAddrPort(conn.LocalAddr().String()), netip.MustParseAddrPort(conn.RemoteAddr().String())}
				_, _ = fmt.Fprintln(conn, "proxy")
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer conn.Close()
					buf := make([]byte, 64)
					for {
						if _, err := conn.Read(buf); err != nil {
							return
						}
					}
				}()
			}
		}()
		t.Cleanup(func() { ln.Close(); wg.Wait() })
	}

	cfg := e.config()
	cfg.ProxyAddr, cfg.ProxyCgroupID, cfg.ProxyMark = proxy, e.proxy.id, 0x77
	d := e.start(cfg)
	reconcile(t, d, State{
		// The proxy's cgroup is even declared a workload: exemption wins.
		Workloads: []Workload{{CgroupID: e.wl.id, ID: 1, MeshID: 1}, {CgroupID: e.proxy.id, ID: 2, MeshID: 1}},
		Services:  []Service{{ID: 40, Addr: realSrv.Addr(), Port: realSrv.Port(), Proto: TCP, Mode: ModeL7}},
	})
	od, err := OpenOrigDst(e.pin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { od.Close() })

	c := e.child(e.wl)
	held := c.must(childCmd{Op: "hold", Addr: realSrv.String()})
	if held.ID != "proxy" {
		t.Fatalf("L7 connect reached %q, want the proxy", held.ID)
	}
	if held.Peer != realSrv.String() {
		t.Errorf("getpeername %s, want the service address %v", held.Peer, realSrv)
	}
	var a accepted
	select {
	case a = <-acc:
	case <-time.After(5 * time.Second):
		t.Fatal("proxy accepted nothing")
	}
	if a.remote.String() != held.Local {
		t.Errorf("proxy sees remote %v, client's local is %s", a.remote, held.Local)
	}
	orig, cgid, ok, err := od.Lookup(a.local, a.remote)
	t.Logf("proxy accepted %v <- %v: orig %v cgroup %d ok %t err %v", a.local, a.remote, orig, cgid, ok, err)
	if err != nil || !ok || orig != realSrv || cgid != e.wl.id {
		t.Errorf("Lookup = %v, %d, %t, %v; want %v, %d, true, nil", orig, cgid, ok, err, realSrv, e.wl.id)
	}

	// The proxy's own connection to the service address is not redirected,
	// by cgroup and by mark.
	if r := e.child(e.proxy).must(childCmd{Op: "tcp", Addr: realSrv.String(), N: 1}); r.IDs["real"] != 1 {
		t.Errorf("connect from the proxy cgroup reached %v, want the real server", r.IDs)
	}
	if r := c.must(childCmd{Op: "tcp", Addr: realSrv.String(), N: 1, Mark: 0x77}); r.IDs["real"] != 1 {
		t.Errorf("connect with the proxy mark reached %v, want the real server", r.IDs)
	}

	c.must(childCmd{Op: "close"})
	testutil.Eventually(t, 5*time.Second, func() error {
		if _, _, ok, err := od.Lookup(a.local, a.remote); ok || err != nil {
			return fmt.Errorf("entry still there (lookup error: %w)", err)
		}
		return nil
	})
	if got := counters(t, d); got.RedirectedL7 != 1 || got.ProxyExempt != 2 || got.OrigDstFailed != 0 {
		t.Errorf("counters %+v: want RedirectedL7 1, ProxyExempt 2", got)
	}
}

// tcpListener listens in the env's namespace; the caller closes it.
func (e *env) tcpListener(addr string) net.Listener {
	e.t.Helper()
	var ln net.Listener
	e.do(func() error {
		var err error
		ln, err = (&net.ListenConfig{}).Listen(context.Background(), "tcp4", addr)
		return err
	})
	return ln
}

// Test 5: DROP_ALL egress.
func TestEgressDropAll(t *testing.T) {
	e := newEnv(t)
	allowed := e.tcpServer("127.0.0.2:0", "allowed", false)
	denied := e.tcpServer("127.0.0.3:0", "denied", false)
	backend := e.tcpServer("127.0.0.1:0", "svc", false)
	deniedUDP := e.udpServer("127.0.0.3:0", "denied-udp")
	dns := e.udpServer("127.0.0.1:0", "dns")
	cfg := e.config()
	cfg.DNSAddr = dns
	d := e.start(cfg)
	reconcile(t, d, State{
		Workloads: []Workload{{CgroupID: e.wl.id, ID: 1, MeshID: 7, DropAll: true}},
		Services:  []Service{l4(50, "10.96.0.40", 80, TCP, Backend{backend, 1})},
		Egress: []EgressRule{
			{MeshID: 7, Prefix: netip.PrefixFrom(allowed.Addr(), 32), Port: allowed.Port()},
			{MeshID: 7, Prefix: netip.MustParsePrefix("127.0.0.0/8"), Port: 1}, // other port
			{MeshID: 8, Prefix: netip.MustParsePrefix("127.0.0.0/8")},          // other mesh
		},
	})
	c := e.child(e.wl)
	r := c.do(childCmd{Op: "dialerr", Addr: denied.String()})
	t.Logf("denied connect: %q in %v", r.Err, time.Duration(r.ElapsedNs))
	// EPERM can only come from the program: a SYN would have got an answer
	// or a timeout, never EPERM. The time is logged above, not asserted.
	if r.Errno != int(unix.EPERM) {
		t.Errorf("connect to undeclared %v: %q, want EPERM", denied, r.Err)
	}
	if r := c.do(childCmd{Op: "udp", Addr: deniedUDP.String(), N: 1}); r.Errno != int(unix.EPERM) {
		t.Errorf("sendto undeclared %v: %q, want EPERM", deniedUDP, r.Err)
	}
	if r := c.must(childCmd{Op: "tcp", Addr: allowed.String(), N: 1}); r.IDs["allowed"] != 1 {
		t.Errorf("declared destination: %v", r.IDs)
	}
	if r := c.must(childCmd{Op: "tcp", Addr: "10.96.0.40:80", N: 1}); r.IDs["svc"] != 1 {
		t.Errorf("mesh service: %v", r.IDs)
	}
	if r := c.must(childCmd{Op: "udp", Addr: "10.96.0.53:53", N: 1}); r.IDs["dns"] != 1 {
		t.Errorf("DNS under DROP_ALL: %v", r.IDs)
	}
	if r := e.child(e.other).must(childCmd{Op: "tcp", Addr: denied.String(), N: 1}); r.IDs["denied"] != 1 {
		t.Errorf("unmeshed process: %v", r.IDs)
	}
	if got := counters(t, d); got.DeniedEgress != 2 || got.EgressAllowed != 1 {
		t.Errorf("counters %+v: want DeniedEgress 2, EgressAllowed 1", got)
	}
}

// Test 6: DNS redirect for UDP and TCP; replies seem to come from the
// server the client asked.
func TestDNSRedirect(t *testing.T) {
	e := newEnv(t)
	dns := e.udpServer("127.0.0.1:0", "dns-udp")
	e.tcpServer(dns.String(), "dns-tcp", false)
	cfg := e.config()
	cfg.DNSAddr = dns
	d := e.start(cfg)
	reconcile(t, d, State{Workloads: []Workload{{CgroupID: e.wl.id, ID: 1, MeshID: 1}}})
	c := e.child(e.wl)
	r := c.must(childCmd{Op: "udp", Addr: "10.96.0.53:53", N: 2, M: 2})
	if r.IDs["dns-udp"] != 2 || r.Peers["10.96.0.53:53"] != 4 {
		t.Errorf("UDP query: answered by %v from %v; want dns-udp from 10.96.0.53:53", r.IDs, r.Peers)
	}
	r = c.must(childCmd{Op: "tcp", Addr: "10.96.0.53:53", N: 1})
	if r.IDs["dns-tcp"] != 1 || r.Peers["10.96.0.53:53"] != 1 {
		t.Errorf("TCP query: answered by %v, peer %v", r.IDs, r.Peers)
	}
	if got := counters(t, d); got.DNSRedirected != 5 {
		t.Errorf("counters %+v: want DNSRedirected 5", got)
	}
}

// collectEvents runs ReadEvents until the returned stop is called.
func collectEvents(t *testing.T, d *Datapath) (events func() []ConnEvent, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var evs []ConnEvent
	done := make(chan error, 1)
	go func() {
		done <- d.ReadEvents(ctx, func(ev ConnEvent) {
			mu.Lock()
			evs = append(evs, ev)
			mu.Unlock()
		})
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ReadEvents: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return func() []ConnEvent {
		mu.Lock()
		defer mu.Unlock()
		return append([]ConnEvent(nil), evs...)
	}, stop
}

// closedEvent waits for the close record of the connection from local.
func closedEvent(t *testing.T, events func() []ConnEvent, local string) (closed ConnEvent, periodic int) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		periodic = 0
		for _, ev := range events() {
			if ev.Src.String() != local {
				continue
			}
			if ev.Closed {
				closed = ev
				return nil
			}
			periodic++
		}
		return fmt.Errorf("no close record for %s", local)
	})
	return closed, periodic
}

// Test 7: telemetry records.
func TestTelemetry(t *testing.T) {
	e := newEnv(t)
	echo := e.tcpServer("127.0.0.1:0", "", true)
	cfg := e.config()
	cfg.TelemetryInterval = 100 * time.Millisecond
	d := e.start(cfg)
	reconcile(t, d, State{
		Workloads: []Workload{{CgroupID: e.wl.id, ID: 3, MeshID: 1}},
		Services:  []Service{l4(60, "10.96.0.60", 80, TCP, Backend{echo, 1})},
	})
	events, stop := collectEvents(t, d)
	const n = 1 << 20
	r := e.child(e.wl).must(childCmd{Op: "transfer", Addr: "10.96.0.60:80", Bytes: n, Ms: 800})
	ev, periodic := closedEvent(t, events, r.Local)
	stop()
	t.Logf("close record: %+v; %d periodic records before it", ev, periodic)
	if ev.BytesSent < n || ev.BytesSent > n+2 || ev.BytesReceived < n || ev.BytesReceived > n+2 {
		t.Errorf("bytes sent %d, received %d; want %d each", ev.BytesSent, ev.BytesReceived, n)
	}
	if ev.SRTT <= 0 || ev.Duration < 700*time.Millisecond || ev.Cookie == 0 {
		t.Errorf("srtt %v, duration %v, cookie %d: want all > 0, duration ~800ms", ev.SRTT, ev.Duration, ev.Cookie)
	}
	if ev.WorkloadID != 3 || ev.ServiceID != 60 || ev.Dst != echo {
		t.Errorf("labels: workload %d service %d dst %v; want 3, 60, %v", ev.WorkloadID, ev.ServiceID, ev.Dst, echo)
	}
	if periodic < 1 {
		t.Errorf("no periodic record for a connection of %v with a 100ms interval", ev.Duration)
	}
	// Periodic records (weft_report) describe the same connection, with
	// totals that only grow, up to the close record's.
	var sent, recv uint64
	for _, p := range events() {
		if p.Src.String() != r.Local || p.Closed {
			continue
		}
		if p.Cookie != ev.Cookie || p.Dst != ev.Dst || p.WorkloadID != 3 || p.ServiceID != 60 {
			t.Errorf("periodic record %+v: want cookie %d, dst %v, workload 3, service 60", p, ev.Cookie, ev.Dst)
		}
		if p.BytesSent < sent || p.BytesReceived < recv || p.BytesSent > ev.BytesSent || p.BytesReceived > ev.BytesReceived {
			t.Errorf("periodic record %+v: totals not between the previous (%d, %d) and the close record's", p, sent, recv)
		}
		sent, recv = p.BytesSent, p.BytesReceived
	}
	if got := counters(t, d); got.Events < 2 || got.RingbufFull != 0 {
		t.Errorf("counters %+v: want Events >= 2, RingbufFull 0", got)
	}
}

// Test 7a: an idle connection is reported every interval too (the reports
// come from an iterator over the sockets' storage, not from ACKs).
func TestTelemetryIdle(t *testing.T) {
	e := newEnv(t)
	echo := e.tcpServer("127.0.0.1:0", "", true)
	cfg := e.config()
	cfg.TelemetryInterval = 100 * time.Millisecond
	d := e.start(cfg)
	reconcile(t, d, State{
		Workloads: []Workload{{CgroupID: e.wl.id, ID: 3, MeshID: 1}},
		Services:  []Service{l4(62, "10.96.0.62", 80, TCP, Backend{echo, 1})},
	})
	events, stop := collectEvents(t, d)
	defer stop()
	r := e.child(e.wl).must(childCmd{Op: "open", Addr: "10.96.0.62:80"})
	testutil.Eventually(t, 5*time.Second, func() error {
		n := 0
		for _, ev := range events() {
			if ev.Src.String() != r.Local {
				continue
			}
			if ev.Closed || ev.Dst != echo || ev.WorkloadID != 3 || ev.ServiceID != 62 || ev.Cookie == 0 {
				return fmt.Errorf("record %+v: want an open connection to %v, workload 3, service 62", ev, echo)
			}
			n++
		}
		if n < 2 {
			return fmt.Errorf("%d periodic records of the idle connection, want 2", n)
		}
		return nil
	})
}

// Test 7b: retransmits, with a tcx program dropping 10% of the namespace's
// large loopback packets (this kernel build has no sch_netem).
func TestTelemetryRetransmits(t *testing.T) {
	e := newEnv(t)
	echo := e.tcpServer("127.0.0.1:0", "", true)
	d := e.start(e.config())
	reconcile(t, d, State{
		Workloads: []Workload{{CgroupID: e.wl.id, ID: 3, MeshID: 1}},
		Services:  []Service{l4(61, "10.96.0.61", 80, TCP, Backend{echo, 1})},
	})
	e.dropSome()
	events, stop := collectEvents(t, d)
	const n = 4 << 20
	r := e.child(e.wl).must(childCmd{Op: "transfer", Addr: "10.96.0.61:80", Bytes: n})
	ev, _ := closedEvent(t, events, r.Local)
	stop()
	t.Logf("close record with 10%% loss: retransmits %d, srtt %v, duration %v", ev.Retransmits, ev.SRTT, ev.Duration)
	if ev.Retransmits == 0 {
		t.Errorf("no retransmits reported for %d bytes with 10%% loss", n)
	}
}

// dropSome attaches a tcx ingress program to the namespace's lo that drops
// one in ten packets of more than 1000 bytes. Ingress, because a drop at
// egress is reported back to TCP as local congestion, and the segment is
// sent again without counting as a retransmit.
func (e *env) dropSome() {
	e.t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "Dual BSD/GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // skb->len
			asm.JLT.Imm(asm.R2, 1000, "next"),
			asm.FnGetPrandomU32.Call(),
			asm.Mod.Imm(asm.R0, 10),
			asm.JNE.Imm(asm.R0, 0, "next"),
			asm.Mov.Imm(asm.R0, 2), // TCX_DROP
			asm.Return(),
			asm.Mov.Imm(asm.R0, -1).WithSymbol("next"), // TCX_NEXT
			asm.Return(),
		},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { prog.Close() })
	var l link.Link
	e.do(func() error {
		var err error
		l, err = link.AttachTCX(link.TCXOptions{Interface: 1, Program: prog, Attach: ebpf.AttachTCXIngress})
		return err
	})
	e.t.Cleanup(func() { l.Close() })
}

// Test 8: the datapath survives its agent: Close keeps it working, New adopts
// the same maps and links, and the same state reconciles to no change.
func TestRestartAdopts(t *testing.T) {
	e := newEnv(t)
	a := e.tcpServer("127.0.0.1:0", "a", false)
	b := e.tcpServer("127.0.0.2:0", "b", false)
	state := State{
		Workloads: []Workload{{CgroupID: e.wl.id, ID: 1, MeshID: 1}},
		Services:  []Service{l4(70, "10.96.0.70", 80, TCP, Backend{a, 3}, Backend{b, 1})},
		Egress:    []EgressRule{{MeshID: 1, Prefix: netip.MustParsePrefix("192.0.2.0/24"), Port: 443}},
	}
	cfg := e.config()
	d1, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unpinAll(cfg.PinPath) })
	reconcile(t, d1, state)
	ids1 := mapIDs(t, d1)
	links1 := linkInfo(t, d1)
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}

	// No Datapath object exists now.
	const n = 400
	r := e.child(e.wl).must(childCmd{Op: "tcp", Addr: "10.96.0.70:80", N: n})
	t.Logf("while no agent runs: %v", r.IDs)
	checkBinomial(t, "3:1 backend a without agent", r.IDs["a"], n, 0.75)

	d2, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d2.Close() })
	if len(d2.adoptedMaps) != len(pinnedMapNames(false)) || len(d2.adoptedLinks) != len(links1) {
		t.Errorf("adopted maps %v and links %v, want all", d2.adoptedMaps, d2.adoptedLinks)
	}
	if ids2 := mapIDs(t, d2); fmt.Sprint(ids2) != fmt.Sprint(ids1) {
		t.Errorf("map ids changed across restart: %v -> %v", ids1, ids2)
	}
	for name, l2 := range linkInfo(t, d2) {
		l1 := links1[name]
		if l2.ID != l1.ID || l2.Program == l1.Program {
			t.Errorf("link %d: id %d -> %d, program %d -> %d; want same link, new program", name, l1.ID, l2.ID, l1.Program, l2.Program)
		}
	}
	if ch := reconcile(t, d2, state); ch != (Changes{}) {
		t.Errorf("Reconcile of the same state after restart: %+v, want no change", ch)
	}
	snap, err := d2.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if ch := reconcile(t, d2, snap); ch != (Changes{}) {
		t.Errorf("Reconcile(Snapshot()): %+v, want no change", ch)
	}
	r = e.child(e.wl).must(childCmd{Op: "tcp", Addr: "10.96.0.70:80", N: 100})
	if r.IDs["a"]+r.IDs["b"] != 100 {
		t.Errorf("after adoption: %v", r.IDs)
	}

	// A pinned layout of another version is refused, not recreated.
	if err := d2.objs.WeftMetadata.Put(uint32(0), sockWeftMeta{Magic: metaMagic, LayoutVersion: 99}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, testLogger(t)); !errors.Is(err, ErrLayoutMismatch) {
		t.Errorf("New over layout version 99: %v, want ErrLayoutMismatch", err)
	}
	if _, err := OpenOrigDst(cfg.PinPath); !errors.Is(err, ErrLayoutMismatch) {
		t.Errorf("OpenOrigDst over layout version 99: %v, want ErrLayoutMismatch", err)
	}
}

func mapIDs(t *testing.T, d *Datapath) map[string]ebpf.MapID {
	t.Helper()
	out := map[string]ebpf.MapID{}
	for name, m := range d.mapsByName() {
		info, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		out[name] = id
	}
	return out
}

func linkInfo(t *testing.T, d *Datapath) map[int]link.Info {
	t.Helper()
	out := map[int]link.Info{}
	for i, l := range d.links {
		info, err := l.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = *info
	}
	return out
}

// Test 10: Close is idempotent; methods of a closed Datapath fail cleanly.
func TestCloseTwice(t *testing.T) {
	e := newEnv(t)
	d := e.start(e.config())
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := d.Reconcile(context.Background(), State{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Reconcile after Close: %v", err)
	}
	if err := d.ReadEvents(context.Background(), func(ConnEvent) {}); err != nil {
		t.Errorf("ReadEvents after Close: %v, want nil", err)
	}
	// Unpin (registered by start) still works on a closed Datapath.
}

// Close unblocks a running ReadEvents, which returns nil.
func TestCloseStopsReadEvents(t *testing.T) {
	e := newEnv(t)
	d := e.start(e.config())
	done := make(chan error, 1)
	go func() { done <- d.ReadEvents(context.Background(), func(ConnEvent) {}) }()
	testutil.Eventually(t, 5*time.Second, func() error {
		d.rmu.Lock()
		defer d.rmu.Unlock()
		if len(d.readers) == 0 {
			return errors.New("reader not started")
		}
		return nil
	})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ReadEvents after Close: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock ReadEvents")
	}
}
