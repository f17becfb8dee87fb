// SPDX-License-Identifier: Apache-2.0

package resources_test

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// problemSource reports problems of given resource versions.
type problemSource struct {
	mu   sync.Mutex
	byID map[string]string // uid/version → message
}

func key(uid string, version int64) string { return uid + "/" + strconv.FormatInt(version, 10) }

func (p *problemSource) set(r *appmesh.Resource, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byID == nil {
		p.byID = map[string]string{}
	}
	p.byID[key(r.Metadata.UID, r.Metadata.Version)] = msg
}

func (p *problemSource) ResourceProblem(_ appmesh.Ref, uid string, version int64) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.byID[key(uid, version)]
	return m, ok
}

// TestStatusSource: Describe, List, Update and Apply show the source's
// problem of the version they return as INACTIVE with a message; another
// version (or a recreated resource) is ACTIVE; nothing is stored.
func TestStatusSource(t *testing.T) {
	f := newFixture(t, resources.Quotas{})
	ctx := context.Background()
	if _, err := f.svc.Create(ctx, resources.CreateInput{Ref: meshRef}); err != nil {
		t.Fatal(err)
	}
	nodeRef := ref(appmesh.KindVirtualNode, "", "n")
	n, err := f.svc.Create(ctx, resources.CreateInput{Ref: nodeRef, Spec: spec[appmesh.VirtualNodeSpec](t, nodeSpec)})
	if err != nil {
		t.Fatal(err)
	}
	var src problemSource
	f.svc.SetStatusSource(&src)
	src.set(n, "broken")
	inactive := appmesh.ResourceStatus{Status: appmesh.StatusInactive, Message: "broken"}
	active := appmesh.ResourceStatus{Status: appmesh.StatusActive}

	got, err := f.svc.Describe(ctx, nodeRef, "")
	if err != nil || got.Status != inactive {
		t.Errorf("Describe: %+v (%v)", got.Status, err)
	}
	list, _, err := f.svc.List(ctx, resources.ListInput{Kind: appmesh.KindVirtualNode, Mesh: "m"})
	if err != nil || len(list) != 1 || list[0].Status != inactive {
		t.Errorf("List: %+v (%v)", list, err)
	}
	if m, err := f.svc.Describe(ctx, meshRef, ""); err != nil || m.Status != active {
		t.Errorf("the mesh: %+v (%v)", m.Status, err)
	}
	// An update that changes nothing keeps the version, and the problem.
	up, err := f.svc.Update(ctx, resources.UpdateInput{Ref: nodeRef, Spec: spec[appmesh.VirtualNodeSpec](t, nodeSpec)})
	if err != nil || up.Status != inactive {
		t.Errorf("unchanged Update: %+v (%v)", up.Status, err)
	}
	res, err := f.svc.Apply(ctx, []resources.ApplyItem{{Ref: nodeRef, Spec: spec[appmesh.VirtualNodeSpec](t, nodeSpec)}}, true)
	if err != nil || res[0].Resource.Status != inactive {
		t.Errorf("Apply: %+v (%v)", res, err)
	}
	// The store holds ACTIVE.
	all, _, err := f.svc.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		if r.Status != active {
			t.Errorf("stored %s: %+v", r.Ref.ResourcePath(), r.Status)
		}
	}
	// A new version was not translated yet: ACTIVE.
	up, err = f.svc.Update(ctx, resources.UpdateInput{Ref: nodeRef, Spec: spec[appmesh.VirtualNodeSpec](t, node2Spec)})
	if err != nil || up.Status != active {
		t.Errorf("Update to version 2: %+v (%v)", up.Status, err)
	}
	// Delete says DELETED whatever the source says.
	src.set(up, "broken")
	del, err := f.svc.Delete(ctx, resources.DeleteInput{Ref: nodeRef})
	if err != nil || del.Status.Status != appmesh.StatusDeleted {
		t.Errorf("Delete: %+v (%v)", del.Status, err)
	}
	// A new resource of the same name is another uid.
	n2, err := f.svc.Create(ctx, resources.CreateInput{Ref: nodeRef, Spec: spec[appmesh.VirtualNodeSpec](t, nodeSpec)})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.svc.Describe(ctx, nodeRef, ""); err != nil || got.Status != active || n2.Status != active {
		t.Errorf("recreated node: %+v (%v)", got.Status, err)
	}
	f.svc.SetStatusSource(nil)
	src.set(n2, "broken")
	if got, _ := f.svc.Describe(ctx, nodeRef, ""); got.Status != active {
		t.Errorf("without a source: %+v", got.Status)
	}
}
