// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// tunnelMetadataKey is the LbEndpoint filter_metadata namespace that names
// the tunnel listener an endpoint is reached through (the translator's
// translate.TunnelMetadataKey): {"node": <node id>, "tunnel": "ip:port",
// "inbound_tls": true when the endpoint's listener has App Mesh TLS}.
const tunnelMetadataKey = "weft.tunnel"

// tunnelRef is where a host is reached through: a node proxy's tunnel
// listener and the node's id (whose SPIFFE identity the listener must
// present). The zero value means none.
type tunnelRef struct {
	addr netip.AddrPort
	node string
	// inboundTLS: the endpoint's listener has App Mesh TLS, which only its
	// node proxy's inbound side speaks (not the pod): the tunnel is taken
	// on that node too.
	inboundTLS bool
}

// on tells which tunnel a proxy on node local takes to the host: none
// (the pod directly) when the host is on local itself and its listener
// needs no inbound TLS; else t.
func (t tunnelRef) on(local string) tunnelRef {
	if local != "" && t.node == local && !t.inboundTLS {
		return tunnelRef{}
	}
	return t
}

// endpointTunnel reads an endpoint's tunnel listener from its metadata;
// the zero tunnelRef when it has none.
func endpointTunnel(lbe *endpointv3.LbEndpoint, bad func(string, ...any)) tunnelRef {
	md := lbe.GetMetadata().GetFilterMetadata()[tunnelMetadataKey]
	if md == nil {
		return tunnelRef{}
	}
	s := md.GetFields()["tunnel"].GetStringValue()
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		bad("endpoint metadata %s: tunnel %q: want ip:port", tunnelMetadataKey, s)
		return tunnelRef{}
	}
	return tunnelRef{
		addr:       netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()),
		node:       md.GetFields()["node"].GetStringValue(),
		inboundTLS: md.GetFields()["inbound_tls"].GetBoolValue(),
	}
}

// TunnelIdentity gives the tunnels their mutual TLS: the mesh CA's
// certificates of the callers (agent/proxy's Identities implements it).
type TunnelIdentity interface {
	// ClientCertificate is the certificate a tunnel presents for the
	// callers of node id (a virtual node or gateway the proxy serves).
	ClientCertificate(nodeID string) (*tls.Certificate, error)
	// Roots are the mesh CA certificates.
	Roots() *x509.CertPool
	// NodeSPIFFEID is the identity the tunnel listener of node presents.
	NodeSPIFFEID(node string) string
}

// tunnels opens streams to other nodes' proxies: one HTTP/2 CONNECT stream
// per upstream connection, multiplexed on a shared connection per tunnel
// listener (and, with mutual TLS, per caller identity; net/http's HTTP/2
// transport opens another one when the server's stream limit is reached).
// What goes through a stream is what would have gone to the pod: plaintext
// or the cluster's own TLS (App Mesh client policy), end to end with the
// destination's inbound listener.
//
// With a TunnelIdentity the connection is TLS 1.3: the caller presents the
// certificate of the virtual node it proxies for, and the listener must
// present its node's SPIFFE identity from the mesh CA. Without one it is
// plaintext h2c.
type tunnels struct {
	ident TunnelIdentity // nil: h2c
	mark  uint32         // SO_MARK of the tunnel sockets (Options.Mark)

	mu     sync.Mutex
	trs    map[tunnelKey]*http.Transport
	closed bool
}

// tunnelKey names a transport: h2c has one for every tunnel; mutual TLS
// one per caller identity and tunnel listener (the node pair and identity
// pair of product.md §2).
type tunnelKey struct {
	caller string
	tunnel tunnelRef
}

func newTunnels(ident TunnelIdentity, mark uint32) *tunnels {
	return &tunnels{ident: ident, mark: mark, trs: map[tunnelKey]*http.Transport{}}
}

// transport returns the transport of caller's streams.
func (t *tunnels) transport(caller string, tunnel tunnelRef) (*http.Transport, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	var key tunnelKey
	if t.ident != nil {
		key = tunnelKey{caller: caller, tunnel: tunnel}
	}
	if tr := t.trs[key]; tr != nil {
		return tr, nil
	}
	var protos http.Protocols
	d := newDialer(0, t.mark)
	d.KeepAlive = 30 * time.Second
	tr := &http.Transport{
		Proxy:              nil,
		DisableCompression: true,
		IdleConnTimeout:    time.Hour,
		// Each dial is bounded by the context of the CONNECT that needs it,
		// which carries the cluster's connect timeout.
		DialContext: d.DialContext,
		HTTP2: &http.HTTP2Config{
			// A dead peer is noticed without waiting for TCP.
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     10 * time.Second,
		},
	}
	if t.ident == nil {
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP2(true)
		tr.TLSClientConfig = &tls.Config{
			MinVersion: tls.VersionTLS13,
			// The server is verified in VerifyConnection: its chain to the
			// mesh CA and its node's SPIFFE id, not a host name.
			InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection against the mesh CA and the node's SPIFFE id
			VerifyConnection: func(cs tls.ConnectionState) error {
				return t.verifyServer(cs, tunnel.node)
			},
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return t.ident.ClientCertificate(caller)
			},
		}
	}
	tr.Protocols = &protos
	t.trs[key] = tr
	return tr, nil
}

// verifyServer checks a tunnel listener's certificate: issued by the mesh
// CA, for the SPIFFE id of the node the endpoint metadata names.
func (t *tunnels) verifyServer(cs tls.ConnectionState, node string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tunnel listener presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: t.ident.Roots(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("tunnel listener certificate: %w", err)
	}
	want := t.ident.NodeSPIFFEID(node)
	for _, u := range leaf.URIs {
		if u.String() == want {
			return nil
		}
	}
	return fmt.Errorf("tunnel listener certificate: identity %v, want %s", leaf.URIs, want)
}

// close closes the idle tunnel connections; further dials fail.
func (t *tunnels) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for _, tr := range t.trs {
		tr.CloseIdleConnections()
	}
}

// dial opens a stream for caller (the cluster's node id) through the
// tunnel listener to target, within timeout (the cluster's connect timeout)
// and ctx. Failures wrap ErrConnectFailure.
func (t *tunnels) dial(ctx context.Context, caller string, tn tunnelRef, target netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	tunnel := tn.addr
	tr, err := t.transport(caller, tn)
	if err != nil {
		return nil, fmt.Errorf("%w: tunnel %s: %w", ErrConnectFailure, tunnel, err)
	}
	// The stream outlives ctx (a dial context); Close ends it.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	pr, pw := io.Pipe()
	scheme := "http://"
	if t.ident != nil {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(sctx, http.MethodConnect, scheme+tunnel.String(), pr)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: tunnel %s: %w", ErrConnectFailure, tunnel, err)
	}
	req.Host = target.String()
	type result struct {
		resp *http.Response
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		ch <- result{resp, err}
	}()
	var timer <-chan time.Time
	if timeout > 0 {
		tm := time.NewTimer(timeout)
		defer tm.Stop()
		timer = tm.C
	}
	fail := func(err error) (net.Conn, error) {
		cancel()
		_ = pw.Close()
		return nil, fmt.Errorf("%w: tunnel %s: CONNECT %s: %w", ErrConnectFailure, tunnel, target, err)
	}
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		cancel()
		if r = <-ch; r.resp != nil {
			_ = r.resp.Body.Close()
		}
		return fail(ctx.Err())
	case <-timer:
		cancel()
		if r = <-ch; r.resp != nil {
			_ = r.resp.Body.Close()
		}
		return fail(errors.New("connect timeout"))
	}
	if r.err != nil {
		return fail(r.err)
	}
	if r.resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(r.resp.Body, 256))
		_ = r.resp.Body.Close()
		return fail(fmt.Errorf("%s: %s", r.resp.Status, strings.TrimSpace(string(b))))
	}
	return &tunnelConn{body: r.resp.Body, pw: pw, cancel: cancel, remote: net.TCPAddrFromAddrPort(target), local: net.TCPAddrFromAddrPort(tunnel)}, nil
}

// tunnelConn is one CONNECT stream as a net.Conn. CloseWrite ends the
// request stream (END_STREAM); Close resets what is left. A deadline ends
// the stream when it passes (Close): what it interrupts cannot go on, as
// with a cancelled request; the upstream HTTP/1.1 client cancels an
// exchange this way (a deadline in the past), and closes the connection
// after it anyway. Setting the zero time, or a later deadline before the
// earlier one passed, disarms it.
type tunnelConn struct {
	body   io.ReadCloser
	pw     *io.PipeWriter
	cancel context.CancelFunc
	once   sync.Once

	dmu    sync.Mutex
	rd, wd *time.Timer // the read and write deadlines' timers

	remote, local net.Addr
}

func (c *tunnelConn) Read(b []byte) (int, error)  { return c.body.Read(b) }
func (c *tunnelConn) Write(b []byte) (int, error) { return c.pw.Write(b) }

// CloseWrite half-closes the stream.
func (c *tunnelConn) CloseWrite() error { return c.pw.Close() }

func (c *tunnelConn) Close() error {
	c.once.Do(func() {
		_ = c.pw.CloseWithError(net.ErrClosed)
		_ = c.body.Close()
		c.cancel()
	})
	return nil
}

// LocalAddr is the tunnel listener the stream goes through.
func (c *tunnelConn) LocalAddr() net.Addr { return c.local }

// RemoteAddr is the CONNECT target (the pod).
func (c *tunnelConn) RemoteAddr() net.Addr { return c.remote }

func (c *tunnelConn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *tunnelConn) SetReadDeadline(t time.Time) error  { c.deadline(&c.rd, t); return nil }
func (c *tunnelConn) SetWriteDeadline(t time.Time) error { c.deadline(&c.wd, t); return nil }

// deadline arms *timer to close the stream at t (at once when t passed);
// the zero t disarms it.
func (c *tunnelConn) deadline(timer **time.Timer, t time.Time) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if *timer != nil {
		(*timer).Stop()
		*timer = nil
	}
	if t.IsZero() {
		return
	}
	d := time.Until(t)
	if d <= 0 {
		_ = c.Close()
		return
	}
	*timer = time.AfterFunc(d, func() { _ = c.Close() })
}
