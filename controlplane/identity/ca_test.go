// SPDX-License-Identifier: Apache-2.0

package identity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weft-mesh/weft/controlplane/identity"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

func csr(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCAPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "identity")
	a, err := identity.New(identity.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.pem", "ca-key.pem"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v", f, err, fi.Mode())
		}
	}
	b, err := identity.New(identity.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if string(a.TrustBundle()) != string(b.TrustBundle()) || a.TrustDomain() != identity.DefaultTrustDomain {
		t.Error("a restarted CA is another CA")
	}
	// Half a CA is an error, not a new CA.
	if err := os.Remove(filepath.Join(dir, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	if _, err := identity.New(identity.Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "load the CA") {
		t.Errorf("a CA without its key: %v", err)
	}
	for _, cfg := range []identity.Config{
		{Dir: dir, TrustDomain: "Bad Domain"},
		{Dir: dir, CertTTL: time.Second},
		{},
	} {
		if _, err := identity.New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestSign(t *testing.T) {
	now := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)
	ca, err := identity.New(identity.Config{Dir: t.TempDir(), TrustDomain: "example.org", CertTTL: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	served := map[string][]string{"node-a": {"mesh/demo/virtualNode/checkout_shop"}}
	s := identity.NewService(ca, func(n string) []string { return served[n] })
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.TrustBundle())
	ctx := context.Background()
	for _, tc := range []struct {
		node, identity, want string
		code                 codes.Code
	}{
		{"node-a", "", "spiffe://example.org/node/node-a", codes.OK},
		{"node-a", "mesh/demo/virtualNode/checkout_shop", "spiffe://example.org/mesh/demo/virtualNode/checkout_shop", codes.OK},
		{"node-a", "mesh/demo/virtualGateway/gw_shop", "spiffe://example.org/mesh/demo/virtualGateway/gw_shop", codes.OK},
		{"node-a", "mesh/demo/virtualNode/payments_shop", "", codes.PermissionDenied},
		{"node-b", "mesh/demo/virtualNode/checkout_shop", "", codes.PermissionDenied},
		{"node-a", "mesh/demo/route/x", "", codes.InvalidArgument},
		{"node a", "", "", codes.InvalidArgument},
		{"", "", "", codes.InvalidArgument},
	} {
		resp, err := s.Sign(ctx, &nodeapiv1.SignRequest{Node: tc.node, Identity: tc.identity, Csr: csr(t)})
		if status.Code(err) != tc.code {
			t.Errorf("%s %q: %v, want %v", tc.node, tc.identity, err, tc.code)
			continue
		}
		if err != nil {
			continue
		}
		b, _ := pem.Decode(resp.GetCertificateChain())
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if len(cert.URIs) != 1 || cert.URIs[0].String() != tc.want || resp.GetSpiffeId() != tc.want {
			t.Errorf("%s %q: URIs %v, id %s; want %s", tc.node, tc.identity, cert.URIs, resp.GetSpiffeId(), tc.want)
		}
		if !cert.NotAfter.Equal(now.Add(time.Hour).Truncate(time.Second)) {
			t.Errorf("not after %v", cert.NotAfter)
		}
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("%s: verify for %v: %v", tc.want, usage, err)
			}
		}
		if !slices.Equal(resp.GetTrustBundle(), ca.TrustBundle()) {
			t.Error("trust bundle is not the CA")
		}
	}
	if _, err := s.Sign(ctx, &nodeapiv1.SignRequest{Node: "node-a", Csr: []byte("nope")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a bad CSR: %v", err)
	}
}
