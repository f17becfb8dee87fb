// SPDX-License-Identifier: Apache-2.0

package manifest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// convertFiles decodes each text as a file named f0.yaml, f1.yaml, ... and
// converts them together.
func convertFiles(t *testing.T, opts Options, files ...string) ([]Document, error) {
	t.Helper()
	var raws []RawDocument
	for i, f := range files {
		docs, err := Decode(strings.NewReader(f), fmt.Sprintf("f%d.yaml", i))
		if err != nil {
			return nil, err
		}
		raws = append(raws, docs...)
	}
	return Convert(raws, opts)
}

func mustConvert(t *testing.T, opts Options, files ...string) []Document {
	t.Helper()
	docs, err := convertFiles(t, opts, files...)
	if err != nil {
		t.Fatalf("convert: %v", err)
	}
	return docs
}

// wantErrors checks that err holds exactly the given error strings (each a
// substring of one *Error, in order).
func wantErrors(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %q", want)
	}
	errs := unjoin(err)
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i, e := range errs {
		var me *Error
		if !errors.As(e, &me) {
			t.Errorf("error %d is %T, not *Error: %v", i, e, e)
		}
		if !strings.Contains(e.Error(), want[i]) {
			t.Errorf("error %d = %q, want it to contain %q", i, e.Error(), want[i])
		}
	}
}

func unjoin(err error) []error {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		return j.Unwrap()
	}
	return []error{err}
}

// find returns the document with the ref, failing the test if there is none.
func find(t *testing.T, docs []Document, kind appmesh.Kind, mesh, parent, name string) Document {
	t.Helper()
	ref := appmesh.Ref{Kind: kind, Mesh: mesh, Parent: parent, Name: name}
	for _, d := range docs {
		if d.Resource.Ref == ref {
			return d
		}
	}
	var have []string
	for _, d := range docs {
		have = append(have, d.Resource.Ref.ResourcePath())
	}
	t.Fatalf("no %s %s; have %v", kind, ref.ResourcePath(), have)
	return Document{}
}

func refs(docs []Document) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.Resource.Ref.ResourcePath()
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func TestSourceString(t *testing.T) {
	for _, tc := range []struct {
		src  Source
		want string
	}{
		{Source{File: "dir/app.yaml", Index: 2}, "dir/app.yaml#2"},
		{Source{File: "-", Index: 0}, "<stdin>#0"},
		{Source{File: "dir/app.yaml", Index: -1}, "dir/app.yaml"},
	} {
		if got := tc.src.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.src, got, tc.want)
		}
	}
	boom := errors.New("boom")
	e := &Error{Source: Source{File: "file.yaml", Index: 2}, Field: "spec.routes[0].httpRoute.match", Err: boom}
	if !errors.Is(e, boom) {
		t.Error("Error does not unwrap")
	}
	if got, want := e.Error(), "file.yaml#2: spec.routes[0].httpRoute.match: boom"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	e.Field = ""
	if got, want := e.Error(), "file.yaml#2: boom"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

const meshDoc = `
apiVersion: weft-mesh.io/v1
kind: Mesh
metadata: {name: m}
`

func TestLoadPathsAndOrder(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("apps/b/route.yml", `
apiVersion: weft-mesh.io/v1
kind: Route
metadata: {name: r, mesh: m, virtualRouter: vr}
spec: {httpRoute: {match: {prefix: /}, action: {weightedTargets: [{virtualNode: node, weight: 1}]}}}
`)
	write("apps/a/router.json", `{"meshName": "m", "virtualRouterName": "vr", "spec": {}}`)
	write("apps/a/notes.txt", "not a manifest")
	write("apps/.hidden/x.yaml", "garbage: [")
	write("apps/deploy.yaml", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {replicas: 2}
`)
	node := write("node.yaml", `
apiVersion: weft-mesh.io/v1
kind: VirtualNode
metadata: {name: node, mesh: m}
`)
	stdin := strings.NewReader(meshDoc)
	docs, err := Load([]string{filepath.Join(dir, "apps"), node, "-"}, stdin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := refs(docs)
	want := []string{"mesh/m", "mesh/m/virtualNode/node", "mesh/m/virtualRouter/vr", "mesh/m/virtualRouter/vr/route/r"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	if s := docs[0].Source; s.File != "-" || s.Index != 0 {
		t.Errorf("mesh source = %v", s)
	}
	if s := docs[2].Source.String(); s != filepath.Join(dir, "apps/a/router.json")+"#0" {
		t.Errorf("router source = %s", s)
	}
	if docs[2].Form != FormAppMeshAPI || docs[0].Form != FormWeft {
		t.Errorf("forms = %s, %s", docs[2].Form, docs[0].Form)
	}

	_, err = Load([]string{filepath.Join(dir, "missing.yaml"), "-", "-"}, strings.NewReader(""), Options{})
	wantErrors(t, err, "missing.yaml: stat: no such file or directory", "<stdin>: standard input given twice")
}

func TestLoadReportsEveryError(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	b := filepath.Join(dir, "b.json")
	if err := os.WriteFile(a, []byte(meshDoc+`
---
apiVersion: weft-mesh.io/v1
kind: VirtualNode
metadata: {name: node, mesh: m}
spec: {listener: []}
---
apiVersion: weft-mesh.io/v1
kind: VirtualNode
metadata: {name: node, mesh: m}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte(`{"meshName": "m", "virtualNodeName": "node", "spec": {}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load([]string{a, b}, nil, Options{})
	wantErrors(t, err,
		a+`#1: spec.listener: unknown field (did you mean "listeners"?)`,
		b+"#0: duplicate VirtualNode mesh/m/virtualNode/node (already defined at "+a+"#2)",
	)
}

func TestDuplicateResources(t *testing.T) {
	_, err := convertFiles(t, Options{}, meshDoc, `{"meshName": "m"}`)
	wantErrors(t, err, "f1.yaml#0: duplicate Mesh mesh/m (already defined at f0.yaml#0)")

	// The same name in different parents or kinds is no duplicate.
	docs := mustConvert(t, Options{}, meshDoc, `
apiVersion: weft-mesh.io/v1
kind: VirtualRouter
metadata: {name: x, mesh: m}
---
apiVersion: weft-mesh.io/v1
kind: VirtualNode
metadata: {name: x, mesh: m}
---
apiVersion: weft-mesh.io/v1
kind: Route
metadata: {name: x, mesh: m, virtualRouter: x}
---
apiVersion: weft-mesh.io/v1
kind: Route
metadata: {name: x, mesh: m, virtualRouter: other}
`)
	if len(docs) != 5 {
		t.Errorf("got %v", refs(docs))
	}
}

func TestSpecNeverNil(t *testing.T) {
	docs := mustConvert(t, Options{}, meshDoc, `
apiVersion: weft-mesh.io/v1
kind: VirtualService
metadata: {name: vs.local, mesh: m}
spec:
`, `{"meshName": "m", "virtualRouterName": "r"}`)
	for _, d := range docs {
		if d.Resource.Spec == nil {
			t.Errorf("%s: nil spec", d.Resource.Ref)
		}
	}
	if _, ok := docs[1].Resource.Spec.(*appmesh.VirtualRouterSpec); !ok {
		t.Errorf("router spec is %T", docs[1].Resource.Spec)
	}
}

func TestSortByKindKeepsInputOrder(t *testing.T) {
	docs := mustConvert(t, Options{DefaultMesh: "m"}, `
apiVersion: weft-mesh.io/v1
kind: GatewayRoute
metadata: {name: gr, virtualGateway: g}
---
apiVersion: weft-mesh.io/v1
kind: VirtualService
metadata: {name: b}
---
apiVersion: weft-mesh.io/v1
kind: VirtualService
metadata: {name: a}
---
apiVersion: weft-mesh.io/v1
kind: VirtualGateway
metadata: {name: g}
`, meshDoc)
	want := []string{"mesh/m", "mesh/m/virtualService/b", "mesh/m/virtualService/a", "mesh/m/virtualGateway/g", "mesh/m/virtualGateway/g/gatewayRoute/gr"}
	if diff := cmp.Diff(want, refs(docs)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if !slices.IsSortedFunc(docs, func(a, b Document) int {
		return slices.Index(appmesh.Kinds, a.Resource.Ref.Kind) - slices.Index(appmesh.Kinds, b.Resource.Ref.Kind)
	}) {
		t.Error("not in appmesh.Kinds order")
	}
}
