// SPDX-License-Identifier: Apache-2.0

package appmesh

import (
	"errors"
	"testing"
)

// refFixture is the mesh the reference tests look into.
const refFixture = `
apiVersion: weft-mesh.io/v1
kind: VirtualNode
metadata: {name: a, mesh: demo}
spec:
  listeners: [{portMapping: {port: 8080, protocol: http}}]
  serviceDiscovery: {dns: {hostname: a.local}}
---
apiVersion: weft-mesh.io/v1
kind: VirtualNode
metadata: {name: multi, mesh: demo}
spec:
  listeners: [{portMapping: {port: 8080, protocol: http}}, {portMapping: {port: 9090, protocol: http2}}]
  serviceDiscovery: {dns: {hostname: multi.local}}
---
apiVersion: weft-mesh.io/v1
kind: VirtualNode
metadata: {name: db, mesh: demo}
spec:
  listeners: [{portMapping: {port: 5432, protocol: tcp}}]
  serviceDiscovery: {dns: {hostname: db.local}}
---
apiVersion: weft-mesh.io/v1
kind: VirtualNode
metadata: {name: client, mesh: demo}
spec: {}
---
apiVersion: weft-mesh.io/v1
kind: VirtualRouter
metadata: {name: r1, mesh: demo}
spec:
  listeners: [{portMapping: {port: 8080, protocol: http}}]
---
apiVersion: weft-mesh.io/v1
kind: VirtualRouter
metadata: {name: r2, mesh: demo}
spec:
  listeners: [{portMapping: {port: 8080, protocol: http}}, {portMapping: {port: 9090, protocol: http2}}]
---
apiVersion: weft-mesh.io/v1
kind: VirtualRouter
metadata: {name: rtcp, mesh: demo}
spec:
  listeners: [{portMapping: {port: 15432, protocol: tcp}}, {portMapping: {port: 15433, protocol: tcp}}]
---
apiVersion: weft-mesh.io/v1
kind: VirtualService
metadata: {name: s1.local, mesh: demo}
spec: {provider: {virtualRouter: {virtualRouterName: r1}}}
---
apiVersion: weft-mesh.io/v1
kind: VirtualService
metadata: {name: s2.local, mesh: demo}
spec: {provider: {virtualRouter: {virtualRouterName: r2}}}
---
apiVersion: weft-mesh.io/v1
kind: VirtualService
metadata: {name: node.local, mesh: demo}
spec: {provider: {virtualNode: {virtualNodeName: multi}}}
---
apiVersion: weft-mesh.io/v1
kind: VirtualService
metadata: {name: none.local, mesh: demo}
spec: {}
---
apiVersion: weft-mesh.io/v1
kind: VirtualGateway
metadata: {name: gw1, mesh: demo}
spec:
  listeners: [{portMapping: {port: 8088, protocol: http}}]
---
apiVersion: weft-mesh.io/v1
kind: VirtualGateway
metadata: {name: gw2, mesh: demo}
spec:
  listeners: [{portMapping: {port: 8088, protocol: http}}, {portMapping: {port: 9088, protocol: grpc}}]
`

func refFixtureLookup(t *testing.T) Lookup {
	t.Helper()
	docs, err := decodeDocuments([]byte(refFixture))
	if err != nil {
		t.Fatal(err)
	}
	m := memLookup{}
	for _, d := range docs {
		if err := checkDocument(d, m.forMesh("demo")); err != nil {
			t.Fatalf("fixture %s: %v", d.Ref, err)
		}
		m.put(d.Ref, d.Spec)
	}
	return m.forMesh("demo")
}

func TestValidateReferences(t *testing.T) {
	l := refFixtureLookup(t)
	route := func(parent string) Ref { return Ref{Kind: KindRoute, Mesh: "demo", Parent: parent, Name: "x"} }
	gatewayRoute := func(parent string) Ref { return Ref{Kind: KindGatewayRoute, Mesh: "demo", Parent: parent, Name: "x"} }
	service := Ref{Kind: KindVirtualService, Mesh: "demo", Name: "x.local"}
	cases := []struct {
		name     string
		ref      Ref
		spec     string
		notFound string // the whole NotFound message
		want     string // the whole ValidationError
	}{
		// Existence.
		{name: "route ok", ref: route("r1"), spec: targetsSpec("{virtualNode: a, weight: 1}")},
		{
			name: "route parent missing", ref: route("nope"), spec: targetsSpec("{virtualNode: a, weight: 1}"),
			notFound: `virtualRouterName: virtual router "nope" not found in mesh "demo"`,
		},
		{
			name: "route target missing", ref: route("r1"), spec: targetsSpec("{virtualNode: a, weight: 90}, {virtualNode: blue, weight: 10}"),
			notFound: `spec.httpRoute.action.weightedTargets[1].virtualNode: virtual node "blue" not found in mesh "demo"`,
		},
		{name: "service node provider", ref: service, spec: "provider: {virtualNode: {virtualNodeName: a}}"},
		{name: "service router provider", ref: service, spec: "provider: {virtualRouter: {virtualRouterName: r1}}"},
		{name: "service no provider", ref: service, spec: "{}"},
		{
			name: "service node provider missing", ref: service, spec: "provider: {virtualNode: {virtualNodeName: green}}",
			notFound: `spec.provider.virtualNode.virtualNodeName: virtual node "green" not found in mesh "demo"`,
		},
		{
			name: "service router provider missing", ref: service, spec: "provider: {virtualRouter: {virtualRouterName: color}}",
			notFound: `spec.provider.virtualRouter.virtualRouterName: virtual router "color" not found in mesh "demo"`,
		},
		{name: "node backends may dangle", ref: Ref{Kind: KindVirtualNode, Mesh: "demo", Name: "n"}, spec: "backends: [{virtualService: {virtualServiceName: later.local}}]"},
		{name: "gateway route ok", ref: gatewayRoute("gw1"), spec: "httpRoute: {match: {prefix: /}, action: {target: {virtualService: {virtualServiceName: s1.local}}}}"},
		{
			name: "gateway route parent missing", ref: gatewayRoute("gw9"), spec: httpGatewayRoute("prefix: /", ""),
			notFound: `virtualGatewayName: virtual gateway "gw9" not found in mesh "demo"`,
		},
		{
			name: "gateway route target missing", ref: gatewayRoute("gw1"), spec: httpGatewayRoute("prefix: /", ""),
			notFound: `spec.httpRoute.action.target.virtualService.virtualServiceName: virtual service "color.local" not found in mesh "demo"`,
		},

		// Route match port and route type against the router.
		{
			name: "match port required", ref: route("r2"), spec: httpRouteSpec("httpRoute", "prefix: /", ""),
			want: `spec.httpRoute.match.port: is required when virtual router "r2" has several listeners`,
		},
		{name: "match port given", ref: route("r2"), spec: "http2Route: {match: {prefix: /, port: 9090}, action: {weightedTargets: [{virtualNode: multi, weight: 1, port: 9090}]}}"},
		{
			name: "match port unknown", ref: route("r2"), spec: httpRouteSpec("httpRoute", "prefix: /, port: 7000", ""),
			want: `spec.httpRoute.match.port: must be one of the listener ports of virtual router "r2" (8080, 9090)`,
		},
		{name: "match port on single listener", ref: route("r1"), spec: httpRouteSpec("httpRoute", "prefix: /, port: 8080", "")},
		{
			name: "match port unknown on single listener", ref: route("r1"), spec: httpRouteSpec("httpRoute", "prefix: /, port: 9090", ""),
			want: `spec.httpRoute.match.port: must be one of the listener ports of virtual router "r1" (8080)`,
		},
		{
			name: "route type mismatch", ref: route("r1"), spec: "grpcRoute: {match: {}, action: {weightedTargets: [{virtualNode: a, weight: 1}]}}",
			want: `spec.grpcRoute: must match the protocol of virtual router "r1" listener 8080 (http); ` +
				`spec.grpcRoute.action.weightedTargets[0]: must name a listener with protocol grpc (virtual node "a" listener 8080 is http)`,
		},
		{
			name: "route type mismatch on chosen port", ref: route("r2"), spec: httpRouteSpec("httpRoute", "prefix: /, port: 9090", ""),
			want: `spec.httpRoute: must match the protocol of virtual router "r2" listener 9090 (http2)`,
		},
		{
			name: "tcp match port required", ref: route("rtcp"), spec: "tcpRoute: {action: {weightedTargets: [{virtualNode: db, weight: 1}]}}",
			want: `spec.tcpRoute.match.port: is required when virtual router "rtcp" has several listeners`,
		},
		{name: "tcp match port given", ref: route("rtcp"), spec: "tcpRoute: {match: {port: 15433}, action: {weightedTargets: [{virtualNode: db, weight: 1}]}}"},

		// Weighted targets against the target nodes.
		{
			name: "target port required", ref: route("r1"), spec: targetsSpec("{virtualNode: multi, weight: 1}"),
			want: `spec.httpRoute.action.weightedTargets[0].port: is required when virtual node "multi" has several listeners`,
		},
		{name: "target port given", ref: route("r1"), spec: targetsSpec("{virtualNode: multi, weight: 1, port: 8080}")},
		{
			name: "target port unknown", ref: route("r1"), spec: targetsSpec("{virtualNode: a, weight: 1, port: 9090}"),
			want: `spec.httpRoute.action.weightedTargets[0].port: must be one of the listener ports of virtual node "a" (8080)`,
		},
		{
			name: "target protocol mismatch", ref: route("r1"), spec: targetsSpec("{virtualNode: a, weight: 50}, {virtualNode: db, weight: 50}"),
			want: `spec.httpRoute.action.weightedTargets[1]: must name a listener with protocol http (virtual node "db" listener 5432 is tcp)`,
		},
		{
			name: "target protocol mismatch on chosen port", ref: route("r1"), spec: targetsSpec("{virtualNode: multi, weight: 1, port: 9090}"),
			want: `spec.httpRoute.action.weightedTargets[0]: must name a listener with protocol http (virtual node "multi" listener 9090 is http2)`,
		},
		{
			name: "target without listeners", ref: route("r1"), spec: targetsSpec("{virtualNode: client, weight: 1}"),
			want: `spec.httpRoute.action.weightedTargets[0].virtualNode: must name a virtual node with listeners ("client" has none)`,
		},
		{
			name: "every broken rule", ref: route("r2"), spec: targetsSpec("{virtualNode: multi, weight: 1}, {virtualNode: db, weight: 1}"),
			want: `spec.httpRoute.match.port: is required when virtual router "r2" has several listeners; ` +
				`spec.httpRoute.action.weightedTargets[0].port: is required when virtual node "multi" has several listeners; ` +
				`spec.httpRoute.action.weightedTargets[1]: must name a listener with protocol http (virtual node "db" listener 5432 is tcp)`,
		},

		// Gateway routes against the gateway and the target's provider.
		{
			name: "not found wins over broken rules", ref: gatewayRoute("gw2"), spec: httpGatewayRoute("prefix: /", ""),
			notFound: `spec.httpRoute.action.target.virtualService.virtualServiceName: virtual service "color.local" not found in mesh "demo"`,
		},
		{
			name: "gateway match port required with target", ref: gatewayRoute("gw2"), spec: "httpRoute: {match: {prefix: /}, action: {target: {virtualService: {virtualServiceName: s1.local}}}}",
			want: `spec.httpRoute.match.port: is required when virtual gateway "gw2" has several listeners`,
		},
		{name: "gateway match port given", ref: gatewayRoute("gw2"), spec: "grpcRoute: {match: {serviceName: a, port: 9088}, action: {target: {virtualService: {virtualServiceName: s1.local}}}}"},
		{
			name: "gateway match port unknown", ref: gatewayRoute("gw1"), spec: "httpRoute: {match: {prefix: /, port: 80}, action: {target: {virtualService: {virtualServiceName: s1.local}}}}",
			want: `spec.httpRoute.match.port: must be one of the listener ports of virtual gateway "gw1" (8088)`,
		},
		{
			name: "gateway route type mismatch", ref: gatewayRoute("gw1"), spec: "grpcRoute: {match: {serviceName: a}, action: {target: {virtualService: {virtualServiceName: s1.local}}}}",
			want: `spec.grpcRoute: must match the protocol of virtual gateway "gw1" listener 8088 (http)`,
		},
		{
			name: "gateway http2 route on http listener", ref: gatewayRoute("gw1"), spec: "http2Route: {match: {prefix: /}, action: {target: {virtualService: {virtualServiceName: s1.local}}}}",
			want: `spec.http2Route: must match the protocol of virtual gateway "gw1" listener 8088 (http)`,
		},
		{
			name: "target port required by router", ref: gatewayRoute("gw1"), spec: "httpRoute: {match: {prefix: /}, action: {target: {virtualService: {virtualServiceName: s2.local}}}}",
			want: `spec.httpRoute.action.target.port: is required when the provider virtual router "r2" has several listeners`,
		},
		{name: "target port given for router", ref: gatewayRoute("gw1"), spec: "httpRoute: {match: {prefix: /}, action: {target: {virtualService: {virtualServiceName: s2.local}, port: 9090}}}"},
		{
			name: "target port unknown for router", ref: gatewayRoute("gw1"), spec: "httpRoute: {match: {prefix: /}, action: {target: {virtualService: {virtualServiceName: s1.local}, port: 9090}}}",
			want: `spec.httpRoute.action.target.port: must be one of the listener ports of the provider virtual router "r1" (8080)`,
		},
		{
			name: "target port required by node", ref: gatewayRoute("gw1"), spec: "httpRoute: {match: {prefix: /}, action: {target: {virtualService: {virtualServiceName: node.local}}}}",
			want: `spec.httpRoute.action.target.port: is required when the provider virtual node "multi" has several listeners`,
		},
		{name: "target without provider", ref: gatewayRoute("gw1"), spec: "httpRoute: {match: {prefix: /}, action: {target: {virtualService: {virtualServiceName: none.local}, port: 1}}}"},

		// Kinds without references.
		{name: "mesh", ref: Ref{Kind: KindMesh, Mesh: "demo", Name: "demo"}, spec: "{}"},
		{name: "router", ref: Ref{Kind: KindVirtualRouter, Mesh: "demo", Name: "r"}, spec: "{}"},
		{name: "gateway", ref: Ref{Kind: KindVirtualGateway, Mesh: "demo", Name: "g"}, spec: "{}"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateReferences(tc.ref, decodeSpec(t, tc.ref.Kind, tc.spec), l)
			if tc.notFound != "" {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Type != ErrNotFound || ae.Message != tc.notFound {
					t.Fatalf("error = %v, want NotFound %q", err, tc.notFound)
				}
				return
			}
			checkErr(t, err, tc.want)
		})
	}
}

func TestValidateReferencesEdgeCases(t *testing.T) {
	ref := Ref{Kind: KindRoute, Mesh: "demo", Parent: "r1", Name: "x"}
	t.Run("nil lookup", func(t *testing.T) {
		if err := ValidateReferences(ref, &RouteSpec{}, nil); !IsType(err, ErrNotFound) {
			t.Fatalf("error = %v, want NotFound", err)
		}
	})
	t.Run("nil spec", func(t *testing.T) {
		if err := ValidateReferences(ref, nil, refFixtureLookup(t)); err != nil {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("wrong spec type", func(t *testing.T) {
		if err := ValidateReferences(ref, &MeshSpec{}, nil); !IsType(err, ErrInternal) {
			t.Fatalf("error = %v, want an internal error", err)
		}
	})
	t.Run("lookup gives a wrong type", func(t *testing.T) {
		l := memLookup{{Kind: KindVirtualRouter, Mesh: "demo", Name: "r1"}: &MeshSpec{}}
		if err := ValidateReferences(ref, &RouteSpec{}, l.forMesh("demo")); !IsType(err, ErrInternal) {
			t.Fatalf("error = %v, want an internal error", err)
		}
	})
	t.Run("lookup gives values", func(t *testing.T) {
		l := memLookup{{Kind: KindVirtualRouter, Mesh: "demo", Name: "r1"}: VirtualRouterSpec{}}
		if err := ValidateReferences(ref, RouteSpec{}, l.forMesh("demo")); err != nil {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("unknown kind", func(t *testing.T) {
		checkErr(t, ValidateReferences(Ref{Kind: "Pod"}, nil, nil),
			"kind: must be one of Mesh, VirtualNode, VirtualRouter, Route, VirtualService, VirtualGateway, GatewayRoute")
	})
}
