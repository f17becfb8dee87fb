// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// loadSpec is what the load generator runs, given as JSON in its first
// argument.
type loadSpec struct {
	// Proto is http1, h2c or grpc.
	Proto string `json:"proto"`
	// Mode is open (fixed rate, latency from the intended send time),
	// closed (back to back: saturation) or newconn (closed, a new TCP
	// connection per HTTP/1.1 request).
	Mode   string  `json:"mode"`
	Target string  `json:"target"`
	Rate   float64 `json:"rate,omitempty"`
	// Conns is the number of connections (http1), of concurrent streams on
	// one connection (h2c, grpc), or of concurrent dialers (newconn).
	Conns    int           `json:"conns"`
	Duration time.Duration `json:"duration"`
}

// loadResult is one load run.
type loadResult struct {
	Requests   int64      `json:"requests"`
	Errors     int64      `json:"errors"`
	FirstError string     `json:"firstError,omitempty"`
	Seconds    float64    `json:"seconds"`
	Rate       float64    `json:"ratePerSecond"`
	P50        float64    `json:"p50Micros"`
	P90        float64    `json:"p90Micros"`
	P99        float64    `json:"p99Micros"`
	P999       float64    `json:"p999Micros"`
	Max        float64    `json:"maxMicros"`
	Hist       [][2]int64 `json:"histogramNanos"`
}

// doer sends one request and reads the whole answer.
type doer interface {
	do(ctx context.Context) error
	close()
}

// loadMain is the load generator program. It prepares (connects and warms
// up), prints "ready", waits for "go" on its standard input, runs, prints
// "done", then the result as JSON; the parent reads the CPU counters at
// "ready"/"go" and "done".
func loadMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "load: want one argument, the JSON spec")
		return 2
	}
	var s loadSpec
	if err := json.Unmarshal([]byte(args[0]), &s); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 2
	}
	ctx := context.Background()
	workers, cleanup, err := prepare(ctx, s)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load: prepare:", err)
		return 1
	}
	defer cleanup()
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 2
	}
	r := runLoad(ctx, s, workers)
	fmt.Println("done")
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return 1
	}
	return 0
}

// prepare builds one doer per connection (or stream) and warms each up with
// a few requests, so that every proxy has its upstream connections open.
func prepare(ctx context.Context, s loadSpec) ([]doer, func(), error) {
	var (
		ws      []doer
		cleanup = func() {}
	)
	switch s.Proto {
	case "http1":
		for range s.Conns {
			if s.Mode == "newconn" {
				ws = append(ws, &h1NewConn{target: s.Target})
				continue
			}
			ws = append(ws, &h1Conn{target: s.Target})
		}
	case "h2c":
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		tr := &http.Transport{Protocols: p, MaxIdleConns: 1, IdleConnTimeout: time.Minute}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		d := &h2cDoer{c: c, url: "http://" + s.Target + "/"}
		for range s.Conns {
			ws = append(ws, d)
		}
		cleanup = tr.CloseIdleConnections
	case "grpc":
		cc, err := grpc.NewClient("passthrough:///"+s.Target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, nil, err
		}
		d := &grpcDoer{c: healthpb.NewHealthClient(cc)}
		for range s.Conns {
			ws = append(ws, d)
		}
		cleanup = func() { _ = cc.Close() }
	default:
		return nil, nil, fmt.Errorf("unknown protocol %q", s.Proto)
	}
	for range 20 {
		var wg sync.WaitGroup
		errs := make([]error, len(ws))
		for i, w := range ws {
			wg.Go(func() { errs[i] = w.do(ctx) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	return ws, func() {
		for _, w := range ws {
			w.close()
		}
		cleanup()
	}, nil
}

// runLoad runs the workers: open loop (each worker has its own schedule at
// Rate/Conns, staggered; a worker that fell behind sends at once until it
// has caught up, and those requests' latency counts from their intended
// send time, so a stall is charged to every request it delayed: the
// correction for coordinated omission) or closed loop.
func runLoad(ctx context.Context, s loadSpec, ws []doer) loadResult {
	var (
		wg       sync.WaitGroup
		hists    = make([]*hist, len(ws))
		errCount atomic.Int64
		firstErr atomic.Value
	)
	start := time.Now()
	end := start.Add(s.Duration)
	// An open-loop run that fell behind may finish its schedule late, but
	// no later than this.
	hardEnd := start.Add(3 * s.Duration)
	for i, w := range ws {
		h := &hist{}
		hists[i] = h
		wg.Go(func() {
			fail := func(err error) {
				errCount.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
			if s.Mode != "open" {
				for time.Now().Before(end) {
					t0 := time.Now()
					if err := w.do(ctx); err != nil {
						fail(err)
						continue
					}
					h.record(time.Since(t0))
				}
				return
			}
			interval := time.Duration(float64(len(ws)) / s.Rate * float64(time.Second))
			next := start.Add(time.Duration(float64(i) / s.Rate * float64(time.Second)))
			for next.Before(end) && time.Now().Before(hardEnd) {
				// On schedule: sleep until the send time and measure from
				// the actual send (the timer's own lateness, up to a
				// millisecond in Go, is the generator's, not the server's).
				// Behind schedule (the previous answer came late): send at
				// once and measure from the intended send time, charging
				// the wait to this request too.
				from := next
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
					from = time.Now()
				}
				if err := w.do(ctx); err != nil {
					fail(err)
				} else {
					h.record(time.Since(from))
				}
				next = next.Add(interval)
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	var all hist
	for _, h := range hists {
		all.merge(h)
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	r := loadResult{
		Requests: all.n, Errors: errCount.Load(), Seconds: el.Seconds(), Rate: float64(all.n) / el.Seconds(),
		P50: us(all.quantile(0.50)), P90: us(all.quantile(0.90)), P99: us(all.quantile(0.99)),
		P999: us(all.quantile(0.999)), Max: us(time.Duration(all.max)), Hist: all.buckets(),
	}
	if e, ok := firstErr.Load().(string); ok {
		r.FirstError = e
	}
	return r
}

// request is the HTTP/1.1 request of the http1 workloads.
var request = []byte("GET / HTTP/1.1\r\nHost: bench.weft\r\nUser-Agent: weft-bench\r\n\r\n")

var dialer = net.Dialer{Timeout: 5 * time.Second}

// h1Conn is one keep-alive HTTP/1.1 connection, spoken by hand so that the
// generator costs as little CPU as possible.
type h1Conn struct {
	target string
	c      net.Conn
	br     *bufio.Reader
}

func (h *h1Conn) do(ctx context.Context) error {
	if h.c == nil {
		c, err := dialer.DialContext(ctx, "tcp", h.target)
		if err != nil {
			return err
		}
		h.c, h.br = c, bufio.NewReaderSize(c, 16<<10)
	}
	_ = h.c.SetDeadline(time.Now().Add(10 * time.Second))
	err := exchange(h.c, h.br)
	if err != nil {
		h.close()
	}
	return err
}

func (h *h1Conn) close() {
	if h.c != nil {
		_ = h.c.Close()
		h.c = nil
	}
}

// h1NewConn opens a connection per request and closes it after the
// answer (the client closes first, so the TIME_WAIT sockets are the
// client's, which tcp_tw_reuse lets it reuse).
type h1NewConn struct {
	target string
}

func (h *h1NewConn) do(ctx context.Context) error {
	c, err := dialer.DialContext(ctx, "tcp", h.target)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return exchange(c, bufio.NewReaderSize(c, 4<<10))
}

func (*h1NewConn) close() {}

// exchange writes the request and reads a 200 answer with its body
// (Content-Length or chunked).
func exchange(w io.Writer, br *bufio.Reader) error {
	if _, err := w.Write(request); err != nil {
		return err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status %q", bytes.TrimSpace(line))
	}
	length, chunked := -1, false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(v)); err != nil {
				return fmt.Errorf("content-length %q", v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		}
	}
	if !chunked {
		if length < 0 {
			return errors.New("answer without length")
		}
		_, err := br.Discard(length)
		return err
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.SplitN(line, []byte(";"), 2)[0])), 16, 32)
		if err != nil {
			return fmt.Errorf("chunk size %q", line)
		}
		if size == 0 {
			// Trailers, then the empty line.
			for {
				l, err := br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(l, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(size) + 2); err != nil {
			return err
		}
	}
}

// h2cDoer sends GET over HTTP/2 with prior knowledge (h2c), all workers
// sharing the client's connection.
type h2cDoer struct {
	c   *http.Client
	url string
}

func (d *h2cDoer) do(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url, http.NoBody)
	if err != nil {
		return err
	}
	resp, err := d.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		return fmt.Errorf("status %s over %s", resp.Status, resp.Proto)
	}
	return nil
}

func (*h2cDoer) close() {}

// grpcDoer calls grpc.health.v1.Health/Check, all workers sharing one
// client connection.
type grpcDoer struct {
	c healthpb.HealthClient
}

func (d *grpcDoer) do(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := d.c.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health %s", r.GetStatus())
	}
	return nil
}

func (*grpcDoer) close() {}
