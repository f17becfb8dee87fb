// SPDX-License-Identifier: Apache-2.0

package appmesh

// Default fills in, in place, the defaults that App Mesh's Describe returns:
// a mesh's egressFilter {type: DROP_ALL} when it is absent, a node listener's
// healthCheck.port (the listener port) when it is omitted, and
// clientPolicy.tls.enforce = true when it is omitted (node backends, node
// backendDefaults and gateway backendDefaults). The other defaults of the
// model (timeouts, retry policy, DNS response type...) are applied by the
// translator and never stored. Default is idempotent, does nothing for a nil
// spec, and never shares a pointer between two fields. spec is a pointer to
// the kind's spec struct; any other value is left alone.
func Default(kind Kind, spec any) {
	switch s := spec.(type) {
	case *MeshSpec:
		if kind == KindMesh && s != nil && s.EgressFilter == nil {
			s.EgressFilter = &EgressFilter{Type: EgressDropAll}
		}
	case *VirtualNodeSpec:
		if kind == KindVirtualNode && s != nil {
			defaultVirtualNode(s)
		}
	case *VirtualGatewaySpec:
		if kind == KindVirtualGateway && s != nil && s.BackendDefaults != nil {
			defaultClientPolicy(s.BackendDefaults.ClientPolicy)
		}
	}
}

func defaultVirtualNode(s *VirtualNodeSpec) {
	for i := range s.Listeners {
		l := &s.Listeners[i]
		if l.HealthCheck != nil && l.HealthCheck.Port == nil && l.PortMapping != nil && l.PortMapping.Port != nil {
			port := *l.PortMapping.Port
			l.HealthCheck.Port = &port
		}
	}
	for _, b := range s.Backends {
		if b.VirtualService != nil {
			defaultClientPolicy(b.VirtualService.ClientPolicy)
		}
	}
	if s.BackendDefaults != nil {
		defaultClientPolicy(s.BackendDefaults.ClientPolicy)
	}
}

func defaultClientPolicy(p *ClientPolicy) {
	if p != nil && p.TLS != nil && p.TLS.Enforce == nil {
		enforce := true
		p.TLS.Enforce = &enforce
	}
}
