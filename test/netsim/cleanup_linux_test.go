// SPDX-License-Identifier: Apache-2.0

package netsim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/test/testutil"
)

// envManifest tells the test binary to play the failing child of
// TestCleanupLeavesNothing and where to write what it created.
const envManifest = "WEFT_NETSIM_TEST_MANIFEST"

// manifest is what the failing child created.
type manifest struct {
	resources
	// Procs maps each pid the child knew of to its start time, so that a
	// reused pid is not taken for a survivor.
	Procs map[int]string `json:"procs"`
}

// TestCleanupLeavesNothing runs a test that builds a network with nodes,
// workloads and processes (one of them a grandchild the Net never heard
// of) and then fails, in a child test binary, and checks that nothing it
// created is left: processes, network namespaces, cgroups, bpffs mounts,
// interfaces in the host namespace.
func TestCleanupLeavesNothing(t *testing.T) {
	testutil.RequirePrivileged(t)
	if path := os.Getenv(envManifest); path != "" {
		failOnPurpose(t, path)
		return
	}
	t.Parallel()

	ifacesBefore := hostInterfaceNames(t)
	runNetnsBefore := runNetns()
	path := filepath.Join(t.TempDir(), "manifest.json")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), self, "-test.run=^TestCleanupLeavesNothing$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envManifest+"="+path)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !bytes.Contains(out, []byte("failing on purpose")) {
		t.Fatalf("child test: %v; want it to fail on purpose. Output:\n%s", err, out)
	}
	for _, e := range []string{"remove cgroup", "empty cgroup", "kill processes", "unmount bpffs", "close network namespace"} {
		if bytes.Contains(out, []byte(e)) {
			t.Errorf("child's cleanup reported %q:\n%s", e, out)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read manifest: %v; child output:\n%s", err, out)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.NetNS) < 4 || len(m.Cgroups) < 5 || len(m.Mounts) < 2 || len(m.Procs) < 4 {
		t.Fatalf("manifest lists too little to check: %+v", m)
	}

	testutil.Eventually(t, 10*time.Second, func() error {
		for pid, start := range m.Procs {
			if s, err := procStart(pid); err == nil && s == start {
				return fmt.Errorf("process %d still runs", pid)
			}
		}
		return nil
	})
	for _, cg := range m.Cgroups {
		if _, err := os.Stat(cg); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s is left (stat: %v)", cg, err)
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, mnt := range m.Mounts {
		if bytes.Contains(mounts, []byte(" "+mnt+" ")) {
			t.Errorf("bpffs %s is still mounted", mnt)
		}
		if _, err := os.Stat(mnt); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("mount point %s is left (stat: %v)", mnt, err)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		live := liveNetns()
		for _, ino := range m.NetNS {
			if where, ok := live[ino]; ok {
				return fmt.Errorf("network namespace net:[%d] is still held by %s", ino, where)
			}
		}
		return nil
	})
	if got := runNetns(); got != runNetnsBefore {
		t.Errorf("/run/netns changed from %q to %q", runNetnsBefore, got)
	}
	if got := hostInterfaceNames(t); got != ifacesBefore {
		t.Errorf("host interfaces changed from %q to %q", ifacesBefore, got)
	}
}

// failOnPurpose is the child's part: build, record, fail.
func failOnPurpose(t *testing.T, path string) {
	t.Helper()
	n := New(t, Options{IPv6: true})
	a, b := n.AddNode("a"), n.AddNode("b")
	pod := a.AddWorkload("pod", WorkloadOptions{})
	a.AddWorkload("idle", WorkloadOptions{})
	host := b.AddWorkload("host", WorkloadOptions{HostNetwork: true})

	m := manifest{Procs: map[int]string{}}
	record := func(pid int) {
		s, err := procStart(pid)
		if err != nil {
			t.Fatal(err)
		}
		m.Procs[pid] = s
	}
	p, err := pod.Start(t.Context(), "sleep")
	if err != nil {
		t.Fatal(err)
	}
	record(p.Pid())
	sp, err := host.Start(t.Context(), "spawn")
	if err != nil {
		t.Fatal(err)
	}
	record(sp.Pid())
	var grandchild int
	testutil.Eventually(t, 5*time.Second, func() error {
		grandchild, err = strconv.Atoi(strings.TrimSpace(string(sp.Stdout())))
		return err
	})
	record(grandchild)
	// Started and never waited for: only the cgroup sweep can end it.
	cmd := pod.Command(t.Context(), "sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	record(cmd.Process.Pid)
	// Cgroups that someone else (an agent, a runtime) made under a node.
	if err := os.MkdirAll(filepath.Join(b.CgroupPath, "extra", "deeper"), 0o750); err != nil {
		t.Fatal(err)
	}
	m.resources = n.res
	m.Cgroups = append(slices.Clone(m.Cgroups), filepath.Join(b.CgroupPath, "extra"), filepath.Join(b.CgroupPath, "extra", "deeper"))
	buf, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Fatal("failing on purpose")
}

// procStart returns the start time of process pid (field 22 of its stat).
func procStart(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", fmt.Errorf("parse /proc/%d/stat", pid)
	}
	// f[0] is field 3 (state); a zombie is as good as gone.
	if f[0] == "Z" {
		return "", fmt.Errorf("process %d is a zombie", pid)
	}
	return f[19], nil
}

// liveNetns maps the inode of every network namespace that a thread, an
// open file or a bind mount holds to one holder.
func liveNetns() map[uint64]string {
	live := map[uint64]string{}
	add := func(link, holder string) {
		var ino uint64
		if _, err := fmt.Sscanf(link, "net:[%d]", &ino); err == nil {
			live[ino] = holder
		}
	}
	tasks, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*/ns/net")
	for _, p := range tasks {
		if l, err := os.Readlink(p); err == nil {
			add(l, p)
		}
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, p := range fds {
		if l, err := os.Readlink(p); err == nil {
			add(l, p)
		}
	}
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// 626 25 0:4 net:[4026532] /run/netns/x rw - nsfs nsfs rw
			if fields := strings.Fields(sc.Text()); len(fields) > 4 {
				add(fields[3], "mount "+fields[4])
			}
		}
		f.Close()
	}
	return live
}

// runNetns lists /run/netns, where `ip netns add` keeps named namespaces.
func runNetns() string {
	entries, _ := os.ReadDir("/run/netns")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

func hostInterfaceNames(t *testing.T) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	return strings.Join(names, " ")
}

func TestAddressPlan(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		opts    Options
		subnet  string
		wantErr bool
	}{
		{"defaults", Options{}, "10.220.0.0/24", false},
		{"custom", Options{Subnet: netip.MustParsePrefix("10.230.1.9/24")}, "10.230.1.0/24", false},
		{"too-small", Options{Subnet: netip.MustParsePrefix("10.230.1.0/28")}, "", true},
		{"ipv6-subnet", Options{Subnet: netip.MustParsePrefix("fd00::/64")}, "", true},
		{"overlap", Options{Subnet: netip.MustParsePrefix("10.221.3.0/24")}, "", true},
		{"pod-not-16", Options{PodCIDR: netip.MustParsePrefix("10.0.0.0/8")}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			subnet, _, err := tc.opts.addressPlan()
			if (err != nil) != tc.wantErr {
				t.Fatalf("addressPlan() error %v; want error %v", err, tc.wantErr)
			}
			if err == nil && subnet.String() != tc.subnet {
				t.Errorf("subnet %s; want %s", subnet, tc.subnet)
			}
		})
	}
	for _, tc := range []struct{ base, want string }{
		{"10.220.0.0", "10.220.0.254"},
		{"10.220.0.255", "10.220.1.253"},
		{"fd00:220::", "fd00:220::fe"},
	} {
		if got := nthAddr(netip.MustParseAddr(tc.base), 254); got.String() != tc.want {
			t.Errorf("nthAddr(%s, 254) = %s; want %s", tc.base, got, tc.want)
		}
	}
	if got := lastHost(netip.MustParsePrefix("10.220.0.0/16")); got.String() != "10.220.255.254" {
		t.Errorf("lastHost(10.220.0.0/16) = %s", got)
	}
}
