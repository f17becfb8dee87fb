// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

// The inbound side (docs/proxy.md, "Inbound side"): the tunnel listener
// takes HTTP/2 CONNECT streams from other nodes' proxies, maps the CONNECT
// target (a local workload's pod ip:port) to the workload's virtual node,
// and hands the stream to that node's inbound listener exactly as an
// accepted connection: filter chain by destination port (and TLS
// detection), listener TLS terminated by the chain's DownstreamTlsContext,
// then the HTTP connection manager with the rds_ingress_ table or the
// tcp_proxy, to the local-app cluster (ORIGINAL_DST: the pod).

// Log keys of the inbound side.
const keyTarget = "target"

// tunnelServer is the tunnel listener and its HTTP/2 server.
type tunnelServer struct {
	ln    net.Listener
	srv   *http.Server
	local atomic.Pointer[map[netip.Addr]string] // workload address → node id

	allowed atomic.Pointer[map[string][]string] // node id → callers allowed (node ids)

	mu   sync.Mutex
	live map[*streamConn]struct{} // streams handed to an inbound listener
}

// SetAllowedCallers replaces, per local virtual node (node id), the callers
// (node ids) allowed through the tunnel; it matters only with a secured
// tunnel (Deps.Tunnel), whose client certificates name the caller.
func (p *Proxy) SetAllowedCallers(m map[string][]string) {
	c := make(map[string][]string, len(m))
	for id, callers := range m {
		c[id] = slices.Clone(callers)
	}
	p.tunnel.allowed.Store(&c)
}

// authorize checks a secured tunnel's caller against the target's allowed
// callers.
func (p *Proxy) authorize(cs *tls.ConnectionState, nodeID string) (string, error) {
	caller, err := p.deps.Tunnel.CallerID(cs)
	if err != nil {
		return "", err
	}
	if m := p.tunnel.allowed.Load(); m != nil && slices.Contains((*m)[nodeID], caller) {
		return caller, nil
	}
	return caller, fmt.Errorf("%s may not call %s: it lists none of its virtual services as a backend", caller, nodeID)
}

// track records a stream served by the inbound listener l of nodeID, until
// the returned function is called.
func (t *tunnelServer) track(c *streamConn, nodeID string, l *listenerv3.Listener) func() {
	c.nodeID, c.listener = nodeID, l
	t.mu.Lock()
	if t.live == nil {
		t.live = map[*streamConn]struct{}{}
	}
	t.live[c] = struct{}{}
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		delete(t.live, c)
		t.mu.Unlock()
	}
}

// drainInbound closes, once idle, the HTTP connections of nodeID's inbound
// listener that were accepted under a listener other than nc's (nil: the
// node is gone): a new certificate or validation context applies to every
// new request, as Envoy drains the connections of a replaced filter chain.
// A request in progress finishes first; a tcp_proxy connection keeps its
// session. An update that leaves the listener as it was changes nothing.
func (p *Proxy) drainInbound(nodeID string, nc *nodeConfig) {
	var cur *listenerv3.Listener
	if nc != nil && nc.inbound != nil {
		for _, l := range nc.res.Listeners {
			if l.GetName() == nc.inbound.name {
				cur = l
			}
		}
	}
	t := &p.tunnel
	t.mu.Lock()
	defer t.mu.Unlock()
	same := map[*listenerv3.Listener]bool{}
	var closed, draining int
	for c := range t.live {
		if c.nodeID != nodeID || c.listener == cur {
			continue
		}
		eq, ok := same[c.listener]
		if !ok {
			eq = cur != nil && proto.Equal(c.listener, cur)
			same[c.listener] = eq
		}
		if eq {
			c.listener = cur
			continue
		}
		if c.drain() {
			closed++
		} else {
			draining++
		}
	}
	if closed+draining > 0 {
		p.log.Info("inbound listener changed; draining its connections", keyNode, nodeID, "closed_idle", closed, "draining", draining)
	}
}

// inboundConnState follows the HTTP server's view of an inbound
// connection: a draining one is closed once idle.
func inboundConnState(c net.Conn, st http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if mc, ok := c.(*meshConn); ok {
		c = mc.Conn
	}
	sc, ok := c.(*streamConn)
	if !ok {
		return
	}
	switch st {
	case http.StateActive:
		sc.httpIdle.Store(false)
	case http.StateNew, http.StateIdle:
		// New counts as idle: a client may have opened the connection
		// without sending on it yet (a spare of its pool).
		sc.httpIdle.Store(true)
		if sc.draining.Load() {
			_ = sc.Close()
		}
	}
}

// SetLocalAddresses replaces the map from the addresses of the node's
// workloads to their node ids (virtual nodes): a CONNECT to one of them is
// served by that node's inbound listener.
func (p *Proxy) SetLocalAddresses(m map[netip.Addr]string) {
	c := make(map[netip.Addr]string, len(m))
	for a, id := range m {
		c[a.Unmap()] = id
	}
	p.tunnel.local.Store(&c)
	p.log.Info("local workload addresses set", keyWorkloads, len(c))
}

// TunnelAddr is the bound tunnel listener (after Ready), or nil.
func (p *Proxy) TunnelAddr() net.Addr {
	if p.tunnel.ln == nil {
		return nil
	}
	return p.tunnel.ln.Addr()
}

// listenTunnel binds the tunnel listener when Config.TunnelListen is set.
func (p *Proxy) listenTunnel() error {
	if p.cfg.TunnelListen == "" {
		return nil
	}
	ln, err := p.listen(p.cfg.TunnelListen)
	if err != nil {
		return fmt.Errorf("tunnel listener: %w", err)
	}
	var protos http.Protocols
	var tlsCfg *tls.Config
	if p.deps.Tunnel != nil {
		protos.SetHTTP2(true)
		tlsCfg = p.deps.Tunnel.ServerConfig().Clone()
		tlsCfg.NextProtos = []string{alpnH2}
		ln = tls.NewListener(ln, tlsCfg)
	} else {
		protos.SetUnencryptedHTTP2(true)
	}
	p.tunnel.ln = ln
	p.tunnel.srv = &http.Server{
		Handler:           http.HandlerFunc(p.serveTunnelStream),
		Protocols:         &protos,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: time.Minute,
		IdleTimeout:       p.cfg.IdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return p.baseCtx },
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	p.log.Info("listening", keyListener, "tunnel", keyAddress, ln.Addr().String(), "mtls", tlsCfg != nil)
	return nil
}

// serveTunnel serves the tunnel listener until it is closed.
func (p *Proxy) serveTunnel() error {
	if err := p.tunnel.srv.Serve(p.tunnel.ln); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("tunnel server: %w", err)
	}
	return nil
}

// closeTunnelListener stops taking tunnel connections (the drain's first
// step); streams in progress go on.
func (p *Proxy) closeTunnelListener() {
	if p.tunnel.ln != nil {
		_ = p.tunnel.ln.Close()
	}
}

// shutdownTunnel ends the tunnel server once the streams it carries are
// done (their connections were drained by the HTTP server and the TCP
// drain), or closes it when ctx ends.
func (p *Proxy) shutdownTunnel(ctx context.Context) {
	if p.tunnel.srv == nil {
		return
	}
	if err := p.tunnel.srv.Shutdown(ctx); err != nil {
		_ = p.tunnel.srv.Close()
	}
}

// inboundTarget maps a CONNECT target to the local workload's node
// configuration; the error says why there is none.
func (p *Proxy) inboundTarget(authority string) (netip.AddrPort, *nodeConfig, error) {
	dst, err := netip.ParseAddrPort(authority)
	if err != nil || dst.Port() == 0 {
		return netip.AddrPort{}, nil, fmt.Errorf("CONNECT target %q: want <ip>:<port>", authority)
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	var nodeID string
	if m := p.tunnel.local.Load(); m != nil {
		nodeID = (*m)[dst.Addr()]
	}
	if nodeID == "" {
		return dst, nil, fmt.Errorf("%s is not a workload of this node", dst.Addr())
	}
	nc := p.state.Load().nodes[nodeID]
	if nc == nil || nc.inbound == nil {
		return dst, nil, fmt.Errorf("%s: %s has no inbound listener here (yet)", dst, nodeID)
	}
	if len(nc.inbound.candidates(dst)) == 0 {
		return dst, nil, fmt.Errorf("%s: %s has no listener on port %d", dst, nodeID, dst.Port())
	}
	return dst, nc, nil
}

// serveTunnelStream serves one CONNECT stream: 200, then the stream is a
// connection to the target's inbound listener until either side closes it.
func (p *Proxy) serveTunnelStream(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect || r.ProtoMajor != 2 {
		http.Error(w, "weft tunnel: HTTP/2 CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	dst, nc, err := p.inboundTarget(r.Host)
	if err != nil {
		p.m.rejected.WithLabelValues(rejectUnknownTarget).Inc()
		p.log.Debug("tunnel stream refused", keyRemote, r.RemoteAddr, keyTarget, r.Host, keyError, err)
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if p.deps.Tunnel != nil {
		caller, err := p.authorize(r.TLS, nc.id)
		if err != nil {
			p.m.rejected.WithLabelValues(rejectUnauthorized).Inc()
			p.log.Debug("tunnel stream refused", keyRemote, r.RemoteAddr, keyTarget, r.Host, "caller", caller, keyError, err)
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
	}
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	remote, _ := netip.ParseAddrPort(r.RemoteAddr)
	c := newStreamConn(r.Body, w, rc, net.TCPAddrFromAddrPort(dst), net.TCPAddrFromAddrPort(remote))
	var lres *listenerv3.Listener
	for _, l := range nc.res.Listeners {
		if l.GetName() == nc.inbound.name {
			lres = l
		}
	}
	defer p.tunnel.track(c, nc.id, lres)()
	p.dispatching.Add(1)
	var once sync.Once
	dispatched := func() { once.Do(func() { p.dispatching.Add(-1) }) }
	p.dispatch(c, nc, nc.inbound, dst, dispatched)
	dispatched()
	// The stream lives as long as its connection: the HTTP server or the
	// TCP proxy closes it.
	c.wait(r.Context())
}

// streamConn is a tunnel stream seen as an accepted connection. Reads come
// from the request body through a goroutine, so that read deadlines can
// expire and be reset any number of times (the HTTP/1 server and the
// ClientHello inspection rely on that; an HTTP/2 stream's own read deadline
// ends the stream when it fires). A write deadline is checked when a write
// starts; a write already waiting for flow control is not interrupted.
// CloseWrite closes the whole stream: an HTTP/2 server stream cannot end its
// response and keep reading (docs/proxy.md, "Limits").
type streamConn struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	local  net.Addr
	remote net.Addr

	chunks  chan streamChunk
	pending streamChunk
	rmu     sync.Mutex // one reader at a time
	wmu     sync.Mutex // one writer at a time
	readDL  pipeDeadline
	writeDL atomic.Pointer[time.Time]

	mu     sync.Mutex
	closed bool
	ops    sync.WaitGroup // reads and writes in progress
	done   chan struct{}

	// Set by tunnelServer.track; listener is guarded by tunnelServer.mu.
	nodeID   string
	listener *listenerv3.Listener
	// httpIdle is true while the HTTP server waits for the first or the
	// next request; draining closes the connection as soon as it is.
	httpIdle atomic.Bool
	draining atomic.Bool
}

// drain closes the connection now if the HTTP server holds it idle (and
// says so), or when it next is (inboundConnState).
func (c *streamConn) drain() bool {
	c.draining.Store(true)
	if c.httpIdle.Load() {
		_ = c.Close()
		return true
	}
	return false
}

type streamChunk struct {
	b   []byte
	err error
}

func newStreamConn(body io.Reader, w http.ResponseWriter, rc *http.ResponseController, local, remote net.Addr) *streamConn {
	c := &streamConn{
		w: w, rc: rc, local: local, remote: remote,
		chunks: make(chan streamChunk), readDL: makePipeDeadline(), done: make(chan struct{}),
	}
	go c.pump(body)
	return c
}

// pump reads the request body into chunks until it ends or the connection
// closes.
func (c *streamConn) pump(body io.Reader) {
	for {
		b := make([]byte, 32<<10)
		n, err := body.Read(b)
		if n > 0 || err != nil {
			select {
			case c.chunks <- streamChunk{b[:n], err}:
			case <-c.done:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (c *streamConn) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.ops.Add(1)
	return true
}

func (c *streamConn) Read(b []byte) (int, error) {
	if !c.enter() {
		return 0, net.ErrClosed
	}
	defer c.ops.Done()
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.pending.b) == 0 && c.pending.err == nil {
		select {
		case c.pending = <-c.chunks:
		case <-c.readDL.wait():
			return 0, os.ErrDeadlineExceeded
		case <-c.done:
			return 0, net.ErrClosed
		}
	}
	n := copy(b, c.pending.b)
	c.pending.b = c.pending.b[n:]
	if len(c.pending.b) == 0 && c.pending.err != nil {
		err := c.pending.err
		if !errors.Is(err, io.EOF) {
			err = fmt.Errorf("tunnel stream: %w", err)
		}
		if n > 0 {
			return n, nil // the error comes with the next read
		}
		return 0, err
	}
	return n, nil
}

func (c *streamConn) Write(b []byte) (int, error) {
	if !c.enter() {
		return 0, net.ErrClosed
	}
	defer c.ops.Done()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if dl := c.writeDL.Load(); dl != nil && !dl.IsZero() && !time.Now().Before(*dl) {
		return 0, os.ErrDeadlineExceeded
	}
	n, err := c.w.Write(b)
	if err == nil {
		err = c.rc.Flush()
	}
	return n, err
}

// Close ends the stream: reads and writes in progress return, and the
// tunnel handler returns (resetting the stream if the peer is not done).
func (c *streamConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	close(c.done)
	if c.wmu.TryLock() {
		// No write in progress, and none starts now: the handler's return
		// ends the stream cleanly (END_STREAM).
		c.wmu.Unlock()
		return nil
	}
	// Unblock the write waiting for flow control (this resets the stream).
	_ = c.rc.SetWriteDeadline(time.Now())
	return nil
}

// CloseWrite closes the stream (see streamConn).
func (c *streamConn) CloseWrite() error { return c.Close() }

// wait returns once the connection is closed and no read or write is in
// progress, or the stream's context ends (the peer reset it).
func (c *streamConn) wait(ctx context.Context) {
	select {
	case <-c.done:
	case <-ctx.Done():
		_ = c.Close()
	}
	c.ops.Wait()
}

func (c *streamConn) LocalAddr() net.Addr  { return c.local }
func (c *streamConn) RemoteAddr() net.Addr { return c.remote }

func (c *streamConn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *streamConn) SetReadDeadline(t time.Time) error {
	c.readDL.set(t)
	return nil
}

func (c *streamConn) SetWriteDeadline(t time.Time) error {
	c.writeDL.Store(&t)
	return nil
}

// pipeDeadline is a resettable deadline, as net.Pipe's: wait returns a
// channel closed once the deadline has passed.
type pipeDeadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{}
}

func makePipeDeadline() pipeDeadline { return pipeDeadline{cancel: make(chan struct{})} }

func (d *pipeDeadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // wait for the timer's function to close it
	}
	d.timer = nil
	closed := isClosedChan(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *pipeDeadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosedChan(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// allowedCallersOf maps the node state's virtual nodes to their allowed
// tunnel callers.
func allowedCallersOf(st *nodeapiv1.NodeState) map[string][]string {
	out := map[string][]string{}
	for _, w := range st.GetWorkloads() {
		out["mesh/"+w.GetMesh()+"/virtualNode/"+w.GetVirtualNode()] = w.GetAllowedCallers()
	}
	return out
}

// localAddressesOf maps the addresses of a node state's workloads to their
// node ids (for SetLocalAddresses); unparsable addresses are left out.
func localAddressesOf(st *nodeapiv1.NodeState) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for _, w := range st.GetWorkloads() {
		id := "mesh/" + w.GetMesh() + "/virtualNode/" + w.GetVirtualNode()
		for _, a := range w.GetAddresses() {
			if ip, err := netip.ParseAddr(a); err == nil {
				out[ip.Unmap()] = id
			}
		}
	}
	return out
}
