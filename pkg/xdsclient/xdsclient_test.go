// SPDX-License-Identifier: Apache-2.0

package xdsclient

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestCacheRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.json")
	if cfg, err := readCache(path, "node-a"); cfg != nil || err != nil {
		t.Fatalf("missing file: %v %v", cfg, err)
	}
	want := map[string]Resources{NodeStateType: {Version: "v1", Items: []*anypb.Any{mustAny(t, &nodeapiv1.NodeState{Node: "node-a", Version: "x"})}}}
	for range 2 { // the second write replaces the first
		if err := writeCache(path, "node-a", want); err != nil {
			t.Fatal(err)
		}
	}
	got, err := readCache(path, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	if got[NodeStateType].Version != "v1" || !proto.Equal(got[NodeStateType].Items[0], want[NodeStateType].Items[0]) {
		t.Errorf("read back %v", got)
	}
	if _, err := readCache(path, "node-b"); err == nil || !strings.Contains(err.Error(), "node-a") {
		t.Errorf("another node's cache: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode: %v %v", fi, err)
	}
}

func TestDecode(t *testing.T) {
	u := Update{Config: map[string]Resources{NodeStateType: {Version: "v", Items: []*anypb.Any{
		mustAny(t, &nodeapiv1.NodeState{Node: "node-b"}), mustAny(t, &nodeapiv1.NodeState{Node: "node-a"}),
	}}}}
	st, err := DecodeNodeState(u, "node-a")
	if err != nil || st.GetNode() != "node-a" {
		t.Fatalf("DecodeNodeState: %v %v", st, err)
	}
	if _, err := DecodeNodeState(u, "node-c"); err == nil {
		t.Error("a missing node state decoded")
	}
	p := Update{Config: map[string]Resources{
		resourcev3.ClusterType:  {Version: "c", Items: []*anypb.Any{mustAny(t, &clusterv3.Cluster{Name: "b"}), mustAny(t, &clusterv3.Cluster{Name: "a"})}},
		resourcev3.EndpointType: {}, resourcev3.ListenerType: {}, resourcev3.RouteType: {},
	}}
	r, err := DecodeProxy(p)
	if err != nil || len(r.Clusters) != 2 || r.Clusters[0].GetName() != "a" || r.Versions[resourcev3.ClusterType] != "c" {
		t.Fatalf("DecodeProxy: %+v %v", r, err)
	}
	p.Config[resourcev3.ListenerType] = Resources{Items: []*anypb.Any{mustAny(t, &clusterv3.Cluster{Name: "x"})}}
	if _, err := DecodeProxy(p); err == nil {
		t.Error("a cluster among listeners decoded")
	}
}
