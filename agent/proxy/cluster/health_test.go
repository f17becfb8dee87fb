// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"fmt"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// healthCheck renders health_checks with a 50 ms interval.
func healthCheck(checker string) string {
	return `,"healthChecks":[{"timeout":"1s","interval":"0.05s","unhealthyThreshold":2,"healthyThreshold":2,` + checker + `}]`
}

// waitHealthy waits until the host at addr has the wanted health.
func waitHealthy(t *testing.T, c *Cluster, addr string, want bool) {
	t.Helper()
	eventually(t, func() error {
		h, ok := hostState(c, addr)
		if !ok {
			return fmt.Errorf("no host %s", addr)
		}
		if h.Healthy != want {
			return fmt.Errorf("host %s healthy=%v, want %v", addr, h.Healthy, want)
		}
		return nil
	})
}

func TestHealthCheckHTTP(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			var opts []backendOpt
			codec := ""
			if h2 {
				opts = append(opts, withH2C())
				codec = `,"codecClientType":"HTTP2"`
			}
			bs := []*backend{newBackend(t, opts...), newBackend(t, opts...), newBackend(t, opts...)}
			m, reg := newManager(t, Options{})
			update(t, m, static(t, "hc", healthCheck(`"httpHealthCheck":{"path":"/healthz"`+codec+`}`), bs[0].addr, bs[1].addr, bs[2].addr))
			c := get(t, m, "hc")
			run(t, m)

			bs[1].hcStatus.Store(503)
			waitHealthy(t, c, bs[1].addr, false)
			if got := counts(t, c, 20); got[bs[1].addr] != 0 {
				t.Errorf("unhealthy host picked: %v", got)
			}
			if v := counterValue(t, reg, "weft_proxy_upstream_hosts", map[string]string{"cluster": "hc", "state": "unhealthy"}); v != 1 {
				t.Errorf("unhealthy hosts gauge = %v, want 1", v)
			}
			bs[1].hcStatus.Store(302) // not 200: still failing
			waitHealthy(t, c, bs[1].addr, false)
			bs[1].hcStatus.Store(200)
			waitHealthy(t, c, bs[1].addr, true)
			if v := counterValue(t, reg, "weft_proxy_health_checks_total", map[string]string{"cluster": "hc", "result": "failure"}); v < 2 {
				t.Errorf("health_checks_total{failure} = %v, want ≥ 2", v)
			}
			if v := counterValue(t, reg, "weft_proxy_health_checks_total", map[string]string{"cluster": "hc", "result": "success"}); v < 2 {
				t.Errorf("health_checks_total{success} = %v, want ≥ 2", v)
			}
		})
	}
}

func TestHealthCheckGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	grpc_health_v1.RegisterHealthServer(srv, hs)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	hs.SetServingStatus("color.Color", grpc_health_v1.HealthCheckResponse_SERVING)

	m, _ := newManager(t, Options{})
	update(t, m, static(t, "grpc", healthCheck(`"grpcHealthCheck":{"serviceName":"color.Color"}`), ln.Addr().String()))
	c := get(t, m, "grpc")
	run(t, m)
	addr := ln.Addr().String()
	hs.SetServingStatus("color.Color", grpc_health_v1.HealthCheckResponse_NOT_SERVING)
	waitHealthy(t, c, addr, false)
	hs.SetServingStatus("color.Color", grpc_health_v1.HealthCheckResponse_SERVING)
	waitHealthy(t, c, addr, true)
	// An unknown service is NOT_FOUND: unhealthy.
	hs.SetServingStatus("color.Color", grpc_health_v1.HealthCheckResponse_SERVICE_UNKNOWN)
	waitHealthy(t, c, addr, false)
}

func TestHealthCheckTCP(t *testing.T) {
	// The endpoint's health-check port is a separate listener the test
	// closes and opens again.
	b := newBackend(t)
	hcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hcAddr := hcLn.Addr().String()
	_, hcPort, _ := net.SplitHostPort(hcAddr)
	accept := func(ln net.Listener) {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.Close()
		}
	}
	go accept(hcLn)

	m, _ := newManager(t, Options{})
	host, port, _ := net.SplitHostPort(b.addr)
	update(t, m, parseCluster(t, `{"name":"tcp","type":"STATIC","loadAssignment":{"endpoints":[{"lbEndpoints":[
		{"endpoint":{"address":{"socketAddress":{"address":%q,"portValue":%s}},"healthCheckConfig":{"portValue":%s}}}]}]}%s}`,
		host, port, hcPort, healthCheck(`"tcpHealthCheck":{}`)))
	c := get(t, m, "tcp")
	run(t, m)
	_ = hcLn.Close()
	waitHealthy(t, c, b.addr, false)
	hcLn, err = net.Listen("tcp", hcAddr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", hcAddr, err)
	}
	t.Cleanup(func() { _ = hcLn.Close() })
	go accept(hcLn)
	waitHealthy(t, c, b.addr, true)
}
