// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/controlplane"
	"github.com/weft-mesh/weft/controlplane/registry"
	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/pkg/appmesh"
	"github.com/weft-mesh/weft/test/testutil"
)

func TestRunFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"-version"}, &out, &errb); err != nil || out.Len() == 0 {
		t.Errorf("-version: %v %q", err, out.String())
	}
	if err := run(context.Background(), []string{"-bogus"}, &out, &errb); err == nil {
		t.Error("unknown flag accepted")
	}
	if err := run(context.Background(), []string{"extra"}, &out, &errb); err == nil {
		t.Error("extra argument accepted")
	}
}

// TestRunConfigDir loads the translator's golden output for S1 (front's and
// the test client's virtual nodes) and serves until the context ends.
func TestRunConfigDir(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"s1.front_shop.golden.json", "s1.test-client.golden.json"} {
		src := filepath.Join("..", "..", "controlplane", "xds", "testdata", f)
		if err := copyFile(src, filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, []string{"-outbound-listen", "", "-admin-listen", "127.0.0.1:0", "-config-dir", dir, "-drain-timeout", "1s", "-mark", "0x2a"}, &out, &errb)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	if n := strings.Count(errb.String(), "configuration loaded"); n != 2 {
		t.Errorf("%d configurations loaded, want 2:\n%s", n, errb.String())
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

// TestRunADS runs weft-proxy against an in-process controller, without the
// datapath (-outbound-listen ""): it serves virtual gateway gw, whose route
// leads to service web, registered at a local HTTP server. Then, with the
// controller gone, a restarted proxy serves the same from its cache files.
func TestRunADS(t *testing.T) {
	xdsAddr := freeAddr(t)
	backend := startBackend(t)
	gwPort := testutil.FreePort(t)
	ctrl, stopCtrl := startController(t, xdsAddr)
	createGatewayWorld(t, ctrl.Service(), int32(gwPort), int32(backend.Port()))
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "front.service"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ctrl.Registry().Register("node-a", []registry.Instance{
		{ID: 1, CgroupPath: "front.service", Mesh: "demo", VirtualNode: "front", Addresses: []netip.Addr{backend.Addr()}, Ports: []uint32{80}, Healthy: true},
		{ID: 2, CgroupPath: "web.service", Mesh: "demo", VirtualNode: "web", Addresses: []netip.Addr{backend.Addr()}, Ports: []uint32{uint32(backend.Port())}, Healthy: true},
	}); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("not-checked\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	admin := freeAddr(t)
	args := []string{
		"-outbound-listen", "", "-admin-listen", admin, "-drain-timeout", "1s",
		"-xds-server", xdsAddr, "-xds-token-file", tokenFile, "-node-id", "node-a", "-cgroup-root", root,
		"-cache-dir", cacheDir, "-gateway", "mesh/demo/virtualGateway/gw",
	}
	gwURL := fmt.Sprintf("http://127.0.0.1:%d/web/hello", gwPort)

	stop, errb := startRun(t, args)
	testutil.Eventually(t, 10*time.Second, func() error { return getBody(gwURL, "web /hello") })
	dump := mustGet(t, "http://"+admin+"/config_dump")
	for _, want := range []string{"mesh/demo/virtualGateway/gw", "mesh/demo/virtualNode/front", "mesh/demo/virtualNode/web"} {
		if !strings.Contains(dump, want) {
			t.Errorf("/config_dump lacks %s", want)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		metrics := mustGet(t, "http://"+admin+"/metrics")
		for _, want := range []string{"weft_proxy_xds_subscriptions 3", "weft_proxy_xds_streams_connected 4"} {
			if !strings.Contains(metrics, want) {
				return fmt.Errorf("/metrics lacks %q", want)
			}
		}
		return nil
	})
	stop()
	stopCtrl()
	t.Logf("first run's log:\n%s", errb.String())

	// No controller: the proxy starts from its cache files.
	stop2, errb2 := startRun(t, args)
	testutil.Eventually(t, 10*time.Second, func() error { return getBody(gwURL, "web /hello") })
	stop2()
	if n := strings.Count(errb2.String(), "applied the cached configuration"); n != 4 {
		t.Errorf("%d cached configurations applied, want 4 (node state, gw, front, web):\n%s", n, errb2.String())
	}
}

func TestRunFlagCombinations(t *testing.T) {
	for _, args := range [][]string{
		{"-xds-server", "127.0.0.1:1", "-config-dir", "x"},
		{"-xds-server", "127.0.0.1:1", "-node-state", "x"},
		{"-xds-server", "127.0.0.1:1", "-node-id", ""},
		{"-gateway", "mesh/demo/virtualGateway/gw"},
		{"-xds-server", "127.0.0.1:1", "-gateway", "mesh/demo/virtualNode/front"},
		{"-mark", "0x100000000"},
		{"-mark", "-1"},
		{"-mark", "blue"},
	} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), append(args, "-outbound-listen", "", "-admin-listen", ""), &out, &errb); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// startRun runs run with args until the returned stop is called.
func startRun(t *testing.T, args []string) (stop func(), stderr *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errb := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, io.Discard, errb) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v\n%s", err, errb.String())
			}
		})
	}
	t.Cleanup(stop)
	return stop, errb
}

// startBackend serves "web <path>" on a loopback port.
func startBackend(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "web %s", r.URL.Path)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

// startController runs a controller without warm-up serving xDS on addr.
func startController(t *testing.T, addr string) (c *controlplane.Controller, stop func()) {
	t.Helper()
	zero := controlplane.Duration(0)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := controlplane.New(ctx, controlplane.Config{
		DataDir: t.TempDir(), APIListen: "127.0.0.1:0", XDSListen: addr,
		Registry: controlplane.RegistryConfig{WarmUp: &zero},
	}, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
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

// createGatewayWorld creates mesh demo: web (listener webPort) provides
// web.demo.local, front (port 80) calls it, and gateway gw (port gwPort)
// routes /web/ to it.
func createGatewayWorld(t *testing.T, svc *resources.Service, gwPort, webPort int32) {
	t.Helper()
	node := func(name string, p int32, backends ...string) *appmesh.VirtualNodeSpec {
		s := &appmesh.VirtualNodeSpec{
			Listeners:        []appmesh.Listener{{PortMapping: &appmesh.PortMapping{Port: &p, Protocol: appmesh.ProtocolHTTP}}},
			ServiceDiscovery: &appmesh.ServiceDiscovery{DNS: &appmesh.DNSServiceDiscovery{Hostname: name + ".demo.local"}},
		}
		for _, b := range backends {
			s.Backends = append(s.Backends, appmesh.Backend{VirtualService: &appmesh.VirtualServiceBackend{VirtualServiceName: b}})
		}
		return s
	}
	prefix := "/web/"
	for _, in := range []resources.CreateInput{
		{Ref: appmesh.Ref{Kind: appmesh.KindMesh, Name: "demo"}, Spec: &appmesh.MeshSpec{}},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "web"}, Spec: node("web", webPort)},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: "demo", Name: "web.demo.local"}, Spec: &appmesh.VirtualServiceSpec{
			Provider: &appmesh.VirtualServiceProvider{VirtualNode: &appmesh.VirtualNodeServiceProvider{VirtualNodeName: "web"}},
		}},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "front"}, Spec: node("front", 80, "web.demo.local")},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualGateway, Mesh: "demo", Name: "gw"}, Spec: &appmesh.VirtualGatewaySpec{
			Listeners: []appmesh.VirtualGatewayListener{{PortMapping: &appmesh.PortMapping{Port: &gwPort, Protocol: appmesh.ProtocolHTTP}}},
		}},
		{Ref: appmesh.Ref{Kind: appmesh.KindGatewayRoute, Mesh: "demo", Parent: "gw", Name: "web"}, Spec: &appmesh.GatewayRouteSpec{
			HTTPRoute: &appmesh.HTTPGatewayRoute{
				Match:  &appmesh.HTTPGatewayRouteMatch{Prefix: &prefix},
				Action: &appmesh.HTTPGatewayRouteAction{Target: &appmesh.GatewayRouteTarget{VirtualService: &appmesh.GatewayRouteVirtualService{VirtualServiceName: "web.demo.local"}}},
			},
		}},
	} {
		if _, err := svc.Create(context.Background(), in); err != nil {
			t.Fatalf("create %s: %v", in.Ref.ResourcePath(), err)
		}
	}
}

// getBody fetches url and checks the answer.
func getBody(url, want string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(b) != want {
		return fmt.Errorf("GET %s: %d %q, want 200 %q", url, resp.StatusCode, b, want)
	}
	return nil
}

func mustGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
}

// syncBuffer is a bytes buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The proxy sets its own GC target unless GOGC is in the environment.
func TestSetGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	log := slog.New(slog.DiscardHandler)
	t.Setenv("GOGC", "100")
	setGC(log)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC=100 set: GC percent %d, want 100", got)
	}
	if err := os.Unsetenv("GOGC"); err != nil {
		t.Fatal(err)
	}
	setGC(log)
	if got := debug.SetGCPercent(100); got != defaultGOGC {
		t.Errorf("without GOGC: GC percent %d, want %d", got, defaultGOGC)
	}
}
