// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// slotCounts counts slots per backend.
func slotCounts(slots []netip.AddrPort) map[string]int {
	out := map[string]int{}
	for _, s := range slots {
		out[s.String()]++
	}
	return out
}

func TestExpandSlots(t *testing.T) {
	a, b, c := ap("10.0.0.1:80"), ap("10.0.0.2:80"), ap("10.0.0.3:80")
	many := make([]Backend, 300)
	for i := range many {
		many[i] = Backend{netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 80), 1}
	}
	cases := []struct {
		name     string
		backends []Backend
		want     map[string]int
		total    int
		err      string
	}{
		{name: "90/10 reduces to 9/1", backends: []Backend{{a, 90}, {b, 10}}, want: map[string]int{a.String(): 9, b.String(): 1}},
		{name: "50/50 reduces to 1/1", backends: []Backend{{a, 50}, {b, 50}}, want: map[string]int{a.String(): 1, b.String(): 1}},
		{name: "order does not matter", backends: []Backend{{b, 1}, {a, 3}}, want: map[string]int{a.String(): 3, b.String(): 1}},
		{name: "weight 0 left out", backends: []Backend{{a, 0}, {b, 5}}, want: map[string]int{b.String(): 1}},
		{name: "all weight 0: no slots", backends: []Backend{{a, 0}}, want: map[string]int{}},
		{name: "duplicates merged", backends: []Backend{{a, 1}, {a, 1}, {b, 2}}, want: map[string]int{a.String(): 1, b.String(): 1}},
		{name: "mapped equals v4", backends: []Backend{{netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), 80), 1}, {a, 1}}, want: map[string]int{a.String(): 1}},
		{name: "scaled to MaxSlots", backends: []Backend{{a, 1000}, {b, 1001}, {c, 1}}, total: MaxSlots},
		{name: "tiny weight keeps a slot", backends: []Backend{{a, 1 << 30}, {b, 1}}, total: MaxSlots},
		{name: "too many backends", backends: many, err: "at most 256"},
		{name: "port 0", backends: []Backend{{netip.AddrPortFrom(a.Addr(), 0), 1}}, err: "want an address"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			slots, err := expandSlots(c.backends)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := slotCounts(slots)
			if c.want != nil {
				if diff := cmp.Diff(c.want, got); diff != "" {
					t.Errorf("slots (-want +got):\n%s", diff)
				}
			}
			if c.total != 0 && len(slots) != c.total {
				t.Errorf("%d slots, want %d", len(slots), c.total)
			}
			for k, n := range got {
				if n == 0 {
					t.Errorf("backend %s has no slot", k)
				}
			}
			// Fixed point: the slot counts, as weights, expand the same.
			again, err := expandSlots(weightsFromSlots(slots))
			if err != nil || !slices.Equal(slots, again) {
				t.Errorf("re-expanding %v gave %v (%v)", got, slotCounts(again), err)
			}
		})
	}
}

func TestCompileEgress(t *testing.T) {
	rules := []EgressRule{
		{MeshID: 1, Prefix: netip.MustParsePrefix("10.0.0.0/8"), Port: 443},
		{MeshID: 1, Prefix: netip.MustParsePrefix("10.1.0.0/16"), Port: 80},
		{MeshID: 1, Prefix: netip.MustParsePrefix("10.1.0.0/16"), Port: 80},
		{MeshID: 1, Prefix: netip.MustParsePrefix("10.1.2.0/24")},
		{MeshID: 2, Prefix: netip.MustParsePrefix("10.1.0.0/16"), Port: 22},
		{MeshID: 1, Prefix: netip.MustParsePrefix("2001:db8::/32"), Port: 53},
	}
	got, err := compileEgress(rules)
	if err != nil {
		t.Fatal(err)
	}
	key := func(mesh uint32, p string) egressKey {
		return egressKey{MeshID: mesh, Prefix: prefix128(netip.MustParsePrefix(p))}
	}
	want := map[egressKey]egressEntry{
		key(1, "10.0.0.0/8"):    {Own: []uint16{443}},
		key(1, "10.1.0.0/16"):   {Own: []uint16{80}, Inherited: []uint16{443}},
		key(1, "10.1.2.0/24"):   {OwnAny: true, Any: true},
		key(2, "10.1.0.0/16"):   {Own: []uint16{22}},
		key(1, "2001:db8::/32"): {Own: []uint16{53}},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b egressEntry) bool { return a.equal(b) })); diff != "" {
		t.Errorf("egress (-want +got):\n%s", diff)
	}
	if k := key(1, "10.1.2.0/24"); k.Prefix.Bits() != 96+24 || !k.Prefix.Addr().Is4In6() {
		t.Errorf("IPv4 prefix in the 128-bit space: %v", k.Prefix)
	}

	var tooMany []EgressRule
	for p := range uint16(MaxEgressPorts + 1) {
		tooMany = append(tooMany, EgressRule{MeshID: 1, Prefix: netip.MustParsePrefix("10.0.0.0/8"), Port: p + 1})
	}
	if _, err := compileEgress(tooMany); err == nil || !strings.Contains(err.Error(), "at most 16") {
		t.Errorf("17 ports: %v", err)
	}
}

func TestCompileAggregatesErrors(t *testing.T) {
	_, err := compile(State{
		Services: []Service{
			{ID: 0, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80, Proto: TCP, Mode: ModeL4},
			{ID: 2, Addr: netip.MustParseAddr("10.0.0.2"), Port: 80, Proto: UDP, Mode: ModeL7},
			{ID: 3, Addr: netip.MustParseAddr("10.0.0.3"), Port: 80, Proto: TCP, Mode: 0},
			{ID: 4, Addr: netip.MustParseAddr("10.0.0.4"), Port: 80, Proto: TCP, Mode: ModeL4},
			{ID: 4, Addr: netip.MustParseAddr("10.0.0.5"), Port: 80, Proto: TCP, Mode: ModeL4},
		},
		Workloads: []Workload{{CgroupID: 0, ID: 1}, {CgroupID: 5, ID: 1}, {CgroupID: 5, ID: 2}},
		Egress:    []EgressRule{{MeshID: 1}},
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"id 0", "l7 mode needs tcp", "mode mode(0)", "id also used by", "cgroup id 0", "declared twice", "egress rule of mesh 1: prefix"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	s := State{
		Services: []Service{
			{
				ID: 1, Addr: netip.MustParseAddr("10.96.0.1"), Port: 80, Proto: TCP, Mode: ModeL4,
				Backends: []Backend{{ap("10.0.0.1:8080"), 90}, {ap("10.0.0.2:8080"), 10}},
			},
			{ID: 2, Addr: netip.MustParseAddr("::ffff:10.96.0.2"), Port: 443, Proto: TCP, Mode: ModeL7},
			{ID: 3, Addr: netip.MustParseAddr("fd00::3"), Port: 53, Proto: UDP, Mode: ModeL4},
		},
		Workloads: []Workload{{CgroupID: 9, ID: 1, MeshID: 1, DropAll: true}},
		Egress: []EgressRule{
			{MeshID: 1, Prefix: netip.MustParsePrefix("10.0.0.0/8"), Port: 443},
			{MeshID: 1, Prefix: netip.MustParsePrefix("10.1.0.0/16")},
			{MeshID: 1, Prefix: netip.MustParsePrefix("10.1.0.0/16"), Port: 80}, // collapses into any
		},
	}
	c1, err := compile(s)
	if err != nil {
		t.Fatal(err)
	}
	snap := c1.state()
	if got := snap.Services[1].Addr; got != netip.MustParseAddr("10.96.0.2") {
		t.Errorf("mapped service address came back as %v", got)
	}
	if n := len(snap.Egress); n != 2 {
		t.Errorf("egress rules back: %v", snap.Egress)
	}
	c2, err := compile(snap)
	if err != nil {
		t.Fatal(err)
	}
	opts := cmp.Options{
		cmp.AllowUnexported(compiled{}),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
		cmp.Comparer(func(a, b egressEntry) bool { return a.equal(b) }),
	}
	if diff := cmp.Diff(c1, c2, opts); diff != "" {
		t.Errorf("compile(state(compile(s))) differs (-first +second):\n%s", diff)
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{
		ProxyAddr:         netip.AddrPortFrom(netip.MustParseAddr("169.254.0.1"), 0),
		DNSAddr:           ap("0.0.0.0:53"),
		TelemetryInterval: -time.Second,
		Accelerate:        true,
	}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"cgroup path: required", "pin path: required", "proxy address", "port 0",
		"dns address", "unspecified", "telemetry interval",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "accelerate") {
		t.Errorf("acceleration is implemented, but Validate refuses it:\n%v", err)
	}
	ok := Config{CgroupPath: "/sys/fs/cgroup/x", PinPath: "/sys/fs/bpf/weft", ProxyAddr: ap("169.254.0.1:15001")}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	ok.Accelerate = true
	if err := ok.Validate(); err != nil {
		t.Errorf("valid config with Accelerate: %v", err)
	}
	if got := ok.withDefaults().TelemetryInterval; got != DefaultTelemetryInterval {
		t.Errorf("default telemetry interval %v", got)
	}
	// New validates before it touches the kernel, so this needs no root.
	if _, err := New(Config{}, nil); err == nil || !strings.Contains(err.Error(), "pin path: required") {
		t.Errorf("New(Config{}): %v", err)
	}
}
