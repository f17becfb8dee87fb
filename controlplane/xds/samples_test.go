// SPDX-License-Identifier: Apache-2.0

package xds_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/weft-mesh/weft/controlplane/store/boltstore"
	"github.com/weft-mesh/weft/controlplane/xds"
	"github.com/weft-mesh/weft/controlplane/xds/translate"
	"github.com/weft-mesh/weft/controlplane/xds/vip"
	"github.com/weft-mesh/weft/pkg/appmesh"
	"github.com/weft-mesh/weft/pkg/manifest"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// testNode is the physical node every managed virtual node has a workload
// on in the NodeState tests.
const testNode = "node-a"

// clientNode is a virtual node the tests add to every set: it has every
// virtual service of its mesh as a backend, so that the egress side of
// samples without a caller (S2, S3, S4, S8) is rendered too.
const clientNode = "test-client"

// sampleSets are the sample sets of appmesh-model.md §16 with the files each
// needs (pkg/manifest/testdata/samples).
var sampleSets = []struct {
	name  string
	paths []string
}{
	{"s1", k8s("s0", "s1")},
	{"s2", k8s("s0", "s1", "s2")},
	{"s3", k8s("s0", "s3")},
	{"s4", k8s("s0", "s4")},
	{"s5", k8s("s0", "s1", "s2", "s5")},
	{"s6", k8s("s0", "s6")},
	{"s7", k8s("s7")},
	{"s8", k8s("s0", "s8")},
	{"s9", []string{samplePath("api", "s9.yaml"), samplePath("api", "s9-deps.json")}},
}

func samplePath(form, file string) string {
	return filepath.Join("..", "..", "pkg", "manifest", "testdata", "samples", form, file)
}

func k8s(files ...string) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = samplePath("k8s", f+".yaml")
	}
	return out
}

// fakeEndpoints is the fixed endpoint set of the tests: every virtual node
// that selects pods (Kubernetes form) or comes from the API form is managed
// and has two healthy endpoints and one unhealthy one per listener port, at
// 10.1.<n>.{1,2,3} where n is the node's index in name order. A node without
// a podSelector (S7's httpbin-ext) is not managed. The endpoints of a Cloud
// Map node (S8's inventory) carry its attributes, and a fourth one,
// 10.1.<n>.4, carries others: no output may name it.
type fakeEndpoints struct {
	eps map[translate.NodeKey][]translate.Endpoint
}

func (f fakeEndpoints) Endpoints(n translate.NodeKey) ([]translate.Endpoint, bool) {
	eps, ok := f.eps[n]
	return eps, ok
}

type sample struct {
	res       []appmesh.Resource
	eps       fakeEndpoints
	addrs     map[vip.Key]vip.Addresses
	workloads []translate.Workload
}

func loadSample(t *testing.T, paths []string) *sample {
	t.Helper()
	docs, err := manifest.Load(paths, nil, manifest.Options{})
	if err != nil {
		t.Fatalf("load %v: %v", paths, err)
	}
	s := &sample{eps: fakeEndpoints{eps: map[translate.NodeKey][]translate.Endpoint{}}}
	var nodes []appmesh.Resource
	services := map[string][]string{}
	for _, d := range docs {
		r := d.Resource
		appmesh.Default(r.Ref.Kind, r.Spec)
		s.res = append(s.res, r)
		switch r.Ref.Kind {
		case appmesh.KindVirtualNode:
			if d.K8s == nil || d.K8s.PodSelector != nil {
				nodes = append(nodes, r)
			}
		case appmesh.KindVirtualService:
			services[r.Ref.Mesh] = append(services[r.Ref.Mesh], r.Ref.Name)
		}
	}
	for _, mesh := range slices.Sorted(maps.Keys(services)) {
		spec := &appmesh.VirtualNodeSpec{}
		for _, name := range services[mesh] {
			spec.Backends = append(spec.Backends, appmesh.Backend{VirtualService: &appmesh.VirtualServiceBackend{VirtualServiceName: name}})
		}
		client := appmesh.Resource{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: mesh, Name: clientNode}, Spec: spec}
		s.res = append(s.res, client)
		nodes = append(nodes, client)
	}
	slices.SortFunc(nodes, func(a, b appmesh.Resource) int { return strings.Compare(a.Ref.ResourcePath(), b.Ref.ResourcePath()) })
	for i, n := range nodes {
		key := translate.NodeKey{Mesh: n.Ref.Mesh, Name: n.Ref.Name}
		s.eps.eps[key] = []translate.Endpoint{}
		spec := n.Spec.(*appmesh.VirtualNodeSpec)
		var attrs map[string]string // a Cloud Map node's attributes
		if sd := spec.ServiceDiscovery; sd != nil && sd.AWSCloudMap != nil {
			attrs = map[string]string{}
			for _, a := range sd.AWSCloudMap.Attributes {
				attrs[a.Key] = a.Value
			}
		}
		for _, l := range spec.Listeners {
			port := uint32(*l.PortMapping.Port)
			for host := 1; host <= 3; host++ {
				ep := translate.Endpoint{
					Address: netip.AddrFrom4([4]byte{10, 1, byte(i), byte(host)}),
					Port:    port, Node: fmt.Sprintf("node-%d", host), Healthy: host != 3, Attributes: attrs,
				}
				if host != 3 {
					// Nodes 1 and 2 serve a tunnel listener, node 3 none.
					ep.Tunnel = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(host)}), 15008)
				}
				s.eps.eps[key] = append(s.eps.eps[key], ep)
			}
			if len(attrs) > 0 {
				// An instance of the same service without the attributes
				// (another version): the node never takes it.
				s.eps.eps[key] = append(s.eps.eps[key], translate.Endpoint{
					Address: netip.AddrFrom4([4]byte{10, 1, byte(i), 4}),
					Port:    port, Node: "node-4", Healthy: true, Attributes: map[string]string{"version": "other"},
				})
			}
		}
		s.workloads = append(s.workloads, translate.Workload{
			ID: uint32(i + 1), CgroupPath: "kubepods/" + n.Ref.Name, Mesh: n.Ref.Mesh, VirtualNode: n.Ref.Name,
			Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, byte(i), 1})},
		})
	}
	s.addrs = allocate(t, s.res)
	return s
}

// allocate gives the virtual services addresses with the real allocator
// (IPv4 default range and an IPv6 range) on a throw-away store.
func allocate(t *testing.T, res []appmesh.Resource) map[vip.Key]vip.Addresses {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "weft.db"), boltstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	a, err := vip.New(st, vip.Config{IPv6: netip.MustParsePrefix("fd00:10:96::/64")})
	if err != nil {
		t.Fatal(err)
	}
	var keys []vip.Key
	for _, r := range res {
		if r.Ref.Kind == appmesh.KindVirtualService {
			keys = append(keys, vip.Key{Mesh: r.Ref.Mesh, Service: r.Ref.Name})
		}
	}
	addrs, err := a.Sync(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

func (s *sample) input() translate.Input {
	return translate.Input{Resources: s.res, Addresses: s.addrs, Endpoints: s.eps}
}

// render is a proxy's resources, or a node state, as stable indented JSON.
func render(t *testing.T, v any) []byte {
	t.Helper()
	js := func(m proto.Message) json.RawMessage {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	list := func(n int, at func(int) proto.Message) []json.RawMessage {
		out := make([]json.RawMessage, n)
		for i := range out {
			out[i] = js(at(i))
		}
		return out
	}
	var doc any
	switch x := v.(type) {
	case *translate.Proxy:
		doc = struct {
			NodeID    string            `json:"nodeId"`
			Listeners []json.RawMessage `json:"listeners"`
			Routes    []json.RawMessage `json:"routes"`
			Clusters  []json.RawMessage `json:"clusters"`
			Endpoints []json.RawMessage `json:"endpoints"`
		}{
			x.NodeID,
			list(len(x.Listeners), func(i int) proto.Message { return x.Listeners[i] }),
			list(len(x.Routes), func(i int) proto.Message { return x.Routes[i] }),
			list(len(x.Clusters), func(i int) proto.Message { return x.Clusters[i] }),
			list(len(x.Endpoints), func(i int) proto.Message { return x.Endpoints[i] }),
		}
	case *nodeapiv1.NodeState:
		doc = js(x)
	}
	// protojson varies its whitespace on purpose; encoding/json re-indents.
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

// proxyFileName is the golden name part of a node id.
func proxyFileName(nodeID string) string {
	ref, err := appmesh.ParseResourcePath(nodeID)
	if err != nil {
		return strings.ReplaceAll(nodeID, "/", "_")
	}
	if ref.Kind == appmesh.KindVirtualGateway {
		return "gw." + ref.Name
	}
	return ref.Name
}

// TestSamplesGolden translates every sample set and compares each proxy's
// resources, and the node state of a node running every managed virtual
// node, with testdata/<set>.<node>.golden.json (-update rewrites them). It
// also checks that every resource passes ValidateAll, that every snapshot is
// Consistent, and that the translation reports no problem.
func TestSamplesGolden(t *testing.T) {
	for _, set := range sampleSets {
		t.Run(set.name, func(t *testing.T) {
			s := loadSample(t, set.paths)
			res := translate.Translate(s.input())
			for _, p := range res.Problems {
				t.Errorf("problem: %s: %s", p.Ref, p.Message)
			}
			for _, p := range res.Proxies {
				checkValid(t, p)
				if _, err := xds.NewSnapshot(p, nil); err != nil {
					t.Errorf("%s: %v", p.NodeID, err)
				}
				checkGolden(t, set.name+"."+proxyFileName(p.NodeID), render(t, p))
			}
			st, probs := translate.Compile(s.input()).NodeState(testNode, s.workloads)
			for _, p := range probs {
				t.Errorf("node state problem: %s: %s", p.Ref, p.Message)
			}
			if _, err := xds.NewSnapshot(nil, st); err != nil {
				t.Error(err)
			}
			checkGolden(t, set.name+".nodestate", render(t, st))
		})
	}
}

type validator interface{ ValidateAll() error }

func checkValid(t *testing.T, p *translate.Proxy) {
	t.Helper()
	var all []validator
	for _, r := range p.Listeners {
		all = append(all, r)
	}
	for _, r := range p.Routes {
		all = append(all, r)
	}
	for _, r := range p.Clusters {
		all = append(all, r)
	}
	for _, r := range p.Endpoints {
		all = append(all, r)
	}
	for _, r := range all {
		if err := r.ValidateAll(); err != nil {
			t.Errorf("%s: %v", p.NodeID, err)
		}
	}
}
