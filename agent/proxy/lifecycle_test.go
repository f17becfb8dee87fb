// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
)

// TestRejectKeepsServing checks the NACK: an update with a resource the
// proxy cannot compile is refused with an error naming it, and the previous
// configuration keeps serving.
func TestRejectKeepsServing(t *testing.T) {
	w := buildWorld(t, "s0", "s1", "s2")
	h := newHarness(t, w, Config{})
	id := nodeID("demo", clientNode)
	h.load(id)
	h.backend("blue_shop", 8080, nil)
	h.backend("green_shop", 8080, nil)
	src := h.caller("demo", clientNode, "color-headers.shop.svc.cluster.local", 8080)
	c := h.client(src, false)

	bad := w.resources(t, id)
	bad.Routes = []*routev3.RouteConfiguration{proto.Clone(bad.Routes[0]).(*routev3.RouteConfiguration)}
	hm := bad.Routes[0].VirtualHosts[0].Routes[0].Match.Headers[0]
	hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
		MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "(unclosed"}},
	}}
	err := h.p.Update(id, bad)
	if err == nil || !strings.Contains(err.Error(), "route configuration rds_egress_http_8080") || !strings.Contains(err.Error(), "exact-blue") {
		t.Fatalf("update with a bad regex: %v, want an error naming the route configuration and route", err)
	}
	t.Logf("rejected: %v", err)
	code, e := get(t, c, "GET", "http://color-headers.shop.svc.cluster.local:8080/", map[string]string{"color_header": "blue"})
	if code != 200 || e.Name != "blue_shop" {
		t.Errorf("after the rejected update: %d %s, want the previous configuration", code, e.Name)
	}

	missing := w.resources(t, id)
	missing.Routes = nil
	if err := h.p.Update(id, missing); err == nil || !strings.Contains(err.Error(), "rds_egress_http_8080") {
		t.Errorf("update without the listener's route configuration: %v", err)
	}
}

// TestAdmin checks /ready, /metrics and /config_dump.
func TestAdmin(t *testing.T) {
	w := buildWorld(t, "s0", "s1")
	h := newHarness(t, w, Config{})
	id := nodeID("demo", "front_shop")
	h.load(id)
	h.backend("blue_shop", 8080, nil)
	h.backend("green_shop", 8080, nil)
	src := h.caller("demo", "front_shop", "color.shop.svc.cluster.local", 8080)
	c := h.client(src, false)
	for range 10 {
		get(t, c, "GET", "http://color.shop.svc.cluster.local:8080/", nil)
	}
	base := "http://" + h.p.AdminAddr().String()
	body := func(path string) string {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	if got := body("/ready"); got != "LIVE\n" {
		t.Errorf("/ready: %q", got)
	}
	m := body("/metrics")
	for _, want := range []string{
		`weft_proxy_requests_total{cluster="cds_egress_demo_blue_shop_http_8080",code_class="2xx",node="mesh/demo/virtualNode/front_shop",route_config="rds_egress_http_8080",virtual_host="color.shop.svc.cluster.local"}`,
		`weft_proxy_request_duration_seconds_count{node="mesh/demo/virtualNode/front_shop",route_config="rds_egress_http_8080",virtual_host="color.shop.svc.cluster.local"} 10`,
		`weft_proxy_config_updates_total{result="accepted"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	var dump struct {
		Nodes map[string]struct {
			Listeners []json.RawMessage `json:"listeners"`
			NotServed []string          `json:"notServedListeners"`
		} `json:"nodes"`
		Workloads map[string]string `json:"workloads"`
	}
	if err := json.Unmarshal([]byte(body("/config_dump")), &dump); err != nil {
		t.Fatal(err)
	}
	n, ok := dump.Nodes[id]
	if !ok || len(n.Listeners) != 2 || len(n.NotServed) != 1 || len(dump.Workloads) != 1 {
		t.Errorf("config dump: %+v", dump)
	}
}

// TestDrain checks that a request in flight when Run's context ends
// completes, and that Run returns after it.
func TestDrain(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	w := buildWorld(t, "s0", "s1")
	clusters := newStaticClusters()
	defer clusters.close()
	od := &fakeOrigDst{m: map[netipAddr]origEntry{}}
	p, err := New(Config{OutboundListen: "127.0.0.1:0", DrainTimeout: 5 * time.Second}, Deps{Clusters: clusters, OriginalDst: od, OpenLog: (&logFiles{files: map[string]*bytes.Buffer{}}).open}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	id := nodeID("demo", "front_shop")
	if err := p.Update(id, w.resources(t, id)); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, "done")
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = backend.Serve(ln) }()
	defer backend.Close()
	for _, vn := range []string{"blue_shop", "green_shop"} {
		clusters.remap.set(w.endpoint[vn].String()+":8080", ln.Addr().String())
	}
	src := netipMustParse("127.0.0.50")
	od.m[src] = origEntry{dst: netipAddrPort(w.vips["color.shop.svc.cluster.local"], 8080), cgroup: 7}
	p.SetWorkloads(map[uint64]string{7: id})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		return d.DialContext(ctx, "tcp", p.OutboundAddr().String())
	}}
	defer tr.CloseIdleConnections()
	result := make(chan string, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Get("http://color.shop.svc.cluster.local:8080/")
		if err != nil {
			result <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- string(b)
	}()
	<-started
	cancel()
	if got := <-result; got != "done" {
		t.Errorf("in-flight request during drain: %q", got)
	}
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	if _, err := net.Dial("tcp", p.OutboundAddr().String()); err == nil {
		t.Error("the outbound listener still accepts after Run returned")
	}
}

// TestHandOver starts proxy A, then proxy B on the same address
// (SO_REUSEPORT), and stops A while a client sends steady requests: none
// may fail.
func TestHandOver(t *testing.T) {
	w := buildWorld(t, "s0", "s1")
	id := nodeID("demo", "front_shop")
	a := newHarness(t, w, Config{})
	a.load(id)
	a.backend("blue_shop", 8080, nil)
	a.backend("green_shop", 8080, nil)
	src := a.caller("demo", "front_shop", "color.shop.svc.cluster.local", 8080)

	// B shares A's address and its view of the world.
	clusters := newStaticClusters()
	clusters.remap = a.clusters.remap
	t.Cleanup(clusters.close)
	b, err := New(Config{OutboundListen: a.p.OutboundAddr().String(), DrainTimeout: 5 * time.Second},
		Deps{Clusters: clusters, OriginalDst: a.od, OpenLog: a.logs.open}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(id, w.resources(t, id)); err != nil {
		t.Fatal(err)
	}
	b.SetWorkloads(a.cgroups)
	bctx, bcancel := context.WithCancel(context.Background())
	bdone := make(chan error, 1)
	go func() { bdone <- b.Run(bctx) }()
	t.Cleanup(func() {
		bcancel()
		if err := <-bdone; err != nil {
			t.Errorf("proxy B: %v", err)
		}
	})
	<-b.Ready()

	c := a.client(src, false)
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("http://color.shop.svc.cluster.local:8080/")
				if err != nil {
					failed.Add(1)
					t.Logf("request failed: %v", err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	// Stop A (what SIGTERM does): its listener closes, it drains.
	stopA := a.stop()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err := stopA(); err != nil {
		t.Errorf("proxy A: %v", err)
	}
	t.Logf("hand-over: %d requests ok, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed during the hand-over", failed.Load())
	}
}
