// SPDX-License-Identifier: Apache-2.0

// Command weftctl is the command line of the weft mesh. See pkg/ctl.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/weft-mesh/weft/pkg/ctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := ctl.Run(ctx, os.Args[1:], ctl.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "weftctl:", err)
	var ue *ctl.UsageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}
