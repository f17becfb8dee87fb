// SPDX-License-Identifier: Apache-2.0

package meshbed

// The programs the mesh runs as workload processes (netsim.Main or
// netsim.RunMain re-executes the test binary or the demo as one of them
// inside a workload's cgroup and network namespace). Servers print
// "listening <address>" once they accept connections; clients print one
// JSON object on stdout.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-mesh/weft/pkg/ctl"
	"github.com/weft-mesh/weft/test/netsim"
)

// Programs returns the table of the mesh's workload programs, for
// netsim.Main (tests) or netsim.RunMain (the demo):
//
//   - weftctl: weftctl (pkg/ctl), run where the controller's API is reachable;
//   - color-server: the colour app's version (ColorServer);
//   - grpc-server: color.ColorService (GRPCServer);
//   - echo-server: netsim.EchoServer;
//   - http-load, grpc-call, dial, connect: clients that resolve names
//     through their normal resolver path (HTTPLoad, GRPCCall, netsim.Dial,
//     Connect; see ClientEnv);
//   - mesh-traffic: steady L4 and L7 traffic until SIGTERM (MeshTraffic);
//   - app-server, http-call, tls-server, dns-server: S8's two-listener app,
//     a one-request HTTP client, and S7's external host (samples_linux.go).
func Programs() netsim.Programs {
	return netsim.Programs{
		"weftctl":      weftctlMain,
		"color-server": ColorServer,
		"grpc-server":  GRPCServer,
		"echo-server":  netsim.EchoServer,
		"http-load":    withResolver(HTTPLoad),
		"grpc-call":    withResolver(GRPCCall),
		"dial":         withResolver(netsim.Dial),
		"connect":      withResolver(Connect),
		"mesh-traffic": withResolver(MeshTraffic),
		"app-server":   AppServer,
		"http-call":    withResolver(HTTPCall),
		"tls-server":   TLSServer,
		"dns-server":   DNSServer,
	}
}

// The environment of a client program that resolves names (withResolver).
const (
	envResolvConf = "WEFT_MESHBED_RESOLV_CONF"
	envNSSwitch   = "WEFT_MESHBED_NSSWITCH"
	envHostMntNS  = "WEFT_MESHBED_HOST_MNTNS"
)

// withResolver runs prog after bind-mounting the test's resolv.conf and
// nsswitch.conf over /etc's, when the test asks for it (envResolvConf).
// The test starts the program in a mount namespace of its own
// (CLONE_NEWNS), so the host's files are untouched; the program refuses to
// mount while it is still in the test's mount namespace. The resolv.conf
// names a nameserver nothing answers at (TEST-NET-1): a name can only
// resolve because the datapath redirects the query to the node's agent.
func withResolver(prog func([]string) int) func([]string) int {
	return func(args []string) int {
		if err := useResolver(); err != nil {
			fmt.Fprintln(os.Stderr, "resolver:", err)
			return 1
		}
		return prog(args)
	}
}

func useResolver() error {
	conf := os.Getenv(envResolvConf)
	if conf == "" {
		return nil
	}
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return err
	}
	if own == os.Getenv(envHostMntNS) {
		return fmt.Errorf("not in a mount namespace of its own (%s); refusing to mount", own)
	}
	for _, m := range []struct{ src, dst string }{{conf, "/etc/resolv.conf"}, {os.Getenv(envNSSwitch), "/etc/nsswitch.conf"}} {
		if err := unix.Mount(m.src, m.dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount %s over %s: %w", m.src, m.dst, err)
		}
	}
	return nil
}

// weftctlMain is weftctl (pkg/ctl), run where the controller's API is
// reachable.
func weftctlMain(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := ctl.Run(ctx, args, ctl.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}); err != nil {
		fmt.Fprintln(os.Stderr, "weftctl:", err)
		return 1
	}
	return 0
}

// ColorServer serves a version of S1's colour app. GET / answers the -name
// (red, blue or green), /ping answers "ok" (the health check); every
// answer carries the seenHeaders (the path and Host the server saw). Two paths
// misbehave on purpose, for the demo's retries and timeouts:
//
//   - /flaky answers 503 the first N times it sees a call id, N being the
//     x-fail header and the call id x-call-id (a backend that recovers), and
//     prints each attempt: "flaky id=<id> attempt=<n> code=<code>";
//   - /slow answers after -slow (default 5s), or not at all when the
//     client goes away first.
//
// Usage: color-server -name N [-listen :8080] [-slow 5s].
func ColorServer(args []string) int {
	fs := flag.NewFlagSet("color-server", flag.ContinueOnError)
	name := fs.String("name", "", "colour to answer")
	listen := fs.String("listen", ":8080", "address")
	slow := fs.Duration("slow", 5*time.Second, "how long /slow takes to answer")
	if err := fs.Parse(args); err != nil || *name == "" {
		return 2
	}
	var (
		mu       sync.Mutex
		attempts = map[string]int{}
	)
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Call-Id")
		fail, _ := strconv.Atoi(r.Header.Get("X-Fail"))
		mu.Lock()
		attempts[id]++
		n := attempts[id]
		mu.Unlock()
		code := http.StatusOK
		if n <= fail {
			code = http.StatusServiceUnavailable
		}
		fmt.Printf("flaky id=%s attempt=%d code=%d\n", id, n, code)
		if code != http.StatusOK {
			http.Error(w, fmt.Sprintf("attempt %d of call %s fails on purpose", n, id), code)
			return
		}
		_, _ = io.WriteString(w, *name)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(*slow):
			_, _ = io.WriteString(w, *name)
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, *name) })
	return serveHTTP(*listen, seen(*name, mux))
}

func serveHTTP(listen string, h http.Handler) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("listening %s\n", ln.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// GRPCServer serves S3's color.ColorService on -listen (default :9090)
// with the standard health service (the S3 health check). GetColor answers
// "color-grpc", except that it fails with UNAVAILABLE the first N times a
// call id is seen, N being the x-fail metadata and the call id x-call-id:
// a backend that recovers, to show retries. It prints every GetColor it
// gets: "call id=<x-call-id> attempt=<n> tenant=<x-tenant> code=<code>".
func GRPCServer(args []string) int {
	fs := flag.NewFlagSet("grpc-server", flag.ContinueOnError)
	listen := fs.String("listen", ":9090", "address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	attempts := map[string]int{}
	getColor := func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		var in wrapperspb.StringValue
		if err := dec(&in); err != nil {
			return nil, err
		}
		md, _ := metadata.FromIncomingContext(ctx)
		first := func(k string) string {
			if v := md.Get(k); len(v) > 0 {
				return v[0]
			}
			return ""
		}
		id := first("x-call-id")
		fail, _ := strconv.Atoi(first("x-fail"))
		mu.Lock()
		attempts[id]++
		n := attempts[id]
		mu.Unlock()
		code := codes.OK
		if n <= fail {
			code = codes.Unavailable
		}
		fmt.Printf("call id=%s attempt=%d tenant=%s code=%s\n", id, n, first("x-tenant"), code)
		if code != codes.OK {
			return nil, status.Errorf(code, "attempt %d of call %s fails on purpose", n, id)
		}
		return wrapperspb.String("color-grpc"), nil
	}
	s := grpc.NewServer()
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "color.ColorService",
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "GetColor", Handler: getColor}},
	}, struct{}{})
	healthpb.RegisterHealthServer(s, health.NewServer())
	fmt.Printf("listening %s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	if err := s.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// LoadResult is what http-load prints.
type LoadResult struct {
	// Counts are the response bodies of 200 answers, counted.
	Counts map[string]int `json:"counts"`
	// Errors are requests that failed or did not answer 200.
	Errors     int    `json:"errors"`
	FirstError string `json:"firstError,omitempty"`
	// Codes counts the answers by HTTP status code.
	Codes map[string]int `json:"codes,omitempty"`
	// Slowest is the longest request.
	Slowest string `json:"slowest,omitempty"`
	Elapsed string `json:"elapsed"`
}

// HTTPLoad sends GET requests to -url from -c workers, -n requests in all,
// or until SIGTERM with -until-signal, each worker pausing -pause between
// requests; then it prints a LoadResult. With -fail N every request
// carries a call id of its own (x-call-id) and x-fail: N, which
// ColorServer's /flaky obeys. It exits 0 even when requests failed: the
// caller judges.
func HTTPLoad(args []string) int {
	fs := flag.NewFlagSet("http-load", flag.ContinueOnError)
	url := fs.String("url", "", "URL")
	n := fs.Int("n", 100, "requests in all")
	c := fs.Int("c", 4, "workers")
	untilSignal := fs.Bool("until-signal", false, "send until SIGTERM instead of -n requests")
	pause := fs.Duration("pause", 0, "pause of each worker between requests")
	fail := fs.Int("fail", -1, "send x-call-id and this x-fail with every request (-1: neither)")
	if err := fs.Parse(args); err != nil || *url == "" || *c < 1 {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *c, DisableCompression: true},
	}
	var (
		mu      sync.Mutex
		res     = LoadResult{Counts: map[string]int{}}
		left    = *n
		sent    int
		slowest time.Duration
		wg      sync.WaitGroup
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		sent++
		if *untilSignal {
			return sent, ctx.Err() == nil
		}
		if left == 0 {
			return sent, false
		}
		left--
		return sent, true
	}
	callPrefix := strconv.FormatInt(time.Now().UnixNano(), 36)
	start := time.Now()
	for range *c {
		wg.Go(func() {
			for {
				i, ok := take()
				if !ok {
					break
				}
				hdr := http.Header{}
				if *fail >= 0 {
					hdr.Set("X-Call-Id", fmt.Sprintf("%s-%d", callPrefix, i))
					hdr.Set("X-Fail", strconv.Itoa(*fail))
				}
				t0 := time.Now()
				code, body, err := fetch(client, *url, hdr)
				took := time.Since(t0)
				mu.Lock()
				slowest = max(slowest, took)
				if code != 0 {
					if res.Codes == nil {
						res.Codes = map[string]int{}
					}
					res.Codes[strconv.Itoa(code)]++
				}
				if err != nil {
					res.Errors++
					if res.FirstError == "" {
						res.FirstError = err.Error()
					}
				} else {
					res.Counts[body]++
				}
				mu.Unlock()
				if *pause > 0 {
					time.Sleep(*pause)
				}
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start).Round(time.Millisecond).String()
	res.Slowest = slowest.Round(time.Millisecond).String()
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// fetch does one request and returns the status code (0 when there was no
// answer) and the body of a 200; the context is not the load's, so that a
// request in flight at SIGTERM completes.
func fetch(client *http.Client, url string, hdr http.Header) (int, string, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	maps.Copy(req.Header, hdr)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, "", fmt.Errorf("status %d: %q", resp.StatusCode, b)
	}
	return resp.StatusCode, string(b), nil
}

// CallResult is what grpc-call prints.
type CallResult struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
	Reply   string `json:"reply,omitempty"`
}

// GRPCCall makes one /color.ColorService/GetColor call to -addr (a
// name, resolved like any program resolves it) with the metadata x-tenant,
// x-call-id and x-fail, and prints a CallResult.
func GRPCCall(args []string) int {
	fs := flag.NewFlagSet("grpc-call", flag.ContinueOnError)
	addr := fs.String("addr", "", "host:port")
	tenant := fs.String("tenant", "", "x-tenant metadata")
	callID := fs.String("call", "", "x-call-id metadata")
	fail := fs.Int("fail", 0, "x-fail metadata: how many attempts the server fails")
	if err := fs.Parse(args); err != nil || *addr == "" {
		return 2
	}
	// passthrough: the dialer resolves the name with the system resolver
	// (no SRV or TXT lookups of grpc's dns resolver).
	conn, err := grpc.NewClient("passthrough:///"+*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-tenant", *tenant, "x-call-id", *callID, "x-fail", strconv.Itoa(*fail))
	var out wrapperspb.StringValue
	err = conn.Invoke(ctx, "/color.ColorService/GetColor", wrapperspb.String("which colour?"), &out)
	st := status.Convert(err)
	res := CallResult{Code: st.Code().String(), Message: st.Message(), Reply: out.GetValue()}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// ConnectResult is what connect prints.
type ConnectResult struct {
	OK bool `json:"ok"`
	// Error is the dial's error and Errno its errno's name (EPERM), if any.
	Error   string `json:"error,omitempty"`
	Errno   string `json:"errno,omitempty"`
	Elapsed string `json:"elapsed"`
}

// Connect opens a TCP connection to its argument (host:port) and closes it
// at once, then prints a ConnectResult. Usage: connect [-timeout 3s]
// address. It exits 0 whether or not the connection was made.
func Connect(args []string) int {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 3*time.Second, "connect timeout")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: connect [-timeout d] address")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	t0 := time.Now()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", fs.Arg(0))
	res := ConnectResult{OK: err == nil, Elapsed: time.Since(t0).Round(10 * time.Microsecond).String()}
	if err != nil {
		res.Error = err.Error()
		var errno syscall.Errno
		if errors.As(err, &errno) {
			res.Errno = unix.ErrnoName(errno)
		}
	} else {
		_ = conn.Close()
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}
