// SPDX-License-Identifier: Apache-2.0

package appmesh

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// corpusDir holds the invalid documents shared with the controller's tests.
var corpusDir = filepath.Join("..", "..", "testdata", "invalid")

var corpusName = regexp.MustCompile(`^(\d{3})-[a-z0-9-]+\.yaml$`)

// TestInvalidCorpus applies every file of testdata/invalid (repository root)
// the way the controller does: the documents before the last one are valid
// context and the last one fails, with an error containing the file's
// "# want: " line.
func TestInvalidCorpus(t *testing.T) {
	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	numbers := map[string]string{}
	for _, e := range entries {
		m := corpusName.FindStringSubmatch(e.Name())
		if m == nil {
			t.Errorf("%s: name is not NNN-short-description.yaml", e.Name())
			continue
		}
		if other, ok := numbers[m[1]]; ok {
			t.Errorf("%s and %s share a number", other, e.Name())
		}
		numbers[m[1]] = e.Name()
		t.Run(strings.TrimSuffix(e.Name(), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(corpusDir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok || want == "" {
				t.Fatalf("first line %q is not a '# want: ' comment", first)
			}
			docs, err := decodeDocuments(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(docs) == 0 {
				t.Fatal("no documents")
			}
			m := memLookup{}
			for i, d := range docs[:len(docs)-1] {
				if err := checkDocument(d, m.forMesh(d.Ref.Mesh)); err != nil {
					t.Fatalf("context document %d (%s) is invalid: %v", i, d.Ref, err)
				}
				m.put(d.Ref, d.Spec)
			}
			last := docs[len(docs)-1]
			err = checkDocument(last, m.forMesh(last.Ref.Mesh))
			if err == nil {
				t.Fatalf("%s is valid, want an error containing %q", last.Ref, want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error\n  %v\ndoes not contain\n  %s", err, want)
			}
			// One broken rule per file, so that each file checks one rule.
			var ve ValidationError
			if errors.As(err, &ve) && len(ve) != 1 {
				t.Errorf("%d broken rules, want 1: %v", len(ve), err)
			}
		})
	}
	if len(numbers) < 110 {
		t.Errorf("%d corpus files, want at least 110", len(numbers))
	}
}
