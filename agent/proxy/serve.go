// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// connInfoKey keys the connection's connInfo in request contexts.
type connInfoKey struct{}

// connInfo is what the request path knows about its connection.
type connInfo struct {
	nodeID     string
	hcm        *hcm
	dst        netip.AddrPort
	remote     string
	local      string
	serverName string
}

// meshConn is an accepted connection on its way to an HTTP connection
// manager or a TCP proxy, with the bytes a listener filter already read.
type meshConn struct {
	net.Conn
	r    io.Reader // nil: read from Conn
	info *connInfo
}

func (c *meshConn) Read(b []byte) (int, error) {
	if c.r != nil {
		return c.r.Read(b)
	}
	return c.Conn.Read(b)
}

// CloseWrite half-closes the connection when it is TCP.
func (c *meshConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// connQueue is the net.Listener the HTTP server accepts from: connections
// whose filter chain chose an HTTP connection manager are pushed into it.
type connQueue struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
	// waiting maps a pushed connection to the channel that tracked closes
	// when the HTTP server has started tracking it.
	waiting sync.Map
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn), done: make(chan struct{}), addr: &net.TCPAddr{}}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// push hands c to the HTTP server and returns once the server tracks it
// (its ConnState hook saw StateNew), so that a Shutdown that starts after
// push returned waits for c's request instead of missing it.
func (q *connQueue) push(c net.Conn) bool {
	seen := make(chan struct{})
	q.waiting.Store(c, seen)
	select {
	case q.ch <- c:
	case <-q.done:
		q.waiting.Delete(c)
		return false
	}
	select {
	case <-seen:
	case <-q.done:
		// Serve took c before the queue closed: it tracks c regardless.
	}
	return true
}

// tracked is called by the HTTP server's ConnState hook for a new
// connection.
func (q *connQueue) tracked(c net.Conn) {
	if v, ok := q.waiting.LoadAndDelete(c); ok {
		close(v.(chan struct{}))
	}
}

// acceptLoop accepts until the listener is closed, handling each
// connection on its own tracked goroutine. A connection counts as
// dispatching (Proxy.dispatching) from its accept until it is handed to the
// HTTP server, rejected, or starts being proxied as TCP: handle calls
// dispatched at that point, or it is called when handle returns. The drain
// waits for no connection to be dispatching before it shuts the HTTP server
// down, so a connection accepted just before the listener closed is served,
// not dropped.
func (p *Proxy) acceptLoop(ln net.Listener, handle func(c net.Conn, dispatched func())) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				p.log.Warn("accept failed; retrying", keyError, err, keyDelay, backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		p.conns.Add(1)
		p.dispatching.Add(1)
		go func() {
			defer p.conns.Done()
			var once sync.Once
			dispatched := func() { once.Do(func() { p.dispatching.Add(-1) }) }
			defer dispatched()
			handle(c, dispatched)
		}()
	}
}

// handleOutbound dispatches a connection the datapath redirected: its
// original destination and caller give the node id and its egress
// listener.
func (p *Proxy) handleOutbound(c net.Conn, dispatched func()) {
	dst, cgroup, err := p.deps.OriginalDst.Lookup(c)
	if err != nil {
		if !errors.Is(err, ErrNoOriginalDestination) {
			p.log.Warn("look up original destination", keyError, err)
		}
		p.reject(c, rejectNoOrigDst)
		return
	}
	st := p.state.Load()
	nodeID := st.workloads[cgroup]
	nc := st.nodes[nodeID]
	if nc == nil || nc.egress == nil {
		p.log.Debug("connection from an unknown caller", keyCgroup, cgroup, keyDestination, dst)
		p.reject(c, rejectUnknownCaller)
		return
	}
	p.dispatch(c, nc, nc.egress, dst, dispatched)
}

// handleDirect dispatches a connection to a directly bound listener.
func (p *Proxy) handleDirect(c net.Conn, nodeID, name string, dispatched func()) {
	nc := p.state.Load().nodes[nodeID]
	var l *listener
	if nc != nil {
		l = nc.direct[name]
	}
	if l == nil {
		p.reject(c, rejectNoChain)
		return
	}
	// The listener's own port, even when Config.BindOverrides moved it.
	dst := netip.AddrPortFrom(addrPortOf(c.LocalAddr()).Addr(), l.port)
	p.dispatch(c, nc, l, dst, dispatched)
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func (p *Proxy) reject(c net.Conn, reason string) {
	p.m.rejected.WithLabelValues(reason).Inc()
	_ = c.Close()
}

// dispatch picks the filter chain and hands the connection to its HTTP
// connection manager or TCP proxy.
func (p *Proxy) dispatch(c net.Conn, nc *nodeConfig, l *listener, dst netip.AddrPort, dispatched func()) {
	cm := connMeta{dst: dst}
	mc := &meshConn{Conn: c}
	cands := l.candidates(dst)
	if needsInspection(cands) {
		sni, isTLS, buffered, err := inspectTLS(c, p.cfg.ListenerFilterTimeout)
		if err != nil {
			p.reject(c, rejectSNITimeout)
			return
		}
		cm.serverName, cm.tls = sni, isTLS
		mc.r = io.MultiReader(bytes.NewReader(buffered), c)
	}
	ch := selectChain(cands, cm)
	if ch == nil {
		p.log.Debug("no filter chain matches", keyNode, nc.id, keyListener, l.name, keyDestination, dst)
		p.reject(c, rejectNoChain)
		return
	}
	mc.info = &connInfo{
		nodeID: nc.id, hcm: ch.hcm, dst: dst, serverName: cm.serverName,
		remote: c.RemoteAddr().String(), local: c.LocalAddr().String(),
	}
	var conn net.Conn = mc
	if ch.tls != nil {
		// Terminate TLS here, on the connection's own goroutine, so that a
		// failed handshake is counted; the HTTP server then finds the
		// handshake done and serves HTTP/2 when ALPN chose h2.
		tc := tls.Server(mc, ch.tls.config)
		if err := ch.tls.handshake(p.baseCtx, c, tc, p.cfg.TLSHandshakeTimeout); err != nil {
			p.log.Debug("tls handshake failed", keyNode, nc.id, keyListener, l.name, keyRemote, mc.info.remote, keyError, err)
			p.reject(c, rejectTLSHandshake)
			return
		}
		if mc.info.serverName == "" {
			mc.info.serverName = tc.ConnectionState().ServerName
		}
		conn = tc
	}
	if ch.hcm != nil {
		if !p.queue.push(conn) {
			_ = c.Close()
		}
		return
	}
	if ch.tls != nil {
		mc = &meshConn{Conn: conn, info: mc.info}
	}
	dispatched() // tracked as a TCP connection from here on
	p.serveTCP(mc, ch.tcp)
}

// errHelloRead stops the TLS handshake once the ClientHello is read.
var errHelloRead = errors.New("client hello read")

// inspectTLS reads the start of a connection: whether it is TLS and, if so,
// the server name of its ClientHello. buffered holds every byte read, to be
// replayed.
func inspectTLS(c net.Conn, timeout time.Duration) (serverName string, isTLS bool, buffered []byte, err error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		return "", false, nil, err
	}
	if first[0] != 0x16 { // not a TLS handshake record
		return "", false, first[:], nil
	}
	rc := &recordingConn{Conn: c}
	rc.rec.WriteByte(first[0])
	rc.pending = first[:]
	cfg := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		serverName = h.ServerName
		return nil, errHelloRead
	}}
	herr := tls.Server(rc, cfg).Handshake() //nolint:noctx // bounded by the read deadline above
	if !errors.Is(herr, errHelloRead) && serverName == "" {
		// Not a ClientHello we understand: choose by what we know.
		var ne net.Error
		if errors.As(herr, &ne) && ne.Timeout() {
			return "", true, nil, herr
		}
	}
	return serverName, true, rc.rec.Bytes(), nil
}

// recordingConn records what a TLS server reads and swallows what it
// writes (its alert must not reach the client).
type recordingConn struct {
	net.Conn
	rec     bytes.Buffer
	pending []byte
}

func (r *recordingConn) Read(b []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(b, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	n, err := r.Conn.Read(b)
	r.rec.Write(b[:n])
	return n, err
}

func (r *recordingConn) Write(b []byte) (int, error) { return len(b), nil }
