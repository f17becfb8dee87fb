// SPDX-License-Identifier: Apache-2.0

//go:build e2e && linux

package e2e

// The programs the test runs as workload processes (netsim.Main re-executes
// the test binary as one of them inside a workload's cgroup and network
// namespace). Servers print "listening <address>" once they accept
// connections; clients print one JSON object on stdout.

import (
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
)

// The environment of a client program that resolves names (withResolver).
const (
	envResolvConf = "WEFT_E2E_RESOLV_CONF"
	envNSSwitch   = "WEFT_E2E_NSSWITCH"
	envHostMntNS  = "WEFT_E2E_HOST_MNTNS"
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

// colorServerMain serves S1's colour app: GET / answers the -name (blue or
// green), /ping answers "ok" (the health check). Usage: color-server -name
// N [-listen :8080].
func colorServerMain(args []string) int {
	fs := flag.NewFlagSet("color-server", flag.ContinueOnError)
	name := fs.String("name", "", "colour to answer")
	listen := fs.String("listen", ":8080", "address")
	if err := fs.Parse(args); err != nil || *name == "" {
		return 2
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, *name) })
	return serveHTTP(*listen, mux)
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

// grpcServerMain serves S3's color.ColorService on -listen (default :9090)
// with the standard health service (the S3 health check). GetColor answers
// "color-grpc", except that it fails with UNAVAILABLE the first N times a
// call id is seen, N being the x-fail metadata and the call id x-call-id:
// a backend that recovers, to show retries. It prints every GetColor it
// gets: "call id=<x-call-id> attempt=<n> tenant=<x-tenant> code=<code>".
func grpcServerMain(args []string) int {
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

// loadResult is what http-load prints.
type loadResult struct {
	// Counts are the response bodies of 200 answers, counted.
	Counts map[string]int `json:"counts"`
	// Errors are requests that failed or did not answer 200.
	Errors     int    `json:"errors"`
	FirstError string `json:"firstError,omitempty"`
	Elapsed    string `json:"elapsed"`
}

// httpLoadMain sends GET requests to -url from -c workers, -n requests in
// all, or until SIGTERM with -until-signal, each worker pausing -pause
// between requests; then it prints a loadResult. It exits 0 even when
// requests failed: the test judges.
func httpLoadMain(args []string) int {
	fs := flag.NewFlagSet("http-load", flag.ContinueOnError)
	url := fs.String("url", "", "URL")
	n := fs.Int("n", 100, "requests in all")
	c := fs.Int("c", 4, "workers")
	untilSignal := fs.Bool("until-signal", false, "send until SIGTERM instead of -n requests")
	pause := fs.Duration("pause", 0, "pause of each worker between requests")
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
		mu   sync.Mutex
		res  = loadResult{Counts: map[string]int{}}
		left = *n
		wg   sync.WaitGroup
	)
	take := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if *untilSignal {
			return ctx.Err() == nil
		}
		if left == 0 {
			return false
		}
		left--
		return true
	}
	start := time.Now()
	for range *c {
		wg.Go(func() {
			for take() {
				body, err := fetch(client, *url)
				mu.Lock()
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
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// fetch does one request; the context is not the load's, so that a request
// in flight at SIGTERM completes.
func fetch(client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %q", resp.StatusCode, b)
	}
	return string(b), nil
}

// callResult is what grpc-call prints.
type callResult struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
	Reply   string `json:"reply,omitempty"`
}

// grpcCallMain makes one /color.ColorService/GetColor call to -addr (a
// name, resolved like any program resolves it) with the metadata x-tenant,
// x-call-id and x-fail, and prints a callResult.
func grpcCallMain(args []string) int {
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
	res := callResult{Code: st.Code().String(), Message: st.Message(), Reply: out.GetValue()}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}
