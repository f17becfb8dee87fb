// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

// Log keys of the identities.
const (
	keyIdentity = "identity"
	keyExpires  = "expires"
)

// Identities keeps the proxy's tunnel certificates, issued by the
// controller's mesh CA (the Identity service next to ADS): the node's own
// (spiffe://<trust domain>/node/<node>, the tunnel listener's server
// certificate) and one per virtual node or gateway the proxy serves (the
// client certificate its tunnels present for those callers). Keys never
// leave the process; certificates are renewed at half their lifetime and
// kept in memory only. It is the TunnelSecurity of the proxy's tunnel
// listener and the cluster manager's cluster.TunnelIdentity.
type Identities struct {
	client   nodeapiv1.IdentityClient
	node     string
	listener bool // the node's own certificate is wanted
	log      *slog.Logger
	now      func() time.Time

	mu    sync.Mutex
	want  map[string]bool // "" is the node itself (listener)
	certs map[string]*tls.Certificate
	roots *x509.CertPool
	td    string
	kick  chan struct{}
	// moved is closed (and replaced) whenever want, certs or failed
	// change: what Ready waits on.
	moved chan struct{}
	// failed counts the refresh rounds that could not sign everything.
	failed int
}

// NewIdentities asks the mesh CA on conn for the certificates of the
// proxy on node: the node's own when listener (the proxy serves a tunnel
// listener), and those Set names. A proxy without a node id of its own (a
// gateway deployment) names its host in the requests.
func NewIdentities(conn grpc.ClientConnInterface, node string, listener bool, log *slog.Logger) (*Identities, error) {
	if node == "" {
		return nil, errors.New("identities: node id is required")
	}
	return &Identities{
		client: nodeapiv1.NewIdentityClient(conn), node: node, listener: listener, log: log.With(keyComponent, "identities"), now: time.Now,
		want: wantIDs(listener, nil), certs: map[string]*tls.Certificate{}, kick: make(chan struct{}, 1),
		moved: make(chan struct{}),
	}, nil
}

// wantIDs is the set of identities to hold: "" (the node's) for a tunnel
// listener, and ids.
func wantIDs(listener bool, ids []string) map[string]bool {
	want := map[string]bool{}
	if listener {
		want[""] = true
	}
	for _, id := range ids {
		want[id] = true
	}
	return want
}

// Set names the virtual nodes and gateways (node ids) the proxy serves;
// their certificates are fetched, the others dropped.
func (i *Identities) Set(ids []string) {
	want := wantIDs(i.listener, ids)
	i.mu.Lock()
	changed := !maps.Equal(want, i.want)
	i.want = want
	if changed {
		i.movedLocked()
	}
	i.mu.Unlock()
	if changed {
		select {
		case i.kick <- struct{}{}:
		default:
		}
	}
}

// movedLocked wakes Ready's waiters. i.mu is held.
func (i *Identities) movedLocked() {
	close(i.moved)
	i.moved = make(chan struct{})
}

// missing names the wanted identities without a certificate ("" is the
// node's own), and returns the failed rounds so far and the channel closed
// at the next change.
func (i *Identities) missing() ([]string, int, <-chan struct{}) {
	i.mu.Lock()
	defer i.mu.Unlock()
	var ids []string
	for id := range i.want {
		if i.certs[id] == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, i.failed, i.moved
}

// Ready returns a channel closed once after is closed and then every
// identity wanted at that time has its certificate: the node's (the
// tunnel listener's server certificate) and each virtual node's or
// gateway's (the tunnels' client certificates). A proxy waits for it
// before binding its listeners (Proxy.WaitFor), so that a new proxy in a
// hand-over neither accepts tunnel handshakes it cannot answer nor takes
// outbound connections whose tunnels it cannot open. When a round of
// signing fails after after closed (the controller is down, or refuses an
// identity) it is closed all the same, with a warning: a proxy starting
// from its cache while the controller is away serves what needs no tunnel
// (static stability) rather than nothing. The wait is logged every 10 s;
// it is never closed once ctx ends.
func (i *Identities) Ready(ctx context.Context, after <-chan struct{}) <-chan struct{} {
	ready := make(chan struct{})
	go func() {
		select {
		case <-after:
		case <-ctx.Done():
			return
		}
		_, failed0, _ := i.missing()
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			ids, failed, moved := i.missing()
			if len(ids) == 0 {
				close(ready)
				return
			}
			if failed > failed0 {
				i.log.Warn("serving without tunnel certificates the controller did not sign; their tunnels fail until it does", keyIdentity, ids)
				close(ready)
				return
			}
			select {
			case <-moved:
			case <-tick.C:
				i.log.Info("waiting for tunnel certificates before serving", keyIdentity, ids)
			case <-ctx.Done():
				return
			}
		}
	}()
	return ready
}

// Run fetches and renews the certificates until ctx ends.
func (i *Identities) Run(ctx context.Context) error {
	backoff := time.Second
	for {
		next, err := i.refresh(ctx)
		if err != nil {
			i.mu.Lock()
			i.failed++
			i.movedLocked()
			i.mu.Unlock()
			i.log.Warn("tunnel certificates", keyError, err, keyDelay, backoff)
			next = backoff
			backoff = min(2*backoff, 30*time.Second)
		} else {
			backoff = time.Second
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-i.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// refresh signs what is missing or past half its life, drops what is no
// longer wanted, and returns when to look again.
func (i *Identities) refresh(ctx context.Context) (time.Duration, error) {
	i.mu.Lock()
	want := slices.Sorted(maps.Keys(i.want))
	for id := range i.certs {
		if !i.want[id] {
			delete(i.certs, id)
		}
	}
	i.mu.Unlock()
	next := time.Hour
	var errs []error
	for _, id := range want {
		i.mu.Lock()
		c := i.certs[id]
		i.mu.Unlock()
		if c != nil {
			renew := c.Leaf.NotBefore.Add(c.Leaf.NotAfter.Sub(c.Leaf.NotBefore) / 2)
			if d := renew.Sub(i.now()); d > 0 {
				next = min(next, d)
				continue
			}
		}
		nc, roots, td, err := i.sign(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		i.mu.Lock()
		if i.want[id] {
			i.certs[id] = nc
			i.movedLocked()
		}
		i.roots, i.td = roots, td
		i.mu.Unlock()
		i.log.Info("tunnel certificate", keyIdentity, nc.Leaf.URIs[0].String(), keyExpires, nc.Leaf.NotAfter)
		next = min(next, nc.Leaf.NotAfter.Sub(nc.Leaf.NotBefore)/2)
	}
	return next, errors.Join(errs...)
}

func (i *Identities) sign(ctx context.Context, id string) (*tls.Certificate, *x509.CertPool, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, "", err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, "", err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := i.client.Sign(cctx, &nodeapiv1.SignRequest{Node: i.node, Identity: id, Csr: csr})
	if err != nil {
		return nil, nil, "", fmt.Errorf("sign %q: %w", id, err)
	}
	cert := &tls.Certificate{PrivateKey: key}
	rest := resp.GetCertificateChain()
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		cert.Certificate = append(cert.Certificate, b.Bytes)
	}
	if len(cert.Certificate) == 0 {
		return nil, nil, "", fmt.Errorf("sign %q: no certificate in the answer", id)
	}
	if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
		return nil, nil, "", fmt.Errorf("sign %q: %w", id, err)
	}
	if len(cert.Leaf.URIs) != 1 {
		return nil, nil, "", fmt.Errorf("sign %q: want one URI SAN, have %v", id, cert.Leaf.URIs)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(resp.GetTrustBundle()) {
		return nil, nil, "", fmt.Errorf("sign %q: no trust bundle", id)
	}
	return cert, roots, cert.Leaf.URIs[0].Host, nil
}

// ClientCertificate is the certificate tunnels present for the callers of
// nodeID.
func (i *Identities) ClientCertificate(nodeID string) (*tls.Certificate, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if c := i.certs[nodeID]; c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no tunnel certificate for %s yet", nodeID)
}

// Roots are the mesh CA certificates (empty before the first certificate).
func (i *Identities) Roots() *x509.CertPool {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.roots == nil {
		return x509.NewCertPool()
	}
	return i.roots
}

// NodeSPIFFEID is the identity of node's tunnel listener.
func (i *Identities) NodeSPIFFEID(node string) string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return "spiffe://" + i.td + "/node/" + node
}

// ServerConfig is the tunnel listener's TLS: the node's certificate, TLS
// 1.3, and a client certificate of the mesh CA required.
func (i *Identities) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return i.ClientCertificate("")
		},
		ClientAuth: tls.RequireAnyClientCert,
		// VerifyConnection runs on resumed sessions too.
		VerifyConnection: func(cs tls.ConnectionState) error {
			certs := cs.PeerCertificates
			if len(certs) == 0 {
				return errors.New("no client certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: i.Roots(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			return err
		},
	}
}

// CallerID is the node id (mesh/<mesh>/virtualNode/<name> or
// virtualGateway/<name>) of a tunnel client's certificate.
func (i *Identities) CallerID(cs *tls.ConnectionState) (string, error) {
	i.mu.Lock()
	td := i.td
	i.mu.Unlock()
	return callerID(cs, td)
}

// callerID reads the caller's node id from the SPIFFE id of its
// certificate in trust domain td.
func callerID(cs *tls.ConnectionState, td string) (string, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return "", errors.New("no client certificate")
	}
	for _, u := range cs.PeerCertificates[0].URIs {
		if id, ok := spiffeNodeID(u, td); ok {
			return id, nil
		}
	}
	return "", fmt.Errorf("client certificate %v names no virtual node or gateway of trust domain %s", cs.PeerCertificates[0].URIs, td)
}

func spiffeNodeID(u *url.URL, td string) (string, bool) {
	if u.Scheme != "spiffe" || u.Host != td {
		return "", false
	}
	id := strings.TrimPrefix(u.Path, "/")
	parts := strings.Split(id, "/")
	if len(parts) != 4 || parts[0] != "mesh" || (parts[2] != "virtualNode" && parts[2] != "virtualGateway") {
		return "", false
	}
	return id, true
}
