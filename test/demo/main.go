// SPDX-License-Identifier: Apache-2.0

// Command demo is `make demo`: it runs weft on this machine and walks a
// newcomer through it. Today it shows the control plane: it starts
// weft-controller on a temporary bbolt store, applies the App Mesh sample
// sets in their three forms with weftctl, and shows what the controller makes
// of them (versions, idempotent re-applies, validation errors that name the
// field, references that block deletes, the AWS SDK against the controller,
// metrics). The datapath and the proxy join the tour as they land.
//
// With --once it runs the tour and exits; otherwise it keeps the controller
// running until Ctrl-C. Either way it removes everything it created.
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
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
