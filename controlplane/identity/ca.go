// SPDX-License-Identifier: Apache-2.0

package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

// Defaults of Config.
const (
	DefaultTrustDomain = "weft.mesh"
	DefaultCertTTL     = 24 * time.Hour
	caValidity         = 10 * 365 * 24 * time.Hour
)

// Config configures the CA.
type Config struct {
	// Dir holds ca.pem and ca-key.pem. Required by New.
	Dir string
	// TrustDomain is the SPIFFE trust domain. Default DefaultTrustDomain.
	TrustDomain string
	// CertTTL is the validity of issued certificates. Default
	// DefaultCertTTL.
	CertTTL time.Duration
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

var trustDomainRE = regexp.MustCompile(`^[a-z0-9._-]+$`)

// Validate reports every problem of the settings (Dir aside).
func (c Config) Validate() error {
	var errs []error
	if c.TrustDomain != "" && !trustDomainRE.MatchString(c.TrustDomain) {
		errs = append(errs, fmt.Errorf("identity.trustDomain %q: want lower-case letters, digits, '.', '-', '_'", c.TrustDomain))
	}
	if c.CertTTL < 0 || (c.CertTTL > 0 && c.CertTTL < time.Minute) {
		errs = append(errs, fmt.Errorf("identity.certTTL %v: want at least 1m", c.CertTTL))
	}
	return errors.Join(errs...)
}

// CA is the mesh CA.
type CA struct {
	td     string
	ttl    time.Duration
	now    func() time.Time
	cert   *x509.Certificate
	key    crypto.Signer
	bundle []byte
}

// New loads the CA from cfg.Dir, or creates it there when the directory
// holds none.
func New(cfg Config) (*CA, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Dir == "" {
		return nil, errors.New("identity: dir is required")
	}
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = DefaultTrustDomain
	}
	if cfg.CertTTL == 0 {
		cfg.CertTTL = DefaultCertTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ca := &CA{td: cfg.TrustDomain, ttl: cfg.CertTTL, now: cfg.Now}
	certFile, keyFile := filepath.Join(cfg.Dir, "ca.pem"), filepath.Join(cfg.Dir, "ca-key.pem")
	certPEM, cerr := os.ReadFile(certFile)
	keyPEM, kerr := os.ReadFile(keyFile)
	switch {
	case cerr == nil && kerr == nil:
	case errors.Is(cerr, os.ErrNotExist) && errors.Is(kerr, os.ErrNotExist):
		var err error
		if certPEM, keyPEM, err = ca.create(); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		// The key first: a certificate without its key is never left.
		if err := writeFile(keyFile, keyPEM); err != nil {
			return nil, err
		}
		if err := writeFile(certFile, certPEM); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("identity: load the CA from %s: %w", cfg.Dir, errors.Join(cerr, kerr))
	}
	if err := ca.load(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("identity: load the CA from %s: %w", cfg.Dir, err)
	}
	return ca, nil
}

func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	return nil
}

func (ca *CA) create() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: CA key: %w", err)
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: serialNumber(), Subject: pkix.Name{CommonName: "weft mesh CA " + ca.td},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(caValidity),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs: []*url.URL{{Scheme: "spiffe", Host: ca.td}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: CA certificate: %w", err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), nil
}

func (ca *CA) load(certPEM, keyPEM []byte) error {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return errors.New("ca.pem or ca-key.pem holds no PEM block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return fmt.Errorf("ca.pem: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return fmt.Errorf("ca-key.pem: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return errors.New("ca-key.pem: not a signing key")
	}
	if !cert.IsCA {
		return errors.New("ca.pem: not a CA certificate")
	}
	ca.cert, ca.key, ca.bundle = cert, signer, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	return nil
}

func serialNumber() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n.Add(n, big.NewInt(1))
}

// TrustBundle is the CA certificate (PEM).
func (ca *CA) TrustBundle() []byte { return slices.Clone(ca.bundle) }

// TrustDomain is the SPIFFE trust domain.
func (ca *CA) TrustDomain() string { return ca.td }

// segmentRE is what a node, mesh or virtual node name may be as a SPIFFE
// path segment.
var segmentRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// SpiffeID returns the SPIFFE id of identity ("" for node's own; else
// mesh/<mesh>/virtualNode/<name> or mesh/<mesh>/virtualGateway/<name>).
func SpiffeID(td, node, identity string) (*url.URL, error) {
	if identity == "" {
		if !segmentRE.MatchString(node) {
			return nil, fmt.Errorf("node %q: not a SPIFFE path segment", node)
		}
		return &url.URL{Scheme: "spiffe", Host: td, Path: "/node/" + node}, nil
	}
	parts := strings.Split(identity, "/")
	if len(parts) != 4 || parts[0] != "mesh" || (parts[2] != "virtualNode" && parts[2] != "virtualGateway") ||
		!segmentRE.MatchString(parts[1]) || !segmentRE.MatchString(parts[3]) {
		return nil, fmt.Errorf("identity %q: want mesh/<mesh>/virtualNode/<name> or mesh/<mesh>/virtualGateway/<name>", identity)
	}
	return &url.URL{Scheme: "spiffe", Host: td, Path: "/" + identity}, nil
}

// Sign certifies the public key of a PKCS #10 request for id, for client
// and server authentication, and returns the certificate (PEM).
func (ca *CA) Sign(csrDER []byte, id *url.URL) ([]byte, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	now := ca.now()
	notAfter := now.Add(ca.ttl)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serialNumber(), Subject: pkix.Name{},
		NotBefore: now.Add(-time.Minute), NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		URIs:        []*url.URL{id},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// Service is the Identity gRPC service.
type Service struct {
	nodeapiv1.UnimplementedIdentityServer
	ca *CA
	// served returns the node ids of the virtual nodes node runs a
	// registered workload of.
	served func(node string) []string
}

// NewService serves ca; served gives the virtual nodes of a node's
// registered workloads (the registry).
func NewService(ca *CA, served func(node string) []string) *Service {
	return &Service{ca: ca, served: served}
}

// Sign implements nodeapiv1.IdentityServer.
func (s *Service) Sign(_ context.Context, req *nodeapiv1.SignRequest) (*nodeapiv1.SignResponse, error) {
	if req.GetNode() == "" {
		return nil, status.Error(codes.InvalidArgument, "node: is required")
	}
	id, err := SpiffeID(s.ca.td, req.GetNode(), req.GetIdentity())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if strings.Contains(req.GetIdentity(), "/virtualNode/") && !slices.Contains(s.served(req.GetNode()), req.GetIdentity()) {
		return nil, status.Errorf(codes.PermissionDenied, "node %s runs no registered workload of %s", req.GetNode(), req.GetIdentity())
	}
	chain, err := s.ca.Sign(req.GetCsr(), id)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &nodeapiv1.SignResponse{CertificateChain: chain, TrustBundle: s.ca.TrustBundle(), SpiffeId: id.String()}, nil
}
