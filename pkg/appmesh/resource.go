// SPDX-License-Identifier: Apache-2.0

package appmesh

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Kind is one of the seven App Mesh resource kinds.
type Kind string

// The App Mesh resource kinds.
const (
	KindMesh           Kind = "Mesh"
	KindVirtualNode    Kind = "VirtualNode"
	KindVirtualService Kind = "VirtualService"
	KindVirtualRouter  Kind = "VirtualRouter"
	KindRoute          Kind = "Route"
	KindVirtualGateway Kind = "VirtualGateway"
	KindGatewayRoute   Kind = "GatewayRoute"
)

// Kinds lists every kind in dependency order: a kind only references kinds before
// it or itself (virtual nodes may name virtual services that come later, but those
// references are allowed to dangle).
var Kinds = []Kind{
	KindMesh, KindVirtualNode, KindVirtualRouter, KindRoute,
	KindVirtualService, KindVirtualGateway, KindGatewayRoute,
}

// ParseKind accepts a kind in any case, singular or plural, with or without
// hyphens ("virtualnode", "virtual-nodes", "vn" is not accepted).
func ParseKind(s string) (Kind, error) {
	n := strings.ToLower(strings.ReplaceAll(strings.ReplaceAll(s, "-", ""), "_", ""))
	for _, k := range Kinds {
		l := strings.ToLower(string(k))
		if n == l || n == l+"s" || (k == KindMesh && n == "meshes") {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown kind %q (want one of mesh, virtualnode, virtualservice, virtualrouter, route, virtualgateway, gatewayroute)", s)
}

// HasParent reports whether resources of the kind live under a router or gateway.
func (k Kind) HasParent() bool { return k == KindRoute || k == KindGatewayRoute }

// ParentKind is the kind of the parent (router or gateway), or "" for none.
func (k Kind) ParentKind() Kind {
	switch k {
	case KindRoute:
		return KindVirtualRouter
	case KindGatewayRoute:
		return KindVirtualGateway
	}
	return ""
}

// LowerCamel is the kind as the API spells it in ARNs and field names
// ("virtualNode").
func (k Kind) LowerCamel() string {
	s := string(k)
	return strings.ToLower(s[:1]) + s[1:]
}

// Words is the kind in lower-case words ("virtual node").
func (k Kind) Words() string {
	var b strings.Builder
	for i, r := range string(k) {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte(' ')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// NewSpec returns a pointer to an empty spec of the kind.
func (k Kind) NewSpec() (any, error) {
	switch k {
	case KindMesh:
		return &MeshSpec{}, nil
	case KindVirtualNode:
		return &VirtualNodeSpec{}, nil
	case KindVirtualService:
		return &VirtualServiceSpec{}, nil
	case KindVirtualRouter:
		return &VirtualRouterSpec{}, nil
	case KindRoute:
		return &RouteSpec{}, nil
	case KindVirtualGateway:
		return &VirtualGatewaySpec{}, nil
	case KindGatewayRoute:
		return &GatewayRouteSpec{}, nil
	}
	return nil, fmt.Errorf("unknown kind %q", k)
}

// Ref identifies a resource: kind, mesh, parent (router or gateway, for routes and
// gateway routes) and name. For a mesh, Mesh and Name are both the mesh name.
type Ref struct {
	Kind   Kind   `json:"kind"`
	Mesh   string `json:"meshName"`
	Parent string `json:"parent,omitempty"`
	Name   string `json:"name"`
}

// String renders the ref as the resource part of an ARN.
func (r Ref) String() string { return r.ResourcePath() }

// ResourcePath is the resource part of the ARN, e.g. mesh/m/virtualRouter/r/route/x.
func (r Ref) ResourcePath() string {
	switch r.Kind {
	case KindMesh:
		return "mesh/" + r.Name
	case KindRoute:
		return "mesh/" + r.Mesh + "/virtualRouter/" + r.Parent + "/route/" + r.Name
	case KindGatewayRoute:
		return "mesh/" + r.Mesh + "/virtualGateway/" + r.Parent + "/gatewayRoute/" + r.Name
	}
	return "mesh/" + r.Mesh + "/" + r.Kind.LowerCamel() + "/" + r.Name
}

// ParseResourcePath parses the resource part of an ARN (or a whole ARN).
func ParseResourcePath(s string) (Ref, error) {
	if strings.HasPrefix(s, "arn:") {
		parts := strings.SplitN(s, ":", 6)
		if len(parts) != 6 || parts[2] != "appmesh" {
			return Ref{}, fmt.Errorf("%q is not an App Mesh ARN", s)
		}
		s = parts[5]
	}
	p := strings.Split(s, "/")
	bad := fmt.Errorf("%q is not an App Mesh resource path", s)
	if len(p) < 2 || p[0] != "mesh" || p[1] == "" {
		return Ref{}, bad
	}
	switch len(p) {
	case 2:
		return Ref{Kind: KindMesh, Mesh: p[1], Name: p[1]}, nil
	case 4:
		for _, k := range []Kind{KindVirtualNode, KindVirtualService, KindVirtualRouter, KindVirtualGateway} {
			if p[2] == k.LowerCamel() && p[3] != "" {
				return Ref{Kind: k, Mesh: p[1], Name: p[3]}, nil
			}
		}
	case 6:
		if p[2] == "virtualRouter" && p[4] == "route" && p[3] != "" && p[5] != "" {
			return Ref{Kind: KindRoute, Mesh: p[1], Parent: p[3], Name: p[5]}, nil
		}
		if p[2] == "virtualGateway" && p[4] == "gatewayRoute" && p[3] != "" && p[5] != "" {
			return Ref{Kind: KindGatewayRoute, Mesh: p[1], Parent: p[3], Name: p[5]}, nil
		}
	}
	return Ref{}, bad
}

// Status is ACTIVE, INACTIVE or DELETED.
type Status string

// Resource statuses.
const (
	StatusActive   Status = "ACTIVE"
	StatusInactive Status = "INACTIVE"
	StatusDeleted  Status = "DELETED"
)

// ResourceStatus is the status block of every kind.
type ResourceStatus struct {
	Status Status `json:"status"`
	// Message is weft's extension: why a resource is INACTIVE (what the
	// translation to the data plane could not use). It is never stored,
	// and omitted when empty; AWS SDK clients ignore it.
	Message string `json:"message,omitempty"`
}

// Metadata is the envelope App Mesh returns with every resource.
type Metadata struct {
	ARN           string `json:"arn"`
	UID           string `json:"uid"`
	Version       int64  `json:"version"`
	CreatedAt     Time   `json:"createdAt"`
	LastUpdatedAt Time   `json:"lastUpdatedAt"`
	MeshOwner     string `json:"meshOwner"`
	ResourceOwner string `json:"resourceOwner"`
}

// Resource is one stored resource of any kind: its identity, its typed spec (a
// pointer to the kind's spec struct), metadata, status and tags.
type Resource struct {
	Ref      Ref
	Spec     any
	Metadata Metadata
	Status   ResourceStatus
	Tags     []Tag
}

type resourceJSON struct {
	Ref      Ref             `json:"ref"`
	Spec     json.RawMessage `json:"spec"`
	Metadata Metadata        `json:"metadata"`
	Status   ResourceStatus  `json:"status"`
	Tags     []Tag           `json:"tags,omitempty"`
}

// MarshalJSON encodes the resource in weft's storage form.
func (r Resource) MarshalJSON() ([]byte, error) {
	spec, err := json.Marshal(r.Spec)
	if err != nil {
		return nil, err
	}
	return json.Marshal(resourceJSON{Ref: r.Ref, Spec: spec, Metadata: r.Metadata, Status: r.Status, Tags: r.Tags})
}

// UnmarshalJSON decodes the storage form, typing the spec by kind.
func (r *Resource) UnmarshalJSON(b []byte) error {
	var raw resourceJSON
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	spec, err := raw.Ref.Kind.NewSpec()
	if err != nil {
		return err
	}
	if len(raw.Spec) > 0 && string(raw.Spec) != "null" {
		if err := json.Unmarshal(raw.Spec, spec); err != nil {
			return fmt.Errorf("decode %s spec: %w", raw.Ref.Kind, err)
		}
	}
	*r = Resource{Ref: raw.Ref, Spec: spec, Metadata: raw.Metadata, Status: raw.Status, Tags: raw.Tags}
	return nil
}
