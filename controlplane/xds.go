// SPDX-License-Identifier: Apache-2.0

package controlplane

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/weft-mesh/weft/controlplane/dnsdisco"
	"github.com/weft-mesh/weft/controlplane/identity"
	"github.com/weft-mesh/weft/controlplane/registry"
	"github.com/weft-mesh/weft/controlplane/restapi"
	"github.com/weft-mesh/weft/controlplane/xds"
	"github.com/weft-mesh/weft/controlplane/xds/server"
	"github.com/weft-mesh/weft/controlplane/xds/translate"
	"github.com/weft-mesh/weft/controlplane/xds/vip"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// newXDS builds the endpoint registry, the snapshot pipeline and, with
// XDSListen, the xDS server (binding its listener). The xDS server takes
// the API's credentials: its bearer tokens, and its TLS certificate and
// client CA.
func (c *Controller) newXDS(ctx context.Context, tokens []string, tlsCfg *tls.Config) error {
	var err error
	c.eps, err = registry.New(registry.Config{TTL: time.Duration(c.cfg.Registry.TTL)}, c.log.With("component", "registry"))
	if err != nil {
		return err
	}
	alloc, err := vip.New(c.st, vip.Config{})
	if err != nil {
		return err
	}
	warmUp := c.eps.TTL() / 2
	if w := c.cfg.Registry.WarmUp; w != nil {
		warmUp = time.Duration(*w)
	}
	cache := server.NewCache(c.log.With("component", "xds-cache"))
	deps := xds.SyncerDeps{
		Store:            c.st,
		Resources:        c.svc,
		Addresses:        alloc,
		Endpoints:        func() xds.EndpointView { return c.eps.View() },
		EndpointsChanged: c.eps.Changed(),
		Cache:            cache,
		Registerer:       c.reg,
	}
	if c.cfg.XDSListen != "" {
		scfg := server.Config{
			Listen:               c.cfg.XDSListen,
			BearerTokens:         tokens,
			AllowUnauthenticated: c.cfg.Auth.AllowUnauthenticated,
		}
		if tlsCfg != nil {
			scfg.TLS = tlsCfg.Clone()
		}
		ca, err := identity.New(identity.Config{
			Dir: filepath.Join(c.cfg.DataDir, "identity"), TrustDomain: c.cfg.Identity.TrustDomain,
			CertTTL: time.Duration(c.cfg.Identity.CertTTL),
		})
		if err != nil {
			return err
		}
		served := func(node string) []string {
			var ids []string
			for _, w := range c.eps.View().Workloads(node) {
				ids = append(ids, "mesh/"+w.Mesh+"/virtualNode/"+w.VirtualNode)
			}
			return ids
		}
		sdeps := server.Deps{Cache: cache, Registry: c.eps.Service(), Identity: identity.NewService(ca, served), Registerer: c.reg}
		c.xds, err = server.New(ctx, scfg, sdeps, c.log.With("component", "xds"))
		if err != nil {
			return err
		}
		deps.Connected = c.xds.Connected
	}
	if i := c.cfg.DNS.Interval; i == nil || *i > 0 {
		dcfg := dnsdisco.Config{Timeout: time.Duration(c.cfg.DNS.Timeout), Resolver: c.cfg.DNS.Resolver}
		if dcfg.Resolver == nil && len(c.cfg.DNS.Servers) > 0 {
			servers := make([]netip.AddrPort, len(c.cfg.DNS.Servers))
			for i, s := range c.cfg.DNS.Servers {
				if servers[i], err = dnsdisco.ParseServer(s); err != nil {
					return fmt.Errorf("dns.servers[%d]: %w", i, err)
				}
			}
			if dcfg.Resolver, err = dnsdisco.ServerResolver(servers); err != nil {
				return err
			}
		}
		if i != nil {
			dcfg.Interval = time.Duration(*i)
		}
		c.dns, err = dnsdisco.New(dcfg, c.log.With("component", "dns"))
		if err != nil {
			return err
		}
		deps.DNS = func(nodes []translate.DNSNode) xds.DNSView { return c.dns.Sync(nodes) }
		deps.DNSChanged = c.dns.Changed()
	}
	c.syncer, err = xds.NewSyncer(xds.SyncerConfig{WarmUp: warmUp}, deps, c.log.With("component", "xds-sync"))
	if err != nil {
		return err
	}
	// Translation problems show in the resources' status (INACTIVE with a
	// message) without being written to the store.
	c.svc.SetStatusSource(c.syncer)
	return nil
}

// problemJSON is one translation problem in /weft/v1/problems.
type problemJSON struct {
	Resource string      `json:"resource"`
	Ref      appmesh.Ref `json:"ref"`
	Message  string      `json:"message"`
}

// problemsHandler serves GET /weft/v1/problems: the resources (or parts of
// them) the last translation left out, and whether snapshots have been
// published yet. It takes the API's authentication.
func (c *Controller) problemsHandler(auth *restapi.Authenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := auth.Check(r); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		out := struct {
			Synced   bool          `json:"synced"`
			Problems []problemJSON `json:"problems"`
		}{Synced: c.syncer.Synced(), Problems: []problemJSON{}}
		for _, p := range c.syncer.Problems() {
			out.Problems = append(out.Problems, problemJSON{Resource: p.Ref.ResourcePath(), Ref: p.Ref, Message: p.Message})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}
