// SPDX-License-Identifier: Apache-2.0

// Command bench is `make bench`'s datapath comparison: connection rate and
// request latency of a direct connection against the same connection through
// weft's L4 eBPF path (a virtual service address rewritten at connect() to
// the backend), measured in one run, interleaved, and reported as ratios.
//
// It needs root (it loads the eBPF programs and creates cgroups). Clients run
// as child processes of this binary: one in a cgroup the programs are
// attached to (the l4 variant, connecting to the service address), one in a
// cgroup outside it (the direct variant, connecting to the backend itself),
// so the direct baseline runs no eBPF at all.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode, os.Args[1:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
