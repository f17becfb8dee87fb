// SPDX-License-Identifier: Apache-2.0

package xds_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/weft-mesh/weft/controlplane/store/boltstore"
	"github.com/weft-mesh/weft/controlplane/xds"
	"github.com/weft-mesh/weft/controlplane/xds/translate"
	"github.com/weft-mesh/weft/controlplane/xds/vip"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// recordingCache remembers the node ids whose snapshot is set.
type recordingCache struct {
	cachev3.SnapshotCache
	mu  sync.Mutex
	ids map[string]bool
}

func newRecordingCache() *recordingCache {
	return &recordingCache{SnapshotCache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil), ids: map[string]bool{}}
}

func (c *recordingCache) SetSnapshot(ctx context.Context, node string, s cachev3.ResourceSnapshot) error {
	c.mu.Lock()
	c.ids[node] = true
	c.mu.Unlock()
	return c.SnapshotCache.SetSnapshot(ctx, node, s)
}

func (c *recordingCache) ClearSnapshot(node string) {
	c.mu.Lock()
	delete(c.ids, node)
	c.mu.Unlock()
	c.SnapshotCache.ClearSnapshot(node)
}

// fakeView is an immutable endpoint registry view.
type fakeView struct {
	eps       map[translate.NodeKey][]translate.Endpoint // present: managed
	workloads map[string][]translate.Workload
}

func (v *fakeView) Endpoints(k translate.NodeKey) ([]translate.Endpoint, bool) {
	eps, ok := v.eps[k]
	return eps, ok
}

func (v *fakeView) Workloads(node string) []translate.Workload { return v.workloads[node] }

func (v *fakeView) Nodes() []string { return slices.Sorted(maps.Keys(v.workloads)) }

// fakeDNS resolves the DNS nodes it is given from a table.
type fakeDNS struct {
	resolved map[translate.NodeKey][]translate.Endpoint
	nodes    map[translate.NodeKey]appmesh.Ref
}

func (d *fakeDNS) Endpoints(k translate.NodeKey) ([]translate.Endpoint, bool) {
	if _, ok := d.nodes[k]; !ok {
		return nil, false
	}
	eps, ok := d.resolved[k]
	return eps, ok
}

func (d *fakeDNS) Problems() []translate.Problem {
	var out []translate.Problem
	for k, ref := range d.nodes {
		if _, ok := d.resolved[k]; !ok {
			out = append(out, translate.Problem{Ref: ref, Message: "does not resolve"})
		}
	}
	return out
}

// mutableLister lists the resources it holds now.
type mutableLister struct {
	mu  sync.Mutex
	res []appmesh.Resource
	rev int64
}

func (l *mutableLister) All(context.Context) ([]appmesh.Resource, int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.res), l.rev, nil
}

type fixedAddresses map[vip.Key]vip.Addresses

func (a fixedAddresses) Sync(context.Context, []vip.Key) (map[vip.Key]vip.Addresses, error) {
	return a, nil
}

// TestRefreshEqualsRebuild drives two Syncers through the same random
// sequence of endpoint, workload, DNS and resource changes: one refreshes
// after endpoint changes (rebuilding after resource changes), the other
// rebuilds every time. After each step both caches must hold the same
// snapshots, versions and resources, and the same problems.
func TestRefreshEqualsRebuild(t *testing.T) {
	for _, set := range []string{"s1", "s3", "s4", "s5", "s6", "s7", "s8", "s9"} {
		t.Run(set, func(t *testing.T) {
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			runRandomSequence(t, sampleSet(t, set), rand.New(rand.NewPCG(seed, 1)), 150)
		})
	}
}

func runRandomSequence(t *testing.T, s *sample, rng *rand.Rand, steps int) {
	t.Helper()
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "weft.db"), boltstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()

	lister := &mutableLister{res: slices.Clone(s.res), rev: 1}
	var dropped []appmesh.Resource
	view := &fakeView{eps: maps.Clone(s.eps.eps), workloads: map[string][]translate.Workload{"node-0": s.workloads}}
	dns := &fakeDNS{resolved: map[translate.NodeKey][]translate.Endpoint{}}
	var mu sync.Mutex // guards view and dns between the test and the Syncers
	var keys []translate.NodeKey
	for _, r := range s.res {
		if r.Ref.Kind == appmesh.KindVirtualNode {
			keys = append(keys, translate.NodeKey{Mesh: r.Ref.Mesh, Name: r.Ref.Name})
		}
	}
	newSyncer := func(cache cachev3.SnapshotCache) *xds.Syncer {
		sy, err := xds.NewSyncer(xds.SyncerConfig{}, xds.SyncerDeps{
			Store: st, Resources: lister, Addresses: fixedAddresses(s.addrs), Cache: cache,
			Endpoints: func() xds.EndpointView {
				mu.Lock()
				defer mu.Unlock()
				return view
			},
			DNS: func(nodes []translate.DNSNode) xds.DNSView {
				mu.Lock()
				defer mu.Unlock()
				v := &fakeDNS{resolved: dns.resolved, nodes: map[translate.NodeKey]appmesh.Ref{}}
				for _, n := range nodes {
					v.nodes[n.Node] = n.Ref
				}
				return v
			},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sy
	}
	incCache, fullCache := newRecordingCache(), newRecordingCache()
	inc, full := newSyncer(incCache), newSyncer(fullCache)
	if _, err := inc.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}

	randAddr := func() netip.Addr {
		return netip.AddrFrom4([4]byte{10, 2, byte(rng.IntN(4)), byte(1 + rng.IntN(6))})
	}
	randPort := func(k translate.NodeKey) uint32 {
		for _, r := range lister.res {
			if vn, ok := r.Spec.(*appmesh.VirtualNodeSpec); ok && r.Ref.Mesh == k.Mesh && r.Ref.Name == k.Name && len(vn.Listeners) > 0 && rng.IntN(4) > 0 {
				return uint32(*vn.Listeners[rng.IntN(len(vn.Listeners))].PortMapping.Port)
			}
		}
		return 1234
	}
	// randAttrs returns Cloud Map attributes (S8's inventory takes
	// version=v1 only); endpoints share them read-only, so a change
	// assigns a new map.
	randAttrs := func() map[string]string {
		switch rng.IntN(3) {
		case 0:
			return map[string]string{"version": "v1"}
		case 1:
			return map[string]string{"version": "v2"}
		}
		return nil
	}
	// changeEndpoints returns a copy of eps with one random change.
	changeEndpoints := func(k translate.NodeKey, eps []translate.Endpoint) []translate.Endpoint {
		eps = slices.Clone(eps)
		switch op := rng.IntN(6); {
		case op == 0 || len(eps) == 0:
			eps = append(eps, translate.Endpoint{Address: randAddr(), Port: randPort(k), Node: "node-1", Healthy: rng.IntN(3) > 0, Attributes: randAttrs()})
		case op == 1:
			eps[rng.IntN(len(eps))].Address = randAddr()
		case op == 4:
			eps[rng.IntN(len(eps))].Attributes = randAttrs()
		case op == 5:
			// The node's proxy starts or stops serving a tunnel listener
			// (S6's TLS listeners are reached through it).
			i := rng.IntN(len(eps))
			if eps[i].Tunnel.IsValid() {
				eps[i].Tunnel = netip.AddrPort{}
			} else {
				eps[i].Tunnel = netip.MustParseAddrPort("10.0.0.9:15008")
			}
		case op == 2:
			i := rng.IntN(len(eps))
			eps[i].Healthy = !eps[i].Healthy
		default:
			i := rng.IntN(len(eps))
			eps = slices.Delete(eps, i, i+1)
		}
		return eps
	}

	for step := range steps {
		var what string
		resourcesChanged := false
		mu.Lock()
		k := keys[rng.IntN(len(keys))]
		switch op := rng.IntN(10); {
		case op < 4: // an endpoint of a managed node
			nv := &fakeView{eps: maps.Clone(view.eps), workloads: view.workloads}
			nv.eps[k] = changeEndpoints(k, view.eps[k])
			view, what = nv, fmt.Sprintf("endpoints of %v", k)
		case op == 4: // a node becomes managed or stops being managed
			nv := &fakeView{eps: maps.Clone(view.eps), workloads: view.workloads}
			if _, ok := nv.eps[k]; ok {
				delete(nv.eps, k)
			} else {
				nv.eps[k] = changeEndpoints(k, nil)
			}
			view, what = nv, fmt.Sprintf("management of %v", k)
		case op == 5: // workloads move between nodes
			nv := &fakeView{eps: view.eps, workloads: map[string][]translate.Workload{}}
			for _, wl := range s.workloads {
				if n := rng.IntN(4); n < 3 {
					node := fmt.Sprint("node-", n)
					nv.workloads[node] = append(nv.workloads[node], wl)
				}
			}
			view, what = nv, "workloads"
		case op == 6: // a DNS answer
			res := maps.Clone(dns.resolved)
			if _, ok := res[k]; ok && rng.IntN(3) == 0 {
				delete(res, k)
			} else {
				res[k] = changeEndpoints(k, res[k])
			}
			dns, what = &fakeDNS{resolved: res}, fmt.Sprintf("DNS answer of %v", k)
		case op == 7: // nothing
			what = "nothing"
		default: // a resource goes away or comes back
			lister.mu.Lock()
			if len(dropped) > 0 && (rng.IntN(2) == 0 || len(lister.res) < 3) {
				i := rng.IntN(len(dropped))
				lister.res = append(lister.res, dropped[i])
				what = "restore " + dropped[i].Ref.ResourcePath()
				dropped = slices.Delete(dropped, i, i+1)
			} else {
				i := rng.IntN(len(lister.res))
				dropped = append(dropped, lister.res[i])
				what = "drop " + lister.res[i].Ref.ResourcePath()
				lister.res = slices.Delete(lister.res, i, i+1)
			}
			lister.rev++
			lister.mu.Unlock()
			resourcesChanged = true
		}
		mu.Unlock()

		if resourcesChanged {
			_, err = inc.Rebuild(ctx)
		} else {
			err = inc.Refresh(ctx)
		}
		if err != nil {
			t.Fatalf("step %d (%s): %v", step, what, err)
		}
		if _, err := full.Rebuild(ctx); err != nil {
			t.Fatalf("step %d (%s): %v", step, what, err)
		}
		if diff := compareCaches(incCache, fullCache); diff != "" {
			t.Fatalf("step %d (%s): refreshed snapshots differ from a rebuild: %s", step, what, diff)
		}
		if diff := cmp.Diff(full.Problems(), inc.Problems()); diff != "" {
			t.Fatalf("step %d (%s): problems differ (-rebuild +refresh):\n%s", step, what, diff)
		}
	}
}

// compareCaches describes the first difference between two caches'
// snapshots, or returns "".
func compareCaches(got, want *recordingCache) string {
	got.mu.Lock()
	want.mu.Lock()
	ids := slices.Sorted(maps.Keys(want.ids))
	gotIDs := slices.Sorted(maps.Keys(got.ids))
	got.mu.Unlock()
	want.mu.Unlock()
	if !slices.Equal(ids, gotIDs) {
		return fmt.Sprintf("node ids %v, want %v", gotIDs, ids)
	}
	for _, id := range ids {
		g, err1 := got.GetSnapshot(id)
		w, err2 := want.GetSnapshot(id)
		if err1 != nil || err2 != nil {
			return fmt.Sprintf("%s: %v, %v", id, err1, err2)
		}
		for _, typ := range xds.TypeURLs() {
			if gv, wv := g.GetVersion(typ), w.GetVersion(typ); gv != wv {
				return fmt.Sprintf("%s %s: version %q, want %q", id, typ, gv, wv)
			}
			gr, wr := g.GetResources(typ), w.GetResources(typ)
			if !slices.Equal(slices.Sorted(maps.Keys(gr)), slices.Sorted(maps.Keys(wr))) {
				return fmt.Sprintf("%s %s: resources %v, want %v", id, typ, slices.Sorted(maps.Keys(gr)), slices.Sorted(maps.Keys(wr)))
			}
			for name, r := range wr {
				if !proto.Equal(gr[name], r) {
					return fmt.Sprintf("%s %s %s:\n%v\nwant\n%v", id, typ, name, gr[name], r)
				}
			}
		}
	}
	return ""
}
