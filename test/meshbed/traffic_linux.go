// SPDX-License-Identifier: Apache-2.0

package meshbed

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// The paths of MeshTraffic, as TrafficEvent.Path names them.
const (
	PathL4New       = "l4-new"       // a new TCP connection per exchange
	PathL4Long      = "l4-long"      // one long-lived TCP connection
	PathL7KeepAlive = "l7-keepalive" // HTTP requests on a keep-alive connection
	PathL7New       = "l7-new"       // HTTP requests, a new connection each
)

// The kinds of failure of a TrafficEvent.
const (
	FailConnect = "connect" // the connection could not be made
	FailReset   = "reset"   // ECONNRESET or EPIPE
	FailOther   = "other"
)

// TrafficEvent is one line of mesh-traffic's output: one request or one
// connection's exchange.
type TrafficEvent struct {
	// Time is when it started (Unix nanoseconds).
	Time int64  `json:"t"`
	Path string `json:"path"`
	OK   bool   `json:"ok"`
	// Fail is the kind of failure (FailConnect, FailReset, FailOther).
	Fail  string `json:"fail,omitempty"`
	Error string `json:"err,omitempty"`
	// Micros is how long it took.
	Micros int64 `json:"us"`
	// Detail is the answer (HTTP body) or the local address (TCP).
	Detail string `json:"detail,omitempty"`
}

// MeshTraffic sends steady traffic on the L4 and the L7 path until
// SIGTERM, printing a TrafficEvent (JSON) per request or exchange:
//
//   - l4-new: connect to -tcp, read the echo server's greeting, send a
//     line, read it back, close; in a loop;
//   - l4-long: one connection to -tcp, a line sent and read back every
//     -long-every (redialled after a failure);
//   - l7-keepalive: GET -url on a keep-alive connection, in a loop;
//   - l7-new: GET -url on a new connection each time, in a loop.
//
// Both names are resolved once at start (through the node's agent, like
// any lookup of a meshed workload) and the answers cached, as a client
// with a DNS cache would: the agent's DNS is down while the agent is, and
// that is not what the traffic checks. The HTTP requests still carry the
// name (Host). It prints "ready" (a line that is not JSON) once the names
// are resolved and the long-lived connection is up. Usage: mesh-traffic
// -url URL -tcp host:port [-pause 10ms] [-long-every 100ms].
func MeshTraffic(args []string) int {
	fs := flag.NewFlagSet("mesh-traffic", flag.ContinueOnError)
	rawURL := fs.String("url", "", "HTTP URL (by name)")
	tcpAddr := fs.String("tcp", "", "echo server host:port (by name)")
	pause := fs.Duration("pause", 10*time.Millisecond, "pause of each loop between requests")
	longEvery := fs.Duration("long-every", 100*time.Millisecond, "interval of the long-lived connection's echoes")
	if err := fs.Parse(args); err != nil || *rawURL == "" || *tcpAddr == "" {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *rawURL, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cache := map[string]string{}
	for _, hp := range []string{*tcpAddr, canonicalHostPort(req)} {
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		addrs, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil || len(addrs) == 0 {
			fmt.Fprintln(os.Stderr, "resolve", host, addrs, err)
			return 1
		}
		cache[hp] = net.JoinHostPort(addrs[0], port)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if a, ok := cache[addr]; ok {
			addr = a
		}
		return dialer.DialContext(ctx, network, addr)
	}

	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	emit := func(path string, t0 time.Time, detail string, err error) {
		ev := TrafficEvent{Time: t0.UnixNano(), Path: path, OK: err == nil, Micros: time.Since(t0).Microseconds(), Detail: detail}
		if err != nil {
			ev.Fail, ev.Error = classify(err), err.Error()
		}
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(ev)
	}

	long, err := newEchoConn(ctx, dial, *tcpAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "long-lived connection:", err)
		return 1
	}
	fmt.Println("ready")

	var wg sync.WaitGroup
	loop := func(path string, every time.Duration, once func() (string, error)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				detail, err := once()
				emit(path, t0, detail, err)
				select {
				case <-ctx.Done():
				case <-time.After(every):
				}
			}
		})
	}
	loop(PathL4New, *pause, func() (string, error) {
		c, err := newEchoConn(context.Background(), dial, *tcpAddr)
		if err != nil {
			return "", err
		}
		defer c.conn.Close()
		return c.local, c.echo("new")
	})
	loop(PathL4Long, *longEvery, func() (string, error) {
		if long == nil {
			c, err := newEchoConn(context.Background(), dial, *tcpAddr)
			if err != nil {
				return "", err
			}
			long = c
		}
		if err := long.echo("long"); err != nil {
			_ = long.conn.Close()
			long = nil
			return "", err
		}
		return long.local, nil
	})
	for _, p := range []struct {
		path      string
		keepAlive bool
	}{{PathL7KeepAlive, true}, {PathL7New, false}} {
		client := &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				DialContext: dial, DisableKeepAlives: !p.keepAlive, MaxIdleConnsPerHost: 1, DisableCompression: true,
			},
		}
		loop(p.path, *pause, func() (string, error) {
			// Not the program's context: a request in flight at SIGTERM
			// completes.
			_, body, err := fetch(client, *rawURL, nil)
			return body, err
		})
	}
	wg.Wait()
	if long != nil {
		_ = long.conn.Close()
	}
	return 0
}

// canonicalHostPort is the request's host:port as the transport dials it.
func canonicalHostPort(req *http.Request) string {
	if req.URL.Port() != "" {
		return req.URL.Host
	}
	if req.URL.Scheme == "https" {
		return net.JoinHostPort(req.URL.Hostname(), "443")
	}
	return net.JoinHostPort(req.URL.Hostname(), "80")
}

// echoConn is a connection to an echo server (netsim.EchoServer) whose
// greeting was read.
type echoConn struct {
	conn  net.Conn
	r     *bufio.Reader
	local string
}

func newEchoConn(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), addr string) (*echoConn, error) {
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &echoConn{conn: conn, r: bufio.NewReader(conn), local: conn.LocalAddr().String()}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.r.ReadString('\n'); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("read greeting: %w", err)
	}
	return c, nil
}

// echo sends a line and reads it back.
func (c *echoConn) echo(msg string) error {
	_ = c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, msg+"\n"); err != nil {
		return err
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if got != msg+"\n" {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// classify names the kind of a failure.
func classify(err error) string {
	var op *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return FailReset
	case errors.As(err, &op) && op.Op == "dial", errors.Is(err, syscall.ECONNREFUSED):
		return FailConnect
	default:
		return FailOther
	}
}
