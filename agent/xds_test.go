// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weft-mesh/weft/controlplane"
	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/controlplane/xds/translate"
	"github.com/weft-mesh/weft/pkg/appmesh"
	wtestutil "github.com/weft-mesh/weft/test/testutil"
)

// xdsController runs a controller with mesh demo: front (VM workload
// orders.service, port 80) calls web.demo.local, provided by web (the pod
// kubepods/web, port 8080).
func xdsController(t *testing.T, dataDir, addr string, create bool) (c *controlplane.Controller, stop func()) {
	t.Helper()
	zero := controlplane.Duration(0)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := controlplane.New(ctx, controlplane.Config{
		DataDir: dataDir, APIListen: "127.0.0.1:0", XDSListen: addr,
		Registry: controlplane.RegistryConfig{WarmUp: &zero},
	}, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if create {
		port := func(p int32) *int32 { return &p }
		node := func(name string, p int32, backends ...string) *appmesh.VirtualNodeSpec {
			s := &appmesh.VirtualNodeSpec{
				Listeners:        []appmesh.Listener{{PortMapping: &appmesh.PortMapping{Port: port(p), Protocol: appmesh.ProtocolHTTP}}},
				ServiceDiscovery: &appmesh.ServiceDiscovery{DNS: &appmesh.DNSServiceDiscovery{Hostname: name + ".demo.local"}},
			}
			for _, b := range backends {
				s.Backends = append(s.Backends, appmesh.Backend{VirtualService: &appmesh.VirtualServiceBackend{VirtualServiceName: b}})
			}
			return s
		}
		for _, in := range []resources.CreateInput{
			{Ref: appmesh.Ref{Kind: appmesh.KindMesh, Name: "demo"}, Spec: &appmesh.MeshSpec{}},
			{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "web"}, Spec: node("web", 8080)},
			{Ref: appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: "demo", Name: "web.demo.local"}, Spec: &appmesh.VirtualServiceSpec{
				Provider: &appmesh.VirtualServiceProvider{VirtualNode: &appmesh.VirtualNodeServiceProvider{VirtualNodeName: "web"}},
			}},
			{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "front"}, Spec: node("front", 80, "web.demo.local")},
		} {
			if _, err := c.Service().Create(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("controller: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

// TestAgentXDSSource runs the agent against a controller: it registers its
// workloads, reconciles the node state the controller computes from them,
// and, restarted while the controller is down, starts from its cache file.
func TestAgentXDSSource(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	ctrl, stopCtrl := xdsController(t, t.TempDir(), addr, true)

	root := t.TempDir()
	cfg := Config{
		NodeName: "node-a", CgroupRoot: filepath.Join(root, "cgroup"), PinPath: "/sys/fs/bpf/weft-test",
		MetricsListen: "127.0.0.1:0",
		XDS:           XDSConfig{Server: addr, NodeAddress: "10.0.0.1", CacheFile: filepath.Join(root, "xds-cache.json")},
		Workloads: []VMWorkload{
			{CgroupPath: "system.slice/orders.service", Mesh: "demo", VirtualNode: "front", ListenerPorts: []uint32{80}},
			// A pod: registered at its own address, not the node's.
			{CgroupPath: "kubepods/web", Mesh: "demo", VirtualNode: "web", ListenerPorts: []uint32{8080}, Addresses: []string{"10.1.0.7"}, Attributes: map[string]string{"version": "v1"}},
		},
	}
	h := startAgent(t, cfg)
	wtestutil.Eventually(t, 30*time.Second, func() error {
		if recs := h.dns.get()["web.demo.local"]; len(recs) == 0 {
			return fmt.Errorf("no DNS records of web.demo.local yet: %v", h.dns.get())
		}
		return nil
	})
	// The agent registers the ids it assigned; the controller's node state
	// then carries them.
	wtestutil.Eventually(t, 30*time.Second, func() error {
		wls := ctrl.Registry().View().Workloads("node-a")
		if len(wls) != 2 {
			return fmt.Errorf("registered workloads: %v", wls)
		}
		for _, w := range wls {
			if w.ID == 0 {
				return fmt.Errorf("workload %s registered without an id", w.CgroupPath)
			}
		}
		eps, managed := ctrl.Registry().View().Endpoints(translate.NodeKey{Mesh: "demo", Name: "web"})
		if !managed || len(eps) != 1 || eps[0].Address.String() != "10.1.0.7" || eps[0].Port != 8080 || eps[0].Attributes["version"] != "v1" {
			return fmt.Errorf("endpoints of web: %v (managed %v)", eps, managed)
		}
		return nil
	})
	if !h.agent.Ready() {
		t.Error("the agent is not ready")
	}
	h.stop()
	stopCtrl()

	// Restarted without a controller, the agent applies its cache file.
	h2 := startAgent(t, cfg)
	wtestutil.Eventually(t, 30*time.Second, func() error {
		if !h2.agent.Ready() || len(h2.dns.get()["web.demo.local"]) == 0 {
			return fmt.Errorf("not ready from the cache file (ready %v)", h2.agent.Ready())
		}
		return nil
	})
	h2.stop()
}

// TestXDSConfigValidate checks the choice of node state source.
func TestXDSConfigValidate(t *testing.T) {
	base := Config{NodeName: "n", CgroupRoot: "/sys/fs/cgroup", PinPath: "/sys/fs/bpf/weft"}
	base.setConstDefaults()
	for _, tc := range []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"state file", func(c *Config) { c.StateFile = "/s.json" }, true},
		{"xds", func(c *Config) { c.XDS.Server = "127.0.0.1:7481" }, true},
		{"neither", func(*Config) {}, false},
		{"both", func(c *Config) { c.StateFile = "/s.json"; c.XDS.Server = "127.0.0.1:7481" }, false},
		{"bad server", func(c *Config) { c.XDS.Server = "nowhere" }, false},
		{"workloads without node address", func(c *Config) {
			c.XDS.Server = "127.0.0.1:7481"
			c.Workloads = []VMWorkload{{CgroupPath: "a.service", Mesh: "m", VirtualNode: "v"}}
		}, false},
		{"bad node address", func(c *Config) { c.XDS.Server = "127.0.0.1:7481"; c.XDS.NodeAddress = "0.0.0.0" }, false},
		{"workloads with their own addresses", func(c *Config) {
			c.XDS.Server = "127.0.0.1:7481"
			c.Workloads = []VMWorkload{{CgroupPath: "pod1", Mesh: "m", VirtualNode: "v", Addresses: []string{"10.1.0.7"}}}
		}, true},
		{"bad workload address", func(c *Config) {
			c.XDS.Server = "127.0.0.1:7481"
			c.XDS.NodeAddress = "10.0.0.1"
			c.Workloads = []VMWorkload{{CgroupPath: "pod1", Mesh: "m", VirtualNode: "v", Addresses: []string{"pod1"}}}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.edit(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
