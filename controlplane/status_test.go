// SPDX-License-Identifier: Apache-2.0

package controlplane_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sdk "github.com/aws/aws-sdk-go-v2/service/appmesh"
	"github.com/aws/aws-sdk-go-v2/service/appmesh/types"

	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/pkg/appmesh"
	"github.com/weft-mesh/weft/pkg/ctl"
	"github.com/weft-mesh/weft/pkg/xdsclient"
)

// routeSpec is an HTTP route on prefix to web; header, when set, is a
// header the route must see.
func routeSpec(prefix, header string) *appmesh.RouteSpec {
	one := int32(1)
	m := &appmesh.HTTPRouteMatch{Prefix: &prefix}
	if header != "" {
		m.Headers = []appmesh.HTTPRouteHeader{{Name: header}}
	}
	return &appmesh.RouteSpec{HTTPRoute: &appmesh.HTTPRoute{
		Match:  m,
		Action: &appmesh.HTTPRouteAction{WeightedTargets: []appmesh.WeightedTarget{{VirtualNode: "web", Weight: &one}}},
	}}
}

// TestProblemsInStatus: a route Envoy rejects (a header name with a line
// feed, which App Mesh's rules let through) is INACTIVE with the reason in
// the REST API, for the AWS SDK and in weftctl describe; the other
// resources stay ACTIVE and are translated; fixing the route makes it
// ACTIVE again. Nothing of it is written to the store.
func TestProblemsInStatus(t *testing.T) {
	checkLeaks(t)
	addr := freeAddr(t)
	tc := startController(t, t.TempDir(), addr, nil)
	svc := tc.c.Service()
	ctx := context.Background()
	createWorld(t, svc)
	router := appmesh.Ref{Kind: appmesh.KindVirtualRouter, Mesh: "demo", Name: "api"}
	good := appmesh.Ref{Kind: appmesh.KindRoute, Mesh: "demo", Parent: "api", Name: "good"}
	bad := appmesh.Ref{Kind: appmesh.KindRoute, Mesh: "demo", Parent: "api", Name: "bad"}
	for _, in := range []resources.CreateInput{
		{Ref: router, Spec: &appmesh.VirtualRouterSpec{Listeners: []appmesh.VirtualRouterListener{{PortMapping: &appmesh.PortMapping{Port: ptr32(8080), Protocol: appmesh.ProtocolHTTP}}}}},
		{Ref: good, Spec: routeSpec("/", "")},
		{Ref: bad, Spec: routeSpec("/bad", "x\ny")},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: "demo", Name: "api.demo.local"}, Spec: &appmesh.VirtualServiceSpec{
			Provider: &appmesh.VirtualServiceProvider{VirtualRouter: &appmesh.VirtualRouterServiceProvider{VirtualRouterName: "api"}},
		}},
	} {
		if _, err := svc.Create(ctx, in); err != nil {
			t.Fatalf("create %s: %v", in.Ref.ResourcePath(), err)
		}
	}
	frontRef := appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "demo", Name: "front"}
	cur, err := svc.Describe(ctx, frontRef, "")
	if err != nil {
		t.Fatal(err)
	}
	front := cur.Spec.(*appmesh.VirtualNodeSpec)
	front.Backends = append(front.Backends, appmesh.Backend{VirtualService: &appmesh.VirtualServiceBackend{VirtualServiceName: "api.demo.local"}})
	if _, err := svc.Update(ctx, resources.UpdateInput{Ref: frontRef, Spec: front}); err != nil {
		t.Fatal(err)
	}

	// front's routes for api.demo.local, as its proxy gets them.
	var (
		mu     sync.Mutex
		routes []string
	)
	pc, err := xdsclient.Subscribe(dial(t, addr), fastBackoff(xdsclient.Config{NodeID: frontID}), func(_ context.Context, r xdsclient.ProxyResources) error {
		mu.Lock()
		defer mu.Unlock()
		routes = nil
		for _, rc := range r.Routes {
			for _, vh := range rc.GetVirtualHosts() {
				if vh.GetName() == "api.demo.local" {
					for _, rt := range vh.GetRoutes() {
						routes = append(routes, rt.GetName())
					}
				}
			}
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopPC := runClient(t, pc)
	frontRoutes := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(routes)
	}

	waitFor(t, "the bad route's problem", func() bool {
		got, err := svc.Describe(ctx, bad, "")
		return err == nil && got.Status.Status == appmesh.StatusInactive
	})
	waitFor(t, "the good route in front's configuration", func() bool { return slices.Equal(frontRoutes(), []string{"good"}) })

	base := "http://" + tc.c.Addr().String()
	// The REST API: status INACTIVE with weft's message.
	var raw struct {
		Status struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"status"`
	}
	resp, err := http.Get(base + "/v20190125/meshes/demo/virtualRouter/api/routes/bad")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&raw)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if raw.Status.Status != "INACTIVE" || !strings.Contains(raw.Status.Message, "envoy rejects the route") || !strings.Contains(raw.Status.Message, "HeaderMatcher.Name") {
		t.Errorf("REST status of the bad route = %+v", raw.Status)
	}
	// The others are ACTIVE, without a message.
	for _, path := range []string{
		"/v20190125/meshes/demo/virtualRouter/api/routes/good",
		"/v20190125/meshes/demo/virtualRouters/api",
		"/v20190125/meshes/demo/virtualNodes/front",
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(b.String(), `"status":{"status":"ACTIVE"}`) {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, b.String())
		}
	}

	// The AWS SDK reads the status and ignores the message.
	client := sdk.New(sdk.Options{
		Region: "local", BaseEndpoint: aws.String(base), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", ""),
	})
	out, err := client.DescribeRoute(ctx, &sdk.DescribeRouteInput{MeshName: aws.String("demo"), VirtualRouterName: aws.String("api"), RouteName: aws.String("bad")})
	if err != nil {
		t.Fatalf("SDK DescribeRoute: %v", err)
	}
	if out.Route.Status == nil || out.Route.Status.Status != types.RouteStatusCodeInactive || aws.ToString(out.Route.RouteName) != "bad" {
		t.Errorf("SDK: route %+v, status %+v", out.Route, out.Route.Status)
	}
	if out, err := client.DescribeRoute(ctx, &sdk.DescribeRouteInput{MeshName: aws.String("demo"), VirtualRouterName: aws.String("api"), RouteName: aws.String("good")}); err != nil || out.Route.Status.Status != types.RouteStatusCodeActive {
		t.Errorf("SDK: good route %v", err)
	}

	// weftctl describe.
	weftctl := func(args ...string) string {
		t.Helper()
		var o, e bytes.Buffer
		if err := ctl.Run(ctx, append([]string{"--server", base}, args...), ctl.IO{In: strings.NewReader(""), Out: &o, Err: &e}); err != nil {
			t.Fatalf("weftctl %v: %v (%s)", args, err, e.String())
		}
		return o.String()
	}
	desc := weftctl("describe", "route", "bad", "--mesh", "demo", "--router", "api")
	if !strings.Contains(desc, "Status:          INACTIVE") || !strings.Contains(desc, "Message:         envoy rejects the route") {
		t.Errorf("weftctl describe of the bad route:\n%s", desc)
	}
	if desc := weftctl("describe", "route", "good", "--mesh", "demo", "--router", "api"); !strings.Contains(desc, "ACTIVE") || strings.Contains(desc, "Message:") {
		t.Errorf("weftctl describe of the good route:\n%s", desc)
	}

	// Nothing was written: the store holds ACTIVE.
	all, _, err := svc.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		if r.Status.Status != appmesh.StatusActive || r.Status.Message != "" {
			t.Errorf("stored status of %s: %+v", r.Ref.ResourcePath(), r.Status)
		}
	}

	// Fixing the route brings it back.
	if _, err := svc.Update(ctx, resources.UpdateInput{Ref: bad, Spec: routeSpec("/bad", "x-y")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fixed route in front's configuration", func() bool { return slices.Equal(frontRoutes(), []string{"bad", "good"}) })
	waitFor(t, "no problem", func() bool { return len(tc.c.Syncer().Problems()) == 0 })
	if got, err := svc.Describe(ctx, bad, ""); err != nil || got.Status != (appmesh.ResourceStatus{Status: appmesh.StatusActive}) {
		t.Errorf("fixed route status %+v (%v)", got.Status, err)
	}
	if desc := weftctl("describe", "route", "bad", "--mesh", "demo", "--router", "api"); strings.Contains(desc, "INACTIVE") || strings.Contains(desc, "Message:") {
		t.Errorf("weftctl describe of the fixed route:\n%s", desc)
	}
	stopPC()
	tc.stop()
}
