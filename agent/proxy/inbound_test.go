// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	wtestutil "github.com/weft-mesh/weft/test/testutil"
)

// inboundYAML has payments (S6: STRICT mTLS on 8080 with checkout's SAN,
// and a STRICT tcp listener on 9000) and ledger (PERMISSIVE on 8080).
const inboundYAML = `apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: payments, namespace: shop}
spec:
  podSelector: {matchLabels: {app: payments}}
  listeners:
    - portMapping: {port: 8080, protocol: http}
      tls:
        mode: STRICT
        certificate: {file: {certificateChain: DIR/SERVER.pem, privateKey: DIR/SERVER-key.pem}}
        validation:
          trust: {file: {certificateChain: DIR/ca.pem}}
          subjectAlternativeNames: {match: {exact: [checkout.shop.svc.cluster.local]}}
    - portMapping: {port: 9000, protocol: tcp}
      tls:
        mode: STRICT
        certificate: {file: {certificateChain: DIR/SERVER.pem, privateKey: DIR/SERVER-key.pem}}
  serviceDiscovery: {dns: {hostname: payments.shop.svc.cluster.local}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: ledger, namespace: shop}
spec:
  podSelector: {matchLabels: {app: ledger}}
  listeners:
    - portMapping: {port: 8080, protocol: http}
      tls:
        mode: PERMISSIVE
        certificate: {file: {certificateChain: DIR/SERVER.pem, privateKey: DIR/SERVER-key.pem}}
  serviceDiscovery: {dns: {hostname: ledger.shop.svc.cluster.local}}
`

const (
	paymentsSAN = "payments.shop.svc.cluster.local"
	paymentsID  = "mesh/demo/virtualNode/payments_shop"
	ledgerID    = "mesh/demo/virtualNode/ledger_shop"
)

type inboundWorld struct {
	dir      string
	ca       *testCA
	checkout *leaf
	intruder *leaf
	roots    *x509.CertPool
	h        *harness
	tunnel   string
}

// newInboundWorld serves payments and ledger behind a tunnel listener,
// with an echo backend on each pod's 8080 and an echo of bytes on
// payments' 9000.
func newInboundWorld(t *testing.T) *inboundWorld {
	t.Helper()
	iw := &inboundWorld{dir: t.TempDir(), ca: newTestCA(t, "mesh CA")}
	iw.checkout = iw.ca.issue(t, x509.ExtKeyUsageClientAuth, checkoutSAN)
	iw.intruder = iw.ca.issue(t, x509.ExtKeyUsageClientAuth, "intruder.shop.svc.cluster.local")
	iw.ca.issue(t, x509.ExtKeyUsageServerAuth, paymentsSAN).write(t, iw.dir, "payments")
	iw.ca.issue(t, x509.ExtKeyUsageServerAuth, "impostor.shop.svc.cluster.local").write(t, iw.dir, "impostor")
	if err := os.WriteFile(filepath.Join(iw.dir, "ca.pem"), iw.ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	iw.roots = x509.NewCertPool()
	iw.roots.AddCert(iw.ca.cert)
	w := buildWorld(t, "s0", iw.yaml(t, "payments"))
	iw.h = newHarness(t, w, Config{TunnelListen: "127.0.0.1:0"})
	iw.h.load(paymentsID, ledgerID)
	iw.h.backend("payments_shop", 8080, nil)
	iw.h.backend("ledger_shop", 8080, nil)
	iw.h.route("payments_shop", 9000, startEcho(t))
	iw.h.p.SetLocalAddresses(map[netip.Addr]string{
		w.endpoint["payments_shop"]: paymentsID,
		w.endpoint["ledger_shop"]:   ledgerID,
	})
	iw.tunnel = iw.h.p.TunnelAddr().String()
	return iw
}

// yaml writes the world's resources with payments serving the certificate
// named server.
func (iw *inboundWorld) yaml(t *testing.T, server string) string {
	t.Helper()
	file := filepath.Join(iw.dir, "inbound-"+server+".yaml")
	body := strings.ReplaceAll(strings.ReplaceAll(inboundYAML, "DIR", iw.dir), "SERVER", server)
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func (iw *inboundWorld) target(vn string, port uint16) string {
	return netip.AddrPortFrom(iw.h.w.endpoint[vn], port).String()
}

// startEcho starts a TCP server that echoes and returns its address.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// connect opens a CONNECT stream to target through addr; a refusal returns
// the status and body as the error.
func connect(t *testing.T, addr, target string) (net.Conn, error) {
	t.Helper()
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	t.Cleanup(tr.CloseIdleConnections)
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodConnect, "http://"+addr, pr)
	req.Host = target
	resp, err := tr.RoundTrip(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		cancel()
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	c := &clientStream{r: resp.Body, w: pw, cancel: cancel}
	t.Cleanup(func() { _ = c.Close() })
	return c, nil
}

type clientStream struct {
	r      io.ReadCloser
	w      *io.PipeWriter
	cancel context.CancelFunc
}

func (c *clientStream) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *clientStream) Write(b []byte) (int, error) { return c.w.Write(b) }
func (c *clientStream) CloseWrite() error           { return c.w.Close() }
func (c *clientStream) Close() error {
	_ = c.w.Close()
	_ = c.r.Close()
	c.cancel()
	return nil
}
func (c *clientStream) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *clientStream) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *clientStream) SetDeadline(time.Time) error      { return nil }
func (c *clientStream) SetReadDeadline(time.Time) error  { return nil }
func (c *clientStream) SetWriteDeadline(time.Time) error { return nil }

// get sends GET / over c (TLS with cert when tlsOn) and returns the
// response, keeping the connection open for more.
func (iw *inboundWorld) get(c net.Conn, br **bufio.Reader) (*http.Response, echo, error) {
	if *br == nil {
		*br = bufio.NewReader(c)
	}
	if _, err := io.WriteString(c, "GET /inbound HTTP/1.1\r\nHost: "+paymentsSAN+"\r\n\r\n"); err != nil {
		return nil, echo{}, err
	}
	resp, err := http.ReadResponse(*br, nil)
	if err != nil {
		return nil, echo{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, echo{}, err
	}
	var e echo
	if resp.StatusCode == http.StatusOK {
		_ = json.Unmarshal(b, &e)
	}
	return resp, e, nil
}

func (iw *inboundWorld) tlsClient(c net.Conn, cert *leaf, serverName string) *tls.Conn {
	cfg := &tls.Config{RootCAs: iw.roots, ServerName: serverName, NextProtos: []string{alpnHTTP11}, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{cert.pair}
	}
	return tls.Client(c, cfg)
}

func (iw *inboundWorld) rejected(reason string) float64 {
	return testutil.ToFloat64(iw.h.p.m.rejected.WithLabelValues(reason))
}

func (iw *inboundWorld) waitRejected(t *testing.T, reason string, want float64) {
	t.Helper()
	wtestutil.Eventually(t, 10*time.Second, func() error {
		if got := iw.rejected(reason); got != want {
			return fmt.Errorf("%s rejections: %v, want %v", reason, got, want)
		}
		return nil
	})
}

// TestInboundStrictMTLS: through the tunnel, payments' STRICT listener
// serves checkout's certificate, refuses plaintext and a client whose SAN
// is not checkout's, and the request reaches the pod (ORIGINAL_DST) with
// the ingress route table.
func TestInboundStrictMTLS(t *testing.T) {
	iw := newInboundWorld(t)
	target := iw.target("payments_shop", 8080)

	c, err := connect(t, iw.tunnel, target)
	if err != nil {
		t.Fatal(err)
	}
	tc := iw.tlsClient(c, iw.checkout, paymentsSAN)
	var br *bufio.Reader
	for i := range 3 { // one connection, keep-alive
		resp, e, err := iw.get(tc, &br)
		if err != nil {
			t.Fatalf("request %d with checkout's certificate: %v", i, err)
		}
		if resp.StatusCode != http.StatusOK || e.Name != "payments_shop" || e.URI != "/inbound" || e.Host != paymentsSAN {
			t.Errorf("request %d: %s from %q uri %q host %q", i, resp.Status, e.Name, e.URI, e.Host)
		}
	}
	served := testutil.ToFloat64(iw.h.p.m.requests.WithLabelValues(paymentsID, "rds_ingress_http_8080", "ingress", "cds_ingress_demo_payments_shop_http_8080", "2xx"))
	if served != 3 {
		t.Errorf("payments' inbound listener counted %v requests, want 3", served)
	}

	// Plaintext: no chain of the STRICT listener.
	c, err = connect(t, iw.tunnel, target)
	if err != nil {
		t.Fatal(err)
	}
	var pbr *bufio.Reader
	if _, _, err := iw.get(c, &pbr); err == nil {
		t.Error("plaintext to a STRICT inbound listener was served")
	}
	iw.waitRejected(t, rejectNoChain, 1)

	// A client certificate of the mesh CA without checkout's SAN.
	c, err = connect(t, iw.tunnel, target)
	if err != nil {
		t.Fatal(err)
	}
	var ibr *bufio.Reader
	if _, _, err := iw.get(iw.tlsClient(c, iw.intruder, paymentsSAN), &ibr); err == nil {
		t.Error("a client certificate without checkout's SAN was served")
	} else {
		t.Logf("intruder refused: %v", err)
	}
	iw.waitRejected(t, rejectTLSHandshake, 1)
}

// TestInboundPermissive: ledger's PERMISSIVE listener takes plaintext and
// TLS on the same port, each through its own chain.
func TestInboundPermissive(t *testing.T) {
	iw := newInboundWorld(t)
	target := iw.target("ledger_shop", 8080)
	for _, tlsOn := range []bool{false, true} {
		c, err := connect(t, iw.tunnel, target)
		if err != nil {
			t.Fatal(err)
		}
		if tlsOn {
			c = iw.tlsClient(c, nil, paymentsSAN)
		}
		var br *bufio.Reader
		resp, e, err := iw.get(c, &br)
		if err != nil || resp.StatusCode != http.StatusOK || e.Name != "ledger_shop" {
			t.Errorf("tls %v: %v, %+v", tlsOn, err, e)
		}
	}
	if got := iw.rejected(rejectNoChain) + iw.rejected(rejectTLSHandshake); got != 0 {
		t.Errorf("%v rejections", got)
	}
}

// TestInboundTCP: a STRICT tcp listener terminates TLS and proxies the
// bytes to the pod.
func TestInboundTCP(t *testing.T) {
	iw := newInboundWorld(t)
	c, err := connect(t, iw.tunnel, iw.target("payments_shop", 9000))
	if err != nil {
		t.Fatal(err)
	}
	tc := iw.tlsClient(c, nil, paymentsSAN)
	for _, msg := range []string{"ping", "pong"} {
		if _, err := io.WriteString(tc, msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q: %q, %v", msg, buf, err)
		}
	}
}

// TestInboundTargets: what the tunnel refuses before any byte flows, with
// the reason in the answer and unknown_target counted.
func TestInboundTargets(t *testing.T) {
	iw := newInboundWorld(t)
	for _, tc := range []struct{ target, want string }{
		{"10.99.0.1:8080", "404 Not Found: 10.99.0.1 is not a workload of this node"},
		{iw.target("payments_shop", 7000), "has no listener on port 7000"},
		{"payments:8080", "want <ip>:<port>"},
	} {
		_, err := connect(t, iw.tunnel, tc.target)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CONNECT %s: %v, want %q", tc.target, err, tc.want)
		}
	}
	if got := iw.rejected(rejectUnknownTarget); got != 3 {
		t.Errorf("unknown_target %v, want 3", got)
	}
	// Anything but CONNECT.
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	cl := &http.Client{Transport: &http.Transport{Protocols: &protos}}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+iw.tunnel+"/", nil)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET on the tunnel: %s", resp.Status)
	}
	// A workload whose node has no configuration yet.
	iw.h.p.SetLocalAddresses(map[netip.Addr]string{netip.MustParseAddr("10.99.0.2"): "mesh/demo/virtualNode/later_shop"})
	if _, err := connect(t, iw.tunnel, "10.99.0.2:8080"); err == nil || !strings.Contains(err.Error(), "has no inbound listener here") {
		t.Errorf("a workload without configuration: %v", err)
	}
}

// TestInboundDrainOnChange: when payments' inbound listener changes (a new
// server certificate), its idle HTTP connections are closed and the next
// connection gets the new certificate; an update that leaves the listener
// as it was closes nothing.
func TestInboundDrainOnChange(t *testing.T) {
	iw := newInboundWorld(t)
	c, err := connect(t, iw.tunnel, iw.target("payments_shop", 8080))
	if err != nil {
		t.Fatal(err)
	}
	tc := iw.tlsClient(c, iw.checkout, paymentsSAN)
	var br *bufio.Reader
	if _, _, err := iw.get(tc, &br); err != nil {
		t.Fatal(err)
	}
	// The same listener again: the connection stays.
	iw.h.load(paymentsID)
	if _, _, err := iw.get(tc, &br); err != nil {
		t.Fatalf("after an update that kept the listener: %v", err)
	}
	// A spare connection: TLS done, no request yet.
	c2, err := connect(t, iw.tunnel, iw.target("payments_shop", 8080))
	if err != nil {
		t.Fatal(err)
	}
	spare := iw.tlsClient(c2, iw.checkout, paymentsSAN)
	if err := spare.Handshake(); err != nil {
		t.Fatal(err)
	}
	// A new certificate: the idle connection and the spare are closed.
	w2 := buildWorld(t, "s0", iw.yaml(t, "impostor"))
	if err := iw.h.p.Update(paymentsID, w2.resources(t, paymentsID)); err != nil {
		t.Fatal(err)
	}
	if err := eofWithin(br, 5*time.Second); !errors.Is(err, io.EOF) {
		t.Errorf("the idle connection after the listener changed: %v, want EOF", err)
	}
	if err := eofWithin(bufio.NewReader(spare), 5*time.Second); !errors.Is(err, io.EOF) {
		t.Errorf("the spare connection after the listener changed: %v, want EOF", err)
	}
	c, err = connect(t, iw.tunnel, iw.target("payments_shop", 8080))
	if err != nil {
		t.Fatal(err)
	}
	tc = iw.tlsClient(c, iw.checkout, paymentsSAN)
	if err := tc.Handshake(); err == nil || !strings.Contains(err.Error(), "impostor") {
		t.Errorf("a new connection verifying payments' SAN: %v, want the impostor certificate refused", err)
	}
}

// eofWithin reads a byte from r and returns the error, or a timeout error
// after d (the reader is left blocked).
func eofWithin(r *bufio.Reader, d time.Duration) error {
	ch := make(chan error, 1)
	go func() {
		_, err := r.ReadByte()
		ch <- err
	}()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		return fmt.Errorf("still open after %v", d)
	}
}

// TestInboundNotServedWithoutTunnel: without a tunnel listener the inbound
// listener is only kept for /config_dump.
func TestInboundNotServedWithoutTunnel(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "mesh CA")
	ca.issue(t, x509.ExtKeyUsageServerAuth, paymentsSAN).write(t, dir, "payments")
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	iw := &inboundWorld{dir: dir}
	h := newHarness(t, buildWorld(t, "s0", iw.yaml(t, "payments")), Config{})
	h.load(paymentsID)
	nc := h.p.state.Load().nodes[paymentsID]
	if nc.inbound != nil || len(nc.ignored) != 1 || nc.ignored[0] != "lds_ingress_0.0.0.0_15000" || h.p.TunnelAddr() != nil {
		t.Errorf("inbound %v, not served %v, tunnel %v", nc.inbound, nc.ignored, h.p.TunnelAddr())
	}
}

// TestStreamConnDeadlines: a read deadline expires with a timeout and can
// be reset, without losing what arrives later (the HTTP/1 server and the
// ClientHello inspection rely on it).
func TestStreamConnDeadlines(t *testing.T) {
	pr, pw := io.Pipe()
	c := newStreamConn(pr, nil, nil, &net.TCPAddr{}, &net.TCPAddr{})
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	buf := make([]byte, 8)
	_, err := c.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read with a past deadline: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	go func() { _, _ = pw.Write([]byte("hello")); _ = pw.Close() }()
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("after the reset: %q, %v", buf[:n], err)
	}
	if _, err := c.Read(buf); !errors.Is(err, io.EOF) {
		t.Errorf("at the end: %v", err)
	}
	_ = c.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("write past the deadline: %v", err)
	}
	_ = c.Close()
	if _, err := c.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
}
