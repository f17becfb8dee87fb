// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// tcpServer speaks first (a banner, like Postgres' or SMTP's servers do in
// spirit), then reads until the client half-closes and answers with the
// byte count, then closes.
func tcpServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.WriteString(c, "hello\n")
				n, _ := io.Copy(io.Discard, c)
				_, _ = fmt.Fprintf(c, "got %d bytes\n", n)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestTCPProxy checks S4: a TCP service proxied both ways with half-close,
// with the connection metrics and access log.
func TestTCPProxy(t *testing.T) {
	w := buildWorld(t, "s0", "s4")
	h := newHarness(t, w, Config{})
	h.load(nodeID("demo", clientNode))
	h.route("db-primary_shop", 5432, tcpServer(t))
	src := h.caller("demo", clientNode, "db.shop.svc.cluster.local", 15432)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
	c, err := d.Dial("tcp", h.p.OutboundAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	banner, err := r.ReadString('\n')
	if err != nil || banner != "hello\n" {
		t.Fatalf("banner: %q %v", banner, err)
	}
	payload := strings.Repeat("x", 100_000)
	if _, err := io.WriteString(c, payload); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "got 100000 bytes\n" {
		t.Fatalf("after half-close: %q %v", rest, err)
	}
	node := nodeID("demo", clientNode)
	cluster := "cds_egress_demo_db-primary_shop_tcp_5432"
	waitFor(t, func() bool {
		return testutil.ToFloat64(h.p.m.tcpBytes.WithLabelValues(node, cluster, "upstream")) == 100_000
	})
	if got := testutil.ToFloat64(h.p.m.tcpConns.WithLabelValues(node, cluster, "ok")); got != 1 {
		t.Errorf("tcp connections ok: %v, want 1", got)
	}
}

// TestDropAll checks DROP_ALL semantics: S7's worker may reach
// httpbin.org:443 (TLS, proxied as TCP) but nothing else; unknown callers
// and unknown connections are closed and counted.
func TestDropAll(t *testing.T) {
	w := buildWorld(t, "s7")
	h := newHarness(t, w, Config{})
	h.load(nodeID("locked", "worker_locked"))
	// httpbin-ext is not managed: its cluster resolves DNS
	// (httpbin.org:443), which the test maps to a local server.
	h.clusters.remap.set("httpbin.org:443", tcpServer(t))
	ok := h.caller("locked", "worker_locked", "httpbin.org", 443)
	closed := func(src netip.Addr, wantBanner bool) {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err := d.Dial("tcp", h.p.OutboundAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write(clientHello(t, "httpbin.org"))
		_ = c.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(c)
		if wantBanner && !strings.HasPrefix(string(b), "hello\n") {
			t.Errorf("allowed destination: read %q %v", b, err)
		}
		if !wantBanner && (len(b) > 0 || (err != nil && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset"))) {
			t.Errorf("dropped destination: read %q %v, want EOF", b, err)
		}
	}
	closed(ok, true)

	other := h.caller("locked", "worker_locked", "httpbin.org", 80)
	closed(other, false)
	if got := testutil.ToFloat64(h.p.m.rejected.WithLabelValues(rejectNoChain)); got != 1 {
		t.Errorf("no filter chain: %v rejections, want 1", got)
	}
	// AWS APIs stay reachable by server name, to their original
	// destination.
	aws := netip.MustParseAddr("127.0.0.98")
	h.od.mu.Lock()
	h.od.m[aws] = origEntry{dst: netip.MustParseAddrPort("203.0.113.7:443"), cgroup: 1000 + uint64(ok.As4()[3])}
	h.od.mu.Unlock()
	h.clusters.remap.set("203.0.113.7:443", tcpServer(t))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: aws.AsSlice()}}
	c, err := d.Dial("tcp", h.p.OutboundAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write(clientHello(t, "sts.eu-west-1.amazonaws.com"))
	_ = c.(*net.TCPConn).CloseWrite()
	b, _ := io.ReadAll(c)
	c.Close()
	if !strings.HasPrefix(string(b), "hello\n") {
		t.Errorf("amazonaws by SNI: read %q", b)
	}

	unknown := netip.MustParseAddr("127.0.0.99")
	closed(unknown, false)
	if got := testutil.ToFloat64(h.p.m.rejected.WithLabelValues(rejectNoOrigDst)); got != 1 {
		t.Errorf("no original destination: %v rejections, want 1", got)
	}
	h.od.mu.Lock()
	h.od.m[unknown] = origEntry{dst: netip.MustParseAddrPort("1.2.3.4:443"), cgroup: 4242}
	h.od.mu.Unlock()
	closed(unknown, false)
	if got := testutil.ToFloat64(h.p.m.rejected.WithLabelValues(rejectUnknownCaller)); got != 1 {
		t.Errorf("unknown caller: %v rejections, want 1", got)
	}
}

// clientHello is the first flight of a TLS client for a server name.
func clientHello(t *testing.T, sni string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		_ = tls.Client(a, &tls.Config{ServerName: sni, MinVersion: tls.VersionTLS12}).Handshake()
	}()
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16<<10)
	n, err := b.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
