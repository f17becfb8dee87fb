// SPDX-License-Identifier: Apache-2.0

package proxy_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

const gatewayHTTP = `{"portMapping":{"port":8088,"protocol":"http"}}`

// An upstream that closes its keep-alive connections shortly after each
// answer: the requests that find such a connection in the pool go out
// again on a new one inside the upstream client, so every client request
// gets its 200 without a retry of the route's policy.
func TestGatewayUpstreamClosesIdleConnections(t *testing.T) {
	url, reg := gatewayStack(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = io.WriteString(brw, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		_ = brw.Flush()
		time.AfterFunc(5*time.Millisecond, func() { _ = conn.Close() })
	}), gatewayHTTP)
	c := &http.Client{Timeout: 10 * time.Second}
	for i := range 5 {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "ok" {
			t.Fatalf("request %d: %d %q, want 200 ok", i, resp.StatusCode, b)
		}
		time.Sleep(30 * time.Millisecond) // the upstream's close arrives
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "weft_proxy_retries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				t.Errorf("%v route retries, want 0 (a stale pooled connection is not a failed attempt)", v)
			}
		}
	}
}

// A client that goes away in the middle of an answer: the proxy gives up
// the upstream exchange, and the upstream sees its request cancelled.
func TestGatewayClientGoesAwayCancelsUpstream(t *testing.T) {
	cancelled := make(chan struct{}, 1)
	url, _ := gatewayStack(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Chunked: the proxy flushes what it gets.
		_, _ = io.WriteString(w, "partial")
		_ = http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
			cancelled <- struct{}{}
		case <-time.After(10 * time.Second):
		}
	}), gatewayHTTP)
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatalf("the upstream request was not cancelled within 5 s of the client going away (got %q)", buf)
	}
}
