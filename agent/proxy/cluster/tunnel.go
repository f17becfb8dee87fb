// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
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
// translate.TunnelMetadataKey): {"node": <node id>, "tunnel": "ip:port"}.
const tunnelMetadataKey = "weft.tunnel"

// endpointTunnel reads an endpoint's tunnel listener from its metadata;
// invalid when it has none.
func endpointTunnel(lbe *endpointv3.LbEndpoint, bad func(string, ...any)) netip.AddrPort {
	md := lbe.GetMetadata().GetFilterMetadata()[tunnelMetadataKey]
	if md == nil {
		return netip.AddrPort{}
	}
	s := md.GetFields()["tunnel"].GetStringValue()
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		bad("endpoint metadata %s: tunnel %q: want ip:port", tunnelMetadataKey, s)
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// tunnels opens streams to other nodes' proxies: one HTTP/2 CONNECT stream
// per upstream connection, multiplexed on a shared h2c connection per
// tunnel listener (net/http's HTTP/2 transport opens another one when the
// server's stream limit is reached). What goes through a stream is what
// would have gone to the pod: plaintext or the cluster's own TLS (App Mesh
// client policy), end to end with the destination's inbound listener.
//
// The outer connection is plaintext h2c: there is no mesh CA or SPIFFE
// identity yet (docs/proxy.md, "Limits").
type tunnels struct {
	tr   *http.Transport
	once sync.Once
}

func newTunnels() *tunnels {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Proxy:              nil,
		DisableCompression: true,
		Protocols:          &protos,
		IdleConnTimeout:    time.Hour,
		// Each dial is bounded by the context of the CONNECT that needs it,
		// which carries the cluster's connect timeout.
		DialContext: (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		HTTP2: &http.HTTP2Config{
			// A dead peer is noticed without waiting for TCP.
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     10 * time.Second,
		},
	}
	return &tunnels{tr: tr}
}

// close closes the idle tunnel connections.
func (t *tunnels) close() { t.once.Do(t.tr.CloseIdleConnections) }

// dial opens a stream through the tunnel listener to target, within
// timeout (the cluster's connect timeout) and ctx. Failures wrap
// ErrConnectFailure.
func (t *tunnels) dial(ctx context.Context, tunnel, target netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	// The stream outlives ctx (a dial context); Close ends it.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(sctx, http.MethodConnect, "http://"+tunnel.String(), pr)
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
		resp, err := t.tr.RoundTrip(req)
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
// request stream (END_STREAM); Close resets what is left. Deadlines are
// not supported (nothing on the upstream side sets them): they return an
// error.
type tunnelConn struct {
	body   io.ReadCloser
	pw     *io.PipeWriter
	cancel context.CancelFunc
	once   sync.Once

	remote, local net.Addr
}

var errTunnelDeadline = errors.New("tunnel stream: deadlines are not supported")

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
func (c *tunnelConn) RemoteAddr() net.Addr             { return c.remote }
func (c *tunnelConn) SetDeadline(time.Time) error      { return errTunnelDeadline }
func (c *tunnelConn) SetReadDeadline(time.Time) error  { return errTunnelDeadline }
func (c *tunnelConn) SetWriteDeadline(time.Time) error { return errTunnelDeadline }
