// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pki is a throw-away CA with a server and a client certificate, written
// as PEM files.
type pki struct {
	dir                          string
	caFile                       string
	serverCert                   tls.Certificate
	clientChain, clientKey       string
	pool                         *x509.CertPool
	serverChainFile, serverKeyFN string
}

func newPKI(t *testing.T, serverSAN string) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", caDER)

	leaf := func(name string, serial int64, usage x509.ExtKeyUsage, sans []string) (certPEM, keyPEM string, cert tls.Certificate) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames: sans, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		certPEM = p.write(t, name+".pem", "CERTIFICATE", der)
		keyPEM = p.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
		cert, err = tls.LoadX509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return certPEM, keyPEM, cert
	}
	p.serverChainFile, p.serverKeyFN, p.serverCert = leaf("server", 2, x509.ExtKeyUsageServerAuth, []string{serverSAN})
	p.clientChain, p.clientKey, _ = leaf("client", 3, x509.ExtKeyUsageClientAuth, []string{"checkout.shop.svc.cluster.local"})
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tlsBackend is an HTTPS backend requiring a client certificate from p's CA;
// it records the SNI it was sent.
func tlsBackend(t *testing.T, p *pki, h2 bool) (*httptest.Server, chan string) {
	t.Helper()
	sni := make(chan string, 100)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Proto", r.Proto)
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{p.serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.pool,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			sni <- hello.ServerName
			return nil, nil
		},
	}
	srv.EnableHTTP2 = h2
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, sni
}

func tlsCluster(t *testing.T, name, addr string, p *pki, san string, h2 bool) string {
	t.Helper()
	proto := ""
	if h2 {
		proto = `,"typedExtensionProtocolOptions":{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions":{
			"@type":"type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions","explicitHttpConfig":{"http2ProtocolOptions":{}}}}`
	}
	host, port, _ := net.SplitHostPort(addr)
	return `{"name":"` + name + `","type":"STATIC","connectTimeout":"1s",
		"loadAssignment":{"endpoints":[{"lbEndpoints":[{"endpoint":{"address":{"socketAddress":{"address":"` + host + `","portValue":` + port + `}}}}]}]},
		"transportSocket":{"name":"envoy.transport_sockets.tls","typedConfig":{
			"@type":"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
			"sni":"payments.shop.svc.cluster.local",
			"commonTlsContext":{
				"tlsCertificates":[{"certificateChain":{"filename":"` + p.clientChain + `"},"privateKey":{"filename":"` + p.clientKey + `"}}],
				"validationContext":{"trustedCa":{"filename":"` + p.caFile + `"},
					"matchTypedSubjectAltNames":[{"sanType":"DNS","matcher":{"exact":"` + san + `"}}]}}}}` + proto + `}`
}

func TestUpstreamTLS(t *testing.T) {
	p := newPKI(t, "*.shop.svc.cluster.local")
	for _, h2 := range []bool{false, true} {
		srv, sni := tlsBackend(t, p, h2)
		addr := srv.Listener.Addr().String()
		m, _ := newManager(t, Options{})
		update(t, m, parseCluster(t, "%s", tlsCluster(t, "tls", addr, p, "payments.shop.svc.cluster.local", h2)),
			parseCluster(t, "%s", tlsCluster(t, "wrongsan", addr, p, "payments.other.svc.cluster.local", h2)))

		c := get(t, m, "tls")
		for range 3 {
			l, err := c.acquire(t.Context(), Hints{})
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest(http.MethodGet, "http://"+l.Host()+"/", nil)
			resp, err := l.Transport().RoundTrip(req)
			if err != nil {
				t.Fatalf("h2=%v: request: %v", h2, err)
			}
			_ = resp.Body.Close()
			l.Done(resp.StatusCode, nil)
			want := "HTTP/1.1"
			if h2 {
				want = "HTTP/2.0"
			}
			if got := resp.Header.Get("X-Proto"); got != want {
				t.Errorf("backend saw %s, want %s", got, want)
			}
		}
		if got := <-sni; got != "payments.shop.svc.cluster.local" {
			t.Errorf("SNI %q", got)
		}
		// tcp_proxy over TLS.
		l, err := c.acquire(t.Context(), Hints{})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := l.Dial(t.Context())
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		if _, ok := conn.(*tls.Conn); !ok {
			t.Errorf("Dial returned %T, want a TLS connection", conn)
		}
		_ = conn.Close()
		l.Done(0, nil)

		// A SAN mismatch is a connect failure.
		if _, _, err := do(t, get(t, m, "wrongsan"), Hints{}); !errors.Is(err, ErrConnectFailure) {
			t.Errorf("h2=%v: SAN mismatch: %v, want ErrConnectFailure", h2, err)
		}
	}
}
