// SPDX-License-Identifier: Apache-2.0

package restapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"reflect"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sdk "github.com/aws/aws-sdk-go-v2/service/appmesh"
	"github.com/aws/aws-sdk-go-v2/service/appmesh/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/google/go-cmp/cmp"

	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/controlplane/restapi"
	"github.com/weft-mesh/weft/controlplane/store/boltstore"
	"github.com/weft-mesh/weft/pkg/appmesh"
	"github.com/weft-mesh/weft/test/sdkconv"
)

const (
	testAccessKey = "AKIDWEFTTEST"
	testSecret    = "weft-test-secret"
)

// newServer starts the API over a fresh bbolt store and returns an SDK client
// of it that signs with SigV4 (the server checks the signatures).
func newServer(t *testing.T, q resources.Quotas) (*sdk.Client, *resources.Service) {
	t.Helper()
	st, err := boltstore.Open(t.TempDir()+"/weft.db", boltstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	svc, err := resources.New(st, resources.Config{Account: "123456789012", Region: "us-west-2", Quotas: q}, nil)
	if err != nil {
		t.Fatal(err)
	}
	auth := restapi.NewAuthenticator(restapi.AuthConfig{SigV4Keys: map[string]string{testAccessKey: testSecret}})
	h, err := restapi.New(svc, restapi.Options{Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return sdkClient(srv.URL, testAccessKey, testSecret), svc
}

func sdkClient(url, key, secret string) *sdk.Client {
	return sdk.New(sdk.Options{
		Region:           "us-west-2",
		BaseEndpoint:     aws.String(url),
		Credentials:      credentials.NewStaticCredentialsProvider(key, secret, ""),
		RetryMaxAttempts: 1,
	})
}

// ifMatch adds weft's optimistic-concurrency header to one SDK call.
func ifMatch(version int64) func(*sdk.Options) {
	return func(o *sdk.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Build.Add(middleware.BuildMiddlewareFunc("weftIfMatch", func(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
				if req, ok := in.Request.(*smithyhttp.Request); ok {
					req.Header.Set("If-Match", strconv.FormatInt(version, 10))
				}
				return next.HandleBuild(ctx, in)
			}), middleware.After)
		})
	}
}

// ops drives one kind through the SDK. Specs are App Mesh API JSON.
type ops struct {
	kind     appmesh.Kind
	parent   string
	create   func(ctx context.Context, c *sdk.Client, name, spec, token string) (*types.ResourceMetadata, error)
	describe func(ctx context.Context, c *sdk.Client, name string) (*types.ResourceMetadata, any, error)
	update   func(ctx context.Context, c *sdk.Client, name, spec string, opt ...func(*sdk.Options)) (*types.ResourceMetadata, error)
	list     func(ctx context.Context, c *sdk.Client, limit int32, next *string) ([]string, *string, error)
	delete   func(ctx context.Context, c *sdk.Client, name string, opt ...func(*sdk.Options)) (string, error)
	specs    [2]string // two valid specs
	// blocker creates something that keeps the resource name from being
	// deleted (ResourceInUse); nil for kinds that are never blocked.
	blocker func(ctx context.Context, c *sdk.Client, name string) error
}

func conv[T any](t *testing.T, spec string) *T {
	t.Helper()
	var v T
	var generic any
	if err := json.Unmarshal([]byte(spec), &generic); err != nil {
		t.Fatalf("spec %s: %v", spec, err)
	}
	if err := sdkconv.ToSDK(generic, &v); err != nil {
		t.Fatalf("spec %s: %v", spec, err)
	}
	return &v
}

const mesh = "m"

func allOps(t *testing.T) []ops {
	t.Helper()
	m := aws.String(mesh)
	return []ops{
		{
			kind:  appmesh.KindMesh,
			specs: [2]string{`{"egressFilter":{"type":"DROP_ALL"}}`, `{"egressFilter":{"type":"ALLOW_ALL"}}`},
			create: func(ctx context.Context, c *sdk.Client, name, spec, token string) (*types.ResourceMetadata, error) {
				o, err := c.CreateMesh(ctx, &sdk.CreateMeshInput{MeshName: &name, Spec: conv[types.MeshSpec](t, spec), ClientToken: tok(token)})
				if err != nil {
					return nil, err
				}
				return o.Mesh.Metadata, nil
			},
			describe: func(ctx context.Context, c *sdk.Client, name string) (*types.ResourceMetadata, any, error) {
				o, err := c.DescribeMesh(ctx, &sdk.DescribeMeshInput{MeshName: &name})
				if err != nil {
					return nil, nil, err
				}
				return o.Mesh.Metadata, o.Mesh.Spec, nil
			},
			update: func(ctx context.Context, c *sdk.Client, name, spec string, opt ...func(*sdk.Options)) (*types.ResourceMetadata, error) {
				o, err := c.UpdateMesh(ctx, &sdk.UpdateMeshInput{MeshName: &name, Spec: conv[types.MeshSpec](t, spec)}, opt...)
				if err != nil {
					return nil, err
				}
				return o.Mesh.Metadata, nil
			},
			list: func(ctx context.Context, c *sdk.Client, limit int32, next *string) ([]string, *string, error) {
				o, err := c.ListMeshes(ctx, &sdk.ListMeshesInput{Limit: &limit, NextToken: next})
				if err != nil {
					return nil, nil, err
				}
				var names []string
				for _, r := range o.Meshes {
					names = append(names, *r.MeshName)
				}
				return names, o.NextToken, nil
			},
			delete: func(ctx context.Context, c *sdk.Client, name string, opt ...func(*sdk.Options)) (string, error) {
				o, err := c.DeleteMesh(ctx, &sdk.DeleteMeshInput{MeshName: &name}, opt...)
				if err != nil {
					return "", err
				}
				return string(o.Mesh.Status.Status), nil
			},
			blocker: func(ctx context.Context, c *sdk.Client, name string) error {
				_, err := c.CreateVirtualRouter(ctx, &sdk.CreateVirtualRouterInput{
					MeshName: &name, VirtualRouterName: aws.String("blocker"),
					Spec: conv[types.VirtualRouterSpec](t, `{"listeners":[{"portMapping":{"port":80,"protocol":"http"}}]}`),
				})
				return err
			},
		},
		{
			kind: appmesh.KindVirtualNode,
			specs: [2]string{
				`{"listeners":[{"portMapping":{"port":8080,"protocol":"http"},"healthCheck":{"protocol":"http","path":"/ping","port":8080,"healthyThreshold":2,"unhealthyThreshold":2,"timeoutMillis":2000,"intervalMillis":5000}}],"serviceDiscovery":{"dns":{"hostname":"a.local"}},"backends":[{"virtualService":{"virtualServiceName":"s1.local"}}]}`,
				`{"listeners":[{"portMapping":{"port":8080,"protocol":"http"},"timeout":{"http":{"perRequest":{"unit":"s","value":30}}}}],"serviceDiscovery":{"awsCloudMap":{"namespaceName":"ns.local","serviceName":"svc","attributes":[{"key":"version","value":"v1"}]}},"logging":{"accessLog":{"file":{"path":"/dev/stdout","format":{"json":[{"key":"code","value":"%RESPONSE_CODE%"}]}}}}}`,
			},
			create: func(ctx context.Context, c *sdk.Client, name, spec, token string) (*types.ResourceMetadata, error) {
				o, err := c.CreateVirtualNode(ctx, &sdk.CreateVirtualNodeInput{MeshName: m, VirtualNodeName: &name, Spec: conv[types.VirtualNodeSpec](t, spec), ClientToken: tok(token)})
				if err != nil {
					return nil, err
				}
				return o.VirtualNode.Metadata, nil
			},
			describe: func(ctx context.Context, c *sdk.Client, name string) (*types.ResourceMetadata, any, error) {
				o, err := c.DescribeVirtualNode(ctx, &sdk.DescribeVirtualNodeInput{MeshName: m, VirtualNodeName: &name})
				if err != nil {
					return nil, nil, err
				}
				return o.VirtualNode.Metadata, o.VirtualNode.Spec, nil
			},
			update: func(ctx context.Context, c *sdk.Client, name, spec string, opt ...func(*sdk.Options)) (*types.ResourceMetadata, error) {
				o, err := c.UpdateVirtualNode(ctx, &sdk.UpdateVirtualNodeInput{MeshName: m, VirtualNodeName: &name, Spec: conv[types.VirtualNodeSpec](t, spec)}, opt...)
				if err != nil {
					return nil, err
				}
				return o.VirtualNode.Metadata, nil
			},
			list: func(ctx context.Context, c *sdk.Client, limit int32, next *string) ([]string, *string, error) {
				o, err := c.ListVirtualNodes(ctx, &sdk.ListVirtualNodesInput{MeshName: m, Limit: &limit, NextToken: next})
				if err != nil {
					return nil, nil, err
				}
				var names []string
				for _, r := range o.VirtualNodes {
					names = append(names, *r.VirtualNodeName)
				}
				return names, o.NextToken, nil
			},
			delete: func(ctx context.Context, c *sdk.Client, name string, opt ...func(*sdk.Options)) (string, error) {
				o, err := c.DeleteVirtualNode(ctx, &sdk.DeleteVirtualNodeInput{MeshName: m, VirtualNodeName: &name}, opt...)
				if err != nil {
					return "", err
				}
				return string(o.VirtualNode.Status.Status), nil
			},
			blocker: func(ctx context.Context, c *sdk.Client, name string) error {
				_, err := c.CreateVirtualService(ctx, &sdk.CreateVirtualServiceInput{
					MeshName: m, VirtualServiceName: aws.String("blocker.local"),
					Spec: conv[types.VirtualServiceSpec](t, `{"provider":{"virtualNode":{"virtualNodeName":"`+name+`"}}}`),
				})
				return err
			},
		},
		{
			kind: appmesh.KindVirtualService,
			specs: [2]string{
				`{"provider":{"virtualNode":{"virtualNodeName":"n1"}}}`,
				`{"provider":{"virtualRouter":{"virtualRouterName":"r1"}}}`,
			},
			create: func(ctx context.Context, c *sdk.Client, name, spec, token string) (*types.ResourceMetadata, error) {
				o, err := c.CreateVirtualService(ctx, &sdk.CreateVirtualServiceInput{MeshName: m, VirtualServiceName: &name, Spec: conv[types.VirtualServiceSpec](t, spec), ClientToken: tok(token)})
				if err != nil {
					return nil, err
				}
				return o.VirtualService.Metadata, nil
			},
			describe: func(ctx context.Context, c *sdk.Client, name string) (*types.ResourceMetadata, any, error) {
				o, err := c.DescribeVirtualService(ctx, &sdk.DescribeVirtualServiceInput{MeshName: m, VirtualServiceName: &name})
				if err != nil {
					return nil, nil, err
				}
				return o.VirtualService.Metadata, o.VirtualService.Spec, nil
			},
			update: func(ctx context.Context, c *sdk.Client, name, spec string, opt ...func(*sdk.Options)) (*types.ResourceMetadata, error) {
				o, err := c.UpdateVirtualService(ctx, &sdk.UpdateVirtualServiceInput{MeshName: m, VirtualServiceName: &name, Spec: conv[types.VirtualServiceSpec](t, spec)}, opt...)
				if err != nil {
					return nil, err
				}
				return o.VirtualService.Metadata, nil
			},
			list: func(ctx context.Context, c *sdk.Client, limit int32, next *string) ([]string, *string, error) {
				o, err := c.ListVirtualServices(ctx, &sdk.ListVirtualServicesInput{MeshName: m, Limit: &limit, NextToken: next})
				if err != nil {
					return nil, nil, err
				}
				var names []string
				for _, r := range o.VirtualServices {
					names = append(names, *r.VirtualServiceName)
				}
				return names, o.NextToken, nil
			},
			delete: func(ctx context.Context, c *sdk.Client, name string, opt ...func(*sdk.Options)) (string, error) {
				o, err := c.DeleteVirtualService(ctx, &sdk.DeleteVirtualServiceInput{MeshName: m, VirtualServiceName: &name}, opt...)
				if err != nil {
					return "", err
				}
				return string(o.VirtualService.Status.Status), nil
			},
			blocker: func(ctx context.Context, c *sdk.Client, name string) error {
				_, err := c.CreateGatewayRoute(ctx, &sdk.CreateGatewayRouteInput{
					MeshName: m, VirtualGatewayName: aws.String("g1"), GatewayRouteName: aws.String("blocker"),
					Spec: conv[types.GatewayRouteSpec](t, `{"httpRoute":{"match":{"prefix":"/blocker/"},"action":{"target":{"virtualService":{"virtualServiceName":"`+name+`"}}}}}`),
				})
				return err
			},
		},
		{
			kind: appmesh.KindVirtualRouter,
			specs: [2]string{
				`{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}`,
				`{"listeners":[{"portMapping":{"port":9090,"protocol":"grpc"}}]}`,
			},
			create: func(ctx context.Context, c *sdk.Client, name, spec, token string) (*types.ResourceMetadata, error) {
				o, err := c.CreateVirtualRouter(ctx, &sdk.CreateVirtualRouterInput{MeshName: m, VirtualRouterName: &name, Spec: conv[types.VirtualRouterSpec](t, spec), ClientToken: tok(token)})
				if err != nil {
					return nil, err
				}
				return o.VirtualRouter.Metadata, nil
			},
			describe: func(ctx context.Context, c *sdk.Client, name string) (*types.ResourceMetadata, any, error) {
				o, err := c.DescribeVirtualRouter(ctx, &sdk.DescribeVirtualRouterInput{MeshName: m, VirtualRouterName: &name})
				if err != nil {
					return nil, nil, err
				}
				return o.VirtualRouter.Metadata, o.VirtualRouter.Spec, nil
			},
			update: func(ctx context.Context, c *sdk.Client, name, spec string, opt ...func(*sdk.Options)) (*types.ResourceMetadata, error) {
				o, err := c.UpdateVirtualRouter(ctx, &sdk.UpdateVirtualRouterInput{MeshName: m, VirtualRouterName: &name, Spec: conv[types.VirtualRouterSpec](t, spec)}, opt...)
				if err != nil {
					return nil, err
				}
				return o.VirtualRouter.Metadata, nil
			},
			list: func(ctx context.Context, c *sdk.Client, limit int32, next *string) ([]string, *string, error) {
				o, err := c.ListVirtualRouters(ctx, &sdk.ListVirtualRoutersInput{MeshName: m, Limit: &limit, NextToken: next})
				if err != nil {
					return nil, nil, err
				}
				var names []string
				for _, r := range o.VirtualRouters {
					names = append(names, *r.VirtualRouterName)
				}
				return names, o.NextToken, nil
			},
			delete: func(ctx context.Context, c *sdk.Client, name string, opt ...func(*sdk.Options)) (string, error) {
				o, err := c.DeleteVirtualRouter(ctx, &sdk.DeleteVirtualRouterInput{MeshName: m, VirtualRouterName: &name}, opt...)
				if err != nil {
					return "", err
				}
				return string(o.VirtualRouter.Status.Status), nil
			},
			blocker: func(ctx context.Context, c *sdk.Client, name string) error {
				_, err := c.CreateVirtualService(ctx, &sdk.CreateVirtualServiceInput{
					MeshName: m, VirtualServiceName: aws.String("blocker-" + name + ".local"),
					Spec: conv[types.VirtualServiceSpec](t, `{"provider":{"virtualRouter":{"virtualRouterName":"`+name+`"}}}`),
				})
				return err
			},
		},
		{
			kind:   appmesh.KindRoute,
			parent: "r1",
			specs: [2]string{
				`{"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[{"virtualNode":"n1","weight":90},{"virtualNode":"n2","weight":10}]},"retryPolicy":{"maxRetries":2,"perRetryTimeout":{"unit":"ms","value":2000},"httpRetryEvents":["gateway-error"],"tcpRetryEvents":["connection-error"]}}}`,
				`{"priority":10,"httpRoute":{"match":{"path":{"exact":"/order"},"method":"POST","headers":[{"name":"x-tier","match":{"range":{"start":100,"end":200}},"invert":true}],"queryParameters":[{"name":"beta","match":{"exact":"true"}}]},"action":{"weightedTargets":[{"virtualNode":"n2","weight":1}]}}}`,
			},
			create: func(ctx context.Context, c *sdk.Client, name, spec, token string) (*types.ResourceMetadata, error) {
				o, err := c.CreateRoute(ctx, &sdk.CreateRouteInput{MeshName: m, VirtualRouterName: aws.String("r1"), RouteName: &name, Spec: conv[types.RouteSpec](t, spec), ClientToken: tok(token)})
				if err != nil {
					return nil, err
				}
				return o.Route.Metadata, nil
			},
			describe: func(ctx context.Context, c *sdk.Client, name string) (*types.ResourceMetadata, any, error) {
				o, err := c.DescribeRoute(ctx, &sdk.DescribeRouteInput{MeshName: m, VirtualRouterName: aws.String("r1"), RouteName: &name})
				if err != nil {
					return nil, nil, err
				}
				return o.Route.Metadata, o.Route.Spec, nil
			},
			update: func(ctx context.Context, c *sdk.Client, name, spec string, opt ...func(*sdk.Options)) (*types.ResourceMetadata, error) {
				o, err := c.UpdateRoute(ctx, &sdk.UpdateRouteInput{MeshName: m, VirtualRouterName: aws.String("r1"), RouteName: &name, Spec: conv[types.RouteSpec](t, spec)}, opt...)
				if err != nil {
					return nil, err
				}
				return o.Route.Metadata, nil
			},
			list: func(ctx context.Context, c *sdk.Client, limit int32, next *string) ([]string, *string, error) {
				o, err := c.ListRoutes(ctx, &sdk.ListRoutesInput{MeshName: m, VirtualRouterName: aws.String("r1"), Limit: &limit, NextToken: next})
				if err != nil {
					return nil, nil, err
				}
				var names []string
				for _, r := range o.Routes {
					names = append(names, *r.RouteName)
				}
				return names, o.NextToken, nil
			},
			delete: func(ctx context.Context, c *sdk.Client, name string, opt ...func(*sdk.Options)) (string, error) {
				o, err := c.DeleteRoute(ctx, &sdk.DeleteRouteInput{MeshName: m, VirtualRouterName: aws.String("r1"), RouteName: &name}, opt...)
				if err != nil {
					return "", err
				}
				return string(o.Route.Status.Status), nil
			},
		},
		{
			kind: appmesh.KindVirtualGateway,
			specs: [2]string{
				`{"listeners":[{"portMapping":{"port":8088,"protocol":"http"},"connectionPool":{"http":{"maxConnections":1024,"maxPendingRequests":2048}}}]}`,
				`{"listeners":[{"portMapping":{"port":8088,"protocol":"http"}}],"backendDefaults":{"clientPolicy":{"tls":{"enforce":true,"validation":{"trust":{"file":{"certificateChain":"/certs/ca.pem"}}}}}},"logging":{"accessLog":{"file":{"path":"/dev/stdout"}}}}`,
			},
			create: func(ctx context.Context, c *sdk.Client, name, spec, token string) (*types.ResourceMetadata, error) {
				o, err := c.CreateVirtualGateway(ctx, &sdk.CreateVirtualGatewayInput{MeshName: m, VirtualGatewayName: &name, Spec: conv[types.VirtualGatewaySpec](t, spec), ClientToken: tok(token)})
				if err != nil {
					return nil, err
				}
				return o.VirtualGateway.Metadata, nil
			},
			describe: func(ctx context.Context, c *sdk.Client, name string) (*types.ResourceMetadata, any, error) {
				o, err := c.DescribeVirtualGateway(ctx, &sdk.DescribeVirtualGatewayInput{MeshName: m, VirtualGatewayName: &name})
				if err != nil {
					return nil, nil, err
				}
				return o.VirtualGateway.Metadata, o.VirtualGateway.Spec, nil
			},
			update: func(ctx context.Context, c *sdk.Client, name, spec string, opt ...func(*sdk.Options)) (*types.ResourceMetadata, error) {
				o, err := c.UpdateVirtualGateway(ctx, &sdk.UpdateVirtualGatewayInput{MeshName: m, VirtualGatewayName: &name, Spec: conv[types.VirtualGatewaySpec](t, spec)}, opt...)
				if err != nil {
					return nil, err
				}
				return o.VirtualGateway.Metadata, nil
			},
			list: func(ctx context.Context, c *sdk.Client, limit int32, next *string) ([]string, *string, error) {
				o, err := c.ListVirtualGateways(ctx, &sdk.ListVirtualGatewaysInput{MeshName: m, Limit: &limit, NextToken: next})
				if err != nil {
					return nil, nil, err
				}
				var names []string
				for _, r := range o.VirtualGateways {
					names = append(names, *r.VirtualGatewayName)
				}
				return names, o.NextToken, nil
			},
			delete: func(ctx context.Context, c *sdk.Client, name string, opt ...func(*sdk.Options)) (string, error) {
				o, err := c.DeleteVirtualGateway(ctx, &sdk.DeleteVirtualGatewayInput{MeshName: m, VirtualGatewayName: &name}, opt...)
				if err != nil {
					return "", err
				}
				return string(o.VirtualGateway.Status.Status), nil
			},
			blocker: func(ctx context.Context, c *sdk.Client, name string) error {
				_, err := c.CreateGatewayRoute(ctx, &sdk.CreateGatewayRouteInput{
					MeshName: m, VirtualGatewayName: &name, GatewayRouteName: aws.String("blocker"),
					Spec: conv[types.GatewayRouteSpec](t, `{"httpRoute":{"match":{"prefix":"/"},"action":{"target":{"virtualService":{"virtualServiceName":"s1.local"}}}}}`),
				})
				return err
			},
		},
		{
			kind:   appmesh.KindGatewayRoute,
			parent: "g1",
			specs: [2]string{
				`{"priority":100,"httpRoute":{"match":{"prefix":"/colors/","hostname":{"suffix":".example.com"}},"action":{"target":{"virtualService":{"virtualServiceName":"s1.local"}}}}}`,
				`{"httpRoute":{"match":{"path":{"exact":"/status"},"method":"GET"},"action":{"target":{"virtualService":{"virtualServiceName":"s1.local"}},"rewrite":{"path":{"exact":"/ping"}}}}}`,
			},
			create: func(ctx context.Context, c *sdk.Client, name, spec, token string) (*types.ResourceMetadata, error) {
				o, err := c.CreateGatewayRoute(ctx, &sdk.CreateGatewayRouteInput{MeshName: m, VirtualGatewayName: aws.String("g1"), GatewayRouteName: &name, Spec: conv[types.GatewayRouteSpec](t, spec), ClientToken: tok(token)})
				if err != nil {
					return nil, err
				}
				return o.GatewayRoute.Metadata, nil
			},
			describe: func(ctx context.Context, c *sdk.Client, name string) (*types.ResourceMetadata, any, error) {
				o, err := c.DescribeGatewayRoute(ctx, &sdk.DescribeGatewayRouteInput{MeshName: m, VirtualGatewayName: aws.String("g1"), GatewayRouteName: &name})
				if err != nil {
					return nil, nil, err
				}
				return o.GatewayRoute.Metadata, o.GatewayRoute.Spec, nil
			},
			update: func(ctx context.Context, c *sdk.Client, name, spec string, opt ...func(*sdk.Options)) (*types.ResourceMetadata, error) {
				o, err := c.UpdateGatewayRoute(ctx, &sdk.UpdateGatewayRouteInput{MeshName: m, VirtualGatewayName: aws.String("g1"), GatewayRouteName: &name, Spec: conv[types.GatewayRouteSpec](t, spec)}, opt...)
				if err != nil {
					return nil, err
				}
				return o.GatewayRoute.Metadata, nil
			},
			list: func(ctx context.Context, c *sdk.Client, limit int32, next *string) ([]string, *string, error) {
				o, err := c.ListGatewayRoutes(ctx, &sdk.ListGatewayRoutesInput{MeshName: m, VirtualGatewayName: aws.String("g1"), Limit: &limit, NextToken: next})
				if err != nil {
					return nil, nil, err
				}
				var names []string
				for _, r := range o.GatewayRoutes {
					names = append(names, *r.GatewayRouteName)
				}
				return names, o.NextToken, nil
			},
			delete: func(ctx context.Context, c *sdk.Client, name string, opt ...func(*sdk.Options)) (string, error) {
				o, err := c.DeleteGatewayRoute(ctx, &sdk.DeleteGatewayRouteInput{MeshName: m, VirtualGatewayName: aws.String("g1"), GatewayRouteName: &name}, opt...)
				if err != nil {
					return "", err
				}
				return string(o.GatewayRoute.Status.Status), nil
			},
		},
	}
}

func tok(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// base creates the mesh and the resources the other kinds' specs refer to.
func base(ctx context.Context, t *testing.T, c *sdk.Client) {
	t.Helper()
	steps := []func() error{
		func() error {
			_, err := c.CreateMesh(ctx, &sdk.CreateMeshInput{MeshName: aws.String(mesh)})
			return err
		},
	}
	for _, n := range []string{"n1", "n2"} {
		steps = append(steps, func() error {
			_, err := c.CreateVirtualNode(ctx, &sdk.CreateVirtualNodeInput{
				MeshName: aws.String(mesh), VirtualNodeName: aws.String(n),
				Spec: conv[types.VirtualNodeSpec](t, `{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],"serviceDiscovery":{"dns":{"hostname":"`+n+`.local"}}}`),
			})
			return err
		})
	}
	steps = append(steps,
		func() error {
			_, err := c.CreateVirtualRouter(ctx, &sdk.CreateVirtualRouterInput{
				MeshName: aws.String(mesh), VirtualRouterName: aws.String("r1"),
				Spec: conv[types.VirtualRouterSpec](t, `{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}`),
			})
			return err
		},
		func() error {
			_, err := c.CreateVirtualService(ctx, &sdk.CreateVirtualServiceInput{
				MeshName: aws.String(mesh), VirtualServiceName: aws.String("s1.local"),
				Spec: conv[types.VirtualServiceSpec](t, `{"provider":{"virtualNode":{"virtualNodeName":"n1"}}}`),
			})
			return err
		},
		func() error {
			_, err := c.CreateVirtualGateway(ctx, &sdk.CreateVirtualGatewayInput{
				MeshName: aws.String(mesh), VirtualGatewayName: aws.String("g1"),
				Spec: conv[types.VirtualGatewaySpec](t, `{"listeners":[{"portMapping":{"port":8088,"protocol":"http"}}]}`),
			})
			return err
		},
	)
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("base step %d: %v", i, err)
		}
	}
}

// specJSON renders what the SDK returned as API JSON, and the spec we sent
// as the server should store it (with the defaults Describe returns).
func sameSpec(t *testing.T, kind appmesh.Kind, sent string, got any) {
	t.Helper()
	want, err := kind.NewSpec()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(sent), want); err != nil {
		t.Fatal(err)
	}
	appmesh.Default(kind, want)
	wantJSON, _ := json.Marshal(want)
	gotJSON, err := sdkconv.FromSDK(got)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	_ = json.Unmarshal(wantJSON, &a)
	_ = json.Unmarshal(gotJSON, &b)
	if d := cmp.Diff(a, b); d != "" {
		t.Errorf("spec read back through the SDK differs (-sent +got):\n%s", d)
	}
}

// errorIs checks that err is the App Mesh error T. The SDK types an error
// only for the operations whose model lists it (Delete operations do not list
// ConflictException, which weft returns for a stale If-Match); otherwise the
// error code must match.
func errorIs[T interface {
	error
	ErrorCode() string
}](t *testing.T, err error, what string) {
	t.Helper()
	var target T
	if errors.As(err, &target) {
		return
	}
	var ae smithy.APIError
	var zero T
	want := reflect.New(reflect.TypeOf(zero).Elem()).Interface().(T).ErrorCode()
	if errors.As(err, &ae) && ae.ErrorCode() == want {
		return
	}
	t.Fatalf("%s: got %v (%T), want %s", what, err, err, want)
}

func TestSDKEveryOperationOfEveryKind(t *testing.T) {
	for _, o := range allOps(t) {
		t.Run(string(o.kind), func(t *testing.T) {
			ctx := context.Background()
			c, _ := newServer(t, resources.Quotas{VirtualGatewaysPerMesh: 10})
			base(ctx, t, c)
			names := []string{"a", "b", "c"}
			if o.kind == appmesh.KindVirtualService {
				names = []string{"a.local", "b.local", "c.local"}
			}

			// Create.
			for _, n := range names {
				md, err := o.create(ctx, c, n, o.specs[0], "")
				if err != nil {
					t.Fatalf("create %s: %v", n, err)
				}
				if *md.Version != 1 || *md.MeshOwner != "123456789012" || *md.ResourceOwner != "123456789012" || md.Uid == nil || md.CreatedAt == nil {
					t.Fatalf("create %s: metadata %+v", n, md)
				}
			}
			// Create again: Conflict.
			if _, err := o.create(ctx, c, names[0], o.specs[0], ""); err == nil {
				t.Fatal("a second create of the same name succeeded")
			} else {
				errorIs[*types.ConflictException](t, err, "duplicate create")
			}
			// Describe: reads back equal.
			md, spec, err := o.describe(ctx, c, names[0])
			if err != nil {
				t.Fatalf("describe: %v", err)
			}
			sameSpec(t, o.kind, o.specs[0], spec)
			wantARN := "arn:aws:appmesh:us-west-2:123456789012:" + appmesh.Ref{Kind: o.kind, Mesh: mesh, Parent: o.parent, Name: names[0]}.ResourcePath()
			if o.kind == appmesh.KindMesh {
				wantARN = "arn:aws:appmesh:us-west-2:123456789012:mesh/" + names[0]
			}
			if *md.Arn != wantARN {
				t.Errorf("arn %s, want %s", *md.Arn, wantARN)
			}
			// Update: version 2, spec replaced.
			md, err = o.update(ctx, c, names[0], o.specs[1])
			if err != nil {
				t.Fatalf("update: %v", err)
			}
			if *md.Version != 2 {
				t.Errorf("version after update %d, want 2", *md.Version)
			}
			_, spec, err = o.describe(ctx, c, names[0])
			if err != nil {
				t.Fatal(err)
			}
			sameSpec(t, o.kind, o.specs[1], spec)
			// Stale version: Conflict, nothing changes.
			_, err = o.update(ctx, c, names[0], o.specs[0], ifMatch(1))
			errorIs[*types.ConflictException](t, err, "update with a stale version")
			if md, _, _ := o.describe(ctx, c, names[0]); *md.Version != 2 {
				t.Errorf("a refused update changed the version to %d", *md.Version)
			}
			// The right version passes.
			if md, err := o.update(ctx, c, names[0], o.specs[0], ifMatch(2)); err != nil || *md.Version != 3 {
				t.Fatalf("update with the current version: %v", err)
			}
			// List with pagination.
			var all []string
			var next *string
			pages := 0
			for {
				page, n, err := o.list(ctx, c, 2, next)
				if err != nil {
					t.Fatalf("list: %v", err)
				}
				if len(page) > 2 {
					t.Fatalf("page of %d with limit 2", len(page))
				}
				all = append(all, page...)
				pages++
				if next = n; next == nil {
					break
				}
			}
			for _, n := range names {
				if !contains(all, n) {
					t.Errorf("list misses %s: %v", n, all)
				}
			}
			if pages < 2 {
				t.Errorf("%d items came in %d page(s) with limit 2", len(all), pages)
			}
			// NotFound.
			_, _, err = o.describe(ctx, c, "missing")
			errorIs[*types.NotFoundException](t, err, "describe missing")
			_, err = o.update(ctx, c, "missing", o.specs[0])
			errorIs[*types.NotFoundException](t, err, "update missing")
			_, err = o.delete(ctx, c, "missing")
			errorIs[*types.NotFoundException](t, err, "delete missing")
			// ResourceInUse.
			if o.blocker != nil {
				if err := o.blocker(ctx, c, names[1]); err != nil {
					t.Fatalf("create the blocking resource: %v", err)
				}
				_, err = o.delete(ctx, c, names[1])
				errorIs[*types.ResourceInUseException](t, err, "delete while in use")
			}
			// Delete with a stale version: Conflict.
			_, err = o.delete(ctx, c, names[2], ifMatch(7))
			errorIs[*types.ConflictException](t, err, "delete with a stale version")
			// Delete.
			st, err := o.delete(ctx, c, names[2])
			if err != nil {
				t.Fatalf("delete: %v", err)
			}
			if st != "DELETED" {
				t.Errorf("delete returned status %s", st)
			}
			_, _, err = o.describe(ctx, c, names[2])
			errorIs[*types.NotFoundException](t, err, "describe after delete")
		})
	}
}

func TestSDKLimitExceededForEveryKind(t *testing.T) {
	for _, o := range allOps(t) {
		t.Run(string(o.kind), func(t *testing.T) {
			ctx := context.Background()
			q := resources.Quotas{}
			switch o.kind {
			case appmesh.KindMesh:
				q.MeshesPerAccount = 2 // the base mesh and one more
			case appmesh.KindVirtualNode:
				q.VirtualNodesPerMesh = 3 // n1, n2 and one more
			case appmesh.KindVirtualService:
				q.VirtualServicesPerMesh = 2
			case appmesh.KindVirtualRouter:
				q.VirtualRoutersPerMesh = 2
			case appmesh.KindRoute:
				q.RoutesPerVirtualRouter = 1
			case appmesh.KindVirtualGateway:
				q.VirtualGatewaysPerMesh = 2
			case appmesh.KindGatewayRoute:
				q.GatewayRoutesPerGateway = 1
			}
			c, _ := newServer(t, q)
			base(ctx, t, c)
			names := []string{"a", "b"}
			if o.kind == appmesh.KindVirtualService {
				names = []string{"a.local", "b.local"}
			}
			if _, err := o.create(ctx, c, names[0], o.specs[0], ""); err != nil {
				t.Fatalf("create within the quota: %v", err)
			}
			_, err := o.create(ctx, c, names[1], o.specs[0], "")
			errorIs[*types.LimitExceededException](t, err, "create over the quota")
		})
	}
}

func TestSDKClientTokenIdempotency(t *testing.T) {
	ctx := context.Background()
	c, _ := newServer(t, resources.Quotas{})
	base(ctx, t, c)
	for _, o := range allOps(t) {
		t.Run(string(o.kind), func(t *testing.T) {
			name := "idem"
			if o.kind == appmesh.KindVirtualService {
				name = "idem.local"
			}
			token := "tok-" + string(o.kind)
			first, err := o.create(ctx, c, name, o.specs[0], token)
			if err != nil {
				t.Fatal(err)
			}
			again, err := o.create(ctx, c, name, o.specs[0], token)
			if err != nil {
				t.Fatalf("the same create with the same clientToken: %v", err)
			}
			if *again.Uid != *first.Uid || *again.Version != 1 {
				t.Errorf("idempotent create returned uid %s version %d, want %s version 1", *again.Uid, *again.Version, *first.Uid)
			}
			_, err = o.create(ctx, c, name, o.specs[1], token)
			errorIs[*types.ConflictException](t, err, "same clientToken, different body")
		})
	}
}

func TestSDKTags(t *testing.T) {
	ctx := context.Background()
	c, _ := newServer(t, resources.Quotas{})
	out, err := c.CreateMesh(ctx, &sdk.CreateMeshInput{MeshName: aws.String("tagged"), Tags: []types.TagRef{{Key: aws.String("team"), Value: aws.String("shop")}}})
	if err != nil {
		t.Fatal(err)
	}
	arn := out.Mesh.Metadata.Arn
	if _, err := c.TagResource(ctx, &sdk.TagResourceInput{ResourceArn: arn, Tags: []types.TagRef{{Key: aws.String("env"), Value: aws.String("prod")}, {Key: aws.String("team"), Value: aws.String("pay")}}}); err != nil {
		t.Fatal(err)
	}
	lt, err := c.ListTagsForResource(ctx, &sdk.ListTagsForResourceInput{ResourceArn: arn})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, tg := range lt.Tags {
		got[*tg.Key] = *tg.Value
	}
	if d := cmp.Diff(map[string]string{"team": "pay", "env": "prod"}, got); d != "" {
		t.Errorf("tags (-want +got):\n%s", d)
	}
	if _, err := c.UntagResource(ctx, &sdk.UntagResourceInput{ResourceArn: arn, TagKeys: []string{"team"}}); err != nil {
		t.Fatal(err)
	}
	lt, err = c.ListTagsForResource(ctx, &sdk.ListTagsForResourceInput{ResourceArn: arn})
	if err != nil {
		t.Fatal(err)
	}
	if len(lt.Tags) != 1 || *lt.Tags[0].Key != "env" {
		t.Errorf("after untag: %+v", lt.Tags)
	}
	var many []types.TagRef
	for i := range 51 {
		many = append(many, types.TagRef{Key: aws.String(fmt.Sprint("k", i)), Value: aws.String("v")})
	}
	_, err = c.TagResource(ctx, &sdk.TagResourceInput{ResourceArn: arn, Tags: many})
	errorIs[*types.TooManyTagsException](t, err, "51 tags")
}

func TestSDKSignatureChecked(t *testing.T) {
	ctx := context.Background()
	c, _ := newServer(t, resources.Quotas{})
	if _, err := c.ListMeshes(ctx, &sdk.ListMeshesInput{}); err != nil {
		t.Fatalf("a correctly signed request was refused: %v", err)
	}
	// Fresh clients: a copy of c's options keeps c's resolved identity.
	bad := sdkClient(*c.Options().BaseEndpoint, testAccessKey, "wrong-secret")
	_, err := bad.ListMeshes(ctx, &sdk.ListMeshesInput{})
	errorIs[*types.ForbiddenException](t, err, "wrong secret")
	unknown := sdkClient(*c.Options().BaseEndpoint, "AKIDUNKNOWN", testSecret)
	_, err = unknown.ListMeshes(ctx, &sdk.ListMeshesInput{})
	errorIs[*types.ForbiddenException](t, err, "unknown key")
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
