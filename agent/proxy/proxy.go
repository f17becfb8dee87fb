// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// Log keys.
const (
	keyComponent   = "component"
	keyError       = "error"
	keyNode        = "node"
	keyListener    = "listener"
	keyAddress     = "address"
	keyDestination = "destination"
	keyCgroup      = "cgroup"
	keyDelay       = "delay"
	keyWorkloads   = "workloads"
	keyInFlight    = "in_flight"
	keyRemote      = "remote"
)

// Resources are the Envoy resources of one node id (a virtual node or
// virtual gateway), as the translator produces them.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
}

// state is the immutable configuration the request path reads.
type state struct {
	nodes     map[string]*nodeConfig
	workloads map[uint64]string
}

// nodeConfig is the compiled configuration of one node id.
type nodeConfig struct {
	id      string
	res     Resources
	egress  *listener            // virtual nodes: the listener redirected connections use
	direct  map[string]*listener // virtual gateways: listeners bound on their own address
	inbound *listener            // virtual nodes: what the tunnel listener hands CONNECT streams to (inbound.go)
	routes  map[string]*routeTable
	ignored []string // inbound listeners not served (no tunnel listener)
}

// boundListener is a directly bound (gateway) listener.
type boundListener struct {
	ln     net.Listener
	nodeID string
	name   string
	addr   string // configured (or overridden) address
}

// Proxy is weft's node proxy: the L7 data plane for the workloads of a
// node and for virtual gateways.
type Proxy struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	m        *metrics
	gatherer prometheus.Gatherer
	hostname string

	state atomic.Pointer[state]
	mu    sync.Mutex // serialises configuration writers and the gateway listeners
	sinks map[string]*logSink
	bound map[string]*boundListener // by bind address

	bufPool  sync.Pool
	logPool  sync.Pool
	bodyPool sync.Pool

	queue    *connQueue
	server   *http.Server
	conns    sync.WaitGroup
	baseCtx  context.Context
	cancel   context.CancelFunc
	running  bool // under mu
	draining atomic.Bool
	// dispatching counts accepted connections not yet handed on (see
	// acceptLoop).
	dispatching atomic.Int64
	waitFor     <-chan struct{} // see WaitFor
	ready       chan struct{}
	outbound    net.Addr
	admin       net.Addr
	tunnel      tunnelServer // inbound.go

	tcpMu    sync.Mutex
	tcpConns map[uint64][2]net.Conn
	tcpNext  uint64
}

// New builds a proxy. It binds nothing: Run does.
func New(cfg Config, deps Deps, log *slog.Logger) (*Proxy, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("proxy config: %w", err)
	}
	if deps.Clusters == nil {
		return nil, errors.New("proxy: no cluster manager")
	}
	if cfg.OutboundListen != "" && deps.OriginalDst == nil {
		return nil, errors.New("proxy: an outbound listener needs an original destination source")
	}
	if deps.OpenLog == nil {
		deps.OpenLog = openLogFile
	}
	reg := deps.Registerer
	gath := deps.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gath = r, r
	}
	if gath == nil {
		gath, _ = reg.(prometheus.Gatherer)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("proxy metrics: %w", err)
	}
	host, _ := os.Hostname()
	baseCtx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		cfg: cfg, deps: deps, log: log.With(keyComponent, "proxy"), m: m, gatherer: gath, hostname: host,
		sinks: map[string]*logSink{}, bound: map[string]*boundListener{},
		queue: newConnQueue(), ready: make(chan struct{}), tcpConns: map[uint64][2]net.Conn{},
		baseCtx: baseCtx, cancel: cancel,
	}
	p.bufPool.New = func() any { b := make([]byte, 32<<10); return &b }
	p.logPool.New = func() any { b := make([]byte, 0, 512); return &b }
	p.bodyPool.New = func() any { b := make([]byte, 0, 4<<10); return &b }
	p.state.Store(&state{nodes: map[string]*nodeConfig{}, workloads: map[uint64]string{}})
	return p, nil
}

// isGateway tells a virtual gateway's node id.
func isGateway(nodeID string) bool { return strings.Contains(nodeID, "/virtualGateway/") }

// Update compiles the resources of a node id and, when everything
// compiles, makes them the node's configuration. On error (which names
// the resource at fault) nothing changes: the previous configuration keeps
// serving, which is an ADS NACK.
func (p *Proxy) Update(nodeID string, res Resources) error {
	if err := p.update(nodeID, res); err != nil {
		p.m.configUpdates.WithLabelValues("rejected").Inc()
		p.log.Warn("configuration rejected", keyNode, nodeID, keyError, err)
		return err
	}
	p.m.configUpdates.WithLabelValues("accepted").Inc()
	return nil
}

func (p *Proxy) update(nodeID string, res Resources) error {
	if nodeID == "" {
		return errors.New("empty node id")
	}
	if err := validateAll(res); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := &compiler{nodeID: nodeID, hostname: p.hostname, m: p.m, sink: p.sinkLocked}
	nc := &nodeConfig{id: nodeID, res: res, routes: map[string]*routeTable{}, direct: map[string]*listener{}}
	for _, rc := range res.Routes {
		if _, dup := nc.routes[rc.GetName()]; dup {
			return fmt.Errorf("route configuration %s: duplicate name", rc.GetName())
		}
		rt, err := compileRouteTable(rc, c.statsFor(rc.GetName()), c.durationFor(rc.GetName()))
		if err != nil {
			return fmt.Errorf("route configuration %s: %w", rc.GetName(), err)
		}
		nc.routes[rc.GetName()] = rt
	}
	gateway := isGateway(nodeID)
	for _, l := range res.Listeners {
		if !gateway && !isOutbound(l) && p.cfg.TunnelListen == "" {
			// The inbound side is served through the tunnel listener only
			// (docs/proxy.md, "Inbound side").
			nc.ignored = append(nc.ignored, l.GetName())
			continue
		}
		cl, err := c.listener(l)
		if err != nil {
			return fmt.Errorf("listener %s: %w", l.GetName(), err)
		}
		for _, ch := range cl.chains {
			if ch.hcm != nil && ch.hcm.inline == nil && nc.routes[ch.hcm.rds] == nil {
				return fmt.Errorf("listener %s: filter chain %s: route configuration %q is not in the update", l.GetName(), ch.name, ch.hcm.rds)
			}
		}
		switch {
		case gateway:
			nc.direct[cl.name] = cl
		case !isOutbound(l):
			if nc.inbound != nil {
				return fmt.Errorf("listener %s: a second inbound listener (have %s)", l.GetName(), nc.inbound.name)
			}
			nc.inbound = cl
		case nc.egress != nil:
			return fmt.Errorf("listener %s: a second outbound listener (have %s)", l.GetName(), nc.egress.name)
		default:
			nc.egress = cl
		}
	}
	// Bind the gateway's new listeners before anything changes, so that a
	// port in use rejects the update.
	var opened []*boundListener
	if p.running {
		var err error
		opened, err = p.bindDirectLocked(nc)
		if err != nil {
			return err
		}
	}
	if err := p.deps.Clusters.Update(nodeID, res.Clusters, res.Endpoints); err != nil {
		for _, b := range opened {
			_ = b.ln.Close()
			delete(p.bound, b.addr)
		}
		return fmt.Errorf("clusters: %w", err)
	}
	old := p.state.Load()
	next := &state{nodes: maps.Clone(old.nodes), workloads: old.workloads}
	next.nodes[nodeID] = nc
	p.state.Store(next)
	p.drainInbound(nodeID, nc)
	if p.running {
		p.closeStaleDirectLocked(nodeID, nc)
		for _, b := range opened {
			p.serveDirect(b)
		}
	}
	p.log.Info("configuration accepted", keyNode, nodeID)
	return nil
}

// Delete removes a node id's configuration (and its clusters).
func (p *Proxy) Delete(nodeID string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.state.Load()
	if _, ok := old.nodes[nodeID]; !ok {
		return nil
	}
	if err := p.deps.Clusters.Update(nodeID, nil, nil); err != nil {
		return fmt.Errorf("clusters: %w", err)
	}
	next := &state{nodes: maps.Clone(old.nodes), workloads: old.workloads}
	delete(next.nodes, nodeID)
	p.state.Store(next)
	p.drainInbound(nodeID, nil)
	p.closeStaleDirectLocked(nodeID, nil)
	p.m.forget(nodeID)
	return nil
}

// SetWorkloads replaces the map from a caller's cgroup id to the node id
// (virtual node) whose egress listener serves it.
func (p *Proxy) SetWorkloads(w map[uint64]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.state.Load()
	p.state.Store(&state{nodes: old.nodes, workloads: maps.Clone(w)})
	p.log.Info("workloads set", keyWorkloads, len(w))
}

// validator is what every Envoy resource implements.
type validator interface{ ValidateAll() error }

func validateAll(res Resources) error {
	check := func(kind, name string, v validator) error {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s %s: invalid: %w", kind, name, err)
		}
		return nil
	}
	var errs []error
	for _, l := range res.Listeners {
		errs = append(errs, check("listener", l.GetName(), l))
	}
	for _, r := range res.Routes {
		errs = append(errs, check("route configuration", r.GetName(), r))
	}
	for _, c := range res.Clusters {
		errs = append(errs, check("cluster", c.GetName(), c))
	}
	for _, e := range res.Endpoints {
		errs = append(errs, check("load assignment", e.GetClusterName(), e))
	}
	return errors.Join(errs...)
}

// sinkLocked returns the shared writer of an access log path.
func (p *Proxy) sinkLocked(path string) (*logSink, error) {
	if s := p.sinks[path]; s != nil {
		return s, nil
	}
	w, err := p.deps.OpenLog(path)
	if err != nil {
		return nil, fmt.Errorf("access log %s: %w", path, err)
	}
	s := &logSink{w: w}
	p.sinks[path] = s
	return s, nil
}

// bindAddr is where a directly bound listener binds.
func (p *Proxy) bindAddr(l *listener) string {
	if a, ok := p.cfg.BindOverrides[l.name]; ok {
		return a
	}
	return l.address
}

// bindDirectLocked binds the node's directly bound listeners that are not
// bound yet and returns them (not yet serving).
func (p *Proxy) bindDirectLocked(nc *nodeConfig) ([]*boundListener, error) {
	var opened []*boundListener
	fail := func(err error) ([]*boundListener, error) {
		for _, b := range opened {
			_ = b.ln.Close()
			delete(p.bound, b.addr)
		}
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(nc.direct)) {
		l := nc.direct[name]
		addr := p.bindAddr(l)
		if b, ok := p.bound[addr]; ok {
			if b.nodeID != nc.id {
				return fail(fmt.Errorf("listener %s: address %s is already bound for %s", name, addr, b.nodeID))
			}
			b.name = name
			continue
		}
		ln, err := p.listen(addr)
		if err != nil {
			return fail(fmt.Errorf("listener %s: %w", name, err))
		}
		b := &boundListener{ln: ln, nodeID: nc.id, name: name, addr: addr}
		p.bound[addr] = b
		opened = append(opened, b)
	}
	return opened, nil
}

// closeStaleDirectLocked closes a node's bound listeners that its new
// configuration (nil: none) no longer has.
func (p *Proxy) closeStaleDirectLocked(nodeID string, nc *nodeConfig) {
	for addr, b := range p.bound {
		if b.nodeID != nodeID {
			continue
		}
		keep := false
		if nc != nil {
			if l := nc.direct[b.name]; l != nil && p.bindAddr(l) == addr {
				keep = true
			}
		}
		if !keep {
			_ = b.ln.Close()
			delete(p.bound, addr)
		}
	}
}

// serveDirect starts the accept loop of a bound listener.
func (p *Proxy) serveDirect(b *boundListener) {
	p.log.Info("listening", keyNode, b.nodeID, keyListener, b.name, keyAddress, b.ln.Addr().String())
	p.conns.Add(1)
	go func() {
		defer p.conns.Done()
		err := p.acceptLoop(b.ln, func(c net.Conn, dispatched func()) {
			// Read the name at accept time: an update may rename it.
			p.mu.Lock()
			name := b.name
			p.mu.Unlock()
			p.handleDirect(c, b.nodeID, name, dispatched)
		})
		if err != nil {
			p.log.Error("listener failed", keyListener, b.name, keyError, err)
		}
	}()
}

// Ready is closed once Run has bound its listeners.
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

// WaitFor makes Run bind its listeners only once ch is closed (ADS.Warm:
// the configuration is there). Call it before Run.
func (p *Proxy) WaitFor(ch <-chan struct{}) { p.waitFor = ch }

// OutboundAddr is the bound outbound listener (after Ready).
func (p *Proxy) OutboundAddr() net.Addr { return p.outbound }

// AdminAddr is the bound admin listener (after Ready).
func (p *Proxy) AdminAddr() net.Addr { return p.admin }

// ListenerAddr is where a directly bound listener of a node id listens,
// or nil.
func (p *Proxy) ListenerAddr(nodeID, name string) net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.bound {
		if b.nodeID == nodeID && b.name == name {
			return b.ln.Addr()
		}
	}
	return nil
}

// Run binds the listeners, serves until ctx ends, then drains: it stops
// accepting, lets in-flight requests and TCP connections finish for up to
// Config.DrainTimeout, closes what is left and returns once every
// goroutine it started has ended.
func (p *Proxy) Run(ctx context.Context) error {
	if p.waitFor != nil {
		// A proxy taking over from another binds beside it only once it
		// can serve what it accepts.
		select {
		case <-p.waitFor:
		case <-ctx.Done():
			p.cancel()
			return nil
		}
	}
	var outLn, adminLn net.Listener
	closeAll := func() {
		for _, l := range []net.Listener{outLn, adminLn} {
			if l != nil {
				_ = l.Close()
			}
		}
	}
	var err error
	if p.cfg.OutboundListen != "" {
		if outLn, err = p.listen(p.cfg.OutboundListen); err != nil {
			return fmt.Errorf("outbound listener: %w", err)
		}
		p.outbound = outLn.Addr()
		p.queue.addr = outLn.Addr()
	}
	if p.cfg.AdminListen != "" {
		if adminLn, err = p.listen(p.cfg.AdminListen); err != nil {
			closeAll()
			return fmt.Errorf("admin listener: %w", err)
		}
		p.admin = adminLn.Addr()
	}
	if err := p.listenTunnel(); err != nil {
		closeAll()
		return err
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true) // over TLS, when ALPN chose h2
	protos.SetUnencryptedHTTP2(true)
	p.server = &http.Server{
		Handler:     p,
		Protocols:   &protos,
		IdleTimeout: p.cfg.IdleTimeout,
		// A connection the server tracks is one its Shutdown waits for:
		// push returns only then (see connQueue).
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateNew {
				p.queue.tracked(c)
			}
			inboundConnState(c, st)
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tls.Conn); ok {
				c = tc.NetConn()
			}
			if mc, ok := c.(*meshConn); ok {
				return context.WithValue(ctx, connInfoKey{}, mc.info)
			}
			return ctx
		},
		// Like Envoy's request_headers_timeout: a client that never
		// finishes its headers does not hold a connection forever.
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	p.mu.Lock()
	p.running = true
	var direct []*boundListener
	for _, id := range slices.Sorted(maps.Keys(p.state.Load().nodes)) {
		opened, err := p.bindDirectLocked(p.state.Load().nodes[id])
		if err != nil {
			p.log.Error("bind gateway listeners", keyNode, id, keyError, err)
			continue
		}
		direct = append(direct, opened...)
	}
	for _, b := range direct {
		p.serveDirect(b)
	}
	p.mu.Unlock()
	if outLn != nil {
		p.log.Info("listening", keyListener, "outbound", keyAddress, outLn.Addr().String())
	}
	close(p.ready)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := p.server.Serve(p.queue); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	if outLn != nil {
		g.Go(func() error { return p.acceptLoop(outLn, p.handleOutbound) })
	}
	if p.tunnel.ln != nil {
		g.Go(p.serveTunnel)
	}
	var adminSrv *http.Server
	if adminLn != nil {
		adminSrv = &http.Server{
			Handler: p.adminHandler(), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		}
		g.Go(func() error {
			if err := adminSrv.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("admin server: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		p.drain(outLn) //nolint:contextcheck // the drain runs after ctx ended, on its own deadline
		if adminSrv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = adminSrv.Shutdown(sctx) //nolint:contextcheck // ctx has ended; shut down on a fresh deadline
		}
		return nil
	})
	err = g.Wait()
	p.conns.Wait()
	p.closeSinks()
	return err
}

// drain stops accepting and waits for in-flight work, up to the drain
// timeout.
func (p *Proxy) drain(outLn net.Listener) {
	p.draining.Store(true)
	start := time.Now()
	if outLn != nil {
		_ = outLn.Close()
	}
	p.closeTunnelListener()
	p.mu.Lock()
	p.running = false
	for addr, b := range p.bound {
		_ = b.ln.Close()
		delete(p.bound, addr)
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.DrainTimeout)
	defer cancel()
	// Connections accepted before the listeners closed are still on their
	// way to the HTTP server: let them arrive before it stops taking
	// connections, or they would be closed unanswered.
	for p.dispatching.Load() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(time.Millisecond):
		}
	}
	// Shutdown closes the queue (no new HTTP connections), closes idle
	// connections, sends HTTP/2 GOAWAY and waits for active requests.
	if err := p.server.Shutdown(ctx); err != nil {
		p.log.Warn("drain timed out; closing connections", keyError, err)
		_ = p.server.Close()
	}
	for {
		p.tcpMu.Lock()
		n := len(p.tcpConns)
		p.tcpMu.Unlock()
		if n == 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.tcpMu.Lock()
	if n := len(p.tcpConns); n > 0 {
		p.log.Warn("drain timed out; closing tcp connections", keyInFlight, n)
	}
	for _, pair := range p.tcpConns {
		_ = pair[0].Close()
		_ = pair[1].Close()
	}
	p.tcpMu.Unlock()
	p.shutdownTunnel(ctx)
	p.cancel()
	p.log.Info("drained", keyDelay, time.Since(start))
}

func (p *Proxy) closeSinks() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for path, s := range p.sinks {
		if c, ok := s.w.(io.Closer); ok && s.w != io.Writer(os.Stdout) && s.w != io.Writer(os.Stderr) {
			_ = c.Close()
		}
		delete(p.sinks, path)
	}
}
