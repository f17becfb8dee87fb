// SPDX-License-Identifier: Apache-2.0

//go:build e2e && linux

package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/test/meshbed"
	"github.com/weft-mesh/weft/test/netsim"
	"github.com/weft-mesh/weft/test/testutil"
)

// Names of TestSamples (testdata/samples.yaml and testdata/s7.yaml).
const (
	headersURL   = "http://color-headers.shop.svc.cluster.local:8080"
	inventoryURL = "http://inventory.shop.svc.cluster.local"
	gatewayID    = "mesh/demo/virtualGateway/ingress-gw_shop"
	gatewayPort  = 8088
	// extHost is S7's external host (httpbin.org in the sample): a node of
	// the test, which the test's DNS server resolves for the controller.
	extHost  = "httpbin.weft-e2e.test"
	workerID = "mesh/locked/virtualNode/worker_locked"
	// slowFor is S8's long request: longer than Envoy's default route
	// timeout of 15 s, shorter than the route's and listener's 60 s.
	slowFor = 16 * time.Second
)

// samples is the running mesh of TestSamples.
type samples struct {
	*meshbed.Bed
	front, worker            *netsim.Workload
	blue, green              *netsim.Workload
	inventoryOK, inventoryKO *netsim.Workload
	inventoryV2              *netsim.Workload // version=v2: not an instance S8 selects
	ext                      *netsim.Node
	caFile                   string
	gateway                  *meshbed.Process
	dns                      *netsim.Process // the external DNS server
	// slow gets the result of S8's long request, started at slowStart.
	slow      <-chan meshbed.HTTPResult
	slowStart time.Time
}

// TestSamples runs appmesh-model.md §16 samples S2, S5, S7, S8 and S9 on
// one mesh of simulated nodes (see doc.go): their resources applied with
// weftctl (Kubernetes form) or the App Mesh REST API (S9), real servers in
// pods, and real clients (net/http, raw TCP) in pods or outside the mesh.
// S1, S3 and S4 are TestMesh's; S6 (mTLS) has a test of its own.
func TestSamples(t *testing.T) {
	testutil.RequirePrivileged(t)
	testutil.SkipOnOldKernel(t, "6.6", "cgroup sock_addr links, bpf_set_retval, tcx")
	s := setUpSamples(t)
	begin := time.Now()

	// S8's long request runs beside the other checks.
	slow := make(chan meshbed.HTTPResult, 1)
	s.slow, s.slowStart = slow, time.Now()
	go func() {
		var res meshbed.HTTPResult
		if err := s.Client.Run(t.Context(), s.front, &res, "http-call", "-timeout", "45s",
			fmt.Sprintf("%s:8080/slow?for=%s", inventoryURL, slowFor)); err != nil {
			res.Error = err.Error()
		}
		slow <- res
	}()

	// S9 first: it creates route canary, which S5's /status and /api/ lead to.
	t.Run("S9", s.s9)
	t.Run("S2", s.s2)
	t.Run("S5", s.s5)
	t.Run("S7", s.s7)
	t.Run("S8", s.s8)
	t.Logf("the checks took %v", time.Since(begin).Round(time.Millisecond))
}

// setUpSamples builds the mesh: node-a runs front (mesh demo), worker (mesh
// locked) and the gateway ingress-gw; node-b blue, green and two inventory
// pods; node ext (no agent) the external host: a DNS server for the
// controller and an HTTPS server on 443 and 8443.
func setUpSamples(t *testing.T) *samples {
	t.Helper()
	begin := time.Now()
	s := &samples{Bed: meshbed.New(t, meshbed.BuildBinaries(t, false))}
	s.front = s.AddPod(s.A, "front", meshName, "front_shop", 8080)
	s.worker = s.AddPod(s.A, "worker", "locked", "worker_locked")
	s.blue = s.AddPod(s.B, "blue", meshName, "blue_shop", 8080)
	s.green = s.AddPod(s.B, "green", meshName, "green_shop", 8080)
	v1, v2 := map[string]string{"version": "v1"}, map[string]string{"version": "v2"}
	s.inventoryOK = s.AddPodAttrs(s.B, "inventory-1", meshName, "inventory_shop", v1, 8080, 9090)
	s.inventoryKO = s.AddPodAttrs(s.B, "inventory-2", meshName, "inventory_shop", v1, 8080, 9090)
	s.inventoryV2 = s.AddPodAttrs(s.B, "inventory-3", meshName, "inventory_shop", v2, 8080, 9090)

	s.ext = s.Net.AddNode("ext")
	s.caFile = s.writeCerts(t)
	extWL := s.ext.AddWorkload("httpbin", netsim.WorkloadOptions{HostNetwork: true})
	s.StartServer(extWL, "tls-server", "-name", "httpbin", "-listen", ":443", "-listen", ":8443",
		"-cert", filepath.Join(s.Dir, "httpbin.pem"), "-key", filepath.Join(s.Dir, "httpbin-key.pem"))
	dnsWL := s.ext.AddWorkload("dns", netsim.WorkloadOptions{HostNetwork: true})
	s.dns = s.StartServer(dnsWL, "dns-server", "-listen", netip.AddrPortFrom(s.ext.Addr, 53).String(), "-record", extHost+"="+s.ext.Addr.String())
	s.DNSServers = []string{s.ext.Addr.String()}

	s.StartController(0)
	s.Weftctl("apply", "-f", filepath.Join("testdata", "samples.yaml"), "-f", filepath.Join("testdata", "s7.yaml"))

	s.StartServer(s.blue, "color-server", "-name", "blue")
	s.StartServer(s.green, "color-server", "-name", "green")
	s.StartServer(s.inventoryOK, "app-server", "-name", "inventory-1")
	s.StartServer(s.inventoryKO, "app-server", "-name", "inventory-2", "-fail-status", "500")
	s.StartServer(s.inventoryV2, "app-server", "-name", "inventory-3")
	s.StartNodes()
	s.gateway = s.StartGateway(s.A, gatewayID)

	// Ready when front reaches color-headers and inventory's h2c listener
	// (not its REST one: an answer of inventory-2 there would count
	// towards its ejection).
	meshbed.Eventually(t, 30*time.Second, func() error {
		if r := s.call(t, s.front, headersURL+"/"); r.Code != http.StatusOK {
			return fmt.Errorf("front → color-headers: %d %s", r.Code, r.Error)
		}
		if r := s.call(t, s.front, "-h2c", inventoryURL+":9090/"); r.Code != http.StatusOK {
			return fmt.Errorf("front → inventory:9090: %d %s", r.Code, r.Error)
		}
		return nil
	})
	t.Logf("the mesh is up after %v", time.Since(begin).Round(time.Millisecond))
	return s
}

// call runs http-call in pod w.
func (s *samples) call(t *testing.T, w *netsim.Workload, args ...string) meshbed.HTTPResult {
	t.Helper()
	var res meshbed.HTTPResult
	if err := s.Client.Run(t.Context(), w, &res, "http-call", args...); err != nil {
		t.Fatal(err)
	}
	return res
}

// connect runs connect in pod w.
func (s *samples) connect(t *testing.T, w *netsim.Workload, addr string) meshbed.ConnectResult {
	t.Helper()
	var res meshbed.ConnectResult
	if err := s.Client.Run(t.Context(), w, &res, "connect", "-timeout", "2s", addr); err != nil {
		t.Fatal(err)
	}
	return res
}

// s9: route canary of S1 in its raw API form (samples/api/s9.yaml) through
// the REST API: refused while a target node does not exist; version 1, ACTIVE, its ARN; the same create again is
// idempotent, the token with another body a conflict; an update makes
// version 2 (and the original spec back version 3); blue_shop cannot be deleted while the route names it; and
// front gets the 90/10 split.
func (s *samples) s9(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "pkg", "manifest", "testdata", "samples", "api", "s9.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var in struct {
		MeshName          string          `json:"meshName"`
		VirtualRouterName string          `json:"virtualRouterName"`
		RouteName         string          `json:"routeName"`
		Spec              json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &in); err != nil {
		t.Fatal(err)
	}
	coll := fmt.Sprintf("/v20190125/meshes/%s/virtualRouter/%s/routes", in.MeshName, in.VirtualRouterName)
	body := func(spec json.RawMessage, token string) []byte {
		b, _ := json.Marshal(map[string]any{"routeName": in.RouteName, "spec": spec, "clientToken": token})
		return b
	}
	// The create is accepted only when its nodes exist.
	missing, _ := json.Marshal(map[string]any{
		"routeName": "canary-missing", "clientToken": "s9-missing",
		"spec": json.RawMessage(strings.Replace(string(in.Spec), `"green_shop"`, `"missing_shop"`, 1)),
	})
	if !strings.Contains(string(in.Spec), `"green_shop"`) {
		t.Fatalf("spec %s names no green_shop", in.Spec)
	}
	code, errType := s.api(t, http.MethodPut, coll, missing, nil)
	describe, _ := s.api(t, http.MethodGet, coll+"/canary-missing", nil, nil)
	t.Logf("CreateRoute naming missing_shop: %d %s; DescribeRoute then: %d", code, errType, describe)
	if code < 400 || code > 499 || describe != http.StatusNotFound {
		t.Errorf("CreateRoute naming a node that does not exist: %d %s, then DescribeRoute %d; want a 4xx and no route", code, errType, describe)
	}

	type routeData struct {
		Metadata struct {
			Arn     string `json:"arn"`
			Version int    `json:"version"`
		} `json:"metadata"`
		Status struct {
			Status string `json:"status"`
		} `json:"status"`
		RouteName string `json:"routeName"`
	}
	var created, again routeData
	code, errType = s.api(t, http.MethodPut, coll, body(in.Spec, "s9-canary"), &created)
	t.Logf("CreateRoute %s: %d, arn %s, version %d, status %s", in.RouteName, code, created.Metadata.Arn, created.Metadata.Version, created.Status.Status)
	wantARN := "mesh/demo/virtualRouter/color_shop/route/canary"
	if code != http.StatusOK || created.Metadata.Version != 1 || created.Status.Status != "ACTIVE" ||
		!strings.HasPrefix(created.Metadata.Arn, "arn:aws:appmesh:") || !strings.HasSuffix(created.Metadata.Arn, ":"+wantARN) {
		t.Fatalf("CreateRoute: %d %s %+v; want 200, version 1, ACTIVE, arn arn:aws:appmesh:<region>:<account>:%s", code, errType, created, wantARN)
	}
	code, _ = s.api(t, http.MethodPut, coll, body(in.Spec, "s9-canary"), &again)
	if code != http.StatusOK || again.Metadata.Version != 1 || again.Metadata.Arn != created.Metadata.Arn {
		t.Errorf("the same CreateRoute again: %d %+v; want the same route, version 1", code, again)
	}
	other := json.RawMessage(strings.Replace(string(in.Spec), `"weight":90`, `"weight":80`, 1))
	if string(other) == string(in.Spec) {
		t.Fatalf("spec %s has no weight 90", in.Spec)
	}
	code, errType = s.api(t, http.MethodPut, coll, body(other, "s9-canary"), nil)
	t.Logf("the client token again with another body: %d %s", code, errType)
	if code != http.StatusConflict || errType != "ConflictException" {
		t.Errorf("the client token with another body: %d %s; want 409 ConflictException", code, errType)
	}
	// An update (80/10, as a different body) bumps the version to 2; the
	// original spec back makes it 3.
	for i, spec := range []json.RawMessage{other, in.Spec} {
		var updated routeData
		upd, _ := json.Marshal(map[string]any{"spec": spec, "clientToken": fmt.Sprintf("s9-canary-update-%d", i)})
		code, errType = s.api(t, http.MethodPut, coll+"/"+in.RouteName, upd, &updated)
		t.Logf("UpdateRoute %d: %d %s, version %d", i+1, code, errType, updated.Metadata.Version)
		if want := i + 2; code != http.StatusOK || updated.Metadata.Version != want {
			t.Errorf("UpdateRoute %d: %d %s version %d; want 200 and version %d", i+1, code, errType, updated.Metadata.Version, want)
		}
	}
	code, errType = s.api(t, http.MethodDelete, "/v20190125/meshes/demo/virtualNodes/blue_shop", nil, nil)
	t.Logf("DeleteVirtualNode blue_shop: %d %s", code, errType)
	if code != http.StatusConflict || errType != "ResourceInUseException" {
		t.Errorf("DeleteVirtualNode blue_shop: %d %s; want 409 ResourceInUseException", code, errType)
	}

	// The canary behaviour, as TestMesh checks S1's Kubernetes form.
	const n = 1000
	var res meshbed.LoadResult
	meshbed.Eventually(t, 30*time.Second, func() error {
		if err := s.Client.Run(t.Context(), s.front, &res, "http-load", "-url", colorURL, "-n", "20", "-c", "4"); err != nil {
			return err
		}
		if res.Errors != 0 {
			return fmt.Errorf("front → color: %v, %d errors (%s)", res.Counts, res.Errors, res.FirstError)
		}
		return nil
	})
	if err := s.Client.Run(t.Context(), s.front, &res, "http-load", "-url", colorURL, "-n", fmt.Sprint(n), "-c", "8"); err != nil {
		t.Fatal(err)
	}
	blue, green := res.Counts["blue"], res.Counts["green"]
	t.Logf("%d requests in %s: blue %d, green %d, errors %d", n, res.Elapsed, blue, green, res.Errors)
	sd := math.Sqrt(n * 0.1 * 0.9)
	if res.Errors != 0 || blue+green != n {
		t.Errorf("answers %v, %d errors (%s); want %d from blue and green", res.Counts, res.Errors, res.FirstError, n)
	}
	if lo, hi := 100-5*sd, 100+5*sd; float64(green) < lo || float64(green) > hi {
		t.Errorf("green answered %d of %d, outside [%.0f, %.0f] around the 10%% weight", green, n, lo, hi)
	}
}

// api calls the controller's REST API from the ctrl node with the bearer
// token and decodes a 200's body into out; it returns the status code and
// the error type (X-Amzn-Errortype).
func (s *samples) api(t *testing.T, method, path string, body []byte, out any) (int, string) {
	t.Helper()
	tok, err := os.ReadFile(s.Token)
	if err != nil {
		t.Fatal(err)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.APIURL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.CtrlHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, resp.Header.Get("X-Amzn-Errortype")
}

// s2: front calls color-headers with each variant of S2's expectations;
// each lands on the backend its route names, in priority order.
func (s *samples) s2(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"color_header blue (exact-blue, priority 10)", []string{"-H", "color_header: blue", headersURL + "/"}, "blue"},
		{"color_header darkgreen (regex-green, 20)", []string{"-H", "color_header: darkgreen", headersURL + "/"}, "green"},
		{"POST /order?beta=true x-user-tier 50 (beta-users-post, 30)", []string{"-X", "POST", "-H", "x-user-tier: 50", headersURL + "/order?beta=true"}, "green"},
		{"POST /order?beta=true x-user-tier 150: the inverted range falls through to default", []string{"-X", "POST", "-H", "x-user-tier: 150", headersURL + "/order?beta=true"}, "blue"},
		{"GET /order?beta=true x-user-tier 50: not POST, default", []string{"-H", "x-user-tier: 50", headersURL + "/order?beta=true"}, "blue"},
		{"POST /order?beta=false x-user-tier 50: query mismatch, default", []string{"-X", "POST", "-H", "x-user-tier: 50", headersURL + "/order?beta=false"}, "blue"},
		{"color_header red (header-present, 40)", []string{"-H", "color_header: red", headersURL + "/"}, "green"},
		{"no header (default, no priority)", []string{headersURL + "/"}, "blue"},
		{"color_header blue and POST /order?beta=true x-user-tier 50: priority 10 wins over 30", []string{"-X", "POST", "-H", "color_header: blue", "-H", "x-user-tier: 50", headersURL + "/order?beta=true"}, "blue"},
	} {
		res := s.call(t, s.front, tc.args...)
		t.Logf("%s: %d %q (backend saw %s)", tc.name, res.Code, res.Body, res.Seen[meshbed.HeaderPath])
		if res.Code != http.StatusOK || res.Body != tc.want {
			t.Errorf("%s: %d %q %s; want 200 from %s", tc.name, res.Code, res.Body, res.Error, tc.want)
		}
	}
}

// s5: requests to the gateway ingress-gw on node-a's :8088, from the ctrl
// node (outside the mesh): the four expectations of S5, and the four
// gateway routes attached to ingress-gw through the namespace selector.
func (s *samples) s5(t *testing.T) {
	out := s.Weftctl("get", "gatewayroutes", "--mesh", meshName, "--gateway", "ingress-gw_shop")
	for _, r := range []string{"colors_shop", "maroon-is-blue_shop", "status_shop", "keep-prefix_shop"} {
		if !strings.Contains(out, r) {
			t.Errorf("gateway route %s is not attached to ingress-gw_shop:\n%s", r, out)
		}
	}
	gw := netip.AddrPortFrom(s.A.Node.Addr, gatewayPort)
	logStart := len(s.gateway.Output())
	for _, tc := range []struct {
		name, path, host string
		wantCode         int
		wantPath         string // the path the backend saw
		wantHost         string // the Host it saw ("": not checked)
		wantFrom         []string
	}{
		{"GET /status → /ping on color (canary)", "/status", "", 200, "/ping", "", []string{"blue", "green"}},
		{"GET /maroon/x?fish=nemo → /blue/x on color-headers, Host rewritten", "/maroon/x?fish=nemo", "", 200, "/blue/x?fish=nemo", "color-headers.shop.svc.cluster.local", []string{"blue"}},
		{"GET /colors/a Host shop.example.com → /a on color-headers", "/colors/a", "shop.example.com", 200, "/a", "color-headers.shop.svc.cluster.local", []string{"blue"}},
		{"GET /colors/a Host shop.example.org: no route", "/colors/a", "shop.example.org", 404, "", "", nil},
		{"GET /api/v1 → /api/v1 on color", "/api/v1", "", 200, "/api/v1", "", []string{"blue", "green"}},
	} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+gw.String()+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := s.CtrlHTTP.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		from, path, host := resp.Header.Get(meshbed.HeaderName), resp.Header.Get(meshbed.HeaderPath), resp.Header.Get(meshbed.HeaderHost)
		t.Logf("%s: %d from %q, the backend saw path %q, Host %q", tc.name, resp.StatusCode, from, path, host)
		if resp.StatusCode != tc.wantCode || path != tc.wantPath || (tc.wantHost != "" && host != tc.wantHost) ||
			(tc.wantFrom != nil && !containsString(tc.wantFrom, from)) || (tc.wantFrom == nil && from != "") {
			t.Errorf("%s: %d %q from %q, path %q, Host %q; want %d from %v, path %q, Host %q",
				tc.name, resp.StatusCode, b, from, path, host, tc.wantCode, tc.wantFrom, tc.wantPath, tc.wantHost)
		}
	}
	// The gateway's JSON access log has a line per request (written once
	// the answer is sent: wait for it).
	var lines []string
	meshbed.Eventually(t, 5*time.Second, func() error {
		lines = nil
		for line := range strings.Lines(string(s.gateway.Output()[logStart:])) {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == nil && m["path"] != nil && m["code"] != nil {
				lines = append(lines, strings.TrimSpace(line))
			}
		}
		if len(lines) != 5 {
			return fmt.Errorf("the gateway's access log has %d lines for 5 requests: %v", len(lines), lines)
		}
		return nil
	})
	t.Logf("gateway access log: %s", strings.Join(lines, " "))
}

func containsString(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// s7: mesh locked (DROP_ALL) and worker, whose one backend models the
// external host extHost:443. worker opens TLS to it by name (the test's
// server certificate, checked by worker: the TLS is end to end); any
// other destination fails at connect; with the mesh switched to ALLOW_ALL
// they connect to their original address.
func (s *samples) s7(t *testing.T) {
	am := mustScrape(t, s.A.AgentMetrics)
	pm := mustScrape(t, s.A.ProxyMetrics)
	var res meshbed.HTTPResult
	meshbed.Eventually(t, 30*time.Second, func() error {
		res = s.call(t, s.worker, "-ca", s.caFile, "-timeout", "3s", "https://"+extHost+"/")
		if res.Code != http.StatusOK {
			return fmt.Errorf("worker → https://%s/: %d %s", extHost, res.Code, res.Error)
		}
		return nil
	})
	aa := mustScrape(t, s.A.AgentMetrics)
	pa := mustScrape(t, s.A.ProxyMetrics)
	d := func(a, b meshbed.Metrics, name string, labels ...string) float64 {
		return b.Sum(name, labels...) - a.Sum(name, labels...)
	}
	t.Logf("worker → https://%s/: %d %q %s in %s (server port %s); node-a: balanced_l4 +%v, redirected_l7 +%v, proxy tcp connections of worker +%v",
		extHost, res.Code, res.Body, res.Proto, res.Elapsed, res.Seen[meshbed.HeaderPort],
		d(am, aa, "weft_agent_decisions_total", "decision", "balanced_l4"), d(am, aa, "weft_agent_decisions_total", "decision", "redirected_l7"),
		d(pm, pa, "weft_proxy_tcp_connections_total", "node", workerID))
	if res.Body != "httpbin" || res.Seen[meshbed.HeaderPort] != "443" {
		t.Errorf("worker got %q from port %q; want httpbin's answer on 443", res.Body, res.Seen[meshbed.HeaderPort])
	}
	// The controller found the address through the test's DNS server.
	if q := "query " + extHost + ". A"; !strings.Contains(string(s.dns.Stdout()), q) {
		t.Errorf("the test's DNS server got no %q; it printed:\n%s", q, s.dns.Stdout())
	}
	if d(am, aa, "weft_agent_decisions_total", "decision", "balanced_l4") < 1 && d(pm, pa, "weft_proxy_tcp_connections_total", "node", workerID) < 1 {
		t.Error("neither the kernel's L4 path nor the proxy's TCP proxy counted worker's connection")
	}

	others := []string{
		netip.AddrPortFrom(s.ext.Addr, 8443).String(), // the same host, another port
		netip.AddrPortFrom(s.CtrlIP(), 7480).String(), // another host
	}
	for _, addr := range others {
		c := s.connect(t, s.worker, addr)
		t.Logf("DROP_ALL: worker connect(%s) = ok %v, %s (%s) after %s", addr, c.OK, c.Errno, c.Error, c.Elapsed)
		if c.OK || (c.Errno != "EPERM" && c.Errno != "ECONNREFUSED") {
			t.Errorf("DROP_ALL: worker connect(%s): %+v; want EPERM or ECONNREFUSED at connect", addr, c)
		}
	}
	// front's mesh (ALLOW_ALL) reaches the same address: the denial is
	// worker's mesh's.
	if c := s.connect(t, s.front, others[0]); !c.OK {
		t.Errorf("front (ALLOW_ALL) connect(%s): %+v", others[0], c)
	}

	b, err := os.ReadFile(filepath.Join("testdata", "s7.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	allow := strings.Replace(string(b), "egressFilter: {type: DROP_ALL}", "egressFilter: {type: ALLOW_ALL}", 1)
	if allow == string(b) {
		t.Fatal("testdata/s7.yaml has no DROP_ALL egress filter")
	}
	file := filepath.Join(s.Dir, "s7-allow-all.yaml")
	meshbed.WriteFile(t, file, allow)
	t0 := time.Now()
	s.Weftctl("apply", "-f", file)
	for _, addr := range others {
		meshbed.Eventually(t, 30*time.Second, func() error {
			if c := s.connect(t, s.worker, addr); !c.OK {
				return fmt.Errorf("ALLOW_ALL: worker connect(%s): %s %s", addr, c.Errno, c.Error)
			}
			return nil
		})
		t.Logf("ALLOW_ALL: worker connects to %s (%v after the apply)", addr, time.Since(t0).Round(time.Millisecond))
	}
	if res := s.call(t, s.worker, "-ca", s.caFile, "-timeout", "3s", "https://"+extHost+"/"); res.Code != http.StatusOK {
		t.Errorf("ALLOW_ALL: worker → https://%s/: %d %s", extHost, res.Code, res.Error)
	}
}

// s8: inventory (Cloud Map discovery: the pods registered as
// inventory_shop with version=v1; inventory-3 has version=v2) on two
// listeners with separate route tables, outlier detection ejecting
// inventory-2 (500 on every request), the long request started by
// TestSamples, and the rejection of a route without its ports.
func (s *samples) s8(t *testing.T) {
	// Two listeners, two route tables: REST on 8080 (HTTP/1.1 to the pods'
	// 8080), h2c on 9090 (HTTP/2 to their 9090).
	for _, tc := range []struct {
		args             []string
		wantProto, wantP string
	}{
		{[]string{inventoryURL + ":8080/healthz"}, "HTTP/1.1", "8080"},
		{[]string{"-h2c", inventoryURL + ":9090/"}, "HTTP/2.0", "9090"},
	} {
		res := s.call(t, s.front, tc.args...)
		t.Logf("front %v: %d %q, %s to the client; the backend %s saw %s on port %s", tc.args, res.Code, res.Body, res.Proto,
			res.Seen[meshbed.HeaderName], res.Seen[meshbed.HeaderProto], res.Seen[meshbed.HeaderPort])
		// inventory-2 fails every request but /healthz: on 9090 a 500 is
		// an answer of inventory-2 all the same.
		if (res.Code != 200 && res.Code != 500) || res.Seen[meshbed.HeaderProto] != tc.wantProto || res.Seen[meshbed.HeaderPort] != tc.wantP {
			t.Errorf("front %v: %d, backend saw %s on port %s; want %s on %s", tc.args, res.Code, res.Seen[meshbed.HeaderProto], res.Seen[meshbed.HeaderPort], tc.wantProto, tc.wantP)
		}
	}

	// Outlier detection: inventory-2 answers 500 to everything; after 5 in
	// a row it is ejected, and inventory-1 takes all the traffic.
	pm := mustScrape(t, s.A.ProxyMetrics)
	var first, second meshbed.LoadResult
	if err := s.Client.Run(t.Context(), s.front, &first, "http-load", "-url", inventoryURL+":8080/", "-n", "40", "-c", "1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Client.Run(t.Context(), s.front, &second, "http-load", "-url", inventoryURL+":8080/", "-n", "50", "-c", "2"); err != nil {
		t.Fatal(err)
	}
	ej := mustScrape(t, s.A.ProxyMetrics).Sum("weft_proxy_outlier_ejections_total") - pm.Sum("weft_proxy_outlier_ejections_total")
	t.Logf("40 requests one at a time: %v, codes %v; then 50 more: %v, codes %v; weft_proxy_outlier_ejections_total +%v",
		first.Counts, first.Codes, second.Counts, second.Codes, ej)
	if n := first.Codes["500"]; n < 5 || n > 10 || first.Counts["inventory-1"]+n != 40 {
		t.Errorf("first 40 requests: %v %v; want inventory-2's 500s to stop after 5 in a row (at most 10 when the long request reset its count)", first.Counts, first.Codes)
	}
	if second.Counts["inventory-1"] != 50 {
		t.Errorf("after the ejection: %v %v (%s); want all 50 from inventory-1", second.Counts, second.Codes, second.FirstError)
	}
	// Cloud Map: inventory-3 is registered as inventory_shop with
	// version=v2; the node selects version=v1.
	if n := first.Counts["inventory-3"] + second.Counts["inventory-3"]; n != 0 {
		t.Errorf("inventory-3 (version=v2) answered %d requests; the node's attributes select version=v1 only", n)
	}
	if ej < 1 {
		t.Errorf("weft_proxy_outlier_ejections_total moved by %v", ej)
	}

	// A route whose match.port or weightedTargets[].port is removed is
	// rejected: router and node have several listeners.
	b, err := os.ReadFile(filepath.Join("testdata", "samples.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]string{
		{"match: {prefix: /, port: 8080}", "match: {prefix: /}"},
		{"{virtualNodeRef: {name: inventory}, weight: 100, port: 9090}", "{virtualNodeRef: {name: inventory}, weight: 100}"},
	} {
		if !strings.Contains(string(b), r[0]) {
			t.Fatalf("testdata/samples.yaml has no %q", r[0])
		}
		file := filepath.Join(s.Dir, "s8-no-port.yaml")
		meshbed.WriteFile(t, file, strings.Replace(string(b), r[0], r[1], 1))
		out, err := s.RunWeftctl(t.Context(), "apply", "-f", file)
		t.Logf("without %q: weftctl apply: %v: %s", r[0], err, strings.TrimSpace(out))
		if err == nil || !strings.Contains(out, "has several listeners") || !strings.Contains(out, "nothing was applied") {
			t.Errorf("apply without %q: %v\n%s\nwant a rejection naming the port and several listeners", r[0], err, out)
		}
	}

	// The long request, started with the test.
	res := <-s.slow
	took := time.Since(s.slowStart)
	t.Logf("GET /slow?for=%v on inventory:8080: %d %q after %s (the client: %s)", slowFor, res.Code, res.Body, took.Round(time.Millisecond), res.Elapsed)
	if res.Code != http.StatusOK || !strings.HasPrefix(res.Body, "inventory-") {
		t.Errorf("the %v request: %d %q %s; want 200 (route and listener allow 60 s)", slowFor, res.Code, res.Body, res.Error)
	}
}

// writeCerts writes a CA and extHost's certificate and key into the
// mesh's directory and returns the CA's file.
func (s *samples) writeCerts(t *testing.T) string {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weft e2e external CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: extHost}, DNSNames: []string{extHost},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(typ string, b []byte) string { return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})) }
	meshbed.WriteFile(t, filepath.Join(s.Dir, "httpbin.pem"), enc("CERTIFICATE", der))
	meshbed.WriteFile(t, filepath.Join(s.Dir, "httpbin-key.pem"), enc("PRIVATE KEY", keyDER))
	ca := filepath.Join(s.Dir, "ca.pem")
	meshbed.WriteFile(t, ca, enc("CERTIFICATE", caDER))
	return ca
}
