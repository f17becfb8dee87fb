// SPDX-License-Identifier: Apache-2.0

package xdsclient

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

// NodeStateType is the type URL of weft's node state on ADS (the same as
// controlplane/xds.NodeStateType).
const NodeStateType = resourcev3.APITypePrefix + "weft.nodeapi.v1.NodeState"

// ProxyTypeURLs are the Envoy types a proxy subscribes to, in ADS order.
func ProxyTypeURLs() []string {
	return []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}
}

// ProxyResources is the Envoy configuration of one virtual node or gateway,
// each list sorted by name.
type ProxyResources struct {
	// Versions are the versions of the four types, by type URL.
	Versions  map[string]string
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	// FromCache is true for the configuration of the cache file.
	FromCache bool
}

// Subscribe returns a Client for the Envoy configuration of one virtual
// node or gateway (cfg.NodeID, its ARN path) that calls apply with the
// whole, typed configuration at each change; cfg.TypeURLs is set to
// ProxyTypeURLs, and cfg.Consistent, when nil, to a check that every
// reference resolves (ProxyResources.Dangling), so that the types of one
// change are applied together. The node proxy runs one per virtual node it hosts:
//
//	c, err := xdsclient.Subscribe(conn, xdsclient.Config{NodeID: id, CacheFile: f},
//		func(_ context.Context, r xdsclient.ProxyResources) error {
//			return p.Update(id, proxy.Resources{Listeners: r.Listeners, Routes: r.Routes,
//				Clusters: r.Clusters, Endpoints: r.Endpoints})
//		}, log)
func Subscribe(conn grpc.ClientConnInterface, cfg Config, apply func(context.Context, ProxyResources) error, log *slog.Logger) (*Client, error) {
	cfg.TypeURLs = ProxyTypeURLs()
	d := &lastDecode{}
	if cfg.Consistent == nil {
		cfg.Consistent = func(c map[string]Resources) error {
			r, err := d.decode(c)
			if err != nil {
				return nil // the apply function refuses it with the decoding error
			}
			return r.Dangling()
		}
	}
	return New(conn, cfg, func(ctx context.Context, u Update) error {
		r, err := d.decode(u.Config)
		if err != nil {
			return err
		}
		r.FromCache = u.FromCache
		return apply(ctx, r)
	}, log)
}

// lastDecode keeps the last configuration Subscribe decoded, so that the
// consistency check and the apply function, which see the same candidate
// one after the other, decode it once. Both run on the Client's Run
// goroutine.
type lastDecode struct {
	versions map[string]string
	r        ProxyResources
	err      error
}

func (d *lastDecode) decode(cfg map[string]Resources) (ProxyResources, error) {
	versions := make(map[string]string, len(cfg))
	for t, res := range cfg {
		versions[t] = res.Version
	}
	if d.versions == nil || !maps.Equal(versions, d.versions) {
		d.r, d.err = DecodeProxy(Update{Config: cfg})
		d.versions = versions
	}
	return d.r, d.err
}

// DecodeProxy unpacks an update of the four Envoy types.
func DecodeProxy(u Update) (ProxyResources, error) {
	r := ProxyResources{Versions: map[string]string{}, FromCache: u.FromCache}
	var err error
	for t, res := range u.Config {
		r.Versions[t] = res.Version
	}
	if r.Listeners, err = decodeAll[*listenerv3.Listener](u, resourcev3.ListenerType); err != nil {
		return r, err
	}
	if r.Routes, err = decodeAll[*routev3.RouteConfiguration](u, resourcev3.RouteType); err != nil {
		return r, err
	}
	if r.Clusters, err = decodeAll[*clusterv3.Cluster](u, resourcev3.ClusterType); err != nil {
		return r, err
	}
	if r.Endpoints, err = decodeAll[*endpointv3.ClusterLoadAssignment](u, resourcev3.EndpointType); err != nil {
		return r, err
	}
	return r, nil
}

func decodeAll[T proto.Message](u Update, typeURL string) ([]T, error) {
	items := u.Config[typeURL].Items
	out := make([]T, 0, len(items))
	for i, a := range items {
		m, err := unpack[T](a, typeURL)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", typeURL, i, err)
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b T) int { return cmp.Compare(resourceName(a), resourceName(b)) })
	return out, nil
}

func unpack[T proto.Message](a *anypb.Any, typeURL string) (T, error) {
	var zero T
	if a.GetTypeUrl() != typeURL {
		return zero, fmt.Errorf("resource of type %s", a.GetTypeUrl())
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return zero, fmt.Errorf("decode: %w", err)
	}
	t, ok := m.(T)
	if !ok {
		return zero, fmt.Errorf("decoded a %T", m)
	}
	return t, nil
}

func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName()
	case interface{ GetName() string }:
		return r.GetName()
	}
	return ""
}

// SubscribeNodeState returns a Client for the agent's node state (node id
// cfg.NodeID, the node name) that calls apply with it at each change;
// cfg.TypeURLs is set to NodeStateType.
func SubscribeNodeState(conn grpc.ClientConnInterface, cfg Config, apply func(ctx context.Context, st *nodeapiv1.NodeState, fromCache bool) error, log *slog.Logger) (*Client, error) {
	cfg.TypeURLs = []string{NodeStateType}
	node := cfg.NodeID
	return New(conn, cfg, func(ctx context.Context, u Update) error {
		st, err := DecodeNodeState(u, node)
		if err != nil {
			return err
		}
		return apply(ctx, st, u.FromCache)
	}, log)
}

// DecodeNodeState returns the node state of node from an update.
func DecodeNodeState(u Update, node string) (*nodeapiv1.NodeState, error) {
	items := u.Config[NodeStateType].Items
	for i, a := range items {
		st, err := unpack[*nodeapiv1.NodeState](a, NodeStateType)
		if err != nil {
			return nil, fmt.Errorf("node state [%d]: %w", i, err)
		}
		if st.GetNode() == node {
			return st, nil
		}
	}
	return nil, fmt.Errorf("no node state for node %q among %d resources", node, len(items))
}
