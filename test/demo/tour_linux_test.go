// SPDX-License-Identifier: Apache-2.0

//go:build e2e && linux

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/test/meshbed"
	"github.com/weft-mesh/weft/test/netsim"
	"github.com/weft-mesh/weft/test/testutil"
)

func TestMain(m *testing.M) {
	netsim.Main(m, meshbed.Programs())
}

// TestTour runs `make demo ARGS=--once`'s tour (each step checks what it
// shows and fails the test otherwise) and logs its output. The tour takes
// about 10s after the builds, so it belongs to `make test` (build tag e2e)
// and the demo cannot rot unnoticed.
func TestTour(t *testing.T) {
	testutil.RequirePrivileged(t)
	testutil.SkipOnOldKernel(t, "6.6", "cgroup sock_addr links, bpf_set_retval, tcx")
	var out strings.Builder
	begin := time.Now()
	tr := newTour(t, &out)
	t.Cleanup(func() { t.Logf("the tour's output:\n%s", out.String()) })
	tr.run(opts{once: true})
	if !tr.finished {
		t.Fatal("the tour did not finish")
	}
	t.Logf("the tour took %v", time.Since(begin).Round(time.Millisecond))
}
