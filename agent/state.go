// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"path"
	"path/filepath"
	"slices"

	"google.golang.org/protobuf/encoding/protojson"

	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

// parseNodeState decodes a state file (protojson NodeState; unknown fields
// are refused) and checks it for this node, so that a bad file is refused as
// a whole and the last good state kept.
func parseNodeState(b []byte, node string, dns netip.AddrPort) (*nodeapiv1.NodeState, error) {
	ns := &nodeapiv1.NodeState{}
	if err := protojson.Unmarshal(b, ns); err != nil {
		return nil, fmt.Errorf("decode node state: %w", err)
	}
	if err := checkNodeState(ns, node, dns); err != nil {
		return nil, err
	}
	return ns, nil
}

// checkNodeState reports every problem of ns that would stop its
// translation, and a state computed for another node.
func checkNodeState(ns *nodeapiv1.NodeState, node string, dns netip.AddrPort) error {
	var errs []error
	if ns.GetNode() != "" && ns.GetNode() != node {
		errs = append(errs, fmt.Errorf("node state is for node %q, this is %q", ns.GetNode(), node))
	}
	wls, err := fileWorkloads(ns)
	if err != nil {
		errs = append(errs, err)
	}
	// Cgroup ids come from the host; any distinct ones do for the check.
	for i := range wls {
		wls[i].CgroupID = uint64(i) + 1
	}
	if _, err := newTranslator().translate(ns, wls, dns); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// fileWorkloads returns the node state's workloads without cgroup ids,
// dropping those whose cgroup path is unusable (and reporting them).
func fileWorkloads(ns *nodeapiv1.NodeState) ([]Workload, error) {
	var errs []error
	seen := map[string]bool{}
	out := make([]Workload, 0, len(ns.GetWorkloads()))
	for i, w := range ns.GetWorkloads() {
		if err := checkCgroupPath(w.GetCgroupPath()); err != nil {
			errs = append(errs, fmt.Errorf("workloads[%d] (id %d): cgroupPath: %w", i, w.GetId(), err))
			continue
		}
		p := path.Clean(w.GetCgroupPath())
		if seen[p] {
			errs = append(errs, fmt.Errorf("workload %s: listed twice", p))
			continue
		}
		seen[p] = true
		var ports []uint32
		for _, port := range w.GetListenerPorts() {
			if port == 0 || port > 65535 {
				errs = append(errs, fmt.Errorf("workload %s: listener port %d is not a port", p, port))
			}
			ports = append(ports, port)
		}
		out = append(out, Workload{
			ID:            w.GetId(),
			CgroupPath:    p,
			Mesh:          w.GetMesh(),
			VirtualNode:   w.GetVirtualNode(),
			ListenerPorts: ports,
		})
	}
	return out, errors.Join(errs...)
}

// resolveCgroups fills the cgroup ids of workloads from the directories
// under root. Workloads whose cgroup does not exist are returned apart.
func resolveCgroups(root string, wls []Workload) (found []Workload, missing []string, err error) {
	for _, w := range wls {
		id, err := CgroupID(filepath.Join(root, filepath.FromSlash(w.CgroupPath)))
		if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, w.CgroupPath)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("workload %s: %w", w.CgroupPath, err)
		}
		w.CgroupID = id
		found = append(found, w)
	}
	return found, missing, nil
}

// mergeWorkloads joins the state file's workloads with the discovered ones
// by cgroup path. Discovered workloads win: where both name a cgroup, the
// workload takes the discovered mesh, virtual node, listener ports and
// cgroup id, and keeps the state file's id (the controller's name for it,
// which its telemetry and identities use). Among the discovered ones the
// first source wins. The result is sorted by cgroup path.
func mergeWorkloads(file []Workload, discovered [][]Workload) []Workload {
	byPath := map[string]Workload{}
	for _, w := range file {
		byPath[w.CgroupPath] = w
	}
	claimed := map[string]bool{}
	for _, src := range discovered {
		for _, w := range src {
			p := path.Clean(w.CgroupPath)
			if claimed[p] {
				continue
			}
			claimed[p] = true
			w.CgroupPath = p
			if f, ok := byPath[p]; ok && w.ID == 0 {
				w.ID = f.ID
			}
			byPath[p] = w
		}
	}
	out := make([]Workload, 0, len(byPath))
	for _, w := range byPath {
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b Workload) int { return cmp.Compare(a.CgroupPath, b.CgroupPath) })
	return out
}

// equalWorkloads reports whether two sorted workload lists are the same.
func equalWorkloads(a, b []Workload) bool {
	return slices.EqualFunc(a, b, func(x, y Workload) bool {
		return x.ID == y.ID && x.CgroupPath == y.CgroupPath && x.CgroupID == y.CgroupID &&
			x.Mesh == y.Mesh && x.VirtualNode == y.VirtualNode && slices.Equal(x.ListenerPorts, y.ListenerPorts) &&
			slices.Equal(x.Addresses, y.Addresses) && maps.Equal(x.Attributes, y.Attributes)
	})
}
