// SPDX-License-Identifier: Apache-2.0

package restapi

import (
	"bytes"
	"io"
	"net/http"
	"strconv"

	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/pkg/api"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func resourceARN(r *http.Request) (string, error) {
	arn := r.URL.Query().Get("resourceArn")
	if arn == "" {
		return "", appmesh.ValidationError{{Field: "resourceArn", Rule: "is required"}}
	}
	return arn, nil
}

func (h *Handler) tagResource(r *http.Request) (any, error) {
	arn, err := resourceARN(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		Tags []appmesh.Tag `json:"tags"`
	}
	if err := decodeStrict(r.Body, &body); err != nil {
		return nil, err
	}
	if body.Tags == nil {
		return nil, appmesh.ValidationError{{Field: "tags", Rule: "is required"}}
	}
	return struct{}{}, h.svc.TagResource(r.Context(), arn, body.Tags)
}

func (h *Handler) untagResource(r *http.Request) (any, error) {
	arn, err := resourceARN(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		TagKeys []string `json:"tagKeys"`
	}
	if err := decodeStrict(r.Body, &body); err != nil {
		return nil, err
	}
	if body.TagKeys == nil {
		return nil, appmesh.ValidationError{{Field: "tagKeys", Rule: "is required"}}
	}
	return struct{}{}, h.svc.UntagResource(r.Context(), arn, body.TagKeys)
}

func (h *Handler) listTags(r *http.Request) (any, error) {
	arn, err := resourceARN(r)
	if err != nil {
		return nil, err
	}
	limit := 0
	if s := r.URL.Query().Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 50 {
			return nil, appmesh.ValidationError{{Field: "limit", Rule: "must be between 1 and 50"}}
		}
	}
	tags, next, err := h.svc.ListTags(r.Context(), arn, limit, r.URL.Query().Get("nextToken"))
	if err != nil {
		return nil, err
	}
	if tags == nil {
		tags = []appmesh.Tag{}
	}
	out := map[string]any{"tags": tags}
	if next != "" {
		out["nextToken"] = next
	}
	return out, nil
}

func (h *Handler) apply(r *http.Request) (any, error) {
	var req api.ApplyRequest
	if err := decodeStrict(r.Body, &req); err != nil {
		return nil, err
	}
	items := make([]resources.ApplyItem, len(req.Items))
	for i, it := range req.Items {
		if _, err := it.Ref.Kind.NewSpec(); err != nil {
			return nil, &resources.ItemError{Index: i, Err: appmesh.ValidationError{{Field: "ref.kind", Rule: err.Error()}}}
		}
		spec, err := decodeSpec(it.Ref.Kind, it.Spec)
		if err != nil {
			return nil, &resources.ItemError{Index: i, Err: err}
		}
		items[i] = resources.ApplyItem{Ref: it.Ref, Spec: spec, Tags: it.Tags, ExpectedVersion: it.ExpectedVersion}
	}
	results, err := h.svc.Apply(r.Context(), items, req.DryRun)
	if err != nil {
		return nil, err
	}
	out := api.ApplyResponse{Results: make([]api.ApplyResult, len(results))}
	for i, res := range results {
		out.Results[i] = api.ApplyResult{Action: string(res.Action), Resource: res.Resource}
	}
	return out, nil
}
