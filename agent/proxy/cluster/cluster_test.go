// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-mesh/weft/agent/proxy"
)

func TestRoundRobinSpread(t *testing.T) {
	bs := []*backend{newBackend(t), newBackend(t), newBackend(t)}
	m, reg := newManager(t, Options{})
	update(t, m, static(t, "rr", "", bs[0].addr, bs[1].addr, bs[2].addr))
	c := get(t, m, "rr")
	seen := map[string]int{}
	for range 30 {
		st, body := mustDo(t, c)
		if st != 200 {
			t.Fatalf("status %d", st)
		}
		seen[body]++
	}
	want := map[string]int{bs[0].addr: 10, bs[1].addr: 10, bs[2].addr: 10}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("spread (-want +got):\n%s", diff)
	}
	if v := counterValue(t, reg, "weft_proxy_upstream_requests_total", map[string]string{"node": testNode, "cluster": "rr"}); v != 30 {
		t.Errorf("requests_total = %v, want 30", v)
	}
	if v := counterValue(t, reg, "weft_proxy_upstream_hosts", map[string]string{"cluster": "rr", "state": "healthy"}); v != 3 {
		t.Errorf("healthy hosts = %v, want 3", v)
	}
}

func TestWeights(t *testing.T) {
	m, _ := newManager(t, Options{})
	c := parseCluster(t, `{"name":"w","type":"STATIC","lbPolicy":"ROUND_ROBIN","loadAssignment":{"endpoints":[{"lbEndpoints":[
		{"endpoint":{"address":{"socketAddress":{"address":"10.0.0.1","portValue":80}}},"loadBalancingWeight":1},
		{"endpoint":{"address":{"socketAddress":{"address":"10.0.0.2","portValue":80}}},"loadBalancingWeight":3}]}]}}`)
	update(t, m, c)
	got := counts(t, get(t, m, "w"), 40)
	if diff := cmp.Diff(map[string]int{"10.0.0.1:80": 10, "10.0.0.2:80": 30}, got); diff != "" {
		t.Errorf("weighted spread (-want +got):\n%s", diff)
	}

	// Least request and random honour weights too, statistically: the
	// heavier host gets more.
	for _, lb := range []string{"LEAST_REQUEST", "RANDOM"} {
		c := parseCluster(t, `{"name":"w","type":"STATIC","lbPolicy":%q,"loadAssignment":{"endpoints":[{"lbEndpoints":[
			{"endpoint":{"address":{"socketAddress":{"address":"10.0.0.1","portValue":80}}},"loadBalancingWeight":1},
			{"endpoint":{"address":{"socketAddress":{"address":"10.0.0.2","portValue":80}}},"loadBalancingWeight":9}]}]}}`, lb)
		update(t, m, c)
		if lb == "LEAST_REQUEST" {
			// With no requests in flight, least request is a weighted
			// power of two choices; hold leases so that it balances.
			var ls []*Lease
			for range 50 {
				l, err := get(t, m, "w").acquire(context.Background(), Hints{})
				if err != nil {
					t.Fatal(err)
				}
				ls = append(ls, l)
			}
			n := map[string]int{}
			for _, l := range ls {
				n[l.Host()]++
				l.Done(200, nil)
			}
			if n["10.0.0.2:80"] <= n["10.0.0.1:80"]*2 {
				t.Errorf("%s: spread %v, want the weight-9 host far ahead", lb, n)
			}
			continue
		}
		n := counts(t, get(t, m, "w"), 400)
		if n["10.0.0.2:80"] <= n["10.0.0.1:80"]*2 {
			t.Errorf("%s: spread %v, want the weight-9 host far ahead", lb, n)
		}
	}
}

func TestPoolReuse(t *testing.T) {
	b := newBackend(t)
	m, _ := newManager(t, Options{})
	update(t, m, static(t, "reuse", "", b.addr))
	c := get(t, m, "reuse")
	for range 20 {
		if st, _ := mustDo(t, c); st != 200 {
			t.Fatalf("status %d", st)
		}
	}
	if n := b.accepted.Load(); n != 1 {
		t.Errorf("backend accepted %d connections for 20 sequential requests, want 1", n)
	}
}

func TestTransportAddsNoHeaders(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		b := newBackend(t, withH2C())
		m, _ := newManager(t, Options{})
		extra := ""
		if h2 {
			extra = `,"http2ProtocolOptions":{}`
		}
		update(t, m, static(t, "hdr", extra, b.addr))
		l, err := get(t, m, "hdr").Acquire(t.Context(), Hints{})
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+l.Host()+"/", nil)
		req.Header.Del("User-Agent")
		resp, err := l.Transport().RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		l.Done(resp.StatusCode, nil)
		if ua, ae := resp.Header.Get("X-UA"), resp.Header.Get("X-AE"); ua != "false []" || ae != "" {
			t.Errorf("h2=%v: backend saw User-Agent %s, Accept-Encoding %q; want neither", h2, ua, ae)
		}
		if _, ok := req.Header["User-Agent"]; ok {
			t.Error("the caller's request was modified")
		}
	}
}

func TestH2C(t *testing.T) {
	b := newBackend(t, withH2C())
	m, _ := newManager(t, Options{})
	update(t, m, static(t, "h2", `,"typedExtensionProtocolOptions":{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions":{
		"@type":"type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions","explicitHttpConfig":{"http2ProtocolOptions":{}}}}`, b.addr))
	c := get(t, m, "h2")
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			l, err := c.Acquire(context.Background(), Hints{})
			if err != nil {
				t.Error(err)
				return
			}
			req, _ := http.NewRequest(http.MethodGet, "http://"+l.Host()+"/", nil)
			resp, err := l.Transport().RoundTrip(req)
			if err != nil {
				l.Done(0, err)
				t.Error(err)
				return
			}
			_ = resp.Body.Close()
			l.Done(resp.StatusCode, nil)
			if resp.ProtoMajor != 2 || resp.Header.Get("X-Proto") != "HTTP/2.0" {
				t.Errorf("proto %s (backend saw %s), want HTTP/2", resp.Proto, resp.Header.Get("X-Proto"))
			}
		})
	}
	wg.Wait()
	// One HTTP/2 connection per host, as Envoy.
	if n := b.accepted.Load(); n != 1 {
		t.Errorf("backend accepted %d connections for 10 HTTP/2 requests", n)
	}
}

const breakers = `,"circuitBreakers":{"thresholds":[{"maxConnections":%d,"maxPendingRequests":%d,"maxRequests":%d,"maxRetries":%d}]}`

func TestMaxRequests(t *testing.T) {
	m, reg := newManager(t, Options{})
	update(t, m, static(t, "mr", fmt.Sprintf(breakers, 1000, 1000, 2, 1000), "10.0.0.1:80"))
	c := get(t, m, "mr")
	l1, err1 := c.Acquire(context.Background(), Hints{})
	l2, err2 := c.Acquire(context.Background(), Hints{})
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(context.Background(), Hints{}); !errors.Is(err, ErrOverflow) {
		t.Fatalf("third Acquire: %v, want ErrOverflow", err)
	}
	l1.Done(200, nil)
	l1.Done(200, nil) // ignored
	l3, err := c.Acquire(context.Background(), Hints{})
	if err != nil {
		t.Fatalf("Acquire after Done: %v", err)
	}
	l2.Done(200, nil)
	l3.Done(200, nil)
	if v := counterValue(t, reg, "weft_proxy_upstream_overflow_total", map[string]string{"cluster": "mr", "breaker": "max_requests"}); v != 1 {
		t.Errorf("overflow{max_requests} = %v, want 1", v)
	}
}

func TestMaxPending(t *testing.T) {
	m, reg := newManager(t, Options{})
	update(t, m, static(t, "mp", fmt.Sprintf(breakers, 1, 1, 1000, 1000), "10.0.0.1:80"))
	c := get(t, m, "mp")
	active, err := c.Acquire(context.Background(), Hints{}) // uses the connection
	if err != nil {
		t.Fatal(err)
	}
	pending, err := c.Acquire(context.Background(), Hints{}) // waits for it
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(context.Background(), Hints{}); !errors.Is(err, ErrOverflow) || !strings.Contains(err.Error(), "max_pending_requests") {
		t.Fatalf("third Acquire: %v, want ErrOverflow for max_pending_requests", err)
	}
	active.Done(200, nil) // the pending request gets the connection
	l, err := c.Acquire(context.Background(), Hints{})
	if err != nil {
		t.Fatalf("Acquire after one finished: %v", err)
	}
	pending.Done(200, nil)
	l.Done(200, nil)
	if v := counterValue(t, reg, "weft_proxy_upstream_overflow_total", map[string]string{"cluster": "mp", "breaker": "max_pending_requests"}); v != 1 {
		t.Errorf("overflow{max_pending_requests} = %v, want 1", v)
	}
	if v := counterValue(t, reg, "weft_proxy_upstream_overflow_total", map[string]string{"cluster": "mp", "breaker": "max_connections"}); v != 3 {
		t.Errorf("overflow{max_connections} = %v, want 3 (every request that had to wait)", v)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active != 0 || c.pending != 0 {
		t.Errorf("active %d pending %d after all leases are done", c.active, c.pending)
	}
}

func TestMaxRetries(t *testing.T) {
	m, reg := newManager(t, Options{})
	update(t, m, static(t, "rt", fmt.Sprintf(breakers, 1000, 1000, 1000, 1), "10.0.0.1:80"))
	c := get(t, m, "rt")
	first, err := c.Acquire(context.Background(), Hints{})
	if err != nil {
		t.Fatal(err)
	}
	retry, err := c.Acquire(context.Background(), Hints{Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(context.Background(), Hints{Attempt: 1}); !errors.Is(err, ErrOverflow) {
		t.Fatalf("second concurrent retry: %v, want ErrOverflow", err)
	}
	// First attempts are not limited by max_retries.
	other, err := c.Acquire(context.Background(), Hints{})
	if err != nil {
		t.Fatal(err)
	}
	retry.Done(503, nil)
	again, err := c.Acquire(context.Background(), Hints{Attempt: 2})
	if err != nil {
		t.Fatalf("retry after the previous one finished: %v", err)
	}
	for _, l := range []proxy.Lease{first, other, again} {
		l.Done(200, nil)
	}
	if v := counterValue(t, reg, "weft_proxy_upstream_overflow_total", map[string]string{"cluster": "rt", "breaker": "max_retries"}); v != 1 {
		t.Errorf("overflow{max_retries} = %v, want 1", v)
	}
}

func TestMaxConnections(t *testing.T) {
	release := make(chan struct{})
	b := newBackend(t, withBlock(release))
	m, _ := newManager(t, Options{})
	update(t, m, static(t, "mc", fmt.Sprintf(breakers, 2, 1000, 1000, 1000), b.addr))
	c := get(t, m, "mc")
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if st, _, err := do(t, c, Hints{}); err != nil || st != 200 {
				t.Errorf("request: %d %v", st, err)
			}
		})
	}
	eventually(t, func() error {
		c.mu.Lock()
		active, pending := c.active, c.pending
		c.mu.Unlock()
		if n := b.inflight.Load(); n != 2 || active != 6 || pending != 4 {
			return fmt.Errorf("%d requests at the backend (want 2), %d active (want 6), %d pending (want 4)", n, active, pending)
		}
		return nil
	})
	close(release)
	wg.Wait()
	if n := b.accepted.Load(); n != 2 {
		t.Errorf("backend accepted %d connections, want 2 (max_connections)", n)
	}

	// tcp_proxy: Dial beyond max_connections overflows.
	update(t, m, static(t, "tcp", fmt.Sprintf(breakers, 1, 1000, 1000, 1000), b.addr))
	tc := get(t, m, "tcp")
	l1, err := tc.Acquire(context.Background(), Hints{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := l1.Dial(context.Background())
	if err != nil {
		t.Fatalf("first Dial: %v", err)
	}
	l1.Done(0, nil)
	l2, err := tc.Acquire(context.Background(), Hints{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Dial(context.Background()); !errors.Is(err, ErrOverflow) {
		t.Errorf("second Dial: %v, want ErrOverflow", err)
	}
	_ = conn.Close()
	conn, err = l2.Dial(context.Background())
	if err != nil {
		t.Fatalf("Dial after Close: %v", err)
	}
	_ = conn.Close()
	l2.Done(0, nil)
}

func TestConnectFailure(t *testing.T) {
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	m, _ := newManager(t, Options{})
	update(t, m, static(t, "down", "", addr))
	c := get(t, m, "down")
	if _, _, err := do(t, c, Hints{}); !errors.Is(err, ErrConnectFailure) {
		t.Errorf("request: %v, want ErrConnectFailure", err)
	}
	l, err := c.Acquire(context.Background(), Hints{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Dial(context.Background()); !errors.Is(err, ErrConnectFailure) {
		t.Errorf("Dial: %v, want ErrConnectFailure", err)
	}
	l.Done(0, err)
}

func TestAvoid(t *testing.T) {
	m, _ := newManager(t, Options{})
	update(t, m, static(t, "av", "", "10.0.0.1:80", "10.0.0.2:80"))
	c := get(t, m, "av")
	for range 10 {
		l, err := c.Acquire(context.Background(), Hints{Attempt: 1, Avoid: []string{"10.0.0.1:80"}})
		if err != nil {
			t.Fatal(err)
		}
		l.Done(200, nil)
		if l.Host() != "10.0.0.2:80" {
			t.Fatalf("picked avoided host %s", l.Host())
		}
	}
	// With nothing else to pick, an avoided host is still picked.
	l, err := c.Acquire(context.Background(), Hints{Avoid: []string{"10.0.0.1:80", "10.0.0.2:80"}})
	if err != nil {
		t.Fatalf("Acquire avoiding every host: %v", err)
	}
	l.Done(200, nil)
}

func TestPanicMode(t *testing.T) {
	m, _ := newManager(t, Options{})
	cla := func(name string) string {
		return fmt.Sprintf(`{"name":%q,"type":"STATIC","loadAssignment":{"endpoints":[{"lbEndpoints":[
			{"endpoint":{"address":{"socketAddress":{"address":"10.0.0.1","portValue":80}}},"healthStatus":"HEALTHY"},
			{"endpoint":{"address":{"socketAddress":{"address":"10.0.0.2","portValue":80}}},"healthStatus":"UNHEALTHY"},
			{"endpoint":{"address":{"socketAddress":{"address":"10.0.0.3","portValue":80}}},"healthStatus":"DRAINING"}]}]}`, name)
	}
	// 1 of 3 healthy: 33% × 1.4 = 47% < 50%: panic, all three are used.
	update(t, m, parseCluster(t, "%s}", cla("panic")),
		parseCluster(t, `%s,"commonLbConfig":{"healthyPanicThreshold":{"value":0}}}`, cla("nopanic")),
		parseCluster(t, `%s,"commonLbConfig":{"healthyPanicThreshold":{"value":40}}}`, cla("lower")))
	if got := counts(t, get(t, m, "panic"), 30); len(got) != 3 {
		t.Errorf("panic mode spread %v, want all 3 hosts", got)
	}
	for _, name := range []string{"nopanic", "lower"} {
		if got := counts(t, get(t, m, name), 30); !cmp.Equal(got, map[string]int{"10.0.0.1:80": 30}) {
			t.Errorf("%s: spread %v, want only the healthy host", name, got)
		}
	}
	// No healthy host and panic disabled: no healthy upstream.
	update(t, m, parseCluster(t, `{"name":"none","type":"STATIC","commonLbConfig":{"healthyPanicThreshold":{"value":0}},
		"loadAssignment":{"endpoints":[{"lbEndpoints":[
		{"endpoint":{"address":{"socketAddress":{"address":"10.0.0.2","portValue":80}}},"healthStatus":"UNHEALTHY"}]}]}}`),
		parseCluster(t, `{"name":"empty","type":"STATIC"}`))
	for _, name := range []string{"none", "empty"} {
		if _, err := get(t, m, name).Acquire(context.Background(), Hints{}); !errors.Is(err, ErrNoHealthyUpstream) {
			t.Errorf("%s: Acquire: %v, want ErrNoHealthyUpstream", name, err)
		}
	}
}

func TestOriginalDst(t *testing.T) {
	b := newBackend(t)
	m, _ := newManager(t, Options{})
	update(t, m, parseCluster(t, `{"name":"cds_egress_demo_mesh-allow-all","type":"ORIGINAL_DST","lbPolicy":"CLUSTER_PROVIDED",
		"connectTimeout":"1s","cleanupInterval":"0.05s"}`))
	c := get(t, m, "cds_egress_demo_mesh-allow-all")
	if _, err := c.Acquire(context.Background(), Hints{}); !errors.Is(err, ErrNoOriginalDst) || !errors.Is(err, ErrNoHealthyUpstream) {
		t.Fatalf("Acquire without a destination: %v", err)
	}
	dst := netip.MustParseAddrPort(b.addr)
	for range 3 {
		st, body, err := do(t, c, Hints{OriginalDst: dst})
		if err != nil || st != 200 || body != b.addr {
			t.Fatalf("request: %d %q %v", st, body, err)
		}
	}
	if b.accepted.Load() != 1 {
		t.Errorf("backend accepted %d connections, want 1 (pooled per destination)", b.accepted.Load())
	}
	// TCP passthrough.
	l, err := c.Acquire(context.Background(), Hints{OriginalDst: dst})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := l.Dial(context.Background())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	_ = conn.Close()
	l.Done(0, nil)

	// Idle destinations are cleaned up (and their pools closed) by Run.
	run(t, m)
	eventually(t, func() error {
		if hs := c.Hosts(); len(hs) != 0 {
			return fmt.Errorf("hosts %v", hs)
		}
		return nil
	})
	eventually(t, func() error {
		if a, cl := b.accepted.Load(), b.closed.Load(); a != cl {
			return fmt.Errorf("accepted %d, closed %d", a, cl)
		}
		return nil
	})
}

func TestCloseAndRun(t *testing.T) {
	m, _ := newManager(t, Options{})
	update(t, m, static(t, "x", "", "10.0.0.1:80"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	eventually(t, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.group == nil {
			return errors.New("not running yet")
		}
		return nil
	})
	if err := m.Run(context.Background()); err == nil {
		t.Error("a second Run did not fail")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := get(t, m, "x").Acquire(context.Background(), Hints{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Acquire after Close: %v", err)
	}
	if err := m.Update(testNode, nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Update after Close: %v", err)
	}
}
