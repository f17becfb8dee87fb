// SPDX-License-Identifier: Apache-2.0

package restapi_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/appmesh"
	"github.com/aws/aws-sdk-go-v2/service/appmesh/types"

	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// everythingBroken reports a problem for every resource but meshes.
type everythingBroken struct{}

func (everythingBroken) ResourceProblem(ref appmesh.Ref, _ string, _ int64) (string, bool) {
	if ref.Kind == appmesh.KindMesh {
		return "", false
	}
	return "translation left " + ref.Name + " out", true
}

// TestSDKReadsStatusWithMessage: with weft's status message in every
// answer, the SDK still describes, updates and lists every kind, and reads
// INACTIVE.
func TestSDKReadsStatusWithMessage(t *testing.T) {
	for _, o := range allOps(t) {
		t.Run(string(o.kind), func(t *testing.T) {
			ctx := context.Background()
			c, svc := newServer(t, resources.Quotas{VirtualGatewaysPerMesh: 10})
			base(ctx, t, c)
			svc.SetStatusSource(everythingBroken{})
			name := "a"
			if o.kind == appmesh.KindVirtualService {
				name = "a.local"
			}
			if _, err := o.create(ctx, c, name, o.specs[0], ""); err != nil {
				t.Fatalf("create: %v", err)
			}
			md, spec, err := o.describe(ctx, c, name)
			if err != nil {
				t.Fatalf("describe: %v", err)
			}
			sameSpec(t, o.kind, o.specs[0], spec)
			if *md.Version != 1 {
				t.Errorf("version %d", *md.Version)
			}
			if _, err := o.update(ctx, c, name, o.specs[1]); err != nil {
				t.Fatalf("update: %v", err)
			}
			if names, _, err := o.list(ctx, c, 100, nil); err != nil || !contains(names, name) {
				t.Fatalf("list: %v %v", names, err)
			}
		})
	}
	ctx := context.Background()
	c, svc := newServer(t, resources.Quotas{})
	base(ctx, t, c)
	svc.SetStatusSource(everythingBroken{})
	out, err := c.DescribeVirtualNode(ctx, &sdk.DescribeVirtualNodeInput{MeshName: aws.String(mesh), VirtualNodeName: aws.String("n1")})
	if err != nil {
		t.Fatal(err)
	}
	if out.VirtualNode.Status == nil || out.VirtualNode.Status.Status != types.VirtualNodeStatusCodeInactive {
		t.Errorf("status %+v", out.VirtualNode.Status)
	}
	m, err := c.DescribeMesh(ctx, &sdk.DescribeMeshInput{MeshName: aws.String(mesh)})
	if err != nil || m.Mesh.Status.Status != types.MeshStatusCodeActive {
		t.Errorf("mesh: %v", err)
	}
}
