// SPDX-License-Identifier: Apache-2.0

package appmesh

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// This file holds a minimal decoder of weft's document form, for the tests
// only (pkg/manifest has the real one), and an in-memory Lookup.

// document is one resource in weft's document form.
type document struct {
	Ref  Ref
	Tags []Tag
	Spec any
}

type documentJSON struct {
	APIVersion string `json:"apiVersion"`
	Kind       Kind   `json:"kind"`
	Metadata   struct {
		Name           string `json:"name"`
		Mesh           string `json:"mesh"`
		VirtualRouter  string `json:"virtualRouter"`
		VirtualGateway string `json:"virtualGateway"`
		Tags           []Tag  `json:"tags"`
	} `json:"metadata"`
	Spec json.RawMessage `json:"spec"`
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeDocuments decodes every document of a YAML stream, strictly: unknown
// fields are errors, so that a test document cannot break a rule by accident.
func decodeDocuments(data []byte) ([]document, error) {
	var docs []document
	for _, chunk := range docSeparator.Split(string(data), -1) {
		j, err := yaml.YAMLToJSON([]byte(chunk))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs), err)
		}
		if string(j) == "null" {
			continue // only comments
		}
		d, err := decodeDocument(j)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs), err)
		}
		docs = append(docs, d)
	}
	return docs, nil
}

func decodeDocument(j []byte) (document, error) {
	var raw documentJSON
	if err := strictJSON(j, &raw); err != nil {
		return document{}, err
	}
	if raw.APIVersion != "weft-mesh.io/v1" {
		return document{}, fmt.Errorf("apiVersion %q, want weft-mesh.io/v1", raw.APIVersion)
	}
	spec, err := raw.Kind.NewSpec()
	if err != nil {
		return document{}, err
	}
	if len(raw.Spec) > 0 {
		if err := strictJSON(raw.Spec, spec); err != nil {
			return document{}, fmt.Errorf("spec: %w", err)
		}
	}
	m := raw.Metadata
	ref := Ref{Kind: raw.Kind, Mesh: m.Mesh, Name: m.Name}
	switch raw.Kind {
	case KindMesh:
		ref.Mesh = m.Name
	case KindRoute:
		ref.Parent = m.VirtualRouter
	case KindGatewayRoute:
		ref.Parent = m.VirtualGateway
	}
	return document{Ref: ref, Tags: m.Tags, Spec: spec}, nil
}

func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// checkDocument runs the checks the controller runs on a create, in its
// order: tags, spec, defaults, references.
func checkDocument(d document, l Lookup) error {
	if err := ValidateTags(d.Tags); err != nil {
		return err
	}
	if err := Validate(d.Ref, d.Spec); err != nil {
		return err
	}
	Default(d.Ref.Kind, d.Spec)
	return ValidateReferences(d.Ref, d.Spec, l)
}

// memLookup is an in-memory Lookup over the resources of every mesh.
type memLookup map[Ref]any

// forMesh is the Lookup of one mesh.
func (m memLookup) forMesh(mesh string) Lookup { return meshLookup{m: m, mesh: mesh} }

func (m memLookup) put(ref Ref, spec any) { m[ref] = spec }

type meshLookup struct {
	m    memLookup
	mesh string
}

func (l meshLookup) Spec(kind Kind, parent, name string) (any, bool) {
	s, ok := l.m[Ref{Kind: kind, Mesh: l.mesh, Parent: parent, Name: name}]
	return s, ok
}

// sampleFile is one file of testdata/valid.
type sampleFile struct {
	name string
	docs []document
}

// readSamples reads testdata/valid in name order.
func readSamples(tb testing.TB) []sampleFile {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "valid", "*.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	sort.Strings(paths)
	if len(paths) == 0 {
		tb.Fatal("no samples in testdata/valid")
	}
	var files []sampleFile
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		docs, err := decodeDocuments(data)
		if err != nil {
			tb.Fatalf("%s: %v", p, err)
		}
		files = append(files, sampleFile{name: strings.TrimSuffix(filepath.Base(p), ".yaml"), docs: docs})
	}
	return files
}

// sampleLookup applies every sample, checked, into a memLookup.
func sampleLookup(tb testing.TB) memLookup {
	tb.Helper()
	m := memLookup{}
	for _, f := range readSamples(tb) {
		for i, d := range f.docs {
			if err := checkDocument(d, m.forMesh(d.Ref.Mesh)); err != nil {
				tb.Fatalf("%s document %d (%s): %v", f.name, i, d.Ref, err)
			}
			m.put(d.Ref, d.Spec)
		}
	}
	return m
}
