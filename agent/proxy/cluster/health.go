// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

// Health-check results, the values of weft_proxy_health_checks_total's label.
const (
	resultSuccess = "success"
	resultFailure = "failure"
)

// prober checks one host. HTTP and gRPC probers keep their connection
// between checks (Envoy's reuse_connection default).
type prober struct {
	tr   *http.Transport // HTTP and gRPC
	addr netip.AddrPort
	mark uint32
}

// healthLoop runs the cluster's active health checks until ctx ends: every
// interval, all hosts are checked in parallel, each within the timeout.
func (c *Cluster) healthLoop(ctx context.Context, s *spec) {
	hs := s.health
	probers := map[*host]*prober{}
	defer func() {
		for _, p := range probers {
			p.close()
		}
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		hosts := append([]*host(nil), c.hosts...)
		targets := make([]netip.AddrPort, len(hosts))
		for i, h := range hosts {
			a := h.address()
			port := a.Port()
			if h.hcPort != 0 {
				port = h.hcPort
			}
			if hs.altPort != 0 {
				port = uint16(hs.altPort)
			}
			targets[i] = netip.AddrPortFrom(a.Addr(), port)
		}
		c.mu.Unlock()

		live := map[*host]bool{}
		for i, h := range hosts {
			live[h] = true
			if p, ok := probers[h]; !ok || p.addr != targets[i] {
				if ok {
					p.close()
				}
				probers[h] = newProber(s, targets[i])
			}
		}
		for h, p := range probers {
			if !live[h] {
				p.close()
				delete(probers, h)
			}
		}

		results := make([]error, len(hosts))
		var wg sync.WaitGroup
		for i, h := range hosts {
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, hs.timeout)
				defer cancel()
				results[i] = probers[h].check(cctx, c.name, hs)
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		for i, h := range hosts {
			c.healthResultLocked(h, results[i])
		}
		c.mu.Unlock()
		t.Reset(hs.interval)
	}
}

// healthResultLocked applies one check: a healthy host turns unhealthy
// after unhealthy_threshold failures in a row, an unhealthy one healthy
// after healthy_threshold successes in a row.
func (c *Cluster) healthResultLocked(h *host, err error) {
	if c.byKey[h.key] != h {
		return // removed meanwhile
	}
	hs := c.spec.health
	if hs == nil {
		return
	}
	if err == nil {
		c.hcResults[resultSuccess].Inc()
		h.hcFail = 0
		if !h.hcHealthy {
			h.hcOK++
			if h.hcOK >= hs.healthy {
				h.hcHealthy, h.hcOK = true, 0
				c.log.Info("upstream host passed health checks", keyHost, h.key)
			}
		}
		if h.ejected && c.spec.outlier != nil && c.spec.outlier.unejectOnHealthCheck {
			c.unejectLocked(h)
		}
		return
	}
	c.hcResults[resultFailure].Inc()
	h.hcOK = 0
	if h.hcHealthy {
		h.hcFail++
		if h.hcFail >= hs.unhealthy {
			h.hcHealthy, h.hcFail = false, 0
			c.log.Info("upstream host failed health checks", keyHost, h.key, keyError, err)
		}
	}
}

func newProber(s *spec, addr netip.AddrPort) *prober {
	p := &prober{addr: addr, mark: s.mark}
	hs := s.health
	if hs.kind == healthTCP {
		return p
	}
	tlsCfg := s.tls
	dial := func(ctx context.Context) (net.Conn, error) {
		d := newDialer(s.connectTimeout, s.mark)
		return d.DialContext(ctx, "tcp", addr.String())
	}
	if tlsCfg != nil {
		cfg := tlsCfg.config.Clone()
		if hs.http2 {
			cfg.NextProtos = []string{"h2"}
		} else {
			cfg.NextProtos = nil
		}
		p.tr = newTransport(hs.http2, 0, 1, dial, cfg)
	} else {
		p.tr = newTransport(hs.http2, 0, 1, dial, nil)
	}
	return p
}

func (p *prober) close() {
	if p.tr != nil {
		p.tr.CloseIdleConnections()
	}
}

func (p *prober) scheme() string {
	if p.tr.DialTLSContext != nil {
		return "https"
	}
	return "http"
}

// check runs one health check.
func (p *prober) check(ctx context.Context, cluster string, hs *healthSpec) error {
	switch hs.kind {
	case healthTCP:
		d := newDialer(0, p.mark)
		conn, err := d.DialContext(ctx, "tcp", p.addr.String())
		if err != nil {
			return err
		}
		return conn.Close()
	case healthGRPC:
		return p.checkGRPC(ctx, cluster, hs)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.scheme()+"://"+p.addr.String()+hs.path, nil)
	if err != nil {
		return err
	}
	req.Host = cluster // Envoy's default host header is the cluster name
	if hs.host != "" {
		req.Host = hs.host
	}
	req.Header.Set("User-Agent", "Envoy/HC")
	for _, kv := range hs.requestHeadersToAdd {
		req.Header.Add(kv[0], kv[1])
	}
	for _, k := range hs.requestHeadersRemoved {
		req.Header.Del(k)
	}
	resp, err := p.tr.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
	if !expectedStatus(hs, resp.StatusCode) {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// expectedStatus reports whether code passes: in expected_statuses when
// given, else 200 only, as in Envoy (and so in App Mesh).
func expectedStatus(hs *healthSpec, code int) bool {
	if len(hs.expected) == 0 {
		return code == 200
	}
	for _, r := range hs.expected {
		if int64(code) >= r.GetStart() && int64(code) < r.GetEnd() {
			return true
		}
	}
	return false
}

// checkGRPC calls grpc.health.v1.Health/Check over the prober's HTTP/2
// transport and wants SERVING.
func (p *prober) checkGRPC(ctx context.Context, cluster string, hs *healthSpec) error {
	msg, err := proto.Marshal(&grpc_health_v1.HealthCheckRequest{Service: hs.grpcService})
	if err != nil {
		return err
	}
	body := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
	copy(body[5:], msg)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		p.scheme()+"://"+p.addr.String()+"/grpc.health.v1.Health/Check", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Host = cluster
	if hs.grpcAuthority != "" {
		req.Host = hs.grpcAuthority
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	req.Header.Set("User-Agent", "Envoy/HC")
	resp, err := p.tr.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return err
	}
	st := resp.Trailer.Get("Grpc-Status")
	if st == "" {
		st = resp.Header.Get("Grpc-Status") // trailers-only response
	}
	if st != "0" {
		code, _ := strconv.Atoi(st)
		return fmt.Errorf("grpc status %d: %s", code, resp.Trailer.Get("Grpc-Message"))
	}
	if len(data) < 5 || data[0] != 0 || int(binary.BigEndian.Uint32(data[1:5])) != len(data)-5 {
		return errors.New("malformed grpc health response")
	}
	var out grpc_health_v1.HealthCheckResponse
	if err := proto.Unmarshal(data[5:], &out); err != nil {
		return fmt.Errorf("decode grpc health response: %w", err)
	}
	if out.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		return fmt.Errorf("grpc health %s", out.GetStatus())
	}
	return nil
}
