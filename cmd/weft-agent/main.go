// SPDX-License-Identifier: Apache-2.0

// Command weft-agent is the node agent: it keeps this node's eBPF datapath
// equal to the desired node state, answers DNS for mesh names and exports
// kernel TCP telemetry. See docs/agent.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "weft-agent:", err)
		os.Exit(1)
	}
}
