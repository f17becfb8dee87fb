// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

const gatewayID = "mesh/demo/virtualGateway/ingress-gw_shop"

// TestGateway checks S5's expectations on a directly bound gateway
// listener: the flattened gateway routes with host, prefix and path
// rewrites, and the gateway's JSON access log.
func TestGateway(t *testing.T) {
	w := buildWorld(t, "s0", "s1", "s2", "s5")
	h := newHarness(t, w, Config{BindOverrides: map[string]string{"lds_ingress_0.0.0.0_port_8088": "127.0.0.1:0"}})
	h.load(gatewayID)
	h.backend("blue_shop", 8080, nil)
	h.backend("green_shop", 8080, nil)
	addr := h.p.ListenerAddr(gatewayID, "lds_ingress_0.0.0.0_port_8088")
	if addr == nil {
		t.Fatal("gateway listener not bound")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	base := "http://" + addr.String()
	for _, tc := range []struct {
		name, method, path, host string
		hdr                      map[string]string
		wantCode                 int
		wantNode                 []string
		wantURI, wantHost        string
	}{
		{"status -> /ping on color", "GET", "/status", "gw.example", nil, 200, []string{"blue_shop", "green_shop"}, "/ping", "color.shop.svc.cluster.local"},
		{"status needs GET", "POST", "/status", "gw.example", nil, 404, nil, "", ""},
		{"maroon -> /blue/", "GET", "/maroon/x?fish=nemo", "gw.example", nil, 200, []string{"blue_shop"}, "/blue/x?fish=nemo", "color-headers.shop.svc.cluster.local"},
		{"maroon needs the fish", "GET", "/maroon/x?fish=dory", "gw.example", nil, 404, nil, "", ""},
		{"maroon then the service's header route", "GET", "/maroon/x?fish=nemo", "gw.example", map[string]string{"color_header": "lightgreen"}, 200, []string{"green_shop"}, "/blue/x?fish=nemo", "color-headers.shop.svc.cluster.local"},
		{"colors with a matching host", "GET", "/colors/a", "shop.example.com", nil, 200, []string{"blue_shop"}, "/a", "color-headers.shop.svc.cluster.local"},
		{"colors with another host", "GET", "/colors/a", "shop.example.org", nil, 404, nil, "", ""},
		{"colors then the service's exact path", "POST", "/colors/order?beta=true", "shop.example.com", map[string]string{"x-user-tier": "7"}, 200, []string{"green_shop"}, "/order?beta=true", "color-headers.shop.svc.cluster.local"},
		{"api keeps its prefix", "GET", "/api/v1", "gw.example", nil, 200, []string{"blue_shop", "green_shop"}, "/api/v1", "color.shop.svc.cluster.local"},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		req.Host = tc.host
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var e echo
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.wantCode {
			t.Errorf("%s: got %d, want %d", tc.name, resp.StatusCode, tc.wantCode)
			continue
		}
		if tc.wantCode != 200 {
			continue
		}
		if !contains(tc.wantNode, e.Name) || e.URI != tc.wantURI || e.Host != tc.wantHost {
			t.Errorf("%s: got %s %s host %s, want %v %s host %s", tc.name, e.Name, e.URI, e.Host, tc.wantNode, tc.wantURI, tc.wantHost)
		}
		if strings.Contains(tc.name, "status") && e.Original != "/status" {
			t.Errorf("%s: x-envoy-original-path %q", tc.name, e.Original)
		}
	}
	// S5's JSON format: {path: %REQ(:PATH)%, code: %RESPONSE_CODE%}; the
	// path is the rewritten one, as in Envoy.
	lines := h.logs.lines("/dev/stdout")
	t.Logf("gateway access log:\n%s", strings.Join(lines, "\n"))
	if len(lines) != 9 {
		t.Fatalf("%d access log lines, want 9", len(lines))
	}
	if lines[0] != `{"code":200,"path":"/ping"}` || lines[1] != `{"code":404,"path":"/status"}` {
		t.Errorf("json lines: %q, %q", lines[0], lines[1])
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestAccessLogAndTrace checks S1's text access log and the W3C
// traceparent propagation.
func TestAccessLogAndTrace(t *testing.T) {
	w := buildWorld(t, "s0", "s1")
	h := newHarness(t, w, Config{})
	h.load(nodeID("demo", "front_shop"))
	h.backend("blue_shop", 8080, nil)
	h.backend("green_shop", 8080, nil)
	src := h.caller("demo", "front_shop", "color.shop.svc.cluster.local", 8080)
	c := h.client(src, false)

	const in = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	_, e := get(t, c, "GET", "http://color.shop.svc.cluster.local:8080/a?b=c", map[string]string{"traceparent": in})
	tp := regexp.MustCompile(`^00-4bf92f3577b34da6a3ce929d0e0e4736-([0-9a-f]{16})-01$`).FindStringSubmatch(e.Traceparent)
	if tp == nil || tp[1] == "00f067aa0ba902b7" {
		t.Errorf("propagated traceparent %q: want the trace id kept and a new span id", e.Traceparent)
	}
	_, e = get(t, c, "GET", "http://color.shop.svc.cluster.local:8080/new", nil)
	if !validTraceparent(e.Traceparent) {
		t.Errorf("new traceparent %q is not valid", e.Traceparent)
	}
	_, e = get(t, c, "GET", "http://color.shop.svc.cluster.local:8080/bad", map[string]string{"traceparent": "00-zz-00-01"})
	if !validTraceparent(e.Traceparent) {
		t.Errorf("traceparent replacing an invalid one %q is not valid", e.Traceparent)
	}

	lines := h.logs.lines("/dev/stdout")
	t.Logf("front access log:\n%s", strings.Join(lines, "\n"))
	re := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /a\?b=c 200 cds_egress_demo_(blue|green)_shop_http_8080$`)
	if len(lines) != 3 || !re.MatchString(lines[0]) {
		t.Errorf("text access log %q does not match %s", lines, re)
	}
}
