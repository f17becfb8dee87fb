// SPDX-License-Identifier: Apache-2.0

package manifest

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

func TestAPIFormKinds(t *testing.T) {
	docs := mustConvert(t, Options{}, `
[
  {"meshName": "m", "spec": {}, "tags": [{"key": "team", "value": "a"}, {"key": "flag"}], "clientToken": "tok-1"},
  {"meshName": "m", "virtualNodeName": "vn", "meshOwner": "123456789012"},
  {"meshName": "m", "virtualServiceName": "vs.local"},
  {"meshName": "m", "virtualRouterName": "vr"},
  {"meshName": "m", "virtualRouterName": "vr", "routeName": "rt"},
  {"meshName": "m", "virtualGatewayName": "vg"},
  {"meshName": "m", "virtualGatewayName": "vg", "gatewayRouteName": "gr"}
]`, `
# describe-* output, in YAML
virtualNode:
  meshName: m
  virtualNodeName: described
  spec: {listeners: [{portMapping: {port: 80, protocol: http}}]}
  metadata: {arn: "arn:aws:appmesh:us-west-2:123456789012:mesh/m/virtualNode/described", uid: u, version: 3, createdAt: 1717000000.5, lastUpdatedAt: 1717000001, meshOwner: "123456789012", resourceOwner: "123456789012"}
  status: {status: ACTIVE}
`)
	want := []string{
		"mesh/m",
		"mesh/m/virtualNode/vn",
		"mesh/m/virtualNode/described",
		"mesh/m/virtualRouter/vr",
		"mesh/m/virtualRouter/vr/route/rt",
		"mesh/m/virtualService/vs.local",
		"mesh/m/virtualGateway/vg",
		"mesh/m/virtualGateway/vg/gatewayRoute/gr",
	}
	if diff := cmp.Diff(want, refs(docs)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	mesh := docs[0]
	if diff := cmp.Diff([]appmesh.Tag{{Key: "team", Value: ptr("a")}, {Key: "flag"}}, mesh.Resource.Tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	if mesh.ClientToken != "tok-1" || docs[1].MeshOwner != "123456789012" || mesh.Form != FormAppMeshAPI {
		t.Errorf("client token %q, mesh owner %q, form %s", mesh.ClientToken, docs[1].MeshOwner, mesh.Form)
	}
	described := docs[2].Resource
	if described.Metadata != (appmesh.Metadata{}) || described.Status != (appmesh.ResourceStatus{}) {
		t.Errorf("Convert kept metadata %+v / status %+v", described.Metadata, described.Status)
	}
}

func TestAPIFormErrors(t *testing.T) {
	_, err := convertFiles(t, Options{}, `
[
  {"meshName": "m", "routeName": "r"},
  {"meshName": "m", "virtualNodeName": "a", "virtualServiceName": "b"},
  {"meshName": "", "virtualNodeName": "a"},
  {"meshName": "m", "virtualRouterName": "r", "spec": {"listeners": [{"portMapping": {"port": "80"}}]}},
  {"virtualRouter": {"meshName": "m", "virtualRouterName": "vr", "routeName": "r", "spec": {}}},
  {"meshName": "m", "virtualNodeName": "a", "Spec": {}},
  {"route": {"meshName": "m", "virtualRouterName": "vr", "routeName": "r", "spec": {"httpRoute": {"action": {"weightedTarget": []}}}}}
]`)
	wantErrors(t, err,
		"f0.yaml#0: virtualRouterName: is required for a Route",
		"f0.yaml#1: virtualNodeName: is not allowed for a VirtualService (given virtualServiceName)",
		"f0.yaml#2: meshName: is required",
		`f0.yaml#3: spec.listeners[0].portMapping.port: must be an integer, not the string "80"`,
		"f0.yaml#4: virtualRouter: a VirtualRouter needs meshName and virtualRouterName",
		`f0.yaml#5: Spec: unknown field (did you mean "spec"?)`,
		`f0.yaml#6: route.spec.httpRoute.action.weightedTarget: unknown field (did you mean "weightedTargets"?)`,
	)
}

func TestWeftForm(t *testing.T) {
	docs := mustConvert(t, Options{DefaultMesh: "dflt"}, `
apiVersion: weft-mesh.io/v1
kind: VirtualNode
metadata:
  name: front
  mesh: demo
  meshOwner: "123456789012"
  tags: [{key: team, value: shop}]
spec:
  listeners: [{portMapping: {port: 8080, protocol: http}}]
---
apiVersion: weft-mesh.io/v1
kind: VirtualService
metadata: {name: svc.local}
`)
	front := docs[0]
	if diff := cmp.Diff(appmesh.Resource{
		Ref:  appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "front"},
		Spec: &appmesh.VirtualNodeSpec{Listeners: []appmesh.Listener{{PortMapping: &appmesh.PortMapping{Port: ptr[int32](8080), Protocol: appmesh.ProtocolHTTP}}}},
		Tags: []appmesh.Tag{{Key: "team", Value: ptr("shop")}},
	}, front.Resource); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if front.MeshOwner != "123456789012" || front.Form != FormWeft || front.K8s != nil {
		t.Errorf("owner %q form %s k8s %v", front.MeshOwner, front.Form, front.K8s)
	}
	if got := docs[1].Resource.Ref.Mesh; got != "dflt" {
		t.Errorf("default mesh = %q", got)
	}

	_, err := convertFiles(t, Options{}, `
apiVersion: weft-mesh.io/v1
kind: Route
metadata: {name: r, mesh: m}
---
apiVersion: weft-mesh.io/v1
kind: VirtualNode
metadata: {name: v, virtualGateway: g}
---
apiVersion: weft-mesh.io/v1
kind: Mesh
metadata: {name: m, mesh: other}
---
apiVersion: weft-mesh.io/v1
kind: VirtualService
---
apiVersion: weft-mesh.io/v1
kind: VirtualService
metadata: {mesh: m, labels: {a: b}}
extra: 1
`)
	wantErrors(t, err,
		"f0.yaml#0: metadata.virtualRouter: is required for a Route",
		"f0.yaml#1: metadata.mesh: is required (or give a default mesh)",
		"f0.yaml#1: metadata.virtualGateway: is only allowed for a GatewayRoute",
		"f0.yaml#2: metadata.mesh: must be empty or equal to metadata.name for a Mesh",
		"f0.yaml#3: metadata: is required",
		"f0.yaml#4: extra: unknown field",
		"f0.yaml#4: metadata.labels: unknown field",
		"f0.yaml#4: metadata.name: is required",
	)
}

func TestStrictDecoding(t *testing.T) {
	_, err := convertFiles(t, Options{}, nsShop, meshDemo, `
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualRouter
metadata: {name: color, namespace: shop}
spec:
  listeners: [{portMapping: {port: 8080, protocol: http}}]
  routes:
    - name: canary
      httpRoute:
        match: {prefix: /}
        action:
          weightedTarget: [{virtualNodeRef: {name: blue}, weight: 90}]
`, `
apiVersion: weft-mesh.io/v1
kind: Route
metadata: {name: r, mesh: demo, virtualRouter: vr}
spec:
  priority: 1.5
  httpRoute:
    match: {prefix: /, Port: 8080, headers: [{name: h, invert: "yes"}]}
    action: {weightedtargets: [], weightedTargets: [{virtualNode: blue, weight: 3000000000}]}
    retryPolicy: {maxRetries: 1e2, perRetryTimeout: {unit: s, value: 9223372036854775808}}
    timeout: {idle: [1]}
`)
	wantErrors(t, err,
		`f2.yaml#0: spec.routes[0].httpRoute.action.weightedTarget: unknown field (did you mean "weightedTargets"?)`,
		"f3.yaml#0: spec.httpRoute.action.weightedTargets[0].weight: 3000000000 is out of range for a 32-bit integer",
		`f3.yaml#0: spec.httpRoute.action.weightedtargets: unknown field (did you mean "weightedTargets"?)`,
		`f3.yaml#0: spec.httpRoute.match.Port: unknown field (did you mean "port"?)`,
		`f3.yaml#0: spec.httpRoute.match.headers[0].invert: must be a boolean, not the string "yes"`,
		"f3.yaml#0: spec.httpRoute.retryPolicy.perRetryTimeout.value: 9223372036854775808 is out of range for a 64-bit integer",
		"f3.yaml#0: spec.httpRoute.timeout.idle: must be an object, not an array",
		"f3.yaml#0: spec.priority: must be an integer, not 1.5",
	)

	// 1e2 is an integer; unquoted YAML numbers and booleans are not strings.
	docs := mustConvert(t, Options{}, `
apiVersion: weft-mesh.io/v1
kind: Route
metadata: {name: r, mesh: demo, virtualRouter: vr}
spec:
  httpRoute:
    match: {prefix: /}
    retryPolicy: {maxRetries: 1e2}
`)
	if got := *docs[0].Resource.Spec.(*appmesh.RouteSpec).HTTPRoute.RetryPolicy.MaxRetries; got != 100 {
		t.Errorf("maxRetries = %d", got)
	}
	_, err = convertFiles(t, Options{}, `
apiVersion: weft-mesh.io/v1
kind: VirtualNode
metadata: {name: v, mesh: demo, tags: [{key: on, value: 1}]}
`)
	wantErrors(t, err,
		"metadata.tags[0].key: must be a string, not the boolean true (YAML reads unquoted true, false, yes, no, on, off, y and n as booleans: quote the value)",
		"metadata.tags[0].value: must be a string, not the number 1 (quote the value)",
	)
}

func TestLabelSelector(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "front"}
	for _, tc := range []struct {
		sel  *LabelSelector
		want bool
		str  string
	}{
		{nil, false, "<none>"},
		{&LabelSelector{}, true, "<all>"},
		{&LabelSelector{MatchLabels: map[string]string{"app": "web"}}, true, "app=web"},
		{&LabelSelector{MatchLabels: map[string]string{"app": "db"}}, false, "app=db"},
		{&LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "tier", Operator: OpIn, Values: []string{"front", "back"}}}}, true, "tier in (front,back)"},
		{&LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "tier", Operator: OpNotIn, Values: []string{"front"}}}}, false, "tier notin (front)"},
		{&LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "zone", Operator: OpNotIn, Values: []string{"a"}}}}, true, "zone notin (a)"},
		{&LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "app", Operator: OpExists}}}, true, "app"},
		{&LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "app", Operator: OpDoesNotExist}}}, false, "!app"},
		{&LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "app", Operator: "Equals"}}}, false, "app equals ()"},
	} {
		if got := tc.sel.Matches(labels); got != tc.want {
			t.Errorf("%s matches = %v, want %v", tc.sel, got, tc.want)
		}
		if got := tc.sel.String(); got != tc.str {
			t.Errorf("String() = %q, want %q", got, tc.str)
		}
	}
}
