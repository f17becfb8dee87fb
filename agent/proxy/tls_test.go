// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	wtestutil "github.com/weft-mesh/weft/test/testutil"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// testCA is a certificate authority of the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial atomic.Int64

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leaf is an issued certificate: PEM chain and key, and the parsed pair.
type leaf struct {
	chain, key []byte
	pair       tls.Certificate
	serial     *big.Int
}

// issue signs a leaf for DNS or URI SANs (a SAN with "://" is a URI).
func (ca *testCA) issue(t *testing.T, usage x509.ExtKeyUsage, sans ...string) *leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: sans[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	for _, s := range sans {
		if u, err := url.Parse(s); err == nil && u.Scheme != "" {
			tmpl.URIs = append(tmpl.URIs, u)
			continue
		}
		tmpl.DNSNames = append(tmpl.DNSNames, s)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	l := &leaf{
		chain:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}),
		serial: tmpl.SerialNumber,
	}
	l.pair, err = tls.X509KeyPair(l.chain, l.key)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// write puts the leaf in dir as <name>.pem and <name>-key.pem.
func (l *leaf) write(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), l.chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), l.key, 0o600); err != nil {
		t.Fatal(err)
	}
}

const (
	tlsGatewayID = "mesh/demo/virtualGateway/tls-gw_shop"
	gwServerName = "gw.example.com"
	checkoutSAN  = "checkout.shop.svc.cluster.local"
	tlsAccessLog = "/tls-gw/access.log"
)

func gwListener(port int) string { return fmt.Sprintf("lds_ingress_0.0.0.0_port_%d", port) }

// tlsGatewayYAML is a virtual gateway with one listener per TLS shape:
// 8443 STRICT with mTLS and a SAN list, 8444 PERMISSIVE, 8445 STRICT with
// mTLS and no SAN list, 8446 a gRPC listener STRICT without client
// certificates; one gateway route per port.
const tlsGatewayYAML = `apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualGateway
metadata: {name: tls-gw, namespace: shop}
spec:
  namespaceSelector: {matchLabels: {gateway: demo-gw}}
  podSelector: {matchLabels: {app: tls-gw}}
  listeners:
    - portMapping: {port: 8443, protocol: http}
      tls:
        mode: STRICT
        certificate: {file: {certificateChain: DIR/server.pem, privateKey: DIR/server-key.pem}}
        validation:
          trust: {file: {certificateChain: DIR/ca.pem}}
          subjectAlternativeNames: {match: {exact: [checkout.shop.svc.cluster.local]}}
    - portMapping: {port: 8444, protocol: http}
      tls:
        mode: PERMISSIVE
        certificate: {file: {certificateChain: DIR/server.pem, privateKey: DIR/server-key.pem}}
    - portMapping: {port: 8445, protocol: http}
      tls:
        mode: STRICT
        certificate: {file: {certificateChain: DIR/server.pem, privateKey: DIR/server-key.pem}}
        validation:
          trust: {file: {certificateChain: DIR/ca.pem}}
    - portMapping: {port: 8446, protocol: grpc}
      tls:
        mode: STRICT
        certificate: {file: {certificateChain: DIR/server.pem, privateKey: DIR/server-key.pem}}
  logging:
    accessLog:
      file:
        path: /tls-gw/access.log
        format: {json: [{key: port, value: "%DOWNSTREAM_LOCAL_ADDRESS%"}, {key: proto, value: "%PROTOCOL%"}, {key: sni, value: "%REQUESTED_SERVER_NAME%"}, {key: xfp, value: "%REQ(X-FORWARDED-PROTO)%"}, {key: code, value: "%RESPONSE_CODE%"}]}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: GatewayRoute
metadata: {name: strict-mtls, namespace: shop}
spec:
  httpRoute:
    match: {prefix: /, port: 8443}
    action: {target: {virtualService: {virtualServiceRef: {name: color}}}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: GatewayRoute
metadata: {name: permissive, namespace: shop}
spec:
  httpRoute:
    match: {prefix: /, port: 8444}
    action: {target: {virtualService: {virtualServiceRef: {name: color}}}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: GatewayRoute
metadata: {name: strict-any-san, namespace: shop}
spec:
  httpRoute:
    match: {prefix: /, port: 8445}
    action: {target: {virtualService: {virtualServiceRef: {name: color}}}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: GatewayRoute
metadata: {name: health, namespace: shop}
spec:
  grpcRoute:
    match: {serviceName: grpc.health.v1.Health, port: 8446}
    action: {target: {virtualService: {virtualServiceRef: {name: health}}}}
`

// tlsWorld is the TLS gateway with its PKI on disk.
type tlsWorld struct {
	dir                    string
	ca, otherCA            *testCA
	server                 *leaf
	checkout, intruder     *leaf // clients issued by ca
	foreign                *leaf // a client with the right SAN from another CA
	roots                  *x509.CertPool
	h                      *harness
	health                 *healthServer
	strict, permissive     string // bound addresses
	strictAnySAN, grpcAddr string
}

func newTLSWorld(t *testing.T) *tlsWorld {
	t.Helper()
	tw := &tlsWorld{dir: t.TempDir(), ca: newTestCA(t, "weft test CA"), otherCA: newTestCA(t, "other CA")}
	tw.server = tw.ca.issue(t, x509.ExtKeyUsageServerAuth, gwServerName)
	tw.checkout = tw.ca.issue(t, x509.ExtKeyUsageClientAuth, checkoutSAN)
	tw.intruder = tw.ca.issue(t, x509.ExtKeyUsageClientAuth, "intruder.shop.svc.cluster.local", "spiffe://demo/intruder")
	tw.foreign = tw.otherCA.issue(t, x509.ExtKeyUsageClientAuth, checkoutSAN)
	tw.roots = x509.NewCertPool()
	tw.roots.AddCert(tw.ca.cert)
	if err := os.WriteFile(filepath.Join(tw.dir, "ca.pem"), tw.ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	tw.server.write(t, tw.dir, "server")
	yaml := filepath.Join(tw.dir, "tls-gw.yaml")
	if err := os.WriteFile(yaml, []byte(strings.ReplaceAll(tlsGatewayYAML, "DIR", tw.dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	w := buildWorld(t, "s0", "s1", "testdata/grpc.yaml", yaml)
	overrides := map[string]string{}
	for i, port := range []int{8443, 8444, 8445, 8446} {
		// Distinct addresses: bound listeners are keyed by address.
		overrides[gwListener(port)] = fmt.Sprintf("127.0.0.%d:0", i+1)
	}
	tw.h = newHarness(t, w, Config{BindOverrides: overrides})
	tw.h.load(tlsGatewayID)
	tw.h.backend("blue_shop", 8080, nil)
	tw.h.backend("green_shop", 8080, nil)
	tw.health = &healthServer{}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, tw.health)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	tw.h.route("health_shop", 9090, ln.Addr().String())
	addr := func(port int) string {
		a := tw.h.p.ListenerAddr(tlsGatewayID, gwListener(port))
		if a == nil {
			t.Fatalf("listener %s not bound", gwListener(port))
		}
		return a.String()
	}
	tw.strict, tw.permissive, tw.strictAnySAN, tw.grpcAddr = addr(8443), addr(8444), addr(8445), addr(8446)
	return tw
}

// client is an HTTP client that dials addr whatever the URL says. With
// tlsCfg it speaks TLS (ALPN h2 when h2, else http/1.1 only); without,
// plaintext (h2c prior knowledge when h2).
func (tw *tlsWorld) client(t *testing.T, addr string, tlsCfg *tls.Config, h2 bool) *http.Client {
	t.Helper()
	var protos http.Protocols
	switch {
	case h2 && tlsCfg != nil:
		protos.SetHTTP2(true)
	case h2:
		protos.SetUnencryptedHTTP2(true)
	default:
		protos.SetHTTP1(true)
	}
	if tlsCfg != nil && !h2 {
		// Offer http/1.1 explicitly (the transport offers nothing).
		tlsCfg = tlsCfg.Clone()
		tlsCfg.NextProtos = []string{alpnHTTP11}
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		TLSClientConfig: tlsCfg, Protocols: &protos, DisableKeepAlives: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// tlsConfig trusts the test CA for gw.example.com and presents cert when
// not nil.
func (tw *tlsWorld) tlsConfig(cert *leaf) *tls.Config {
	cfg := &tls.Config{RootCAs: tw.roots, ServerName: gwServerName, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{cert.pair}
	}
	return cfg
}

// do sends GET url and returns the response (body read into the echo) or
// the transport error.
func do(c *http.Client, rawURL string) (*http.Response, echo, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, echo{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, echo{}, err
	}
	defer resp.Body.Close()
	var e echo
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, echo{}, err
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, echo{}, fmt.Errorf("decode %q: %w", b, err)
		}
	}
	return resp, e, nil
}

// waitRejected waits until the proxy has counted want rejections for
// reason: a client can see the refusal before the proxy counts it.
func (tw *tlsWorld) waitRejected(t *testing.T, reason string, want float64) {
	t.Helper()
	wtestutil.Eventually(t, 10*time.Second, func() error {
		if got := tw.rejected(reason); got != want {
			return fmt.Errorf("%s rejections: %v, want %v", reason, got, want)
		}
		return nil
	})
}

func (tw *tlsWorld) rejected(reason string) float64 {
	return testutil.ToFloat64(tw.h.p.m.rejected.WithLabelValues(reason))
}

// TestDownstreamTLSStrictMTLS checks a STRICT listener with a validation
// context and a SAN list (S6's server side, on a gateway): plaintext is
// refused, and so are clients without a certificate, with a SAN not in the
// list or from another CA; the right client is served over HTTP/1.1 and,
// when ALPN picks h2, over HTTP/2.
func TestDownstreamTLSStrictMTLS(t *testing.T) {
	tw := newTLSWorld(t)
	base := "https://" + gwServerName + "/tell"

	if _, _, err := do(tw.client(t, tw.strict, nil, false), "http://"+gwServerName+"/tell"); err == nil {
		t.Error("plaintext HTTP/1.1 to a STRICT listener was served")
	}
	if _, _, err := do(tw.client(t, tw.strict, nil, true), "http://"+gwServerName+"/tell"); err == nil {
		t.Error("plaintext h2c to a STRICT listener was served")
	}
	tw.waitRejected(t, rejectNoChain, 2)
	for _, tc := range []struct {
		name string
		cert *leaf
	}{
		{"no client certificate", nil},
		{"a SAN not in the list", tw.intruder},
		{"another CA", tw.foreign},
	} {
		for _, h2 := range []bool{false, true} {
			resp, _, err := do(tw.client(t, tw.strict, tw.tlsConfig(tc.cert), h2), base)
			if err == nil {
				t.Errorf("%s (h2 %v): served %s", tc.name, h2, resp.Status)
				continue
			}
			t.Logf("%s (h2 %v): refused: %v", tc.name, h2, err)
		}
	}
	tw.waitRejected(t, rejectTLSHandshake, 6)

	resp, e, err := do(tw.client(t, tw.strict, tw.tlsConfig(tw.checkout), false), base)
	if err != nil {
		t.Fatalf("HTTP/1.1 with the right client certificate: %v", err)
	}
	if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/1.1" || resp.TLS.NegotiatedProtocol != alpnHTTP11 || !contains([]string{"blue_shop", "green_shop"}, e.Name) {
		t.Errorf("HTTP/1.1: %s %s alpn %q from %q", resp.Status, resp.Proto, resp.TLS.NegotiatedProtocol, e.Name)
	}
	resp, e, err = do(tw.client(t, tw.strict, tw.tlsConfig(tw.checkout), true), base)
	if err != nil {
		t.Fatalf("HTTP/2 with the right client certificate: %v", err)
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || resp.TLS.NegotiatedProtocol != alpnH2 || e.URI != "/tell" {
		t.Errorf("HTTP/2: %s %s alpn %q uri %q", resp.Status, resp.Proto, resp.TLS.NegotiatedProtocol, e.URI)
	}
	// The access log: the downstream protocol, the SNI and
	// x-forwarded-proto: https.
	lines := tw.h.logs.lines(tlsAccessLog)
	t.Logf("access log:\n%s", strings.Join(lines, "\n"))
	if len(lines) != 2 {
		t.Fatalf("%d access log lines, want 2", len(lines))
	}
	for i, want := range []string{`"proto":"HTTP/1.1","sni":"gw.example.com","xfp":"https"`, `"proto":"HTTP/2","sni":"gw.example.com","xfp":"https"`} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("log line %d %s: want %s", i, lines[i], want)
		}
	}
}

// TestDownstreamTLSPermissive checks a PERMISSIVE listener: plaintext
// (HTTP/1.1 and h2c) and TLS (h2, http/1.1, and no ALPN at all) on one port.
func TestDownstreamTLSPermissive(t *testing.T) {
	tw := newTLSWorld(t)
	for _, tc := range []struct {
		name      string
		tls, h2   bool
		wantMajor int
	}{
		{"plaintext HTTP/1.1", false, false, 1},
		{"plaintext h2c", false, true, 2},
		{"TLS http/1.1", true, false, 1},
		{"TLS h2", true, true, 2},
	} {
		scheme, cfg := "http", (*tls.Config)(nil)
		if tc.tls {
			scheme, cfg = "https", tw.tlsConfig(nil)
		}
		resp, e, err := do(tw.client(t, tw.permissive, cfg, tc.h2), scheme+"://"+gwServerName+"/x")
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != tc.wantMajor || e.URI != "/x" {
			t.Errorf("%s: %s %s uri %q", tc.name, resp.Status, resp.Proto, e.URI)
		}
		if tc.tls != (resp.TLS != nil) {
			t.Errorf("%s: TLS state %v", tc.name, resp.TLS)
		}
	}

	// A TLS client that offers no ALPN gets HTTP/1.1.
	conn, err := tls.Dial("tcp", tw.permissive, tw.tlsConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "" {
		t.Errorf("negotiated %q without ALPN", p)
	}
	fmt.Fprintf(conn, "GET /no-alpn HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", gwServerName)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/1.1" || !strings.Contains(string(body), `"uri":"/no-alpn"`) {
		t.Errorf("no ALPN: %s %s %s", resp.Status, resp.Proto, body)
	}

	lines := tw.h.logs.lines(tlsAccessLog)
	t.Logf("access log:\n%s", strings.Join(lines, "\n"))
	want := []string{
		`"proto":"HTTP/1.1","sni":null,"xfp":"http"`,
		`"proto":"HTTP/2","sni":null,"xfp":"http"`,
		`"proto":"HTTP/1.1","sni":"gw.example.com","xfp":"https"`,
		`"proto":"HTTP/2","sni":"gw.example.com","xfp":"https"`,
		`"proto":"HTTP/1.1","sni":"gw.example.com","xfp":"https"`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d access log lines, want %d", len(lines), len(want))
	}
	for i := range want {
		if !strings.Contains(lines[i], want[i]) {
			t.Errorf("log line %d %s: want %s", i, lines[i], want[i])
		}
	}
}

// TestDownstreamTLSValidationWithoutSANs checks mTLS without a SAN list:
// any certificate the trust chains is accepted.
func TestDownstreamTLSValidationWithoutSANs(t *testing.T) {
	tw := newTLSWorld(t)
	base := "https://" + gwServerName + "/"
	for _, tc := range []struct {
		name string
		cert *leaf
		ok   bool
	}{
		{"checkout", tw.checkout, true},
		{"another SAN, same CA", tw.intruder, true},
		{"another CA", tw.foreign, false},
		{"no certificate", nil, false},
	} {
		resp, _, err := do(tw.client(t, tw.strictAnySAN, tw.tlsConfig(tc.cert), true), base)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.ok && resp.StatusCode != http.StatusOK:
			t.Errorf("%s: %s", tc.name, resp.Status)
		case !tc.ok && err == nil:
			t.Errorf("%s: served %s", tc.name, resp.Status)
		}
	}
}

// TestDownstreamTLSGRPC runs grpc-go with TLS credentials (which insist
// on ALPN h2) against the gateway's gRPC listener.
func TestDownstreamTLSGRPC(t *testing.T) {
	tw := newTLSWorld(t)
	conn, err := grpc.NewClient("passthrough:///"+gwServerName,
		grpc.WithTransportCredentials(credentials.NewTLS(tw.tlsConfig(nil))),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", tw.grpcAddr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("check over TLS: %v %v", resp, err)
	}
	stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, err := stream.Recv(); err != nil {
			break
		}
		n++
	}
	if n != 3 {
		t.Errorf("watch over TLS: %d messages, want 3", n)
	}
}

// editTLS returns a copy of res whose listener name's downstream TLS
// contexts went through edit.
func editTLS(t *testing.T, res Resources, name string, edit func(*tlsv3.DownstreamTlsContext)) Resources {
	t.Helper()
	out := res
	out.Listeners = nil
	for _, l := range res.Listeners {
		if l.GetName() == name {
			l = proto.Clone(l).(*listenerv3.Listener)
			for _, fc := range l.GetFilterChains() {
				if fc.GetTransportSocket() == nil {
					continue
				}
				var dt tlsv3.DownstreamTlsContext
				if err := fc.GetTransportSocket().GetTypedConfig().UnmarshalTo(&dt); err != nil {
					t.Fatal(err)
				}
				edit(&dt)
				a, err := anypb.New(&dt)
				if err != nil {
					t.Fatal(err)
				}
				fc.GetTransportSocket().ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: a}
			}
		}
		out.Listeners = append(out.Listeners, l)
	}
	return out
}

// serverSerial connects with TLS and returns the serial of the server's
// certificate.
func serverSerial(t *testing.T, addr string, cfg *tls.Config) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// TestDownstreamTLSUpdates checks that TLS material is read at Update time:
// a missing file or SDS is a NACK naming the listener (and the file), the
// previous configuration keeps serving, and a rotated file is not picked
// up until the next update.
func TestDownstreamTLSUpdates(t *testing.T) {
	tw := newTLSWorld(t)
	res := tw.h.w.resources(t, tlsGatewayID)
	get := func() error {
		resp, _, err := do(tw.client(t, tw.strict, tw.tlsConfig(tw.checkout), true), "https://"+gwServerName+"/")
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s", resp.Status)
		}
		return err
	}

	missing := filepath.Join(tw.dir, "missing.pem")
	bad := editTLS(t, res, gwListener(8443), func(dt *tlsv3.DownstreamTlsContext) {
		dt.GetCommonTlsContext().GetTlsCertificates()[0].CertificateChain = fileDataSource(missing)
	})
	err := tw.h.p.Update(tlsGatewayID, bad)
	t.Logf("missing certificate: %v", err)
	if err == nil || !strings.Contains(err.Error(), "listener "+gwListener(8443)) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing certificate file: got %v, want a NACK naming the listener and %s", err, missing)
	}
	badCA := editTLS(t, res, gwListener(8445), func(dt *tlsv3.DownstreamTlsContext) {
		dt.GetCommonTlsContext().GetValidationContext().TrustedCa = fileDataSource(filepath.Join(tw.dir, "server-key.pem"))
	})
	err = tw.h.p.Update(tlsGatewayID, badCA)
	t.Logf("trusted_ca without a certificate: %v", err)
	if err == nil || !strings.Contains(err.Error(), "listener "+gwListener(8445)) || !strings.Contains(err.Error(), "server-key.pem") {
		t.Errorf("trusted_ca without a certificate: got %v", err)
	}
	sds := editTLS(t, res, gwListener(8444), func(dt *tlsv3.DownstreamTlsContext) {
		dt.GetCommonTlsContext().TlsCertificates = nil
		dt.GetCommonTlsContext().TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: "gw-cert"}}
	})
	err = tw.h.p.Update(tlsGatewayID, sds)
	t.Logf("SDS: %v", err)
	if err == nil || !strings.Contains(err.Error(), "listener "+gwListener(8444)) || !strings.Contains(err.Error(), "not supported yet") {
		t.Errorf("SDS certificate: got %v, want a NACK naming the listener", err)
	}
	if err := get(); err != nil {
		t.Errorf("after the NACKs the previous configuration does not serve: %v", err)
	}

	// Rotate the server certificate on disk: connections keep getting the
	// one loaded by the last update, until the next update reads the files.
	old := serverSerial(t, tw.permissive, tw.tlsConfig(nil))
	if old.Cmp(tw.server.serial) != 0 {
		t.Fatalf("server serial %v, want %v", old, tw.server.serial)
	}
	rotated := tw.ca.issue(t, x509.ExtKeyUsageServerAuth, gwServerName)
	rotated.write(t, tw.dir, "server")
	if got := serverSerial(t, tw.permissive, tw.tlsConfig(nil)); got.Cmp(old) != 0 {
		t.Errorf("a rotated file was picked up without an update: serial %v", got)
	}
	if err := tw.h.p.Update(tlsGatewayID, res); err != nil {
		t.Fatal(err)
	}
	if got := serverSerial(t, tw.permissive, tw.tlsConfig(nil)); got.Cmp(rotated.serial) != 0 {
		t.Errorf("after the update: serial %v, want the rotated %v", got, rotated.serial)
	}
	if err := get(); err != nil {
		t.Errorf("after the update: %v", err)
	}
}

// TestDownstreamTLSServerNames checks filter chain selection by the
// ClientHello's server name among TLS chains (exact, wildcard, none), each
// with its own certificate, and a tcp_proxy chain behind TLS.
func TestDownstreamTLSServerNames(t *testing.T) {
	tw := newTLSWorld(t)
	res := tw.h.w.resources(t, tlsGatewayID)
	a := tw.ca.issue(t, x509.ExtKeyUsageServerAuth, "a.example.com")
	org := tw.ca.issue(t, x509.ExtKeyUsageServerAuth, "*.example.org")
	a.write(t, tw.dir, "a")
	org.write(t, tw.dir, "org")
	backend := tcpServer(t)
	tw.h.clusters.remap.set("10.99.0.1:7000", backend)

	out := res
	out.Listeners = nil
	for _, l := range res.Listeners {
		if l.GetName() == gwListener(8444) {
			l = proto.Clone(l).(*listenerv3.Listener)
			tlsChain := l.GetFilterChains()[0]
			if tlsChain.GetFilterChainMatch().GetTransportProtocol() != "tls" {
				t.Fatalf("first chain of %s is not the TLS one", l.GetName())
			}
			withCert := func(names []string, file string) *listenerv3.FilterChain {
				fc := proto.Clone(tlsChain).(*listenerv3.FilterChain)
				fc.Name = file
				fc.FilterChainMatch.ServerNames = names
				var dt tlsv3.DownstreamTlsContext
				if err := fc.GetTransportSocket().GetTypedConfig().UnmarshalTo(&dt); err != nil {
					t.Fatal(err)
				}
				dt.GetCommonTlsContext().GetTlsCertificates()[0].CertificateChain = fileDataSource(filepath.Join(tw.dir, file+".pem"))
				dt.GetCommonTlsContext().GetTlsCertificates()[0].PrivateKey = fileDataSource(filepath.Join(tw.dir, file+"-key.pem"))
				anyTLS, err := anypb.New(&dt)
				if err != nil {
					t.Fatal(err)
				}
				fc.GetTransportSocket().ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: anyTLS}
				return fc
			}
			// A TLS tcp_proxy chain for tcp.example.net, to a cluster of
			// the update.
			tcpChain := withCert([]string{"tcp.example.net"}, "server")
			tcpAny, err := anypb.New(&tcpproxyv3.TcpProxy{StatPrefix: "tls-tcp", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "tcp-backend"}})
			if err != nil {
				t.Fatal(err)
			}
			tcpChain.Filters = []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tcpAny}}}
			l.FilterChains = append(l.FilterChains, withCert([]string{"a.example.com"}, "a"), withCert([]string{"*.example.org"}, "org"), tcpChain)
		}
		out.Listeners = append(out.Listeners, l)
	}
	out.Clusters = append(out.Clusters, staticCluster1("tcp-backend", "10.99.0.1", 7000))
	if err := tw.h.p.Update(tlsGatewayID, out); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sni  string
		want *big.Int
	}{
		{"a.example.com", a.serial},
		{"x.example.org", org.serial},
		{gwServerName, tw.server.serial},
		{"", tw.server.serial},
	} {
		cfg := tw.tlsConfig(nil)
		cfg.ServerName = tc.sni
		if tc.sni == "" {
			cfg.InsecureSkipVerify = true
		}
		if got := serverSerial(t, tw.permissive, cfg); got.Cmp(tc.want) != 0 {
			t.Errorf("SNI %q: server certificate %v, want %v", tc.sni, got, tc.want)
		}
	}
	// Plaintext still takes the raw_buffer chain.
	if resp, _, err := do(tw.client(t, tw.permissive, nil, false), "http://"+gwServerName+"/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("plaintext after adding server name chains: %v %v", resp, err)
	}

	// TCP over TLS: the banner, then the byte count after a half-close.
	cfg := tw.tlsConfig(nil)
	cfg.ServerName = "tcp.example.net"
	cfg.InsecureSkipVerify = true
	conn, err := tls.Dial("tcp", tw.permissive, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	banner, err := br.ReadString('\n')
	if err != nil || banner != "hello\n" {
		t.Fatalf("banner over TLS: %q %v", banner, err)
	}
	if _, err := io.WriteString(conn, "12345"); err != nil {
		t.Fatal(err)
	}
	if err := conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "got 5 bytes\n" {
		t.Errorf("tcp over TLS: got %q", rest)
	}
}

// TestCompileDownstreamTLSErrors checks what the compiler refuses.
func TestCompileDownstreamTLSErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	srv := ca.issue(t, x509.ExtKeyUsageServerAuth, "s.example")
	srv.write(t, dir, "s")
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	cert := []*tlsv3.TlsCertificate{{CertificateChain: fileDataSource(filepath.Join(dir, "s.pem")), PrivateKey: fileDataSource(filepath.Join(dir, "s-key.pem"))}}
	vc := func(sans ...*tlsv3.SubjectAltNameMatcher) *tlsv3.CommonTlsContext_ValidationContext {
		return &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: fileDataSource(filepath.Join(dir, "ca.pem")), MatchTypedSubjectAltNames: sans,
		}}
	}
	for _, tc := range []struct {
		name string
		dt   *tlsv3.DownstreamTlsContext
		http bool
		want string // "" compiles
	}{
		{"file certificate", &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificates: cert}}, true, ""},
		{"no certificate", &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{}}, true, "no tls_certificates"},
		{"require without validation", &tlsv3.DownstreamTlsContext{
			CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificates: cert}, RequireClientCertificate: wrapperspb.Bool(true),
		}, true, "needs a validation context"},
		{"ALPN an HCM cannot serve", &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificates: cert, AlpnProtocols: []string{"h3"}}}, true, `"h3"`},
		{"any ALPN for tcp_proxy", &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificates: cert, AlpnProtocols: []string{"postgresql"}}}, false, ""},
		{"prefix SAN matcher", &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificates: cert, ValidationContextType: vc(&tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: prefixMatcher("checkout")}),
		}}, true, "exact"},
		{"SDS validation context", &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificates: cert, ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ca"}},
		}}, true, "not supported yet"},
		{"mTLS", &tlsv3.DownstreamTlsContext{
			CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificates: cert, ValidationContextType: vc()}, RequireClientCertificate: wrapperspb.Bool(true),
		}, true, ""},
	} {
		a, err := anypb.New(tc.dt)
		if err != nil {
			t.Fatal(err)
		}
		ts := &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
		ct, err := compileDownstreamTLS(ts, []string{alpnH2, alpnHTTP11}, tc.http)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.want)
		case tc.want == "" && tc.name == "file certificate" && strings.Join(ct.config.NextProtos, ",") != "h2,http/1.1":
			t.Errorf("%s: ALPN %v", tc.name, ct.config.NextProtos)
		case tc.want == "" && tc.name == "mTLS" && ct.config.ClientAuth != tls.RequireAnyClientCert:
			t.Errorf("%s: client auth %v", tc.name, ct.config.ClientAuth)
		}
	}
}

func fileDataSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

func prefixMatcher(p string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: p}}
}

// staticCluster1 is a STATIC cluster with one endpoint.
func staticCluster1(name, addr string, port uint32) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
				}}},
			}}}},
		}}},
	}
}

// TestDownstreamTLSWithoutTransportMatch checks a TLS chain that names no
// transport protocol (no inspection): every connection gets the TLS
// handshake, and a plaintext one fails it.
func TestDownstreamTLSWithoutTransportMatch(t *testing.T) {
	tw := newTLSWorld(t)
	res := tw.h.w.resources(t, tlsGatewayID)
	out := res
	out.Listeners = nil
	for _, l := range res.Listeners {
		if l.GetName() == gwListener(8445) {
			l = proto.Clone(l).(*listenerv3.Listener)
			l.GetFilterChains()[0].GetFilterChainMatch().TransportProtocol = ""
			l.ListenerFilters = nil
		}
		out.Listeners = append(out.Listeners, l)
	}
	if err := tw.h.p.Update(tlsGatewayID, out); err != nil {
		t.Fatal(err)
	}
	resp, _, err := do(tw.client(t, tw.strictAnySAN, tw.tlsConfig(tw.checkout), true), "https://"+gwServerName+"/")
	if err != nil || resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("TLS: %v %v", resp, err)
	}
	if _, _, err := do(tw.client(t, tw.strictAnySAN, nil, false), "http://"+gwServerName+"/"); err == nil {
		t.Error("plaintext was served by a TLS-only chain")
	}
	tw.waitRejected(t, rejectTLSHandshake, 1)
}
