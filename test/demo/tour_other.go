// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package main

import (
	"io"
	"testing"
)

// tour fails outside Linux: the simulated nodes need it.
type tour struct {
	tb       testing.TB
	finished bool
}

func newTour(tb testing.TB, _ io.Writer) *tour {
	tb.Helper()
	return &tour{tb: tb}
}

func (t *tour) run(opts) {
	t.tb.Fatal("the demo simulates nodes with Linux namespaces, cgroups and eBPF: it needs Linux")
}

func (*tour) reportCleanup() {}
