// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"fmt"
	"os"
	"syscall"
)

// CgroupID returns the id of the cgroup v2 directory dir: its inode number,
// which is what bpf_get_current_cgroup_id returns for processes in it. An
// absent directory gives an error wrapping fs.ErrNotExist.
func CgroupID(dir string) (uint64, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return 0, err
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("cgroup %s: not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("cgroup %s: no inode number", dir)
	}
	return st.Ino, nil
}
