// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
)

// footprintRow is the agent's and weft-proxy's resident memory with a
// number of services.
type footprintRow struct {
	// Services is the number of services beyond the bench's two.
	Services int `json:"services"`
	// AgentRSS is the agent's RSS once it applied a node state with
	// Services+2 services (it keeps running, so memory it grew for
	// earlier rows may stay).
	AgentRSS float64 `json:"agentRssMiB"`
	// ProxyRSS is a fresh weft-proxy's RSS with the bench's configuration
	// plus Services services of one HTTP route and cluster each, idle,
	// two seconds after it is ready.
	ProxyRSS float64 `json:"proxyRssMiB"`
	// AgentApply is how long the agent took to apply the state (from the
	// state file's write to its metrics showing the new version).
	AgentApply float64 `json:"agentApplySeconds"`
}

// footprint measures the agent and a fresh weft-proxy with 0, 100 and
// 1,000 extra L7 services.
func (b *bed) footprint(ctx context.Context) ([]footprintRow, error) {
	var rows []footprintRow
	for k, n := range []int{0, 100, 1000} {
		st, err := protojson.Marshal(b.nodeState(n))
		if err != nil {
			return nil, err
		}
		start := time.Now()
		if err := os.WriteFile(filepath.Join(b.dir, "nodestate.json"), st, 0o600); err != nil {
			return nil, err
		}
		want := fmt.Sprintf(`weft_agent_state_version_info{version="services-%d"} 1`, n)
		err = waitFor(ctx, b.agent, "agent applying the state", func() error {
			body, err := b.fetch(ctx, "http://"+agentMetrics+"/metrics")
			if err != nil {
				return err
			}
			if !strings.Contains(body, want) {
				return fmt.Errorf("no %s yet", want)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		row := footprintRow{Services: n, AgentApply: time.Since(start).Seconds()}
		p, err := b.startWeftProxy(ctx, "weft-proxy-fp", n, portWeftProxy+100+uint16(k), portWeftAdmin+100+uint16(k))
		if err != nil {
			return nil, err
		}
		time.Sleep(2 * time.Second)
		row.AgentRSS = float64(rssBytes(b.agent.cgroup)) / (1 << 20)
		row.ProxyRSS = float64(rssBytes(p.cgroup)) / (1 << 20)
		p.stop()
		rows = append(rows, row)
		fmt.Printf("  footprint: %4d extra services: agent %.1f MiB (applied in %.2fs), weft-proxy %.1f MiB\n",
			n, row.AgentRSS, row.AgentApply, row.ProxyRSS)
	}
	return rows, nil
}
