// SPDX-License-Identifier: Apache-2.0

// Command weft-bench is `make bench`: it compares, in one run on one
// machine, a direct connection, weft's L4 eBPF path, the L7 path through
// weft-proxy, and nginx, HAProxy (HTTP and TCP modes) and
// httputil.ReverseProxy in weft-proxy's place; then it measures the
// agent's and the proxy's footprint and the control plane's convergence.
// It writes results.md and results.json. See docs/performance.md.
//
// It needs root and 2 CPUs. The test bed is a simulated node (test/netsim):
// client and server pods in network namespaces of their own, routed
// through the node's namespace, where weft-agent, weft-proxy and the other
// proxies run. The bench re-executes itself as the load generator, the
// backend and the ReverseProxy baseline (WEFT_BENCH_CHILD names the
// program), each started in its cgroup and namespace and pinned to a CPU.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// programs are what the bench runs as child processes.
var programs = map[string]func(args []string) int{
	"load":       loadMain,
	"backend":    backendMain,
	"revproxy":   revProxyMain,
	"controller": controllerMain,
}

func main() {
	if name := os.Getenv(childEnv); name != "" {
		fn := programs[name]
		if fn == nil {
			fmt.Fprintf(os.Stderr, "weft-bench: unknown program %q\n", name)
			os.Exit(2)
		}
		os.Exit(fn(os.Args[1:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "weft-bench:", err)
		os.Exit(1)
	}
}
