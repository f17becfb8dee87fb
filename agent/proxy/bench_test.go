// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkRoute matches a request against S2's route table: the
// presence route, fourth in order (exact, regex, method+path+query+range
// come first and fail).
func BenchmarkRoute(b *testing.B) {
	w := buildWorld(b, "s0", "s1", "s2")
	res := w.resources(b, nodeID("demo", clientNode))
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	c := &compiler{nodeID: "n", m: m}
	rt, err := compileRouteTable(res.Routes[0], c.statsFor(res.Routes[0].GetName()), c.durationFor(res.Routes[0].GetName()))
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest("GET", "http://color-headers.shop.svc.cluster.local:8080/some/path?x=1", nil)
	r.Header.Set("Color_header", "red")
	b.ReportAllocs()
	for b.Loop() {
		rq := reqCtx{scheme: "http", path: r.URL.EscapedPath()}
		vh := rt.vhostFor(r.Host)
		rt := vh.match(r, &rq)
		if rt == nil || rt.name != "header-present" {
			b.Fatalf("matched %v", rt)
		}
		_ = rt.pick()
	}
}

// benchClient sends GETs over keep-alive connections to addr.
func benchClient(dial func(ctx context.Context) (net.Conn, error)) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	if dial != nil {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }
	}
	return &http.Client{Transport: tr}
}

func runGets(b *testing.B, c *http.Client, url string) {
	b.Helper()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

var benchBody = []byte(`{"color":"blue"}`)

func benchBackend(b *testing.B) *httptest.Server {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(benchBody)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkProxyHTTP1 sends HTTP/1.1 requests through the proxy (S1's
// canary route: weighted clusters, retry policy, timeouts, traceparent,
// metrics) to a local backend, in-process.
func BenchmarkProxyHTTP1(b *testing.B) {
	w := buildWorld(b, "s0", "s1", "s2")
	h := newHarness(b, w, Config{})
	id := nodeID("demo", clientNode)
	h.load(id)
	srv := benchBackend(b)
	h.route("blue_shop", 8080, srv.Listener.Addr().String())
	h.route("green_shop", 8080, srv.Listener.Addr().String())
	src := h.caller("demo", clientNode, "color.shop.svc.cluster.local", 8080)
	c := benchClient(func(ctx context.Context) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		return d.DialContext(ctx, "tcp", h.p.OutboundAddr().String())
	})
	b.Cleanup(c.CloseIdleConnections)
	b.ResetTimer()
	runGets(b, c, "http://color.shop.svc.cluster.local:8080/")
}

// BenchmarkReverseProxyHTTP1 is the same request through
// net/http/httputil.ReverseProxy, for comparison.
func BenchmarkReverseProxyHTTP1(b *testing.B) {
	srv := benchBackend(b)
	target, _ := url.Parse(srv.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256}
	front := httptest.NewServer(rp)
	b.Cleanup(front.Close)
	c := benchClient(nil)
	b.Cleanup(c.CloseIdleConnections)
	b.ResetTimer()
	runGets(b, c, front.URL+"/")
}
