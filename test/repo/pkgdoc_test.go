// SPDX-License-Identifier: Apache-2.0

package repo_test

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const spdxLine = "// SPDX-License-Identifier: Apache-2.0"

// TestPackageDocs checks that every package has exactly one package doc
// comment, counted over its non-test files of every build configuration.
func TestPackageDocs(t *testing.T) {
	t.Parallel()
	root := moduleRoot(t)
	dirs := goFiles(t, root)
	if len(dirs) == 0 {
		t.Fatalf("no Go files under %s", root)
	}
	for _, dir := range slices.Sorted(maps.Keys(dirs)) {
		// Files with a package doc, per package name (a directory can hold a
		// package and, say, a `//go:build ignore` generator).
		docs := map[string][]string{}
		fset := token.NewFileSet()
		for _, name := range dirs[dir] {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			path := filepath.Join(root, dir, name)
			f, err := parser.ParseFile(fset, path, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Errorf("%s: %v", filepath.Join(dir, name), err)
				continue
			}
			if buildIgnored(f) {
				continue
			}
			pkg := f.Name.Name
			if _, ok := docs[pkg]; !ok {
				docs[pkg] = nil
			}
			if f.Doc != nil {
				docs[pkg] = append(docs[pkg], name)
			}
		}
		for pkg, files := range docs {
			switch len(files) {
			case 1:
			case 0:
				t.Errorf("%s: package %s has no package doc comment; add one (in doc.go if the package is not trivial)", dir, pkg)
			default:
				t.Errorf("%s: package %s has package doc comments in %s; keep exactly one", dir, pkg, strings.Join(files, ", "))
			}
		}
	}
}

// TestSPDXHeaders checks that every Go file that is not generated starts
// with the SPDX line.
func TestSPDXHeaders(t *testing.T) {
	t.Parallel()
	root := moduleRoot(t)
	for dir, names := range goFiles(t, root) {
		for _, name := range names {
			rel := filepath.Join(dir, name)
			first, generated, err := headerOf(filepath.Join(root, rel))
			if err != nil {
				t.Errorf("%s: %v", rel, err)
				continue
			}
			if !generated && first != spdxLine {
				t.Errorf("%s: first line is %q; want %q", rel, first, spdxLine)
			}
		}
	}
}

// headerOf returns the first line of a Go file and whether the file says it
// is generated (https://go.dev/s/generatedcode).
func headerOf(path string) (first string, generated bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for i := 0; sc.Scan(); i++ {
		line := sc.Text()
		if i == 0 {
			first = line
		}
		if strings.HasPrefix(line, "// Code generated ") && strings.HasSuffix(line, " DO NOT EDIT.") {
			return first, true, nil
		}
		if strings.HasPrefix(line, "package ") {
			break
		}
	}
	return first, false, sc.Err()
}

// buildIgnored reports whether the file carries the `//go:build ignore`
// constraint of a program run by go generate.
func buildIgnored(f *ast.File) bool {
	for _, g := range f.Comments {
		if g.Pos() > f.Package {
			break
		}
		for _, c := range g.List {
			if strings.TrimSpace(c.Text) == "//go:build ignore" {
				return true
			}
		}
	}
	return false
}
