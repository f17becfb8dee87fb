// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/weft-mesh/weft/agent/datapath"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

var (
	testDNS   = netip.MustParseAddrPort("169.254.100.2:53")
	equateNet = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{}, netip.Prefix{})
)

func nodeState(t *testing.T, js string) *nodeapiv1.NodeState {
	t.Helper()
	ns := &nodeapiv1.NodeState{}
	if err := protojson.Unmarshal([]byte(js), ns); err != nil {
		t.Fatalf("node state: %v", err)
	}
	return ns
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func ip(s string) netip.Addr     { return netip.MustParseAddr(s) }
func pfx(s string) netip.Prefix  { return netip.MustParsePrefix(s) }

func TestTranslate(t *testing.T) {
	t.Parallel()
	const meshes = `"meshes": [{"name": "demo", "id": 1, "dropAll": true, "allowed": [{"cidr": "192.0.2.0/24", "port": 443}, {"cidr": "2001:db8::/32"}, {"cidr": "198.51.100.7"}]},
		{"name": "open", "id": 2}]`
	tests := []struct {
		name      string
		state     string
		workloads []Workload
		want      datapath.State
		records   map[string][]netip.Addr
		skipped   []skippedWorkload
	}{{
		name:  "empty",
		state: `{}`,
		want:  datapath.State{},
	}, {
		name: "l7 dual stack, every address times every port",
		state: `{"services": [{"name": "web.demo.local", "mesh": "demo", "addresses": ["10.96.0.10", "fd00::10"],
			"ports": [{"port": 80, "protocol": "PROTOCOL_TCP", "mode": "MODE_L7"}, {"port": 8443, "mode": "MODE_L7", "backends": [{"address": "10.1.0.1:1", "weight": 1}]}]}]}`,
		want: datapath.State{Services: []datapath.Service{
			{ID: 1, Addr: ip("10.96.0.10"), Port: 80, Proto: datapath.TCP, Mode: datapath.ModeL7},
			{ID: 3, Addr: ip("10.96.0.10"), Port: 8443, Proto: datapath.TCP, Mode: datapath.ModeL7},
			{ID: 2, Addr: ip("fd00::10"), Port: 80, Proto: datapath.TCP, Mode: datapath.ModeL7},
			{ID: 4, Addr: ip("fd00::10"), Port: 8443, Proto: datapath.TCP, Mode: datapath.ModeL7},
		}},
		records: map[string][]netip.Addr{"web.demo.local": {ip("10.96.0.10"), ip("fd00::10")}},
	}, {
		name: "l4 weights, families split, weight 0 drained, udp",
		state: `{"services": [{"name": "db", "addresses": ["10.96.0.20", "fd00::20"], "ports": [
			{"port": 5432, "mode": "MODE_L4", "backends": [
				{"address": "10.1.0.5:5432", "weight": 90, "virtualNode": "db-v1"},
				{"address": "10.1.0.6:5432", "weight": 10},
				{"address": "10.1.0.7:5432", "weight": 0},
				{"address": "[2001:db8::5]:5432", "weight": 3}]},
			{"port": 53, "protocol": "PROTOCOL_UDP", "mode": "MODE_L4", "backends": [{"address": "[::ffff:10.1.0.9]:53", "weight": 1}]}]}]}`,
		want: datapath.State{Services: []datapath.Service{
			{ID: 3, Addr: ip("10.96.0.20"), Port: 53, Proto: datapath.UDP, Mode: datapath.ModeL4, Backends: []datapath.Backend{{Addr: ap("10.1.0.9:53"), Weight: 1}}},
			{ID: 1, Addr: ip("10.96.0.20"), Port: 5432, Proto: datapath.TCP, Mode: datapath.ModeL4, Backends: []datapath.Backend{
				{Addr: ap("10.1.0.5:5432"), Weight: 90}, {Addr: ap("10.1.0.6:5432"), Weight: 10},
			}},
			{ID: 4, Addr: ip("fd00::20"), Port: 53, Proto: datapath.UDP, Mode: datapath.ModeL4},
			{ID: 2, Addr: ip("fd00::20"), Port: 5432, Proto: datapath.TCP, Mode: datapath.ModeL4, Backends: []datapath.Backend{
				{Addr: ap("[2001:db8::5]:5432"), Weight: 3},
			}},
		}},
		records: map[string][]netip.Addr{"db": {ip("10.96.0.20"), ip("fd00::20")}},
	}, {
		name:  "egress of drop-all meshes with the dns address; workloads take mesh id and filter",
		state: `{` + meshes + `}`,
		workloads: []Workload{
			{ID: 7, CgroupPath: "system.slice/web.service", CgroupID: 1001, Mesh: "demo", VirtualNode: "web"},
			{CgroupPath: "system.slice/tool.service", CgroupID: 1002, Mesh: "open", VirtualNode: "tool"},
			{CgroupPath: "system.slice/late.service", CgroupID: 1003, Mesh: "later", VirtualNode: "late"},
		},
		want: datapath.State{
			Workloads: []datapath.Workload{
				{CgroupID: 1001, ID: 7, MeshID: 1, DropAll: true},
				{CgroupID: 1002, ID: firstAutoWorkloadID, MeshID: 2},
			},
			Egress: []datapath.EgressRule{
				{MeshID: 1, Prefix: pfx("169.254.100.2/32"), Port: 53},
				{MeshID: 1, Prefix: pfx("192.0.2.0/24"), Port: 443},
				{MeshID: 1, Prefix: pfx("198.51.100.7/32")},
				{MeshID: 1, Prefix: pfx("2001:db8::/32")},
			},
		},
		skipped: []skippedWorkload{{CgroupPath: "system.slice/late.service", Reason: `mesh "later" is not in the node state`}},
	}, {
		name:  "an auto id steps around explicit ids",
		state: `{"meshes": [{"name": "m", "id": 1}]}`,
		workloads: []Workload{
			{ID: firstAutoWorkloadID, CgroupPath: "a", CgroupID: 1, Mesh: "m"},
			{CgroupPath: "b", CgroupID: 2, Mesh: "m"},
		},
		want: datapath.State{Workloads: []datapath.Workload{
			{CgroupID: 1, ID: firstAutoWorkloadID, MeshID: 1},
			{CgroupID: 2, ID: firstAutoWorkloadID + 1, MeshID: 1},
		}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := newTranslator().translate(nodeState(t, tt.state), tt.workloads, testDNS)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, d.State, equateNet, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
			if tt.records == nil {
				tt.records = map[string][]netip.Addr{}
			}
			if diff := cmp.Diff(tt.records, d.Records, equateNet); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.skipped, d.Skipped); diff != "" {
				t.Errorf("skipped (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTranslateErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		state     string
		workloads []Workload
		want      []string // each must appear in the error
	}{{
		name:  "bad service address",
		state: `{"services": [{"name": "web", "mesh": "demo", "addresses": ["10.0.0.300"], "ports": [{"port": 80, "mode": "MODE_L7"}]}]}`,
		want:  []string{`service "web" (mesh "demo"): address "10.0.0.300"`},
	}, {
		name:  "bad backend",
		state: `{"services": [{"name": "db", "addresses": ["10.0.0.1"], "ports": [{"port": 5432, "mode": "MODE_L4", "backends": [{"address": "10.1.0.5", "weight": 1}, {"address": "10.1.0.6:0", "weight": 1}]}]}]}`,
		want:  []string{`service "db": port 5432: backend "10.1.0.5": want ip:port`, `backend "10.1.0.6:0"`},
	}, {
		name:  "mode, port and protocol",
		state: `{"services": [{"name": "s", "addresses": ["10.0.0.1"], "ports": [{"port": 80}, {"port": 70000, "mode": "MODE_L4"}, {"port": 53, "protocol": "PROTOCOL_UDP", "mode": "MODE_L7"}]}]}`,
		want:  []string{`service "s": port 80: mode is required`, `service "s": port 70000: not a port`, `service "s": port 53: L7 needs TCP`},
	}, {
		name:  "no address, no name",
		state: `{"services": [{"name": "s"}, {"addresses": ["10.0.0.1"]}]}`,
		want:  []string{`service "s": has no address`, `services[1]: name is required`},
	}, {
		name: "two services on one address and port",
		state: `{"services": [{"name": "a", "addresses": ["10.0.0.1"], "ports": [{"port": 80, "mode": "MODE_L7"}]},
			{"name": "b", "addresses": ["::ffff:10.0.0.1"], "ports": [{"port": 80, "mode": "MODE_L7"}]}]}`,
		want: []string{`service "b": 10.0.0.1:80/tcp is also service "a"'s`},
	}, {
		name:  "meshes",
		state: `{"meshes": [{"name": "a", "id": 1}, {"name": "b", "id": 1}, {"name": "c"}, {"name": "a", "id": 4}, {"name": "d", "id": 5, "dropAll": true, "allowed": [{"cidr": "10.0.0.0/33"}, {"cidr": "10.0.0.0/8", "port": 65536}]}]}`,
		want:  []string{`mesh "b": id 1 is also mesh "a"'s`, `mesh "c": id 0 is reserved`, `mesh "a": listed twice`, `mesh "d": allowed[0]: cidr "10.0.0.0/33"`, `mesh "d": allowed[1]: port 65536`},
	}, {
		name:  "workloads",
		state: `{"meshes": [{"name": "m", "id": 1}]}`,
		workloads: []Workload{
			{ID: 3, CgroupPath: "a", CgroupID: 1, Mesh: "m"},
			{ID: 3, CgroupPath: "b", CgroupID: 2, Mesh: "m"},
			{CgroupPath: "c", CgroupID: 1, Mesh: "m"},
			{CgroupPath: "d", Mesh: "m", CgroupID: 4},
			{CgroupPath: "e", CgroupID: 5},
		},
		want: []string{`workload b: id 3 is also workload a's`, `workload c: is the same cgroup (id 1) as workload a`, `workload e: mesh is required`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := newTranslator()
			_, err := tr.translate(nodeState(t, tt.state), tt.workloads, testDNS)
			if err == nil {
				t.Fatal("translate succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not mention %q", err, w)
				}
			}
			if len(tr.serviceIDs) != 0 || len(tr.workloadIDs) != 0 {
				t.Error("a failed translation changed the id tables")
			}
		})
	}
}

// TestTranslateStableIDs checks that ids survive reconciles for as long as
// their address and port (or cgroup) exist, and are not reused at once.
func TestTranslateStableIDs(t *testing.T) {
	t.Parallel()
	tr := newTranslator()
	svc := func(names ...string) string {
		var b strings.Builder
		b.WriteString(`{"meshes": [{"name": "m", "id": 1}], "services": [`)
		for i, n := range names {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`{"name": "` + n + `", "addresses": ["10.0.0.` + n[1:] + `"], "ports": [{"port": 80, "mode": "MODE_L7"}]}`)
		}
		b.WriteString("]}")
		return b.String()
	}
	ids := func(d *desired) map[string]uint32 {
		out := map[string]uint32{}
		for _, s := range d.State.Services {
			out[d.serviceNames[s.ID].name] = s.ID
		}
		for _, w := range d.Workloads {
			out[w.CgroupPath] = w.ID
		}
		return out
	}
	step := func(state string, wls []Workload) map[string]uint32 {
		t.Helper()
		d, err := tr.translate(nodeState(t, state), wls, testDNS)
		if err != nil {
			t.Fatal(err)
		}
		return ids(d)
	}
	vm := func(paths ...string) []Workload {
		var out []Workload
		for i, p := range paths {
			out = append(out, Workload{CgroupPath: p, CgroupID: uint64(100 + i), Mesh: "m", VirtualNode: p})
		}
		return out
	}
	got := step(svc("s1", "s2"), vm("x", "y"))
	want := map[string]uint32{"s1": 1, "s2": 2, "x": firstAutoWorkloadID, "y": firstAutoWorkloadID + 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("first ids (-want +got):\n%s", diff)
	}
	got = step(svc("s3", "s2"), vm("y", "z"))
	want = map[string]uint32{"s2": 2, "s3": 3, "y": firstAutoWorkloadID + 1, "z": firstAutoWorkloadID + 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("ids after a change (-want +got):\n%s", diff)
	}
	// A failed translation leaves the tables alone.
	if _, err := tr.translate(nodeState(t, `{"services": [{"name": "bad"}]}`), nil, testDNS); err == nil {
		t.Fatal("want an error")
	}
	got = step(svc("s3", "s2"), vm("y", "z"))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("ids after a failed translation (-want +got):\n%s", diff)
	}
}

func TestAssignIDsWraps(t *testing.T) {
	t.Parallel()
	old := map[string]uint32{"a": 1}
	ids, next := assignIDs(old, ^uint32(0), 1, map[uint32]string{2: "x"}, 3, func(i int) string { return []string{"a", "b", "c"}[i] })
	want := map[string]uint32{"a": 1, "b": ^uint32(0), "c": 3}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	if next != 4 {
		t.Errorf("next = %d, want 4", next)
	}
}
