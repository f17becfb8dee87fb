// SPDX-License-Identifier: Apache-2.0

package manifest

import (
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// describeWrappers maps the top-level key of describe-*/create-* output to
// its kind: {"virtualNode": {"meshName": ..., "virtualNodeName": ..., ...}}.
var describeWrappers = map[string]appmesh.Kind{
	"mesh":           appmesh.KindMesh,
	"virtualNode":    appmesh.KindVirtualNode,
	"virtualService": appmesh.KindVirtualService,
	"virtualRouter":  appmesh.KindVirtualRouter,
	"route":          appmesh.KindRoute,
	"virtualGateway": appmesh.KindVirtualGateway,
	"gatewayRoute":   appmesh.KindGatewayRoute,
}

// apiInput is a Create*/Update* input (--cli-input-json/yaml) or the data of
// describe-* output. metadata and status (describe output) and clientToken
// play no part in apply; metadata and status are not checked at all (so that
// output of a newer CLI still applies), only kept for Unmarshal if they parse.
type apiInput struct {
	MeshName           *string                 `json:"meshName"`
	VirtualNodeName    *string                 `json:"virtualNodeName"`
	VirtualServiceName *string                 `json:"virtualServiceName"`
	VirtualRouterName  *string                 `json:"virtualRouterName"`
	RouteName          *string                 `json:"routeName"`
	VirtualGatewayName *string                 `json:"virtualGatewayName"`
	GatewayRouteName   *string                 `json:"gatewayRouteName"`
	Spec               any                     `json:"spec"`
	Tags               []appmesh.Tag           `json:"tags"`
	ClientToken        string                  `json:"clientToken"`
	MeshOwner          string                  `json:"meshOwner"`
	Metadata           *appmesh.Metadata       `json:"metadata"`
	Status             *appmesh.ResourceStatus `json:"status"`
}

// nameKey is one of the name fields of an API input.
type nameKey struct {
	field string
	value *string
}

// kindOf tells the kind from the name fields present: the most specific one
// decides (gatewayRouteName, routeName, virtualGatewayName, virtualRouterName,
// virtualServiceName, virtualNodeName; only meshName means a Mesh). It
// returns the kind, the resource name, the parent name and the name fields
// the kind does not allow.
func (in *apiInput) kindOf() (kind appmesh.Kind, name, parent *nameKey, extra []nameKey) {
	keys := []nameKey{
		{"gatewayRouteName", in.GatewayRouteName},
		{"routeName", in.RouteName},
		{"virtualGatewayName", in.VirtualGatewayName},
		{"virtualRouterName", in.VirtualRouterName},
		{"virtualServiceName", in.VirtualServiceName},
		{"virtualNodeName", in.VirtualNodeName},
	}
	kinds := []appmesh.Kind{
		appmesh.KindGatewayRoute, appmesh.KindRoute, appmesh.KindVirtualGateway,
		appmesh.KindVirtualRouter, appmesh.KindVirtualService, appmesh.KindVirtualNode,
	}
	kind = appmesh.KindMesh
	name = &nameKey{"meshName", in.MeshName}
	for i, k := range keys {
		if k.value != nil {
			kind, name = kinds[i], &keys[i]
			break
		}
	}
	switch kind {
	case appmesh.KindRoute:
		parent = &keys[3]
	case appmesh.KindGatewayRoute:
		parent = &keys[2]
	}
	for i, k := range keys {
		if k.value != nil && &keys[i] != name && &keys[i] != parent {
			extra = append(extra, k)
		}
	}
	return kind, name, parent, extra
}

// convertAPI converts an App Mesh API input or describe output.
func (c *converter) convertAPI(it item) (Document, bool) {
	var in apiInput
	ok := c.decodeInto(it, "", it.obj, &in)
	kind, name, parent, extra := in.kindOf()
	if it.kind != "" { // describe output: the wrapper names the kind
		if want := describeWrappers[it.kind]; want != kind {
			c.errs.add(it.src, it.path, "a %s needs %s", want, nameFieldsOf(want))
			return Document{}, false
		}
	}
	for _, e := range extra {
		c.errs.add(it.src, it.field(e.field), "is not allowed for a %s (given %s)", kind, name.field)
		ok = false
	}
	if in.MeshName == nil || *in.MeshName == "" {
		c.errs.add(it.src, it.field("meshName"), "is required")
		ok = false
	}
	for _, k := range []*nameKey{name, parent} {
		if k == nil || k.field == "meshName" {
			continue
		}
		if k.value == nil || *k.value == "" {
			c.errs.add(it.src, it.field(k.field), "is required for a %s", kind)
			ok = false
		}
	}
	spec, specOK := c.decodeSpec(it, "spec", kind, in.Spec)
	if !ok || !specOK {
		return Document{}, false
	}
	ref := appmesh.Ref{Kind: kind, Mesh: *in.MeshName, Name: *name.value}
	if parent != nil {
		ref.Parent = *parent.value
	}
	res := appmesh.Resource{Ref: ref, Spec: spec, Tags: in.Tags}
	if in.Metadata != nil {
		var md appmesh.Metadata
		if len(decodeStrict("", in.Metadata, &md)) == 0 {
			res.Metadata = md
		}
	}
	if in.Status != nil {
		var st appmesh.ResourceStatus
		if len(decodeStrict("", in.Status, &st)) == 0 {
			res.Status = st
		}
	}
	return Document{
		Source: it.src, Form: FormAppMeshAPI, Resource: res,
		ClientToken: in.ClientToken, MeshOwner: in.MeshOwner,
	}, true
}

// nameFieldsOf lists the name fields an input of the kind has.
func nameFieldsOf(k appmesh.Kind) string {
	switch k {
	case appmesh.KindMesh:
		return "meshName only"
	case appmesh.KindRoute:
		return "meshName, virtualRouterName and routeName"
	case appmesh.KindGatewayRoute:
		return "meshName, virtualGatewayName and gatewayRouteName"
	}
	return "meshName and " + k.LowerCamel() + "Name"
}
