// SPDX-License-Identifier: Apache-2.0

package appmesh

import (
	"encoding/json"
	"testing"
)

// TestSamples applies the samples of appmesh-model.md §16 (testdata/valid, in
// API shape) in order: every document passes ValidateTags, Validate and
// ValidateReferences against the documents before it, and Default is
// idempotent on it.
func TestSamples(t *testing.T) {
	m := memLookup{}
	n := 0
	for _, f := range readSamples(t) {
		t.Run(f.name, func(t *testing.T) {
			for i, d := range f.docs {
				if err := checkDocument(d, m.forMesh(d.Ref.Mesh)); err != nil {
					t.Fatalf("document %d (%s): %v", i, d.Ref, err)
				}
				once, _ := json.Marshal(d.Spec)
				Default(d.Ref.Kind, d.Spec)
				twice, _ := json.Marshal(d.Spec)
				if string(once) != string(twice) {
					t.Errorf("document %d (%s): Default is not idempotent:\n%s\n%s", i, d.Ref, once, twice)
				}
				if err := Validate(d.Ref, d.Spec); err != nil {
					t.Errorf("document %d (%s): invalid after Default: %v", i, d.Ref, err)
				}
				m.put(d.Ref, d.Spec)
				n++
			}
		})
	}
	if n < 30 {
		t.Errorf("only %d sample documents, want every sample of §16", n)
	}
}
