// SPDX-License-Identifier: Apache-2.0

package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// TunnelMetadataKey is the filter_metadata namespace of an LbEndpoint that
// is reached through its node proxy's tunnel listener: {"node": <node id>,
// "tunnel": "<ip>:<port>"}, and "inbound_tls": true when the listener has
// App Mesh TLS. weft-proxy's cluster manager reads it (the same key is
// spelled out in agent/proxy/cluster); a stock Envoy ignores it.
const TunnelMetadataKey = "weft.tunnel"

// inboundTLS tells whether a node listener terminates App Mesh TLS (STRICT
// or PERMISSIVE), which only the inbound side of its node's proxy speaks,
// not the workload: then even a caller on the same node goes through the
// tunnel (docs/proxy.md, "Inbound side"). Every other endpoint with a
// tunnel is reached through it from other nodes only.
func inboundTLS(l *appmesh.Listener) bool {
	return l.TLS != nil && (l.TLS.Mode == appmesh.TLSStrict || l.TLS.Mode == appmesh.TLSPermissive)
}

// setTunnelMetadata marks the endpoints of cla whose node registered a
// tunnel listener. eps are the endpoints cla was made from; tlsIn is
// inboundTLS of their listener.
func setTunnelMetadata(cla *endpointv3.ClusterLoadAssignment, eps []Endpoint, tlsIn bool) {
	for _, loc := range cla.GetEndpoints() {
		for _, lbe := range loc.GetLbEndpoints() {
			sa := lbe.GetEndpoint().GetAddress().GetSocketAddress()
			for _, ep := range eps {
				if !ep.Tunnel.IsValid() || ep.Address.Unmap().String() != sa.GetAddress() || ep.Port != sa.GetPortValue() {
					continue
				}
				fields := map[string]*structpb.Value{
					"node":   structpb.NewStringValue(ep.Node),
					"tunnel": structpb.NewStringValue(ep.Tunnel.String()),
				}
				if tlsIn {
					fields["inbound_tls"] = structpb.NewBoolValue(true)
				}
				lbe.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{TunnelMetadataKey: {Fields: fields}}}
				break
			}
		}
	}
}
