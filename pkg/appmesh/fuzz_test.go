// SPDX-License-Identifier: Apache-2.0

package appmesh

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated fuzz seeds in testdata/fuzz")

// fuzzInput is what FuzzDecodeValidate decodes: a kind and a spec, with
// optional names, or a whole resource in weft's storage form ({"ref": ...,
// "spec": ...}).
type fuzzInput struct {
	Ref    *Ref            `json:"ref,omitempty"`
	Kind   string          `json:"kind,omitempty"`
	Mesh   string          `json:"meshName,omitempty"`
	Parent string          `json:"parent,omitempty"`
	Name   string          `json:"name,omitempty"`
	Spec   json.RawMessage `json:"spec,omitempty"`
}

// decodeFuzzInput decodes data into a ref and a typed spec; ok is false when
// data is no such document.
func decodeFuzzInput(data []byte) (Ref, any, bool) {
	var in fuzzInput
	if err := json.Unmarshal(data, &in); err != nil {
		return Ref{}, nil, false
	}
	ref := Ref{Mesh: "demo", Name: "fuzz"}
	if in.Ref != nil {
		ref = *in.Ref
	} else {
		k, err := ParseKind(in.Kind)
		if err != nil {
			return Ref{}, nil, false
		}
		ref.Kind = k
		switch k {
		case KindRoute:
			ref.Parent = "color_shop"
		case KindGatewayRoute:
			ref.Parent = "ingress-gw_shop"
		case KindMesh:
			ref.Name = "demo"
		}
		for _, set := range []struct {
			dst *string
			v   string
		}{{&ref.Mesh, in.Mesh}, {&ref.Parent, in.Parent}, {&ref.Name, in.Name}} {
			if set.v != "" {
				*set.dst = set.v
			}
		}
	}
	spec, err := ref.Kind.NewSpec()
	if err != nil {
		return Ref{}, nil, false
	}
	if len(in.Spec) > 0 {
		if err := json.Unmarshal(in.Spec, spec); err != nil {
			return Ref{}, nil, false
		}
	}
	return ref, spec, true
}

// FuzzDecodeValidate decodes a spec and runs Default, Validate and
// ValidateReferences (against the samples of testdata/valid) on it. It checks
// that nothing panics, that Default is idempotent and keeps a valid spec
// valid, that errors have the documented types, and that a JSON round trip
// changes neither result (so a valid spec stays valid).
func FuzzDecodeValidate(f *testing.F) {
	lookup := sampleLookup(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		ref, spec, ok := decodeFuzzInput(data)
		if !ok {
			return
		}
		l := lookup.forMesh(ref.Mesh)
		validBefore := Validate(ref, spec) == nil

		Default(ref.Kind, spec)
		once, err := json.Marshal(spec)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		Default(ref.Kind, spec)
		if twice, _ := json.Marshal(spec); !bytes.Equal(once, twice) {
			t.Fatalf("Default is not idempotent:\n once: %s\ntwice: %s", once, twice)
		}

		verr := Validate(ref, spec)
		if verr != nil && TypeOf(verr) != ErrBadRequest {
			t.Fatalf("Validate: %v is a %s, want BadRequest", verr, TypeOf(verr))
		}
		if validBefore && verr != nil {
			t.Fatalf("Default made a valid spec invalid: %v", verr)
		}
		rerr := ValidateReferences(ref, spec, l)
		if rerr != nil && TypeOf(rerr) != ErrBadRequest && TypeOf(rerr) != ErrNotFound {
			t.Fatalf("ValidateReferences: %v is a %s, want BadRequest or NotFound", rerr, TypeOf(rerr))
		}
		// The JSON encoding drops nothing Validate looks at: the same errors
		// come back after a round trip (so a valid spec stays valid).
		again, _ := ref.Kind.NewSpec()
		if err := json.Unmarshal(once, again); err != nil {
			t.Fatalf("unmarshal %s: %v", once, err)
		}
		if v2 := Validate(ref, again); fmt.Sprint(v2) != fmt.Sprint(verr) {
			t.Fatalf("Validate after a JSON round trip: %v, before: %v\n%s", v2, verr, once)
		}
		if r2 := ValidateReferences(ref, again, l); fmt.Sprint(r2) != fmt.Sprint(rerr) {
			t.Fatalf("ValidateReferences after a JSON round trip: %v, before: %v\n%s", r2, rerr, once)
		}
	})
}

// TestFuzzSeeds keeps one fuzz seed per sample document in
// testdata/fuzz/FuzzDecodeValidate (sample-*); -update rewrites them. The
// other seeds there are written by hand.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeValidate")
	want := map[string][]byte{}
	for _, f := range readSamples(t) {
		for i, d := range f.docs {
			spec, err := json.Marshal(d.Spec)
			if err != nil {
				t.Fatal(err)
			}
			in, err := json.Marshal(fuzzInput{Kind: string(d.Ref.Kind), Mesh: d.Ref.Mesh, Parent: d.Ref.Parent, Name: d.Ref.Name, Spec: spec})
			if err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("sample-%s-%d", f.name, i)
			want[name] = []byte("go test fuzz v1\n[]byte(" + strconv.Quote(string(in)) + ")\n")
		}
	}
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		old, _ := filepath.Glob(filepath.Join(dir, "sample-*"))
		for _, p := range old {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		for name, data := range want {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	have, err := filepath.Glob(filepath.Join(dir, "sample-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(have) != len(want) {
		t.Errorf("%d sample seeds, want %d (go test -run TestFuzzSeeds -update)", len(have), len(want))
	}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("seed %s is stale (go test -run TestFuzzSeeds -update)", name)
		}
	}
	all, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(all) < 20 {
		t.Errorf("%d seeds, want at least 20", len(all))
	}
	for _, p := range all {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(data), "go test fuzz v1\n") {
			t.Errorf("%s is not a fuzz corpus file", p)
		}
	}
}
