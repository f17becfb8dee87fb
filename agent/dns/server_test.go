// SPDX-License-Identifier: Apache-2.0

package dns_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/weft-mesh/weft/agent/dns"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startServer runs a server for the rest of the test; the cleanup stops it
// and checks that Run returned nil.
func startServer(t *testing.T, cfg dns.Config) *dns.Server {
	t.Helper()
	if !cfg.Listen.IsValid() {
		cfg.Listen = loopback
	}
	s, err := dns.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of its context ending")
		}
	})
	return s
}

// upstream is a fake resolver on loopback, serving UDP and TCP on one port.
type upstream struct {
	addr netip.AddrPort
	mu   sync.Mutex
	seen []seenQuery
}

type seenQuery struct {
	net  string
	id   uint16
	name string
}

func (u *upstream) queries() []seenQuery {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.seen)
}

// startUpstream runs a fake upstream whose answers come from answer (a nil
// reply means no reply at all). Like a real server, it cuts UDP replies to
// the client's size.
func startUpstream(t *testing.T, answer func(req *mdns.Msg) *mdns.Msg) *upstream {
	t.Helper()
	u := &upstream{}
	var udp net.PacketConn
	var tcp net.Listener
	// The same free port for UDP and TCP: retry when TCP finds it taken.
	for attempt := 0; ; attempt++ {
		var err error
		if udp, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		u.addr = udp.LocalAddr().(*net.UDPAddr).AddrPort()
		if tcp, err = net.Listen("tcp", u.addr.String()); err == nil {
			break
		}
		udp.Close()
		if attempt == 10 {
			t.Fatal(err)
		}
	}
	handler := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		u.mu.Lock()
		u.seen = append(u.seen, seenQuery{w.LocalAddr().Network(), req.Id, req.Question[0].Name})
		u.mu.Unlock()
		resp := answer(req)
		if resp == nil {
			return
		}
		if w.LocalAddr().Network() == "udp" {
			size := mdns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			resp.Truncate(size)
		}
		_ = w.WriteMsg(resp)
	})
	servers := []*mdns.Server{{PacketConn: udp, Handler: handler}, {Listener: tcp, Handler: handler}}
	var wg sync.WaitGroup
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Go(func() { _ = srv.ActivateAndServe() })
		<-started
	}
	t.Cleanup(func() {
		for _, srv := range servers {
			_ = srv.Shutdown()
		}
		wg.Wait()
	})
	return u
}

// answerA answers every query with the given IPv4 addresses.
func answerA(ips ...string) func(*mdns.Msg) *mdns.Msg {
	return func(req *mdns.Msg) *mdns.Msg {
		resp := new(mdns.Msg)
		resp.SetReply(req)
		if req.Question[0].Qtype != mdns.TypeA {
			return resp
		}
		for _, ip := range ips {
			resp.Answer = append(resp.Answer, &mdns.A{
				Hdr: mdns.RR_Header{Name: req.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60},
				A:   net.ParseIP(ip),
			})
		}
		return resp
	}
}

func answerRcode(rcode int) func(*mdns.Msg) *mdns.Msg {
	return func(req *mdns.Msg) *mdns.Msg {
		resp := new(mdns.Msg)
		resp.SetRcode(req, rcode)
		return resp
	}
}

// deadPort returns a loopback port on which nothing listens (UDP or TCP).
func deadPort(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return addr
}

// blackhole returns a loopback UDP address that reads queries and never
// answers, for the rest of the test.
func blackhole(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

type queryOpts struct {
	tcp  bool
	edns uint16 // EDNS0 UDP size; 0 for none
}

func query(t *testing.T, s *dns.Server, name string, qtype uint16, o queryOpts) *mdns.Msg {
	t.Helper()
	resp, err := exchange(s.Addr(), name, qtype, o)
	if err != nil {
		t.Fatalf("query %s %s: %v", name, mdns.TypeToString[qtype], err)
	}
	return resp
}

func exchange(addr netip.AddrPort, name string, qtype uint16, o queryOpts) (*mdns.Msg, error) {
	req := new(mdns.Msg)
	req.SetQuestion(name, qtype)
	if o.edns != 0 {
		req.SetEdns0(o.edns, false)
	}
	c := &mdns.Client{Net: "udp", Timeout: 5 * time.Second, UDPSize: 65535}
	if o.tcp {
		c.Net = "tcp"
	}
	resp, _, err := c.Exchange(req, addr.String())
	if err != nil {
		return nil, err
	}
	if resp.Id != req.Id {
		return nil, fmt.Errorf("reply id %d; want the query's %d", resp.Id, req.Id)
	}
	return resp, nil
}

// addrsOf returns the A and AAAA addresses of an answer.
func addrsOf(m *mdns.Msg) []netip.Addr {
	var out []netip.Addr
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *mdns.A:
			a, _ := netip.AddrFromSlice(rr.A)
			out = append(out, a.Unmap())
		case *mdns.AAAA:
			a, _ := netip.AddrFromSlice(rr.AAAA)
			out = append(out, a)
		}
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestMeshNames(t *testing.T) {
	up := startUpstream(t, answerA("192.0.2.99"))
	s := startServer(t, dns.Config{Upstreams: []netip.AddrPort{up.addr}, TTL: 7 * time.Second})
	s.SetRecords(map[string][]netip.Addr{
		"web.mesh.test.":     addrs("10.96.0.10", "fd00:96::10"),
		"V4only.Mesh.Test":   addrs("10.96.0.11", "10.96.0.12"),
		"v6only.mesh.test.":  addrs("fd00:96::12"),
		"noaddrs.mesh.test.": nil,
	})

	for _, tc := range []struct {
		name  string
		qname string
		qtype uint16
		want  []netip.Addr
	}{
		{"a", "web.mesh.test.", mdns.TypeA, addrs("10.96.0.10")},
		{"aaaa", "web.mesh.test.", mdns.TypeAAAA, addrs("fd00:96::10")},
		{"any", "web.mesh.test.", mdns.TypeANY, addrs("10.96.0.10", "fd00:96::10")},
		{"case-insensitive", "WEB.mesh.TEST.", mdns.TypeA, addrs("10.96.0.10")},
		{"set-without-dot", "v4only.mesh.test.", mdns.TypeA, addrs("10.96.0.11", "10.96.0.12")},
		{"nodata-aaaa", "v4only.mesh.test.", mdns.TypeAAAA, nil},
		{"nodata-a", "v6only.mesh.test.", mdns.TypeA, nil},
		{"nodata-mx", "web.mesh.test.", mdns.TypeMX, nil},
		{"no-addresses", "noaddrs.mesh.test.", mdns.TypeA, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := query(t, s, tc.qname, tc.qtype, queryOpts{})
			if resp.Rcode != mdns.RcodeSuccess || !resp.Authoritative || resp.Truncated {
				t.Errorf("rcode %s, aa %v, tc %v; want NOERROR, authoritative, not truncated",
					mdns.RcodeToString[resp.Rcode], resp.Authoritative, resp.Truncated)
			}
			if got := addrsOf(resp); !slices.Equal(got, tc.want) {
				t.Errorf("answer %v; want %v", got, tc.want)
			}
			for _, rr := range resp.Answer {
				if rr.Header().Ttl != 7 || rr.Header().Name != tc.qname {
					t.Errorf("record %v: want TTL 7 and the name as asked, %s", rr, tc.qname)
				}
			}
		})
	}
	if q := up.queries(); len(q) != 0 {
		t.Errorf("mesh names reached the upstream: %v", q)
	}
	if st := s.Stats(); st.Answered != 9 || st.Forwarded != 0 || st.Failed != 0 {
		t.Errorf("Stats = %+v; want 9 answered", st)
	}

	// SetRecords replaces the whole table.
	s.SetRecords(map[string][]netip.Addr{"other.mesh.test": addrs("10.96.0.20")})
	if got := addrsOf(query(t, s, "web.mesh.test.", mdns.TypeA, queryOpts{})); !slices.Equal(got, addrs("192.0.2.99")) {
		t.Errorf("after SetRecords without it, web.mesh.test is %v; want the upstream's answer", got)
	}
}

func TestForward(t *testing.T) {
	up := startUpstream(t, answerA("192.0.2.1"))
	s := startServer(t, dns.Config{Upstreams: []netip.AddrPort{up.addr}})
	s.SetRecords(map[string][]netip.Addr{"web.mesh.test": addrs("10.96.0.10")})

	for _, tc := range []struct {
		name string
		opts queryOpts
	}{
		{"udp", queryOpts{}},
		{"tcp", queryOpts{tcp: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := new(mdns.Msg)
			req.SetQuestion("Example.ORG.", mdns.TypeA)
			c := &mdns.Client{Net: tc.name, Timeout: 5 * time.Second}
			resp, _, err := c.Exchange(req, s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			if resp.Id != req.Id || resp.Rcode != mdns.RcodeSuccess {
				t.Errorf("reply id %d rcode %s; want id %d NOERROR", resp.Id, mdns.RcodeToString[resp.Rcode], req.Id)
			}
			if got := addrsOf(resp); !slices.Equal(got, addrs("192.0.2.1")) {
				t.Errorf("answer %v; want the upstream's 192.0.2.1", got)
			}
			seen := up.queries()
			last := seen[len(seen)-1]
			want := seenQuery{tc.name, req.Id, "Example.ORG."}
			if last != want {
				t.Errorf("upstream saw %+v; want %+v (same transport, id and name)", last, want)
			}
		})
	}
	if st := s.Stats(); st.Forwarded != 2 || st.Answered != 0 || st.Failed != 0 {
		t.Errorf("Stats = %+v; want 2 forwarded", st)
	}
}

func TestForwardTriesEachUpstream(t *testing.T) {
	failing := startUpstream(t, answerRcode(mdns.RcodeServerFailure))
	refusing := startUpstream(t, answerRcode(mdns.RcodeRefused))
	good := startUpstream(t, answerA("192.0.2.7"))
	s := startServer(t, dns.Config{
		Upstreams: []netip.AddrPort{deadPort(t), blackhole(t), failing.addr, refusing.addr, good.addr},
		Timeout:   200 * time.Millisecond,
	})
	resp := query(t, s, "example.org.", mdns.TypeA, queryOpts{})
	if got := addrsOf(resp); !slices.Equal(got, addrs("192.0.2.7")) {
		t.Errorf("answer %v (rcode %s); want the last upstream's 192.0.2.7", got, mdns.RcodeToString[resp.Rcode])
	}
	if len(failing.queries()) != 1 || len(refusing.queries()) != 1 {
		t.Errorf("the failing upstreams saw %d and %d queries; want 1 each", len(failing.queries()), len(refusing.queries()))
	}
	// NXDOMAIN is an answer, not a failure: no further upstream is asked.
	nx := startUpstream(t, answerRcode(mdns.RcodeNameError))
	after := startUpstream(t, answerA("192.0.2.8"))
	s2 := startServer(t, dns.Config{Upstreams: []netip.AddrPort{nx.addr, after.addr}})
	if resp := query(t, s2, "nosuch.example.", mdns.TypeA, queryOpts{}); resp.Rcode != mdns.RcodeNameError {
		t.Errorf("rcode %s; want the first upstream's NXDOMAIN", mdns.RcodeToString[resp.Rcode])
	}
	if n := len(after.queries()); n != 0 {
		t.Errorf("second upstream asked %d times after an NXDOMAIN", n)
	}
}

func TestAllUpstreamsDown(t *testing.T) {
	for _, tc := range []struct {
		name      string
		upstreams func(t *testing.T) []netip.AddrPort
		opts      queryOpts
		within    time.Duration
	}{
		{"refused-udp", func(t *testing.T) []netip.AddrPort { t.Helper(); return []netip.AddrPort{deadPort(t), deadPort(t)} }, queryOpts{}, time.Second},
		{"refused-tcp", func(t *testing.T) []netip.AddrPort { t.Helper(); return []netip.AddrPort{deadPort(t), deadPort(t)} }, queryOpts{tcp: true}, time.Second},
		// Two silent upstreams at 150ms each.
		{"timeout", func(t *testing.T) []netip.AddrPort { t.Helper(); return []netip.AddrPort{blackhole(t), blackhole(t)} }, queryOpts{}, 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, dns.Config{Upstreams: tc.upstreams(t), Timeout: 150 * time.Millisecond})
			start := time.Now()
			resp := query(t, s, "example.org.", mdns.TypeA, tc.opts)
			took := time.Since(start)
			if resp.Rcode != mdns.RcodeServerFailure {
				t.Errorf("rcode %s; want SERVFAIL", mdns.RcodeToString[resp.Rcode])
			}
			// Logged, not asserted: tests never fail on timing.
			t.Logf("SERVFAIL after %v (expected within about %v)", took, tc.within)
			if st := s.Stats(); st.Failed != 1 {
				t.Errorf("Stats = %+v; want 1 failed", st)
			}
		})
	}
	t.Run("no-upstreams", func(t *testing.T) {
		empty := t.TempDir() + "/resolv.conf"
		if err := writeFile(empty, "search example\n"); err != nil {
			t.Fatal(err)
		}
		s := startServer(t, dns.Config{ResolvConf: empty})
		if len(s.Upstreams()) != 0 {
			t.Fatalf("Upstreams() = %v; want none", s.Upstreams())
		}
		if resp := query(t, s, "example.org.", mdns.TypeA, queryOpts{}); resp.Rcode != mdns.RcodeServerFailure {
			t.Errorf("rcode %s; want SERVFAIL", mdns.RcodeToString[resp.Rcode])
		}
	})
}

func TestTruncation(t *testing.T) {
	var many []netip.Addr
	var manyStr []string
	for i := range 100 {
		many = append(many, netip.AddrFrom4([4]byte{10, 96, 1, byte(i)}))
		manyStr = append(manyStr, many[i].String())
	}
	up := startUpstream(t, answerA(manyStr...))
	s := startServer(t, dns.Config{Upstreams: []netip.AddrPort{up.addr}})
	s.SetRecords(map[string][]netip.Addr{"big.mesh.test": many})

	for _, name := range []string{"big.mesh.test.", "big.example.org."} {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				name      string
				opts      queryOpts
				truncated bool
			}{
				{"udp", queryOpts{}, true},
				{"udp-edns-1232", queryOpts{edns: 1232}, true},
				{"udp-edns-4096", queryOpts{edns: 4096}, false},
				{"tcp", queryOpts{tcp: true}, false},
			} {
				t.Run(tc.name, func(t *testing.T) {
					resp := query(t, s, name, mdns.TypeA, tc.opts)
					if resp.Truncated != tc.truncated {
						t.Errorf("TC = %v; want %v", resp.Truncated, tc.truncated)
					}
					got := addrsOf(resp)
					if tc.truncated {
						limit := mdns.MinMsgSize
						if tc.opts.edns != 0 {
							limit = int(tc.opts.edns)
						}
						resp.Compress = true
						if resp.Len() > limit || len(got) >= 100 {
							t.Errorf("truncated reply of %d bytes with %d records; want at most %d bytes", resp.Len(), len(got), limit)
						}
						return
					}
					if !slices.Equal(got, many) {
						t.Errorf("got %d addresses; want all 100 in order", len(got))
					}
				})
			}
		})
	}
}

// resolver returns a Go resolver that sends every query to s.
func resolver(s *dns.Server) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.Addr().String())
		},
	}
}

func TestThroughGoResolver(t *testing.T) {
	up := startUpstream(t, answerA("192.0.2.5"))
	s := startServer(t, dns.Config{Upstreams: []netip.AddrPort{up.addr}})
	var many []netip.Addr
	for i := range 100 {
		many = append(many, netip.AddrFrom4([4]byte{10, 96, 2, byte(i)}))
	}
	s.SetRecords(map[string][]netip.Addr{
		"web.weft-mesh.test": addrs("10.96.0.10", "fd00:96::10"),
		"big.weft-mesh.test": many,
	})
	r := resolver(s)
	for _, tc := range []struct {
		name string
		host string
		want []netip.Addr
	}{
		{"mesh", "web.weft-mesh.test.", addrs("10.96.0.10", "fd00:96::10")},
		// 100 addresses do not fit in UDP: the resolver retries over TCP.
		{"truncated", "big.weft-mesh.test.", many},
		{"forwarded", "www.example.test.", addrs("192.0.2.5")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.LookupNetIP(t.Context(), "ip", tc.host)
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				got[i] = got[i].Unmap()
			}
			slices.SortFunc(got, netip.Addr.Compare)
			want := slices.SortedFunc(slices.Values(tc.want), netip.Addr.Compare)
			if !slices.Equal(got, want) {
				t.Errorf("LookupNetIP(%s) = %v; want %v", tc.host, got, want)
			}
		})
	}
}

func TestSetRecordsDuringQueries(t *testing.T) {
	s := startServer(t, dns.Config{Upstreams: []netip.AddrPort{deadPort(t)}})
	gens := []map[string][]netip.Addr{
		{"svc.mesh.test": addrs("10.96.0.1", "10.96.0.2", "10.96.0.3")},
		{"svc.mesh.test": addrs("10.96.1.1", "10.96.1.2", "10.96.1.3")},
	}
	s.SetRecords(gens[0])

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var flips atomic.Int64
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			s.SetRecords(gens[i%2])
			flips.Add(1)
		}
	})
	var queries atomic.Int64
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			for range 200 {
				resp, err := exchange(s.Addr(), "svc.mesh.test.", mdns.TypeA, queryOpts{})
				if err != nil {
					errs <- err
					return
				}
				got := addrsOf(resp)
				if !slices.Equal(got, gens[0]["svc.mesh.test"]) && !slices.Equal(got, gens[1]["svc.mesh.test"]) {
					errs <- fmt.Errorf("answer %v mixes generations", got)
					return
				}
				queries.Add(1)
			}
		})
	}
	wg.Go(func() {
		for queries.Load() < 800 && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		cancel()
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d queries during %d SetRecords", queries.Load(), flips.Load())
}

func TestRunReturnsOnCancel(t *testing.T) {
	defer goleak.VerifyNone(t)
	// A query is in flight to a silent upstream when the context ends.
	hole, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	s, err := dns.New(dns.Config{
		Listen:    loopback,
		Upstreams: []netip.AddrPort{hole.LocalAddr().(*net.UDPAddr).AddrPort()},
		Timeout:   time.Minute,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()

	s.SetRecords(map[string][]netip.Addr{"web.mesh.test": addrs("10.96.0.10")})
	query(t, s, "web.mesh.test.", mdns.TypeA, queryOpts{})
	query(t, s, "web.mesh.test.", mdns.TypeA, queryOpts{tcp: true})
	// An idle TCP connection stays open across the shutdown.
	idle, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	inflight := make(chan error, 1)
	go func() {
		_, err := exchange(s.Addr(), "slow.example.org.", mdns.TypeA, queryOpts{})
		inflight <- err
	}()
	buf := make([]byte, 512)
	if err := hole.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := hole.ReadFrom(buf); err != nil {
		t.Fatalf("the forwarded query never reached the upstream: %v", err)
	}

	cancel()
	start := time.Now()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run = %v; want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of its context ending")
	}
	t.Logf("Run returned %v after its context ended", time.Since(start))
	// SERVFAIL or a timeout: either way the client's goroutine ends.
	t.Logf("the query in flight ended with %v", <-inflight)
	if _, err := exchange(s.Addr(), "web.mesh.test.", mdns.TypeA, queryOpts{tcp: true}); err == nil {
		t.Error("the server still answers over TCP after Run returned")
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestNewAndClose(t *testing.T) {
	s, err := dns.New(dns.Config{Listen: loopback, Upstreams: []netip.AddrPort{deadPort(t)}}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if addr.Addr() != loopback.Addr() || addr.Port() == 0 {
		t.Errorf("Addr() = %s; want 127.0.0.1 with a port", addr)
	}
	// The address is busy while s holds it.
	if _, err := dns.New(dns.Config{Listen: addr, Upstreams: []netip.AddrPort{deadPort(t)}}, testLogger(t)); err == nil {
		t.Error("New on a busy address succeeded")
	}
	s.Close()
	s.Close()
	again, err := dns.New(dns.Config{Listen: addr, Upstreams: []netip.AddrPort{deadPort(t)}}, testLogger(t))
	if err != nil {
		t.Fatalf("New on the address Close gave back: %v", err)
	}
	again.Close()
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     dns.Config
		wantErr bool
	}{
		{"minimal", dns.Config{Listen: loopback}, false},
		{"full", dns.Config{Listen: netip.MustParseAddrPort("169.254.20.10:53"), Upstreams: []netip.AddrPort{netip.MustParseAddrPort("[fd00::1]:53")}, TTL: time.Minute, Timeout: time.Second}, false},
		{"no-listen", dns.Config{}, true},
		{"upstream-port-0", dns.Config{Listen: loopback, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:0")}}, true},
		{"upstream-zero", dns.Config{Listen: loopback, Upstreams: []netip.AddrPort{{}}}, true},
		{"negative-ttl", dns.Config{Listen: loopback, TTL: -time.Second}, true},
		{"negative-timeout", dns.Config{Listen: loopback, Timeout: -time.Second}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err != nil) != tc.wantErr {
				t.Errorf("Validate() = %v; want error %v", err, tc.wantErr)
			}
		})
	}
	if _, err := dns.New(dns.Config{}, testLogger(t)); err == nil {
		t.Error("New with an invalid config succeeded")
	}
}

func TestCollector(t *testing.T) {
	up := startUpstream(t, answerA("192.0.2.1"))
	s := startServer(t, dns.Config{Upstreams: []netip.AddrPort{up.addr}})
	s.SetRecords(map[string][]netip.Addr{"web.mesh.test": addrs("10.96.0.10")})
	query(t, s, "web.mesh.test.", mdns.TypeA, queryOpts{})
	query(t, s, "web.mesh.test.", mdns.TypeAAAA, queryOpts{})
	query(t, s, "example.org.", mdns.TypeA, queryOpts{})

	reg := prometheus.NewRegistry()
	if err := reg.Register(s.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "weft_agent_dns_queries_total" {
			t.Errorf("unexpected metric %s", mf.GetName())
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"answered": 2, "forwarded": 1, "failed": 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("weft_agent_dns_queries_total = %v; want %v", got, want)
	}
}

func writeFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o600)
}
