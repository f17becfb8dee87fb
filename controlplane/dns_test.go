// SPDX-License-Identifier: Apache-2.0

package controlplane_test

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/controlplane"
	"github.com/weft-mesh/weft/pkg/xdsclient"
)

// hostsResolver resolves names from a fixed table.
type hostsResolver map[string][]netip.Addr

func (h hostsResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if as, ok := h[host]; ok {
		return as, nil
	}
	return nil, errors.New("lookup " + host + ": no such host")
}

// TestControllerResolvesDNSNodes: with nothing registered, the controller
// resolves web.demo.local itself and front's proxy gets its address as an
// EDS endpoint; front.demo.local does not resolve and is left alone.
func TestControllerResolvesDNSNodes(t *testing.T) {
	checkLeaks(t)
	addr := freeAddr(t)
	zero := controlplane.Duration(0)
	interval := controlplane.Duration(50 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := controlplane.New(ctx, controlplane.Config{
		DataDir: t.TempDir(), APIListen: "127.0.0.1:0", XDSListen: addr,
		Registry: controlplane.RegistryConfig{WarmUp: &zero},
		DNS: controlplane.DNSConfig{Interval: &interval, Resolver: hostsResolver{
			"web.demo.local": {netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")},
		}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	createWorld(t, c.Service())

	var (
		mu  sync.Mutex
		eps []string
	)
	pc, err := xdsclient.Subscribe(dial(t, addr), fastBackoff(xdsclient.Config{NodeID: frontID}), func(_ context.Context, r xdsclient.ProxyResources) error {
		mu.Lock()
		defer mu.Unlock()
		eps = nil
		for _, cla := range r.Endpoints {
			if cla.GetClusterName() == "cds_egress_demo_web_http_8080" {
				for _, l := range cla.GetEndpoints() {
					for _, e := range l.GetLbEndpoints() {
						eps = append(eps, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
					}
				}
			}
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopPC := runClient(t, pc)
	waitFor(t, "web's resolved endpoint at front", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Equal(eps, []string{"192.0.2.10"})
	})
	if ps := c.Syncer().Problems(); len(ps) != 0 {
		t.Errorf("problems: %v", ps)
	}
	stopPC()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("controller Run: %v", err)
	}
}

func TestDNSConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "controller.yaml")
	if err := writeFile(path, "dns:\n  interval: 0s\n  timeout: 2s\n"); err != nil {
		t.Fatal(err)
	}
	cfg := controlplane.Config{DataDir: dir, APIListen: "127.0.0.1:0"}
	if err := controlplane.LoadConfigFile(path, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.DNS.Interval == nil || *cfg.DNS.Interval != 0 || cfg.DNS.Timeout != controlplane.Duration(2*time.Second) {
		t.Errorf("dns = %+v", cfg.DNS)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
	neg := controlplane.Duration(-time.Second)
	cfg.DNS.Interval = &neg
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "dns.interval") {
		t.Errorf("a negative interval: %v", err)
	}
	cfg.DNS.Interval = nil
	cfg.DNS.Servers = []string{"10.0.0.2", "dns.example"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "dns.servers[1]") {
		t.Errorf("a server that is not an address: %v", err)
	}
}
