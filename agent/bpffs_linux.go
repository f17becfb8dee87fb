// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"fmt"
	"log/slog"

	"golang.org/x/sys/unix"
)

// MountBPFFS makes sure a bpffs is mounted at /sys/fs/bpf when pinPath lies
// under it, mounting one if nothing is mounted there (as on hosts whose init
// system does not). A pin path elsewhere is left alone: whoever chose it
// (a test, a container mount) provides the file system. In a container the
// mount must come from the host (a hostPath volume of /sys/fs/bpf with
// bidirectional propagation), or the pins die with the container.
func MountBPFFS(pinPath string, log *slog.Logger) error {
	if !underBPFFSMount(pinPath) {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(bpffsMount, &st); err != nil {
		return fmt.Errorf("check bpffs at %s: %w", bpffsMount, err)
	}
	// The field's type varies by architecture; the magic numbers are 32
	// bits wide.
	if uint32(st.Type) == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := unix.Mount("bpf", bpffsMount, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", bpffsMount, err)
	}
	log.Info("mounted bpffs", keyPath, bpffsMount)
	return nil
}
