// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"math"
	"net/http"
	"testing"
)

// TestS2Routing checks appmesh-model.md §16 S2's expectations through the
// proxy: header exact, regex, inverted range with method, path and query,
// presence, and the unprioritised default, in priority order.
func TestS2Routing(t *testing.T) {
	w := buildWorld(t, "s0", "s1", "s2")
	h := newHarness(t, w, Config{})
	h.load(nodeID("demo", clientNode))
	h.backend("blue_shop", 8080, nil)
	h.backend("green_shop", 8080, nil)
	src := h.caller("demo", clientNode, "color-headers.shop.svc.cluster.local", 8080)
	// What the original destination (the service address) reaches when
	// the mesh-allow-all passthrough forwards there.
	ext := h.backend("external", 0, nil)
	h.clusters.remap.set(w.vips["color-headers.shop.svc.cluster.local"].String()+":8080", ext.Listener.Addr().String())
	for _, h2c := range []bool{false, true} {
		c := h.client(src, h2c)
		base := "http://color-headers.shop.svc.cluster.local:8080"
		for _, tc := range []struct {
			name   string
			method string
			path   string
			hdr    map[string]string
			want   string
		}{
			{"exact blue", "GET", "/", map[string]string{"color_header": "blue"}, "blue_shop"},
			{"regex green", "GET", "/x", map[string]string{"color_header": "darkgreen"}, "green_shop"},
			{"post order in range inverted", "POST", "/order?beta=true", map[string]string{"x-user-tier": "50"}, "green_shop"},
			{"post order tier absent", "POST", "/order?beta=true", nil, "green_shop"},
			{"post order out of inverted range falls through", "POST", "/order?beta=true", map[string]string{"x-user-tier": "150"}, "blue_shop"},
			{"get order does not match the method", "GET", "/order?beta=true", map[string]string{"x-user-tier": "50"}, "blue_shop"},
			{"query mismatch", "POST", "/order?beta=false", map[string]string{"x-user-tier": "50"}, "blue_shop"},
			{"path exact only", "POST", "/order/x?beta=true", map[string]string{"x-user-tier": "50"}, "blue_shop"},
			{"presence", "GET", "/", map[string]string{"color_header": "red"}, "green_shop"},
			{"default", "GET", "/anything", nil, "blue_shop"},
			{"host without port", "GET", "/", map[string]string{"host": "color-headers.shop.svc.cluster.local", "color_header": "blue"}, "blue_shop"},
		} {
			code, e := get(t, c, tc.method, base+tc.path, tc.hdr)
			if code != http.StatusOK || e.Name != tc.want {
				t.Errorf("h2c=%v %s: %s %s: got %d %q, want %q", h2c, tc.name, tc.method, tc.path, code, e.Name, tc.want)
			}
		}
		// An unknown host: S0's mesh is ALLOW_ALL, so the mesh-allow-all
		// virtual host passes it to the original destination.
		code, e := get(t, c, "GET", "http://unknown.example:8080/", nil)
		if code != http.StatusOK || e.Name != "external" {
			t.Errorf("h2c=%v unknown host through allow-all: got %d %q, want the original destination", h2c, code, e.Name)
		}
	}
}

// TestWeightedSplit checks S1's 90/10 canary over 4000 requests: the green
// share must be within 4.5 standard deviations of 10%.
func TestWeightedSplit(t *testing.T) {
	w := buildWorld(t, "s0", "s1")
	h := newHarness(t, w, Config{})
	h.load(nodeID("demo", "front_shop"))
	h.backend("blue_shop", 8080, nil)
	h.backend("green_shop", 8080, nil)
	src := h.caller("demo", "front_shop", "color.shop.svc.cluster.local", 8080)
	c := h.client(src, false)
	const n = 4000
	counts := map[string]int{}
	for range n {
		code, e := get(t, c, "GET", "http://color.shop.svc.cluster.local:8080/", nil)
		if code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		counts[e.Name]++
	}
	share := float64(counts["green_shop"]) / n
	sd := math.Sqrt(0.1 * 0.9 / n)
	t.Logf("blue %d green %d (green %.2f%%, bound ±%.2f%%)", counts["blue_shop"], counts["green_shop"], 100*share, 100*4.5*sd)
	if math.Abs(share-0.1) > 4.5*sd || counts["blue_shop"]+counts["green_shop"] != n {
		t.Errorf("green share %.4f outside 0.1±%.4f: %v", share, 4.5*sd, counts)
	}
}

// TestMatchKinds covers the match kinds S2 does not: path regex, header
// prefix and suffix, query presence, scheme and gRPC service matching,
// from testdata/matches.yaml through the translator.
func TestMatchKinds(t *testing.T) {
	w := buildWorld(t, "s0", "s1", "testdata/matches.yaml")
	h := newHarness(t, w, Config{})
	h.load(nodeID("demo", clientNode))
	h.backend("blue_shop", 8080, nil)
	h.backend("green_shop", 8080, nil)
	src := h.caller("demo", clientNode, "matches.shop.svc.cluster.local", 8080)
	c := h.client(src, false)
	base := "http://matches.shop.svc.cluster.local:8080"
	for _, tc := range []struct {
		name string
		path string
		hdr  map[string]string
		want string
	}{
		{"regex path", "/items/123", nil, "green_shop"},
		{"regex path is whole-path", "/items/123/x", nil, "blue_shop"},
		{"header prefix", "/", map[string]string{"x-tenant": "acme-1"}, "green_shop"},
		{"header suffix", "/", map[string]string{"x-region": "eu-west"}, "green_shop"},
		{"header suffix mismatch", "/", map[string]string{"x-region": "west-eu"}, "blue_shop"},
		{"query present", "/search?debug", nil, "green_shop"},
		{"query present with value", "/search?q=1&debug=yes", nil, "green_shop"},
		{"query absent", "/search?q=1", nil, "blue_shop"},
		{"longer prefix first", "/api/v2/x", nil, "green_shop"},
		{"shorter prefix", "/api/v1/x", nil, "blue_shop"},
		{"merged slashes", "//items//123", nil, "green_shop"},
	} {
		code, e := get(t, c, "GET", base+tc.path, tc.hdr)
		if code != http.StatusOK || e.Name != tc.want {
			t.Errorf("%s: GET %s: got %d %q, want %q", tc.name, tc.path, code, e.Name, tc.want)
		}
	}
}
