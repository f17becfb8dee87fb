// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Where the kernel's filesystems are usually mounted.
const (
	bpffsPath   = "/sys/fs/bpf"
	cgroup2Path = "/sys/fs/cgroup"
)

// The capabilities a privileged test needs: loading programs (CAP_BPF),
// links, addresses and qdiscs (CAP_NET_ADMIN), namespaces and mounts
// (CAP_SYS_ADMIN).
var requiredCaps = []struct {
	bit  uint
	name string
}{
	{unix.CAP_BPF, "CAP_BPF"},
	{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"},
	{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"},
}

// privilegeProblem returns why this process cannot run privileged tests, or
// "" when it can.
func privilegeProblem() string {
	if euid := os.Geteuid(); euid != 0 {
		return fmt.Sprintf("privileged test needs root (effective uid %d)", euid)
	}
	missing, err := missingCaps()
	if err != nil {
		return fmt.Sprintf("privileged test: read capabilities: %v", err)
	}
	if len(missing) > 0 {
		return "privileged test needs " + strings.Join(missing, ", ")
	}
	if err := bpffsUsable(); err != nil {
		return "privileged test needs bpffs: " + err.Error()
	}
	if _, err := Cgroup2Path(); err != nil {
		return "privileged test needs cgroup v2: " + err.Error()
	}
	return ""
}

func missingCaps() ([]string, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil, fmt.Errorf("capget: %w", err)
	}
	var missing []string
	for _, c := range requiredCaps {
		if data[c.bit/32].Effective&(1<<(c.bit%32)) == 0 {
			missing = append(missing, c.name)
		}
	}
	return missing, nil
}

// bpffsUsable reports nil when /sys/fs/bpf is a bpffs mount or the kernel
// can mount one (MountBPFFS).
func bpffsUsable() error {
	if isFS(bpffsPath, unix.BPF_FS_MAGIC) {
		return nil
	}
	fss, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return fmt.Errorf("%s is not bpffs and /proc/filesystems is unreadable: %w", bpffsPath, err)
	}
	for _, line := range strings.Split(string(fss), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == "bpf" {
			return nil
		}
	}
	return fmt.Errorf("%s is not bpffs and the kernel lists no bpf filesystem", bpffsPath)
}

// isFS reports whether path is on a filesystem with the given statfs magic.
func isFS(path string, magic uint32) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	// Statfs_t.Type is int64, int32 or uint32 depending on the architecture;
	// the magic numbers are 32 bits wide.
	return uint32(st.Type) == magic
}

// Cgroup2Path returns where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup
// on a unified host, otherwise the first cgroup2 mount in
// /proc/self/mountinfo (/sys/fs/cgroup/unified on a hybrid host).
func Cgroup2Path() (string, error) {
	if isFS(cgroup2Path, unix.CGROUP2_SUPER_MAGIC) {
		return cgroup2Path, nil
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(info))
	for sc.Scan() {
		// 41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, fstype := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(fstype) == 0 || fstype[0] != "cgroup2" {
			continue
		}
		if mnt := fields[4]; isFS(mnt, unix.CGROUP2_SUPER_MAGIC) {
			return mnt, nil
		}
	}
	return "", errors.New("no cgroup2 filesystem is mounted")
}

// MountBPFFS mounts a fresh, private bpffs instance in a temporary directory
// and returns its path; pins made there are invisible to the host's
// /sys/fs/bpf. The test's Cleanup unmounts it. Call RequirePrivileged first.
func MountBPFFS(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		tb.Fatalf("mount bpffs on %s: %v", dir, err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			tb.Errorf("unmount bpffs %s: %v", dir, err)
		}
	})
	return dir
}

// TempCgroup creates an empty cgroup v2 directory under the cgroup2 mount
// and returns its path. The test's Cleanup removes it, which fails if a
// process is still in it: tests stop the processes they start. Call
// RequirePrivileged first.
func TempCgroup(tb testing.TB) string {
	tb.Helper()
	root, err := Cgroup2Path()
	if err != nil {
		tb.Fatalf("create cgroup: %v", err)
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	dir := filepath.Join(root, "weft-test-"+hex.EncodeToString(suffix[:]))
	if err := os.Mkdir(dir, 0o750); err != nil {
		tb.Fatalf("create cgroup: %v", err)
	}
	tb.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			tb.Errorf("remove cgroup: %v", err)
		}
	})
	return dir
}

// RunningKernel returns the version of the running kernel, from uname(2).
func RunningKernel() (KernelVersion, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return KernelVersion{}, fmt.Errorf("uname: %w", err)
	}
	return ParseKernelVersion(unix.ByteSliceToString(uts.Release[:]))
}
