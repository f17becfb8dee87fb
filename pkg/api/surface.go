// SPDX-License-Identifier: Apache-2.0

// Package api describes the controller's HTTP API as both ends see it: the App
// Mesh 2019-01-25 REST surface (paths, name fields, the <Kind>Data and
// <Kind>Ref shapes) and weft's own /weft/v1 extensions (apply). The server
// (controlplane/restapi) and the client (pkg/client) share it, so the two
// cannot drift apart.
package api

import (
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// Prefix is the path prefix of the App Mesh API.
const Prefix = "/v20190125"

// KindInfo is how the REST surface spells one kind.
type KindInfo struct {
	Kind       appmesh.Kind
	NameField  string // "virtualNodeName"
	Collection string // path segment of the collection: "virtualNodes"
	ListField  string // field of the List output: "virtualNodes"
	ParentSeg  string // "virtualRouter" for routes (singular, as App Mesh spells it)
	ParentName string // "virtualRouterName"
	Op         string // operation suffix: "VirtualNode"
	OpPlural   string // "VirtualNodes"
}

// Kinds lists every kind's spelling.
var Kinds = []KindInfo{
	{Kind: appmesh.KindMesh, NameField: "meshName", Collection: "meshes", ListField: "meshes", Op: "Mesh", OpPlural: "Meshes"},
	{Kind: appmesh.KindVirtualNode, NameField: "virtualNodeName", Collection: "virtualNodes", ListField: "virtualNodes", Op: "VirtualNode", OpPlural: "VirtualNodes"},
	{Kind: appmesh.KindVirtualService, NameField: "virtualServiceName", Collection: "virtualServices", ListField: "virtualServices", Op: "VirtualService", OpPlural: "VirtualServices"},
	{Kind: appmesh.KindVirtualRouter, NameField: "virtualRouterName", Collection: "virtualRouters", ListField: "virtualRouters", Op: "VirtualRouter", OpPlural: "VirtualRouters"},
	{Kind: appmesh.KindRoute, NameField: "routeName", Collection: "routes", ListField: "routes", ParentSeg: "virtualRouter", ParentName: "virtualRouterName", Op: "Route", OpPlural: "Routes"},
	{Kind: appmesh.KindVirtualGateway, NameField: "virtualGatewayName", Collection: "virtualGateways", ListField: "virtualGateways", Op: "VirtualGateway", OpPlural: "VirtualGateways"},
	{Kind: appmesh.KindGatewayRoute, NameField: "gatewayRouteName", Collection: "gatewayRoutes", ListField: "gatewayRoutes", ParentSeg: "virtualGateway", ParentName: "virtualGatewayName", Op: "GatewayRoute", OpPlural: "GatewayRoutes"},
}

// Info returns the spelling of kind.
func Info(kind appmesh.Kind) (KindInfo, error) {
	for _, k := range Kinds {
		if k.Kind == kind {
			return k, nil
		}
	}
	return KindInfo{}, fmt.Errorf("unknown kind %q", kind)
}

// CollectionPattern is the ServeMux pattern path of the collection.
func (k KindInfo) CollectionPattern() string {
	p := Prefix + "/meshes"
	if k.Kind != appmesh.KindMesh {
		p += "/{meshName}"
		if k.ParentSeg != "" {
			p += "/" + k.ParentSeg + "/{" + k.ParentName + "}"
		}
		p += "/" + k.Collection
	}
	return p
}

// ItemPattern is the ServeMux pattern path of one resource.
func (k KindInfo) ItemPattern() string { return k.CollectionPattern() + "/{" + k.NameField + "}" }

// CollectionPath is the escaped path of the collection of mesh (and parent).
func (k KindInfo) CollectionPath(mesh, parent string) string {
	p := Prefix + "/meshes"
	if k.Kind != appmesh.KindMesh {
		p += "/" + url.PathEscape(mesh)
		if k.ParentSeg != "" {
			p += "/" + k.ParentSeg + "/" + url.PathEscape(parent)
		}
		p += "/" + k.Collection
	}
	return p
}

// ItemPath is the escaped path of one resource.
func (k KindInfo) ItemPath(r appmesh.Ref) string {
	return k.CollectionPath(r.Mesh, r.Parent) + "/" + url.PathEscape(r.Name)
}

// Data renders a resource as App Mesh's <Kind>Data.
func (k KindInfo) Data(r *appmesh.Resource) map[string]any {
	m := map[string]any{
		"meshName": r.Ref.Mesh,
		"spec":     r.Spec,
		"metadata": r.Metadata,
		"status":   r.Status,
	}
	if k.Kind != appmesh.KindMesh {
		m[k.NameField] = r.Ref.Name
	}
	if k.ParentName != "" {
		m[k.ParentName] = r.Ref.Parent
	}
	return m
}

// RefData renders a resource as App Mesh's <Kind>Ref, an entry of a List.
func (k KindInfo) RefData(r *appmesh.Resource) map[string]any {
	m := map[string]any{
		"meshName":      r.Ref.Mesh,
		"arn":           r.Metadata.ARN,
		"meshOwner":     r.Metadata.MeshOwner,
		"resourceOwner": r.Metadata.ResourceOwner,
		"version":       r.Metadata.Version,
		"createdAt":     r.Metadata.CreatedAt,
		"lastUpdatedAt": r.Metadata.LastUpdatedAt,
	}
	if k.Kind != appmesh.KindMesh {
		m[k.NameField] = r.Ref.Name
	}
	if k.ParentName != "" {
		m[k.ParentName] = r.Ref.Parent
	}
	return m
}

// DecodeData parses a <Kind>Data object (a Describe/Create/Update/Delete
// answer) into a resource. Tags are not part of it.
func (k KindInfo) DecodeData(b []byte) (*appmesh.Resource, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	str := func(f string) string {
		var s string
		_ = json.Unmarshal(raw[f], &s)
		return s
	}
	r := &appmesh.Resource{Ref: appmesh.Ref{Kind: k.Kind, Mesh: str("meshName"), Name: str(k.NameField)}}
	if k.ParentName != "" {
		r.Ref.Parent = str(k.ParentName)
	}
	spec, err := k.Kind.NewSpec()
	if err != nil {
		return nil, err
	}
	if s := raw["spec"]; len(s) > 0 && string(s) != "null" {
		if err := json.Unmarshal(s, spec); err != nil {
			return nil, fmt.Errorf("decode spec: %w", err)
		}
	}
	r.Spec = spec
	if m := raw["metadata"]; len(m) > 0 {
		if err := json.Unmarshal(m, &r.Metadata); err != nil {
			return nil, fmt.Errorf("decode metadata: %w", err)
		}
	}
	if s := raw["status"]; len(s) > 0 {
		if err := json.Unmarshal(s, &r.Status); err != nil {
			return nil, fmt.Errorf("decode status: %w", err)
		}
	}
	return r, nil
}

// DecodeRef parses a <Kind>Ref object (a List entry).
func (k KindInfo) DecodeRef(b []byte) (appmesh.Ref, appmesh.Metadata, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return appmesh.Ref{}, appmesh.Metadata{}, err
	}
	var md appmesh.Metadata
	if err := json.Unmarshal(b, &md); err != nil {
		return appmesh.Ref{}, appmesh.Metadata{}, err
	}
	str := func(f string) string {
		var s string
		_ = json.Unmarshal(raw[f], &s)
		return s
	}
	ref := appmesh.Ref{Kind: k.Kind, Mesh: str("meshName"), Name: str(k.NameField)}
	if k.ParentName != "" {
		ref.Parent = str(k.ParentName)
	}
	return ref, md, nil
}

// ApplyPath is the path of weft's transactional apply.
const ApplyPath = "/weft/v1/apply"

// ApplyRequest is the body of POST /weft/v1/apply: resources in weft's storage
// form (ref, spec, tags), created or updated in order in one transaction.
type ApplyRequest struct {
	Items  []ApplyRequestItem `json:"items"`
	DryRun bool               `json:"dryRun,omitempty"`
}

// ApplyRequestItem is one resource to create or update.
type ApplyRequestItem struct {
	Ref             appmesh.Ref     `json:"ref"`
	Spec            json.RawMessage `json:"spec"`
	Tags            []appmesh.Tag   `json:"tags,omitempty"`
	ExpectedVersion int64           `json:"expectedVersion,omitempty"`
}

// ApplyResponse is the answer to an apply: one result per item, in order.
type ApplyResponse struct {
	Results []ApplyResult `json:"results"`
}

// ApplyResult says what happened to one item: created, updated or unchanged.
type ApplyResult struct {
	Action   string            `json:"action"`
	Resource *appmesh.Resource `json:"resource"`
}

// ErrorBody is the JSON body of an error answer. Code is the App Mesh error
// type; Fields lists the broken rules of a validation error; Index is the
// failing item of an apply.
type ErrorBody struct {
	Type    string       `json:"__type,omitempty"`
	Code    string       `json:"code"`
	Message string       `json:"message"`
	Index   *int         `json:"index,omitempty"`
	Fields  []FieldError `json:"fields,omitempty"`
}

// FieldError is one broken rule in an ErrorBody.
type FieldError struct {
	Field string `json:"field"`
	Rule  string `json:"rule"`
}

// IfMatch is the header that carries the version an update or delete expects
// (weft's optimistic-concurrency extension; App Mesh clients never send it).
const IfMatch = "If-Match"
