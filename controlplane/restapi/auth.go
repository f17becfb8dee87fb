// SPDX-License-Identifier: Apache-2.0

package restapi

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// AuthConfig says which credentials the API accepts. With nothing configured
// the API is open, which the controller allows only on a loopback address.
type AuthConfig struct {
	// BearerTokens are accepted in "Authorization: Bearer <token>".
	BearerTokens []string
	// ClientCertificates accepts any request whose TLS client certificate was
	// verified against the server's client CA (the listener does the
	// verification; this only says that a verified certificate suffices).
	ClientCertificates bool
	// SigV4Keys maps AWS access key ids to secret keys. A request signed with
	// AWS Signature Version 4 by one of them is accepted after the signature
	// is checked. Without keys, SigV4 signatures are not checked and signed
	// requests count as anonymous.
	SigV4Keys map[string]string
	// MaxClockSkew bounds the age of a signed request; default 15 minutes.
	MaxClockSkew time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Authenticator checks requests against an AuthConfig.
type Authenticator struct {
	cfg  AuthConfig
	open bool
}

// NewAuthenticator returns an Authenticator for cfg.
func NewAuthenticator(cfg AuthConfig) *Authenticator {
	if cfg.MaxClockSkew <= 0 {
		cfg.MaxClockSkew = 15 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	open := len(cfg.BearerTokens) == 0 && !cfg.ClientCertificates && len(cfg.SigV4Keys) == 0
	return &Authenticator{cfg: cfg, open: open}
}

// Open reports whether the API accepts every request.
func (a *Authenticator) Open() bool { return a.open }

// Check accepts or refuses a request with a ForbiddenException. A request with
// a SigV4 signature is always checked when keys are configured, even when
// another credential would have sufficed, so that a bad signature never
// passes unnoticed.
func (a *Authenticator) Check(r *http.Request) error {
	authz := r.Header.Get("Authorization")
	if strings.HasPrefix(authz, "AWS4-HMAC-SHA256 ") && len(a.cfg.SigV4Keys) > 0 {
		if err := a.checkSigV4(r, authz); err != nil {
			return appmesh.Errorf(appmesh.ErrForbidden, "signature version 4: %v", err)
		}
		return nil
	}
	if a.open {
		return nil
	}
	if tok, ok := strings.CutPrefix(authz, "Bearer "); ok {
		for _, want := range a.cfg.BearerTokens {
			if subtle.ConstantTimeCompare([]byte(tok), []byte(want)) == 1 {
				return nil
			}
		}
		return appmesh.Errorf(appmesh.ErrForbidden, "the bearer token is not valid")
	}
	if a.cfg.ClientCertificates && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return nil
	}
	return appmesh.Errorf(appmesh.ErrForbidden, "authentication required: send a bearer token, a client certificate or an AWS SigV4 signature")
}

// checkSigV4 recomputes the signature of r with the AWS SDK's own signer over
// exactly the headers the client signed, and compares.
func (a *Authenticator) checkSigV4(r *http.Request, authz string) error {
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(authz, "AWS4-HMAC-SHA256 "), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			fields[k] = v
		}
	}
	cred := strings.Split(fields["Credential"], "/")
	if len(cred) != 5 || cred[4] != "aws4_request" || fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return fmt.Errorf("malformed Authorization header")
	}
	accessKey, region, service := cred[0], cred[2], cred[3]
	secret, ok := a.cfg.SigV4Keys[accessKey]
	if !ok {
		return fmt.Errorf("unknown access key %q", accessKey)
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("missing or malformed X-Amz-Date")
	}
	if d := a.cfg.Now().Sub(when); d > a.cfg.MaxClockSkew || d < -a.cfg.MaxClockSkew {
		return fmt.Errorf("request time %s is more than %s away from the server's clock", when.Format(time.RFC3339), a.cfg.MaxClockSkew)
	}
	if cred[1] != when.Format("20060102") {
		return fmt.Errorf("credential scope date does not match X-Amz-Date")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != payloadHash {
		return fmt.Errorf("X-Amz-Content-Sha256 does not match the body")
	}

	u := *r.URL
	u.Scheme, u.Host = "https", r.Host
	cp, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), http.NoBody) //nolint:gosec // G704: never sent, only signed
	if err != nil {
		return err
	}
	cp.URL.RawPath = r.URL.RawPath
	cp.Host = r.Host
	cp.ContentLength = r.ContentLength
	for _, h := range strings.Split(fields["SignedHeaders"], ";") {
		switch h {
		case "host", "content-length":
			continue
		}
		if vs, ok := r.Header[http.CanonicalHeaderKey(h)]; ok {
			cp.Header[http.CanonicalHeaderKey(h)] = vs
		}
	}
	cp.Header.Del("Authorization")
	creds := aws.Credentials{AccessKeyID: accessKey, SecretAccessKey: secret, SessionToken: r.Header.Get("X-Amz-Security-Token")}
	if err := v4.NewSigner().SignHTTP(r.Context(), creds, cp, payloadHash, service, region, when); err != nil {
		return fmt.Errorf("recompute signature: %w", err)
	}
	want := sigOf(cp.Header.Get("Authorization"))
	if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(fields["Signature"])) != 1 {
		return fmt.Errorf("the signature does not match")
	}
	return nil
}

func sigOf(authz string) string {
	_, sig, ok := strings.Cut(authz, "Signature=")
	if !ok {
		return ""
	}
	return sig
}
