// SPDX-License-Identifier: Apache-2.0

package appmesh

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// specCase is one Validate case: a spec of a kind, as YAML in API shape, and
// the whole expected error ("" for none). Every FieldError is "path: rule" and
// several are joined by "; ", so want pins every path and rule exactly.
type specCase struct {
	name string
	kind Kind
	spec string
	want string
}

// testRef is a valid ref of the kind.
func testRef(kind Kind) Ref {
	ref := Ref{Kind: kind, Mesh: "demo", Name: "x"}
	switch kind {
	case KindMesh:
		ref.Name = "demo"
	case KindRoute, KindGatewayRoute:
		ref.Parent = "p"
	case KindVirtualService:
		ref.Name = "x.demo.local"
	}
	return ref
}

// decodeSpec decodes YAML into a new spec of kind, leniently (unknown fields
// are dropped, as encoding/json does).
func decodeSpec(t *testing.T, kind Kind, src string) any {
	t.Helper()
	spec, err := kind.NewSpec()
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(src), spec); err != nil {
		t.Fatalf("decode spec: %v", err)
	}
	return spec
}

func runSpecCases(t *testing.T, cases []specCase) {
	t.Helper()
	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			spec := decodeSpec(t, tc.kind, tc.spec)
			checkErr(t, Validate(testRef(tc.kind), spec), tc.want)
		})
	}
}

// checkErr checks that err is nil (want "") or a ValidationError reading want.
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var ve ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v (%T), want ValidationError %q", err, err, want)
	}
	if got := err.Error(); got != want {
		t.Fatalf("error\n got: %s\nwant: %s", got, want)
	}
	if TypeOf(err) != ErrBadRequest {
		t.Fatalf("TypeOf = %s, want BadRequest", TypeOf(err))
	}
}

func TestValidateNames(t *testing.T) {
	long := strings.Repeat("a", 256)
	label63 := strings.Repeat("a", 63)
	// 255 characters of hostname: 4 labels of 63 and 3 dots.
	host255 := strings.Join([]string{label63, label63, label63, label63}, ".")
	cases := []struct {
		name string
		ref  Ref
		want string
	}{
		{"mesh ok", Ref{Kind: KindMesh, Mesh: "demo", Name: "demo"}, ""},
		{"mesh name from Mesh only", Ref{Kind: KindMesh, Mesh: "demo"}, ""},
		{"mesh name missing", Ref{Kind: KindMesh}, "meshName: is required"},
		{"node name with . _ -", Ref{Kind: KindVirtualNode, Mesh: "demo", Name: "blue_shop.v-1"}, ""},
		{"node name 255 characters", Ref{Kind: KindVirtualNode, Mesh: "demo", Name: long[:255]}, ""},
		{"node name 256 characters", Ref{Kind: KindVirtualNode, Mesh: "demo", Name: long}, "virtualNodeName: must be between 1 and 255 characters"},
		{"node name missing", Ref{Kind: KindVirtualNode, Mesh: "demo"}, "virtualNodeName: is required"},
		{"node mesh missing", Ref{Kind: KindVirtualNode, Name: "a"}, "meshName: is required"},
		{"node name with space", Ref{Kind: KindVirtualNode, Mesh: "demo", Name: "blue shop"}, "virtualNodeName: must contain only letters, digits, '.', '_' and '-'"},
		{"node name with slash", Ref{Kind: KindVirtualNode, Mesh: "demo", Name: "blue/shop"}, "virtualNodeName: must contain only letters, digits, '.', '_' and '-'"},
		{"node name non-ASCII", Ref{Kind: KindVirtualNode, Mesh: "demo", Name: "blé"}, "virtualNodeName: must contain only letters, digits, '.', '_' and '-'"},
		{"node name dot", Ref{Kind: KindVirtualNode, Mesh: "demo", Name: "."}, `virtualNodeName: must not be "." or ".."`},
		{"router name dot dot", Ref{Kind: KindVirtualRouter, Mesh: "demo", Name: ".."}, `virtualRouterName: must not be "." or ".."`},
		{"mesh name dot dot", Ref{Kind: KindVirtualRouter, Mesh: "..", Name: "r"}, `meshName: must not be "." or ".."`},
		{"gateway name bad", Ref{Kind: KindVirtualGateway, Mesh: "demo", Name: "gw:1"}, "virtualGatewayName: must contain only letters, digits, '.', '_' and '-'"},
		{"route ok", Ref{Kind: KindRoute, Mesh: "demo", Parent: "color_shop", Name: "canary"}, ""},
		{"route parent missing", Ref{Kind: KindRoute, Mesh: "demo", Name: "canary"}, "virtualRouterName: is required"},
		{"route name bad", Ref{Kind: KindRoute, Mesh: "demo", Parent: "r", Name: "a*"}, "routeName: must contain only letters, digits, '.', '_' and '-'"},
		{"gateway route parent missing", Ref{Kind: KindGatewayRoute, Mesh: "demo", Name: "g"}, "virtualGatewayName: is required"},
		{"gateway route name missing", Ref{Kind: KindGatewayRoute, Mesh: "demo", Parent: "gw"}, "gatewayRouteName: is required"},
		{"service FQDN", Ref{Kind: KindVirtualService, Mesh: "demo", Name: "color.shop.svc.cluster.local"}, ""},
		{"service single label", Ref{Kind: KindVirtualService, Mesh: "demo", Name: "color"}, ""},
		{"service upper case and digits", Ref{Kind: KindVirtualService, Mesh: "demo", Name: "Color-2.Shop"}, ""},
		{"service 63 character label", Ref{Kind: KindVirtualService, Mesh: "demo", Name: label63 + ".local"}, ""},
		{"service 255 characters", Ref{Kind: KindVirtualService, Mesh: "demo", Name: host255}, ""},
		{"service over 255 characters", Ref{Kind: KindVirtualService, Mesh: "demo", Name: host255 + ".d"}, "virtualServiceName: must be between 1 and 255 characters"},
		{"service name missing", Ref{Kind: KindVirtualService, Mesh: "demo"}, "virtualServiceName: is required"},
		{"service 64 character label", Ref{Kind: KindVirtualService, Mesh: "demo", Name: label63 + "a.local"}, "virtualServiceName: must be a hostname: dot-separated labels of 1 to 63 letters, digits or '-', not starting or ending with '-'"},
		{"service underscore", Ref{Kind: KindVirtualService, Mesh: "demo", Name: "color_shop"}, "virtualServiceName: must be a hostname: dot-separated labels of 1 to 63 letters, digits or '-', not starting or ending with '-'"},
		{"service leading hyphen", Ref{Kind: KindVirtualService, Mesh: "demo", Name: "-color.shop"}, "virtualServiceName: must be a hostname: dot-separated labels of 1 to 63 letters, digits or '-', not starting or ending with '-'"},
		{"service trailing hyphen", Ref{Kind: KindVirtualService, Mesh: "demo", Name: "color-.shop"}, "virtualServiceName: must be a hostname: dot-separated labels of 1 to 63 letters, digits or '-', not starting or ending with '-'"},
		{"service empty label", Ref{Kind: KindVirtualService, Mesh: "demo", Name: "color..shop"}, "virtualServiceName: must be a hostname: dot-separated labels of 1 to 63 letters, digits or '-', not starting or ending with '-'"},
		{"service trailing dot", Ref{Kind: KindVirtualService, Mesh: "demo", Name: "color.shop."}, "virtualServiceName: must be a hostname: dot-separated labels of 1 to 63 letters, digits or '-', not starting or ending with '-'"},
		{"service wildcard", Ref{Kind: KindVirtualService, Mesh: "demo", Name: "*.shop"}, "virtualServiceName: must be a hostname: dot-separated labels of 1 to 63 letters, digits or '-', not starting or ending with '-'"},
		{"every name in order", Ref{Kind: KindGatewayRoute, Mesh: "", Parent: "g w", Name: ""}, "meshName: is required; virtualGatewayName: must contain only letters, digits, '.', '_' and '-'; gatewayRouteName: is required"},
		{"unknown kind", Ref{Kind: "Pod", Mesh: "demo", Name: "x"}, "kind: must be one of Mesh, VirtualNode, VirtualRouter, Route, VirtualService, VirtualGateway, GatewayRoute"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var spec any
			if src, ok := validSpecs[tc.ref.Kind]; ok {
				spec = decodeSpec(t, tc.ref.Kind, src)
			}
			checkErr(t, Validate(tc.ref, spec), tc.want)
		})
	}
}

// validSpecs are small valid specs of every kind.
var validSpecs = map[Kind]string{
	KindMesh:           "{}",
	KindVirtualNode:    "{}",
	KindVirtualService: "{}",
	KindVirtualRouter:  "listeners: [{portMapping: {port: 80, protocol: http}}]",
	KindRoute:          "httpRoute: {match: {prefix: /}, action: {weightedTargets: [{virtualNode: a, weight: 1}]}}",
	KindVirtualGateway: "listeners: [{portMapping: {port: 80, protocol: http}}]",
	KindGatewayRoute:   "httpRoute: {match: {prefix: /}, action: {target: {virtualService: {virtualServiceName: a.local}}}}",
}

func TestValidateSpecTypes(t *testing.T) {
	// nil, typed nil and values are accepted.
	for _, spec := range []any{nil, (*MeshSpec)(nil), MeshSpec{}, &MeshSpec{}} {
		if err := Validate(testRef(KindMesh), spec); err != nil {
			t.Errorf("Validate(mesh, %#v) = %v", spec, err)
		}
	}
	if err := Validate(testRef(KindVirtualRouter), nil); err == nil || err.Error() != "spec.listeners: must have at least 1 item" {
		t.Errorf("Validate(router, nil) = %v", err)
	}
	// A spec of another kind is a programming error, not a BadRequest.
	err := Validate(testRef(KindMesh), &RouteSpec{})
	if err == nil || TypeOf(err) != ErrInternal {
		t.Errorf("Validate(mesh, *RouteSpec) = %v, want an internal error", err)
	}
}

func TestValidateTags(t *testing.T) {
	tags := func(n int) []Tag {
		out := make([]Tag, n)
		for i := range out {
			v := "v"
			out[i] = Tag{Key: fmt.Sprintf("k%d", i), Value: &v}
		}
		return out
	}
	str := func(s string) *string { return &s }
	cases := []struct {
		name string
		tags []Tag
		want string
	}{
		{"none", nil, ""},
		{"50 tags", tags(50), ""},
		{"key 128 value 256", []Tag{{Key: strings.Repeat("k", 128), Value: str(strings.Repeat("v", 256))}}, ""},
		{"empty and missing values", []Tag{{Key: "a", Value: str("")}, {Key: "b"}}, ""},
		{"key missing", []Tag{{Key: "a"}, {Key: ""}}, "tags[1].key: is required"},
		{"key 129", []Tag{{Key: strings.Repeat("k", 129)}}, "tags[0].key: must be between 1 and 128 characters"},
		{"value 257", []Tag{{Key: "a", Value: str(strings.Repeat("v", 257))}}, "tags[0].value: must be between 0 and 256 characters"},
		{"duplicate key", []Tag{{Key: "a"}, {Key: "b"}, {Key: "a"}}, "tags[2].key: must be unique (same as tags[0])"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { checkErr(t, ValidateTags(tc.tags), tc.want) })
	}
	t.Run("51 tags", func(t *testing.T) {
		err := ValidateTags(tags(51))
		var ae *APIError
		if !errors.As(err, &ae) || ae.Type != ErrTooManyTags {
			t.Fatalf("error = %v, want TooManyTags", err)
		}
		if want := "TooManyTags: tags: at most 50 tags are allowed, got 51"; err.Error() != want {
			t.Fatalf("error = %q, want %q", err, want)
		}
	})
}

func TestValidateMesh(t *testing.T) {
	runSpecCases(t, []specCase{
		{"empty", KindMesh, "{}", ""},
		{"allow all", KindMesh, "egressFilter: {type: ALLOW_ALL}", ""},
		{"drop all", KindMesh, "egressFilter: {type: DROP_ALL}", ""},
		{"egress type missing", KindMesh, "egressFilter: {}", "spec.egressFilter.type: is required"},
		{"egress type bad", KindMesh, "egressFilter: {type: DENY}", "spec.egressFilter.type: must be one of ALLOW_ALL, DROP_ALL"},
		{"ip preference", KindMesh, "serviceDiscovery: {ipPreference: IPv6_PREFERRED}", ""},
		{"ip preference absent", KindMesh, "serviceDiscovery: {}", ""},
		{"ip preference bad", KindMesh, "serviceDiscovery: {ipPreference: IPv4}", "spec.serviceDiscovery.ipPreference: must be one of IPv6_PREFERRED, IPv4_PREFERRED, IPv4_ONLY, IPv6_ONLY"},
	})
}

func TestValidateDurations(t *testing.T) {
	// Durations are checked the same way wherever they appear; a TCP listener
	// timeout stands for all of them here.
	node := func(idle string) string {
		return "listeners: [{portMapping: {port: 80, protocol: tcp}, timeout: {tcp: {idle: " + idle + "}}}]\n" +
			"serviceDiscovery: {dns: {hostname: a.local}}"
	}
	const path = "spec.listeners[0].timeout.tcp.idle"
	runSpecCases(t, []specCase{
		{"seconds", KindVirtualNode, node("{unit: s, value: 300}"), ""},
		{"milliseconds", KindVirtualNode, node("{unit: ms, value: 1500}"), ""},
		{"zero disables", KindVirtualNode, node("{unit: s, value: 0}"), ""},
		{"largest seconds", KindVirtualNode, node("{unit: s, value: 315576000000}"), ""},
		{"largest milliseconds", KindVirtualNode, node("{unit: ms, value: 315576000000000}"), ""},
		{"unit missing", KindVirtualNode, node("{value: 5}"), path + ".unit: is required"},
		{"unit bad", KindVirtualNode, node("{unit: m, value: 5}"), path + ".unit: must be one of s, ms"},
		{"value missing", KindVirtualNode, node("{unit: s}"), path + ".value: is required"},
		{"value negative", KindVirtualNode, node("{unit: s, value: -1}"), path + ".value: must be between 0 and 315576000000"},
		{"seconds too large", KindVirtualNode, node("{unit: s, value: 315576000001}"), path + ".value: must be between 0 and 315576000000"},
		{"milliseconds too large", KindVirtualNode, node("{unit: ms, value: 315576000000001}"), path + ".value: must be between 0 and 315576000000000"},
		{"empty", KindVirtualNode, node("{}"), path + ".unit: is required; " + path + ".value: is required"},
	})
}
