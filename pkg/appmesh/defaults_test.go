// SPDX-License-Identifier: Apache-2.0

package appmesh

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDefault(t *testing.T) {
	const trust = "validation: {trust: {file: {certificateChain: /ca.pem}}}"
	cases := []struct {
		name string
		kind Kind
		spec string
		want string // the spec after Default, as YAML
	}{
		{"mesh egress filter", KindMesh, "{}", "egressFilter: {type: DROP_ALL}"},
		{"mesh egress filter kept", KindMesh, "egressFilter: {type: ALLOW_ALL}", "egressFilter: {type: ALLOW_ALL}"},
		{"mesh egress filter type not filled", KindMesh, "egressFilter: {}", "egressFilter: {}"},
		{
			"health check port", KindVirtualNode,
			"listeners: [{portMapping: {port: 8080, protocol: http}, healthCheck: {protocol: http}}, {portMapping: {port: 9090, protocol: grpc}}]",
			"listeners: [{portMapping: {port: 8080, protocol: http}, healthCheck: {protocol: http, port: 8080}}, {portMapping: {port: 9090, protocol: grpc}}]",
		},
		{
			"health check port kept", KindVirtualNode,
			"listeners: [{portMapping: {port: 8080, protocol: http}, healthCheck: {port: 9}}]",
			"listeners: [{portMapping: {port: 8080, protocol: http}, healthCheck: {port: 9}}]",
		},
		{"health check without port mapping", KindVirtualNode, "listeners: [{healthCheck: {}}]", "listeners: [{healthCheck: {}}]"},
		{
			"backend enforce", KindVirtualNode,
			"backends: [{virtualService: {virtualServiceName: a, clientPolicy: {tls: {" + trust + "}}}}, {virtualService: {virtualServiceName: b}}, {}]",
			"backends: [{virtualService: {virtualServiceName: a, clientPolicy: {tls: {enforce: true, " + trust + "}}}}, {virtualService: {virtualServiceName: b}}, {}]",
		},
		{
			"backend enforce false kept", KindVirtualNode,
			"backends: [{virtualService: {virtualServiceName: a, clientPolicy: {tls: {enforce: false}}}}]",
			"backends: [{virtualService: {virtualServiceName: a, clientPolicy: {tls: {enforce: false}}}}]",
		},
		{
			"backend defaults enforce", KindVirtualNode,
			"backendDefaults: {clientPolicy: {tls: {" + trust + "}}}",
			"backendDefaults: {clientPolicy: {tls: {enforce: true, " + trust + "}}}",
		},
		{"backend defaults without tls", KindVirtualNode, "backendDefaults: {clientPolicy: {}}", "backendDefaults: {clientPolicy: {}}"},
		{
			"gateway backend defaults enforce", KindVirtualGateway,
			"backendDefaults: {clientPolicy: {tls: {" + trust + "}}}",
			"backendDefaults: {clientPolicy: {tls: {enforce: true, " + trust + "}}}",
		},
		// Only node listeners get the health check port, as the brief of Default says.
		{
			"gateway health check port untouched", KindVirtualGateway,
			"listeners: [{portMapping: {port: 8088, protocol: http}, healthCheck: {protocol: http}}]",
			"listeners: [{portMapping: {port: 8088, protocol: http}, healthCheck: {protocol: http}}]",
		},
		{"route untouched", KindRoute, "httpRoute: {match: {prefix: /}}", "httpRoute: {match: {prefix: /}}"},
		{"service untouched", KindVirtualService, "{}", "{}"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := decodeSpec(t, tc.kind, tc.spec)
			want := decodeSpec(t, tc.kind, tc.want)
			Default(tc.kind, spec)
			if diff := cmp.Diff(want, spec); diff != "" {
				t.Fatalf("Default (-want +got):\n%s", diff)
			}
			Default(tc.kind, spec)
			if diff := cmp.Diff(want, spec); diff != "" {
				t.Fatalf("Default twice (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDefaultDoesNotAlias(t *testing.T) {
	spec := decodeSpec(t, KindVirtualNode, "listeners: [{portMapping: {port: 8080, protocol: http}, healthCheck: {protocol: http}}]").(*VirtualNodeSpec)
	Default(KindVirtualNode, spec)
	*spec.Listeners[0].PortMapping.Port = 9090
	if got := *spec.Listeners[0].HealthCheck.Port; got != 8080 {
		t.Fatalf("healthCheck.port follows portMapping.port: %d", got)
	}
}

func TestDefaultNilSafe(t *testing.T) {
	for _, k := range Kinds {
		Default(k, nil)
		spec, _ := k.NewSpec()
		Default(k, spec)
	}
	Default(KindMesh, (*MeshSpec)(nil))
	Default(KindVirtualNode, (*VirtualNodeSpec)(nil))
	Default(KindVirtualGateway, (*VirtualGatewaySpec)(nil))
	// A spec of another kind, or a value, is left alone.
	node := &VirtualNodeSpec{}
	Default(KindMesh, node)
	mesh := MeshSpec{}
	Default(KindMesh, mesh)
	if mesh.EgressFilter != nil {
		t.Fatal("Default changed a value")
	}
}
