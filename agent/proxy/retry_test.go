// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// failing answers status for the first n requests, then echoes; it sleeps
// delay before the first n answers.
func failing(name string, n int64, status int, delay time.Duration) (http.Handler, *atomic.Int64) {
	var calls atomic.Int64
	echo := echoHandler(name)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= n {
			_, _ = io.Copy(io.Discard, r.Body)
			if delay > 0 {
				select {
				case <-time.After(delay):
				case <-r.Context().Done():
					return
				}
			}
			w.WriteHeader(status)
			return
		}
		echo.ServeHTTP(w, r)
	}), &calls
}

func resilienceHarness(t *testing.T, cfg Config) (*harness, *http.Client) {
	t.Helper()
	w := buildWorld(t, "s0", "s1", "testdata/resilience.yaml")
	h := newHarness(t, w, cfg)
	h.load(nodeID("demo", clientNode))
	src := h.caller("demo", clientNode, "resilience.shop.svc.cluster.local", 8080)
	return h, h.client(src, false)
}

const resilienceURL = "http://resilience.shop.svc.cluster.local:8080"

// TestRetries checks the default retry policy (503, twice) against a
// backend that fails N times, with the retries counted.
func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		fails    int64
		wantCode int
		retries  float64
	}{
		{0, 200, 0},
		{1, 200, 1},
		{2, 200, 2},
		{3, 503, 2},
	} {
		h, c := resilienceHarness(t, Config{})
		handler, calls := failing("blue_shop", tc.fails, http.StatusServiceUnavailable, 0)
		h.backend("blue_shop", 8080, handler)
		code, _ := get(t, c, "GET", resilienceURL+"/", nil)
		retries := testutil.ToFloat64(h.p.m.retries.WithLabelValues(nodeID("demo", clientNode), "cds_egress_demo_blue_shop_http_8080"))
		t.Logf("fails %d: status %d after %d calls, %v retries", tc.fails, code, calls.Load(), retries)
		if code != tc.wantCode || retries != tc.retries || calls.Load() != int64(tc.retries)+1 {
			t.Errorf("fails %d: got %d with %v retries (%d calls), want %d with %v", tc.fails, code, retries, calls.Load(), tc.wantCode, tc.retries)
		}
	}
}

// TestRetryBody checks that a request body is replayed on a retry, and that
// a body over the retry buffer is sent once, not retried.
func TestRetryBody(t *testing.T) {
	h, c := resilienceHarness(t, Config{RetryBufferBytes: 1024})
	handler, calls := failing("blue_shop", 1, http.StatusServiceUnavailable, 0)
	h.backend("blue_shop", 8080, handler)
	small := strings.Repeat("a", 1000)
	resp, err := c.Post(resilienceURL+"/", "text/plain", strings.NewReader(small))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(small)) || calls.Load() != 2 {
		t.Errorf("small body: status %d after %d calls, body replayed: %v", resp.StatusCode, calls.Load(), bytes.Contains(b, []byte(small)))
	}

	calls.Store(0)
	big := strings.Repeat("b", 5000)
	resp, err = c.Post(resilienceURL+"/", "text/plain", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || calls.Load() != 1 {
		t.Errorf("big body: status %d after %d calls, want 503 after 1 (not retried)", resp.StatusCode, calls.Load())
	}
}

// TestRetriable4xx checks client-error (retriable-4xx: 409).
func TestRetriable4xx(t *testing.T) {
	h, c := resilienceHarness(t, Config{})
	handler, calls := failing("blue_shop", 1, http.StatusConflict, 0)
	h.backend("blue_shop", 8080, handler)
	code, e := get(t, c, "GET", resilienceURL+"/conflict", nil)
	if code != 200 || e.Name != "blue_shop" || calls.Load() != 2 {
		t.Errorf("got %d after %d calls, want 200 after 2", code, calls.Load())
	}
}

// TestTimeouts checks the per-try timeout (retried under server-error),
// the route timeout (504) and a disabled route timeout.
func TestTimeouts(t *testing.T) {
	h, c := resilienceHarness(t, Config{})
	handler, calls := failing("blue_shop", 1, http.StatusOK, 2*time.Second)
	h.backend("blue_shop", 8080, handler)
	start := time.Now()
	code, e := get(t, c, "GET", resilienceURL+"/per-try", nil)
	t.Logf("per-try: %d in %v after %d calls", code, time.Since(start), calls.Load())
	if code != 200 || e.Name != "blue_shop" || calls.Load() != 2 {
		t.Errorf("per-try timeout: got %d after %d calls, want 200 after 2", code, calls.Load())
	}

	calls.Store(0)
	start = time.Now()
	code, _ = get(t, c, "GET", resilienceURL+"/slow", nil)
	t.Logf("route timeout: %d in %v", code, time.Since(start))
	if code != http.StatusGatewayTimeout {
		t.Errorf("route timeout: got %d, want 504", code)
	}

	slow := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(400 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	})
	h.backend("blue_shop", 8080, slow)
	code, _ = get(t, c, "GET", resilienceURL+"/unbounded", nil)
	if code != http.StatusNoContent {
		t.Errorf("timeout 0 (disabled): got %d, want 204", code)
	}
}

// TestConnectFailure checks connect-failure retries to another host and
// the 503 when every attempt fails.
func TestConnectFailure(t *testing.T) {
	h, c := resilienceHarness(t, Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	h.route("blue_shop", 8080, dead)
	code, _ := get(t, c, "GET", resilienceURL+"/", nil)
	cl := h.clusters.cluster(nodeID("demo", clientNode), "cds_egress_demo_blue_shop_http_8080")
	t.Logf("outcomes %v", cl.results())
	if code != http.StatusServiceUnavailable || len(cl.results()) != 3 {
		t.Errorf("got %d after %d attempts, want 503 after 3", code, len(cl.results()))
	}
}

// TestClientGoesAway checks that the upstream sees the request's context
// end when the client goes away.
func TestClientGoesAway(t *testing.T) {
	h, c := resilienceHarness(t, Config{})
	gone := make(chan struct{})
	h.backend("blue_shop", 8080, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(gone)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", resilienceURL+"/unbounded", nil)
	if _, err := c.Do(req); err == nil {
		t.Fatal("want a client timeout")
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Error("the upstream request was not cancelled")
	}
}
