// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
)

// startProxies starts weft-proxy, nginx, HAProxy (HTTP mode), HAProxy (TCP
// mode) and httputil.ReverseProxy in the node's namespace, each in a
// cgroup of its own, pinned to cpuProxy, and waits until each answers.
// They all stay up for the whole bench; only the one under test gets
// traffic at any time.
func (b *bed) startProxies(ctx context.Context, services int) error {
	type starter struct {
		name string
		fn   func(context.Context, int) (*proc, error)
		port uint16
	}
	for _, s := range []starter{
		{"l7", func(ctx context.Context, _ int) (*proc, error) {
			return b.startWeftProxy(ctx, "weft-proxy", 0, portWeftProxy, portWeftAdmin)
		}, 0},
		{"nginx", b.startNginx, portNginx},
		{"haproxy", b.startHAProxy, portHAProxy},
		{"haproxy-tcp", b.startHAProxyTCP, portHAProxyTCP},
		{"revproxy", b.startRevProxy, portRevProxy},
	} {
		p, err := s.fn(ctx, services)
		if err != nil {
			return err
		}
		b.proxies[s.name] = p
		if s.port == 0 {
			continue
		}
		u := "http://" + netip.AddrPortFrom(b.node.Addr, s.port).String() + "/"
		if err := waitFor(ctx, p, s.name, func() error { return b.get(ctx, u) }); err != nil {
			return err
		}
	}
	return nil
}

// weftProxyConfig renders the egress configuration of the client's virtual
// node in the translator's golden format ({nodeId, listeners, routes,
// clusters, endpoints}): one filter chain per port (8080 HTTP/1.1, 8082
// and 9090 HTTP/2 upstream), a catch-all virtual host, one EDS cluster per
// port with the backend as its endpoint; plus `extra` services of one
// HTTP port each, for the footprint measurements.
func (b *bed) weftProxyConfig(extra int) map[string]any {
	ads := map[string]any{"ads": map[string]any{}, "resourceApiVersion": "V3"}
	breakers := map[string]any{"thresholds": []any{map[string]any{
		"maxConnections": 2147483647, "maxPendingRequests": 2147483647, "maxRequests": 2147483647, "maxRetries": 2147483647,
	}}}
	hcm := func(rds string) map[string]any {
		return map[string]any{
			"name": "envoy.filters.network.http_connection_manager",
			"typedConfig": map[string]any{
				"@type":      "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
				"statPrefix": "egress",
				"rds":        map[string]any{"configSource": ads, "routeConfigName": rds},
				"httpFilters": []any{map[string]any{
					"name":        "envoy.filters.http.router",
					"typedConfig": map[string]any{"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
				}},
				"upgradeConfigs": []any{map[string]any{"upgradeType": "websocket"}},
				"normalizePath":  true,
				"mergeSlashes":   true,
			},
		}
	}
	cluster := func(name string, h2 bool) map[string]any {
		c := map[string]any{
			"name": name, "type": "EDS", "edsClusterConfig": map[string]any{"edsConfig": ads},
			"connectTimeout": "1s", "circuitBreakers": breakers,
		}
		if h2 {
			c["typedExtensionProtocolOptions"] = map[string]any{
				"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
					"@type":              "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
					"explicitHttpConfig": map[string]any{"http2ProtocolOptions": map[string]any{}},
				},
			}
		}
		return c
	}
	endpoints := func(name string, ap netip.AddrPort) map[string]any {
		return map[string]any{"clusterName": name, "endpoints": []any{map[string]any{"lbEndpoints": []any{map[string]any{
			"endpoint": map[string]any{"address": map[string]any{"socketAddress": map[string]any{
				"address": ap.Addr().String(), "portValue": ap.Port(),
			}}},
			"healthStatus": "HEALTHY",
		}}}}}
	}
	route := func(port uint16, vhosts []any) map[string]any {
		return map[string]any{"name": fmt.Sprintf("rds_egress_http_%d", port), "virtualHosts": vhosts}
	}
	vhost := func(name string, domains []string, cl string) map[string]any {
		return map[string]any{"name": name, "domains": domains, "routes": []any{map[string]any{
			"match": map[string]any{"prefix": "/"},
			"route": map[string]any{"cluster": cl, "timeout": "15s"},
		}}}
	}
	var chains, routes, clusters, eps []any
	for _, port := range []uint16{portHTTP1, portH2C, portGRPC} {
		cl := fmt.Sprintf("cds_egress_bench_l7_%d", port)
		chains = append(chains, map[string]any{
			"filterChainMatch": map[string]any{"destinationPort": port},
			"filters":          []any{hcm(fmt.Sprintf("rds_egress_http_%d", port))},
		})
		vhosts := []any{vhost("l7.bench.local", []string{"*"}, cl)}
		clusters = append(clusters, cluster(cl, port != portHTTP1))
		eps = append(eps, endpoints(cl, b.serverAddr(port)))
		routes = append(routes, route(port, vhosts))
	}
	if extra > 0 {
		// The extra services listen on port 80: their own route table.
		var vhosts []any
		for i := range extra {
			name := fmt.Sprintf("svc-%d.bench.local", i)
			cl := fmt.Sprintf("cds_egress_bench_svc-%d_80", i)
			vhosts = append(vhosts, vhost(name, []string{name, name + ":80"}, cl))
			clusters = append(clusters, cluster(cl, false))
			eps = append(eps, endpoints(cl, b.serverAddr(portHTTP1)))
		}
		chains = append(chains, map[string]any{
			"filterChainMatch": map[string]any{"destinationPort": 80},
			"filters":          []any{hcm("rds_egress_http_80")},
		})
		routes = append(routes, route(80, vhosts))
	}
	return map[string]any{
		"nodeId": "mesh/" + meshName + "/virtualNode/client",
		"listeners": []any{map[string]any{
			"name":         "lds_egress_0.0.0.0_15001",
			"address":      map[string]any{"socketAddress": map[string]any{"address": "0.0.0.0", "portValue": portWeftProxy}},
			"filterChains": chains,
			"listenerFilters": []any{map[string]any{
				"name":        "envoy.filters.listener.original_dst",
				"typedConfig": map[string]any{"@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"},
			}},
			"trafficDirection": "OUTBOUND",
		}},
		"routes": routes, "clusters": clusters, "endpoints": eps,
	}
}

// envProxyArgs are extra flags of the weft-proxy under test (not of the
// footprint's), for profiling.
const envProxyArgs = "WEFT_BENCH_PROXY_ARGS"

// startWeftProxy starts weft-proxy in the cgroup of the node's workload
// named cgroup, with the bench's configuration and extra services.
func (b *bed) startWeftProxy(ctx context.Context, cgroup string, extra int, port, adminPort uint16) (*proc, error) {
	dir := filepath.Join(b.dir, fmt.Sprintf("%s-%d", cgroup, extra))
	if err := os.MkdirAll(filepath.Join(dir, "config"), 0o750); err != nil {
		return nil, err
	}
	j, err := json.MarshalIndent(b.weftProxyConfig(extra), "", " ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "config", "client.json"), j, 0o600); err != nil {
		return nil, err
	}
	st, err := protojson.Marshal(b.nodeState(extra))
	if err != nil {
		return nil, err
	}
	stateFile := filepath.Join(dir, "nodestate.json")
	if err := os.WriteFile(stateFile, st, 0o600); err != nil {
		return nil, err
	}
	admin := fmt.Sprintf("127.0.0.1:%d", adminPort)
	argv := []string{
		b.bins.proxy, "-config-dir", filepath.Join(dir, "config"), "-node-state", stateFile,
		"-cgroup-root", b.node.CgroupPath, "-pin-path", filepath.Join(b.node.PinPath, "weft"),
		"-outbound-listen", netip.AddrPortFrom(b.node.Addr, port).String(),
		"-admin-listen", admin, "-cache-dir", "", "-log-level", "warn",
	}
	if extra == 0 {
		// Profiling a bench run: e.g. -pprof-listen 127.0.0.1:6060 (in
		// the node's namespace).
		argv = append(argv, strings.Fields(os.Getenv(envProxyArgs))...)
	}
	p, err := b.start(ctx, "weft-proxy", b.node.NS, b.workloadCgroup(cgroup), cpuProxy, nil, argv...)
	if err != nil {
		return nil, err
	}
	return p, waitFor(ctx, p, "weft-proxy", func() error { return b.get(ctx, "http://"+admin+"/ready") })
}

func (b *bed) startNginx(ctx context.Context, _ int) (*proc, error) {
	dir := filepath.Join(b.dir, "nginx")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	a, s := b.node.Addr.String(), b.server.Addr.String()
	conf := fmt.Sprintf(`# written by weft-bench
daemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 3600s;
    http2_max_requests 1000000;
    upstream up_http1 { server %[3]s:%[4]d; keepalive 64; keepalive_requests 1000000; }
    upstream up_h2c   { server %[3]s:%[5]d; keepalive 64; keepalive_requests 1000000; }
    upstream up_grpc  { server %[3]s:%[6]d; keepalive 64; keepalive_requests 1000000; }
    server {
        listen %[2]s:%[7]d reuseport;
        location / { proxy_pass http://up_http1; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
    server {
        listen %[2]s:%[8]d http2;
        location / { proxy_pass http://up_h2c; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
    server {
        listen %[2]s:%[9]d http2;
        location / { grpc_pass grpc://up_grpc; }
    }
}
`, dir, a, s, portHTTP1, portH2C, portGRPC, portNginx, portNginx+1, portNginx+2)
	cfg := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	return b.start(ctx, "nginx", b.node.NS, b.workloadCgroup("nginx"), cpuProxy, nil,
		lookPath("nginx"), "-p", dir, "-c", cfg, "-e", filepath.Join(dir, "error.log"))
}

func (b *bed) startHAProxy(ctx context.Context, _ int) (*proc, error) {
	a, s := b.node.Addr.String(), b.server.Addr.String()
	conf := fmt.Sprintf(`# written by weft-bench
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout http-keep-alive 1h
    http-reuse always
frontend http1
    bind %[1]s:%[3]d
    default_backend http1
backend http1
    server s1 %[2]s:%[4]d
frontend h2c
    bind %[1]s:%[6]d proto h2
    default_backend h2c
backend h2c
    server s1 %[2]s:%[5]d proto h2
frontend grpc
    bind %[1]s:%[8]d proto h2
    default_backend grpc
backend grpc
    server s1 %[2]s:%[7]d proto h2
`, a, s, portHAProxy, portHTTP1, portH2C, portHAProxy+1, portGRPC, portHAProxy+2)
	return b.startHAProxyConf(ctx, "haproxy", conf)
}

func (b *bed) startHAProxyTCP(ctx context.Context, _ int) (*proc, error) {
	a, s := b.node.Addr.String(), b.server.Addr.String()
	conf := fmt.Sprintf(`# written by weft-bench
global
    nbthread 1
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
listen http1
    bind %[1]s:%[3]d
    server s1 %[2]s:%[4]d
listen h2c
    bind %[1]s:%[6]d
    server s1 %[2]s:%[5]d
listen grpc
    bind %[1]s:%[8]d
    server s1 %[2]s:%[7]d
`, a, s, portHAProxyTCP, portHTTP1, portH2C, portHAProxyTCP+1, portGRPC, portHAProxyTCP+2)
	return b.startHAProxyConf(ctx, "haproxy-tcp", conf)
}

func (b *bed) startHAProxyConf(ctx context.Context, name, conf string) (*proc, error) {
	cfg := filepath.Join(b.dir, name+".cfg")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	// -db: foreground, one process (no master).
	return b.start(ctx, name, b.node.NS, b.workloadCgroup(name), cpuProxy, nil, lookPath("haproxy"), "-f", cfg, "-db")
}

func (b *bed) startRevProxy(ctx context.Context, _ int) (*proc, error) {
	return b.start(ctx, "revproxy", b.node.NS, b.workloadCgroup("revproxy"), cpuProxy, []string{childEnv + "=revproxy"},
		b.bins.self, netip.AddrPortFrom(b.node.Addr, portRevProxy).String(), b.serverAddr(portHTTP1).String())
}

// lookPath finds a program in PATH or /usr/sbin (nginx and haproxy live
// there, which a non-login PATH may lack).
func lookPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return filepath.Join("/usr/sbin", name)
}

// revProxyMain is the httputil.ReverseProxy baseline: LISTEN UPSTREAM, with
// the default transport's keep-alive pool (100 idle connections per host).
func revProxyMain(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "revproxy: want LISTEN UPSTREAM")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	up := &url.URL{Scheme: "http", Host: args[1]}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 100
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(up) },
		Transport: tr,
	}
	srv := &http.Server{Addr: args[0], Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "revproxy:", err)
		return 1
	}
	return 0
}
