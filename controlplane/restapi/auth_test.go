// SPDX-License-Identifier: Apache-2.0

package restapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/controlplane/restapi"
	"github.com/weft-mesh/weft/controlplane/store/boltstore"
	"github.com/weft-mesh/weft/pkg/api"
)

func handler(t *testing.T, auth *restapi.Authenticator) http.Handler {
	t.Helper()
	st, err := boltstore.Open(t.TempDir()+"/weft.db", boltstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	svc, err := resources.New(st, resources.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := restapi.New(svc, restapi.Options{Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestBearerToken(t *testing.T) {
	srv := httptest.NewServer(handler(t, restapi.NewAuthenticator(restapi.AuthConfig{BearerTokens: []string{"s3cret"}})))
	defer srv.Close()
	for _, tc := range []struct {
		name, authz string
		want        int
	}{
		{"none", "", http.StatusForbidden},
		{"wrong", "Bearer nope", http.StatusForbidden},
		{"right", "Bearer s3cret", http.StatusOK},
		{"unchecked sigv4 is not a credential", "AWS4-HMAC-SHA256 Credential=x/20260101/r/appmesh/aws4_request, SignedHeaders=host, Signature=00", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v20190125/meshes", nil)
			if tc.authz != "" {
				req.Header.Set("Authorization", tc.authz)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusForbidden && resp.Header.Get("X-Amzn-Errortype") != "ForbiddenException" {
				t.Errorf("error type %q", resp.Header.Get("X-Amzn-Errortype"))
			}
		})
	}
}

func TestClientCertificate(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weft test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(cn string, signer *x509.Certificate, signerKey *ecdsa.PrivateKey) tls.Certificate {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		if signer == nil {
			signer, signerKey = tmpl, k
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &k.PublicKey, signerKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	srv := httptest.NewUnstartedServer(handler(t, restapi.NewAuthenticator(restapi.AuthConfig{ClientCertificates: true})))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	srv.TLS = &tls.Config{ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	get := func(cert *tls.Certificate) (int, error) {
		c := srv.Client()
		tr := c.Transport.(*http.Transport).Clone()
		if cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
		c.Transport = tr
		resp, err := c.Get(srv.URL + "/v20190125/meshes")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(nil); err != nil || code != http.StatusForbidden {
		t.Errorf("no certificate: %d %v, want 403", code, err)
	}
	good := leaf("operator", ca, caKey)
	if code, err := get(&good); err != nil || code != http.StatusOK {
		t.Errorf("a certificate from the CA: %d %v, want 200", code, err)
	}
	self := leaf("intruder", nil, nil)
	if code, err := get(&self); err == nil && code == http.StatusOK {
		t.Errorf("a self-signed certificate was accepted")
	}
}

func TestErrorShape(t *testing.T) {
	srv := httptest.NewServer(handler(t, nil))
	defer srv.Close()
	do := func(method, path, body string) (*http.Response, api.ErrorBody) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var eb api.ErrorBody
		_ = json.Unmarshal(b, &eb)
		return resp, eb
	}
	resp, eb := do(http.MethodPut, "/v20190125/meshes", `{"meshName":"m","spec":{"egressFilter":{"type":"SOMETIMES"}}}`)
	if resp.StatusCode != 400 || resp.Header.Get("X-Amzn-Errortype") != "BadRequestException" || len(eb.Fields) == 0 || eb.Fields[0].Field != "spec.egressFilter.type" {
		t.Errorf("bad enum: %d %+v", resp.StatusCode, eb)
	}
	resp, eb = do(http.MethodPut, "/v20190125/meshes", `{"meshName":"m","spec":{},"colour":"red"}`)
	if resp.StatusCode != 400 || !strings.Contains(eb.Message, "colour") {
		t.Errorf("unknown field: %d %+v", resp.StatusCode, eb)
	}
	resp, eb = do(http.MethodPut, "/v20190125/meshes", `{"meshName":"m","spec":{"egressFilter":{"type":7}}}`)
	if resp.StatusCode != 400 || len(eb.Fields) == 0 || eb.Fields[0].Field != "spec.egressFilter.type" {
		t.Errorf("wrong JSON type: %d %+v", resp.StatusCode, eb)
	}
	resp, eb = do(http.MethodGet, "/v20190125/meshes/nope", "")
	if resp.StatusCode != 404 || eb.Code != "NotFoundException" {
		t.Errorf("missing mesh: %d %+v", resp.StatusCode, eb)
	}
	resp, _ = do(http.MethodPatch, "/v20190125/meshes/nope", "")
	if resp.StatusCode == 200 {
		t.Errorf("PATCH answered 200")
	}
}
