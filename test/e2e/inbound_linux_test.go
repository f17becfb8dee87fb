// SPDX-License-Identifier: Apache-2.0

//go:build e2e && linux

package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/test/meshbed"
	"github.com/weft-mesh/weft/test/netsim"
	"github.com/weft-mesh/weft/test/testutil"
)

// Names of S6 (testdata/s6.yaml).
const (
	paymentsURL  = "http://payments.shop.svc.cluster.local:8080/"
	paymentsID   = "mesh/demo/virtualNode/payments_shop"
	checkoutID   = "mesh/demo/virtualNode/checkout_shop"
	paymentsSAN  = "payments.shop.svc.cluster.local"
	checkoutSAN  = "checkout.shop.svc.cluster.local"
	paymentsPort = 8080
	// trustDomain is the controller's default SPIFFE trust domain.
	trustDomain = "weft.mesh"
)

// s6 is the running mesh of TestInboundMTLS.
type s6 struct {
	*meshbed.Bed
	certs    string
	checkout *netsim.Workload
	payments *netsim.Workload
}

// TestInboundMTLS runs appmesh-model.md §16 S6 on simulated nodes: checkout
// on node-a calls payments on node-b, whose listener is STRICT mTLS with
// file certificates the test generated. Node-a's proxy reaches payments
// through node-b's tunnel listener (HTTP/2 CONNECT to the pod over mutual
// TLS with the controller's mesh CA), where payments' inbound listener
// terminates the TLS that checkout's client policy originates end to end.
// It checks that requests are answered by the payments server through both
// proxies, that the tunnel refuses plaintext, a foreign CA and a caller
// that does not list payments as a backend, that a plaintext connection
// and a client certificate without checkout's SAN are refused by node-b,
// and that checkout refuses a server certificate without payments' SAN
// (with the default retry policy: three attempts per request).
func TestInboundMTLS(t *testing.T) {
	testutil.RequirePrivileged(t)
	testutil.SkipOnOldKernel(t, "6.6", "cgroup sock_addr links, bpf_set_retval, tcx")
	begin := time.Now()
	w := &s6{Bed: meshbed.New(t, meshbed.BuildBinaries(t, false))}
	w.certs = filepath.Join(w.Dir, "certs")
	writeS6Certs(t, w.certs)
	w.checkout = w.AddPod(w.A, "checkout", meshName, "checkout_shop", paymentsPort)
	w.payments = w.AddPod(w.B, "payments", meshName, "payments_shop", paymentsPort)
	w.StartController(0)
	w.apply(t, "payments")
	w.StartServer(w.payments, "color-server", "-name", "payments")
	w.StartNodes()
	meshbed.Eventually(t, 60*time.Second, func() error {
		res := w.load(t, 1)
		if res.Errors > 0 {
			return fmt.Errorf("checkout cannot reach payments yet: %s", res.FirstError)
		}
		return nil
	})
	t.Logf("S6 is up after %v", time.Since(begin).Round(time.Millisecond))
	t.Run("CheckoutToPayments", w.checkoutToPayments)
	t.Run("TunnelRefusals", w.tunnelRefusals)
	t.Run("PlaintextRefused", w.plaintextRefused)
	t.Run("ClientCertificateWithoutCheckoutSAN", w.wrongClientSAN)
	t.Run("ServerCertificateWithoutPaymentsSAN", w.wrongServerSAN)
}

// apply applies testdata/s6.yaml with payments serving the certificate
// named serverCert.
func (w *s6) apply(t *testing.T, serverCert string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "s6.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "CERTS", w.certs)
	s = strings.ReplaceAll(s, "PAYMENTS_CERT", serverCert)
	file := filepath.Join(w.Dir, "s6-"+serverCert+".yaml")
	meshbed.WriteFile(t, file, s)
	w.Weftctl("apply", "-f", file)
}

func (w *s6) load(t *testing.T, n int) meshbed.LoadResult {
	t.Helper()
	var res meshbed.LoadResult
	if err := w.Client.Run(t.Context(), w.checkout, &res, "http-load", "-url", paymentsURL, "-n", fmt.Sprint(n), "-c", "4"); err != nil {
		t.Fatal(err)
	}
	return res
}

// checkoutToPayments: every request is answered by the payments server,
// and both proxies count them: node-a's for checkout's egress, node-b's
// for payments' inbound listener.
func (w *s6) checkoutToPayments(t *testing.T) {
	a0, b0 := mustScrape(t, w.A.ProxyMetrics), mustScrape(t, w.B.ProxyMetrics)
	const n = 500
	res := w.load(t, n)
	t.Logf("%d requests in %s: %v, %d errors (%s)", n, res.Elapsed, res.Counts, res.Errors, res.FirstError)
	if res.Errors != 0 || res.Counts["payments"] != n {
		t.Errorf("answers %v, %d errors (%s); want %d from payments", res.Counts, res.Errors, res.FirstError, n)
	}
	a1, b1 := mustScrape(t, w.A.ProxyMetrics), mustScrape(t, w.B.ProxyMetrics)
	egress := a1.Sum("weft_proxy_requests_total", "node", checkoutID) - a0.Sum("weft_proxy_requests_total", "node", checkoutID)
	inbound := b1.Sum("weft_proxy_requests_total", "node", paymentsID, "route_config", "rds_ingress_http_8080") -
		b0.Sum("weft_proxy_requests_total", "node", paymentsID, "route_config", "rds_ingress_http_8080")
	t.Logf("node-a's proxy counted %v requests of checkout, node-b's %v on payments' inbound listener", egress, inbound)
	if egress != n || inbound != n {
		t.Errorf("node-a counted %v requests of checkout and node-b %v on payments' inbound listener, want %d each", egress, inbound, n)
	}
	if hs := b1.Sum("weft_proxy_connections_rejected_total") - b0.Sum("weft_proxy_connections_rejected_total"); hs != 0 {
		t.Errorf("node-b rejected %v connections during good traffic", hs)
	}
}

// plaintextRefused: a stream through node-b's tunnel to payments that
// speaks plaintext HTTP matches no filter chain of the STRICT listener
// and is closed unanswered.
func (w *s6) plaintextRefused(t *testing.T) {
	before := w.rejected(t, "no_filter_chain")
	c := w.connect(t)
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+paymentsSAN+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err := readAllWithin(c, 10*time.Second)
	t.Logf("plaintext request through the tunnel: %d bytes back (%q), %v", len(got), got, err)
	if len(got) != 0 {
		t.Errorf("a plaintext request to payments' STRICT listener was answered: %q", got)
	}
	w.waitRejected(t, "no_filter_chain", before+1)
}

// wrongClientSAN: mTLS to payments with a certificate of the mesh CA whose
// SAN is not checkout's fails, the same handshake with checkout's
// certificate gets an answer.
func (w *s6) wrongClientSAN(t *testing.T) {
	before := w.rejected(t, "tls_handshake_failed")
	body, err := w.tlsGet(t, "wrong-client")
	t.Logf("client certificate with SAN intruder...: answer %q, %v", body, err)
	if err == nil {
		t.Errorf("payments answered a client whose certificate has no checkout SAN: %q", body)
	}
	w.waitRejected(t, "tls_handshake_failed", before+1)
	body, err = w.tlsGet(t, "checkout")
	t.Logf("client certificate with SAN %s: answer %q, %v", checkoutSAN, body, err)
	if err != nil || body != "payments" {
		t.Errorf("with checkout's certificate: %q, %v; want payments' answer", body, err)
	}
}

// wrongServerSAN: payments serves a certificate of the mesh CA without
// its SAN; checkout's proxy refuses it, every request fails after the
// default policy's three attempts, and payments' server is never reached.
// Then the right certificate comes back and so do the answers.
func (w *s6) wrongServerSAN(t *testing.T) {
	w.apply(t, "wrong-server")
	meshbed.Eventually(t, 30*time.Second, func() error {
		san, err := w.servedSAN(t)
		if err != nil {
			return err
		}
		if san != "impostor.shop.svc.cluster.local" {
			return fmt.Errorf("node-b still serves %s", san)
		}
		return nil
	})
	hs0 := w.rejected(t, "tls_handshake_failed")
	a0 := mustScrape(t, w.A.ProxyMetrics)
	const n = 20
	res := w.load(t, n)
	t.Logf("%d requests with the wrong server certificate: %v, codes %v, %d errors (%s)", n, res.Counts, res.Codes, res.Errors, res.FirstError)
	if res.Errors != n || res.Codes["503"] != n || !strings.Contains(res.FirstError, "connection failure") {
		t.Errorf("want %d answers 503 (upstream connect error ... connection failure), got counts %v codes %v, first error %s", n, res.Counts, res.Codes, res.FirstError)
	}
	// Default retry policy: 2 retries on connect-failure, so 3 handshakes
	// per request, each refused by checkout's side (node-b sees it fail).
	w.waitRejected(t, "tls_handshake_failed", hs0+3*n)
	if got := w.rejected(t, "tls_handshake_failed") - hs0; got != 3*n {
		t.Errorf("node-b saw %v failed handshakes, want %d (3 attempts per request)", got, 3*n)
	}
	a1 := mustScrape(t, w.A.ProxyMetrics)
	retries := a1.Sum("weft_proxy_retries_total", "node", checkoutID) - a0.Sum("weft_proxy_retries_total", "node", checkoutID)
	t.Logf("node-a retried %v times", retries)
	if retries != 2*n {
		t.Errorf("node-a retried %v times, want %d (the default policy's 2 per request)", retries, 2*n)
	}

	w.apply(t, "payments")
	meshbed.Eventually(t, 30*time.Second, func() error {
		if res := w.load(t, 4); res.Counts["payments"] != 4 {
			return fmt.Errorf("not answered yet: %v, %s", res.Counts, res.FirstError)
		}
		return nil
	})
}

// rejected returns node-b's proxy's rejected connections for reason.
func (w *s6) rejected(t *testing.T, reason string) float64 {
	t.Helper()
	return mustScrape(t, w.B.ProxyMetrics).Sum("weft_proxy_connections_rejected_total", "reason", reason)
}

func (w *s6) waitRejected(t *testing.T, reason string, want float64) {
	t.Helper()
	meshbed.Eventually(t, 15*time.Second, func() error {
		if got := w.rejected(t, reason); got < want {
			return fmt.Errorf("node-b rejected %v connections for %s, want %v", got, reason, want)
		}
		return nil
	})
}

// connect opens a stream through node-b's tunnel listener to payments'
// pod, from node-a's network, as node-a's proxy does for checkout: mutual
// TLS with a certificate of the mesh CA for checkout's identity.
func (w *s6) connect(t *testing.T) net.Conn {
	t.Helper()
	c, err := w.tunnelConnect(t, w.tunnelTLS(t, w.meshCert(t, checkoutID)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tunnelConnect CONNECTs to payments' pod through node-b's tunnel with
// tlsCfg (nil: plaintext h2c).
func (w *s6) tunnelConnect(t *testing.T, tlsCfg *tls.Config) (net.Conn, error) {
	t.Helper()
	var protos http.Protocols
	scheme := "https://"
	if tlsCfg == nil {
		protos.SetUnencryptedHTTP2(true)
		scheme = "http://"
	} else {
		protos.SetHTTP2(true)
	}
	tr := &http.Transport{
		Protocols: &protos, TLSClientConfig: tlsCfg,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := w.A.Node.NS.Do(func() error {
				var err error
				conn, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	pr, pw := io.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	req, err := http.NewRequestWithContext(ctx, http.MethodConnect, scheme+w.B.TunnelAddr.String(), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = netip.AddrPortFrom(w.payments.Addr, paymentsPort).String()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("CONNECT %s through %s: %w", req.Host, w.B.TunnelAddr, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		cancel()
		return nil, fmt.Errorf("CONNECT %s through %s: %s: %s", req.Host, w.B.TunnelAddr, resp.Status, strings.TrimSpace(string(b)))
	}
	return &streamConn{r: resp.Body, w: pw, cancel: cancel}, nil
}

// meshCert issues a certificate for the SPIFFE id of node id with the
// controller's mesh CA (its files: the test's own).
func (w *s6) meshCert(t *testing.T, id string) tls.Certificate {
	t.Helper()
	dir := filepath.Join(w.Dir, "controller", "identity")
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return issue(t, ca, pair.PrivateKey, &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/" + id})
}

// tunnelTLS is a tunnel client's TLS: cert, and node-b's SPIFFE id from
// the mesh CA expected of the listener.
func (w *s6) tunnelTLS(t *testing.T, cert tls.Certificate) *tls.Config {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(w.Dir, "controller", "identity", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b)
	want := "spiffe://" + trustDomain + "/node/" + w.B.Node.Name
	return &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		InsecureSkipVerify: true, // verified below: the mesh CA and node-b's SPIFFE id
		VerifyConnection: func(cs tls.ConnectionState) error {
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots}); err != nil {
				return err
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
				return fmt.Errorf("tunnel listener identity %v, want %s", leaf.URIs, want)
			}
			return nil
		},
	}
}

// issue signs a client certificate for id with ca.
func issue(t *testing.T, ca *x509.Certificate, caKey any, id *url.URL) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{id},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tunnelRefusals: node-b's tunnel listener takes only mutual TLS with the
// mesh CA, presents node-b's identity, and lets through only callers that
// list payments as a backend.
func (w *s6) tunnelRefusals(t *testing.T) {
	unauth := w.rejected(t, "unauthorized")
	if _, err := w.tunnelConnect(t, nil); err == nil {
		t.Error("a plaintext h2c CONNECT was served")
	} else {
		t.Logf("plaintext h2c: %v", err)
	}
	// A client certificate with checkout's identity from another CA.
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "other CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign,
	}
	otherDER, err := x509.CreateCertificate(rand.Reader, otherTmpl, otherTmpl, &otherKey.PublicKey, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := x509.ParseCertificate(otherDER)
	forged := issue(t, other, otherKey, &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/" + checkoutID})
	if _, err := w.tunnelConnect(t, w.tunnelTLS(t, forged)); err == nil {
		t.Error("a client certificate of another CA was served")
	} else {
		t.Logf("checkout's identity from another CA: %v", err)
	}
	// payments itself lists no backend: not an allowed caller of payments.
	_, err = w.tunnelConnect(t, w.tunnelTLS(t, w.meshCert(t, paymentsID)))
	t.Logf("payments' own identity: %v", err)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "lists none of its virtual services as a backend") {
		t.Errorf("payments calling payments through the tunnel: %v, want 403 (not a backend)", err)
	}
	if got := w.rejected(t, "unauthorized") - unauth; got != 1 {
		t.Errorf("node-b counted %v unauthorized callers, want 1", got)
	}
}

// tlsGet does GET / through the tunnel with mTLS, presenting the client
// certificate named cert, and returns the body of a 200.
func (w *s6) tlsGet(t *testing.T, cert string) (string, error) {
	t.Helper()
	c := w.connect(t)
	defer c.Close()
	pair, err := tls.LoadX509KeyPair(filepath.Join(w.certs, cert+"_chain.pem"), filepath.Join(w.certs, cert+"_key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, &tls.Config{
		RootCAs: w.caPool(t), ServerName: paymentsSAN, Certificates: []tls.Certificate{pair},
		NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12,
	})
	type result struct {
		body string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		if err := tc.Handshake(); err != nil {
			ch <- result{"", fmt.Errorf("handshake: %w", err)}
			return
		}
		if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: "+paymentsSAN+"\r\nConnection: close\r\n\r\n"); err != nil {
			ch <- result{"", err}
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			ch <- result{"", err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s", resp.Status)
		}
		ch <- result{string(b), err}
	}()
	select {
	case r := <-ch:
		return r.body, r.err
	case <-time.After(15 * time.Second):
		_ = c.Close()
		return "", errors.New("no answer within 15s")
	}
}

// servedSAN returns the first DNS SAN of the certificate node-b serves for
// payments.
func (w *s6) servedSAN(t *testing.T) (string, error) {
	t.Helper()
	c := w.connect(t)
	defer c.Close()
	pair, err := tls.LoadX509KeyPair(filepath.Join(w.certs, "checkout_chain.pem"), filepath.Join(w.certs, "checkout_key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{pair}})
	done := make(chan error, 1)
	go func() { done <- tc.Handshake() }()
	select {
	case err := <-done:
		if err != nil {
			return "", err
		}
	case <-time.After(10 * time.Second):
		return "", errors.New("handshake timed out")
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 || len(certs[0].DNSNames) == 0 {
		return "", errors.New("no server certificate with a DNS SAN")
	}
	return certs[0].DNSNames[0], nil
}

func (w *s6) caPool(t *testing.T) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(w.certs, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatal("ca.pem holds no certificate")
	}
	return pool
}

// readAllWithin reads c until EOF or an error, for at most d.
func readAllWithin(c net.Conn, d time.Duration) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(c)
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-time.After(d):
		_ = c.Close()
		r := <-ch
		return r.b, fmt.Errorf("still open after %v", d)
	}
}

// streamConn is a CONNECT stream of the test's own tunnel client.
type streamConn struct {
	r      io.ReadCloser
	w      *io.PipeWriter
	cancel context.CancelFunc
}

func (c *streamConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *streamConn) Write(b []byte) (int, error) { return c.w.Write(b) }
func (c *streamConn) Close() error {
	_ = c.w.Close()
	_ = c.r.Close()
	c.cancel()
	return nil
}
func (c *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

// writeS6Certs writes S6's certificates into dir: the mesh CA (ca.pem),
// payments' server certificate (SAN payments.shop.svc.cluster.local),
// checkout's client certificate (SAN checkout.shop.svc.cluster.local), a
// client certificate with another SAN (wrong-client) and a server
// certificate without payments' SAN (wrong-server), each as
// <name>_chain.pem and <name>_key.pem.
func writeS6Certs(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weft e2e mesh CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER)
	for i, leaf := range []struct {
		name, san string
		usage     x509.ExtKeyUsage
	}{
		{"payments", paymentsSAN, x509.ExtKeyUsageServerAuth},
		{"checkout", checkoutSAN, x509.ExtKeyUsageClientAuth},
		{"wrong-client", "intruder.shop.svc.cluster.local", x509.ExtKeyUsageClientAuth},
		{"wrong-server", "impostor.shop.svc.cluster.local", x509.ExtKeyUsageServerAuth},
	} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: leaf.san},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			DNSNames: []string{leaf.san}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{leaf.usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(dir, leaf.name+"_chain.pem"), "CERTIFICATE", der)
		writePEM(t, filepath.Join(dir, leaf.name+"_key.pem"), "PRIVATE KEY", keyDER)
	}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
