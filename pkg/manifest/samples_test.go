// SPDX-License-Identifier: Apache-2.0

package manifest

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.yaml")

// sampleSets are the samples of appmesh-model.md §16, each with the samples
// it needs: S0 holds the Namespace and Mesh of S1–S6 and S8, and S5's
// gateway routes target the virtual services of S1 and S2.
var sampleSets = []struct {
	name  string
	files []string
}{
	{"s0", []string{"s0"}},
	{"s1", []string{"s0", "s1"}},
	{"s2", []string{"s0", "s2"}},
	{"s3", []string{"s0", "s3"}},
	{"s4", []string{"s0", "s4"}},
	{"s5", []string{"s0", "s1", "s2", "s5"}},
	{"s6", []string{"s0", "s6"}},
	{"s7", []string{"s7"}},
	{"s8", []string{"s0", "s8"}},
}

func samplePaths(form, ext string, files []string) []string {
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = filepath.Join("testdata", "samples", form, f+ext)
	}
	return paths
}

func mustLoad(t *testing.T, paths []string, opts Options) []Document {
	t.Helper()
	docs, err := Load(paths, nil, opts)
	if err != nil {
		t.Fatalf("Load(%v): %v", paths, err)
	}
	return docs
}

// resources strips documents down to what must agree between forms.
func resources(docs []Document) []appmesh.Resource {
	res := make([]appmesh.Resource, len(docs))
	for i, d := range docs {
		res[i] = d.Resource
	}
	return res
}

// TestSamplesAcrossForms loads every sample in the Kubernetes form, in weft's
// form and as App Mesh API describe output, and checks that all three give
// the same resources.
func TestSamplesAcrossForms(t *testing.T) {
	for _, set := range sampleSets {
		t.Run(set.name, func(t *testing.T) {
			k8s := resources(mustLoad(t, samplePaths("k8s", ".yaml", set.files), Options{}))
			weft := resources(mustLoad(t, samplePaths("weft", ".yaml", set.files), Options{}))
			api := resources(mustLoad(t, samplePaths("api", ".json", set.files), Options{}))
			if diff := cmp.Diff(k8s, weft); diff != "" {
				t.Errorf("kubernetes vs weft form (-k8s +weft):\n%s", diff)
			}
			if diff := cmp.Diff(k8s, api); diff != "" {
				t.Errorf("kubernetes vs API form (-k8s +api):\n%s", diff)
			}
		})
	}
}

// TestSamplesGolden renders each sample set, converted from the Kubernetes
// form, with Marshal and compares it to testdata/golden/<set>.yaml (-update
// rewrites them). The golden files show reviewers what the mapping does.
func TestSamplesGolden(t *testing.T) {
	for _, set := range sampleSets {
		t.Run(set.name, func(t *testing.T) {
			docs := mustLoad(t, samplePaths("k8s", ".yaml", set.files), Options{})
			got, err := Marshal(resources(docs))
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "golden", set.name+".yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("Marshal output differs from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

func TestSampleAWSNames(t *testing.T) {
	for _, tc := range []struct {
		set  string
		want []string
	}{
		{"s1", []string{
			"mesh/demo",
			"mesh/demo/virtualNode/front_shop",
			"mesh/demo/virtualNode/blue_shop",
			"mesh/demo/virtualNode/green_shop",
			"mesh/demo/virtualRouter/color_shop",
			"mesh/demo/virtualRouter/color_shop/route/canary",
			"mesh/demo/virtualService/color.shop.svc.cluster.local",
		}},
		{"s5", []string{
			"mesh/demo/virtualGateway/ingress-gw_shop",
			"mesh/demo/virtualGateway/ingress-gw_shop/gatewayRoute/colors_shop",
			"mesh/demo/virtualGateway/ingress-gw_shop/gatewayRoute/maroon-is-blue_shop",
			"mesh/demo/virtualGateway/ingress-gw_shop/gatewayRoute/status_shop",
			"mesh/demo/virtualGateway/ingress-gw_shop/gatewayRoute/keep-prefix_shop",
		}},
		{"s7", []string{
			"mesh/locked",
			"mesh/locked/virtualNode/httpbin-ext_locked",
			"mesh/locked/virtualNode/worker_locked",
			"mesh/locked/virtualService/httpbin.org",
		}},
	} {
		for _, set := range sampleSets {
			if set.name != tc.set {
				continue
			}
			got := refs(mustLoad(t, samplePaths("k8s", ".yaml", set.files), Options{}))
			if tc.set == "s5" {
				got = got[len(got)-len(tc.want):]
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tc.set, diff)
			}
		}
	}
}

func TestSampleK8sInfo(t *testing.T) {
	docs := mustLoad(t, samplePaths("k8s", ".yaml", []string{"s0", "s1", "s5"}), Options{})
	blue := find(t, docs, appmesh.KindVirtualNode, "demo", "", "blue_shop")
	want := &K8sInfo{Namespace: "shop", Name: "blue", PodSelector: &LabelSelector{MatchLabels: map[string]string{"app": "color", "version": "blue"}}}
	if diff := cmp.Diff(want, blue.K8s); diff != "" {
		t.Errorf("blue (-want +got):\n%s", diff)
	}
	gw := find(t, docs, appmesh.KindVirtualGateway, "demo", "", "ingress-gw_shop")
	want = &K8sInfo{Namespace: "shop", Name: "ingress-gw", PodSelector: &LabelSelector{MatchLabels: map[string]string{"app": "ingress-gw"}}}
	if diff := cmp.Diff(want, gw.K8s); diff != "" {
		t.Errorf("gateway (-want +got):\n%s", diff)
	}
	if got := blue.Source.String(); got != filepath.Join("testdata", "samples", "k8s", "s1.yaml")+"#1" {
		t.Errorf("blue source = %s", got)
	}
}

// TestSampleS5WithoutTargets loads S5 with S0 only: the virtual services its
// gateway routes target are not in the set, so they get the default AWS
// names <name>.<namespace>.
func TestSampleS5WithoutTargets(t *testing.T) {
	docs := mustLoad(t, samplePaths("k8s", ".yaml", []string{"s0", "s5"}), Options{})
	var targets []string
	for _, d := range docs {
		if d.Resource.Ref.Kind == appmesh.KindGatewayRoute {
			targets = append(targets, d.Resource.Spec.(*appmesh.GatewayRouteSpec).HTTPRoute.Action.Target.VirtualService.VirtualServiceName)
		}
	}
	if diff := cmp.Diff([]string{"color-headers.shop", "color-headers.shop", "color.shop", "color.shop"}, targets); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestSampleS9 checks that the raw CreateRoute input of S9 (with the mesh,
// nodes and router it needs, as CreateMesh/CreateVirtualNode/
// CreateVirtualRouter inputs) is what S1's Kubernetes form becomes.
func TestSampleS9(t *testing.T) {
	api := mustLoad(t, []string{
		filepath.Join("testdata", "samples", "api", "s9.yaml"),
		filepath.Join("testdata", "samples", "api", "s9-deps.json"),
	}, Options{})
	k8s := mustLoad(t, samplePaths("k8s", ".yaml", []string{"s0", "s1"}), Options{})
	var want []appmesh.Resource
	for _, d := range k8s {
		switch d.Resource.Ref.Name {
		case "demo", "blue_shop", "green_shop", "color_shop", "canary":
			want = append(want, d.Resource)
		}
	}
	if diff := cmp.Diff(want, resources(api)); diff != "" {
		t.Errorf("(-k8s S1 +api S9):\n%s", diff)
	}
	if api[0].ClientToken != "s9-mesh" {
		t.Errorf("client token = %q", api[0].ClientToken)
	}
}

// TestMarshalRoundTrip renders every sample with Marshal and loads the
// output again.
func TestMarshalRoundTrip(t *testing.T) {
	for _, set := range sampleSets {
		t.Run(set.name, func(t *testing.T) {
			want := resources(mustLoad(t, samplePaths("k8s", ".yaml", set.files), Options{}))
			out, err := Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			docs, err := Load([]string{"-"}, strings.NewReader(string(out)), Options{})
			if err != nil {
				t.Fatalf("load Marshal output: %v\n%s", err, out)
			}
			if diff := cmp.Diff(want, resources(docs)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			got, err := Unmarshal(out)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Unmarshal (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMarshalKeepsMetadata checks that what weftctl get -o yaml prints reads
// back into the same resources, read-only metadata and status included, and
// that apply (Load) ignores those.
func TestMarshalKeepsMetadata(t *testing.T) {
	created := appmesh.Time{Time: time.Date(2024, 5, 29, 16, 26, 40, 123456789, time.UTC)}
	res := []appmesh.Resource{
		{
			Ref:  appmesh.Ref{Kind: appmesh.KindMesh, Mesh: "m", Name: "m"},
			Spec: &appmesh.MeshSpec{},
			Metadata: appmesh.Metadata{
				ARN: "arn:aws:appmesh:local:000000000000:mesh/m", UID: "u-1", Version: 7,
				CreatedAt: created, LastUpdatedAt: created, MeshOwner: "000000000000", ResourceOwner: "000000000000",
			},
			Status: appmesh.ResourceStatus{Status: appmesh.StatusActive},
			Tags:   []appmesh.Tag{{Key: "on", Value: ptr("yes")}, {Key: "empty", Value: ptr("")}, {Key: "novalue"}},
		},
		{
			Ref:  appmesh.Ref{Kind: appmesh.KindGatewayRoute, Mesh: "m", Parent: "gw", Name: "8080"},
			Spec: &appmesh.GatewayRouteSpec{HTTPRoute: &appmesh.HTTPGatewayRoute{Match: &appmesh.HTTPGatewayRouteMatch{Prefix: ptr("/"), Headers: []appmesh.HTTPRouteHeader{{Name: "x", Match: &appmesh.HeaderMatchMethod{Exact: ptr("true")}}}}}},
		},
		{
			Ref: appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: "m", Name: "null"},
		},
	}
	out, err := Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	res[2].Spec = &appmesh.VirtualServiceSpec{}
	if diff := cmp.Diff(res, got); diff != "" {
		t.Errorf("(-want +got):\n%s\n%s", diff, out)
	}
	docs, err := Load([]string{"-"}, strings.NewReader(string(out)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if docs[0].Resource.Metadata != (appmesh.Metadata{}) || docs[0].Resource.Status != (appmesh.ResourceStatus{}) {
		t.Errorf("Load kept metadata: %+v", docs[0].Resource)
	}
	if docs[0].MeshOwner != "000000000000" {
		t.Errorf("mesh owner = %q", docs[0].MeshOwner)
	}
}
