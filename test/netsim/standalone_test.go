// SPDX-License-Identifier: Apache-2.0

package netsim_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/test/netsim"
)

// TestStandalone checks the testing.TB of programs: Fatal ends Do with the
// message, cleanups run last first at Close, and Close removes the
// temporary directories.
func TestStandalone(t *testing.T) {
	s := netsim.NewStandalone(t.Context(), "unit", nil)
	var order []int
	var dir string
	reached := false
	err := s.Do(func() {
		dir = s.TempDir()
		s.Cleanup(func() { order = append(order, 1) })
		s.Cleanup(func() { order = append(order, 2) })
		s.Fatalf("stop %d", 42)
		reached = true
	})
	if reached || err == nil || !strings.Contains(err.Error(), "stop 42") || !s.Failed() {
		t.Fatalf("Do after Fatalf: reached %v, error %v, failed %v", reached, err, s.Failed())
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("TempDir before Close: %v", err)
	}
	if err := s.Close(); err == nil {
		t.Error("Close: nil error after a failure")
	}
	if !slices.Equal(order, []int{2, 1}) {
		t.Errorf("cleanups ran in order %v, want [2 1]", order)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("TempDir after Close: %v, want it removed", err)
	}

	ok := netsim.NewStandalone(context.Background(), "unit", nil)
	if err := ok.Do(func() { ok.Logf("fine") }); err != nil {
		t.Errorf("Do without failure: %v", err)
	}
	if err := ok.Close(); err != nil {
		t.Errorf("Close without failure: %v", err)
	}
}
