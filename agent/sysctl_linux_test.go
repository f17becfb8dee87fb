// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/test/testutil"
)

// TestSetNodeSysctls sets tcp_migrate_req in a network namespace of the
// test's own (/proc/sys/net follows the namespace of the thread that opens
// it) and checks that the host's value did not move.
func TestSetNodeSysctls(t *testing.T) {
	testutil.RequirePrivileged(t)
	const path = "/proc/sys/net/ipv4/tcp_migrate_req"
	host, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("this kernel has no tcp_migrate_req (Linux 5.14+): %v", err)
	}
	ns := testutil.NewNetNS(t)
	read := func() string {
		var v []byte
		if err := ns.Do(func() error {
			var err error
			v, err = os.ReadFile(path)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return string(bytes.TrimSpace(v))
	}
	if v := read(); v != "0" {
		t.Fatalf("a new namespace has tcp_migrate_req=%s, want the kernel's default 0", v)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	var changed, again []string
	if err := ns.Do(func() error {
		changed = SetNodeSysctls("/proc/sys", log)
		again = SetNodeSysctls("/proc/sys", log)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if v := read(); v != "1" || !slices.Equal(changed, []string{"net.ipv4.tcp_migrate_req=1"}) || len(again) != 0 {
		t.Errorf("after SetNodeSysctls: %s (changed %v, then %v); want 1, changed once\n%s", v, changed, again, logs.String())
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, host) {
		t.Errorf("the host's tcp_migrate_req moved from %q to %q", host, now)
	}
	t.Log(strings.TrimSpace(logs.String()))
}

// TestSetNodeSysctlsCannot: a setting it cannot read or write is logged and
// left, never an error.
func TestSetNodeSysctlsCannot(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if c := SetNodeSysctls(dir, log); len(c) != 0 || !strings.Contains(logs.String(), "cannot read a node setting") {
		t.Errorf("missing file: changed %v, log %s", c, logs.String())
	}
	f := filepath.Join(dir, "net", "ipv4", "tcp_migrate_req")
	if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte("0\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// root writes a 0444 file all the same: use a directory instead.
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(f, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	logs.Reset()
	if c := SetNodeSysctls(dir, log); len(c) != 0 || !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("unwritable: changed %v, log %s", c, logs.String())
	}
}
