// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
)

// Downstream TLS (a filter chain's transport_socket with a
// DownstreamTlsContext) is compiled here, by the filter chain compiler that
// every listener uses: gateway listeners today, the inbound side later.
//
// Certificates, keys and CAs are read from their files when the update is
// compiled. They are not watched: as in App Mesh (file certificates are
// not reloaded on change), a rotated file is picked up by the next update
// of the node id, or by pointing the configuration at a new path.

// ALPN protocol ids.
const (
	alpnH2     = "h2"
	alpnHTTP11 = "http/1.1"
	alpnHTTP10 = "http/1.0"
)

// errDownstreamSDS rejects TLS material that would come over SDS.
var errDownstreamSDS = errors.New("downstream TLS: SDS secrets are not supported yet (the controller does not serve them either); use file certificates")

// chainTLS is a compiled DownstreamTlsContext.
type chainTLS struct {
	config *tls.Config // shared by every connection of the chain; never modified
	// timeout bounds the handshake (the chain's
	// transport_socket_connect_timeout); 0: Config.TLSHandshakeTimeout.
	timeout time.Duration
}

// handshake runs the server side of the TLS handshake on a connection the
// chain took. raw is the accepted connection (the deadline is set on it).
func (t *chainTLS) handshake(ctx context.Context, raw net.Conn, tc *tls.Conn, timeout time.Duration) error {
	if t.timeout > 0 {
		timeout = t.timeout
	}
	_ = raw.SetDeadline(time.Now().Add(timeout))
	err := tc.HandshakeContext(ctx)
	_ = raw.SetDeadline(time.Time{})
	return err
}

// compileDownstreamTLS turns a filter chain's transport socket into a
// server TLS config: certificates from files (or inline), the client
// certificate validation (trusted_ca, exact SAN matchers,
// require_client_certificate) and ALPN (alpn_protocols, else alpn). It
// returns nil for a raw_buffer socket. httpChain restricts the ALPN protocols to
// those an HTTP connection manager can serve.
func compileDownstreamTLS(ts *corev3.TransportSocket, alpn []string, httpChain bool) (*chainTLS, error) {
	switch ts.GetName() {
	case wellknown.TransportSocketRawBuffer:
		return nil, nil
	case wellknown.TransportSocketTLS, "tls":
	default:
		if ts.GetTypedConfig() == nil {
			return nil, fmt.Errorf("transport socket %q is not supported", ts.GetName())
		}
	}
	var dt tlsv3.DownstreamTlsContext
	if ts.GetTypedConfig() == nil || ts.GetTypedConfig().UnmarshalTo(&dt) != nil {
		return nil, fmt.Errorf("transport socket %q: want a DownstreamTlsContext", ts.GetName())
	}
	if dt.GetSessionTicketKeys() != nil || dt.GetSessionTicketKeysSdsSecretConfig() != nil || dt.GetOcspStaplePolicy() == tlsv3.DownstreamTlsContext_MUST_STAPLE ||
		dt.GetOcspStaplePolicy() == tlsv3.DownstreamTlsContext_STRICT_STAPLING {
		return nil, errors.New("downstream TLS: session_ticket_keys and OCSP stapling are not supported")
	}
	ctc := dt.GetCommonTlsContext()
	cfg := &tls.Config{
		MinVersion:             tls.VersionTLS12, // Envoy's server default
		SessionTicketsDisabled: dt.GetDisableStatelessSessionResumption(),
	}
	if err := ApplyCommonTLS(ctc, cfg, "downstream TLS", errDownstreamSDS); err != nil {
		return nil, err
	}

	// ALPN: the context's list, else what the connection manager speaks.
	cfg.NextProtos = slices.Clone(ctc.GetAlpnProtocols())
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = slices.Clone(alpn)
	}
	if httpChain {
		for _, p := range cfg.NextProtos {
			if p != alpnH2 && p != alpnHTTP11 && p != alpnHTTP10 {
				return nil, fmt.Errorf("downstream TLS: ALPN protocol %q cannot be served by an HTTP connection manager (h2, http/1.1 and http/1.0 can)", p)
			}
		}
	}

	if len(ctc.GetTlsCertificates()) == 0 {
		return nil, errors.New("downstream TLS: no tls_certificates")
	}
	for i, tc := range ctc.GetTlsCertificates() {
		if tc.GetPassword() != nil || tc.GetPrivateKeyProvider() != nil || tc.GetPkcs12() != nil || tc.GetOcspStaple() != nil || tc.GetTlsParams() != nil {
			return nil, fmt.Errorf("downstream TLS: certificate %d: only certificate_chain and private_key are supported", i)
		}
		chain, chainName, err := readDataSource(tc.GetCertificateChain())
		if err != nil {
			return nil, fmt.Errorf("downstream TLS: certificate %d: certificate_chain: %w", i, err)
		}
		key, keyName, err := readDataSource(tc.GetPrivateKey())
		if err != nil {
			return nil, fmt.Errorf("downstream TLS: certificate %d: private_key: %w", i, err)
		}
		cert, err := tls.X509KeyPair(chain, key)
		if err != nil {
			return nil, fmt.Errorf("downstream TLS: certificate %s with key %s: %w", chainName, keyName, err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}

	var vc *tlsv3.CertificateValidationContext
	switch v := ctc.GetValidationContextType().(type) {
	case nil:
	case *tlsv3.CommonTlsContext_ValidationContext:
		vc = v.ValidationContext
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		if v.CombinedValidationContext.GetValidationContextSdsSecretConfig() != nil {
			return nil, errDownstreamSDS
		}
		vc = v.CombinedValidationContext.GetDefaultValidationContext()
	default:
		return nil, errDownstreamSDS
	}
	required := dt.GetRequireClientCertificate().GetValue()
	if vc == nil {
		if required {
			return nil, errors.New("downstream TLS: require_client_certificate needs a validation context with trusted_ca")
		}
	} else {
		verify, err := compileClientValidation(vc, required)
		if err != nil {
			return nil, err
		}
		// The client's certificate is asked for whenever there is a
		// validation context, and required with require_client_certificate,
		// as in Envoy. The chain and the SANs are checked in
		// VerifyConnection (Go's own client verification would also insist
		// on the clientAuth extended key usage, which Envoy does not).
		cfg.ClientAuth = tls.RequestClientCert
		if required {
			cfg.ClientAuth = tls.RequireAnyClientCert
		}
		cfg.VerifyConnection = verify
	}
	if dt.GetRequireSni().GetValue() {
		cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			if h.ServerName == "" {
				return nil, errors.New("tls: the client sent no server name (require_sni)")
			}
			return nil, nil
		}
	}
	return &chainTLS{config: cfg}, nil
}

// compileClientValidation compiles a listener's validation context into a
// check of the client's certificate: chained to trusted_ca and, when SAN
// matchers are given, carrying one of them.
func compileClientValidation(vc *tlsv3.CertificateValidationContext, required bool) (func(tls.ConnectionState) error, error) {
	if vc.GetTrustedCa() == nil {
		return nil, errors.New("downstream TLS: a validation context needs trusted_ca")
	}
	if vc.GetCrl() != nil || len(vc.GetVerifyCertificateHash()) > 0 || len(vc.GetVerifyCertificateSpki()) > 0 ||
		vc.GetCustomValidatorConfig() != nil || vc.GetSystemRootCerts() != nil || len(vc.GetMatchSubjectAltNames()) > 0 || //nolint:staticcheck // rejecting deprecated fields too
		vc.GetTrustChainVerification() != tlsv3.CertificateValidationContext_VERIFY_TRUST_CHAIN || vc.GetMaxVerifyDepth() != nil {
		return nil, errors.New("downstream TLS: only trusted_ca, match_typed_subject_alt_names and allow_expired_certificate are supported in the validation context")
	}
	pem, name, err := readDataSource(vc.GetTrustedCa())
	if err != nil {
		return nil, fmt.Errorf("downstream TLS: trusted_ca: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("downstream TLS: trusted_ca %s holds no PEM certificate", name)
	}
	sans := vc.GetMatchTypedSubjectAltNames()
	for _, m := range sans {
		if _, ok := m.GetMatcher().GetMatchPattern().(*matcherv3.StringMatcher_Exact); !ok || m.GetMatcher().GetIgnoreCase() {
			return nil, errors.New("downstream TLS: only exact, case-sensitive SAN matchers are supported")
		}
		if m.GetSanType() == tlsv3.SubjectAltNameMatcher_SAN_TYPE_UNSPECIFIED || m.GetSanType() == tlsv3.SubjectAltNameMatcher_OTHER_NAME {
			return nil, fmt.Errorf("downstream TLS: SAN type %s is not supported", m.GetSanType())
		}
	}
	allowExpired := vc.GetAllowExpiredCertificate()
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			if required {
				return errors.New("tls: the client sent no certificate")
			}
			return nil
		}
		return verifyClientCert(cs.PeerCertificates, roots, sans, allowExpired)
	}, nil
}

// verifyClientCert checks a client's chain against roots and, when matchers
// are given, that one of its SANs matches one of them.
func verifyClientCert(certs []*x509.Certificate, roots *x509.CertPool, sans []*tlsv3.SubjectAltNameMatcher, allowExpired bool) error {
	leaf := certs[0]
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if allowExpired {
		opts.CurrentTime = leaf.NotBefore
	}
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("tls: verify client certificate: %w", err)
	}
	if len(sans) == 0 || SANMatches(leaf, sans) {
		return nil
	}
	return errors.New("tls: client certificate matches none of the subject alternative names")
}

// SANMatches tells whether one of the certificate's SANs matches one of the
// (exact) matchers. A DNS matcher also matches a wildcard SAN covering it.
// Downstream TLS uses it for client certificates, and the upstream TLS of
// package cluster for server certificates.
func SANMatches(leaf *x509.Certificate, sans []*tlsv3.SubjectAltNameMatcher) bool {
	for _, m := range sans {
		want := m.GetMatcher().GetExact()
		switch m.GetSanType() {
		case tlsv3.SubjectAltNameMatcher_DNS:
			for _, n := range leaf.DNSNames {
				if dnsSANMatch(n, want) {
					return true
				}
			}
		case tlsv3.SubjectAltNameMatcher_URI:
			for _, u := range leaf.URIs {
				if u.String() == want {
					return true
				}
			}
		case tlsv3.SubjectAltNameMatcher_EMAIL:
			if slices.Contains(leaf.EmailAddresses, want) {
				return true
			}
		case tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
			ip := net.ParseIP(want)
			for _, a := range leaf.IPAddresses {
				if ip != nil && a.Equal(ip) {
					return true
				}
			}
		}
	}
	return false
}

// dnsSANMatch is Envoy's DNS SAN match: equal, or a certificate wildcard
// "*.example.com" covering exactly one label of want.
func dnsSANMatch(certName, want string) bool {
	if certName == want {
		return true
	}
	rest, ok := strings.CutPrefix(certName, "*.")
	if !ok {
		return false
	}
	i := strings.IndexByte(want, '.')
	return i > 0 && want[i+1:] == rest
}

// readDataSource reads a file or inline data source; name is the file
// name, or "inline".
func readDataSource(ds *corev3.DataSource) (data []byte, name string, err error) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_Filename:
		data, err := os.ReadFile(s.Filename)
		if err != nil {
			return nil, s.Filename, err // *PathError: names the file
		}
		return data, s.Filename, nil
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, "inline", nil
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), "inline", nil
	case nil:
		return nil, "", errors.New("missing")
	default:
		return nil, "", fmt.Errorf("data source %T is not supported", s)
	}
}

// ApplyCommonTLS refuses what weft-proxy's TLS does not support in ctc, on
// either side (SDS secrets, with sdsErr; certificate providers and custom
// handshakers; cipher suites, curves and signature algorithms), and applies
// its protocol versions to cfg. side names the side in the errors. The
// upstream side (package cluster) and the downstream side share it.
func ApplyCommonTLS(ctc *tlsv3.CommonTlsContext, cfg *tls.Config, side string, sdsErr error) error {
	if len(ctc.GetTlsCertificateSdsSecretConfigs()) > 0 {
		return sdsErr
	}
	if ctc.GetTlsCertificateProviderInstance() != nil || ctc.GetTlsCertificateCertificateProvider() != nil || //nolint:staticcheck // rejecting deprecated fields too
		ctc.GetTlsCertificateCertificateProviderInstance() != nil || ctc.GetCustomHandshaker() != nil || //nolint:staticcheck // rejecting deprecated fields too
		ctc.GetCustomTlsCertificateSelector() != nil {
		return fmt.Errorf("%s: certificate providers and custom handshakers are not supported", side)
	}
	p := ctc.GetTlsParams()
	if p == nil {
		return nil
	}
	if v, ok := TLSVersion(p.GetTlsMinimumProtocolVersion()); ok && v != 0 {
		cfg.MinVersion = v
	}
	if v, ok := TLSVersion(p.GetTlsMaximumProtocolVersion()); ok && v != 0 {
		cfg.MaxVersion = v
	}
	if len(p.GetCipherSuites()) > 0 || len(p.GetEcdhCurves()) > 0 || len(p.GetSignatureAlgorithms()) > 0 {
		return fmt.Errorf("%s: cipher_suites, ecdh_curves and signature_algorithms are not supported", side)
	}
	return nil
}

// TLSVersion maps an Envoy TLS protocol version onto crypto/tls's (0 for
// TLS_AUTO); ok is false for a value it does not know.
func TLSVersion(v tlsv3.TlsParameters_TlsProtocol) (version uint16, ok bool) {
	switch v {
	case tlsv3.TlsParameters_TLS_AUTO:
		return 0, true
	case tlsv3.TlsParameters_TLSv1_0:
		return tls.VersionTLS10, true
	case tlsv3.TlsParameters_TLSv1_1:
		return tls.VersionTLS11, true
	case tlsv3.TlsParameters_TLSv1_2:
		return tls.VersionTLS12, true
	case tlsv3.TlsParameters_TLSv1_3:
		return tls.VersionTLS13, true
	}
	return 0, false
}
