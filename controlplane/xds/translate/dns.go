// SPDX-License-Identifier: Apache-2.0

package translate

import (
	"cmp"
	"slices"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// DNSNode is a virtual node whose service discovery is DNS, with what the
// controller needs to resolve it into endpoints (package dnsdisco).
type DNSNode struct {
	Node NodeKey
	// Ref is the virtual node's reference, for problems.
	Ref      appmesh.Ref
	Hostname string
	// ResponseType is LOADBALANCER (also when the spec leaves it out) or
	// ENDPOINTS.
	ResponseType appmesh.DNSResponseType
	// IPPreference is the node's own, else the mesh's (§4.7); "" is none.
	IPPreference appmesh.IPPreference
	// Ports are the node's listener ports, sorted.
	Ports []uint32
}

// DNSNodes returns every virtual node of the world whose service discovery
// is DNS, sorted by mesh and name. Nodes whose spec is invalid are not in
// the world, so not here either.
func (w *World) DNSNodes() []DNSNode {
	var out []DNSNode
	for _, m := range w.meshes {
		for name, vn := range m.nodes {
			if vn.ServiceDiscovery == nil || vn.ServiceDiscovery.DNS == nil || vn.ServiceDiscovery.DNS.Hostname == "" {
				continue
			}
			d := vn.ServiceDiscovery.DNS
			n := DNSNode{
				Node:         NodeKey{Mesh: m.name, Name: name},
				Ref:          appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: m.name, Name: name},
				Hostname:     d.Hostname,
				ResponseType: d.ResponseType,
				IPPreference: m.nodeIPPreference(vn),
			}
			if n.ResponseType == "" {
				n.ResponseType = appmesh.DNSLoadBalancer
			}
			for _, pm := range portMappings(vn.Listeners, func(l *appmesh.Listener) *appmesh.PortMapping { return l.PortMapping }) {
				n.Ports = append(n.Ports, uint32(*pm.Port))
			}
			slices.Sort(n.Ports)
			n.Ports = slices.Compact(n.Ports)
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b DNSNode) int {
		return cmp.Or(cmp.Compare(a.Node.Mesh, b.Node.Mesh), cmp.Compare(a.Node.Name, b.Node.Name))
	})
	return out
}

// WithEndpoints returns a copy of the world that takes its endpoints from
// src. Compile does not read the endpoint source, so a caller may compile
// first, look at the world (DNSNodes) and then decide where endpoints come
// from. w is not modified.
func (w *World) WithEndpoints(src EndpointSource) *World {
	c := *w
	c.in.Endpoints = src
	return &c
}
