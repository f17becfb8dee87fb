// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// Resolver looks names up for STRICT_DNS and LOGICAL_DNS clusters;
// *net.Resolver is one. network is "ip", "ip4" or "ip6".
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// dnsLoop resolves the cluster's names now and then every dns_refresh_rate
// until ctx ends. A failed lookup keeps the previous hosts, as Envoy does.
func (c *Cluster) dnsLoop(ctx context.Context, s *spec, gen uint64, resolved chan struct{}) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		eps, err := c.resolve(ctx, s)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.log.Warn("resolve upstream", keyError, err)
		}
		c.mu.Lock()
		if c.gen == gen {
			if err == nil {
				c.setHostsLocked(c.spec, eps)
				c.recountPendingLocked()
			}
			if c.resolved == resolved {
				close(resolved)
				c.resolved = nil
			}
		}
		c.mu.Unlock()
		t.Reset(s.dnsRefresh)
	}
}

// resolve looks up every endpoint name of s. STRICT_DNS gets one endpoint
// per address; LOGICAL_DNS one endpoint, keyed by its name, at the first
// address.
func (c *Cluster) resolve(ctx context.Context, s *spec) ([]endpointSpec, error) {
	var out []endpointSpec
	var errs []error
	for _, e := range s.endpoints {
		lctx, cancel := context.WithTimeout(ctx, s.dnsRefresh)
		addrs, err := c.m.resolver.LookupNetIP(lctx, s.dnsNetwork, e.hostname)
		cancel()
		if err == nil {
			addrs = pickFamily(s.dnsFamily, addrs)
			if len(addrs) == 0 {
				err = errors.New("no address of the wanted family")
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve %s: %w", e.hostname, err))
			continue
		}
		if s.discovery == discoveryLogicalDNS {
			addrs = addrs[:1]
		}
		for _, a := range addrs {
			x := e
			x.addr = netip.AddrPortFrom(a.Unmap(), e.port)
			out = append(out, x)
		}
	}
	if len(errs) > 0 && len(out) == 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// pickFamily applies dns_lookup_family: AUTO prefers IPv6 and falls back to
// IPv4, V4_PREFERRED the other way round, ALL keeps both.
func pickFamily(f clusterv3.Cluster_DnsLookupFamily, addrs []netip.Addr) []netip.Addr {
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	switch f {
	case clusterv3.Cluster_V4_ONLY:
		return v4
	case clusterv3.Cluster_V6_ONLY:
		return v6
	case clusterv3.Cluster_V4_PREFERRED:
		if len(v4) > 0 {
			return v4
		}
		return v6
	case clusterv3.Cluster_ALL:
		return slices.Concat(v4, v6)
	}
	if len(v6) > 0 {
		return v6
	}
	return v4
}
