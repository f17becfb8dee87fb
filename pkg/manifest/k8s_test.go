// SPDX-License-Identifier: Apache-2.0

package manifest

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

const (
	nsShop = `
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {mesh: demo, gateway: gw}}
`
	nsOther = `
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {team: x}}
`
	meshDemo = `
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {name: demo}
spec:
  namespaceSelector: {matchLabels: {mesh: demo}}
`
	vsColor = `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {name: color, namespace: shop}
spec: {awsName: color.shop.svc.cluster.local}
`
)

func TestMeshSelection(t *testing.T) {
	node := func(ns, extra string) string {
		return `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: front, namespace: ` + ns + `}
spec: {` + extra + `}
`
	}
	mesh := func(name, selector string) string {
		s := `
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {name: ` + name + `}
spec:
`
		if selector != "" {
			s += "  namespaceSelector: " + selector + "\n"
		}
		return s
	}
	for _, tc := range []struct {
		name     string
		opts     Options
		files    []string
		wantMesh string
		wantErr  string
	}{
		{
			name:     "matchLabels",
			files:    []string{nsShop, meshDemo, node("shop", "")},
			wantMesh: "demo",
		},
		{
			name: "matchExpressions",
			files: []string{
				nsShop, node("shop", ""),
				mesh("m-expr", "{matchExpressions: [{key: mesh, operator: In, values: [demo, prod]}, {key: legacy, operator: DoesNotExist}]}"),
				mesh("m-notin", "{matchExpressions: [{key: mesh, operator: NotIn, values: [demo]}]}"),
				mesh("m-exists", "{matchExpressions: [{key: team, operator: Exists}]}"),
			},
			wantMesh: "m-expr",
		},
		{
			name:     "awsName of the selecting Mesh",
			files:    []string{nsShop, mesh("k8s-name", "{matchLabels: {mesh: demo}}") + "  awsName: aws-name\n", node("shop", "")},
			wantMesh: "aws-name",
		},
		{
			name:     "empty selector selects every namespace, absent selects none",
			files:    []string{nsShop, mesh("all", "{}"), mesh("none", ""), node("shop", "")},
			wantMesh: "all",
		},
		{
			name:     "empty selector selects a namespace without Namespace document",
			files:    []string{mesh("all", "{}"), node("elsewhere", "")},
			wantMesh: "all",
		},
		{
			name:     "namespaces are selectable by name",
			files:    []string{mesh("by-name", "{matchLabels: {kubernetes.io/metadata.name: elsewhere}}"), node("elsewhere", "")},
			wantMesh: "by-name",
		},
		{
			name:    "no match",
			files:   []string{nsOther, meshDemo, mesh("none", ""), node("other", "")},
			wantErr: `f3.yaml#0: no Mesh selects namespace "other" of VirtualNode other/front (namespace labels kubernetes.io/metadata.name=other,team=x); set spec.meshRef`,
		},
		{
			name:    "no match names a missing Namespace document",
			files:   []string{meshDemo, node("shop", "")},
			wantErr: `the input has no Namespace document for "shop"`,
		},
		{
			name:     "no match uses the default mesh",
			opts:     Options{DefaultMesh: "fallback"},
			files:    []string{nsOther, meshDemo, node("other", "")},
			wantMesh: "fallback",
		},
		{
			name:    "two matches",
			files:   []string{nsShop, meshDemo, mesh("all", "{}"), node("shop", "")},
			wantErr: `f3.yaml#0: namespace "shop" of VirtualNode shop/front is selected by several Meshes (demo, all); set spec.meshRef`,
		},
		{
			name:    "two matches even with a default mesh",
			opts:    Options{DefaultMesh: "fallback"},
			files:   []string{nsShop, meshDemo, mesh("all", "{}"), node("shop", "")},
			wantErr: "is selected by several Meshes",
		},
		{
			name:     "meshRef wins over selectors",
			files:    []string{nsShop, meshDemo, mesh("all", "{}"), mesh("chosen", "") + "  awsName: chosen-aws\n", node("shop", "meshRef: {name: chosen, uid: 1234}")},
			wantMesh: "chosen-aws",
		},
		{
			name:     "meshRef to a Mesh outside the set",
			files:    []string{node("shop", "meshRef: {name: elsewhere}")},
			wantMesh: "elsewhere",
		},
		{
			name:    "bad selector operator",
			files:   []string{nsShop, mesh("bad", "{matchExpressions: [{key: mesh, operator: Equals, values: [demo]}, {key: x, operator: In}]}"), node("shop", "meshRef: {name: bad}")},
			wantErr: `f1.yaml#0: spec.namespaceSelector.matchExpressions[0].operator: "Equals" is not one of In, NotIn, Exists, DoesNotExist`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs, err := convertFiles(t, tc.opts, tc.files...)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("no error, want %q", tc.wantErr)
				}
				wantErrors(t, unjoin(err)[0], tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var node *Document
			for i := range docs {
				if docs[i].Resource.Ref.Kind == appmesh.KindVirtualNode {
					node = &docs[i]
				}
			}
			if node == nil {
				t.Fatalf("no virtual node in %v", refs(docs))
			}
			if node.Resource.Ref.Mesh != tc.wantMesh {
				t.Errorf("mesh = %q, want %q", node.Resource.Ref.Mesh, tc.wantMesh)
			}
		})
	}
}

func TestK8sInfoAndNames(t *testing.T) {
	docs := mustConvert(t, Options{}, nsShop, `
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {name: demo, labels: {tier: core}}
spec:
  namespaceSelector: {matchLabels: {mesh: demo}}
  meshOwner: "123456789012"
  egressFilter: {type: DROP_ALL}
  meshServiceDiscovery: {ipPreference: IPv6_ONLY}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata:
  name: front
  namespace: shop
  labels: {app: front}
  annotations: {note: kept out}
  uid: 0b7e
  resourceVersion: "42"
  generation: 3
  creationTimestamp: "2024-01-01T00:00:00Z"
  finalizers: [finalizers.appmesh.k8s.aws/aws-appmesh-resources]
  managedFields: [{manager: kubectl}]
spec:
  podSelector: {matchLabels: {app: front}}
  backends:
    - virtualService: {virtualServiceRef: {name: color}}
    - virtualService: {virtualServiceRef: {name: db, namespace: data}}
status:
  conditions: [{type: VirtualNodeActive, status: "True"}]
  virtualNodeARN: arn:aws:appmesh:us-west-2:123456789012:mesh/demo/virtualNode/front_shop
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: named, namespace: shop}
spec: {awsName: explicit-name}
`, vsColor)
	mesh := find(t, docs, appmesh.KindMesh, "demo", "", "demo")
	if diff := cmp.Diff(&appmesh.MeshSpec{
		EgressFilter:     &appmesh.EgressFilter{Type: appmesh.EgressDropAll},
		ServiceDiscovery: &appmesh.MeshServiceDiscovery{IPPreference: appmesh.IPv6Only},
	}, mesh.Resource.Spec); diff != "" {
		t.Errorf("mesh spec (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&K8sInfo{Name: "demo", Labels: map[string]string{"tier": "core"}}, mesh.K8s); diff != "" {
		t.Errorf("mesh K8s (-want +got):\n%s", diff)
	}
	front := find(t, docs, appmesh.KindVirtualNode, "demo", "", "front_shop")
	if front.Form != FormKubernetes || front.MeshOwner != "123456789012" {
		t.Errorf("form %s, mesh owner %q", front.Form, front.MeshOwner)
	}
	wantInfo := &K8sInfo{
		Namespace:   "shop",
		Name:        "front",
		Labels:      map[string]string{"app": "front"},
		PodSelector: &LabelSelector{MatchLabels: map[string]string{"app": "front"}},
	}
	if diff := cmp.Diff(wantInfo, front.K8s); diff != "" {
		t.Errorf("K8s (-want +got):\n%s", diff)
	}
	wantSpec := &appmesh.VirtualNodeSpec{Backends: []appmesh.Backend{
		{VirtualService: &appmesh.VirtualServiceBackend{VirtualServiceName: "color.shop.svc.cluster.local"}}, // in the set: its awsName
		{VirtualService: &appmesh.VirtualServiceBackend{VirtualServiceName: "db.data"}},                      // not in the set: default name
	}}
	if diff := cmp.Diff(wantSpec, front.Resource.Spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	find(t, docs, appmesh.KindVirtualNode, "demo", "", "explicit-name")
	find(t, docs, appmesh.KindVirtualService, "demo", "", "color.shop.svc.cluster.local")
}

func TestK8sDefaultNamespace(t *testing.T) {
	node := `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: front}
spec: {meshRef: {name: m}}
`
	docs := mustConvert(t, Options{}, node)
	find(t, docs, appmesh.KindVirtualNode, "m", "", "front_default")
	docs = mustConvert(t, Options{DefaultNamespace: "apps"}, node)
	find(t, docs, appmesh.KindVirtualNode, "m", "", "front_apps")
}

func TestReferences(t *testing.T) {
	base := []string{nsShop, meshDemo}
	router := func(target string) string {
		return `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualRouter
metadata: {name: color, namespace: shop}
spec:
  listeners: [{portMapping: {port: 8080, protocol: http}}]
  routes:
    - name: r
      httpRoute:
        match: {prefix: /}
        action: {weightedTargets: [{` + target + `, weight: 1}]}
`
	}
	for _, tc := range []struct {
		name    string
		doc     string
		want    string
		wantErr string
	}{
		{
			name: "ref with namespace to an object in the set",
			doc: router("virtualNodeRef: {name: blue, namespace: other}") + `
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: blue, namespace: other}
spec: {awsName: blue-aws, meshRef: {name: demo}}
`,
			want: "blue-aws",
		},
		{
			name: "ARN in the same mesh",
			doc:  router("virtualNodeARN: arn:aws:appmesh:us-west-2:123456789012:mesh/demo/virtualNode/legacy-node"),
			want: "legacy-node",
		},
		{
			name: "resource path without the ARN prefix",
			doc:  router("virtualNodeARN: mesh/demo/virtualNode/legacy-node"),
			want: "legacy-node",
		},
		{
			name:    "Ref and ARN both set",
			doc:     router("virtualNodeRef: {name: blue}, virtualNodeARN: mesh/demo/virtualNode/blue_shop"),
			wantErr: "f2.yaml#0: spec.routes[0].httpRoute.action.weightedTargets[0]: exactly one of virtualNodeRef and virtualNodeARN may be set, not both",
		},
		{
			name:    "neither Ref nor ARN",
			doc:     router("port: 8080"),
			wantErr: "spec.routes[0].httpRoute.action.weightedTargets[0]: one of virtualNodeRef and virtualNodeARN is required",
		},
		{
			name:    "ARN to another mesh",
			doc:     router("virtualNodeARN: arn:aws:appmesh:us-west-2:123456789012:mesh/other/virtualNode/blue"),
			wantErr: `f2.yaml#0: spec.routes[0].httpRoute.action.weightedTargets[0].virtualNodeARN: names a VirtualNode in mesh "other", but this VirtualRouter is in mesh "demo"`,
		},
		{
			name:    "ARN of another kind",
			doc:     router("virtualNodeARN: arn:aws:appmesh:us-west-2:123456789012:mesh/demo/virtualService/blue"),
			wantErr: "virtualNodeARN: names a VirtualService, not a VirtualNode",
		},
		{
			name:    "malformed ARN",
			doc:     router("virtualNodeARN: arn:aws:s3:::bucket"),
			wantErr: `virtualNodeARN: "arn:aws:s3:::bucket" is not an App Mesh ARN`,
		},
		{
			name: "ref to an object in another mesh",
			doc: router("virtualNodeRef: {name: blue, namespace: other}") + `
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: blue, namespace: other}
spec: {meshRef: {name: elsewhere}}
`,
			wantErr: `spec.routes[0].httpRoute.action.weightedTargets[0].virtualNodeRef: VirtualNode other/blue is in mesh "elsewhere", but this VirtualRouter is in mesh "demo"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs, err := convertFiles(t, Options{}, append(base, tc.doc)...)
			if tc.wantErr != "" {
				wantErrors(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			route := find(t, docs, appmesh.KindRoute, "demo", "color_shop", "r")
			got := route.Resource.Spec.(*appmesh.RouteSpec).HTTPRoute.Action.WeightedTargets[0].VirtualNode
			if got != tc.want {
				t.Errorf("target = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestVirtualServiceProviders(t *testing.T) {
	docs := mustConvert(t, Options{}, nsShop, meshDemo, `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {name: by-node, namespace: shop}
spec: {provider: {virtualNode: {virtualNodeARN: arn:aws:appmesh:eu-west-1:123456789012:mesh/demo/virtualNode/n1}}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {name: by-router, namespace: shop}
spec: {provider: {virtualRouter: {virtualRouterRef: {name: r}}}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {name: none, namespace: shop}
`)
	check := func(name string, want *appmesh.VirtualServiceSpec) {
		t.Helper()
		d := find(t, docs, appmesh.KindVirtualService, "demo", "", name)
		if diff := cmp.Diff(want, d.Resource.Spec); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	check("by-node.shop", &appmesh.VirtualServiceSpec{Provider: &appmesh.VirtualServiceProvider{VirtualNode: &appmesh.VirtualNodeServiceProvider{VirtualNodeName: "n1"}}})
	check("by-router.shop", &appmesh.VirtualServiceSpec{Provider: &appmesh.VirtualServiceProvider{VirtualRouter: &appmesh.VirtualRouterServiceProvider{VirtualRouterName: "r_shop"}}})
	check("none.shop", &appmesh.VirtualServiceSpec{})
}

func TestVirtualRouterRoutes(t *testing.T) {
	docs := mustConvert(t, Options{}, nsShop, meshDemo, `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualRouter
metadata: {name: mixed, namespace: shop}
spec:
  awsName: mixed-router
  listeners: [{portMapping: {port: 8080, protocol: http}}, {portMapping: {port: 9000, protocol: tcp}}]
  routes:
    - name: web
      priority: 5
      http2Route:
        match: {prefix: /, port: 8080}
        action: {weightedTargets: [{virtualNodeRef: {name: a}, weight: 60, port: 8080}, {virtualNodeRef: {name: b}, weight: 40}]}
    - name: raw
      tcpRoute:
        match: {port: 9000}
        action: {weightedTargets: [{virtualNodeRef: {name: a}, weight: 100}]}
`)
	want := []string{
		"mesh/demo",
		"mesh/demo/virtualRouter/mixed-router",
		"mesh/demo/virtualRouter/mixed-router/route/web",
		"mesh/demo/virtualRouter/mixed-router/route/raw",
	}
	if diff := cmp.Diff(want, refs(docs)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&appmesh.VirtualRouterSpec{Listeners: []appmesh.VirtualRouterListener{
		{PortMapping: &appmesh.PortMapping{Port: ptr[int32](8080), Protocol: appmesh.ProtocolHTTP}},
		{PortMapping: &appmesh.PortMapping{Port: ptr[int32](9000), Protocol: appmesh.ProtocolTCP}},
	}}, docs[1].Resource.Spec); diff != "" {
		t.Errorf("router (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&appmesh.RouteSpec{
		Priority: ptr[int32](5),
		HTTP2Route: &appmesh.HTTPRoute{
			Match: &appmesh.HTTPRouteMatch{Prefix: ptr("/"), Port: ptr[int32](8080)},
			Action: &appmesh.HTTPRouteAction{WeightedTargets: []appmesh.WeightedTarget{
				{VirtualNode: "a_shop", Weight: ptr[int32](60), Port: ptr[int32](8080)},
				{VirtualNode: "b_shop", Weight: ptr[int32](40)},
			}},
		},
	}, docs[2].Resource.Spec); diff != "" {
		t.Errorf("web route (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&appmesh.RouteSpec{TCPRoute: &appmesh.TCPRoute{
		Match:  &appmesh.TCPRouteMatch{Port: ptr[int32](9000)},
		Action: &appmesh.TCPRouteAction{WeightedTargets: []appmesh.WeightedTarget{{VirtualNode: "a_shop", Weight: ptr[int32](100)}}},
	}}, docs[3].Resource.Spec); diff != "" {
		t.Errorf("raw route (-want +got):\n%s", diff)
	}
	if docs[2].Source != docs[1].Source || docs[2].K8s.Name != "mixed" {
		t.Errorf("route source %v, K8s %+v", docs[2].Source, docs[2].K8s)
	}

	_, err := convertFiles(t, Options{}, nsShop, meshDemo, `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualRouter
metadata: {name: dup, namespace: shop}
spec:
  routes:
    - {name: a, tcpRoute: {action: {weightedTargets: [{virtualNodeRef: {name: x}, weight: 1}]}}}
    - {name: a, tcpRoute: {action: {weightedTargets: [{virtualNodeRef: {name: x}, weight: 1}]}}}
    - {tcpRoute: {action: {weightedTargets: [{virtualNodeRef: {name: x}, weight: 1}]}}}
`)
	wantErrors(t, err,
		`f2.yaml#0: spec.routes[1].name: duplicate route name "a" (also spec.routes[0])`,
		"f2.yaml#0: spec.routes[2].name: is required")
}

func TestGatewaySelection(t *testing.T) {
	gateway := func(name, spec string) string {
		return `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualGateway
metadata: {name: ` + name + `, namespace: shop}
spec: {listeners: [{portMapping: {port: 8088, protocol: http}}]` + spec + `}
`
	}
	route := func(labels, spec string) string {
		return `
apiVersion: appmesh.k8s.aws/v1beta2
kind: GatewayRoute
metadata: {name: gr, namespace: shop, labels: {` + labels + `}}
spec:
  httpRoute:
    match: {prefix: /}
    action: {target: {virtualService: {virtualServiceRef: {name: color}}}}
` + spec
	}
	for _, tc := range []struct {
		name    string
		files   []string
		want    string
		wantErr string
	}{
		{
			name:  "one gateway selects the namespace",
			files: []string{gateway("gw", ", namespaceSelector: {matchLabels: {gateway: gw}}"), gateway("absent-selector", ""), route("", "")},
			want:  "gw_shop",
		},
		{
			name: "gatewayRouteSelector narrows",
			files: []string{
				gateway("public", ", namespaceSelector: {}, gatewayRouteSelector: {matchLabels: {exposure: public}}"),
				gateway("internal", ", namespaceSelector: {}, gatewayRouteSelector: {matchLabels: {exposure: internal}}"),
				route("exposure: internal", ""),
			},
			want: "internal_shop",
		},
		{
			name:  "explicit virtualGatewayRef wins",
			files: []string{gateway("gw", ", namespaceSelector: {}"), gateway("other", ", namespaceSelector: {}, awsName: other-aws"), route("", "  virtualGatewayRef: {name: other, uid: 77}\n")},
			want:  "other-aws",
		},
		{
			name:  "virtualGatewayRef to a gateway outside the set",
			files: []string{route("", "  virtualGatewayRef: {name: edge, namespace: ingress}\n")},
			want:  "edge_ingress",
		},
		{
			name:    "no gateway",
			files:   []string{gateway("gw", ", namespaceSelector: {matchLabels: {gateway: nope}}"), route("a: b", "")},
			wantErr: "f3.yaml#0: no VirtualGateway selects GatewayRoute shop/gr (namespace labels gateway=gw,kubernetes.io/metadata.name=shop,mesh=demo, route labels a=b); set spec.virtualGatewayRef",
		},
		{
			name:    "two gateways",
			files:   []string{gateway("gw1", ", namespaceSelector: {}"), gateway("gw2", ", namespaceSelector: {matchLabels: {gateway: gw}}"), route("", "")},
			wantErr: "f4.yaml#0: several VirtualGateways select GatewayRoute shop/gr (shop/gw1, shop/gw2); set spec.virtualGatewayRef",
		},
		{
			name:    "gateway in another mesh",
			files:   []string{gateway("gw", ", namespaceSelector: {}, meshRef: {name: elsewhere}"), route("", "")},
			wantErr: `f3.yaml#0: VirtualGateway shop/gw, which selects this GatewayRoute, is in mesh "elsewhere", but the route is in mesh "demo"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs, err := convertFiles(t, Options{}, append([]string{nsShop, meshDemo}, tc.files...)...)
			if tc.wantErr != "" {
				wantErrors(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			gr := find(t, docs, appmesh.KindGatewayRoute, "demo", tc.want, "gr_shop")
			target := gr.Resource.Spec.(*appmesh.GatewayRouteSpec).HTTPRoute.Action.Target.VirtualService.VirtualServiceName
			if target != "color.shop" {
				t.Errorf("target = %q", target)
			}
		})
	}
}

func TestBackendGroups(t *testing.T) {
	services := `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {name: a, namespace: shop}
spec: {awsName: a.example}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {name: b, namespace: shop}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {name: foreign, namespace: shop}
spec: {meshRef: {name: elsewhere}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {name: c, namespace: other}
spec: {meshRef: {name: demo}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: BackendGroup
metadata: {name: group, namespace: other}
spec:
  virtualservices:
    - {name: c}
    - {name: b, namespace: shop}
    - {name: outside, namespace: shop}
`
	node := func(spec string) string {
		return `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: nd, namespace: shop}
spec:
` + spec
	}
	backends := func(docs []Document) []string {
		var names []string
		for _, b := range find(t, docs, appmesh.KindVirtualNode, "demo", "", "nd_shop").Resource.Spec.(*appmesh.VirtualNodeSpec).Backends {
			names = append(names, b.VirtualService.VirtualServiceName)
		}
		return names
	}

	docs := mustConvert(t, Options{}, nsShop, nsOther, meshDemo, services, node(`
  backendGroups: [{name: "*"}]
`))
	if diff := cmp.Diff([]string{"a.example", "b.shop"}, backends(docs)); diff != "" {
		t.Errorf(`"*" (-want +got):\n%s`, diff)
	}

	docs = mustConvert(t, Options{}, nsShop, nsOther, meshDemo, services, node(`
  backends:
    - virtualService:
        virtualServiceRef: {name: b}
        clientPolicy: {tls: {validation: {trust: {acm: {certificateAuthorityARNs: [arn:aws:acm-pca:us-west-2:123456789012:certificate-authority/x]}}}}}
  backendGroups: [{name: group, namespace: other}, {name: "*", namespace: other}]
`))
	if diff := cmp.Diff([]string{"b.shop", "c.other", "outside.shop"}, backends(docs)); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	explicit := find(t, docs, appmesh.KindVirtualNode, "demo", "", "nd_shop").Resource.Spec.(*appmesh.VirtualNodeSpec).Backends[0]
	if explicit.VirtualService.ClientPolicy.TLS.Validation.Trust.ACM.CertificateAuthorityARNs[0] == "" {
		t.Error("explicit backend lost its client policy")
	}

	_, err := convertFiles(t, Options{}, nsShop, meshDemo, node(`
  backends:
    - virtualService: {virtualServiceRef: {name: x}}
    - virtualService: {virtualServiceARN: arn:aws:appmesh:us-west-2:123456789012:mesh/demo/virtualService/x.shop}
    - {}
  backendGroups: [{name: missing}]
`))
	wantErrors(t, err,
		"f2.yaml#0: spec.backends[1]: duplicate backend x.shop (also spec.backends[0])",
		"f2.yaml#0: spec.backends[2].virtualService: is required",
		"f2.yaml#0: spec.backendGroups[0]: BackendGroup shop/missing is not in the input",
	)
}

func TestK8sTLSSpelling(t *testing.T) {
	docs := mustConvert(t, Options{}, nsShop, meshDemo, `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: tls, namespace: shop}
spec:
  listeners:
    - portMapping: {port: 443, protocol: http}
      tls:
        mode: PERMISSIVE
        certificate: {acm: {certificateARN: arn:aws:acm:us-west-2:123456789012:certificate/abc}}
        validation: {trust: {sds: {secretName: ca}}}
  serviceDiscovery: {dns: {hostname: tls.shop}}
  backendDefaults:
    clientPolicy:
      tls:
        enforce: false
        certificate: {sds: {secretName: client}}
        validation: {trust: {acm: {certificateAuthorityARNs: [arn:aws:acm-pca:ca]}}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualGateway
metadata: {name: gw, namespace: shop}
spec:
  listeners:
    - portMapping: {port: 443, protocol: http2}
      tls:
        mode: STRICT
        certificate: {file: {certificateChain: /c.pem, privateKey: /k.pem}}
        validation: {trust: {file: {certificateChain: /ca.pem}}, subjectAlternativeNames: {match: {exact: [client.example]}}}
  backendDefaults:
    clientPolicy: {tls: {ports: [443], validation: {trust: {file: {certificateChain: /ca.pem}}}}}
`)
	node := find(t, docs, appmesh.KindVirtualNode, "demo", "", "tls_shop").Resource.Spec.(*appmesh.VirtualNodeSpec)
	if diff := cmp.Diff(&appmesh.ListenerTLS{
		Mode:        appmesh.TLSPermissive,
		Certificate: &appmesh.ListenerTLSCertificate{ACM: &appmesh.TLSACMCertificate{CertificateARN: "arn:aws:acm:us-west-2:123456789012:certificate/abc"}},
		Validation:  &appmesh.ListenerTLSValidationContext{Trust: &appmesh.ListenerTLSValidationContextTrust{SDS: &appmesh.TLSValidationContextSDSTrust{SecretName: "ca"}}},
	}, node.Listeners[0].TLS); diff != "" {
		t.Errorf("listener TLS (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&appmesh.BackendDefaults{ClientPolicy: &appmesh.ClientPolicy{TLS: &appmesh.ClientPolicyTLS{
		Enforce:     ptr(false),
		Certificate: &appmesh.ClientTLSCertificate{SDS: &appmesh.TLSSDSCertificate{SecretName: "client"}},
		Validation:  &appmesh.TLSValidationContext{Trust: &appmesh.TLSValidationContextTrust{ACM: &appmesh.TLSValidationContextACMTrust{CertificateAuthorityARNs: []string{"arn:aws:acm-pca:ca"}}}},
	}}}, node.BackendDefaults); diff != "" {
		t.Errorf("backend defaults (-want +got):\n%s", diff)
	}
	gw := find(t, docs, appmesh.KindVirtualGateway, "demo", "", "gw_shop").Resource.Spec.(*appmesh.VirtualGatewaySpec)
	if diff := cmp.Diff(&appmesh.VirtualGatewaySpec{
		Listeners: []appmesh.VirtualGatewayListener{{
			PortMapping: &appmesh.PortMapping{Port: ptr[int32](443), Protocol: appmesh.ProtocolHTTP2},
			TLS: &appmesh.VirtualGatewayListenerTLS{
				Mode:        appmesh.TLSStrict,
				Certificate: &appmesh.ListenerTLSCertificate{File: &appmesh.TLSFileCertificate{CertificateChain: "/c.pem", PrivateKey: "/k.pem"}},
				Validation: &appmesh.ListenerTLSValidationContext{
					Trust:                   &appmesh.ListenerTLSValidationContextTrust{File: &appmesh.TLSValidationContextFileTrust{CertificateChain: "/ca.pem"}},
					SubjectAlternativeNames: &appmesh.SubjectAlternativeNames{Match: &appmesh.SubjectAlternativeNameMatchers{Exact: []string{"client.example"}}},
				},
			},
		}},
		BackendDefaults: &appmesh.VirtualGatewayBackendDefaults{ClientPolicy: &appmesh.ClientPolicy{TLS: &appmesh.ClientPolicyTLS{
			Ports:      []int32{443},
			Validation: &appmesh.TLSValidationContext{Trust: &appmesh.TLSValidationContextTrust{File: &appmesh.TLSValidationContextFileTrust{CertificateChain: "/ca.pem"}}},
		}}},
	}, gw); diff != "" {
		t.Errorf("gateway (-want +got):\n%s", diff)
	}

	_, err := convertFiles(t, Options{}, nsShop, meshDemo, `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualGateway
metadata: {name: gw, namespace: shop}
spec:
  listeners:
    - portMapping: {port: 443, protocol: http}
      tls:
        mode: STRICT
        certificate: {acm: {certificateArn: arn:aws:acm:x}}
        validation: {trust: {acm: {certificateAuthorityARNs: [arn:aws:acm-pca:ca]}}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: nd, namespace: shop}
spec:
  serviceDiscovery: {dns: {hostname: nd.shop, ipPreference: IPv4_ONLY}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {name: m2}
spec: {serviceDiscovery: {ipPreference: IPv4_ONLY}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualGateway
metadata: {name: gw2, namespace: shop}
spec:
  listeners:
    - portMapping: {port: 443, protocol: http}
      tls: {mode: STRICT, certificate: {sds: {secretName: s}}, validation: {trust: {acm: {certificateAuthorityARNs: [arn:aws:acm-pca:ca]}}}}
`)
	wantErrors(t, err,
		`f2.yaml#0: spec.listeners[0].tls.certificate.acm.certificateArn: unknown field (did you mean "certificateARN"?)`,
		`f2.yaml#1: spec.serviceDiscovery.dns.ipPreference: unknown field`,
		`f2.yaml#2: spec.serviceDiscovery: unknown field (did you mean "meshServiceDiscovery"?)`,
		"f2.yaml#3: spec.listeners[0].tls.validation.trust.acm: the App Mesh API has no ACM trust for gateway listeners (use file or sds)",
	)
}

func TestK8sKinds(t *testing.T) {
	docs := mustConvert(t, Options{}, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {template: {spec: {containers: [{name: app, image: nginx}]}}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
data: {k: v}
---
apiVersion: networking.k8s.io/v1
kind: VirtualNode
metadata: {name: not-ours}
`, nsShop, meshDemo)
	if diff := cmp.Diff([]string{"mesh/demo"}, refs(docs)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	_, err := convertFiles(t, Options{}, `
apiVersion: appmesh.k8s.aws/v1beta2
kind: Sidecar
metadata: {name: s}
---
apiVersion: appmesh.k8s.aws/v1beta1
kind: Mesh
metadata: {name: old}
---
apiVersion: weft-mesh.io/v1
kind: Gateway
metadata: {name: g}
---
apiVersion: weft-mesh.io/v2
kind: Mesh
metadata: {name: g}
---
kind: Mesh
metadata: {name: g}
---
foo: bar
`)
	wantErrors(t, err,
		`f0.yaml#0: kind: unknown kind "Sidecar" for appmesh.k8s.aws/v1beta2`,
		`f0.yaml#1: apiVersion: unsupported version "appmesh.k8s.aws/v1beta1" (want appmesh.k8s.aws/v1beta2)`,
		`f0.yaml#2: kind: unknown kind "Gateway" for weft-mesh.io/v1`,
		`f0.yaml#3: apiVersion: unsupported version "weft-mesh.io/v2" (want weft-mesh.io/v1)`,
		"f0.yaml#4: apiVersion: is required when kind is set",
		"f0.yaml#5: unrecognized document",
	)
}

func TestK8sList(t *testing.T) {
	docs := mustConvert(t, Options{}, `
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: Namespace, metadata: {name: shop, labels: {mesh: demo}}}
  - {apiVersion: appmesh.k8s.aws/v1beta2, kind: Mesh, metadata: {name: demo}, spec: {namespaceSelector: {matchLabels: {mesh: demo}}}}
  - {apiVersion: appmesh.k8s.aws/v1beta2, kind: VirtualService, metadata: {name: s, namespace: shop}}
`)
	if diff := cmp.Diff([]string{"mesh/demo", "mesh/demo/virtualService/s.shop"}, refs(docs)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	_, err := convertFiles(t, Options{}, `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualServiceList
items:
  - {apiVersion: appmesh.k8s.aws/v1beta2, kind: VirtualService, metadata: {name: s, namespace: shop}, spec: {provider: {}, awsname: x}}
`)
	wantErrors(t, err, `f0.yaml#0: items[0].spec.awsname: unknown field (did you mean "awsName"?)`)
}

func TestK8sDuplicates(t *testing.T) {
	_, err := convertFiles(t, Options{}, nsShop, meshDemo, vsColor, nsShop, vsColor, `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {name: other, namespace: shop}
spec: {awsName: color.shop.svc.cluster.local}
`)
	wantErrors(t, err,
		"f3.yaml#0: metadata.name: duplicate Namespace shop (already defined at f0.yaml#0)",
		"f4.yaml#0: metadata.name: duplicate VirtualService shop/color (already defined at f2.yaml#0)",
		"f5.yaml#0: duplicate VirtualService mesh/demo/virtualService/color.shop.svc.cluster.local (already defined at f2.yaml#0)",
	)
}

func TestGRPCGatewayRoute(t *testing.T) {
	docs := mustConvert(t, Options{}, nsShop, meshDemo, `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualGateway
metadata: {name: gw, namespace: shop}
spec:
  namespaceSelector: {}
  listeners: [{portMapping: {port: 9090, protocol: grpc}}]
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: GatewayRoute
metadata: {name: rpc, namespace: shop}
spec:
  priority: 3
  grpcRoute:
    match: {serviceName: color.ColorService, metadata: [{name: x-env, match: {exact: prod}}], port: 9090}
    action:
      target: {virtualService: {virtualServiceARN: "mesh/demo/virtualService/color-grpc.shop.svc.cluster.local"}, port: 9090}
      rewrite: {hostname: {defaultTargetHostname: DISABLED}}
`)
	gr := find(t, docs, appmesh.KindGatewayRoute, "demo", "gw_shop", "rpc_shop")
	want := &appmesh.GatewayRouteSpec{
		Priority: ptr[int32](3),
		GRPCRoute: &appmesh.GRPCGatewayRoute{
			Match: &appmesh.GRPCGatewayRouteMatch{
				ServiceName: ptr("color.ColorService"),
				Metadata:    []appmesh.GRPCRouteMetadata{{Name: "x-env", Match: &appmesh.HeaderMatchMethod{Exact: ptr("prod")}}},
				Port:        ptr[int32](9090),
			},
			Action: &appmesh.GRPCGatewayRouteAction{
				Target:  &appmesh.GatewayRouteTarget{VirtualService: &appmesh.GatewayRouteVirtualService{VirtualServiceName: "color-grpc.shop.svc.cluster.local"}, Port: ptr[int32](9090)},
				Rewrite: &appmesh.GRPCGatewayRouteRewrite{Hostname: &appmesh.GatewayRouteHostnameRewrite{DefaultTargetHostname: appmesh.Disabled}},
			},
		},
	}
	if diff := cmp.Diff(want, gr.Resource.Spec); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
