// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"path/filepath"
	"slices"
)

// Workload is a meshed process group on this node: a cgroup joined to a
// virtual node of a mesh.
type Workload struct {
	// ID identifies the workload in the datapath and its telemetry. Zero:
	// the agent assigns one.
	ID uint32 `json:"id"`
	// CgroupPath is the workload's cgroup, relative to the cgroup root.
	CgroupPath string `json:"cgroupPath"`
	// CgroupID is the cgroup's id (the inode number of its directory on
	// cgroup v2, what bpf_get_current_cgroup_id returns).
	CgroupID      uint64   `json:"cgroupId"`
	Mesh          string   `json:"mesh"`
	VirtualNode   string   `json:"virtualNode"`
	ListenerPorts []uint32 `json:"listenerPorts,omitempty"`
	// Addresses are the workload's own IP addresses, when it has a network
	// of its own; empty means the node's address (xds.nodeAddress).
	Addresses []string `json:"addresses,omitempty"`
	// Attributes are its Cloud Map attributes, registered with it.
	Attributes map[string]string `json:"attributes,omitempty"`
}

// WorkloadSource discovers the workloads of this node. The agent polls it
// once a second and reconciles when the answer changes, so Workloads must be
// cheap: a source that watches something (the Kubernetes API, say) answers
// from its cache. A workload whose cgroup does not exist (yet) is left out,
// not reported as an error; an error means the whole answer is unknown, and
// the agent keeps the source's previous answer.
type WorkloadSource interface {
	Workloads(ctx context.Context) ([]Workload, error)
}

// VMSource is the workload source of VM installs: the configuration's list
// of cgroups (systemd services, typically), each joined to a virtual node.
type VMSource struct {
	root      string
	workloads []VMWorkload
}

// NewVMSource returns the source of the configured VM workloads, whose
// cgroup paths are relative to cgroupRoot.
func NewVMSource(cgroupRoot string, workloads []VMWorkload) *VMSource {
	return &VMSource{root: cgroupRoot, workloads: slices.Clone(workloads)}
}

// Workloads returns the configured workloads whose cgroup exists, with
// their cgroup ids; a systemd service that is stopped has no cgroup and is
// left out until it starts again (with a new cgroup id).
func (s *VMSource) Workloads(context.Context) ([]Workload, error) {
	out := make([]Workload, 0, len(s.workloads))
	for _, w := range s.workloads {
		p := path.Clean(w.CgroupPath)
		id, err := CgroupID(filepath.Join(s.root, filepath.FromSlash(p)))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("workload %s: %w", p, err)
		}
		out = append(out, Workload{
			CgroupPath:    p,
			CgroupID:      id,
			Mesh:          w.Mesh,
			VirtualNode:   w.VirtualNode,
			ListenerPorts: slices.Clone(w.ListenerPorts),
			Addresses:     slices.Clone(w.Addresses),
			Attributes:    maps.Clone(w.Attributes),
		})
	}
	return out, nil
}
