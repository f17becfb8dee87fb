// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/test/meshbed"
	"github.com/weft-mesh/weft/test/testutil"
)

// capabilityWrapper writes a script that runs bin as the unit does as far
// as capabilities go: root restricted to the unit's CapabilityBoundingSet,
// with NoNewPrivileges (setpriv does what systemd does).
func capabilityWrapper(t *testing.T, setpriv, unitFile, bin string) string {
	t.Helper()
	svc := parseUnit(t, deployPath(t, "systemd", unitFile))["Service"]
	caps := []string{"-all"}
	for _, v := range svc["CapabilityBoundingSet"] {
		for _, c := range strings.Fields(v) {
			caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
		}
	}
	if len(svc["NoNewPrivileges"]) != 1 || svc["NoNewPrivileges"][0] != "yes" {
		t.Errorf("%s: want NoNewPrivileges=yes", unitFile)
	}
	path := filepath.Join(t.TempDir(), filepath.Base(bin))
	writeFile(t, path, fmt.Sprintf("#!/bin/sh\nexec %s --no-new-privs --inh-caps -all --bounding-set %s -- %s \"$@\"\n",
		setpriv, strings.Join(caps, ","), bin))
	if err := chmodX(path); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s", unitFile, strings.Join(caps, ","))
	return path
}

// TestUnitCapabilities runs a controller and two nodes on simulated nodes
// (test/meshbed), each component restricted to the capability bounding set
// of its unit: the agents must load, attach and pin the datapath and turn
// ready, the proxies must open the agents' pinned maps, bind and answer
// /ready. systemd itself does not run here (no init system), so the other
// sandboxing settings are checked by systemd-analyze verify only.
func TestUnitCapabilities(t *testing.T) {
	testutil.RequirePrivileged(t)
	testutil.SkipOnOldKernel(t, "6.6", "cgroup sock_addr links, bpf_set_retval, tcx")
	setpriv := requireTool(t, "setpriv")
	bins := meshbed.Binaries{
		Controller: capabilityWrapper(t, setpriv, "weft-controller.service", filepath.Join(binDir, "weft-controller")),
		Agent:      capabilityWrapper(t, setpriv, "weft-agent.service", filepath.Join(binDir, "weft-agent")),
		Proxy:      capabilityWrapper(t, setpriv, "weft-proxy.service", filepath.Join(binDir, "weft-proxy")),
	}
	b := meshbed.New(t, bins)
	b.StartController(0)
	b.StartNodes() // waits until every agent is ready and every proxy subscribed
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, mn := range []*meshbed.Node{b.A, b.B} {
		meshbed.Eventually(t, 20*time.Second, func() error {
			if err := mn.Proxy.Exited(); err != nil {
				return err
			}
			code, body, err := meshbed.Get(ctx, mn.HTTP, "http://"+meshbed.ProxyAdmin+"/ready")
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("%s proxy /ready: %d %s", mn.Node.Name, code, body)
			}
			return err
		})
		if err := mn.Agent.Exited(); err != nil {
			t.Error(err)
		}
	}
}
