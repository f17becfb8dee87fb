// SPDX-License-Identifier: Apache-2.0

// Command weft-controller holds the mesh's resources and serves the App
// Mesh-compatible API. See docs/controller.md.
package main

import (
	"fmt"
	"os"
)

func main() {
	ctx, stop := signalContext()
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "weft-controller:", err)
		os.Exit(1)
	}
}
