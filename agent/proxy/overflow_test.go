// SPDX-License-Identifier: Apache-2.0

package proxy_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-mesh/weft/agent/proxy"
	"github.com/weft-mesh/weft/agent/proxy/cluster"
	"github.com/weft-mesh/weft/controlplane/xds/translate"
	"github.com/weft-mesh/weft/controlplane/xds/vip"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

type oneEndpoint struct{ ep translate.Endpoint }

func (o oneEndpoint) Endpoints(translate.NodeKey) ([]translate.Endpoint, bool) {
	return []translate.Endpoint{o.ep}, true
}

func res(t *testing.T, kind appmesh.Kind, parent, name, spec string) appmesh.Resource {
	t.Helper()
	s, _ := kind.NewSpec()
	if err := json.Unmarshal([]byte(spec), s); err != nil {
		t.Fatal(err)
	}
	appmesh.Default(kind, s)
	mesh := "m"
	if kind == appmesh.KindMesh {
		mesh = name
	}
	return appmesh.Resource{Ref: appmesh.Ref{Kind: kind, Mesh: mesh, Parent: parent, Name: name}, Spec: s}
}

// gatewayStack serves handler as the endpoint of virtual node "slow"
// behind virtual gateway "gw" (listener JSON gwListener, port 8088) with
// the real translator, cluster manager and proxy, and returns the
// gateway's URL and the registry of the proxy's metrics.
func gatewayStack(t *testing.T, handler http.Handler, gwListener string) (string, *prometheus.Registry) {
	t.Helper()
	backend := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: handler}
	var lc net.ListenConfig
	// The node's endpoint serves on its listener port, 8080, on an address
	// of its own in 127/8.
	ln, err := lc.Listen(context.Background(), "tcp", "127.87.13.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = backend.Serve(ln) }()
	t.Cleanup(func() { _ = backend.Close() })
	bp := ln.Addr().(*net.TCPAddr).AddrPort()

	in := translate.Input{
		Resources: []appmesh.Resource{
			res(t, appmesh.KindMesh, "", "m", `{}`),
			res(t, appmesh.KindVirtualNode, "", "slow", `{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],"serviceDiscovery":{"dns":{"hostname":"slow.local"}}}`),
			res(t, appmesh.KindVirtualService, "", "slow.local", `{"provider":{"virtualNode":{"virtualNodeName":"slow"}}}`),
			res(t, appmesh.KindVirtualGateway, "", "gw", `{"listeners":[`+gwListener+`]}`),
			res(t, appmesh.KindGatewayRoute, "gw", "all", `{"httpRoute":{"match":{"prefix":"/"},"action":{"target":{"virtualService":{"virtualServiceName":"slow.local"}}}}}`),
		},
		Addresses: map[vip.Key]vip.Addresses{{Mesh: "m", Service: "slow.local"}: {IPv4: netip.MustParseAddr("240.240.0.1")}},
		Endpoints: oneEndpoint{translate.Endpoint{Address: bp.Addr(), Port: uint32(bp.Port()), Node: "n1", Healthy: true}},
	}
	out := translate.Translate(in)
	if len(out.Problems) > 0 {
		t.Fatalf("translation problems: %+v", out.Problems)
	}
	var gw *translate.Proxy
	for _, p := range out.Proxies {
		if p.NodeID == "mesh/m/virtualGateway/gw" {
			gw = p
		}
	}
	if gw == nil {
		t.Fatal("no gateway proxy in the translation")
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	mgr := cluster.NewManager(cluster.Options{Registerer: reg}, log)
	p, err := proxy.New(proxy.Config{
		AdminListen:   "127.0.0.1:0", // a gateway needs no outbound listener
		BindOverrides: map[string]string{"lds_ingress_0.0.0.0_port_8088": "127.0.0.1:0"},
	}, proxy.Deps{Clusters: mgr, Registerer: reg, Gatherer: reg}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- mgr.Run(ctx) }()
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
		mgr.Close()
	})
	if err := p.Update(gw.NodeID, proxy.Resources{Listeners: gw.Listeners, Routes: gw.Routes, Clusters: gw.Clusters, Endpoints: gw.Endpoints}); err != nil {
		t.Fatalf("update: %v", err)
	}
	var addr net.Addr
	for deadline := time.Now().Add(10 * time.Second); addr == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		addr = p.ListenerAddr(gw.NodeID, "lds_ingress_0.0.0.0_port_8088")
	}
	if addr == nil {
		t.Fatal("the gateway listener was not bound")
	}
	return "http://" + addr.String() + "/", reg
}

// TestGatewayConnectionPoolOverflowIs503 runs the real translator, the real
// cluster manager and the proxy together: a gateway whose connection pool
// allows one connection and one pending request answers the requests beyond
// that with 503 while the backend is busy, and counts them.
func TestGatewayConnectionPoolOverflowIs503(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 16)
	url, reg := gatewayStack(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		arrived <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "ok")
	}), `{"portMapping":{"port":8088,"protocol":"http"},"connectionPool":{"http":{"maxConnections":1,"maxPendingRequests":1}}}`)
	c := &http.Client{Timeout: 20 * time.Second}

	// The gateway serves: a first request goes through.
	go func() { <-arrived; release <- struct{}{} }()
	if resp, err := c.Get(url); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a first request: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// One request takes the only connection and waits at the backend.
	codes := make(chan int, 8)
	get := func() {
		resp, err := c.Get(url)
		if err != nil {
			codes <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes <- resp.StatusCode
	}
	go get()
	<-arrived
	// One more may wait as pending; the ones after it overflow at once.
	for range 4 {
		go get()
	}
	overflowed := 0
	for range 3 {
		if code := <-codes; code == http.StatusServiceUnavailable {
			overflowed++
		} else {
			t.Errorf("a request beyond the pool got %d before the backend answered, want 503", code)
		}
	}
	close(release)
	for range 2 {
		if code := <-codes; code != http.StatusOK {
			t.Errorf("a request within the pool got %d, want 200", code)
		}
	}
	if overflowed != 3 {
		t.Errorf("%d overflowed, want 3", overflowed)
	}
	n := 0.0
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasSuffix(mf.GetName(), "overflow_total") || strings.HasSuffix(mf.GetName(), "overflows_total") {
			for _, m := range mf.GetMetric() {
				n = max(n, m.GetCounter().GetValue())
			}
		}
	}
	if n < 3 {
		t.Errorf("overflow counters show %v, want at least 3", n)
	}
}
