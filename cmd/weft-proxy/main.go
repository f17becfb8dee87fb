// SPDX-License-Identifier: Apache-2.0

// Command weft-proxy is the node's shared L7 proxy: it serves the Envoy
// resources of the node's virtual nodes and virtual gateways for the
// connections the datapath redirects to it. See docs/proxy.md.
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
		fmt.Fprintln(os.Stderr, "weft-proxy:", err)
		os.Exit(1)
	}
}
