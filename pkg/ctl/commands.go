// SPDX-License-Identifier: Apache-2.0

package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/pkg/api"
	"github.com/weft-mesh/weft/pkg/appmesh"
	"github.com/weft-mesh/weft/pkg/client"
	"github.com/weft-mesh/weft/pkg/manifest"
)

func newFlagSet(name string, g *globals) *flag.FlagSet {
	fs := flag.NewFlagSet("weftctl "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	return fs
}

func runApply(ctx context.Context, g *globals, args []string, stdio IO) error {
	fs := newFlagSet("apply", g)
	var files stringList
	fs.Var(&files, "f", "file, directory or - (stdin); repeatable")
	dryRun := fs.Bool("dry-run", false, "show what would change without writing")
	mesh := fs.String("mesh", "", "mesh of documents that name none (Kubernetes documents without a matching Mesh, weft documents without metadata.mesh)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return usageError(err.Error())
	}
	files = append(files, pos...)
	if len(files) == 0 {
		return usageError("apply: give at least one -f PATH")
	}
	docs, err := manifest.Load(files, stdio.In, manifest.Options{DefaultMesh: *mesh})
	if err != nil {
		return err
	}
	if len(docs) == 0 {
		_, err := fmt.Fprintln(stdio.Out, "no App Mesh resources found")
		return err
	}
	req := api.ApplyRequest{DryRun: *dryRun, Items: make([]api.ApplyRequestItem, len(docs))}
	for i, d := range docs {
		spec, err := json.Marshal(d.Resource.Spec)
		if err != nil {
			return fmt.Errorf("%s: encode spec: %w", d.Source, err)
		}
		req.Items[i] = api.ApplyRequestItem{Ref: d.Resource.Ref, Spec: spec, Tags: d.Resource.Tags}
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	resp, err := c.Apply(ctx, req)
	if err != nil {
		var ae *client.Error
		if errors.As(err, &ae) && ae.Body.Index != nil && *ae.Body.Index >= 0 && *ae.Body.Index < len(docs) {
			d := docs[*ae.Body.Index]
			return fmt.Errorf("%s (%s %s): %w; nothing was applied", d.Source, d.Resource.Ref.Kind, d.Resource.Ref.ResourcePath(), err)
		}
		return fmt.Errorf("apply: %w; nothing was applied", err)
	}
	suffix := ""
	if *dryRun {
		suffix = " (dry run)"
	}
	for i, r := range resp.Results {
		ref := docs[i].Resource.Ref
		if _, err := fmt.Fprintf(stdio.Out, "%s %s %s%s\n", strings.ToLower(string(ref.Kind)), ref.ResourcePath(), r.Action, suffix); err != nil {
			return err
		}
	}
	return nil
}

// target is the kind, names and scope a get/describe/delete names.
type target struct {
	kind   appmesh.Kind
	name   string
	mesh   string
	parent string
}

func scopeFlags(fs *flag.FlagSet, t *target) {
	fs.StringVar(&t.mesh, "mesh", "", "mesh of the resource")
	fs.StringVar(&t.parent, "router", "", "virtual router of a route")
	fs.StringVar(&t.parent, "gateway", "", "virtual gateway of a gateway route")
}

func (t *target) parse(pos []string, needName bool) error {
	if len(pos) == 0 {
		return usageError("give a KIND")
	}
	k, err := appmesh.ParseKind(pos[0])
	if err != nil {
		return usageError(err.Error())
	}
	t.kind = k
	switch {
	case len(pos) > 2:
		return usageError("too many arguments: " + strings.Join(pos[2:], " "))
	case len(pos) == 2:
		t.name = pos[1]
	case needName:
		return usageError("give a NAME")
	}
	if k == appmesh.KindMesh {
		if t.name != "" {
			t.mesh = t.name
		}
		return nil
	}
	if t.mesh == "" {
		return usageError(fmt.Sprintf("%s: --mesh is required", k))
	}
	if k.HasParent() && t.parent == "" && t.name != "" {
		flagName := "--router"
		if k == appmesh.KindGatewayRoute {
			flagName = "--gateway"
		}
		return usageError(fmt.Sprintf("%s: %s is required with a NAME", k, flagName))
	}
	return nil
}

func (t *target) ref() appmesh.Ref {
	return appmesh.Ref{Kind: t.kind, Mesh: t.mesh, Parent: t.parent, Name: t.name}
}

// entries lists what t names: one resource, or every resource of the kind.
func entries(ctx context.Context, c *client.Client, t *target) ([]client.Entry, error) {
	if t.name != "" {
		r, err := c.Describe(ctx, t.ref())
		if err != nil {
			return nil, err
		}
		return []client.Entry{{Ref: r.Ref, Metadata: r.Metadata}}, nil
	}
	if !t.kind.HasParent() || t.parent != "" {
		return c.List(ctx, t.kind, t.mesh, t.parent)
	}
	parents, err := c.List(ctx, t.kind.ParentKind(), t.mesh, "")
	if err != nil {
		return nil, err
	}
	var out []client.Entry
	for _, p := range parents {
		es, err := c.List(ctx, t.kind, t.mesh, p.Ref.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	return out, nil
}

func runGet(ctx context.Context, g *globals, args []string, stdio IO) error {
	fs := newFlagSet("get", g)
	var t target
	scopeFlags(fs, &t)
	output := fs.String("o", "table", "output: table, yaml or json")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return usageError(err.Error())
	}
	if err := t.parse(pos, false); err != nil {
		return err
	}
	if !slices.Contains([]string{"table", "yaml", "json"}, *output) {
		return usageError("-o: want table, yaml or json")
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	es, err := entries(ctx, c, &t)
	if err != nil {
		return err
	}
	if *output == "table" {
		return printTable(stdio.Out, t.kind, es)
	}
	res := make([]appmesh.Resource, 0, len(es))
	for _, e := range es {
		r, err := c.Describe(ctx, e.Ref)
		if err != nil {
			return err
		}
		res = append(res, *r)
	}
	return printResources(stdio.Out, *output, res, t.name != "")
}

// printResources prints resources in weft's document form: multi-document
// YAML, or JSON (one object for a single resource, else a list).
func printResources(w io.Writer, format string, res []appmesh.Resource, single bool) error {
	if format == "yaml" {
		b, err := manifest.Marshal(res)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	docs := make([]json.RawMessage, len(res))
	for i := range res {
		y, err := manifest.Marshal(res[i : i+1])
		if err != nil {
			return err
		}
		if docs[i], err = yaml.YAMLToJSON(y); err != nil {
			return err
		}
	}
	var v any = docs
	if single && len(docs) == 1 {
		v = docs[0]
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func printTable(w io.Writer, kind appmesh.Kind, es []client.Entry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	hdr := "NAME\tMESH\tVERSION\tLAST UPDATED\tARN"
	switch kind {
	case appmesh.KindMesh:
		hdr = "NAME\tVERSION\tLAST UPDATED\tARN"
	case appmesh.KindRoute:
		hdr = "NAME\tMESH\tROUTER\tVERSION\tLAST UPDATED\tARN"
	case appmesh.KindGatewayRoute:
		hdr = "NAME\tMESH\tGATEWAY\tVERSION\tLAST UPDATED\tARN"
	}
	fmt.Fprintln(tw, hdr)
	for _, e := range es {
		cols := []string{e.Ref.Name}
		if kind != appmesh.KindMesh {
			cols = append(cols, e.Ref.Mesh)
		}
		if kind.HasParent() {
			cols = append(cols, e.Ref.Parent)
		}
		cols = append(cols, fmt.Sprint(e.Metadata.Version), e.Metadata.LastUpdatedAt.UTC().Format(time.RFC3339), e.Metadata.ARN)
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	if len(es) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	return tw.Flush()
}

func runDescribe(ctx context.Context, g *globals, args []string, stdio IO) error {
	fs := newFlagSet("describe", g)
	var t target
	scopeFlags(fs, &t)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return usageError(err.Error())
	}
	if err := t.parse(pos, true); err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	r, err := c.Describe(ctx, t.ref())
	if err != nil {
		return err
	}
	md := r.Metadata
	tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Kind:\t%s\n", r.Ref.Kind)
	fmt.Fprintf(tw, "Name:\t%s\n", r.Ref.Name)
	if r.Ref.Kind != appmesh.KindMesh {
		fmt.Fprintf(tw, "Mesh:\t%s\n", r.Ref.Mesh)
	}
	if r.Ref.Parent != "" {
		fmt.Fprintf(tw, "%s:\t%s\n", r.Ref.Kind.ParentKind(), r.Ref.Parent)
	}
	fmt.Fprintf(tw, "ARN:\t%s\n", md.ARN)
	fmt.Fprintf(tw, "UID:\t%s\n", md.UID)
	fmt.Fprintf(tw, "Version:\t%d\n", md.Version)
	fmt.Fprintf(tw, "Status:\t%s\n", r.Status.Status)
	if r.Status.Message != "" {
		fmt.Fprintf(tw, "Message:\t%s\n", r.Status.Message)
	}
	fmt.Fprintf(tw, "Created:\t%s\n", md.CreatedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "Last updated:\t%s\n", md.LastUpdatedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "Mesh owner:\t%s\n", md.MeshOwner)
	fmt.Fprintf(tw, "Resource owner:\t%s\n", md.ResourceOwner)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdio.Out, "---")
	return printResources(stdio.Out, "yaml", []appmesh.Resource{*r}, true)
}

func runDelete(ctx context.Context, g *globals, args []string, stdio IO) error {
	fs := newFlagSet("delete", g)
	var t target
	scopeFlags(fs, &t)
	var files stringList
	fs.Var(&files, "f", "delete the resources of these files, in reverse dependency order")
	ignoreMissing := fs.Bool("ignore-not-found", false, "treat a resource that does not exist as deleted")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return usageError(err.Error())
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	var refs []appmesh.Ref
	if len(files) > 0 {
		if len(pos) > 0 {
			return usageError("delete: give either -f PATH or KIND NAME, not both")
		}
		docs, err := manifest.Load(files, stdio.In, manifest.Options{DefaultMesh: t.mesh})
		if err != nil {
			return err
		}
		for i := len(docs) - 1; i >= 0; i-- {
			refs = append(refs, docs[i].Resource.Ref)
		}
	} else {
		if err := t.parse(pos, true); err != nil {
			return err
		}
		refs = []appmesh.Ref{t.ref()}
	}
	for _, ref := range refs {
		_, err := c.Delete(ctx, ref, 0)
		if err != nil && *ignoreMissing && client.IsType(err, appmesh.ErrNotFound) {
			fmt.Fprintf(stdio.Out, "%s %s not found\n", strings.ToLower(string(ref.Kind)), ref.ResourcePath())
			continue
		}
		if err != nil {
			return fmt.Errorf("delete %s %s: %w", ref.Kind, ref.ResourcePath(), err)
		}
		if _, err := fmt.Fprintf(stdio.Out, "%s %s deleted\n", strings.ToLower(string(ref.Kind)), ref.ResourcePath()); err != nil {
			return err
		}
	}
	return nil
}
