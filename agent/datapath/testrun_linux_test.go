// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// TestLayout checks, without the kernel, that the Go side agrees with
// bpf/include/weft_common.h: the generated types have the sizes of the map
// specs, and OrigDstReader builds the original-destination key in THE
// orientation (src = the client, dst = the proxy listener).
func TestLayout(t *testing.T) {
	spec, err := loadSock()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		m          string
		key, value any
	}{
		{sockMapWeftMetadata, uint32(0), sockWeftMeta{}},
		{sockMapWeftWorkloads, uint64(0), sockWeftWorkload{}},
		{sockMapWeftServices, sockWeftSvcKey{}, sockWeftSvc{}},
		{sockMapWeftBackends, sockWeftBackendKey{}, sockWeftBackend{}},
		{sockMapWeftEgress, sockWeftEgressKey{}, sockWeftEgress{}},
		{sockMapWeftRevnat, sockWeftRevnatKey{}, sockWeftRevnat{}},
		{sockMapWeftOrigdst, sockWeftOrigdstKey{}, sockWeftOrigdst{}},
		{sockMapWeftSockstate, int32(0), sockWeftSockState{}},
		{sockMapWeftCounters, uint32(0), uint64(0)},
		{sockMapWeftAccel, sockWeftSockKey{}, uint64(0)},
		{sockMapWeftAccelRx, sockWeftSockKey{}, uint64(0)},
	}
	for _, c := range cases {
		ms := spec.Maps[c.m]
		if ms == nil {
			t.Errorf("map %s missing from the object", c.m)
			continue
		}
		if k, v := binary.Size(c.key), binary.Size(c.value); uint32(k) != ms.KeySize || uint32(v) != ms.ValueSize {
			t.Errorf("map %s: Go key/value %d/%d bytes, object %d/%d", c.m, k, v, ms.KeySize, ms.ValueSize)
		}
	}
	if k, v := binary.Size(sockWeftOrigdstKey{}), binary.Size(sockWeftOrigdst{}); k != origDstKeySize || v != origDstValueSize {
		t.Errorf("origdst key/value %d/%d, OrigDstReader checks %d/%d", k, v, origDstKeySize, origDstValueSize)
	}
	if n := spec.Maps[sockMapWeftCounters].MaxEntries; n != uint32(sockWeftCounterWEFT_C_MAX) {
		t.Errorf("counters: %d entries, enum says %d", n, sockWeftCounterWEFT_C_MAX)
	}

	// The proxy accepted a connection: local is its listener, remote the
	// client. The key must read client first.
	proxy := netip.MustParseAddrPort("169.254.0.1:15001")
	client := netip.MustParseAddrPort("10.1.2.3:40000")
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, origDstKey(proxy, client)); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 0, origDstKeySize)
	want = append(want, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3) // src: client, v4-mapped
	want = append(want, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 169, 254, 0, 1)
	want = binary.NativeEndian.AppendUint16(want, 40000) // src port, host order
	want = binary.NativeEndian.AppendUint16(want, 15001) // dst port, host order
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("origdst key bytes\n got %x\nwant %x", b.Bytes(), want)
	}
	// IPv6 and IPv4-mapped inputs give the same key as plain IPv4.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(client.Addr().As16()), client.Port())
	if origDstKey(proxy, mapped) != origDstKey(proxy, client) {
		t.Error("an IPv4-mapped client address builds another key than IPv4")
	}
}

// TestProgTestRun records what BPF_PROG_TEST_RUN supports here: not cgroup
// sock_addr nor sockops programs (so the family carries an XDP copy of its
// decision core, weft_test_decide, see TestDecide).
func TestProgTestRun(t *testing.T) {
	e := newEnv(t)
	d := e.start(e.config())
	for name, p := range map[string]*ebpf.Program{"connect4": d.objs.Connect4, "sockops": d.objs.Sockops} {
		_, err := p.Run(&ebpf.RunOptions{Data: make([]byte, 64)})
		t.Logf("test run of %s (%v): %v", name, p.Type(), err)
		if !errors.Is(err, ebpf.ErrNotSupported) {
			t.Errorf("test run of %s: %v; if the kernel now supports it, test the program directly", name, err)
		}
	}
}

// TestDecide runs the decision core through BPF_PROG_TEST_RUN against a
// datapath's maps, one crafted request per case.
func TestDecide(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.ProxyAddr = netip.MustParseAddrPort("169.254.0.1:15001")
	cfg.ProxyCgroupID = 777
	cfg.ProxyMark = 0x77
	cfg.DNSAddr = netip.MustParseAddrPort("169.254.0.2:5353")
	d := e.start(cfg)
	be := netip.MustParseAddrPort("10.0.0.1:8080")
	reconcile(t, d, State{
		Workloads: []Workload{
			{CgroupID: 100, ID: 1, MeshID: 1},
			{CgroupID: 200, ID: 2, MeshID: 2, DropAll: true},
		},
		Services: []Service{
			l4(10, "10.96.0.10", 80, TCP, Backend{be, 1}),
			l4(11, "10.96.0.11", 80, TCP),
			l4(12, "10.96.0.12", 53, UDP, Backend{be, 1}, Backend{netip.MustParseAddrPort("10.0.0.2:8080"), 1}),
			{ID: 13, Addr: netip.MustParseAddr("10.96.0.13"), Port: 80, Proto: TCP, Mode: ModeL7},
			l4(14, "fd00::14", 80, TCP, Backend{netip.MustParseAddrPort("[fd00::1]:80"), 1}),
			l4(15, "10.96.0.15", 5000, UDP, Backend{be, 3}, Backend{netip.MustParseAddrPort("10.0.0.2:8080"), 1}),
		},
		Egress: []EgressRule{
			{MeshID: 2, Prefix: netip.MustParsePrefix("192.0.2.0/24"), Port: 443},
			{MeshID: 2, Prefix: netip.MustParsePrefix("192.0.2.128/25"), Port: 8443},
			{MeshID: 2, Prefix: netip.MustParsePrefix("2001:db8::/32")},
		},
	})
	prog := loadDecide(t, d, cfg)

	const (
		pass, rewrite, deny = 0, 1, 2
		kNone, kL4, kL7     = 0, 1, 2
		kDNS                = 3
	)
	cases := []struct {
		name    string
		cgroup  uint64
		mark    uint32
		dst     string
		proto   Protocol
		verdict uint32
		err     int32
		to      string
		kind    uint8
		svc     uint32
	}{
		{"unmeshed passes", 999, 0, "10.96.0.10:80", TCP, pass, 0, "10.96.0.10:80", kNone, 0},
		{"l4 service balances", 100, 0, "10.96.0.10:80", TCP, rewrite, 0, be.String(), kL4, 10},
		{"ipv6 service", 100, 0, "[fd00::14]:80", TCP, rewrite, 0, "[fd00::1]:80", kL4, 14},
		{"l4 without backends refused", 100, 0, "10.96.0.11:80", TCP, deny, -111, "", kNone, 11},
		{"l7 goes to the proxy, not a backend", 100, 0, "10.96.0.13:80", TCP, rewrite, 0, "169.254.0.1:15001", kL7, 13},
		{"proxy cgroup exempt", 777, 0, "10.96.0.13:80", TCP, pass, 0, "10.96.0.13:80", kNone, 0},
		{"proxy mark exempt", 100, 0x77, "10.96.0.13:80", TCP, pass, 0, "10.96.0.13:80", kNone, 0},
		{"dns to the resolver", 100, 0, "8.8.8.8:53", UDP, rewrite, 0, "169.254.0.2:5353", kDNS, 0},
		{"dns wins over a port-53 service", 100, 0, "10.96.0.12:53", UDP, rewrite, 0, "169.254.0.2:5353", kDNS, 0},
		{"resolver itself passes", 200, 0, "169.254.0.2:5353", UDP, pass, 0, "169.254.0.2:5353", kNone, 0},
		{"unknown proto port passes without drop-all", 100, 0, "192.0.2.1:80", TCP, pass, 0, "192.0.2.1:80", kNone, 0},
		{"drop-all denies", 200, 0, "198.51.100.1:443", TCP, deny, -1, "", kNone, 0},
		{"drop-all allows declared port", 200, 0, "192.0.2.1:443", TCP, pass, 0, "192.0.2.1:443", kNone, 0},
		{"drop-all denies other port", 200, 0, "192.0.2.1:80", TCP, deny, -1, "", kNone, 0},
		{"longer prefix inherits port", 200, 0, "192.0.2.200:443", TCP, pass, 0, "192.0.2.200:443", kNone, 0},
		{"longer prefix own port", 200, 0, "192.0.2.200:8443", TCP, pass, 0, "192.0.2.200:8443", kNone, 0},
		{"shorter prefix lacks longer's port", 200, 0, "192.0.2.1:8443", TCP, deny, -1, "", kNone, 0},
		{"drop-all any port v6", 200, 0, "[2001:db8::1]:1234", UDP, pass, 0, "[2001:db8::1]:1234", kNone, 0},
		{"drop-all still reaches services", 200, 0, "10.96.0.10:80", TCP, rewrite, 0, be.String(), kL4, 10},
		{"other mesh's rules do not apply", 100, 0, "198.51.100.1:443", TCP, pass, 0, "198.51.100.1:443", kNone, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := netip.MustParseAddrPort(c.dst)
			out := runDecide(t, prog, sockWeftDecideIo{
				Addr: dst.Addr().As16(), Port: dst.Port(), Proto: uint8(c.proto),
				CgroupId: c.cgroup, Mark: c.mark, Cookie: 42,
			})
			got := netip.AddrPortFrom(addrFrom16(out.NewAddr), out.NewPort)
			if out.Verdict != c.verdict || out.Err != c.err || out.Kind != c.kind || out.ServiceId != c.svc {
				t.Errorf("verdict %d err %d kind %d service %d; want %d %d %d %d",
					out.Verdict, out.Err, out.Kind, out.ServiceId, c.verdict, c.err, c.kind, c.svc)
			}
			if c.to != "" && got.String() != c.to {
				t.Errorf("rewritten to %v, want %s", got, c.to)
			}
		})
	}

	// UDP picks by socket cookie: the same socket always gets the same
	// backend; sockets spread by weight.
	counts := map[netip.AddrPort]int{}
	const sockets = 400
	for cookie := uint64(1); cookie <= sockets; cookie++ {
		in := sockWeftDecideIo{
			Addr: netip.MustParseAddr("10.96.0.15").As16(), Port: 5000, Proto: uint8(UDP),
			CgroupId: 100, Cookie: cookie * 4096, Sendmsg: 1,
		}
		first := runDecide(t, prog, in)
		again := runDecide(t, prog, in)
		if first.Verdict != rewrite || first.NewAddr != again.NewAddr || first.NewPort != again.NewPort {
			t.Fatalf("cookie %d: %+v then %+v", in.Cookie, first, again)
		}
		counts[netip.AddrPortFrom(addrFrom16(first.NewAddr), first.NewPort)]++
	}
	checkBinomial(t, "UDP cookies on backend 1", counts[be], sockets, 0.75)
}

func loadDecide(t *testing.T, d *Datapath, cfg Config) *ebpf.Program {
	t.Helper()
	spec, err := loadSock()
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Variables[sockVarWeftCfg].Set(bpfConfig(cfg.withDefaults())); err != nil {
		t.Fatal(err)
	}
	var objs struct {
		Decide *ebpf.Program `ebpf:"weft_test_decide"`
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: d.mapsByName()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Decide.Close() })
	return objs.Decide
}

func runDecide(t *testing.T, prog *ebpf.Program, in sockWeftDecideIo) sockWeftDecideIo {
	t.Helper()
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, in); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, b.Len())
	ret, err := prog.Run(&ebpf.RunOptions{Data: b.Bytes(), DataOut: out})
	if err != nil || ret != 2 { // XDP_PASS
		t.Fatalf("test run: ret %d, %v", ret, err)
	}
	var res sockWeftDecideIo
	if err := binary.Read(bytes.NewReader(out), binary.NativeEndian, &res); err != nil {
		t.Fatal(err)
	}
	return res
}
