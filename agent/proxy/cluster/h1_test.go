// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
)

// rawServer accepts connections and hands each to serve, counting them.
type rawServer struct {
	ln    net.Listener
	conns atomic.Int32
	wg    sync.WaitGroup
}

func newRawServer(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) pool(t *testing.T, maxConns int64, idle time.Duration) *h1Pool {
	t.Helper()
	p := newH1Pool(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", s.ln.Addr().String())
	}, idle, maxConns)
	t.Cleanup(p.closeIdle) // before the server's clean-up, which waits for its connections
	return p
}

// readHead reads one request head; false at the connection's end.
func readHead(br *bufio.Reader) (string, bool) {
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return b.String(), false
		}
		b.WriteString(line)
		if line == "\r\n" {
			return b.String(), true
		}
	}
}

func getReq(ctx context.Context, t *testing.T, method string) *http.Request {
	t.Helper()
	r, err := http.NewRequestWithContext(ctx, method, "http://upstream/p?q=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Host = "svc.local"
	r.Header["User-Agent"] = []string{""}
	return r
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return string(b)
}

const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func TestH1ReuseAndRequestHead(t *testing.T) {
	heads := make(chan string, 10)
	s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			h, ok := readHead(br)
			if !ok {
				return
			}
			heads <- h
			_, _ = io.WriteString(c, okResponse)
		}
	})
	p := s.pool(t, 0, time.Minute)
	for i := range 3 {
		method := http.MethodGet
		if i == 2 {
			method = http.MethodPost
		}
		r := getReq(context.Background(), t, method)
		r.Header["X-Multi"] = []string{"a", "b\r\nInjected: x"}
		resp, err := p.roundTrip(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != "ok" {
			t.Fatalf("body %q", got)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connections for 3 sequential requests, want 1", n)
	}
	h := <-heads
	for _, want := range []string{"GET /p?q=1 HTTP/1.1\r\n", "Host: svc.local\r\n", "X-Multi: a\r\n", "X-Multi: b  Injected: x\r\n"} {
		if !strings.Contains(h, want) {
			t.Errorf("request head %q lacks %q", h, want)
		}
	}
	if strings.Contains(h, "User-Agent") || strings.Contains(h, "Content-Length") {
		t.Errorf("request head %q has a User-Agent or Content-Length", h)
	}
	<-heads
	if h := <-heads; !strings.HasPrefix(h, "POST ") || !strings.Contains(h, "Content-Length: 0\r\n") {
		t.Errorf("POST head %q lacks Content-Length: 0", h)
	}
}

// A server that closes a keep-alive connection while it is idle: the next
// GET goes out again on a new connection, unnoticed by the caller.
func TestH1StaleConnectionRetried(t *testing.T) {
	s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, ok := readHead(br); ok {
			_, _ = io.WriteString(c, okResponse) // then close
		}
	})
	p := s.pool(t, 0, time.Minute)
	for range 3 {
		resp, err := p.roundTrip(getReq(context.Background(), t, http.MethodGet))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		time.Sleep(20 * time.Millisecond) // the server's close arrives
	}
	if n := s.conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

func TestH1InformationalAndClose(t *testing.T) {
	s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, ok := readHead(br); !ok {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"+
				"2\r\nok\r\n0\r\nX-T: v\r\n\r\n")
		}
	})
	p := s.pool(t, 0, time.Minute)
	for range 2 {
		resp, err := p.roundTrip(getReq(context.Background(), t, http.MethodGet))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if got := readAll(t, resp); got != "ok" {
			t.Fatalf("body %q", got)
		}
		if got := resp.Trailer.Get("X-T"); got != "v" {
			t.Errorf("trailer %q", got)
		}
	}
	if n := s.conns.Load(); n != 2 {
		t.Errorf("%d connections after Connection: close answers, want 2", n)
	}
}

// Bytes the server sent after an answer (here an unsolicited 408) are no
// answer to the next request: that connection is not reused.
func TestH1BytesAfterAnswer(t *testing.T) {
	s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, ok := readHead(br); !ok {
				return
			}
			_, _ = io.WriteString(c, okResponse+"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
		}
	})
	p := s.pool(t, 0, time.Minute)
	for i := range 2 {
		resp, err := p.roundTrip(getReq(context.Background(), t, http.MethodGet))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200", i, resp.StatusCode)
		}
		readAll(t, resp)
	}
	if n := s.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// A connection idle for a while is checked before it carries a request:
// one on which the server sent something unasked (a 408) and closed is
// not used, and the request gets its answer on a new connection, without
// a retry of its own.
func TestH1ProbeIdle(t *testing.T) {
	s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, ok := readHead(br); !ok {
			return
		}
		_, _ = io.WriteString(c, okResponse)
		time.Sleep(10 * time.Millisecond)
		_, _ = io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	})
	p := s.pool(t, 0, time.Minute)
	p.probeAfter = 30 * time.Millisecond
	for i := range 2 {
		resp, err := p.roundTrip(getReq(context.Background(), t, http.MethodGet))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200", i, resp.StatusCode)
		}
		readAll(t, resp)
		time.Sleep(50 * time.Millisecond)
	}
	if n := s.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// Cancelling the context stops a body read with the context's error, and
// the connection is not reused.
func TestH1CancelDuringBody(t *testing.T) {
	release := make(chan struct{})
	s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, ok := readHead(br); !ok {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
		<-release
	})
	defer close(release)
	p := s.pool(t, 0, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := p.roundTrip(getReq(ctx, t, http.MethodGet))
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err = io.ReadAll(resp.Body)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("body read error %v, want context.Canceled", err)
	}
	if len(p.idle) != 0 {
		t.Errorf("%d idle connections after a cancelled exchange, want 0", len(p.idle))
	}
}

// With maxConns 1, a second request waits for the first one's connection;
// a waiter whose context ends gives up with the context's error.
func TestH1MaxConnsWait(t *testing.T) {
	gate := make(chan struct{})
	s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, ok := readHead(br); !ok {
				return
			}
			<-gate
			_, _ = io.WriteString(c, okResponse)
		}
	})
	p := s.pool(t, 1, time.Minute)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			resp, err := p.roundTrip(getReq(context.Background(), t, http.MethodGet))
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				_ = resp.Body.Close()
			}
			errs <- err
		}()
		// The first request holds the connection before the others ask.
		for s.conns.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.roundTrip(getReq(ctx, t, http.MethodGet)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("third request: %v, want context.DeadlineExceeded", err)
	}
	close(gate)
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connections with maxConns 1", n)
	}
}

func TestH1IdleTimeout(t *testing.T) {
	s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, ok := readHead(br); !ok {
				return
			}
			_, _ = io.WriteString(c, okResponse)
		}
	})
	p := s.pool(t, 0, 30*time.Millisecond)
	for range 2 {
		resp, err := p.roundTrip(getReq(context.Background(), t, http.MethodGet))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		time.Sleep(60 * time.Millisecond)
	}
	if n := s.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the first expired idle)", n)
	}
}

// A fresh connection the server resets before answering is an error for
// the caller (the proxy's retry policy decides), not retried inside; a
// deadline in the request's context ends a silent exchange with
// context.DeadlineExceeded.
func TestH1ResetAndDeadline(t *testing.T) {
	s := newRawServer(t, func(_ net.Conn, br *bufio.Reader) {
		h, ok := readHead(br)
		if !ok {
			return
		}
		if strings.HasPrefix(h, "GET /reset") {
			return // close without an answer
		}
		_, _ = readHead(br) // silent until the client gives up
	})
	p := s.pool(t, 0, time.Minute)
	r := getReq(context.Background(), t, http.MethodGet)
	r.URL.Path = "/reset"
	if _, err := p.roundTrip(r); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("reset: error %v, want a connection error", err)
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connections for a reset on a fresh connection, want 1 (no retry)", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := p.roundTrip(getReq(ctx, t, http.MethodGet)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent upstream: error %v, want context.DeadlineExceeded", err)
	}
}

// max_connections bounds the pool's connections and the Transport's
// together: with a limit of 1, a GET (h1) and a POST with a body
// (Transport) take turns on one connection at a time, each closing the
// other's idle one.
func TestH1SharedConnectionLimit(t *testing.T) {
	s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			h, ok := readHead(br)
			if !ok {
				return
			}
			if strings.HasPrefix(h, "POST") {
				_, _ = io.ReadFull(br, make([]byte, 4))
			}
			_, _ = io.WriteString(c, okResponse)
		}
	})
	var open, most atomic.Int32
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", s.ln.Addr().String())
		if err != nil {
			return nil, err
		}
		n := open.Add(1)
		m := most.Load()
		for n > m && !most.CompareAndSwap(m, n) {
			m = most.Load()
		}
		return &countedConn{Conn: c, release: func() { open.Add(-1) }}, nil
	}
	p := newH1Pool(dial, time.Minute, 1)
	tr := newTransport(false, time.Minute, 1, func(ctx context.Context) (net.Conn, error) { return p.dialShared(ctx, dial) }, nil)
	p.evict = tr.CloseIdleConnections
	t.Cleanup(func() { p.closeIdle(); tr.CloseIdleConnections() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 4 {
		var resp *http.Response
		var err error
		if i%2 == 0 {
			resp, err = p.roundTrip(getReq(ctx, t, http.MethodGet))
		} else {
			r := getReq(ctx, t, http.MethodPost)
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader("body")), 4
			resp, err = tr.RoundTrip(r)
		}
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		readAll(t, resp)
	}
	if m := most.Load(); m != 1 {
		t.Errorf("%d connections open at once, want 1", m)
	}
}

func TestH1Eligible(t *testing.T) {
	r := getReq(context.Background(), t, http.MethodGet)
	if !h1Eligible(r) {
		t.Error("GET without body not eligible")
	}
	r.Header["Upgrade"] = []string{"websocket"}
	if h1Eligible(r) {
		t.Error("upgrade eligible")
	}
	r = getReq(context.Background(), t, http.MethodPost)
	if h1Eligible(r) {
		t.Error("POST eligible")
	}
	r = getReq(context.Background(), t, http.MethodGet)
	r.Body = io.NopCloser(strings.NewReader("x"))
	if h1Eligible(r) {
		t.Error("request with a body eligible")
	}
}

// benchUpstream answers every request with a 1 KiB body.
func benchUpstream(b *testing.B) *rawServer {
	b.Helper()
	resp := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n" + strings.Repeat("x", 1024)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &rawServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if _, ok := readHead(br); !ok {
						return
					}
					if _, err := io.WriteString(c, resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	b.Cleanup(func() { _ = ln.Close() })
	return s
}

func benchRoundTrips(b *testing.B, rt func(*http.Request) (*http.Response, error), addr string) {
	b.Helper()
	b.ReportAllocs()
	buf := make([]byte, 4096)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
			r.Host = "svc.local"
			r.Header["User-Agent"] = []string{""}
			resp, err := rt(r)
			if err != nil {
				b.Error(err)
				return
			}
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					break
				}
			}
			_ = resp.Body.Close()
		}
	})
}

// BenchmarkH1Pool is the request path's HTTP/1.1 client (GET, 1 KiB
// answers, keep-alive); BenchmarkHTTPTransport is net/http's Transport as
// the pool configures it, for comparison. Both include the backend's work
// and the request's construction.
func BenchmarkH1Pool(b *testing.B) {
	s := benchUpstream(b)
	p := newH1Pool(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", s.ln.Addr().String())
	}, time.Minute, math.MaxInt32)
	b.Cleanup(p.closeIdle)
	benchRoundTrips(b, p.roundTrip, s.ln.Addr().String())
}

func BenchmarkHTTPTransport(b *testing.B) {
	s := benchUpstream(b)
	tr := newTransport(false, time.Minute, math.MaxInt32, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", s.ln.Addr().String())
	}, nil)
	b.Cleanup(tr.CloseIdleConnections)
	benchRoundTrips(b, tr.RoundTrip, s.ln.Addr().String())
}

// BenchmarkAcquireDone is one request's use of the load balancer and the
// breakers: Acquire, Lease.Host, Done, on a round-robin cluster of 3 hosts.
func BenchmarkAcquireDone(b *testing.B) {
	m := NewManager(Options{Registerer: prometheus.NewRegistry()}, slog.New(slog.DiscardHandler))
	b.Cleanup(func() { _ = m.Close() })
	var c clusterv3.Cluster
	if err := protojson.Unmarshal([]byte(`{"name":"b","type":"STATIC","connectTimeout":"1s",
		"loadAssignment":{"clusterName":"b","endpoints":`+endpoints("127.0.0.1:1", "127.0.0.2:1", "127.0.0.3:1")+`}}`), &c); err != nil {
		b.Fatal(err)
	}
	if err := m.Update(testNode, []*clusterv3.Cluster{&c}, nil); err != nil {
		b.Fatal(err)
	}
	cl, _ := m.cluster(testNode, "b")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		l, err := cl.Acquire(ctx, Hints{})
		if err != nil {
			b.Fatal(err)
		}
		_ = l.Host()
		l.Done(200, nil)
	}
}
