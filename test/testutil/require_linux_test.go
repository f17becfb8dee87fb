// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRunningKernel(t *testing.T) {
	t.Parallel()
	v, err := RunningKernel()
	if err != nil {
		t.Fatal(err)
	}
	if v.Major < 3 {
		t.Errorf("RunningKernel() = %v", v)
	}
}

func TestMountBPFFS(t *testing.T) {
	RequirePrivileged(t)
	dir := MountBPFFS(t)
	if !isFS(dir, unix.BPF_FS_MAGIC) {
		t.Fatalf("%s is not a bpffs mount", dir)
	}
	// The instance is private: a directory made in it is not in the host's.
	name := filepath.Base(t.TempDir())
	if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(bpffsPath, name)); !os.IsNotExist(err) {
		t.Errorf("stat %s in the host bpffs: %v; want not exist", name, err)
	}
}

func TestTempCgroup(t *testing.T) {
	RequirePrivileged(t)
	dir := TempCgroup(t)
	if !isFS(dir, unix.CGROUP2_SUPER_MAGIC) {
		t.Fatalf("%s is not on cgroup2", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		t.Errorf("new cgroup has no cgroup.procs: %v", err)
	}
}
