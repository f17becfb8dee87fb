// SPDX-License-Identifier: Apache-2.0

package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/weft-mesh/weft/controlplane/dnsdisco"
	"github.com/weft-mesh/weft/controlplane/identity"
	"github.com/weft-mesh/weft/controlplane/registry"
	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/controlplane/restapi"
	"github.com/weft-mesh/weft/controlplane/store"
	"github.com/weft-mesh/weft/controlplane/store/boltstore"
	"github.com/weft-mesh/weft/controlplane/xds"
	"github.com/weft-mesh/weft/controlplane/xds/server"
)

// Config configures the controller. Flags fill DataDir and APIListen; the rest
// comes from the configuration file (YAML or JSON, these field names).
type Config struct {
	// DataDir holds the store file (weft.db).
	DataDir string `json:"dataDir"`
	// APIListen is the address of the REST API, health and metrics.
	APIListen string `json:"apiListen"`
	// Account is the 12-digit account id of resources created here.
	Account string `json:"account"`
	// Region is the region part of ARNs.
	Region string `json:"region"`
	// Quotas override App Mesh's default quotas; zero keeps the default.
	Quotas resources.Quotas `json:"quotas"`
	// Auth configures authentication of the API and of the xDS server.
	Auth AuthConfig `json:"auth"`
	// XDSListen is the address of ADS and the endpoint registry (gRPC).
	// Empty serves neither; weft-controller defaults it to 127.0.0.1:7481.
	XDSListen string `json:"xdsListen"`
	// Registry configures the endpoint registry.
	Registry RegistryConfig `json:"registry"`
	// DNS configures the resolution of serviceDiscovery.dns in the
	// controller.
	DNS DNSConfig `json:"dns"`
	// Identity configures the mesh CA (package identity), served with
	// XDSListen.
	Identity IdentityConfig `json:"identity"`
}

// IdentityConfig configures the mesh CA that issues the node proxies'
// tunnel certificates. Its key and certificate live in
// <dataDir>/identity.
type IdentityConfig struct {
	// TrustDomain is the SPIFFE trust domain. Default "weft.mesh".
	TrustDomain string `json:"trustDomain"`
	// CertTTL is the validity of issued certificates. Default 24h.
	CertTTL Duration `json:"certTTL"`
}

// DNSConfig configures how the controller resolves the DNS service
// discovery of virtual nodes without registered instances into endpoints
// (package dnsdisco, docs/xds.md).
type DNSConfig struct {
	// Interval is how often every hostname is looked up again. Default 5s;
	// "0s" turns controller-side resolution off: such nodes get DNS
	// clusters that the proxies resolve.
	Interval *Duration `json:"interval"`
	// Timeout bounds one lookup. Default: the interval, at most 5s.
	Timeout Duration `json:"timeout"`
	// Servers are the nameservers asked ("10.0.0.2" or "10.0.0.2:5353"),
	// in order, instead of those of /etc/resolv.conf. Empty: the system's.
	Servers []string `json:"servers,omitempty"`
	// Resolver replaces the system resolver (tests); not in the file.
	Resolver dnsdisco.Resolver `json:"-"`
}

// RegistryConfig configures the endpoint registry and the start of the
// snapshot pipeline.
type RegistryConfig struct {
	// TTL is the lease of a node's registration; agents renew every third
	// of it. Default 30s.
	TTL Duration `json:"ttl"`
	// WarmUp is how long after start the controller holds back snapshots so
	// that the agents re-register first (registrations live in memory).
	// Default: half the TTL; "0s" publishes at once.
	WarmUp *Duration `json:"warmUp"`
}

// Duration is a time.Duration written as a string ("30s") in the file.
type Duration time.Duration

// UnmarshalJSON reads "30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// AuthConfig configures who may call the API. With nothing set the API is
// open, which the controller accepts only when it listens on loopback (or
// AllowUnauthenticated is set).
type AuthConfig struct {
	// BearerTokenFile holds accepted bearer tokens, one per line.
	BearerTokenFile string `json:"bearerTokenFile"`
	// TLSCertFile and TLSKeyFile make the API serve HTTPS.
	TLSCertFile string `json:"tlsCertFile"`
	TLSKeyFile  string `json:"tlsKeyFile"`
	// ClientCAFile turns on mTLS: client certificates signed by this CA are
	// accepted as credentials. Needs TLSCertFile.
	ClientCAFile string `json:"clientCAFile"`
	// SigV4Keys maps access key ids to secret keys for AWS SigV4 requests.
	SigV4Keys map[string]string `json:"sigv4Keys"`
	// AllowUnauthenticated allows an open API on a non-loopback address.
	AllowUnauthenticated bool `json:"allowUnauthenticated"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("dataDir: is required"))
	}
	if _, _, err := net.SplitHostPort(c.APIListen); err != nil {
		errs = append(errs, fmt.Errorf("apiListen: %w", err))
	}
	if c.XDSListen != "" {
		if _, _, err := net.SplitHostPort(c.XDSListen); err != nil {
			errs = append(errs, fmt.Errorf("xdsListen: %w", err))
		}
	}
	if err := (registry.Config{TTL: time.Duration(c.Registry.TTL)}).Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := (identity.Config{TrustDomain: c.Identity.TrustDomain, CertTTL: time.Duration(c.Identity.CertTTL)}).Validate(); err != nil {
		errs = append(errs, err)
	}
	if w := c.Registry.WarmUp; w != nil && *w < 0 {
		errs = append(errs, errors.New("registry.warmUp: must not be negative"))
	}
	if i := c.DNS.Interval; i != nil && *i < 0 {
		errs = append(errs, errors.New("dns.interval: must not be negative"))
	}
	if c.DNS.Timeout < 0 {
		errs = append(errs, errors.New("dns.timeout: must not be negative"))
	}
	for i, s := range c.DNS.Servers {
		if _, err := dnsdisco.ParseServer(s); err != nil {
			errs = append(errs, fmt.Errorf("dns.servers[%d]: %w", i, err))
		}
	}
	a := c.Auth
	if (a.TLSCertFile == "") != (a.TLSKeyFile == "") {
		errs = append(errs, errors.New("auth: tlsCertFile and tlsKeyFile go together"))
	}
	if a.ClientCAFile != "" && a.TLSCertFile == "" {
		errs = append(errs, errors.New("auth.clientCAFile: needs tlsCertFile and tlsKeyFile"))
	}
	return errors.Join(errs...)
}

// Controller is the weft controller: the store, the resource service, the
// API server, the endpoint registry, the snapshot pipeline and the xDS
// server.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	st     store.Store
	svc    *resources.Service
	reg    *prometheus.Registry
	srv    *http.Server
	ln     net.Listener
	ready  atomic.Bool
	eps    *registry.Registry
	dns    *dnsdisco.Discovery // nil when turned off
	syncer *xds.Syncer
	xds    *server.Server // nil without XDSListen
}

// New opens the store and binds the API listener. Run serves it.
func New(ctx context.Context, cfg Config, log *slog.Logger) (_ *Controller, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Controller{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	c.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	auth, tokens, tlsCfg, err := buildAuth(cfg)
	if err != nil {
		return nil, err
	}
	st, err := boltstore.Open(filepath.Join(cfg.DataDir, "weft.db"), boltstore.Options{}, log.With("component", "store"))
	if err != nil {
		return nil, err
	}
	c.st = st
	c.svc, err = resources.New(c.st, resources.Config{Account: cfg.Account, Region: cfg.Region, Quotas: cfg.Quotas}, log.With("component", "resources"))
	if err != nil {
		return nil, err
	}
	api, err := restapi.New(c.svc, restapi.Options{Auth: auth, Registerer: c.reg, Log: log.With("component", "api")})
	if err != nil {
		return nil, err
	}
	if err := c.newXDS(ctx, tokens, tlsCfg); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("GET /weft/v1/problems", c.problemsHandler(auth))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !c.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{}))

	var lc net.ListenConfig
	c.ln, err = lc.Listen(ctx, "tcp", cfg.APIListen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.APIListen, err)
	}
	if auth.Open() && !cfg.Auth.AllowUnauthenticated && !isLoopback(c.ln.Addr()) {
		return nil, fmt.Errorf("the API on %s would be open to anyone: configure auth (bearer tokens, client certificates or SigV4 keys), listen on loopback, or set auth.allowUnauthenticated", c.ln.Addr())
	}
	if tlsCfg != nil {
		c.ln = tls.NewListener(c.ln, tlsCfg)
	}
	c.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return c, nil
}

// Addr is the address the API listens on.
func (c *Controller) Addr() net.Addr { return c.ln.Addr() }

// XDSAddr is the address the xDS server listens on, nil without one.
func (c *Controller) XDSAddr() net.Addr {
	if c.xds == nil {
		return nil
	}
	return c.xds.Addr()
}

// Registry is the controller's endpoint registry.
func (c *Controller) Registry() *registry.Registry { return c.eps }

// Metrics is the registry of the controller's metrics, the one /metrics
// serves.
func (c *Controller) Metrics() *prometheus.Registry { return c.reg }

// Syncer is the controller's snapshot pipeline.
func (c *Controller) Syncer() *xds.Syncer { return c.syncer }

// Store is the controller's store, for tools and tests that inspect it.
func (c *Controller) Store() store.Store { return c.st }

// Service is the controller's resource service.
func (c *Controller) Service() *resources.Service { return c.svc }

// Run serves until ctx ends, then shuts the server down gracefully and closes
// the store.
func (c *Controller) Run(ctx context.Context) error {
	defer c.close()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := c.srv.Serve(c.ln)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve api: %w", err)
	})
	g.Go(func() error {
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				if n, err := c.svc.ExpireTokens(ctx); err != nil {
					c.log.Warn("expire client tokens", "error", err)
				} else if n > 0 {
					c.log.Debug("expired client tokens", "count", n)
				}
			}
		}
	})
	g.Go(func() error { return c.eps.Run(ctx) })
	if c.dns != nil {
		g.Go(func() error { return c.dns.Run(ctx) })
	}
	g.Go(func() error { return c.syncer.Run(ctx) })
	if c.xds != nil {
		g.Go(func() error { return c.xds.Run(ctx) })
	}
	g.Go(func() error {
		<-ctx.Done()
		c.ready.Store(false)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return c.srv.Shutdown(sctx)
	})
	c.ready.Store(true)
	c.log.Info("controller serving", "api", c.ln.Addr().String(), "dataDir", c.cfg.DataDir)
	return g.Wait()
}

func (c *Controller) close() {
	if c.ln != nil && c.srv == nil {
		_ = c.ln.Close()
	}
	if c.xds != nil && c.srv == nil {
		_ = c.xds.Close()
	}
	if c.st != nil {
		if err := c.st.Close(); err != nil {
			c.log.Warn("close store", "error", err)
		}
	}
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func buildAuth(cfg Config) (*restapi.Authenticator, []string, *tls.Config, error) {
	a := cfg.Auth
	ac := restapi.AuthConfig{SigV4Keys: a.SigV4Keys, ClientCertificates: a.ClientCAFile != ""}
	if a.BearerTokenFile != "" {
		b, err := os.ReadFile(a.BearerTokenFile)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("read bearer tokens: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				ac.BearerTokens = append(ac.BearerTokens, t)
			}
		}
		if len(ac.BearerTokens) == 0 {
			return nil, nil, nil, fmt.Errorf("bearer token file %s holds no token", a.BearerTokenFile)
		}
	}
	var tlsCfg *tls.Config
	if a.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(a.TLSCertFile, a.TLSKeyFile)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("load TLS certificate: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if a.ClientCAFile != "" {
			pem, err := os.ReadFile(a.ClientCAFile)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("read client CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, nil, fmt.Errorf("client CA file %s holds no PEM certificate", a.ClientCAFile)
			}
			tlsCfg.ClientCAs = pool
			tlsCfg.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	return restapi.NewAuthenticator(ac), ac.BearerTokens, tlsCfg, nil
}
