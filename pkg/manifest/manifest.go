// SPDX-License-Identifier: Apache-2.0

package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// Source locates a document: the file it came from ("-" for standard input) and
// its 0-based index among the documents of that file. Index is -1 when an error
// concerns the whole file.
type Source struct {
	File  string
	Index int
}

// String renders the source as "path/to/file.yaml#2" ("<stdin>#2" for standard
// input, and the bare path when Index is negative).
func (s Source) String() string {
	f := s.File
	if f == "-" {
		f = "<stdin>"
	}
	if s.Index < 0 {
		return f
	}
	return f + "#" + strconv.Itoa(s.Index)
}

// Form is the input form a document was written in.
type Form string

// The three input forms.
const (
	FormWeft       Form = "weft"        // apiVersion weft-mesh.io/v1
	FormKubernetes Form = "kubernetes"  // apiVersion appmesh.k8s.aws/v1beta2
	FormAppMeshAPI Form = "appmesh-api" // describe-* output or create-* --cli-input-json/yaml
)

// Document is one App Mesh resource read from the input, with where it came
// from. A Kubernetes VirtualRouter yields several documents (the router and one
// Route per spec.routes entry) that share one Source.
type Document struct {
	Source Source
	Form   Form
	// Resource holds Ref, Spec (a pointer to the kind's spec struct, never nil)
	// and Tags. Metadata and Status are always zero: they are outputs of the
	// control plane, not inputs of apply.
	Resource appmesh.Resource
	// ClientToken is the clientToken of an App Mesh API input, if any.
	ClientToken string
	// MeshOwner is the account that owns the mesh, when the input names one
	// (meshOwner of an API input, metadata.meshOwner of a weft document,
	// spec.meshOwner of the Kubernetes Mesh the resource belongs to).
	MeshOwner string
	// K8s is set for the Kubernetes form only.
	K8s *K8sInfo
}

// K8sInfo keeps the parts of a Kubernetes custom resource that are not part of
// the App Mesh spec but that other weft components (the node agent) need.
type K8sInfo struct {
	// Namespace is empty for the cluster-scoped Mesh.
	Namespace string
	// Name is the Kubernetes object name (metadata.name), not the AWS name.
	Name   string
	Labels map[string]string
	// PodSelector is the podSelector of a VirtualNode or VirtualGateway (nil
	// when absent, which selects no pod).
	PodSelector *LabelSelector
}

// Options tune the conversion.
type Options struct {
	// DefaultMesh is the mesh of a namespaced Kubernetes resource that no Mesh
	// selects and that has no spec.meshRef, and of a weft document without
	// metadata.mesh. Empty means such documents are errors.
	DefaultMesh string
	// DefaultNamespace is the namespace of a namespaced Kubernetes resource
	// without metadata.namespace. Empty means "default", as kubectl does.
	DefaultNamespace string
}

func (o Options) namespace() string {
	if o.DefaultNamespace == "" {
		return "default"
	}
	return o.DefaultNamespace
}

// Error is a decode or conversion error located at a document and, when known,
// at a field path within it (JSON names, e.g. spec.routes[0].httpRoute.match).
type Error struct {
	Source Source
	Field  string
	Err    error
}

// Error renders "file.yaml#2: spec.routes[0].httpRoute.match: <msg>".
func (e *Error) Error() string {
	if e.Field == "" {
		return e.Source.String() + ": " + e.Err.Error()
	}
	return e.Source.String() + ": " + e.Field + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// errorList collects *Error values in the order they are found.
type errorList []error

func (l *errorList) add(src Source, field string, format string, args ...any) {
	*l = append(*l, &Error{Source: src, Field: field, Err: fmt.Errorf(format, args...)})
}

func (l *errorList) addErr(src Source, field string, err error) {
	*l = append(*l, &Error{Source: src, Field: field, Err: err})
}

func (l errorList) err() error { return errors.Join(l...) }

// Load reads paths, decodes them and converts every document together, as
// Convert does. A path is a file (read whatever its extension), a directory
// (walked recursively for *.yaml, *.yml and *.json files in lexical order,
// skipping entries whose name starts with a dot), or "-" for stdin. The
// result is in dependency order (appmesh.Kinds; input order within a kind).
// On failure it returns every error found, joined; each is an *Error.
func Load(paths []string, stdin io.Reader, opts Options) ([]Document, error) {
	var (
		raws      []RawDocument
		errs      errorList
		sawStdin  bool
		readFiles = map[string]bool{}
	)
	read := func(name string, r io.Reader) {
		docs, err := Decode(r, name)
		raws = append(raws, docs...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range paths {
		if p == "-" {
			if sawStdin {
				errs.add(Source{File: "-", Index: -1}, "", "standard input given twice")
				continue
			}
			sawStdin = true
			if stdin == nil {
				errs.add(Source{File: "-", Index: -1}, "", "no standard input")
				continue
			}
			read("-", stdin)
			continue
		}
		files, err := expandPath(p)
		if err != nil {
			errs.addErr(Source{File: p, Index: -1}, "", err)
			continue
		}
		for _, f := range files {
			f = filepath.Clean(f)
			if readFiles[f] {
				continue // a file named twice (or inside a named directory) is read once
			}
			readFiles[f] = true
			b, err := os.ReadFile(f)
			if err != nil {
				errs.addErr(Source{File: f, Index: -1}, "", unwrapPathError(err))
				continue
			}
			read(f, bytes.NewReader(b))
		}
	}
	docs, err := Convert(raws, opts)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, flatten(errs)
	}
	return docs, nil
}

// unwrapPathError drops the path from an *fs.PathError: the Source names it.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// flatten joins errors, unpacking nested joins so that callers see one flat
// list of *Error.
func flatten(errs []error) error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		var j interface{ Unwrap() []error }
		if errors.As(e, &j) {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		out = append(out, e)
	}
	for _, e := range errs {
		walk(e)
	}
	return errors.Join(out...)
}

// expandPath lists the files a path stands for.
func expandPath(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != p && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk directory: %w", unwrapPathError(err))
	}
	return files, nil
}

// Convert converts decoded documents, all together: Kubernetes documents
// need the whole set to resolve mesh membership, gateways and references.
// The result is in dependency order (appmesh.Kinds; input order within a
// kind). Documents of kinds weft does not know (a Deployment, a Service) are
// skipped. On failure it returns every error found, joined; each is an *Error.
func Convert(raws []RawDocument, opts Options) ([]Document, error) {
	docs, errs := convert(raws, opts)
	checkDuplicates(docs, &errs)
	if len(errs) > 0 {
		return nil, errs.err()
	}
	sortByKind(docs)
	for i := range docs {
		docs[i].Resource.Metadata = appmesh.Metadata{}
		docs[i].Resource.Status = appmesh.ResourceStatus{}
	}
	return docs, nil
}

// Unmarshal reads what Marshal writes (or any input Load accepts) and returns
// the resources in input order. Unlike Convert it keeps the read-only
// metadata and status that Marshal writes, so Marshal followed by Unmarshal
// gives back the same resources.
func Unmarshal(data []byte) ([]appmesh.Resource, error) {
	raws, err := Decode(bytes.NewReader(data), "-")
	if err != nil {
		return nil, err
	}
	docs, errs := convert(raws, Options{})
	checkDuplicates(docs, &errs)
	if len(errs) > 0 {
		return nil, errs.err()
	}
	res := make([]appmesh.Resource, len(docs))
	for i, d := range docs {
		res[i] = d.Resource
	}
	return res, nil
}

// convert converts every document, in input order, keeping metadata.
func convert(raws []RawDocument, opts Options) ([]Document, errorList) {
	var errs errorList
	c := &converter{opts: opts, errs: &errs}
	var items []item
	for _, raw := range raws {
		items = append(items, c.classify(raw.Source, "", raw.Object)...)
	}
	for i := range items {
		items[i].id = i
	}
	k8s := newK8sConverter(c, items)
	var docs []Document
	for _, it := range items {
		switch it.form {
		case FormWeft:
			if d, ok := c.convertWeft(it); ok {
				docs = append(docs, d)
			}
		case FormAppMeshAPI:
			if d, ok := c.convertAPI(it); ok {
				docs = append(docs, d)
			}
		case FormKubernetes:
			docs = append(docs, k8s.convert(it)...)
		}
	}
	return docs, errs
}

// checkDuplicates reports every resource defined twice, naming both sources.
func checkDuplicates(docs []Document, errs *errorList) {
	first := map[appmesh.Ref]Document{}
	for _, d := range docs {
		ref := d.Resource.Ref
		if prev, ok := first[ref]; ok {
			errs.add(d.Source, "", "duplicate %s %s (already defined at %s)", ref.Kind, ref.ResourcePath(), prev.Source)
			continue
		}
		first[ref] = d
	}
}

// sortByKind orders documents by appmesh.Kinds, keeping input order within a
// kind.
func sortByKind(docs []Document) {
	rank := map[appmesh.Kind]int{}
	for i, k := range appmesh.Kinds {
		rank[k] = i
	}
	slices.SortStableFunc(docs, func(a, b Document) int {
		return rank[a.Resource.Ref.Kind] - rank[b.Resource.Ref.Kind]
	})
}
