// SPDX-License-Identifier: Apache-2.0

package sdkconv

import (
	"context"
	"encoding/json"
	"fmt"

	sdk "github.com/aws/aws-sdk-go-v2/service/appmesh"
	"github.com/aws/aws-sdk-go-v2/service/appmesh/types"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// Create creates r through the SDK client, with r's tags.
func Create(ctx context.Context, c *sdk.Client, r *appmesh.Resource) error {
	m, p, n := &r.Ref.Mesh, &r.Ref.Parent, &r.Ref.Name
	var tags []types.TagRef
	for _, t := range r.Tags {
		tags = append(tags, types.TagRef{Key: &t.Key, Value: t.Value})
	}
	var err error
	switch r.Ref.Kind {
	case appmesh.KindMesh:
		var s types.MeshSpec
		if err = ToSDK(r.Spec, &s); err == nil {
			_, err = c.CreateMesh(ctx, &sdk.CreateMeshInput{MeshName: n, Spec: &s, Tags: tags})
		}
	case appmesh.KindVirtualNode:
		var s types.VirtualNodeSpec
		if err = ToSDK(r.Spec, &s); err == nil {
			_, err = c.CreateVirtualNode(ctx, &sdk.CreateVirtualNodeInput{MeshName: m, VirtualNodeName: n, Spec: &s, Tags: tags})
		}
	case appmesh.KindVirtualService:
		var s types.VirtualServiceSpec
		if err = ToSDK(r.Spec, &s); err == nil {
			_, err = c.CreateVirtualService(ctx, &sdk.CreateVirtualServiceInput{MeshName: m, VirtualServiceName: n, Spec: &s, Tags: tags})
		}
	case appmesh.KindVirtualRouter:
		var s types.VirtualRouterSpec
		if err = ToSDK(r.Spec, &s); err == nil {
			_, err = c.CreateVirtualRouter(ctx, &sdk.CreateVirtualRouterInput{MeshName: m, VirtualRouterName: n, Spec: &s, Tags: tags})
		}
	case appmesh.KindRoute:
		var s types.RouteSpec
		if err = ToSDK(r.Spec, &s); err == nil {
			_, err = c.CreateRoute(ctx, &sdk.CreateRouteInput{MeshName: m, VirtualRouterName: p, RouteName: n, Spec: &s, Tags: tags})
		}
	case appmesh.KindVirtualGateway:
		var s types.VirtualGatewaySpec
		if err = ToSDK(r.Spec, &s); err == nil {
			_, err = c.CreateVirtualGateway(ctx, &sdk.CreateVirtualGatewayInput{MeshName: m, VirtualGatewayName: n, Spec: &s, Tags: tags})
		}
	case appmesh.KindGatewayRoute:
		var s types.GatewayRouteSpec
		if err = ToSDK(r.Spec, &s); err == nil {
			_, err = c.CreateGatewayRoute(ctx, &sdk.CreateGatewayRouteInput{MeshName: m, VirtualGatewayName: p, GatewayRouteName: n, Spec: &s, Tags: tags})
		}
	default:
		err = fmt.Errorf("unknown kind %q", r.Ref.Kind)
	}
	return err
}

// Update replaces r's spec through the SDK client and returns the version.
func Update(ctx context.Context, c *sdk.Client, r *appmesh.Resource) (int64, error) {
	m, p, n := &r.Ref.Mesh, &r.Ref.Parent, &r.Ref.Name
	var md *types.ResourceMetadata
	var err error
	switch r.Ref.Kind {
	case appmesh.KindMesh:
		var s types.MeshSpec
		if err = ToSDK(r.Spec, &s); err == nil {
			var o *sdk.UpdateMeshOutput
			if o, err = c.UpdateMesh(ctx, &sdk.UpdateMeshInput{MeshName: n, Spec: &s}); err == nil {
				md = o.Mesh.Metadata
			}
		}
	case appmesh.KindVirtualNode:
		var s types.VirtualNodeSpec
		if err = ToSDK(r.Spec, &s); err == nil {
			var o *sdk.UpdateVirtualNodeOutput
			if o, err = c.UpdateVirtualNode(ctx, &sdk.UpdateVirtualNodeInput{MeshName: m, VirtualNodeName: n, Spec: &s}); err == nil {
				md = o.VirtualNode.Metadata
			}
		}
	case appmesh.KindVirtualService:
		var s types.VirtualServiceSpec
		if err = ToSDK(r.Spec, &s); err == nil {
			var o *sdk.UpdateVirtualServiceOutput
			if o, err = c.UpdateVirtualService(ctx, &sdk.UpdateVirtualServiceInput{MeshName: m, VirtualServiceName: n, Spec: &s}); err == nil {
				md = o.VirtualService.Metadata
			}
		}
	case appmesh.KindVirtualRouter:
		var s types.VirtualRouterSpec
		if err = ToSDK(r.Spec, &s); err == nil {
			var o *sdk.UpdateVirtualRouterOutput
			if o, err = c.UpdateVirtualRouter(ctx, &sdk.UpdateVirtualRouterInput{MeshName: m, VirtualRouterName: n, Spec: &s}); err == nil {
				md = o.VirtualRouter.Metadata
			}
		}
	case appmesh.KindRoute:
		var s types.RouteSpec
		if err = ToSDK(r.Spec, &s); err == nil {
			var o *sdk.UpdateRouteOutput
			if o, err = c.UpdateRoute(ctx, &sdk.UpdateRouteInput{MeshName: m, VirtualRouterName: p, RouteName: n, Spec: &s}); err == nil {
				md = o.Route.Metadata
			}
		}
	case appmesh.KindVirtualGateway:
		var s types.VirtualGatewaySpec
		if err = ToSDK(r.Spec, &s); err == nil {
			var o *sdk.UpdateVirtualGatewayOutput
			if o, err = c.UpdateVirtualGateway(ctx, &sdk.UpdateVirtualGatewayInput{MeshName: m, VirtualGatewayName: n, Spec: &s}); err == nil {
				md = o.VirtualGateway.Metadata
			}
		}
	case appmesh.KindGatewayRoute:
		var s types.GatewayRouteSpec
		if err = ToSDK(r.Spec, &s); err == nil {
			var o *sdk.UpdateGatewayRouteOutput
			if o, err = c.UpdateGatewayRoute(ctx, &sdk.UpdateGatewayRouteInput{MeshName: m, VirtualGatewayName: p, GatewayRouteName: n, Spec: &s}); err == nil {
				md = o.GatewayRoute.Metadata
			}
		}
	default:
		err = fmt.Errorf("unknown kind %q", r.Ref.Kind)
	}
	if err != nil {
		return 0, err
	}
	return *md.Version, nil
}

// Describe reads a resource through the SDK client and returns its spec as
// App Mesh API JSON and its version.
func Describe(ctx context.Context, c *sdk.Client, ref appmesh.Ref) (json.RawMessage, int64, error) {
	m, p, n := &ref.Mesh, &ref.Parent, &ref.Name
	var spec any
	var md *types.ResourceMetadata
	var err error
	switch ref.Kind {
	case appmesh.KindMesh:
		var o *sdk.DescribeMeshOutput
		if o, err = c.DescribeMesh(ctx, &sdk.DescribeMeshInput{MeshName: n}); err == nil {
			spec, md = o.Mesh.Spec, o.Mesh.Metadata
		}
	case appmesh.KindVirtualNode:
		var o *sdk.DescribeVirtualNodeOutput
		if o, err = c.DescribeVirtualNode(ctx, &sdk.DescribeVirtualNodeInput{MeshName: m, VirtualNodeName: n}); err == nil {
			spec, md = o.VirtualNode.Spec, o.VirtualNode.Metadata
		}
	case appmesh.KindVirtualService:
		var o *sdk.DescribeVirtualServiceOutput
		if o, err = c.DescribeVirtualService(ctx, &sdk.DescribeVirtualServiceInput{MeshName: m, VirtualServiceName: n}); err == nil {
			spec, md = o.VirtualService.Spec, o.VirtualService.Metadata
		}
	case appmesh.KindVirtualRouter:
		var o *sdk.DescribeVirtualRouterOutput
		if o, err = c.DescribeVirtualRouter(ctx, &sdk.DescribeVirtualRouterInput{MeshName: m, VirtualRouterName: n}); err == nil {
			spec, md = o.VirtualRouter.Spec, o.VirtualRouter.Metadata
		}
	case appmesh.KindRoute:
		var o *sdk.DescribeRouteOutput
		if o, err = c.DescribeRoute(ctx, &sdk.DescribeRouteInput{MeshName: m, VirtualRouterName: p, RouteName: n}); err == nil {
			spec, md = o.Route.Spec, o.Route.Metadata
		}
	case appmesh.KindVirtualGateway:
		var o *sdk.DescribeVirtualGatewayOutput
		if o, err = c.DescribeVirtualGateway(ctx, &sdk.DescribeVirtualGatewayInput{MeshName: m, VirtualGatewayName: n}); err == nil {
			spec, md = o.VirtualGateway.Spec, o.VirtualGateway.Metadata
		}
	case appmesh.KindGatewayRoute:
		var o *sdk.DescribeGatewayRouteOutput
		if o, err = c.DescribeGatewayRoute(ctx, &sdk.DescribeGatewayRouteInput{MeshName: m, VirtualGatewayName: p, GatewayRouteName: n}); err == nil {
			spec, md = o.GatewayRoute.Spec, o.GatewayRoute.Metadata
		}
	default:
		err = fmt.Errorf("unknown kind %q", ref.Kind)
	}
	if err != nil {
		return nil, 0, err
	}
	js, err := FromSDK(spec)
	return js, *md.Version, err
}
