// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// host is one upstream endpoint of a cluster. Its identity is its key
// ("ip:port", or "hostname:port" for the single LOGICAL_DNS host); its
// health, ejection state and pool survive updates that keep the key. Fields
// below mu are guarded by the cluster's mu.
type host struct {
	key  string
	addr atomic.Pointer[hostAddr] // changes only for LOGICAL_DNS

	// guarded by Cluster.mu
	weight     uint32
	hcPort     uint16
	edsHealthy bool
	hcHealthy  bool
	hcOK       int // consecutive passed checks while unhealthy
	hcFail     int // consecutive failed checks while healthy
	ejected    bool
	ejectedAt  time.Time
	ejections  int // the ejection-time multiplier
	cons5xx    int
	consGw     int
	active     int64 // leases not done
	cw         int64 // smooth weighted round robin
	lastUsed   time.Time
	pool       *pool
	tunnel     tunnelRef // reached through this tunnel listener (none: directly)
}

// hostAddr is a host's address with its "ip:port" text, rendered once
// rather than on every request (Lease.Host, URL.Host, dial).
type hostAddr struct {
	ap   netip.AddrPort
	text string
}

func newHost(key string, addr netip.AddrPort) *host {
	h := &host{key: key, weight: 1, edsHealthy: true, hcHealthy: true}
	h.setAddress(addr)
	return h
}

// setAddress changes where connections go (LOGICAL_DNS re-resolution).
func (h *host) setAddress(addr netip.AddrPort) {
	h.addr.Store(&hostAddr{ap: addr, text: addr.String()})
}

// address is where connections go now.
func (h *host) address() netip.AddrPort { return h.addr.Load().ap }

// addressText is address() as "ip:port".
func (h *host) addressText() string { return h.addr.Load().text }

// usable reports whether the load balancer may pick the host outside panic
// mode.
func (h *host) usable() bool { return h.edsHealthy && h.hcHealthy && !h.ejected }

// state is the host's label in weft_proxy_upstream_hosts.
func (h *host) state() string {
	switch {
	case h.ejected:
		return stateEjected
	case !h.edsHealthy || !h.hcHealthy:
		return stateUnhealthy
	}
	return stateHealthy
}

// pool is a host's connections: an http.Transport speaking HTTP/1.1 or
// HTTP/2 (h2c, or h2 over TLS), plus raw dials for tcp_proxy. A pool
// replaced by an update (or whose host was removed) is retired: it closes
// its idle connections once its last lease is done.
type pool struct {
	key     string
	c       *Cluster
	h       *host
	timeout time.Duration
	mark    uint32
	tls     *tls.Config
	tr      *http.Transport
	h1      *h1Pool // HTTP/1.1 requests without a body; nil for HTTP/2
	scheme  string
	tunnel  tunnelRef // the host's tunnel listener, when it has one

	active  atomic.Int64
	retired atomic.Bool
}

func newPool(c *Cluster, h *host, s *spec) *pool {
	p := &pool{key: s.poolKey(), c: c, h: h, timeout: s.connectTimeout, mark: s.mark, scheme: "http", tunnel: h.tunnel}
	if s.tls != nil {
		p.tls = s.tls.config.Clone()
		p.scheme = "https"
	}
	if s.http2 {
		p.tr = newTransport(true, s.idleTimeout, s.limits.maxConnections, p.dial, p.tls)
		return p
	}
	// HTTP/1.1: requests without a body go through h1, the others through
	// the Transport, whose connections count against the same
	// max_connections.
	p.h1 = newH1Pool(p.dialTLS, s.idleTimeout, s.limits.maxConnections)
	p.tr = newTransport(false, s.idleTimeout, s.limits.maxConnections, func(ctx context.Context) (net.Conn, error) {
		return p.h1.dialShared(ctx, p.dial)
	}, p.tls)
	p.h1.evict = p.tr.CloseIdleConnections
	return p
}

// newTransport builds an http.Transport that dials with dial (plain TCP) and,
// when tlsCfg is set, wraps the connection in TLS itself. http2 selects
// HTTP/2 with prior knowledge (h2c over plain TCP).
func newTransport(http2 bool, idle time.Duration, maxConns int64, dial func(context.Context) (net.Conn, error), tlsCfg *tls.Config) *http.Transport {
	tr := &http.Transport{
		Proxy:              nil,
		DisableCompression: true, // a proxy must not add Accept-Encoding
		IdleConnTimeout:    idle,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dial(ctx)
		},
		MaxIdleConnsPerHost: 1024,
	}
	switch {
	case http2:
		// One connection carries the host's streams, as in Envoy; the
		// transport opens another one only when the server's stream limit
		// is reached. Without the limit, concurrent first requests would
		// each dial.
		tr.MaxConnsPerHost = 1
	case !unlimited(maxConns) && maxConns > 0:
		tr.MaxConnsPerHost = int(maxConns)
		tr.MaxIdleConnsPerHost = int(maxConns)
	}
	if tlsCfg != nil {
		tr.DialTLSContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, err := dial(ctx)
			if err != nil {
				return nil, err
			}
			return handshake(ctx, conn, tlsCfg)
		}
	}
	var protos http.Protocols
	switch {
	case http2 && tlsCfg != nil:
		protos.SetHTTP2(true)
	case http2:
		protos.SetUnencryptedHTTP2(true)
	default:
		protos.SetHTTP1(true)
	}
	tr.Protocols = &protos
	return tr
}

// dial opens a counted TCP connection to the host within the cluster's
// connect timeout.
func (p *pool) dial(ctx context.Context) (net.Conn, error) {
	var conn net.Conn
	var err error
	if p.tunnel.addr.IsValid() {
		conn, err = p.c.m.tunnels.dial(ctx, p.c.node, p.tunnel, p.h.address(), p.timeout)
	} else {
		d := newDialer(p.timeout, p.mark)
		conn, err = d.DialContext(ctx, "tcp", p.h.addressText())
	}
	if err != nil {
		if errors.Is(err, ErrConnectFailure) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrConnectFailure, err)
	}
	p.c.conns.Add(1)
	return &countedConn{Conn: conn, release: func() { p.c.conns.Add(-1) }}, nil
}

// dialTLS is dial plus the cluster's TLS, for tcp_proxy.
func (p *pool) dialTLS(ctx context.Context) (net.Conn, error) {
	conn, err := p.dial(ctx)
	if err != nil || p.tls == nil {
		return conn, err
	}
	return handshake(ctx, conn, p.tls)
}

// handshake runs the client TLS handshake on conn; a failure is a connect
// failure, as in Envoy.
func handshake(ctx context.Context, conn net.Conn, cfg *tls.Config) (net.Conn, error) {
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: tls handshake: %w", ErrConnectFailure, err)
	}
	return tc, nil
}

// RoundTrip sends req to the pool's host: the URL's scheme and host are
// replaced (the Host header stays as the request has it), and the request
// goes out without headers of net/http's own (no User-Agent or
// Accept-Encoding the caller did not send).
func (p *pool) RoundTrip(req *http.Request) (*http.Response, error) {
	addr := p.h.addressText()
	_, ua := req.Header["User-Agent"]
	if ua && req.URL.Scheme == p.scheme && req.URL.Host == addr && req.Host != "" && req.RequestURI == "" {
		// The request is already what goes out (the proxy's case): no
		// copy of it.
		return p.roundTrip(req)
	}
	r := *req
	u := *req.URL
	u.Scheme, u.Host = p.scheme, addr
	r.URL = &u
	if r.Host == "" {
		r.Host = req.URL.Host
	}
	r.RequestURI = ""
	if !ua {
		// net/http would add its own User-Agent; a proxy forwards what it
		// got. An empty value makes the transport send none.
		r.Header = req.Header.Clone()
		if r.Header == nil {
			r.Header = http.Header{}
		}
		r.Header["User-Agent"] = []string{""}
	}
	return p.roundTrip(&r)
}

// roundTrip sends a request whose URL and headers are final.
func (p *pool) roundTrip(req *http.Request) (*http.Response, error) {
	if p.h1 != nil && h1Eligible(req) {
		return p.h1.roundTrip(req)
	}
	return p.tr.RoundTrip(req)
}

func (p *pool) acquire() { p.active.Add(1) }

func (p *pool) release() {
	if p.active.Add(-1) == 0 && p.retired.Load() {
		p.closeIdle()
	}
}

func (p *pool) closeIdle() {
	p.tr.CloseIdleConnections()
	if p.h1 != nil {
		p.h1.closeIdle()
	}
}

// retire closes the idle connections now and the others as their leases
// finish. Connections in use are never cut.
func (p *pool) retire() {
	p.retired.Store(true)
	p.closeIdle()
}

// countedConn releases its cluster connection slot once, on Close.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
