// SPDX-License-Identifier: Apache-2.0

package registry

import (
	"context"
	"net/netip"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

// Service is the gRPC service weft.nodeapi.v1.Registry over a Registry.
// Authentication is the gRPC server's (see controlplane/xds/server): any
// authenticated caller may register any node until node identities are
// bound to client certificates.
type Service struct {
	nodeapiv1.UnimplementedRegistryServer
	r *Registry
}

// Service returns the gRPC service of r.
func (r *Registry) Service() *Service { return &Service{r: r} }

// Register implements nodeapiv1.RegistryServer.
func (s *Service) Register(_ context.Context, req *nodeapiv1.RegisterRequest) (*nodeapiv1.RegisterResponse, error) {
	ins := make([]Instance, 0, len(req.GetInstances()))
	for i, in := range req.GetInstances() {
		addrs := make([]netip.Addr, 0, len(in.GetAddresses()))
		for _, a := range in.GetAddresses() {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "instances[%d]: address %q: %v", i, a, err)
			}
			addrs = append(addrs, ip)
		}
		ins = append(ins, Instance{
			ID: in.GetId(), CgroupPath: in.GetCgroupPath(), Mesh: in.GetMesh(), VirtualNode: in.GetVirtualNode(),
			Addresses: addrs, Ports: in.GetPorts(), Healthy: in.GetHealthy(), Attributes: in.GetAttributes(),
		})
	}
	var tunnel netip.AddrPort
	if t := req.GetTunnelAddress(); t != "" {
		ap, err := netip.ParseAddrPort(t)
		if err != nil || ap.Port() == 0 || ap.Addr().IsUnspecified() {
			return nil, status.Errorf(codes.InvalidArgument, "tunnel_address %q: want a reachable ip:port", t)
		}
		tunnel = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if err := s.r.RegisterNode(req.GetNode(), tunnel, ins); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &nodeapiv1.RegisterResponse{Lease: durationpb.New(s.r.TTL())}, nil
}

// Deregister implements nodeapiv1.RegistryServer.
func (s *Service) Deregister(_ context.Context, req *nodeapiv1.DeregisterRequest) (*nodeapiv1.DeregisterResponse, error) {
	if req.GetNode() == "" {
		return nil, status.Error(codes.InvalidArgument, "node: is required")
	}
	s.r.Deregister(req.GetNode())
	return &nodeapiv1.DeregisterResponse{}, nil
}
