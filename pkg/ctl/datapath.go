// SPDX-License-Identifier: Apache-2.0

package ctl

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// DefaultAgent is the agent address used when neither --agent nor
// WEFT_AGENT says otherwise: the agent's metrics and debug listener.
const DefaultAgent = "http://127.0.0.1:9465"

// runDatapath runs `weftctl datapath dump|state`: it prints what the node
// agent's /debug/datapath (the BPF maps) or /debug/state (the desired state
// it applied, as JSON) serves.
func runDatapath(ctx context.Context, g *globals, args []string, stdio IO) error {
	if len(args) == 0 {
		return usageError("datapath: want dump or state")
	}
	sub, args := args[0], args[1:]
	var path string
	switch sub {
	case "dump":
		path = "/debug/datapath"
	case "state":
		path = "/debug/state"
	default:
		return usageError(fmt.Sprintf("datapath: unknown command %q (want dump or state)", sub))
	}
	fs := newFlagSet("datapath "+sub, g)
	agent := os.Getenv("WEFT_AGENT")
	if agent == "" {
		agent = DefaultAgent
	}
	fs.StringVar(&agent, "agent", agent, "agent's metrics and debug URL (env WEFT_AGENT)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return usageError(err.Error())
	}
	if len(pos) > 0 {
		return usageError(fmt.Sprintf("datapath %s: unexpected arguments %v", sub, pos))
	}
	if !strings.Contains(agent, "://") {
		agent = "http://" + agent
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	url := strings.TrimSuffix(agent, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil) //nolint:gosec // G704: the URL is the user's --agent
	if err != nil {
		return fmt.Errorf("datapath %s: %w", sub, err)
	}
	resp, err := http.DefaultClient.Do(req) //nolint:gosec // G704: the URL is the user's --agent
	if err != nil {
		return fmt.Errorf("datapath %s: %w", sub, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("datapath %s: %s: %s: %s", sub, url, resp.Status, strings.TrimSpace(string(msg)))
	}
	if _, err := io.Copy(stdio.Out, resp.Body); err != nil {
		return fmt.Errorf("datapath %s: read %s: %w", sub, url, err)
	}
	return nil
}
