// SPDX-License-Identifier: Apache-2.0

package translate

import (
	"slices"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// allowedCallers returns the node ids that may call virtual node vn of m
// (App Mesh's rule: a virtual node calls only the virtual services it
// lists as backends): the virtual nodes with a backend that vn serves, and
// the virtual gateways with a gateway route to one, sorted. vn serves a
// virtual service when it provides it or a route of its router targets vn.
//
// The answer for every virtual node of the mesh is computed at the first
// call, in one pass over the services, nodes and gateways (per workload it
// was a pass over all of them, quadratic in the mesh's size).
func (w *World) allowedCallers(m *mesh, vn string) []string {
	m.callersOnce.Do(func() { m.callers = w.meshCallers(m) })
	return m.callers[vn]
}

// meshCallers computes allowedCallers for every virtual node of m.
func (w *World) meshCallers(m *mesh) map[string][]string {
	// The virtual nodes serving each virtual service.
	servers := map[string][]string{}
	for name := range m.services {
		ports, prob := w.servicePorts(m, name)
		if prob != nil {
			continue
		}
		seen := map[string]bool{}
		add := func(node string) {
			if !seen[node] {
				seen[node] = true
				servers[name] = append(servers[name], node)
			}
		}
		for _, sp := range ports {
			if sp.node != "" {
				add(sp.node)
			}
			for _, r := range sp.routes {
				for _, t := range r.targets {
					if t.weight > 0 {
						add(t.node)
					}
				}
			}
		}
	}
	// The callers of each virtual service.
	callersOf := map[string][]string{}
	for name, spec := range m.nodes {
		id := appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: m.name, Name: name}.ResourcePath()
		for _, b := range backends(spec) {
			if len(servers[b.service]) > 0 && !slices.Contains(callersOf[b.service], id) {
				callersOf[b.service] = append(callersOf[b.service], id)
			}
		}
	}
	for name, gw := range m.gateways {
		id := appmesh.Ref{Kind: appmesh.KindVirtualGateway, Mesh: m.name, Name: name}.ResourcePath()
		for _, r := range gw.routes {
			if t := gatewayRouteService(r.spec); t != "" && len(servers[t]) > 0 && !slices.Contains(callersOf[t], id) {
				callersOf[t] = append(callersOf[t], id)
			}
		}
	}
	out := map[string][]string{}
	for svc, nodes := range servers {
		for _, node := range nodes {
			out[node] = append(out[node], callersOf[svc]...)
		}
	}
	for node, ids := range out {
		slices.Sort(ids)
		ids = slices.Compact(ids)
		if len(ids) == 0 {
			delete(out, node)
			continue
		}
		out[node] = slices.Clip(ids)
	}
	return out
}

// gatewayRouteService is the virtual service a gateway route targets.
func gatewayRouteService(s *appmesh.GatewayRouteSpec) string {
	var t *appmesh.GatewayRouteTarget
	switch {
	case s.HTTPRoute != nil && s.HTTPRoute.Action != nil:
		t = s.HTTPRoute.Action.Target
	case s.HTTP2Route != nil && s.HTTP2Route.Action != nil:
		t = s.HTTP2Route.Action.Target
	case s.GRPCRoute != nil && s.GRPCRoute.Action != nil:
		t = s.GRPCRoute.Action.Target
	}
	if t == nil || t.VirtualService == nil {
		return ""
	}
	return t.VirtualService.VirtualServiceName
}
