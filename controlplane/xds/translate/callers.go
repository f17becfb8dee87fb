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
func (w *World) allowedCallers(m *mesh, vn string) []string {
	served := map[string]bool{}
	for name := range m.services {
		ports, prob := w.servicePorts(m, name)
		if prob != nil {
			continue
		}
	ports:
		for _, sp := range ports {
			if sp.node == vn {
				served[name] = true
				break
			}
			for _, r := range sp.routes {
				for _, t := range r.targets {
					if t.node == vn && t.weight > 0 {
						served[name] = true
						break ports
					}
				}
			}
		}
	}
	if len(served) == 0 {
		return nil
	}
	var out []string
	for name, spec := range m.nodes {
		for _, b := range backends(spec) {
			if served[b.service] {
				out = append(out, appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: m.name, Name: name}.ResourcePath())
				break
			}
		}
	}
	for name, gw := range m.gateways {
		for _, r := range gw.routes {
			if t := gatewayRouteService(r.spec); t != "" && served[t] {
				out = append(out, appmesh.Ref{Kind: appmesh.KindVirtualGateway, Mesh: m.name, Name: name}.ResourcePath())
				break
			}
		}
	}
	slices.Sort(out)
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
