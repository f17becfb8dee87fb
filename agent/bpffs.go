// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"path/filepath"
	"strings"
)

// bpffsMount is where the host's bpffs lives.
const bpffsMount = "/sys/fs/bpf"

// underBPFFSMount reports whether pinPath lies under /sys/fs/bpf, the only
// place where the agent mounts a bpffs itself.
func underBPFFSMount(pinPath string) bool {
	rel, err := filepath.Rel(bpffsMount, filepath.Clean(pinPath))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
