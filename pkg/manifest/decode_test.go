// SPDX-License-Identifier: Apache-2.0

package manifest

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		file  string
		want  []RawDocument
	}{
		{
			name:  "multi-document YAML with empty and comment-only documents",
			input: "# header\n---\na: 1\n---\n# only a comment\n---\n---\nb: x\n...\n---\nc: [1, 2.5]\n",
			file:  "m.yaml",
			want: []RawDocument{
				{Source: Source{"m.yaml", 0}, Object: map[string]any{"a": json.Number("1")}},
				{Source: Source{"m.yaml", 3}, Object: map[string]any{"b": "x"}},
				{Source: Source{"m.yaml", 4}, Object: map[string]any{"c": []any{json.Number("1"), json.Number("2.5")}}},
			},
		},
		{
			name:  "leading document without separator",
			input: "a: 1\n---\nb: 2\n",
			file:  "m.yaml",
			want: []RawDocument{
				{Source: Source{"m.yaml", 0}, Object: map[string]any{"a": json.Number("1")}},
				{Source: Source{"m.yaml", 1}, Object: map[string]any{"b": json.Number("2")}},
			},
		},
		{
			name:  "JSON object",
			input: ` {"meshName": "m", "spec": {"egressFilter": {"type": "DROP_ALL"}}}`,
			file:  "m.json",
			want: []RawDocument{
				{Source: Source{"m.json", 0}, Object: map[string]any{"meshName": "m", "spec": map[string]any{"egressFilter": map[string]any{"type": "DROP_ALL"}}}},
			},
		},
		{
			name:  "JSON array",
			input: `[{"a": 1}, null, {"b": true}]`,
			file:  "m.json",
			want: []RawDocument{
				{Source: Source{"m.json", 0}, Object: map[string]any{"a": json.Number("1")}},
				{Source: Source{"m.json", 2}, Object: map[string]any{"b": true}},
			},
		},
		{
			name:  "concatenated JSON objects",
			input: "{\"a\": 1}\n{\"b\": 2}{\"c\": 3}\n",
			file:  "-",
			want: []RawDocument{
				{Source: Source{"-", 0}, Object: map[string]any{"a": json.Number("1")}},
				{Source: Source{"-", 1}, Object: map[string]any{"b": json.Number("2")}},
				{Source: Source{"-", 2}, Object: map[string]any{"c": json.Number("3")}},
			},
		},
		{
			name:  "flow-style YAML that starts with a brace",
			input: "{kind: Mesh, x: 1}\n---\n{kind: Mesh}\n",
			file:  "m.yaml",
			want: []RawDocument{
				{Source: Source{"m.yaml", 0}, Object: map[string]any{"kind": "Mesh", "x": json.Number("1")}},
				{Source: Source{"m.yaml", 1}, Object: map[string]any{"kind": "Mesh"}},
			},
		},
		{
			name:  "YAML sequence of objects counts like a JSON array",
			input: "- {a: 1}\n- {b: 2}\n---\nc: 3\n",
			file:  "m.yaml",
			want: []RawDocument{
				{Source: Source{"m.yaml", 0}, Object: map[string]any{"a": json.Number("1")}},
				{Source: Source{"m.yaml", 1}, Object: map[string]any{"b": json.Number("2")}},
				{Source: Source{"m.yaml", 2}, Object: map[string]any{"c": json.Number("3")}},
			},
		},
		{
			name:  "byte order mark, non-string keys, large and exponent numbers",
			input: "\ufeff200: ok\nbig: 9223372036854775807\nexp: 1e3\n",
			file:  "m.yaml",
			want: []RawDocument{
				{Source: Source{"m.yaml", 0}, Object: map[string]any{"200": "ok", "big": json.Number("9223372036854775807"), "exp": json.Number("1000")}},
			},
		},
		{
			name:  "empty stream",
			input: "# nothing here\n",
			file:  "m.yaml",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(strings.NewReader(tc.input), tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, input, file, want string
		docs                    int // documents decoded before the error
	}{
		{"YAML syntax", "a: 1\n---\nb: [\n", "m.yaml", "m.yaml#1: parse YAML: yaml: line 3: did not find expected node content", 1},
		{"YAML duplicate key", "a: 1\na: 2\n", "m.yaml", `m.yaml#0: parse YAML: yaml: unmarshal errors:`, 0},
		{"JSON duplicate key", `[{"a": 1}, {"spec": {"b": 1, "b": 2}}]`, "m.json", "m.json#1: spec.b: parse JSON: duplicate key", 1},
		{"JSON syntax after the first value", `{"a": 1} {"b": }`, "m.json", "m.json#1: b: parse JSON: invalid character '}'", 1},
		{"broken .json file is not retried as YAML", `{"a": 1,}`, "m.json", "m.json#0: parse JSON: invalid character '}'", 0},
		{"scalar document", "just a string\n", "m.yaml", "m.yaml#0: document is a string, not an object", 0},
		{"scalar array element", `[{"a": 1}, 2]`, "m.json", "m.json#1: document is a number, not an object", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs, err := Decode(strings.NewReader(tc.input), tc.file)
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q, want it to contain %q", err, tc.want)
			}
			if len(docs) != tc.docs {
				t.Errorf("got %d documents before the error, want %d", len(docs), tc.docs)
			}
		})
	}
}
