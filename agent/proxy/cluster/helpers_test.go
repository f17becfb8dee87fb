// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"

	wtestutil "github.com/weft-mesh/weft/test/testutil"
)

const (
	testNode = "mesh/demo/virtualNode/front_shop"
	waitFor  = 10 * time.Second
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// backend is a loopback HTTP server that counts what it sees.
type backend struct {
	srv      *httptest.Server
	addr     string
	accepted atomic.Int64
	closed   atomic.Int64
	hits     atomic.Int64
	status   atomic.Int64 // of "/", default 200
	hcStatus atomic.Int64 // of "/healthz", default 200
	inflight atomic.Int64
	block    chan struct{} // when set, "/" waits for it to close
}

type backendOpt func(*backend, *httptest.Server)

// withH2C makes the backend accept HTTP/2 with prior knowledge too.
func withH2C() backendOpt {
	return func(_ *backend, s *httptest.Server) {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		s.Config.Protocols = &p
	}
}

// withBlock makes "/" wait until the returned channel is closed.
func withBlock(ch chan struct{}) backendOpt {
	return func(b *backend, _ *httptest.Server) { b.block = ch }
}

func newBackend(t *testing.T, opts ...backendOpt) *backend {
	t.Helper()
	b := &backend{}
	b.status.Store(200)
	b.hcStatus.Store(200)
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(b.serve))
	b.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			b.accepted.Add(1)
		case http.StateClosed, http.StateHijacked:
			b.closed.Add(1)
		}
	}
	for _, o := range opts {
		o(b, b.srv)
	}
	b.srv.Start()
	b.addr = b.srv.Listener.Addr().String()
	t.Cleanup(func() {
		if b.block != nil {
			select {
			case <-b.block:
			default:
				close(b.block)
			}
		}
		b.srv.Close()
	})
	return b
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	b.hits.Add(1)
	if r.URL.Path == "/healthz" {
		w.WriteHeader(int(b.hcStatus.Load()))
		return
	}
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	if b.block != nil {
		select {
		case <-b.block:
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("X-Proto", r.Proto)
	ua, ok := r.Header["User-Agent"]
	w.Header().Set("X-UA", fmt.Sprintf("%v %q", ok, ua))
	w.Header().Set("X-AE", r.Header.Get("Accept-Encoding"))
	w.WriteHeader(int(b.status.Load()))
	_, _ = io.WriteString(w, b.addr)
}

// port is the backend's port.
func (b *backend) port() string {
	_, p, _ := net.SplitHostPort(b.addr)
	return p
}

// newManager returns a Manager closed at the end of the test, with a
// private registry.
func newManager(t *testing.T, opts Options) (*Manager, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if opts.Registerer == nil {
		opts.Registerer = reg
	}
	m := NewManager(opts, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { _ = m.Close() })
	return m, reg
}

// run runs m until the end of the test and waits for Run to return.
func run(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	eventually(t, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.group == nil {
			return errors.New("Run has not started")
		}
		return nil
	})
}

// parseCluster reads a Cluster from protojson, with fmt arguments.
func parseCluster(t *testing.T, format string, args ...any) *clusterv3.Cluster {
	t.Helper()
	var c clusterv3.Cluster
	if err := protojson.Unmarshal([]byte(fmt.Sprintf(format, args...)), &c); err != nil {
		t.Fatalf("parse cluster: %v", err)
	}
	return &c
}

// endpoints renders lb_endpoints for "ip:port" addresses.
func endpoints(addrs ...string) string {
	var eps []string
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		eps = append(eps, fmt.Sprintf(`{"endpoint":{"address":{"socketAddress":{"address":%q,"portValue":%s}}}}`, host, port))
	}
	return `[{"lbEndpoints":[` + strings.Join(eps, ",") + `]}]`
}

// static is a STATIC round-robin cluster over addrs with extra top-level
// JSON fields (starting with a comma) spliced in.
func static(t *testing.T, name, extra string, addrs ...string) *clusterv3.Cluster {
	t.Helper()
	return parseCluster(t, `{"name":%q,"type":"STATIC","connectTimeout":"1s",
		"loadAssignment":{"clusterName":%q,"endpoints":%s}%s}`, name, name, endpoints(addrs...), extra)
}

func parseCLA(t *testing.T, format string, args ...any) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	var c endpointv3.ClusterLoadAssignment
	if err := protojson.Unmarshal([]byte(fmt.Sprintf(format, args...)), &c); err != nil {
		t.Fatalf("parse load assignment: %v", err)
	}
	return &c
}

func update(t *testing.T, m *Manager, cs ...*clusterv3.Cluster) {
	t.Helper()
	if err := m.Update(testNode, cs, nil); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func get(t *testing.T, m *Manager, name string) *Cluster {
	t.Helper()
	c, ok := m.cluster(testNode, name)
	if !ok {
		t.Fatalf("no cluster %s", name)
	}
	return c
}

// do sends one GET / through a lease and reports the outcome to it.
func do(t *testing.T, c *Cluster, hints Hints) (status int, body string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	l, err := c.Acquire(ctx, hints)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.Host()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := l.Transport().RoundTrip(req)
	if err != nil {
		l.Done(0, err)
		return 0, "", err
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	l.Done(resp.StatusCode, err)
	return resp.StatusCode, string(b), err
}

// mustDo is do that fails the test on an error.
func mustDo(t *testing.T, c *Cluster) (int, string) {
	t.Helper()
	st, body, err := do(t, c, Hints{})
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	return st, body
}

// pickHost acquires a lease, reports success and returns its host.
func pickHost(t *testing.T, c *Cluster) string {
	t.Helper()
	l, err := c.Acquire(context.Background(), Hints{})
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	l.Done(200, nil)
	return l.Host()
}

// counts maps host → picks over n picks.
func counts(t *testing.T, c *Cluster, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		out[pickHost(t, c)]++
	}
	return out
}

func eventually(t *testing.T, fn func() error) {
	t.Helper()
	wtestutil.Eventually(t, waitFor, fn)
}

// hostState returns the state of the host with address addr.
func hostState(c *Cluster, addr string) (HostState, bool) {
	for _, h := range c.Hosts() {
		if h.Address == addr {
			return h, true
		}
	}
	return HostState{}, false
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// fakeResolver is a Resolver whose answers the test sets.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][]string
	lookups atomic.Int64
}

func (f *fakeResolver) set(host string, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.answers == nil {
		f.answers = map[string][]string{}
	}
	f.answers[host] = addrs
}

var errNotFound = errors.New("no such host")

func (f *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	f.lookups.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	addrs, ok := f.answers[host]
	if !ok {
		return nil, fmt.Errorf("lookup %s: %w", host, errNotFound)
	}
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}
