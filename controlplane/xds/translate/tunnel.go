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
// "tunnel": "<ip>:<port>"}. weft-proxy's cluster manager reads it (the
// same key is spelled out in agent/proxy/cluster); a stock Envoy ignores
// it.
const TunnelMetadataKey = "weft.tunnel"

// servedInbound tells whether a node listener is served by the inbound
// side of its node's proxy: it terminates App Mesh listener TLS (STRICT or
// PERMISSIVE), which the workload itself does not speak. Callers then go
// through the tunnel of the endpoint's node (docs/proxy.md, "Inbound
// side"); a listener without TLS is dialled directly.
func servedInbound(l *appmesh.Listener) bool {
	return l.TLS != nil && (l.TLS.Mode == appmesh.TLSStrict || l.TLS.Mode == appmesh.TLSPermissive)
}

// setTunnelMetadata marks the endpoints of cla whose node registered a
// tunnel listener. eps are the endpoints cla was made from.
func setTunnelMetadata(cla *endpointv3.ClusterLoadAssignment, eps []Endpoint) {
	for _, loc := range cla.GetEndpoints() {
		for _, lbe := range loc.GetLbEndpoints() {
			sa := lbe.GetEndpoint().GetAddress().GetSocketAddress()
			for _, ep := range eps {
				if !ep.Tunnel.IsValid() || ep.Address.Unmap().String() != sa.GetAddress() || ep.Port != sa.GetPortValue() {
					continue
				}
				lbe.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
					TunnelMetadataKey: {Fields: map[string]*structpb.Value{
						"node":   structpb.NewStringValue(ep.Node),
						"tunnel": structpb.NewStringValue(ep.Tunnel.String()),
					}},
				}}
				break
			}
		}
	}
}
