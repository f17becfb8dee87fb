// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weft-mesh/weft/agent/proxy"
)

const (
	transportSocketTLS = "envoy.transport_sockets.tls"
	transportSocketRaw = "envoy.transport_sockets.raw_buffer"
)

// tlsSpec is a compiled UpstreamTlsContext.
type tlsSpec struct {
	config *tls.Config // clone before use
	// fingerprint covers the proto and the bytes of every file it names,
	// so that rotated files give new pools on the next update.
	fingerprint string
}

// errSDS is returned for TLS material that would come over SDS.
var errSDS = errors.New("tls: SDS secrets are not supported yet; use file certificates")

// compileTLS turns a cluster's transport socket into a client TLS config:
// certificates and the trusted CA from files (or inline), SNI, SAN matchers
// and ALPN. Without a validation context the server is not verified (the
// §12 behaviour toward a file-certificate listener without client policy).
func compileTLS(ts *corev3.TransportSocket, http2 bool) (*tlsSpec, error) {
	switch ts.GetName() {
	case transportSocketRaw:
		return nil, nil
	case transportSocketTLS, "tls":
	default:
		if ts.GetTypedConfig() == nil {
			return nil, fmt.Errorf("transport socket %q not supported", ts.GetName())
		}
	}
	var up tlsv3.UpstreamTlsContext
	if ts.GetTypedConfig() == nil || ts.GetTypedConfig().UnmarshalTo(&up) != nil {
		return nil, fmt.Errorf("transport socket %q: want an UpstreamTlsContext", ts.GetName())
	}
	h := sha256.New()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&up)
	if err != nil {
		return nil, fmt.Errorf("tls: marshal: %w", err)
	}
	h.Write(b)
	read := func(ds *corev3.DataSource) ([]byte, error) {
		var data []byte
		switch s := ds.GetSpecifier().(type) {
		case *corev3.DataSource_Filename:
			data, err = os.ReadFile(s.Filename)
			if err != nil {
				return nil, fmt.Errorf("tls: %w", err)
			}
		case *corev3.DataSource_InlineBytes:
			data = s.InlineBytes
		case *corev3.DataSource_InlineString:
			data = []byte(s.InlineString)
		default:
			return nil, fmt.Errorf("tls: data source %T not supported", s)
		}
		h.Write(data)
		return data, nil
	}

	if up.GetAutoHostSni() || up.GetAutoSniSanValidation() || up.GetAllowRenegotiation() {
		return nil, errors.New("tls: auto_host_sni, auto_sni_san_validation and allow_renegotiation not supported")
	}
	ctc := up.GetCommonTlsContext()
	cfg := &tls.Config{
		ServerName: up.GetSni(),
		MinVersion: tls.VersionTLS12, // Envoy's client default
		NextProtos: slices.Clone(ctc.GetAlpnProtocols()),
		// Verification is done in VerifyConnection: Envoy checks the chain
		// and the configured SANs, never the host name against the SNI.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
	}
	if len(cfg.NextProtos) == 0 && http2 {
		cfg.NextProtos = []string{"h2"}
	}
	if err := proxy.ApplyCommonTLS(ctc, cfg, "tls", errSDS); err != nil {
		return nil, err
	}
	switch n := len(ctc.GetTlsCertificates()); {
	case n > 1:
		return nil, fmt.Errorf("tls: %d client certificates; at most one is supported", n)
	case n == 1:
		tc := ctc.GetTlsCertificates()[0]
		chain, err := read(tc.GetCertificateChain())
		if err != nil {
			return nil, err
		}
		key, err := read(tc.GetPrivateKey())
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(chain, key)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}

	var vc *tlsv3.CertificateValidationContext
	switch v := ctc.GetValidationContextType().(type) {
	case nil:
	case *tlsv3.CommonTlsContext_ValidationContext:
		vc = v.ValidationContext
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		if v.CombinedValidationContext.GetValidationContextSdsSecretConfig() != nil {
			return nil, errSDS
		}
		vc = v.CombinedValidationContext.GetDefaultValidationContext()
	default:
		return nil, errSDS
	}
	if vc != nil {
		if vc.GetTrustedCa() == nil {
			return nil, errors.New("tls: a validation context needs trusted_ca")
		}
		if vc.GetCrl() != nil || len(vc.GetVerifyCertificateHash()) > 0 || len(vc.GetVerifyCertificateSpki()) > 0 ||
			vc.GetCustomValidatorConfig() != nil || vc.GetSystemRootCerts() != nil || len(vc.GetMatchSubjectAltNames()) > 0 || //nolint:staticcheck // rejecting deprecated fields too
			vc.GetTrustChainVerification() != tlsv3.CertificateValidationContext_VERIFY_TRUST_CHAIN {
			return nil, errors.New("tls: only trusted_ca and match_typed_subject_alt_names are supported in the validation context")
		}
		pem, err := read(vc.GetTrustedCa())
		if err != nil {
			return nil, err
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, errors.New("tls: trusted_ca holds no PEM certificate")
		}
		sans := vc.GetMatchTypedSubjectAltNames()
		for _, m := range sans {
			if _, ok := m.GetMatcher().GetMatchPattern().(*matcherv3.StringMatcher_Exact); !ok || m.GetMatcher().GetIgnoreCase() {
				return nil, errors.New("tls: only exact, case-sensitive SAN matchers are supported")
			}
		}
		allowExpired := vc.GetAllowExpiredCertificate()
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyPeer(cs, roots, sans, allowExpired)
		}
	}
	return &tlsSpec{config: cfg, fingerprint: hex.EncodeToString(h.Sum(nil))}, nil
}

// verifyPeer checks the server's chain against roots and, when matchers are
// given, that one of its SANs matches one of them.
func verifyPeer(cs tls.ConnectionState, roots *x509.CertPool, sans []*tlsv3.SubjectAltNameMatcher, allowExpired bool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: server sent no certificate")
	}
	leaf := cs.PeerCertificates[0]
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if allowExpired {
		opts.CurrentTime = leaf.NotBefore
	}
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("tls: verify server certificate: %w", err)
	}
	if len(sans) == 0 || proxy.SANMatches(leaf, sans) {
		return nil
	}
	return errors.New("tls: server certificate matches none of the subject alternative names")
}
