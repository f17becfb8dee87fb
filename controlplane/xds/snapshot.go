// SPDX-License-Identifier: Apache-2.0

package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weft-mesh/weft/controlplane/xds/translate"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

// NodeStateType is the type URL of weft's node state resource on ADS.
const NodeStateType = resourcev3.APITypePrefix + "weft.nodeapi.v1.NodeState"

// Snapshot is the whole configuration of one ADS node id: go-control-plane's
// snapshot of the Envoy types plus weft's NodeState type, which
// cachev3.NewSnapshot refuses (its Resources array has a slot per Envoy type
// only). Snapshot implements cachev3.ResourceSnapshot, so
// SnapshotCache.SetSnapshot takes it and serves NodeStateType like any other
// type: the cache looks resources and versions up by type URL through that
// interface. Build it with NewSnapshot; it is immutable afterwards.
type Snapshot struct {
	*cachev3.Snapshot
	nodeStates       map[string]types.ResourceWithTTL
	nodeStateVersion string
	nodeStateHashes  map[string]string
	// eds and edsDigests are the load assignments in name order and the
	// digest of each, which withEndpoints reuses for those it keeps.
	eds        []*endpointv3.ClusterLoadAssignment
	edsDigests [][sha256.Size]byte
}

var _ cachev3.ResourceSnapshot = (*Snapshot)(nil)

// NewSnapshot builds the snapshot of a proxy's resources and/or a node
// state (either may be nil). The version of each type is a content hash of
// its resources, so an unchanged world gives identical versions and a
// change touches only the versions of the types it changes. It fails unless
// the snapshot is Consistent.
func NewSnapshot(p *translate.Proxy, state *nodeapiv1.NodeState) (*Snapshot, error) {
	s := &Snapshot{Snapshot: &cachev3.Snapshot{}, nodeStates: map[string]types.ResourceWithTTL{}}
	if p != nil {
		set := func(t types.ResponseType, items []types.Resource) error {
			digests, err := digestAll(items, nil, nil)
			if err != nil {
				return err
			}
			s.Resources[t] = cachev3.NewResources(version(digests), items)
			if t == types.Endpoint {
				s.eds, s.edsDigests = p.Endpoints, digests
			}
			return nil
		}
		if err := errors.Join(
			set(types.Listener, asResources(p.Listeners)),
			set(types.Route, asResources(p.Routes)),
			set(types.Cluster, asResources(p.Clusters)),
			set(types.Endpoint, asResources(p.Endpoints)),
		); err != nil {
			return nil, fmt.Errorf("snapshot of %s: %w", p.NodeID, err)
		}
	}
	if state != nil {
		if state.GetVersion() == "" {
			return nil, fmt.Errorf("snapshot of node state %s: no version", state.GetNode())
		}
		// The node state's version is already a content hash of the rest
		// of it (translate.World.NodeState).
		s.nodeStates[state.GetNode()] = types.ResourceWithTTL{Resource: state}
		s.nodeStateVersion = state.GetVersion()
	}
	if err := s.Consistent(); err != nil {
		return nil, err
	}
	return s, nil
}

// withEndpoints returns a snapshot of q, which is the proxy of s with only
// load assignments changed (translate.World.UpdateEndpoints): it shares
// every other type with s and hashes only the load assignments that
// changed. q has the same load assignment names as s, in the same order, so
// it is consistent because s is.
func (s *Snapshot) withEndpoints(q *translate.Proxy) (*Snapshot, error) {
	if len(s.eds) != len(q.Endpoints) {
		return nil, fmt.Errorf("snapshot of %s: %d load assignments, was %d", q.NodeID, len(q.Endpoints), len(s.eds))
	}
	for i, cla := range q.Endpoints {
		if cla.GetClusterName() != s.eds[i].GetClusterName() {
			return nil, fmt.Errorf("snapshot of %s: load assignment %s where %s was", q.NodeID, cla.GetClusterName(), s.eds[i].GetClusterName())
		}
	}
	items := asResources(q.Endpoints)
	digests, err := digestAll(items, s.eds, s.edsDigests)
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", q.NodeID, err)
	}
	n := &Snapshot{
		Snapshot:   &cachev3.Snapshot{Resources: s.Resources},
		nodeStates: s.nodeStates, nodeStateVersion: s.nodeStateVersion,
		eds: q.Endpoints, edsDigests: digests,
	}
	n.Resources[types.Endpoint] = cachev3.NewResources(version(digests), items)
	return n, nil
}

func asResources[T types.Resource](items []T) []types.Resource {
	out := make([]types.Resource, len(items))
	for i, it := range items {
		out[i] = it
	}
	return out
}

// digestAll returns the SHA-256 of each resource's deterministic
// marshalling; where items[i] is prev[i] (the same message), it takes
// prevDigests[i] instead.
func digestAll(items []types.Resource, prev []*endpointv3.ClusterLoadAssignment, prevDigests [][sha256.Size]byte) ([][sha256.Size]byte, error) {
	out := make([][sha256.Size]byte, len(items))
	for i, it := range items {
		if i < len(prev) && i < len(prevDigests) && types.Resource(prev[i]) == it {
			out[i] = prevDigests[i]
			continue
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(it)
		if err != nil {
			return nil, fmt.Errorf("marshal %s: %w", cachev3.GetResourceName(it), err)
		}
		out[i] = sha256.Sum256(b)
	}
	return out, nil
}

// version is a type's version: SHA-256 over its resources' digests (in
// the translator's order, by name), first 8 bytes, hex.
func version(digests [][sha256.Size]byte) string {
	h := sha256.New()
	for _, d := range digests {
		h.Write(d[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Consistent checks the Envoy part (every route configuration named by a
// listener, every load assignment by a cluster) and that node states are
// keyed by their node.
func (s *Snapshot) Consistent() error {
	if s == nil || s.Snapshot == nil {
		return errors.New("nil snapshot")
	}
	if err := s.Snapshot.Consistent(); err != nil {
		return fmt.Errorf("inconsistent snapshot: %w", err)
	}
	for name, r := range s.nodeStates {
		if st, ok := r.Resource.(*nodeapiv1.NodeState); !ok || st.GetNode() != name {
			return fmt.Errorf("inconsistent snapshot: node state %q is keyed by another name", name)
		}
	}
	return nil
}

// GetVersion implements cachev3.ResourceSnapshot.
func (s *Snapshot) GetVersion(typeURL string) string {
	if typeURL == NodeStateType {
		return s.nodeStateVersion
	}
	return s.Snapshot.GetVersion(typeURL)
}

// GetResourcesAndTTL implements cachev3.ResourceSnapshot.
func (s *Snapshot) GetResourcesAndTTL(typeURL string) map[string]types.ResourceWithTTL {
	if typeURL == NodeStateType {
		return s.nodeStates
	}
	return s.Snapshot.GetResourcesAndTTL(typeURL)
}

// GetResources implements cachev3.ResourceSnapshot.
func (s *Snapshot) GetResources(typeURL string) map[string]types.Resource {
	if typeURL == NodeStateType {
		out := make(map[string]types.Resource, len(s.nodeStates))
		for k, v := range s.nodeStates {
			out[k] = v.Resource
		}
		return out
	}
	return s.Snapshot.GetResources(typeURL)
}

// ConstructVersionMap implements cachev3.ResourceSnapshot (delta xDS).
func (s *Snapshot) ConstructVersionMap() error {
	if err := s.Snapshot.ConstructVersionMap(); err != nil {
		return err
	}
	if s.nodeStateHashes != nil {
		return nil
	}
	hashes := make(map[string]string, len(s.nodeStates))
	for name := range s.nodeStates {
		hashes[name] = s.nodeStateVersion // one node state per snapshot
	}
	s.nodeStateHashes = hashes
	return nil
}

// GetVersionMap implements cachev3.ResourceSnapshot.
func (s *Snapshot) GetVersionMap(typeURL string) map[string]string {
	if typeURL == NodeStateType {
		return s.nodeStateHashes
	}
	return s.Snapshot.GetVersionMap(typeURL)
}

// Versions returns the version of every type of the snapshot, by type URL.
func (s *Snapshot) Versions() map[string]string {
	out := map[string]string{NodeStateType: s.nodeStateVersion}
	for _, t := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		out[t] = s.Snapshot.GetVersion(t)
	}
	return out
}

// TypeURLs lists the type URLs a snapshot may hold, in ADS order.
func TypeURLs() []string {
	return []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType, NodeStateType}
}
