// SPDX-License-Identifier: Apache-2.0

package dnsdisco_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/weft-mesh/weft/controlplane/dnsdisco"
	"github.com/weft-mesh/weft/controlplane/xds/translate"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// fakeResolver answers from a table and counts lookups.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	errs    map[string]error
	lookups map[string]int
}

func newFakeResolver() *fakeResolver {
	return &fakeResolver{answers: map[string][]netip.Addr{}, errs: map[string]error{}, lookups: map[string]int{}}
}

func (f *fakeResolver) set(host string, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	f.answers[host] = as
	delete(f.errs, host)
}

func (f *fakeResolver) fail(host string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[host] = err
}

func (f *fakeResolver) count(host string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups[host]
}

func (f *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups[host]++
	if network != "ip" {
		return nil, errors.New("unexpected network " + network)
	}
	if err := f.errs[host]; err != nil {
		return nil, err
	}
	as, ok := f.answers[host]
	if !ok {
		return nil, &dnsErr{host}
	}
	return as, ctx.Err()
}

type dnsErr struct{ host string }

func (e *dnsErr) Error() string { return "lookup " + e.host + ": no such host" }

func dnsNode(name, host string, rt appmesh.DNSResponseType, pref appmesh.IPPreference, ports ...uint32) translate.DNSNode {
	if rt == "" {
		rt = appmesh.DNSLoadBalancer
	}
	return translate.DNSNode{
		Node:     translate.NodeKey{Mesh: "demo", Name: name},
		Ref:      appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: name},
		Hostname: host, ResponseType: rt, IPPreference: pref, Ports: ports,
	}
}

func newDiscovery(t *testing.T, r dnsdisco.Resolver) *dnsdisco.Discovery {
	t.Helper()
	d, err := dnsdisco.New(dnsdisco.Config{Resolver: r, Interval: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// addrs returns the distinct addresses of a node's endpoints, in order, and
// whether the view manages it.
func addrs(v *dnsdisco.View, name string) ([]string, bool) {
	eps, ok := v.Endpoints(translate.NodeKey{Mesh: "demo", Name: name})
	var out []string
	for _, ep := range eps {
		if s := ep.Address.String(); len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
	return out, ok
}

// TestResponseTypesAndPreferences resolves one answer of two IPv4 and two
// IPv6 addresses (one IPv4-mapped, one repeated) under every response type
// and IP preference.
func TestResponseTypesAndPreferences(t *testing.T) {
	r := newFakeResolver()
	r.set("mixed.example", "fd00::1", "::ffff:10.0.0.1", "10.0.0.2", "fd00::2", "10.0.0.2")
	r.set("v4.example", "10.0.0.9")
	cases := []struct {
		name string
		rt   appmesh.DNSResponseType
		pref appmesh.IPPreference
		host string
		want []string // nil: not resolved
	}{
		{"lb-none", appmesh.DNSLoadBalancer, "", "mixed.example", []string{"fd00::1"}},
		{"lb-v4pref", appmesh.DNSLoadBalancer, appmesh.IPv4Preferred, "mixed.example", []string{"10.0.0.1"}},
		{"lb-v6pref", appmesh.DNSLoadBalancer, appmesh.IPv6Preferred, "mixed.example", []string{"fd00::1"}},
		{"lb-v4only", appmesh.DNSLoadBalancer, appmesh.IPv4Only, "mixed.example", []string{"10.0.0.1"}},
		{"ep-none", appmesh.DNSEndpoints, "", "mixed.example", []string{"fd00::1", "10.0.0.1", "10.0.0.2", "fd00::2"}},
		{"ep-v4pref", appmesh.DNSEndpoints, appmesh.IPv4Preferred, "mixed.example", []string{"10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"}},
		{"ep-v6pref", appmesh.DNSEndpoints, appmesh.IPv6Preferred, "mixed.example", []string{"fd00::1", "fd00::2", "10.0.0.1", "10.0.0.2"}},
		{"ep-v4only", appmesh.DNSEndpoints, appmesh.IPv4Only, "mixed.example", []string{"10.0.0.1", "10.0.0.2"}},
		{"ep-v6only", appmesh.DNSEndpoints, appmesh.IPv6Only, "mixed.example", []string{"fd00::1", "fd00::2"}},
		{"ep-v6only-none", appmesh.DNSEndpoints, appmesh.IPv6Only, "v4.example", nil},
		{"unknown", appmesh.DNSEndpoints, "", "nx.example", nil},
	}
	d := newDiscovery(t, r)
	var nodes []translate.DNSNode
	for _, c := range cases {
		nodes = append(nodes, dnsNode(c.name, c.host, c.rt, c.pref, 8080, 9090))
	}
	if v := d.Sync(nodes); len(v.Problems()) != 0 {
		t.Fatalf("problems before any lookup: %v", v.Problems())
	}
	if !d.Resolve(context.Background()) {
		t.Fatal("the first round changed nothing")
	}
	if n := r.count("mixed.example"); n != 1 {
		t.Errorf("mixed.example looked up %d times in one round, want 1", n)
	}
	v := d.View()
	for _, c := range cases {
		got, ok := addrs(v, c.name)
		if ok != (c.want != nil) || !cmp.Equal(got, c.want) {
			t.Errorf("%s: got %v (managed %v), want %v", c.name, got, ok, c.want)
		}
	}
	// One endpoint per address and port, healthy, on no node.
	eps, _ := v.Endpoints(translate.NodeKey{Mesh: "demo", Name: "ep-v4only"})
	want := []translate.Endpoint{
		{Address: netip.MustParseAddr("10.0.0.1"), Port: 8080, Healthy: true},
		{Address: netip.MustParseAddr("10.0.0.1"), Port: 9090, Healthy: true},
		{Address: netip.MustParseAddr("10.0.0.2"), Port: 8080, Healthy: true},
		{Address: netip.MustParseAddr("10.0.0.2"), Port: 9090, Healthy: true},
	}
	if diff := cmp.Diff(want, eps, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
	// Names that never resolved are not problems: callers keep DNS clusters.
	if ps := v.Problems(); len(ps) != 0 {
		t.Errorf("problems: %v", ps)
	}
	// A round with the same answers changes nothing.
	if d.Resolve(context.Background()) {
		t.Error("an unchanged answer was a change")
	}
}

// TestFailureKeepsLastGood: a lookup that fails after a good one keeps the
// addresses and reports a problem until the name resolves again.
func TestFailureKeepsLastGood(t *testing.T) {
	r := newFakeResolver()
	r.set("web.example", "10.0.0.1", "10.0.0.2")
	d := newDiscovery(t, r)
	d.Sync([]translate.DNSNode{dnsNode("web", "web.example", appmesh.DNSEndpoints, "", 80)})
	ctx := context.Background()
	d.Resolve(ctx)
	drain(d)

	r.fail("web.example", errors.New("lookup web.example: i/o timeout"))
	if !d.Resolve(ctx) || !drain(d) {
		t.Fatal("a failure after a good lookup changed nothing")
	}
	v := d.View()
	if got, ok := addrs(v, "web"); !ok || !cmp.Equal(got, []string{"10.0.0.1", "10.0.0.2"}) {
		t.Errorf("after a failure: %v (managed %v), want the last good addresses", got, ok)
	}
	ps := v.Problems()
	if len(ps) != 1 || ps[0].Ref.Name != "web" || ps[0].Ref.Kind != appmesh.KindVirtualNode ||
		!strings.Contains(ps[0].Message, "i/o timeout") || !strings.Contains(ps[0].Message, "10.0.0.1, 10.0.0.2") {
		t.Fatalf("problems = %v", ps)
	}
	// The same failure again is no change.
	if d.Resolve(ctx) {
		t.Error("the same failure twice was a change")
	}
	// A good answer ends the problem.
	r.set("web.example", "10.0.0.3")
	if !d.Resolve(ctx) {
		t.Fatal("recovery changed nothing")
	}
	if got, _ := addrs(d.View(), "web"); !cmp.Equal(got, []string{"10.0.0.3"}) {
		t.Errorf("recovered to %v", got)
	}
	if ps := d.View().Problems(); len(ps) != 0 {
		t.Errorf("problems after recovery: %v", ps)
	}
	// An answer the IP preference leaves empty is a failure too.
	d.Sync([]translate.DNSNode{dnsNode("web", "web.example", appmesh.DNSEndpoints, appmesh.IPv4Only, 80)})
	d.Resolve(ctx)
	r.set("web.example", "fd00::1")
	if !d.Resolve(ctx) {
		t.Fatal("an answer without IPv4 changed nothing")
	}
	if got, _ := addrs(d.View(), "web"); !cmp.Equal(got, []string{"10.0.0.3"}) {
		t.Errorf("after an IPv6-only answer: %v, want the last good IPv4 address", got)
	}
	if ps := d.View().Problems(); len(ps) != 1 || !strings.Contains(ps[0].Message, "no address the IP preference IPv4_ONLY keeps") {
		t.Errorf("problems = %v", ps)
	}
}

// TestSyncChanges: a changed hostname starts over; changed ports keep the
// addresses; a removed node is forgotten.
func TestSyncChanges(t *testing.T) {
	r := newFakeResolver()
	r.set("a.example", "10.0.0.1")
	r.set("b.example", "10.0.0.2")
	d := newDiscovery(t, r)
	ctx := context.Background()
	d.Sync([]translate.DNSNode{dnsNode("web", "a.example", "", "", 80)})
	d.Resolve(ctx)

	v := d.Sync([]translate.DNSNode{dnsNode("web", "a.example", "", "", 80, 81)})
	if eps, ok := v.Endpoints(translate.NodeKey{Mesh: "demo", Name: "web"}); !ok || len(eps) != 2 {
		t.Errorf("after a port was added: %v (managed %v)", eps, ok)
	}
	v = d.Sync([]translate.DNSNode{dnsNode("web", "b.example", "", "", 80)})
	if _, ok := addrs(v, "web"); ok {
		t.Error("a node whose hostname changed kept the old name's addresses")
	}
	d.Resolve(ctx)
	if got, _ := addrs(d.View(), "web"); !cmp.Equal(got, []string{"10.0.0.2"}) {
		t.Errorf("after the new hostname resolved: %v", got)
	}
	if _, ok := addrs(d.Sync(nil), "web"); ok {
		t.Error("a removed node is still resolved")
	}
}

// TestRunResolvesNewTargetsAndPeriodically: Run looks a new target up at
// once, then every interval, and signals Changed when an answer changes.
func TestRunResolvesNewTargetsAndPeriodically(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	r := newFakeResolver()
	r.set("web.example", "10.0.0.1")
	d, err := dnsdisco.New(dnsdisco.Config{Resolver: r, Interval: 20 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	d.Sync([]translate.DNSNode{dnsNode("web", "web.example", "", "", 80)})
	waitChanged(t, d)
	if got, _ := addrs(d.View(), "web"); !cmp.Equal(got, []string{"10.0.0.1"}) {
		t.Fatalf("resolved to %v", got)
	}
	r.set("web.example", "10.0.0.7")
	waitChanged(t, d)
	if got, _ := addrs(d.View(), "web"); !cmp.Equal(got, []string{"10.0.0.7"}) {
		t.Fatalf("re-resolved to %v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := dnsdisco.New(dnsdisco.Config{Interval: -1}, nil); err == nil {
		t.Error("a negative interval was accepted")
	}
	d, err := dnsdisco.New(dnsdisco.Config{}, nil)
	if err != nil || d.Interval() != dnsdisco.DefaultInterval {
		t.Errorf("default interval: %v, %v", d.Interval(), err)
	}
}

func drain(d *dnsdisco.Discovery) bool {
	select {
	case <-d.Changed():
		return true
	default:
		return false
	}
}

func waitChanged(t *testing.T, d *dnsdisco.Discovery) {
	t.Helper()
	select {
	case <-d.Changed():
	case <-time.After(30 * time.Second):
		t.Fatal("no change signalled")
	}
}
