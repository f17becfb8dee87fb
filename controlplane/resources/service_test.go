// SPDX-License-Identifier: Apache-2.0

package resources_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/controlplane/store"
	"github.com/weft-mesh/weft/controlplane/store/boltstore"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

type fixture struct {
	svc *resources.Service
	st  store.Store
	now time.Time
}

func newFixture(t *testing.T, q resources.Quotas) *fixture {
	t.Helper()
	st, err := boltstore.Open(t.TempDir()+"/weft.db", boltstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	f := &fixture{st: st, now: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)}
	f.svc, err = resources.New(st, resources.Config{Quotas: q, Now: func() time.Time { return f.now }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func spec[T any](t *testing.T, js string) *T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(js), &v); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return &v
}

func ref(kind appmesh.Kind, parent, name string) appmesh.Ref {
	return appmesh.Ref{Kind: kind, Mesh: "m", Parent: parent, Name: name}
}

var (
	meshRef   = appmesh.Ref{Kind: appmesh.KindMesh, Name: "m"}
	nodeSpec  = `{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],"serviceDiscovery":{"dns":{"hostname":"x.local"}}}`
	node2Spec = `{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}},{"portMapping":{"port":9090,"protocol":"http"}}],"serviceDiscovery":{"dns":{"hostname":"x.local"}}}`
)

// base applies a mesh, nodes blue and green, router color with route canary,
// and service color.local provided by the router.
func (f *fixture) base(t *testing.T) {
	t.Helper()
	items := []resources.ApplyItem{
		{Ref: meshRef},
		{Ref: ref(appmesh.KindVirtualNode, "", "blue"), Spec: spec[appmesh.VirtualNodeSpec](t, nodeSpec)},
		{Ref: ref(appmesh.KindVirtualNode, "", "green"), Spec: spec[appmesh.VirtualNodeSpec](t, nodeSpec)},
		{Ref: ref(appmesh.KindVirtualRouter, "", "color"), Spec: spec[appmesh.VirtualRouterSpec](t, `{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}`)},
		{Ref: ref(appmesh.KindRoute, "color", "canary"), Spec: spec[appmesh.RouteSpec](t, `{"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[{"virtualNode":"blue","weight":90},{"virtualNode":"green","weight":10}]}}}`)},
		{Ref: ref(appmesh.KindVirtualService, "", "color.local"), Spec: spec[appmesh.VirtualServiceSpec](t, `{"provider":{"virtualRouter":{"virtualRouterName":"color"}}}`)},
	}
	if _, err := f.svc.Apply(context.Background(), items, false); err != nil {
		t.Fatal(err)
	}
}

// dump is every key and value of the store.
func (f *fixture) dump(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := f.st.View(context.Background(), func(tx store.Reader) error {
		kvs, err := tx.List("", "", 0)
		for _, kv := range kvs {
			out[kv.Key] = string(kv.Value)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantType(t *testing.T, err error, typ appmesh.ErrorType, substr string) {
	t.Helper()
	if !appmesh.IsType(err, typ) {
		t.Fatalf("got %v (type %s), want %s", err, appmesh.TypeOf(err), typ)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q does not mention %q", err, substr)
	}
}

func TestDeleteBlockedWhileReferencedNamesTheReferrer(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, resources.Quotas{})
	f.base(t)
	cases := []struct {
		name   string
		ref    appmesh.Ref
		substr string
	}{
		{"node targeted by a route", ref(appmesh.KindVirtualNode, "", "blue"), "mesh/m/virtualRouter/color/route/canary"},
		{"router with routes", ref(appmesh.KindVirtualRouter, "", "color"), "route/canary"},
		{"mesh with resources", meshRef, "delete them first"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.dump(t)
			_, err := f.svc.Delete(ctx, resources.DeleteInput{Ref: tc.ref})
			wantType(t, err, appmesh.ErrResourceInUse, tc.substr)
			if d := cmp.Diff(before, f.dump(t)); d != "" {
				t.Errorf("a refused delete changed the store:\n%s", d)
			}
		})
	}
	// Delete in dependency order: each step unblocks the next.
	for _, r := range []appmesh.Ref{
		ref(appmesh.KindVirtualService, "", "color.local"),
		ref(appmesh.KindRoute, "color", "canary"),
		ref(appmesh.KindVirtualRouter, "", "color"),
		ref(appmesh.KindVirtualNode, "", "blue"),
		ref(appmesh.KindVirtualNode, "", "green"),
		meshRef,
	} {
		res, err := f.svc.Delete(ctx, resources.DeleteInput{Ref: r})
		if err != nil {
			t.Fatalf("delete %s: %v", r, err)
		}
		if res.Status.Status != appmesh.StatusDeleted {
			t.Errorf("delete %s returned status %s", r, res.Status.Status)
		}
	}
	if d := f.dump(t); len(d) != 0 {
		t.Errorf("store not empty after deleting everything: %v", d)
	}
}

func TestBackendsMayDangleAndDoNotBlockDeletes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, resources.Quotas{})
	f.base(t)
	front := ref(appmesh.KindVirtualNode, "", "front")
	_, err := f.svc.Create(ctx, resources.CreateInput{Ref: front, Spec: spec[appmesh.VirtualNodeSpec](t, `{"backends":[{"virtualService":{"virtualServiceName":"not-yet.local"}},{"virtualService":{"virtualServiceName":"color.local"}}]}`)})
	if err != nil {
		t.Fatalf("a node with a dangling backend: %v", err)
	}
	if _, err := f.svc.Delete(ctx, resources.DeleteInput{Ref: ref(appmesh.KindVirtualService, "", "color.local")}); err != nil {
		t.Fatalf("deleting a service that is only a backend: %v", err)
	}
}

func TestReferencesMustExist(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, resources.Quotas{})
	f.base(t)
	before := f.dump(t)
	_, err := f.svc.Create(ctx, resources.CreateInput{
		Ref:  ref(appmesh.KindRoute, "color", "r2"),
		Spec: spec[appmesh.RouteSpec](t, `{"httpRoute":{"match":{"prefix":"/x"},"action":{"weightedTargets":[{"virtualNode":"nope","weight":1}]}}}`),
	})
	wantType(t, err, appmesh.ErrNotFound, "weightedTargets[0].virtualNode")
	_, err = f.svc.Create(ctx, resources.CreateInput{
		Ref:  ref(appmesh.KindRoute, "nope", "r2"),
		Spec: spec[appmesh.RouteSpec](t, `{"httpRoute":{"match":{"prefix":"/x"},"action":{"weightedTargets":[{"virtualNode":"blue","weight":1}]}}}`),
	})
	wantType(t, err, appmesh.ErrNotFound, `virtualRouterName: virtual router "nope" not found`)
	_, err = f.svc.Create(ctx, resources.CreateInput{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "other", Name: "n"}})
	wantType(t, err, appmesh.ErrNotFound, `mesh "other"`)
	if d := cmp.Diff(before, f.dump(t)); d != "" {
		t.Errorf("refused creates changed the store:\n%s", d)
	}
}

func TestUpdateThatBreaksADependentIsRefused(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, resources.Quotas{})
	f.base(t)
	before := f.dump(t)
	// A second router listener would leave route canary without match.port.
	_, err := f.svc.Update(ctx, resources.UpdateInput{
		Ref:  ref(appmesh.KindVirtualRouter, "", "color"),
		Spec: spec[appmesh.VirtualRouterSpec](t, `{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}},{"portMapping":{"port":9090,"protocol":"http"}}]}`),
	})
	wantType(t, err, appmesh.ErrBadRequest, "route/canary")
	// A second node listener would leave the route's target without a port.
	_, err = f.svc.Update(ctx, resources.UpdateInput{Ref: ref(appmesh.KindVirtualNode, "", "blue"), Spec: spec[appmesh.VirtualNodeSpec](t, node2Spec)})
	wantType(t, err, appmesh.ErrBadRequest, "route/canary")
	if d := cmp.Diff(before, f.dump(t)); d != "" {
		t.Errorf("refused updates changed the store:\n%s", d)
	}
}

func TestApplyIsAllOrNothingAndIdempotent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, resources.Quotas{})
	f.base(t)
	before := f.dump(t)
	items := []resources.ApplyItem{
		{Ref: ref(appmesh.KindVirtualNode, "", "red"), Spec: spec[appmesh.VirtualNodeSpec](t, nodeSpec)},
		{Ref: ref(appmesh.KindRoute, "color", "bad"), Spec: spec[appmesh.RouteSpec](t, `{"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[{"virtualNode":"missing","weight":1}]}}}`)},
	}
	_, err := f.svc.Apply(ctx, items, false)
	var ie *resources.ItemError
	if !asItemError(err, &ie) || ie.Index != 1 {
		t.Fatalf("got %v, want an error of item 1", err)
	}
	if d := cmp.Diff(before, f.dump(t)); d != "" {
		t.Errorf("a failed apply left a partial write:\n%s", d)
	}
	// Re-applying the base changes nothing, not even versions.
	f.now = f.now.Add(time.Hour)
	f.base(t)
	if d := cmp.Diff(before, f.dump(t)); d != "" {
		t.Errorf("re-applying the same set changed the store:\n%s", d)
	}
	// A dry run reports and writes nothing.
	res, err := f.svc.Apply(ctx, items[:1], true)
	if err != nil || len(res) != 1 || res[0].Action != resources.ApplyCreated {
		t.Fatalf("dry run: %v %+v", err, res)
	}
	if d := cmp.Diff(before, f.dump(t)); d != "" {
		t.Errorf("a dry run wrote:\n%s", d)
	}
}

func asItemError(err error, target **resources.ItemError) bool {
	ie, ok := err.(*resources.ItemError) //nolint:errorlint // Apply returns it unwrapped
	if ok {
		*target = ie
	}
	return ok
}

func TestVersionsAndTimestamps(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, resources.Quotas{})
	created := f.now
	r, err := f.svc.Create(ctx, resources.CreateInput{Ref: meshRef})
	if err != nil {
		t.Fatal(err)
	}
	if r.Metadata.Version != 1 || !r.Metadata.CreatedAt.Equal(created) || r.Status.Status != appmesh.StatusActive {
		t.Fatalf("created: %+v", r)
	}
	if r.Metadata.ARN != "arn:aws:appmesh:local:000000000000:mesh/m" {
		t.Errorf("arn %s", r.Metadata.ARN)
	}
	// Defaults are stored: Describe returns egressFilter DROP_ALL.
	if s := r.Spec.(*appmesh.MeshSpec); s.EgressFilter == nil || s.EgressFilter.Type != appmesh.EgressDropAll {
		t.Errorf("mesh spec %+v, want the DROP_ALL default", s)
	}
	f.now = f.now.Add(time.Minute)
	r, err = f.svc.Update(ctx, resources.UpdateInput{Ref: meshRef, Spec: spec[appmesh.MeshSpec](t, `{"egressFilter":{"type":"ALLOW_ALL"}}`)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Metadata.Version != 2 || !r.Metadata.LastUpdatedAt.Equal(f.now) || !r.Metadata.CreatedAt.Equal(created) {
		t.Errorf("updated metadata %+v", r.Metadata)
	}
	// An update to the same spec is not a change.
	r, err = f.svc.Update(ctx, resources.UpdateInput{Ref: meshRef, Spec: spec[appmesh.MeshSpec](t, `{"egressFilter":{"type":"ALLOW_ALL"}}`)})
	if err != nil || r.Metadata.Version != 2 {
		t.Errorf("no-op update: version %d, err %v", r.Metadata.Version, err)
	}
	_, err = f.svc.Update(ctx, resources.UpdateInput{Ref: meshRef, Spec: spec[appmesh.MeshSpec](t, `{}`), ExpectedVersion: 1})
	wantType(t, err, appmesh.ErrConflict, "version 2, not 1")
}

func TestClientTokensExpire(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, resources.Quotas{})
	if _, err := f.svc.Create(ctx, resources.CreateInput{Ref: meshRef, ClientToken: "t1"}); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.Create(ctx, resources.CreateInput{Ref: appmesh.Ref{Kind: appmesh.KindMesh, Name: "m2"}, ClientToken: "t1"})
	wantType(t, err, appmesh.ErrConflict, "t1")
	f.now = f.now.Add(25 * time.Hour)
	n, err := f.svc.ExpireTokens(ctx)
	if err != nil || n != 1 {
		t.Fatalf("expired %d tokens, err %v", n, err)
	}
	if _, err := f.svc.Create(ctx, resources.CreateInput{Ref: appmesh.Ref{Kind: appmesh.KindMesh, Name: "m2"}, ClientToken: "t1"}); err != nil {
		t.Fatalf("an expired token was still remembered: %v", err)
	}
}

func TestBackendsQuota(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, resources.Quotas{BackendsPerVirtualNode: 2})
	f.base(t)
	_, err := f.svc.Create(ctx, resources.CreateInput{
		Ref:  ref(appmesh.KindVirtualNode, "", "front"),
		Spec: spec[appmesh.VirtualNodeSpec](t, `{"backends":[{"virtualService":{"virtualServiceName":"a.local"}},{"virtualService":{"virtualServiceName":"b.local"}},{"virtualService":{"virtualServiceName":"c.local"}}]}`),
	})
	wantType(t, err, appmesh.ErrLimitExceeded, "spec.backends")
}

func TestListPagination(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, resources.Quotas{})
	f.base(t)
	var got []string
	next := ""
	for {
		page, n, err := f.svc.List(ctx, resources.ListInput{Kind: appmesh.KindVirtualNode, Mesh: "m", Limit: 1, NextToken: next})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			got = append(got, r.Ref.Name)
		}
		if next = n; next == "" {
			break
		}
	}
	if d := cmp.Diff([]string{"blue", "green"}, got); d != "" {
		t.Errorf("pages (-want +got):\n%s", d)
	}
	_, _, err := f.svc.List(ctx, resources.ListInput{Kind: appmesh.KindVirtualNode, Mesh: "m", Limit: 101})
	wantType(t, err, appmesh.ErrBadRequest, "limit")
	_, _, err = f.svc.List(ctx, resources.ListInput{Kind: appmesh.KindVirtualNode, Mesh: "m", NextToken: "!!"})
	wantType(t, err, appmesh.ErrBadRequest, "nextToken")
}
