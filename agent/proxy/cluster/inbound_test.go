// SPDX-License-Identifier: Apache-2.0

package cluster_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weft-mesh/weft/agent/proxy"
	"github.com/weft-mesh/weft/agent/proxy/cluster"
	"github.com/weft-mesh/weft/controlplane/identity"
	"github.com/weft-mesh/weft/controlplane/xds/translate"
	"github.com/weft-mesh/weft/controlplane/xds/vip"
	"github.com/weft-mesh/weft/pkg/appmesh"
	"github.com/weft-mesh/weft/pkg/manifest"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

// s6YAML is appmesh-model.md §16 S6 with the certificates in DIR and
// payments' server certificate named SERVER.
const s6YAML = `apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {mesh: demo}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {name: demo}
spec:
  namespaceSelector: {matchLabels: {mesh: demo}}
  egressFilter: {type: ALLOW_ALL}
---
apiVersion: appmesh.k8s.aws/v1beta2
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
  serviceDiscovery: {dns: {hostname: payments.shop.svc.cluster.local}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: checkout, namespace: shop}
spec:
  podSelector: {matchLabels: {app: checkout}}
  listeners: [{portMapping: {port: 8080, protocol: http}}]
  serviceDiscovery: {dns: {hostname: checkout.shop.svc.cluster.local}}
  backends:
    - virtualService:
        virtualServiceRef: {name: payments}
        clientPolicy:
          tls:
            enforce: true
            ports: [8080]
            certificate: {file: {certificateChain: DIR/checkout.pem, privateKey: DIR/checkout-key.pem}}
            validation:
              trust: {file: {certificateChain: DIR/ca.pem}}
              subjectAlternativeNames: {match: {exact: [payments.shop.svc.cluster.local]}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {name: payments, namespace: shop}
spec: {awsName: payments.shop.svc.cluster.local, provider: {virtualNode: {virtualNodeRef: {name: payments}}}}
`

const (
	paymentsID = "mesh/demo/virtualNode/payments_shop"
	checkoutID = "mesh/demo/virtualNode/checkout_shop"
	paymentsCl = "cds_egress_demo_payments_shop_http_8080"
)

// s6Endpoints are the registry's endpoints of the test.
type s6Endpoints map[translate.NodeKey][]translate.Endpoint

func (e s6Endpoints) Endpoints(n translate.NodeKey) ([]translate.Endpoint, bool) {
	eps, ok := e[n]
	return eps, ok
}

// translateS6 translates S6 with payments' pod at pod behind tunnel.
func translateS6(t *testing.T, dir, serverCert string, pod netip.Addr, tunnel netip.AddrPort) map[string]proxy.Resources {
	t.Helper()
	file := filepath.Join(dir, "s6-"+serverCert+".yaml")
	body := strings.ReplaceAll(strings.ReplaceAll(s6YAML, "DIR", dir), "SERVER", serverCert)
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	docs, err := manifest.Load([]string{file}, nil, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var res []appmesh.Resource
	for _, d := range docs {
		appmesh.Default(d.Resource.Ref.Kind, d.Resource.Spec)
		res = append(res, d.Resource)
	}
	eps := s6Endpoints{
		{Mesh: "demo", Name: "payments_shop"}: {{Address: pod, Port: 8080, Node: "node-b", Tunnel: tunnel, Healthy: true}},
		{Mesh: "demo", Name: "checkout_shop"}: {{Address: netip.MustParseAddr("127.0.0.1"), Port: 8080, Node: "node-a", Healthy: true}},
	}
	addrs := map[vip.Key]vip.Addresses{{Mesh: "demo", Service: "payments.shop.svc.cluster.local"}: {IPv4: netip.MustParseAddr("240.240.0.1")}}
	out := translate.Translate(translate.Input{Resources: res, Addresses: addrs, Endpoints: eps})
	if len(out.Problems) > 0 {
		t.Fatalf("translation problems: %v", out.Problems)
	}
	m := map[string]proxy.Resources{}
	for _, p := range out.Proxies {
		m[p.NodeID] = proxy.Resources{Listeners: p.Listeners, Routes: p.Routes, Clusters: p.Clusters, Endpoints: p.Endpoints}
	}
	return m
}

// TestTunnelToInboundListener runs S6 across two proxies in one process:
// checkout's cluster manager (node-a) reaches payments' pod through the
// tunnel listener of node-b's proxy, whose inbound listener terminates the
// mTLS checkout's client policy originates and forwards to the pod.
func TestTunnelToInboundListener(t *testing.T) {
	t.Run("h2c", func(t *testing.T) { testTunnelToInbound(t, false) })
	t.Run("mTLS", func(t *testing.T) { testTunnelToInbound(t, true) })
}

// meshIdentities runs the controller's mesh CA in process and returns the
// identities of node-a (serving checkout) and node-b (serving payments).
func meshIdentities(ctx context.Context, t *testing.T, done chan<- error) (a, b *proxy.Identities) {
	t.Helper()
	ca, err := identity.New(identity.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	served := map[string][]string{"node-a": {checkoutID}, "node-b": {paymentsID}}
	srv := grpc.NewServer()
	nodeapiv1.RegisterIdentityServer(srv, identity.NewService(ca, func(n string) []string { return served[n] }))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	log := slog.New(slog.DiscardHandler)
	for _, n := range []struct {
		ids  **proxy.Identities
		node string
	}{{&a, "node-a"}, {&b, "node-b"}} {
		ids, err := proxy.NewIdentities(conn, n.node, true, log)
		if err != nil {
			t.Fatal(err)
		}
		ids.Set(served[n.node])
		go func() { done <- ids.Run(ctx) }()
		*n.ids = ids
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, errA := a.ClientCertificate(checkoutID)
		_, errB := b.ClientCertificate("")
		if errA == nil && errB == nil {
			return a, b
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificates: %v, %v", errA, errB)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testTunnelToInbound(t *testing.T, secure bool) {
	t.Helper()
	dir := t.TempDir()
	writeS6Certs(t, dir)
	// payments' pod: a loopback address of its own, on the listener port.
	// Another test run may hold an address: try a few, never skip.
	var pod netip.Addr
	var ln net.Listener
	var err error
	for i := range 8 {
		pod = netip.AddrFrom4([4]byte{127, 83, byte((time.Now().UnixNano() + int64(i)) % 250), byte(1 + (os.Getpid()+i)%250)})
		if ln, err = net.Listen("tcp", netip.AddrPortFrom(pod, 8080).String()); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("payments' pod address %s:8080: %v", pod, err)
	}
	seen := make(chan string, 64)
	app := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Host + " " + r.Header.Get("X-Forwarded-Proto")
		_, _ = io.WriteString(w, "payments")
	})}
	go func() { _ = app.Serve(ln) }()
	t.Cleanup(func() { _ = app.Close() })

	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 5)
	workers := 3
	var idsA, idsB *proxy.Identities
	optsA, depsB := cluster.Options{}, proxy.Deps{}
	if secure {
		idsA, idsB = meshIdentities(ctx, t, done)
		workers += 2
		optsA.TunnelIdentity, depsB.Tunnel = idsA, idsB
	}
	// Node-b: the destination proxy and its cluster manager.
	regB := prometheus.NewRegistry()
	mb := cluster.NewManager(cluster.Options{}, log)
	depsB.Clusters, depsB.Registerer = mb, regB
	pb, err := proxy.New(proxy.Config{TunnelListen: "127.0.0.1:0", DrainTimeout: time.Second}, depsB, log)
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- mb.Run(ctx) }()
	go func() { done <- pb.Run(ctx) }()
	<-pb.Ready()
	tunnel := netip.MustParseAddrPort(pb.TunnelAddr().String())
	res := translateS6(t, dir, "payments", pod, tunnel)
	if err := pb.Update(paymentsID, res[paymentsID]); err != nil {
		t.Fatal(err)
	}
	pb.SetLocalAddresses(map[netip.Addr]string{pod: paymentsID})
	pb.SetAllowedCallers(map[string][]string{paymentsID: {checkoutID}})

	// Node-a: checkout's clusters.
	ma := cluster.NewManager(optsA, log)
	go func() { done <- ma.Run(ctx) }()
	if err := ma.Update(checkoutID, res[checkoutID].Clusters, res[checkoutID].Endpoints); err != nil {
		t.Fatal(err)
	}
	var getVia func(m *cluster.Manager) (string, error)
	get := func() (string, error) { return getVia(ma) }
	getVia = func(m *cluster.Manager) (string, error) {
		cl, ok := m.Get(checkoutID, paymentsCl)
		if !ok {
			t.Fatalf("no cluster %s", paymentsCl)
		}
		lease, err := cl.Acquire(ctx, proxy.Hints{})
		if err != nil {
			return "", err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://payments.shop.svc.cluster.local:8080/", nil)
		resp, err := lease.Transport().RoundTrip(req)
		if err != nil {
			lease.Done(0, err)
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		lease.Done(resp.StatusCode, err)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return string(b), err
	}
	for i := range 20 {
		body, err := get()
		if err != nil || body != "payments" {
			t.Fatalf("request %d: %q, %v", i, body, err)
		}
		if got := <-seen; got != "payments.shop.svc.cluster.local:8080 https" {
			t.Errorf("the pod saw %q, want the service's host and x-forwarded-proto https (TLS ended at node-b)", got)
		}
	}
	total := sumCounter(t, regB, "weft_proxy_requests_total", paymentsID)
	t.Logf("node-b's inbound listener served %v requests", total)
	if total != 20 {
		t.Errorf("node-b counted %v requests of payments, want 20", total)
	}

	if secure {
		// Checkout is no longer an allowed caller of payments: a new
		// tunnel stream is refused (a fresh manager: no pooled
		// connection).
		pb.SetAllowedCallers(map[string][]string{paymentsID: {"mesh/demo/virtualNode/other_shop"}})
		m2 := cluster.NewManager(optsA, log)
		if err := m2.Update(checkoutID, res[checkoutID].Clusters, res[checkoutID].Endpoints); err != nil {
			t.Fatal(err)
		}
		_, err := getVia(m2)
		if !errors.Is(err, proxy.ErrConnectFailure) || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), checkoutID+" may not call "+paymentsID) {
			t.Errorf("a caller that is not allowed: %v, want a 403 connect failure", err)
		} else {
			t.Logf("not allowed: %v", err)
		}
		_ = m2.Close()
		pb.SetAllowedCallers(map[string][]string{paymentsID: {checkoutID}})
	}

	// payments now serves a certificate without its SAN: node-b drains
	// the connections of the old chain, and checkout refuses the new one.
	res = translateS6(t, dir, "wrong-server", pod, tunnel)
	if err := pb.Update(paymentsID, res[paymentsID]); err != nil {
		t.Fatal(err)
	}
	_, err = get()
	if !errors.Is(err, proxy.ErrConnectFailure) || !strings.Contains(err.Error(), "subject alternative names") {
		t.Errorf("with a server certificate without payments' SAN: %v; want a connect failure of the SAN check", err)
	} else {
		t.Logf("refused: %v", err)
	}
	cancel()
	for range workers {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	_ = ma.Close()
	_ = mb.Close()
}

func sumCounter(t *testing.T, g prometheus.Gatherer, name, node string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "node" && l.GetValue() == node {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// writeS6Certs writes a CA (ca.pem), payments' and checkout's certificates
// and a server certificate with another SAN (wrong-server) into dir as
// <name>.pem and <name>-key.pem.
func writeS6Certs(t *testing.T, dir string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test mesh CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", "CERTIFICATE", caDER)
	for i, l := range []struct {
		name, san string
		usage     x509.ExtKeyUsage
	}{
		{"payments", "payments.shop.svc.cluster.local", x509.ExtKeyUsageServerAuth},
		{"checkout", "checkout.shop.svc.cluster.local", x509.ExtKeyUsageClientAuth},
		{"wrong-server", "impostor.shop.svc.cluster.local", x509.ExtKeyUsageServerAuth},
	} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: l.san}, DNSNames: []string{l.san},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{l.usage},
		}, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		write(l.name+".pem", "CERTIFICATE", der)
		write(l.name+"-key.pem", "PRIVATE KEY", kd)
	}
}
