// SPDX-License-Identifier: Apache-2.0

// Command demo is `make demo`: it runs a whole weft mesh on this machine and
// walks a newcomer through it. It builds the weft commands, starts
// weft-controller (bbolt in a temporary directory) and two simulated nodes
// (package test/netsim: network namespaces, cgroups and bpffs mounts of
// their own), each with its weft-agent and weft-proxy, starts the sample
// workloads (the colour app in red, blue and green, a gRPC service, a TCP
// echo), applies test/demo/mesh.yaml with weftctl, and shows the canary
// split, a live weight shift, a retry, a timeout, a gRPC call routed and
// retried, a DROP_ALL denial, the kernel-only TCP path, and the commands
// that show metrics and flows.
//
// It needs root. With --once it runs the tour and exits; otherwise it keeps
// the mesh running, with a little traffic, until Ctrl-C. Either way it
// removes everything it created: processes (by pid), namespaces, cgroups,
// mounts and temporary directories. The mesh itself is test/meshbed, which
// the end-to-end tests use too.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/weft-mesh/weft/test/meshbed"
	"github.com/weft-mesh/weft/test/netsim"
)

func main() {
	// A process started in a workload is this binary again: RunMain turns
	// it into the program it was started as, and never returns then.
	netsim.RunMain(meshbed.Programs())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// opts are the demo's options.
type opts struct {
	// once: run the tour and return; otherwise wait for the context's end.
	once bool
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	once := fs.Bool("once", false, "run the tour and exit")
	verbose := fs.Bool("v", false, "print the set-up's log")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("the demo simulates nodes with network namespaces, cgroups and eBPF: run it as root (sudo make demo)")
	}
	var log io.Writer
	if *verbose {
		log = os.Stderr
	}
	tb := netsim.NewStandalone(ctx, "demo", log)
	t := newTour(tb, out)
	// The tour takes ctx from tb.Context().
	err := tb.Do(func() { t.run(opts{once: *once}) }) //nolint:contextcheck // ctx reaches the tour as tb.Context()
	interrupted := ctx.Err() != nil
	if interrupted {
		fmt.Fprintln(out, "\nInterrupted: cleaning up.")
	}
	if closeErr := tb.Close(); !interrupted {
		err = closeErr
	} else if *verbose && closeErr != nil {
		fmt.Fprintln(out, "(while interrupted:", closeErr, ")")
	}
	t.reportCleanup()
	if interrupted && !t.finished {
		// Ctrl-C after the tour is how the demo ends; before, it cut the
		// tour short.
		err = errors.New("interrupted before the end of the tour")
	}
	return err
}
