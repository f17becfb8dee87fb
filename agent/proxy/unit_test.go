// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

func TestHeaderMatcherSemantics(t *testing.T) {
	rng := &routev3.HeaderMatcher_RangeMatch{RangeMatch: &typev3.Int64Range{Start: 100, End: 200}}
	for _, tc := range []struct {
		name  string
		hm    *routev3.HeaderMatcher
		value *string
		want  bool
	}{
		{"range in", &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: rng}, ptr("150"), true},
		{"range end exclusive", &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: rng}, ptr("200"), false},
		{"range not a number", &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: rng}, ptr("1e2"), false},
		{"range missing", &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: rng}, nil, false},
		{"inverted range missing", &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: rng, InvertMatch: true}, nil, true},
		{"inverted range in", &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: rng, InvertMatch: true}, ptr("150"), false},
		{"present", &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}, ptr(""), true},
		{"present missing", &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}, nil, false},
		{"inverted present missing", &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: true}, nil, true},
		{"regex is whole-value", &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "ab"}},
		}}}, ptr("xaby"), false},
		{"exact ignore case", &routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "AbC"}, IgnoreCase: true,
		}}}, ptr("abc"), true},
	} {
		hm, err := compileHeaderMatcher(tc.hm)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("GET", "/", nil)
		if tc.value != nil {
			r.Header.Set("x", *tc.value)
		}
		rq := reqCtx{scheme: "http", path: "/"}
		if got := hm.match(r, &rq); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func ptr(s string) *string { return &s }

func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b":        "/a/b",
		"//a///b/":    "/a/b/",
		"/a/./b/../c": "/a/c",
		"/a/..":       "/",
		"/../a":       "/a",
		"/a/b/.":      "/a/b/",
	} {
		if got := normalizePath(in, true, true); got != want {
			t.Errorf("normalizePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestQueryValue(t *testing.T) {
	q := "a=1&b&c=x%20y&a=2&d+e=f"
	for name, want := range map[string]string{"a": "1", "b": "", "c": "x y", "d e": "f"} {
		if got, ok := queryValue(q, name); !ok || got != want {
			t.Errorf("%s: got %q %v, want %q", name, got, ok, want)
		}
	}
	if _, ok := queryValue(q, "z"); ok {
		t.Error("z found")
	}
}

func TestEnvoySubstitution(t *testing.T) {
	if got := envoySubstitution(`/v\1/$x`); got != `/v${1}/$$x` {
		t.Errorf("got %q", got)
	}
}

func TestFormat(t *testing.T) {
	segs := parseFormat("%REQ(:METHOD)% %REQ(X-MISSING?USER-AGENT):3% %UNKNOWN% 100% %RESPONSE_FLAGS% %START_TIME(%s)%\n", "h")
	e := &logEntry{method: "GET", reqHeader: http.Header{"User-Agent": {"curl/8"}}, flags: flagUpstreamConnFailure | flagRetryLimit, start: time.Unix(42, 0)}
	got := string((&logFormat{text: segs}).render(e, nil))
	if want := "GET cur %UNKNOWN% 100% UF,URX 42\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestWebSocket checks an upgraded connection tunnelled through an HTTP
// listener.
func TestWebSocket(t *testing.T) {
	w := buildWorld(t, "s0", "s1")
	h := newHarness(t, w, Config{})
	h.load(nodeID("demo", "front_shop"))
	ws := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		line, _ := brw.ReadString('\n')
		_, _ = fmt.Fprintf(c, "echo %s", line)
	})
	h.backend("blue_shop", 8080, ws)
	h.backend("green_shop", 8080, ws)
	src := h.caller("demo", "front_shop", "color.shop.svc.cluster.local", 8080)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
	c, err := d.Dial("tcp", h.p.OutboundAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: color.shop.svc.cluster.local:8080\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	_, _ = io.WriteString(c, "ping\n")
	line, err := r.ReadString('\n')
	if err != nil || line != "echo ping\n" {
		t.Errorf("through the tunnel: %q %v", line, err)
	}
	// The access log line is written when the tunnel ends.
	c.Close()
	waitFor(t, func() bool { return strings.Contains(strings.Join(h.logs.lines("/dev/stdout"), "\n"), "/ws 101") })
}
