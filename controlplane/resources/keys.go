// SPDX-License-Identifier: Apache-2.0

package resources

import (
	"strings"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// Store layout. Every key is a path of segments joined by '/'; names never
// contain '/' (validation rejects it before a key is built).
//
//	m/<mesh>                             the mesh
//	r/<mesh>/<kind>/<name>               a mesh-scoped resource
//	r/<mesh>/<kind>/<parent>/<name>      a route or gateway route
//	x/<target key>\x00<source key>       source references target (blocks deleting target)
//	t/<clientToken>                      an idempotency record
const (
	meshPrefix  = "m/"
	resPrefix   = "r/"
	refPrefix   = "x/"
	tokenPrefix = "t/"
	refSep      = "\x00"
)

var kindCode = map[appmesh.Kind]string{
	appmesh.KindVirtualNode:    "vn",
	appmesh.KindVirtualService: "vs",
	appmesh.KindVirtualRouter:  "vr",
	appmesh.KindRoute:          "rt",
	appmesh.KindVirtualGateway: "vg",
	appmesh.KindGatewayRoute:   "gr",
}

// key is the store key of the resource ref names.
func key(r appmesh.Ref) string {
	if r.Kind == appmesh.KindMesh {
		return meshPrefix + r.Name
	}
	if r.Kind.HasParent() {
		return resPrefix + r.Mesh + "/" + kindCode[r.Kind] + "/" + r.Parent + "/" + r.Name
	}
	return resPrefix + r.Mesh + "/" + kindCode[r.Kind] + "/" + r.Name
}

// listPrefix is the prefix under which the resources of a list live.
func listPrefix(kind appmesh.Kind, mesh, parent string) string {
	switch {
	case kind == appmesh.KindMesh:
		return meshPrefix
	case kind.HasParent():
		return resPrefix + mesh + "/" + kindCode[kind] + "/" + parent + "/"
	}
	return resPrefix + mesh + "/" + kindCode[kind] + "/"
}

// childPrefix is the prefix of the children of a router or gateway, or "".
func childPrefix(r appmesh.Ref) string {
	switch r.Kind {
	case appmesh.KindVirtualRouter:
		return listPrefix(appmesh.KindRoute, r.Mesh, r.Name)
	case appmesh.KindVirtualGateway:
		return listPrefix(appmesh.KindGatewayRoute, r.Mesh, r.Name)
	case appmesh.KindMesh:
		return resPrefix + r.Name + "/"
	}
	return ""
}

func refKey(target, source appmesh.Ref) string {
	return refPrefix + key(target) + refSep + key(source)
}

func refTargetPrefix(target appmesh.Ref) string { return refPrefix + key(target) + refSep }

// refFromKey parses a resource key back into its ref.
func refFromKey(k string) (appmesh.Ref, bool) {
	if name, ok := strings.CutPrefix(k, meshPrefix); ok {
		return appmesh.Ref{Kind: appmesh.KindMesh, Mesh: name, Name: name}, true
	}
	rest, ok := strings.CutPrefix(k, resPrefix)
	if !ok {
		return appmesh.Ref{}, false
	}
	p := strings.Split(rest, "/")
	if len(p) < 3 {
		return appmesh.Ref{}, false
	}
	for kind, code := range kindCode {
		if p[1] != code {
			continue
		}
		if kind.HasParent() && len(p) == 4 {
			return appmesh.Ref{Kind: kind, Mesh: p[0], Parent: p[2], Name: p[3]}, true
		}
		if !kind.HasParent() && len(p) == 3 {
			return appmesh.Ref{Kind: kind, Mesh: p[0], Name: p[2]}, true
		}
	}
	return appmesh.Ref{}, false
}

// strongRefs lists the resources spec references that must exist and whose
// deletion it blocks (appmesh-model §2). Virtual node backends are not among
// them: they may dangle.
func strongRefs(self appmesh.Ref, spec any) []appmesh.Ref {
	in := func(kind appmesh.Kind, name string) appmesh.Ref {
		return appmesh.Ref{Kind: kind, Mesh: self.Mesh, Name: name}
	}
	var out []appmesh.Ref
	targets := func(ts []appmesh.WeightedTarget) {
		for _, t := range ts {
			if t.VirtualNode != "" {
				out = append(out, in(appmesh.KindVirtualNode, t.VirtualNode))
			}
		}
	}
	gwTarget := func(t *appmesh.GatewayRouteTarget) {
		if t != nil && t.VirtualService != nil && t.VirtualService.VirtualServiceName != "" {
			out = append(out, in(appmesh.KindVirtualService, t.VirtualService.VirtualServiceName))
		}
	}
	switch s := spec.(type) {
	case *appmesh.VirtualServiceSpec:
		if p := s.Provider; p != nil {
			if p.VirtualNode != nil && p.VirtualNode.VirtualNodeName != "" {
				out = append(out, in(appmesh.KindVirtualNode, p.VirtualNode.VirtualNodeName))
			}
			if p.VirtualRouter != nil && p.VirtualRouter.VirtualRouterName != "" {
				out = append(out, in(appmesh.KindVirtualRouter, p.VirtualRouter.VirtualRouterName))
			}
		}
	case *appmesh.RouteSpec:
		for _, h := range []*appmesh.HTTPRoute{s.HTTPRoute, s.HTTP2Route} {
			if h != nil && h.Action != nil {
				targets(h.Action.WeightedTargets)
			}
		}
		if s.GRPCRoute != nil && s.GRPCRoute.Action != nil {
			targets(s.GRPCRoute.Action.WeightedTargets)
		}
		if s.TCPRoute != nil && s.TCPRoute.Action != nil {
			targets(s.TCPRoute.Action.WeightedTargets)
		}
	case *appmesh.GatewayRouteSpec:
		for _, h := range []*appmesh.HTTPGatewayRoute{s.HTTPRoute, s.HTTP2Route} {
			if h != nil && h.Action != nil {
				gwTarget(h.Action.Target)
			}
		}
		if s.GRPCRoute != nil && s.GRPCRoute.Action != nil {
			gwTarget(s.GRPCRoute.Action.Target)
		}
	}
	// One key per target, however often it is named.
	seen := make(map[appmesh.Ref]bool, len(out))
	uniq := out[:0]
	for _, r := range out {
		if !seen[r] {
			seen[r] = true
			uniq = append(uniq, r)
		}
	}
	return uniq
}
