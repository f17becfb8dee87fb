// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMergeWorkloads(t *testing.T) {
	t.Parallel()
	file := []Workload{
		{ID: 1, CgroupPath: "a", CgroupID: 10, Mesh: "m", VirtualNode: "a-file"},
		{ID: 2, CgroupPath: "b", CgroupID: 20, Mesh: "m", VirtualNode: "b-file", ListenerPorts: []uint32{80}},
	}
	config := []Workload{
		{CgroupPath: "b/", CgroupID: 20, Mesh: "m2", VirtualNode: "b-config"},
		{CgroupPath: "c", CgroupID: 30, Mesh: "m", VirtualNode: "c-config"},
	}
	later := []Workload{
		{CgroupPath: "c", CgroupID: 30, Mesh: "m", VirtualNode: "c-later"},
		{CgroupPath: "d", CgroupID: 40, Mesh: "m", VirtualNode: "d-later"},
	}
	got := mergeWorkloads(file, [][]Workload{config, later})
	want := []Workload{
		{ID: 1, CgroupPath: "a", CgroupID: 10, Mesh: "m", VirtualNode: "a-file"},
		{ID: 2, CgroupPath: "b", CgroupID: 20, Mesh: "m2", VirtualNode: "b-config"},
		{CgroupPath: "c", CgroupID: 30, Mesh: "m", VirtualNode: "c-config"},
		{CgroupPath: "d", CgroupID: 40, Mesh: "m", VirtualNode: "d-later"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if !equalWorkloads(got, want) || equalWorkloads(got, want[:3]) {
		t.Error("equalWorkloads")
	}
}

func TestParseNodeState(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ body, want string }{
		"other node":    {`{"node": "node-b"}`, `node state is for node "node-b", this is "node-a"`},
		"unknown field": {`{"node": "node-a", "servces": []}`, `unknown field "servces"`},
		"not json":      {`services: []`, "decode node state"},
		"bad workloads": {
			`{"workloads": [{"id": 1, "cgroupPath": "/abs", "mesh": "m"}, {"cgroupPath": "x", "listenerPorts": [0]}, {"cgroupPath": "x/"}]}`,
			`workloads[0] (id 1): cgroupPath: "/abs" must be relative`,
		},
	} {
		_, err := parseNodeState([]byte(tc.body), "node-a", testDNS)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, tc.want)
		}
	}
	_, err := parseNodeState([]byte(`{"workloads": [{"cgroupPath": "x", "listenerPorts": [0]}, {"cgroupPath": "x/"}]}`), "node-a", testDNS)
	for _, want := range []string{"workload x: listener port 0 is not a port", "workload x: listed twice"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to mention %q", err, want)
		}
	}
	ns, err := parseNodeState([]byte(`{"version": "v9", "meshes": [{"name": "m", "id": 1}], "workloads": [{"cgroupPath": "x", "mesh": "m"}]}`), "node-a", testDNS)
	if err != nil || ns.GetVersion() != "v9" {
		t.Errorf("good state: %v, %v", ns, err)
	}
}

func TestVMSource(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "system.slice", "orders.service"), 0o700); err != nil {
		t.Fatal(err)
	}
	src := NewVMSource(root, []VMWorkload{
		{CgroupPath: "system.slice/orders.service/", Mesh: "demo", VirtualNode: "orders", ListenerPorts: []uint32{8080}},
		{CgroupPath: "system.slice/stopped.service", Mesh: "demo", VirtualNode: "stopped"},
	})
	got, err := src.Workloads(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	id, err := CgroupID(filepath.Join(root, "system.slice", "orders.service"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Workload{{CgroupPath: "system.slice/orders.service", CgroupID: id, Mesh: "demo", VirtualNode: "orders", ListenerPorts: []uint32{8080}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if err := os.WriteFile(filepath.Join(root, "system.slice", "stopped.service"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Workloads(context.Background()); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file for a cgroup: err = %v", err)
	}
}
