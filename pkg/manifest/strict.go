// SPDX-License-Identifier: Apache-2.0

package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// strictDecoder fills Go values from generic JSON values (see RawDocument),
// the way encoding/json would with DisallowUnknownFields, but stricter and
// with better errors:
//   - field names match the json tags exactly (encoding/json ignores case, so
//     "weightedtargets" would pass);
//   - every unknown field and every type mismatch is reported, each with its
//     full field path, instead of only the first;
//   - integers must be integral and fit the Go type (int32 for ports).
//
// null leaves the target at its zero value (a nil pointer: absent), and so
// does an empty array, so that every input form gives identical specs.
type strictDecoder struct {
	errs   []fieldError
	fields map[reflect.Type]map[string]int
}

type fieldError struct {
	path string
	err  error
}

// decodeStrict decodes in into out (a pointer) and returns the field errors.
func decodeStrict(path string, in any, out any) []fieldError {
	d := strictDecoder{fields: map[reflect.Type]map[string]int{}}
	d.decode(path, in, reflect.ValueOf(out).Elem())
	return d.errs
}

func (d *strictDecoder) errorf(path, format string, args ...any) {
	d.errs = append(d.errs, fieldError{path: path, err: fmt.Errorf(format, args...)})
}

var jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()

func (d *strictDecoder) decode(path string, in any, out reflect.Value) {
	if in == nil {
		return
	}
	t := out.Type()
	if t.Kind() == reflect.Struct && reflect.PointerTo(t).Implements(jsonUnmarshalerType) {
		b, err := json.Marshal(in)
		if err == nil {
			err = out.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(b)
		}
		if err != nil {
			d.errorf(path, "%v", err)
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		v := reflect.New(t.Elem())
		d.decode(path, in, v.Elem())
		out.Set(v)
	case reflect.Struct:
		m, ok := in.(map[string]any)
		if !ok {
			d.typeError(path, "an object", in)
			return
		}
		fields := d.fieldsOf(t)
		for _, k := range sortedKeys(m) {
			i, ok := fields[k]
			if !ok {
				d.errorf(joinPath(path, k), "unknown field%s", suggest(k, fields))
				continue
			}
			d.decode(joinPath(path, k), m[k], out.Field(i))
		}
	case reflect.Slice:
		a, ok := in.([]any)
		if !ok {
			d.typeError(path, "an array", in)
			return
		}
		if len(a) == 0 {
			return // [] means the same as absent in every App Mesh list
		}
		s := reflect.MakeSlice(t, len(a), len(a))
		for i, e := range a {
			d.decode(indexPath(path, i), e, s.Index(i))
		}
		out.Set(s)
	case reflect.Map:
		m, ok := in.(map[string]any)
		if !ok || t.Key().Kind() != reflect.String {
			d.typeError(path, "an object", in)
			return
		}
		mv := reflect.MakeMapWithSize(t, len(m))
		for _, k := range sortedKeys(m) {
			ev := reflect.New(t.Elem()).Elem()
			d.decode(joinPath(path, k), m[k], ev)
			mv.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), ev)
		}
		out.Set(mv)
	case reflect.String:
		s, ok := in.(string)
		if !ok {
			d.typeError(path, "a string", in)
			return
		}
		out.SetString(s)
	case reflect.Bool:
		b, ok := in.(bool)
		if !ok {
			d.typeError(path, "a boolean", in)
			return
		}
		out.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := in.(json.Number)
		if !ok {
			d.typeError(path, "an integer", in)
			return
		}
		i, err := parseInt(string(n), t.Bits())
		if err != nil {
			d.errorf(path, "%v", err)
			return
		}
		out.SetInt(i)
	case reflect.Interface:
		out.Set(reflect.ValueOf(in))
	default:
		d.errorf(path, "cannot decode into %s", t)
	}
}

func (d *strictDecoder) typeError(path, want string, got any) {
	hint := ""
	if want == "a string" {
		switch got.(type) {
		case bool:
			hint = " (YAML reads unquoted true, false, yes, no, on, off, y and n as booleans: quote the value)"
		case json.Number:
			hint = " (quote the value)"
		}
	}
	d.errorf(path, "must be %s, not %s%s", want, describe(got), hint)
}

// describe renders a value for a type error: its JSON type, and the value
// itself for scalars.
func describe(v any) string {
	switch t := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", t)
	case json.Number:
		return "the number " + string(t)
	case bool:
		return "the boolean " + strconv.FormatBool(t)
	}
	return "an " + jsonType(v)
}

// parseInt parses an integer that fits bits, accepting an integral number in
// exponent or decimal form (YAML may give 1e3 or 8080.0).
func parseInt(s string, bits int) (int64, error) {
	i, err := strconv.ParseInt(s, 10, bits)
	if err == nil {
		return i, nil
	}
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%s is out of range for a %d-bit integer", s, bits)
	}
	f, ferr := strconv.ParseFloat(s, 64)
	if ferr != nil || f != math.Trunc(f) {
		return 0, fmt.Errorf("must be an integer, not %s", s)
	}
	lim := math.Ldexp(1, bits-1)
	if f < -lim || f >= lim {
		return 0, fmt.Errorf("%s is out of range for a %d-bit integer", s, bits)
	}
	return int64(f), nil
}

// fieldsOf maps the JSON names of a struct's fields to their indices.
func (d *strictDecoder) fieldsOf(t reflect.Type) map[string]int {
	if f, ok := d.fields[t]; ok {
		return f
	}
	f := map[string]int{}
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		f[name] = i
	}
	d.fields[t] = f
	return f
}

// suggest proposes the known field closest to an unknown one: the same name
// in another case, else one that contains it or is contained in it
// (serviceDiscovery, meshServiceDiscovery), else one at most two edits away.
func suggest(key string, fields map[string]int) string {
	lk := strings.ToLower(key)
	best, bestScore := "", 3
	for name := range fields {
		ln := strings.ToLower(name)
		score := editDistance(lk, ln)
		switch {
		case ln == lk:
			score = -2
		case len(lk) >= 4 && (strings.Contains(ln, lk) || strings.Contains(lk, ln)):
			score = -1
		}
		if score < bestScore || score == bestScore && name < best {
			best, bestScore = name, score
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of two strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
