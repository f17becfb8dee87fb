// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Backend ports, in the server's namespace.
const (
	portHTTP1 = 8080 // HTTP/1.1 (and h2c with prior knowledge)
	portH2C   = 8082 // the same server: the h2c workloads' upstream
	portGRPC  = 9090 // grpc-go with the health service
)

// body is the 1 KB answer of the HTTP workloads.
var body = []byte(strings.Repeat("x", 1024))

// backendMain is the server program: HTTP/1.1 and h2c on portHTTP1 and
// portH2C answering every request with body, and gRPC (health, SERVING) on
// portGRPC. It prints "ready" once it listens and serves until SIGTERM.
func backendMain(_ []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(body)
	})
	var lc net.ListenConfig
	g, gctx := errgroup.WithContext(ctx)
	for _, port := range []int{portHTTP1, portH2C} {
		ln, err := lc.Listen(ctx, "tcp", ":"+strconv.Itoa(port))
		if err != nil {
			fmt.Fprintln(os.Stderr, "backend:", err)
			return 1
		}
		srv := &http.Server{Handler: h, Protocols: p, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Hour}
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error { <-gctx.Done(); return srv.Close() })
	}
	ln, err := lc.Listen(ctx, "tcp", ":"+strconv.Itoa(portGRPC))
	if err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		return 1
	}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	g.Go(func() error { return gs.Serve(ln) })
	g.Go(func() error { <-gctx.Done(); gs.Stop(); return nil })
	fmt.Println("ready")
	if err := g.Wait(); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		return 1
	}
	return 0
}
