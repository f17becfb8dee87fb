// SPDX-License-Identifier: Apache-2.0

package appmesh

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits shared by several kinds. The values come from the App Mesh API model
// (docs/validation.md lists where each one is used).
const (
	maxNameLength    = 255
	maxPort          = 65535
	maxPriority      = 1000
	maxWeight        = 100
	maxTargets       = 10
	maxMatchers      = 10
	maxMatcherLength = 255
	maxHostnameMatch = 253
	maxTags          = 50

	// maxDurationSeconds is the largest google.protobuf.Duration (10 000 years).
	// Every App Mesh duration becomes one in the Envoy config, and Envoy rejects
	// anything longer.
	maxDurationSeconds = 315_576_000_000
	// maxUint32 bounds the counters Envoy holds in a uint32 (num_retries,
	// consecutive_5xx).
	maxUint32 = 1<<32 - 1
)

var (
	// resourceNameRE is the charset weft accepts for every name but a virtual
	// service's (§17.2 of the model: letters, digits, '.', '_' and '-').
	resourceNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	// hostnameLabelRE is one RFC 1123 label.
	hostnameLabelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	// cloudMapAttrKeyRE is the model's pattern for Cloud Map attribute keys.
	cloudMapAttrKeyRE = regexp.MustCompile(`^[a-zA-Z0-9!-~]+$`)
)

// Validate checks the name(s) in ref and every rule of spec that needs no other
// resource. spec is a pointer to the kind's spec struct (nil means an empty
// spec). It returns nil or a ValidationError holding every broken rule in field
// order; each FieldError names the JSON path from the resource root, such as
// "spec.httpRoute.action.weightedTargets[1].weight". A spec of the wrong type
// is a programming error and gives a plain (internal) error.
func Validate(ref Ref, spec any) error {
	w := newWalker()
	if _, err := ref.Kind.NewSpec(); err != nil {
		w.field("kind").fail("must be one of " + kindList())
		return w.err()
	}
	validateNames(w, ref)
	switch ref.Kind {
	case KindMesh:
		return validateSpec(w, spec, validateMesh)
	case KindVirtualNode:
		return validateSpec(w, spec, validateVirtualNode)
	case KindVirtualService:
		return validateSpec(w, spec, validateVirtualService)
	case KindVirtualRouter:
		return validateSpec(w, spec, validateVirtualRouter)
	case KindRoute:
		return validateSpec(w, spec, validateRoute)
	case KindVirtualGateway:
		return validateSpec(w, spec, validateVirtualGateway)
	default: // KindGatewayRoute
		return validateSpec(w, spec, validateGatewayRoute)
	}
}

// validateNames checks the names of ref, each under the field the API names it
// by: meshName, the parent's name (virtualRouterName, virtualGatewayName) and
// the kind's (virtualNodeName, routeName...). A mesh's name is ref.Name, or
// ref.Mesh when Name is empty.
func validateNames(w walker, ref Ref) {
	if ref.Kind == KindMesh {
		name := ref.Name
		if name == "" {
			name = ref.Mesh
		}
		w.field("meshName").resourceName(name)
		return
	}
	w.field("meshName").resourceName(ref.Mesh)
	if p := ref.Kind.ParentKind(); p != "" {
		w.field(p.LowerCamel() + "Name").resourceName(ref.Parent)
	}
	nw := w.field(ref.Kind.LowerCamel() + "Name")
	if ref.Kind == KindVirtualService {
		nw.serviceName(ref.Name)
	} else {
		nw.resourceName(ref.Name)
	}
}

// ValidateTags checks a resource's tags: at most 50 (more gives an *APIError of
// type ErrTooManyTags), keys of 1–128 characters, values of 0–256 characters
// and no key twice. Field paths look like "tags[3].key".
func ValidateTags(tags []Tag) error {
	if len(tags) > maxTags {
		return Errorf(ErrTooManyTags, "tags: at most %d tags are allowed, got %d", maxTags, len(tags))
	}
	w := newWalker()
	keys := newUniq[string]("tags")
	for i, t := range tags {
		item := w.field("tags").index(i)
		if item.field("key").length(t.Key, 1, 128) {
			keys.check(item.field("key"), t.Key, i)
		}
		if t.Value != nil {
			item.field("value").length(*t.Value, 0, 256)
		}
	}
	return w.err()
}

// validateSpec types spec as *T and runs check on it under the "spec" field.
func validateSpec[T any](w walker, spec any, check func(walker, *T)) error {
	s, err := specAs[T](spec)
	if err != nil {
		return err
	}
	check(w.field("spec"), s)
	return w.err()
}

// specAs returns spec as a *T: nil (untyped or typed) gives an empty T, and a T
// value is accepted as well as a pointer.
func specAs[T any](spec any) (*T, error) {
	switch s := spec.(type) {
	case nil:
		return new(T), nil
	case *T:
		if s == nil {
			return new(T), nil
		}
		return s, nil
	case T:
		return &s, nil
	}
	return nil, fmt.Errorf("spec has type %T, want %T", spec, new(T))
}

func kindList() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// walker walks a spec: it carries the JSON path of the field it stands on and
// collects the rules broken below it. Copies share the collected errors.
type walker struct {
	path string
	errs *ValidationError
}

func newWalker() walker { return walker{errs: new(ValidationError)} }

// field steps into the named member.
func (w walker) field(name string) walker {
	if w.path == "" {
		return walker{path: name, errs: w.errs}
	}
	return walker{path: w.path + "." + name, errs: w.errs}
}

// index steps into the i-th item of a list.
func (w walker) index(i int) walker {
	return walker{path: w.path + "[" + strconv.Itoa(i) + "]", errs: w.errs}
}

// fail records that the current field breaks rule.
func (w walker) fail(rule string) {
	*w.errs = append(*w.errs, FieldError{Field: w.path, Rule: rule})
}

// failf records a formatted rule.
func (w walker) failf(format string, args ...any) { w.fail(fmt.Sprintf(format, args...)) }

// err returns the collected errors, or nil when there are none.
func (w walker) err() error {
	if len(*w.errs) == 0 {
		return nil
	}
	return *w.errs
}

// required fails with "is required" unless present, and returns present.
func (w walker) required(present bool) bool {
	if !present {
		w.fail("is required")
	}
	return present
}

// length checks that s has lo..hi characters; an empty s with lo > 0 "is
// required". It reports whether s passed.
func (w walker) length(s string, lo, hi int) bool {
	n := utf8.RuneCountInString(s)
	switch {
	case n == 0 && lo > 0:
		w.fail("is required")
	case n < lo || n > hi:
		w.failf("must be between %d and %d characters", lo, hi)
	default:
		return true
	}
	return false
}

// nonEmpty checks that s is given and not empty.
func (w walker) nonEmpty(s string) bool {
	if s == "" {
		w.fail("is required")
		return false
	}
	return true
}

// optLength checks the length of an optional string.
func (w walker) optLength(s *string, lo, hi int) {
	if s != nil {
		w.length(*s, lo, hi)
	}
}

// count checks that a list has lo..hi items. Callers treat an empty optional
// list as absent (the JSON encoding of the spec types drops it) and skip it.
func (w walker) count(n, lo, hi int) bool {
	if n < lo || n > hi {
		if lo == hi {
			w.failf("must have exactly %d item%s", lo, plural(lo))
		} else {
			w.failf("must have between %d and %d items", lo, hi)
		}
		return false
	}
	return true
}

// minItems checks that a list has at least lo items.
func (w walker) minItems(n, lo int) bool {
	if n < lo {
		w.failf("must have at least %d item%s", lo, plural(lo))
		return false
	}
	return true
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// enum checks that a given value is one of allowed; "" is absent and passes.
func (w walker) enum(v string, allowed ...string) bool {
	if v == "" {
		return true
	}
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	w.fail("must be one of " + strings.Join(allowed, ", "))
	return false
}

// reqEnum is enum for a required value.
func (w walker) reqEnum(v string, allowed ...string) bool {
	return w.required(v != "") && w.enum(v, allowed...)
}

// member is one member of a one-of group.
type member struct {
	name string
	set  bool
}

// exactlyOne checks that exactly one member is set and returns its name ("" if
// the rule is broken).
func (w walker) exactlyOne(members ...member) string {
	set := ""
	n := 0
	for _, m := range members {
		if m.set {
			set = m.name
			n++
		}
	}
	if n != 1 {
		w.fail("exactly one of " + orList(members) + " must be set")
		return ""
	}
	return set
}

// atLeastOne checks that at least one member is set.
func (w walker) atLeastOne(members ...member) bool {
	for _, m := range members {
		if m.set {
			return true
		}
	}
	w.fail("at least one of " + orList(members) + " must be set")
	return false
}

func orList(members []member) string {
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = m.name
	}
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// between checks lo <= v <= hi.
func (w walker) between(v, lo, hi int64) bool {
	if v < lo || v > hi {
		w.failf("must be between %d and %d", lo, hi)
		return false
	}
	return true
}

// atLeast checks v >= lo.
func (w walker) atLeast(v, lo int64) bool {
	if v < lo {
		w.failf("must be at least %d", lo)
		return false
	}
	return true
}

// integer is the integer types of the spec structs.
type integer interface{ ~int32 | ~int64 }

// optBetween checks an optional number's range.
func optBetween[T integer](w walker, p *T, lo, hi int64) {
	if p != nil {
		w.between(int64(*p), lo, hi)
	}
}

// reqBetween checks that a number is given and in range.
func reqBetween[T integer](w walker, p *T, lo, hi int64) {
	if w.required(p != nil) {
		w.between(int64(*p), lo, hi)
	}
}

// reqAtLeast checks that a number is given and at least lo.
func reqAtLeast[T integer](w walker, p *T, lo int64) {
	if w.required(p != nil) {
		w.atLeast(int64(*p), lo)
	}
}

// port checks an optional port number.
func (w walker) port(p *int32) { optBetween(w, p, 1, maxPort) }

// regex checks that s is 1–255 characters and compiles as RE2.
func (w walker) regex(s string) {
	if !w.length(s, 1, maxMatcherLength) {
		return
	}
	if _, err := regexp.Compile(s); err != nil {
		w.fail("must be a valid RE2 regular expression")
	}
}

// startsWithSlash checks that a path-like string begins with "/".
func (w walker) startsWithSlash(s string) bool {
	if !strings.HasPrefix(s, "/") {
		w.fail(`must start with "/"`)
		return false
	}
	return true
}

// resourceName checks a mesh, node, router, route, gateway or gateway route
// name and reports whether it passed.
func (w walker) resourceName(s string) bool {
	switch {
	case !w.length(s, 1, maxNameLength):
		return false
	case !resourceNameRE.MatchString(s):
		w.fail("must contain only letters, digits, '.', '_' and '-'")
		return false
	case s == "." || s == "..":
		w.fail(`must not be "." or ".."`)
		return false
	}
	return true
}

// serviceName checks a virtual service name: a hostname made of RFC 1123
// labels, at most 255 characters in all. It reports whether s passed.
func (w walker) serviceName(s string) bool {
	if !w.length(s, 1, maxNameLength) {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if !hostnameLabelRE.MatchString(label) {
			w.fail("must be a hostname: dot-separated labels of 1 to 63 letters, digits or '-', not starting or ending with '-'")
			return false
		}
	}
	return true
}

// duration checks an optional duration: unit and value are both required once
// the duration is given, and the value must fit a protobuf Duration.
func (w walker) duration(d *Duration) {
	if d == nil {
		return
	}
	w.field("unit").reqEnum(string(d.Unit), string(UnitS), string(UnitMS))
	vw := w.field("value")
	if !vw.required(d.Value != nil) {
		return
	}
	limit := int64(maxDurationSeconds)
	if d.Unit == UnitMS {
		limit *= 1000
	}
	vw.between(*d.Value, 0, limit)
}

// positiveDuration is duration for durations that must not be zero.
func (w walker) positiveDuration(d *Duration) {
	if !w.required(d != nil) {
		return
	}
	n := len(*w.errs)
	w.duration(d)
	if len(*w.errs) == n && *d.Value == 0 {
		w.field("value").fail("must be greater than 0")
	}
}

// uniq finds items of a list whose key repeats an earlier item's.
type uniq[K comparable] struct {
	list  string
	first map[K]int
}

func newUniq[K comparable](list string) *uniq[K] {
	return &uniq[K]{list: list, first: map[K]int{}}
}

// check records item i's key and fails w if an earlier item had the same key.
func (u *uniq[K]) check(w walker, key K, i int) {
	if j, ok := u.first[key]; ok {
		w.failf("must be unique (same as %s[%d])", u.list, j)
		return
	}
	u.first[key] = i
}

// CheckCloudMapAttribute checks a Cloud Map instance attribute as the
// model's awsCloudMap.attributes does: a key of 1–255 printable ASCII
// characters without spaces, a value of 1–1024 characters.
func CheckCloudMapAttribute(key, value string) error {
	switch {
	case len(key) < 1 || len(key) > 255:
		return errors.New("key: must be 1 to 255 characters")
	case !cloudMapAttrKeyRE.MatchString(key):
		return errors.New("key: must match ^[a-zA-Z0-9!-~]+$")
	case len(value) < 1 || len(value) > 1024:
		return errors.New("value: must be 1 to 1024 characters")
	}
	return nil
}
