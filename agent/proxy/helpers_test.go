// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-mesh/weft/controlplane/xds/translate"
	"github.com/weft-mesh/weft/controlplane/xds/vip"
	"github.com/weft-mesh/weft/pkg/appmesh"
	"github.com/weft-mesh/weft/pkg/manifest"
)

// clientNode is the virtual node the tests add to every set: it has every
// virtual service of its mesh as a backend.
const clientNode = "test-client"

// world is a sample set translated by the real translator.
type world struct {
	proxies map[string]*translate.Proxy // by node id
	vips    map[string]netip.Addr       // virtual service name -> address
	// endpoint is the address of virtual node n's single endpoint.
	endpoint map[string]netip.Addr
	meshOf   map[string]string
}

// sample names a file of pkg/manifest's k8s samples, of ./testdata, or
// (an absolute path) one a test wrote.
func sample(name string) string {
	if strings.HasPrefix(name, "testdata/") || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join("..", "..", "pkg", "manifest", "testdata", "samples", "k8s", name+".yaml")
}

type worldEndpoints map[translate.NodeKey][]translate.Endpoint

func (w worldEndpoints) Endpoints(n translate.NodeKey) ([]translate.Endpoint, bool) {
	eps, ok := w[n]
	return eps, ok
}

// buildWorld loads sample files, adds the test client, gives every
// service an address (240.240.0.n) and every pod-selecting virtual node
// one endpoint (10.1.n.1) per listener port, and translates everything.
func buildWorld(tb testing.TB, files ...string) *world {
	tb.Helper()
	var paths []string
	for _, f := range files {
		paths = append(paths, sample(f))
	}
	docs, err := manifest.Load(paths, nil, manifest.Options{})
	if err != nil {
		tb.Fatalf("load %v: %v", paths, err)
	}
	w := &world{proxies: map[string]*translate.Proxy{}, vips: map[string]netip.Addr{}, endpoint: map[string]netip.Addr{}, meshOf: map[string]string{}}
	var res []appmesh.Resource
	services := map[string][]string{}
	var nodes []appmesh.Resource
	for _, d := range docs {
		r := d.Resource
		appmesh.Default(r.Ref.Kind, r.Spec)
		res = append(res, r)
		switch r.Ref.Kind {
		case appmesh.KindVirtualNode:
			if d.K8s == nil || d.K8s.PodSelector != nil {
				nodes = append(nodes, r)
			}
		case appmesh.KindVirtualService:
			services[r.Ref.Mesh] = append(services[r.Ref.Mesh], r.Ref.Name)
		}
	}
	addrs := map[vip.Key]vip.Addresses{}
	n := 1
	for _, mesh := range slices.Sorted(maps.Keys(services)) {
		spec := &appmesh.VirtualNodeSpec{}
		slices.Sort(services[mesh])
		for _, name := range services[mesh] {
			spec.Backends = append(spec.Backends, appmesh.Backend{VirtualService: &appmesh.VirtualServiceBackend{VirtualServiceName: name}})
			ip := netip.AddrFrom4([4]byte{240, 240, 0, byte(n)})
			n++
			addrs[vip.Key{Mesh: mesh, Service: name}] = vip.Addresses{IPv4: ip}
			w.vips[name] = ip
		}
		client := appmesh.Resource{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: mesh, Name: clientNode}, Spec: spec}
		res = append(res, client)
		nodes = append(nodes, client)
	}
	eps := worldEndpoints{}
	for i, nd := range nodes {
		ip := netip.AddrFrom4([4]byte{10, 1, byte(i), 1})
		w.endpoint[nd.Ref.Name] = ip
		w.meshOf[nd.Ref.Name] = nd.Ref.Mesh
		key := translate.NodeKey{Mesh: nd.Ref.Mesh, Name: nd.Ref.Name}
		eps[key] = []translate.Endpoint{}
		for _, l := range nd.Spec.(*appmesh.VirtualNodeSpec).Listeners {
			eps[key] = append(eps[key], translate.Endpoint{Address: ip, Port: uint32(*l.PortMapping.Port), Node: "node-a", Healthy: true})
		}
	}
	out := translate.Translate(translate.Input{Resources: res, Addresses: addrs, Endpoints: eps})
	for _, p := range out.Problems {
		tb.Logf("translation problem: %s: %s", p.Ref, p.Message)
	}
	for _, p := range out.Proxies {
		w.proxies[p.NodeID] = p
	}
	return w
}

func (w *world) resources(tb testing.TB, nodeID string) Resources {
	tb.Helper()
	p := w.proxies[nodeID]
	if p == nil {
		tb.Fatalf("no proxy %s; have %v", nodeID, slices.Sorted(maps.Keys(w.proxies)))
	}
	return Resources{Listeners: p.Listeners, Routes: p.Routes, Clusters: p.Clusters, Endpoints: p.Endpoints}
}

func nodeID(mesh, name string) string { return "mesh/" + mesh + "/virtualNode/" + name }

// staticClusters is a minimal cluster manager for the tests: round robin
// over the load assignment's healthy endpoints, one pooled transport per
// cluster (HTTP/1.1, or h2c when the cluster asks for HTTP/2), addresses
// mapped to the tests' backends by remap.
type staticClusters struct {
	mu    sync.Mutex
	nodes map[string]map[string]*staticCluster
	remap *remapper
}

type remapper struct {
	mu sync.Mutex
	m  map[string]string
}

func (r *remapper) set(from, to string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[from] = to
}

func (r *remapper) get(a string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if to, ok := r.m[a]; ok {
		return to
	}
	return a
}

func (r *remapper) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, r.get(addr))
	if err != nil {
		return nil, errors.Join(ErrConnectFailure, err)
	}
	return c, nil
}

type staticCluster struct {
	name        string
	hosts       []string
	origDst     bool
	next        atomic.Uint64
	transport   *http.Transport
	remap       *remapper
	maxRequests int64
	active      atomic.Int64
	mu          sync.Mutex
	outcomes    []string
}

func newStaticClusters() *staticClusters {
	return &staticClusters{nodes: map[string]map[string]*staticCluster{}, remap: &remapper{m: map[string]string{}}}
}

func (s *staticClusters) Update(nodeID string, clusters []*clusterv3.Cluster, endpoints []*endpointv3.ClusterLoadAssignment) error {
	loads := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, e := range endpoints {
		loads[e.GetClusterName()] = e
	}
	next := map[string]*staticCluster{}
	for _, c := range clusters {
		sc := &staticCluster{name: c.GetName(), remap: s.remap, origDst: c.GetType() == clusterv3.Cluster_ORIGINAL_DST}
		cla := c.GetLoadAssignment()
		if c.GetType() == clusterv3.Cluster_EDS {
			cla = loads[c.GetName()]
		}
		for _, le := range cla.GetEndpoints() {
			for _, lb := range le.GetLbEndpoints() {
				if lb.GetHealthStatus() == 3 /* UNHEALTHY */ {
					continue
				}
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				sc.hosts = append(sc.hosts, net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))))
			}
		}
		if th := c.GetCircuitBreakers().GetThresholds(); len(th) > 0 && th[0].GetMaxRequests() != nil && th[0].GetMaxRequests().GetValue() < 2147483647 {
			sc.maxRequests = int64(th[0].GetMaxRequests().GetValue())
		}
		var protos http.Protocols
		protos.SetHTTP1(true)
		if a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; a != nil {
			var o upstreamhttpv3.HttpProtocolOptions
			if err := a.UnmarshalTo(&o); err != nil {
				return err
			}
			if o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil {
				protos = http.Protocols{}
				protos.SetUnencryptedHTTP2(true)
			}
		}
		sc.transport = &http.Transport{DialContext: s.remap.dial, MaxIdleConnsPerHost: 64, Protocols: &protos}
		next[c.GetName()] = sc
	}
	s.mu.Lock()
	old := s.nodes[nodeID]
	if len(clusters) == 0 {
		delete(s.nodes, nodeID)
	} else {
		s.nodes[nodeID] = next
	}
	s.mu.Unlock()
	for _, c := range old {
		c.transport.CloseIdleConnections()
	}
	return nil
}

func (s *staticClusters) Get(nodeID, name string) (Cluster, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.nodes[nodeID][name]
	return c, ok
}

func (s *staticClusters) cluster(nodeID, name string) *staticCluster {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodes[nodeID][name]
}

func (s *staticClusters) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.nodes {
		for _, c := range n {
			c.transport.CloseIdleConnections()
		}
	}
}

func (c *staticCluster) Acquire(_ context.Context, h Hints) (Lease, error) {
	if c.maxRequests > 0 && c.active.Load() >= c.maxRequests {
		return nil, fmt.Errorf("cluster %s: %w", c.name, ErrOverflow)
	}
	host := ""
	switch {
	case c.origDst:
		host = h.OriginalDst.String()
	case len(c.hosts) == 0:
		return nil, fmt.Errorf("cluster %s: %w", c.name, ErrNoHealthyUpstream)
	default:
		for range len(c.hosts) {
			host = c.hosts[c.next.Add(1)%uint64(len(c.hosts))]
			if !slices.Contains(h.Avoid, host) {
				break
			}
		}
	}
	c.active.Add(1)
	return &staticLease{c: c, host: host}, nil
}

type staticLease struct {
	c    *staticCluster
	host string
	done atomic.Bool
}

func (l *staticLease) Transport() http.RoundTripper { return l.c.transport }
func (l *staticLease) Dial(ctx context.Context) (net.Conn, error) {
	return l.c.remap.dial(ctx, "tcp", l.host)
}
func (l *staticLease) Host() string { return l.host }
func (l *staticLease) Done(status int, err error) {
	if l.done.Swap(true) {
		panic("Done called twice")
	}
	l.c.active.Add(-1)
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	o := strconv.Itoa(status)
	if err != nil {
		o += " error"
	}
	l.c.outcomes = append(l.c.outcomes, o)
}

func (c *staticCluster) results() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.outcomes)
}

// fakeOrigDst maps a client's source address (each test client binds its
// own 127.0.0.x) to the destination it asked for and its cgroup.
type fakeOrigDst struct {
	mu sync.Mutex
	m  map[netip.Addr]origEntry
}

type origEntry struct {
	dst    netip.AddrPort
	cgroup uint64
}

func (f *fakeOrigDst) Lookup(c net.Conn) (netip.AddrPort, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.m[addrPortOf(c.RemoteAddr()).Addr()]
	if !ok {
		return netip.AddrPort{}, 0, ErrNoOriginalDestination
	}
	return e.dst, e.cgroup, nil
}

// logFiles collects access log lines by path.
type logFiles struct {
	mu    sync.Mutex
	files map[string]*bytes.Buffer
}

type lockedWriter struct {
	lf   *logFiles
	path string
}

func (w lockedWriter) Write(b []byte) (int, error) {
	w.lf.mu.Lock()
	defer w.lf.mu.Unlock()
	return w.lf.files[w.path].Write(b)
}

func (l *logFiles) open(path string) (io.Writer, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.files[path] == nil {
		l.files[path] = &bytes.Buffer{}
	}
	return lockedWriter{lf: l, path: path}, nil
}

func (l *logFiles) lines(path string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.files[path]
	if b == nil {
		return nil
	}
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
}

// harness is a running proxy with the tests' collaborators.
type harness struct {
	t        testing.TB
	p        *Proxy
	w        *world
	clusters *staticClusters
	od       *fakeOrigDst
	logs     *logFiles
	reg      *prometheus.Registry
	nextSrc  atomic.Uint32
	cgroups  map[uint64]string
	mu       sync.Mutex
	stopFn   func() error
}

func testLogger(tb testing.TB) *slog.Logger {
	tb.Helper()
	return slog.New(slog.NewTextHandler(tWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func newHarness(tb testing.TB, w *world, cfg Config) *harness {
	tb.Helper()
	h := &harness{
		t: tb, w: w, clusters: newStaticClusters(), od: &fakeOrigDst{m: map[netip.Addr]origEntry{}},
		logs: &logFiles{files: map[string]*bytes.Buffer{}}, reg: prometheus.NewRegistry(), cgroups: map[uint64]string{},
	}
	h.nextSrc.Store(10)
	if cfg.OutboundListen == "" {
		cfg.OutboundListen = "127.0.0.1:0"
	}
	if cfg.AdminListen == "" {
		cfg.AdminListen = "127.0.0.1:0"
	}
	p, err := New(cfg, Deps{Clusters: h.clusters, OriginalDst: h.od, Registerer: h.reg, OpenLog: h.logs.open}, testLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	h.p = p
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.Ready():
	case err := <-done:
		tb.Fatalf("run: %v", err)
	}
	var once sync.Once
	var runErr error
	h.stopFn = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	tb.Cleanup(func() {
		if err := h.stopFn(); err != nil {
			tb.Errorf("run: %v", err)
		}
		h.clusters.close()
	})
	return h
}

// stop ends Run; the returned function waits for it.
func (h *harness) stop() func() error {
	errc := make(chan error, 1)
	go func() { errc <- h.stopFn() }()
	return func() error { return <-errc }
}

type netipAddr = netip.Addr

func netipMustParse(s string) netip.Addr { return netip.MustParseAddr(s) }

func netipAddrPort(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// load gives the proxy the world's resources of node ids.
func (h *harness) load(ids ...string) {
	h.t.Helper()
	for _, id := range ids {
		if err := h.p.Update(id, h.w.resources(h.t, id)); err != nil {
			h.t.Fatalf("update %s: %v", id, err)
		}
	}
}

// backend starts an HTTP backend (h2c too) as virtual node vn's endpoint
// on port, answering with its name and what it received.
func (h *harness) backend(vn string, port int, handler http.Handler) *httptest.Server {
	h.t.Helper()
	if handler == nil {
		handler = echoHandler(vn)
	}
	srv := httptest.NewUnstartedServer(handler)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &protos
	srv.Start()
	h.t.Cleanup(srv.Close)
	if port != 0 {
		h.route(vn, port, srv.Listener.Addr().String())
	}
	return srv
}

// route maps virtual node vn's endpoint on port to a real address.
func (h *harness) route(vn string, port int, to string) {
	h.clusters.remap.set(net.JoinHostPort(h.w.endpoint[vn].String(), strconv.Itoa(port)), to)
}

// echo is what echoHandler answers.
type echo struct {
	Name        string `json:"name"`
	Method      string `json:"method"`
	URI         string `json:"uri"`
	Host        string `json:"host"`
	Traceparent string `json:"traceparent"`
	Original    string `json:"original"`
	Body        string `json:"body"`
	Proto       string `json:"proto"`
}

func echoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{
			Name: name, Method: r.Method, URI: r.URL.RequestURI(), Host: r.Host, Traceparent: r.Header.Get("Traceparent"),
			Original: r.Header.Get("X-Envoy-Original-Path"), Body: string(b), Proto: r.Proto,
		})
	})
}

// caller registers a workload of virtual node vn (mesh of the world) that
// connects to service:port; it returns the source address its
// connections use.
func (h *harness) caller(mesh, vn, service string, port int) netip.Addr {
	h.t.Helper()
	src := netip.AddrFrom4([4]byte{127, 0, 0, byte(h.nextSrc.Add(1))})
	ip, ok := h.w.vips[service]
	if !ok {
		h.t.Fatalf("no address for service %s", service)
	}
	cg := 1000 + uint64(src.As4()[3])
	h.od.mu.Lock()
	h.od.m[src] = origEntry{dst: netip.AddrPortFrom(ip, uint16(port)), cgroup: cg}
	h.od.mu.Unlock()
	h.mu.Lock()
	h.cgroups[cg] = nodeID(mesh, vn)
	h.p.SetWorkloads(h.cgroups)
	h.mu.Unlock()
	return src
}

// client is an HTTP client whose connections go to the outbound listener
// from src, as the datapath would redirect them.
func (h *harness) client(src netip.Addr, h2c bool) *http.Client {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		return d.DialContext(ctx, "tcp", h.p.OutboundAddr().String())
	}
	var protos http.Protocols
	if h2c {
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	tr := &http.Transport{DialContext: dial, Protocols: &protos, MaxIdleConnsPerHost: 16}
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// get sends a request and decodes the echo; it fails the test on transport
// errors.
func get(tb testing.TB, c *http.Client, method, url string, hdr map[string]string) (int, echo) {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range hdr {
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e echo
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &e); err != nil {
			tb.Fatalf("%s %s: decode %q: %v", method, url, b, err)
		}
	}
	return resp.StatusCode, e
}
