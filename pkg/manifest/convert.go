// SPDX-License-Identifier: Apache-2.0

package manifest

import (
	"slices"
	"strings"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// API groups and versions.
const (
	weftAPIVersion = "weft-mesh.io/v1"
	weftGroup      = "weft-mesh.io"
	k8sGroup       = "appmesh.k8s.aws"
	k8sAPIVersion  = "appmesh.k8s.aws/v1beta2"
)

// Kubernetes kinds of appmesh.k8s.aws/v1beta2 that weft reads, plus the core
// Namespace.
const (
	k8sKindNamespace    = "Namespace"
	k8sKindBackendGroup = "BackendGroup"
)

var k8sKinds = []string{
	string(appmesh.KindMesh), string(appmesh.KindVirtualNode), string(appmesh.KindVirtualService),
	string(appmesh.KindVirtualRouter), string(appmesh.KindVirtualGateway), string(appmesh.KindGatewayRoute),
	k8sKindBackendGroup,
}

// converter holds what every form's conversion shares.
type converter struct {
	opts Options
	errs *errorList
}

// item is one object to convert: a RawDocument, or one element of a
// Kubernetes List inside one.
type item struct {
	id   int // position among all items
	src  Source
	path string // field path prefix of the object within the document
	form Form
	kind string // the kind (weft, Kubernetes) or the describe wrapper (API)
	obj  map[string]any
}

// field is the full field path of p within the item.
func (it item) field(p string) string { return joinPath(it.path, p) }

// classify decides the form of an object and whether weft reads it at all.
// Objects of kinds weft does not know are dropped; broken ones are reported.
func (c *converter) classify(src Source, path string, obj map[string]any) []item {
	it := item{src: src, path: path, obj: obj}
	if av, ok := obj["apiVersion"]; ok {
		apiVersion, ok := av.(string)
		if !ok {
			c.errs.add(src, it.field("apiVersion"), "must be a string, not %s", describe(av))
			return nil
		}
		kind, _ := obj["kind"].(string)
		if items, ok := obj["items"].([]any); ok && strings.HasSuffix(kind, "List") {
			return c.classifyList(it, items)
		}
		group, _, _ := strings.Cut(apiVersion, "/")
		if !strings.Contains(apiVersion, "/") {
			group = "" // core group: "v1"
		}
		switch group {
		case weftGroup:
			if apiVersion != weftAPIVersion {
				c.errs.add(src, it.field("apiVersion"), "unsupported version %q (want %s)", apiVersion, weftAPIVersion)
				return nil
			}
			if k, err := appmesh.ParseKind(kind); err != nil || string(k) != kind {
				c.errs.add(src, it.field("kind"), "unknown kind %q for %s (want one of %s)", kind, weftAPIVersion, kindList())
				return nil
			}
			it.form, it.kind = FormWeft, kind
			return []item{it}
		case k8sGroup:
			if apiVersion != k8sAPIVersion {
				c.errs.add(src, it.field("apiVersion"), "unsupported version %q (want %s)", apiVersion, k8sAPIVersion)
				return nil
			}
			if !slices.Contains(k8sKinds, kind) {
				c.errs.add(src, it.field("kind"), "unknown kind %q for %s (want one of %s)", kind, k8sAPIVersion, strings.Join(k8sKinds, ", "))
				return nil
			}
			it.form, it.kind = FormKubernetes, kind
			return []item{it}
		case "":
			if apiVersion == "v1" && kind == k8sKindNamespace {
				it.form, it.kind = FormKubernetes, kind
				return []item{it}
			}
		}
		return nil // a kind weft does not read (Deployment, Service, ...)
	}
	if _, ok := obj["kind"]; ok {
		c.errs.add(src, it.field("apiVersion"), "is required when kind is set")
		return nil
	}
	if len(obj) == 1 {
		for k, v := range obj {
			if _, ok := describeWrappers[k]; ok {
				if m, ok := v.(map[string]any); ok {
					it.form, it.kind, it.path, it.obj = FormAppMeshAPI, k, it.field(k), m
					return []item{it}
				}
			}
		}
	}
	if _, ok := obj["meshName"]; ok {
		it.form = FormAppMeshAPI
		return []item{it}
	}
	c.errs.add(src, path, "unrecognized document: want apiVersion %s or %s, "+
		"an App Mesh API input with meshName, or describe output such as {\"virtualNode\": {...}}", weftAPIVersion, k8sAPIVersion)
	return nil
}

// classifyList expands a Kubernetes List (kubectl get -o yaml output).
func (c *converter) classifyList(it item, items []any) []item {
	var out []item
	for i, e := range items {
		p := indexPath(it.field("items"), i)
		m, ok := e.(map[string]any)
		if !ok {
			c.errs.add(it.src, p, "must be an object, not %s", describe(e))
			continue
		}
		out = append(out, c.classify(it.src, p, m)...)
	}
	return out
}

// kindList names the App Mesh kinds for error messages.
func kindList() string {
	s := make([]string, len(appmesh.Kinds))
	for i, k := range appmesh.Kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// decodeInto decodes in strictly into out (a pointer) and reports every
// field error at the item. It reports whether there were none.
func (c *converter) decodeInto(it item, path string, in any, out any) bool {
	errs := decodeStrict(it.field(path), in, out)
	for _, e := range errs {
		c.errs.addErr(it.src, e.path, e.err)
	}
	return len(errs) == 0
}

// decodeSpec decodes a spec of the kind; null or absent gives an empty spec.
func (c *converter) decodeSpec(it item, path string, kind appmesh.Kind, in any) (any, bool) {
	spec, err := kind.NewSpec()
	if err != nil {
		c.errs.addErr(it.src, it.field(path), err)
		return nil, false
	}
	return spec, c.decodeInto(it, path, in, spec)
}

// missing reports whether the value at the path of nested keys is absent,
// null or the empty string; a value of another type is not "missing" (the
// strict decoder reported it already).
func missing(obj map[string]any, keys ...string) bool {
	var v any = obj
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return v == nil
		}
		v = m[k]
	}
	s, isString := v.(string)
	return v == nil || isString && s == ""
}
