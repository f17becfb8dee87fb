// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/pkg/version"
)

func runAgent(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestRunVersion(t *testing.T) {
	t.Parallel()
	out, _, err := runAgent(t, "-version")
	if err != nil || strings.TrimSpace(out) != version.Version {
		t.Errorf("-version = %q, %v", out, err)
	}
}

func TestRunFlags(t *testing.T) {
	t.Parallel()
	if _, stderr, err := runAgent(t, "-no-such-flag"); err == nil || !strings.Contains(stderr, "-no-such-flag") {
		t.Errorf("unknown flag: %v, %q", err, stderr)
	}
	if _, _, err := runAgent(t, "extra"); err == nil || !strings.Contains(err.Error(), "unexpected arguments") {
		t.Errorf("argument: %v", err)
	}
	if _, stderr, err := runAgent(t, "-h"); err != nil || !strings.Contains(stderr, "-state-file") {
		t.Errorf("-h: %v, %q", err, stderr)
	}
}

func TestRunPrintConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.yaml")
	body := "nodeName: from-file\ncgroupRoot: /sys/fs/cgroup/weft\ndns: {upstreams: [10.0.0.2]}\nworkloads: [{cgroupPath: system.slice/a.service, mesh: demo, virtualNode: a}]\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := runAgent(t, "-config", file, "-print-config", "-state-file", "/var/lib/weft/state.json", "-node-name", "from-flag", "-pin-path", "/tmp/bpf/weft", "-tunnel-address", "10.0.0.5:15008")
	if err != nil {
		t.Fatalf("print-config: %v\n%s", err, out)
	}
	for _, want := range []string{
		"nodeName: from-flag", "cgroupRoot: /sys/fs/cgroup/weft", "stateFile: /var/lib/weft/state.json",
		"pinPath: /tmp/bpf/weft", "address: 169.254.100.1:15001", "listen: 169.254.100.2:53",
		"metricsListen: 127.0.0.1:9465", "- 10.0.0.2", "virtualNode: a", "tunnelAddress: 10.0.0.5:15008",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("effective config lacks %q:\n%s", want, out)
		}
	}
}

func TestRunInvalidConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("nodeName: a\nstatefil: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runAgent(t, "-config", bad); err == nil || !strings.Contains(err.Error(), `unknown field "statefil"`) {
		t.Errorf("unknown field: %v", err)
	}
	// Without a state file the agent refuses to start, before touching
	// the kernel.
	_, _, err := runAgent(t, "-cgroup-root", dir, "-node-name", "n")
	if err == nil || !strings.Contains(err.Error(), "invalid configuration") || !strings.Contains(err.Error(), "stateFile: is required") {
		t.Errorf("no state file: %v", err)
	}
}
