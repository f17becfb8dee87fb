// SPDX-License-Identifier: Apache-2.0

package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v2"
)

// RawDocument is one decoded but not yet converted document.
type RawDocument struct {
	Source Source
	// Object is the document as generic JSON values: map[string]any, []any,
	// string, json.Number, bool and nil. YAML is brought to the same shape, so
	// that the conversion sees JSON and YAML input alike.
	Object map[string]any
}

// Decode reads every document of one stream: multi-document YAML (separated by
// ---), a JSON object, a JSON array of objects, or concatenated JSON objects.
// file names the stream in Source ("-" for stdin). Documents that are empty or
// only comments are skipped, but still count for the index of the documents
// after them; each element of a top-level array counts as one document. Keys
// must be unique within a mapping. On a syntax error Decode returns the
// documents before it and an *Error.
func Decode(r io.Reader, file string) ([]RawDocument, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, &Error{Source: Source{File: file, Index: -1}, Err: fmt.Errorf("read: %w", err)}
	}
	b = bytes.TrimPrefix(b, []byte("\ufeff"))
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		docs, isJSON, err := decodeJSON(trimmed, file)
		// Flow-style YAML ({kind: Mesh, ...}) also starts with a brace: it is
		// not JSON if the very first value does not parse, unless the file
		// says it is JSON.
		if isJSON || strings.EqualFold(filepath.Ext(file), ".json") {
			return docs, err
		}
	}
	return decodeYAML(b, file)
}

// decodeJSON decodes a stream of JSON values. isJSON is false when the first
// value has a syntax error, i.e. the input is likely not JSON at all.
func decodeJSON(b []byte, file string) (docs []RawDocument, isJSON bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	idx := 0
	fail := func(field string, err error) ([]RawDocument, bool, error) {
		var se *json.SyntaxError
		notJSON := idx == 0 && len(docs) == 0 && (errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF))
		return docs, !notJSON, &Error{Source: Source{File: file, Index: idx}, Field: field, Err: fmt.Errorf("parse JSON: %w", err)}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return docs, true, nil
		}
		if err != nil {
			return fail("", err)
		}
		if tok == json.Delim('[') { // an array of documents
			for dec.More() {
				v, field, err := parseJSON(dec, "")
				if err != nil {
					return fail(field, err)
				}
				var derr *Error
				if docs, idx, derr = appendDocs(docs, v, file, idx); derr != nil {
					return docs, true, derr
				}
			}
			if _, err := dec.Token(); err != nil {
				return fail("", err)
			}
			continue
		}
		v, field, err := parseJSONValue(dec, tok, "")
		if err != nil {
			return fail(field, err)
		}
		var derr *Error
		if docs, idx, derr = appendDocs(docs, v, file, idx); derr != nil {
			return docs, true, derr
		}
	}
}

// parseJSON reads one JSON value, rejecting duplicate keys. field is the path
// of the offending key on error.
func parseJSON(dec *json.Decoder, path string) (any, string, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, path, err
	}
	return parseJSONValue(dec, tok, path)
}

// parseJSONValue reads the rest of the JSON value that starts with tok.
func parseJSONValue(dec *json.Decoder, tok json.Token, path string) (any, string, error) {
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, path, err
				}
				key, _ := kt.(string)
				kp := joinPath(path, key)
				if _, dup := m[key]; dup {
					return nil, kp, errors.New("duplicate key")
				}
				v, field, err := parseJSON(dec, kp)
				if err != nil {
					return nil, field, err
				}
				m[key] = v
			}
			if _, err := dec.Token(); err != nil {
				return nil, path, err
			}
			return m, "", nil
		case '[':
			a := []any{}
			for i := 0; dec.More(); i++ {
				v, field, err := parseJSON(dec, indexPath(path, i))
				if err != nil {
					return nil, field, err
				}
				a = append(a, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, path, err
			}
			return a, "", nil
		}
		return nil, path, fmt.Errorf("unexpected %v", t)
	default:
		return t, "", nil
	}
}

// decodeYAML decodes a multi-document YAML stream.
func decodeYAML(b []byte, file string) ([]RawDocument, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.SetStrict(true) // duplicate keys are errors
	var docs []RawDocument
	idx := 0
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, &Error{Source: Source{File: file, Index: idx}, Err: fmt.Errorf("parse YAML: %w", err)}
		}
		j, field, err := jsonify(v, "")
		if err != nil {
			return docs, &Error{Source: Source{File: file, Index: idx}, Field: field, Err: err}
		}
		var derr *Error
		docs, idx, derr = appendDocs(docs, j, file, idx)
		if derr != nil {
			return docs, derr
		}
	}
}

// appendDocs adds the documents of one top-level value: an object is one
// document, an array one per element, null an empty (skipped) document.
func appendDocs(docs []RawDocument, v any, file string, idx int) ([]RawDocument, int, *Error) {
	switch t := v.(type) {
	case nil:
		return docs, idx + 1, nil
	case map[string]any:
		return append(docs, RawDocument{Source: Source{File: file, Index: idx}, Object: t}), idx + 1, nil
	case []any:
		for _, e := range t {
			switch o := e.(type) {
			case nil:
			case map[string]any:
				docs = append(docs, RawDocument{Source: Source{File: file, Index: idx}, Object: o})
			default:
				return docs, idx, &Error{Source: Source{File: file, Index: idx}, Err: fmt.Errorf("document is a %s, not an object", jsonType(e))}
			}
			idx++
		}
		return docs, idx, nil
	}
	return docs, idx, &Error{Source: Source{File: file, Index: idx}, Err: fmt.Errorf("document is a %s, not an object", jsonType(v))}
}

// jsonify turns a value decoded by the YAML library into generic JSON values.
// Keys are rendered as strings (YAML allows other scalars as keys), integers
// and floats become json.Number.
func jsonify(v any, path string) (any, string, error) {
	switch t := v.(type) {
	case nil, string, bool:
		return t, "", nil
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			ks, ok := k.(string)
			if !ok {
				if k == nil || isCollection(k) {
					return nil, path, fmt.Errorf("unsupported mapping key %v", k)
				}
				ks = fmt.Sprint(k)
			}
			kp := joinPath(path, ks)
			if _, dup := m[ks]; dup {
				return nil, kp, errors.New("duplicate key")
			}
			j, field, err := jsonify(e, kp)
			if err != nil {
				return nil, field, err
			}
			m[ks] = j
		}
		return m, "", nil
	case []any:
		a := make([]any, len(t))
		for i, e := range t {
			j, field, err := jsonify(e, indexPath(path, i))
			if err != nil {
				return nil, field, err
			}
			a[i] = j
		}
		return a, "", nil
	case int:
		return json.Number(strconv.Itoa(t)), "", nil
	case int64:
		return json.Number(strconv.FormatInt(t, 10)), "", nil
	case uint64:
		return json.Number(strconv.FormatUint(t, 10)), "", nil
	case float64:
		if math.IsInf(t, 0) || math.IsNaN(t) {
			return nil, path, fmt.Errorf("number %v is not allowed", t)
		}
		return json.Number(strconv.FormatFloat(t, 'g', -1, 64)), "", nil
	}
	return nil, path, fmt.Errorf("unsupported YAML value %v (%T)", v, v)
}

func isCollection(v any) bool {
	switch v.(type) {
	case map[any]any, []any:
		return true
	}
	return false
}

// joinPath appends a key to a field path.
func joinPath(path, key string) string {
	if key == "" {
		return path
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// indexPath appends an index to a field path.
func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// jsonType names the JSON type of a generic value, for error messages.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	}
	return fmt.Sprintf("%T", v)
}
