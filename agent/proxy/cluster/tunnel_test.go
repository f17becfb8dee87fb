// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// startTunnelServer serves h2c CONNECT streams: a stream to a known target
// is echoed in upper case, anything else is refused with 404.
func startTunnelServer(t *testing.T, targets map[string]bool) (netip.AddrPort, chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 16)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Method + " " + r.Host
		if r.Method != http.MethodConnect || !targets[r.Host] {
			http.Error(w, "no such target", http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		buf := make([]byte, 1024)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				_, _ = w.Write([]byte(strings.ToUpper(string(buf[:n]))))
				_ = rc.Flush()
			}
			if err != nil {
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return netip.MustParseAddrPort(ln.Addr().String()), seen
}

func TestTunnelDial(t *testing.T) {
	target := netip.MustParseAddrPort("10.9.0.7:8080")
	addr, seen := startTunnelServer(t, map[string]bool{target.String(): true})
	tn := newTunnels(nil, 0)
	defer tn.close()
	ctx := context.Background()

	c, err := tn.dial(ctx, "caller", tunnelRef{addr: addr}, target, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got != "CONNECT "+target.String() {
		t.Errorf("server saw %q", got)
	}
	if c.RemoteAddr().String() != target.String() {
		t.Errorf("remote address %v, want the target", c.RemoteAddr())
	}
	for _, msg := range []string{"hello", "world"} {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != strings.ToUpper(msg) {
			t.Fatalf("echo %q: %q, %v", msg, buf, err)
		}
	}
	// Half-close: the server sees EOF and ends the stream.
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Errorf("after half-close: %q, %v", rest, err)
	}
	_ = c.Close()
	_ = c.Close()

	// Refusals are connect failures with the server's reason.
	_, err = tn.dial(ctx, "caller", tunnelRef{addr: addr}, netip.MustParseAddrPort("10.9.0.8:8080"), time.Second)
	if !errors.Is(err, ErrConnectFailure) || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "no such target") {
		t.Errorf("refused target: %v", err)
	}
	// Nothing listening.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := netip.MustParseAddrPort(ln.Addr().String())
	_ = ln.Close()
	if _, err := tn.dial(ctx, "caller", tunnelRef{addr: dead}, target, time.Second); !errors.Is(err, ErrConnectFailure) {
		t.Errorf("dead tunnel: %v", err)
	}
}

func TestEndpointTunnelMetadata(t *testing.T) {
	// compile reads the tunnel from the endpoint metadata; a bad one is an
	// error naming it.
	var errs []string
	bad := func(f string, _ ...any) { errs = append(errs, f) }
	for _, tc := range []struct {
		md   map[string]any
		want string
		bad  bool
	}{
		{nil, "", false},
		{map[string]any{"node": "node-b", "tunnel": "10.0.0.2:15008"}, "10.0.0.2:15008", false},
		{map[string]any{"tunnel": "nope"}, "", true},
		{map[string]any{"tunnel": "10.0.0.2:0"}, "", true},
	} {
		errs = nil
		got := endpointTunnel(lbEndpointWithMetadata(t, tc.md), bad).addr
		if (got.IsValid() && got.String() != tc.want) || (!got.IsValid() && tc.want != "") || (len(errs) > 0) != tc.bad {
			t.Errorf("metadata %v: tunnel %v, errors %v", tc.md, got, errs)
		}
	}
}

func lbEndpointWithMetadata(t *testing.T, md map[string]any) *endpointv3.LbEndpoint {
	t.Helper()
	lbe := &endpointv3.LbEndpoint{}
	if md != nil {
		s, err := structpb.NewStruct(md)
		if err != nil {
			t.Fatal(err)
		}
		lbe.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{tunnelMetadataKey: s}}
	}
	return lbe
}

// TestTunnelOnOwnNode: a proxy dials the pods of its own node directly,
// except those whose listener has App Mesh TLS (only the inbound side
// speaks it); other nodes' pods and a proxy without a node keep the
// tunnel.
func TestTunnelOnOwnNode(t *testing.T) {
	addr := netip.MustParseAddrPort("10.0.0.2:15008")
	plain := tunnelRef{addr: addr, node: "node-b"}
	withTLS := tunnelRef{addr: addr, node: "node-b", inboundTLS: true}
	for _, tc := range []struct {
		ref   tunnelRef
		local string
		want  tunnelRef
	}{
		{plain, "node-b", tunnelRef{}},
		{plain, "node-a", plain},
		{plain, "", plain},
		{withTLS, "node-b", withTLS},
		{withTLS, "node-a", withTLS},
		{tunnelRef{}, "node-b", tunnelRef{}},
	} {
		if got := tc.ref.on(tc.local); got != tc.want {
			t.Errorf("%+v on %q = %+v, want %+v", tc.ref, tc.local, got, tc.want)
		}
	}
}

// TestTunnelConnDeadline: a deadline in the past ends a blocked read at
// once (how the HTTP/1.1 client cancels an exchange), a future one when it
// passes, and the zero time disarms it.
func TestTunnelConnDeadline(t *testing.T) {
	newConn := func() *tunnelConn {
		br, _ := io.Pipe()
		_, pw := io.Pipe()
		return &tunnelConn{body: br, pw: pw, cancel: func() {}}
	}
	readErr := func(c *tunnelConn) chan error {
		ch := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 1))
			ch <- err
		}()
		return ch
	}
	c := newConn()
	ch := readErr(c)
	if err := c.SetDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ch:
		if err == nil {
			t.Error("read after a past deadline: no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a past deadline did not end the blocked read")
	}

	c = newConn()
	ch = readErr(c)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	select {
	case err := <-ch:
		if err == nil {
			t.Error("read after a passed deadline: no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a future deadline did not end the blocked read when it passed")
	}

	c = newConn()
	ch = readErr(c)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_ = c.SetReadDeadline(time.Time{})
	select {
	case err := <-ch:
		t.Fatalf("a disarmed deadline ended the read: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	_ = c.Close()
}
