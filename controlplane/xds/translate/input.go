// SPDX-License-Identifier: Apache-2.0

package translate

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/weft-mesh/weft/controlplane/xds/vip"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// NodeKey names a virtual node.
type NodeKey struct {
	Mesh string
	Name string
}

// Endpoint is one address and port serving a listener of a virtual node.
type Endpoint struct {
	Address netip.Addr
	// Port is the port the workload serves the listener on; the translator
	// uses, for the listener on port P, the endpoints whose Port is P.
	Port uint32
	// Node is the id of the (physical) node the workload runs on.
	Node string
	// Tunnel is the tunnel listener of Node's proxy (invalid: none). A
	// caller reaches an endpoint whose listener terminates TLS through it
	// (the translator puts it in the endpoint's metadata).
	Tunnel netip.AddrPort
	// Healthy is false for an endpoint the registry knows to be down. The
	// proxy is told (HealthStatus UNHEALTHY); the L4 datapath leaves it out.
	Healthy bool
	// Attributes are the workload's Cloud Map attributes: a node whose
	// serviceDiscovery.awsCloudMap lists attributes takes only the
	// endpoints that carry every one of them. Read only.
	Attributes map[string]string
}

// Equal reports whether e and o are the same endpoint with the same health
// and attributes.
func (e Endpoint) Equal(o Endpoint) bool {
	return e.Address == o.Address && e.Port == o.Port && e.Node == o.Node && e.Tunnel == o.Tunnel && e.Healthy == o.Healthy &&
		maps.Equal(e.Attributes, o.Attributes)
}

// EndpointSource gives the endpoints of virtual nodes. The workload registry
// implements it.
type EndpointSource interface {
	// Endpoints returns the endpoints of a virtual node. managed is false
	// when the registry does not track the node's workloads (a node that
	// models an external host, such as S7's httpbin-ext): the proxy then
	// resolves the node through its service discovery (DNS), and the node
	// can never be an L4 target.
	Endpoints(node NodeKey) (eps []Endpoint, managed bool)
}

// Workload is a meshed workload running on a node, as the agent reports it.
type Workload struct {
	// ID is unique among the workloads of the node and stable.
	ID uint32
	// CgroupPath is relative to the agent's cgroup root.
	CgroupPath  string
	Mesh        string
	VirtualNode string
	// Addresses are the IPs the workload serves on (the node state
	// carries them to the node's proxy, for its tunnel listener).
	Addresses []netip.Addr
}

// Equal reports whether w and o are the same workload with the same
// addresses.
func (w Workload) Equal(o Workload) bool {
	return w.ID == o.ID && w.CgroupPath == o.CgroupPath && w.Mesh == o.Mesh && w.VirtualNode == o.VirtualNode &&
		slices.Equal(w.Addresses, o.Addresses)
}

// Input is everything a translation depends on.
type Input struct {
	// Resources are all resources of one or more meshes, specs as pointers
	// to the kinds' spec structs. Defaults (appmesh.Default) need not have
	// been applied.
	Resources []appmesh.Resource
	// Addresses are the service addresses (package vip).
	Addresses map[vip.Key]vip.Addresses
	// Endpoints gives node endpoints; nil means no node is managed.
	Endpoints EndpointSource
}

// Problem is a resource the translation had to leave out, entirely or in
// part, and why. The controller puts Message in the resource's status.
type Problem struct {
	Ref     appmesh.Ref
	Message string
}

// Proxy is the Envoy configuration of one virtual node or virtual gateway:
// the node id its proxies present (mesh/<mesh>/virtualNode/<name> or
// mesh/<mesh>/virtualGateway/<name>) and its resources, each list sorted by
// name. Every resource passes ValidateAll, every route configuration is
// named by a listener, and every load assignment by an EDS cluster.
type Proxy struct {
	NodeID    string
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment

	// deps and eds let World.UpdateEndpoints tell whether the proxy is
	// current and remake only its changed load assignments; edsDropped
	// is set when finish left out an invalid load assignment.
	deps       deps
	eds        []edsAssignment
	edsDropped bool
}

// Result is the translation of every virtual node and gateway of the input.
type Result struct {
	Proxies  []*Proxy // sorted by NodeID
	Problems []Problem
}

// Translate translates every virtual node and virtual gateway of in.
func Translate(in Input) Result {
	w := Compile(in)
	probs := problemSet{}
	probs.add(w.Problems()...)
	var res Result
	for _, id := range w.ProxyIDs() {
		p, ps := w.Proxy(id)
		probs.add(ps...)
		if p != nil {
			res.Proxies = append(res.Proxies, p)
		}
	}
	res.Problems = probs.list()
	return res
}

// problemSet deduplicates problems.
type problemSet map[Problem]struct{}

func (s problemSet) add(ps ...Problem) {
	for _, p := range ps {
		s[p] = struct{}{}
	}
}

func (s problemSet) list() []Problem {
	out := make([]Problem, 0, len(s))
	for p := range s {
		out = append(out, p)
	}
	sortProblems(out)
	return out
}

func sortProblems(ps []Problem) {
	slices.SortFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Ref.ResourcePath(), b.Ref.ResourcePath()), cmp.Compare(a.Message, b.Message))
	})
}
