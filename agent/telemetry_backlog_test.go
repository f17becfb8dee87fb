// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weft-mesh/weft/agent/datapath"
	wtestutil "github.com/weft-mesh/weft/test/testutil"
)

// A restarted agent finds the reports of the connections that closed while
// no agent ran waiting in the ring buffer. It reads them only once it has
// applied a state, so they are named, not counted as "unknown" (found by
// TestE2ERestartUnderTraffic).
func TestReportsWaitForState(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := validConfig(t)
	h := startAgent(t, cfg)

	sent := make(chan struct{})
	go func() {
		defer close(sent)
		// Blocks until the agent reads reports.
		h.dp.events <- datapath.ConnEvent{Cookie: 1, WorkloadID: 5, BytesSent: 42, Closed: true}
	}()
	writeState(t, cfg.StateFile, stateJSON("v1", "web.demo.local"))
	h.waitStates(1)
	<-sent
	wtestutil.Eventually(t, 5*time.Second, func() error {
		_, metrics := h.get("/metrics")
		for line := range strings.Lines(metrics) {
			if strings.Contains(line, `source_virtual_node="unknown"`) {
				return fmt.Errorf("a report was read before the state named it: %s", line)
			}
		}
		want := `weft_agent_tcp_bytes_sent_total{destination_virtual_service="unknown",mesh="demo",source_virtual_node="web"} 42`
		if !strings.Contains(metrics, want) {
			return fmt.Errorf("/metrics lacks %s", want)
		}
		return nil
	})
	h.stop()
}
