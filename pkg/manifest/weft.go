// SPDX-License-Identifier: Apache-2.0

package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	yaml "go.yaml.in/yaml/v2"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// weftDoc is a document of weft's own form.
type weftDoc struct {
	APIVersion string                  `json:"apiVersion"`
	Kind       string                  `json:"kind"`
	Metadata   weftMetadata            `json:"metadata"`
	Spec       any                     `json:"spec"`
	Status     *appmesh.ResourceStatus `json:"status"`
}

// weftMetadata identifies the resource. The fields after Tags are read-only:
// Marshal writes them for resources read from the control plane, apply
// ignores them.
type weftMetadata struct {
	Name           string        `json:"name"`
	Mesh           string        `json:"mesh"`
	VirtualRouter  string        `json:"virtualRouter"`
	VirtualGateway string        `json:"virtualGateway"`
	MeshOwner      string        `json:"meshOwner"`
	Tags           []appmesh.Tag `json:"tags"`

	ARN           string        `json:"arn"`
	UID           string        `json:"uid"`
	Version       int64         `json:"version"`
	CreatedAt     *appmesh.Time `json:"createdAt"`
	LastUpdatedAt *appmesh.Time `json:"lastUpdatedAt"`
	ResourceOwner string        `json:"resourceOwner"`
}

// convertWeft converts a document of weft's own form.
func (c *converter) convertWeft(it item) (Document, bool) {
	var d weftDoc
	ok := c.decodeInto(it, "", it.obj, &d)
	if _, present := it.obj["metadata"]; !present {
		c.errs.add(it.src, it.field("metadata"), "is required")
		return Document{}, false
	}
	kind := appmesh.Kind(it.kind)
	md := d.Metadata
	ref := appmesh.Ref{Kind: kind, Name: md.Name, Mesh: md.Mesh}
	if missing(it.obj, "metadata", "name") {
		c.errs.add(it.src, it.field("metadata.name"), "is required")
		ok = false
	}
	if kind == appmesh.KindMesh {
		if md.Mesh != "" && md.Mesh != md.Name {
			c.errs.add(it.src, it.field("metadata.mesh"), "must be empty or equal to metadata.name for a Mesh")
			ok = false
		}
		ref.Mesh = md.Name
	} else if ref.Mesh == "" {
		ref.Mesh = c.opts.DefaultMesh
		if ref.Mesh == "" && missing(it.obj, "metadata", "mesh") {
			c.errs.add(it.src, it.field("metadata.mesh"), "is required (or give a default mesh)")
			ok = false
		}
	}
	switch kind {
	case appmesh.KindRoute:
		ref.Parent = md.VirtualRouter
	case appmesh.KindGatewayRoute:
		ref.Parent = md.VirtualGateway
	}
	for _, p := range []struct {
		field, value string
		kind         appmesh.Kind
	}{
		{"metadata.virtualRouter", md.VirtualRouter, appmesh.KindRoute},
		{"metadata.virtualGateway", md.VirtualGateway, appmesh.KindGatewayRoute},
	} {
		switch {
		case kind == p.kind && p.value == "":
			c.errs.add(it.src, it.field(p.field), "is required for a %s", kind)
			ok = false
		case kind != p.kind && p.value != "":
			c.errs.add(it.src, it.field(p.field), "is only allowed for a %s", p.kind)
			ok = false
		}
	}
	spec, specOK := c.decodeSpec(it, "spec", kind, d.Spec)
	if !ok || !specOK {
		return Document{}, false
	}
	res := appmesh.Resource{
		Ref:  ref,
		Spec: spec,
		Tags: md.Tags,
		Metadata: appmesh.Metadata{
			ARN: md.ARN, UID: md.UID, Version: md.Version,
			MeshOwner: md.MeshOwner, ResourceOwner: md.ResourceOwner,
		},
	}
	if md.CreatedAt != nil {
		res.Metadata.CreatedAt = *md.CreatedAt
	}
	if md.LastUpdatedAt != nil {
		res.Metadata.LastUpdatedAt = *md.LastUpdatedAt
	}
	if d.Status != nil {
		res.Status = *d.Status
	}
	return Document{Source: it.src, Form: FormWeft, Resource: res, MeshOwner: md.MeshOwner}, true
}

// Marshal renders resources as multi-document YAML in weft's own form, in the
// order given. Besides name, mesh, parent and tags, metadata carries the
// read-only fields (arn, uid, version, timestamps, owners) and status when
// they are set; Load ignores those, Unmarshal restores them. Keys are written
// in the order of the App Mesh API model.
func Marshal(res []appmesh.Resource) ([]byte, error) {
	var buf bytes.Buffer
	for i, r := range res {
		doc, err := marshalOne(r)
		if err != nil {
			return nil, fmt.Errorf("marshal %s %s: %w", r.Ref.Kind, r.Ref.ResourcePath(), err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(doc)
	}
	return buf.Bytes(), nil
}

func marshalOne(r appmesh.Resource) ([]byte, error) {
	spec := r.Spec
	if spec == nil {
		s, err := r.Ref.Kind.NewSpec()
		if err != nil {
			return nil, err
		}
		spec = s
	}
	// JSON first, for the API names and omitempty rules of the spec types;
	// then into an ordered YAML mapping, which keeps the struct field order.
	j, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	var specYAML yaml.MapSlice
	if err := yaml.Unmarshal(j, &specYAML); err != nil {
		return nil, err
	}
	md := yaml.MapSlice{{Key: "name", Value: r.Ref.Name}}
	if r.Ref.Kind != appmesh.KindMesh {
		md = append(md, yaml.MapItem{Key: "mesh", Value: r.Ref.Mesh})
	}
	switch r.Ref.Kind {
	case appmesh.KindRoute:
		md = append(md, yaml.MapItem{Key: "virtualRouter", Value: r.Ref.Parent})
	case appmesh.KindGatewayRoute:
		md = append(md, yaml.MapItem{Key: "virtualGateway", Value: r.Ref.Parent})
	}
	m := r.Metadata
	md = appendIf(md, "meshOwner", m.MeshOwner, m.MeshOwner != "")
	if len(r.Tags) > 0 {
		tags := make([]yaml.MapSlice, len(r.Tags))
		for i, t := range r.Tags {
			tags[i] = yaml.MapSlice{{Key: "key", Value: t.Key}}
			if t.Value != nil {
				tags[i] = append(tags[i], yaml.MapItem{Key: "value", Value: *t.Value})
			}
		}
		md = append(md, yaml.MapItem{Key: "tags", Value: tags})
	}
	md = appendIf(md, "arn", m.ARN, m.ARN != "")
	md = appendIf(md, "uid", m.UID, m.UID != "")
	md = appendIf(md, "version", m.Version, m.Version != 0)
	md = appendIf(md, "createdAt", formatTime(m.CreatedAt), !m.CreatedAt.IsZero())
	md = appendIf(md, "lastUpdatedAt", formatTime(m.LastUpdatedAt), !m.LastUpdatedAt.IsZero())
	md = appendIf(md, "resourceOwner", m.ResourceOwner, m.ResourceOwner != "")
	doc := yaml.MapSlice{
		{Key: "apiVersion", Value: weftAPIVersion},
		{Key: "kind", Value: string(r.Ref.Kind)},
		{Key: "metadata", Value: md},
		{Key: "spec", Value: specYAML},
	}
	if r.Status.Status != "" {
		doc = append(doc, yaml.MapItem{Key: "status", Value: yaml.MapSlice{{Key: "status", Value: string(r.Status.Status)}}})
	}
	return yaml.Marshal(doc)
}

func appendIf(s yaml.MapSlice, key string, value any, cond bool) yaml.MapSlice {
	if !cond {
		return s
	}
	return append(s, yaml.MapItem{Key: key, Value: value})
}

// formatTime renders a timestamp as RFC 3339 (which appmesh.Time reads back
// without loss, unlike epoch seconds with milliseconds).
func formatTime(t appmesh.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}
