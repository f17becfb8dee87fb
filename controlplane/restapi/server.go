// SPDX-License-Identifier: Apache-2.0

package restapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-mesh/weft/controlplane/resources"
	"github.com/weft-mesh/weft/pkg/api"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// Options configures the API handler.
type Options struct {
	// Auth decides who may call; nil lets every request through.
	Auth *Authenticator
	// Registerer receives the API metrics; nil registers none.
	Registerer prometheus.Registerer
	// Log receives one line per failed request; nil discards.
	Log *slog.Logger
}

// Handler serves the App Mesh 2019-01-25 REST surface and weft's own
// extensions under /weft/v1.
type Handler struct {
	svc  *resources.Service
	auth *Authenticator
	log  *slog.Logger
	mux  *http.ServeMux

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New returns the API handler over svc.
func New(svc *resources.Service, opts Options) (*Handler, error) {
	h := &Handler{
		svc:  svc,
		auth: opts.Auth,
		log:  opts.Log,
		mux:  http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_controller_api_requests_total",
			Help: "API requests by operation and response code.",
		}, []string{"operation", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "weft_controller_api_request_duration_seconds",
			Help:    "API request latency by operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"operation"}),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{h.requests, h.duration} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	for _, k := range api.Kinds {
		h.routeKind(k)
	}
	h.handle("PUT /v20190125/tag", "TagResource", h.tagResource)
	h.handle("PUT /v20190125/untag", "UntagResource", h.untagResource)
	h.handle("GET /v20190125/tags", "ListTagsForResource", h.listTags)
	h.handle("POST "+api.ApplyPath, "WeftApply", h.apply)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.requests.WithLabelValues("Unknown", "404").Inc()
		writeError(w, appmesh.Errorf(appmesh.ErrNotFound, "no operation at %s %s", r.Method, r.URL.Path))
	})
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// opFunc handles one operation and returns the response body or an error.
type opFunc func(r *http.Request) (any, error)

func (h *Handler) handle(pattern, op string, fn opFunc) {
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		code := h.serve(w, r, op, fn)
		h.requests.WithLabelValues(op, strconv.Itoa(code)).Inc()
		h.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	})
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, op string, fn opFunc) int {
	if h.auth != nil {
		if err := h.auth.Check(r); err != nil {
			h.log.Info("request refused", "operation", op, "remote", r.RemoteAddr, "error", err)
			return writeError(w, err)
		}
	}
	out, err := fn(r)
	if err != nil {
		t := appmesh.TypeOf(err)
		if t == appmesh.ErrInternal {
			h.log.Error("request failed", "operation", op, "error", err)
			if !errors.Is(err, context.Canceled) {
				err = appmesh.Errorf(appmesh.ErrInternal, "internal error: %v", err)
			}
		}
		return writeError(w, err)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return writeError(w, appmesh.Errorf(appmesh.ErrInternal, "encode response: %v", err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return http.StatusOK
}

// writeError answers with App Mesh's error shape: the type in the
// x-amzn-ErrorType header and in the body, and the message in the body.
func writeError(w http.ResponseWriter, err error) int {
	t := appmesh.TypeOf(err)
	var ie *resources.ItemError
	if errors.As(err, &ie) {
		err = ie.Err // the index travels in its own field
	}
	msg := err.Error()
	var ae *appmesh.APIError
	if errors.As(err, &ae) {
		msg = ae.Message
	}
	body := api.ErrorBody{Type: string(t), Code: string(t), Message: msg}
	if ie != nil {
		body.Index = &ie.Index
	}
	var ve appmesh.ValidationError
	if errors.As(err, &ve) {
		for _, fe := range ve {
			body.Fields = append(body.Fields, api.FieldError{Field: fe.Field, Rule: fe.Rule})
		}
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", string(t))
	code := t.HTTPStatus()
	w.WriteHeader(code)
	_, _ = w.Write(b)
	return code
}

// routeKind registers the five operations of one kind.
func (h *Handler) routeKind(k api.KindInfo) {
	coll, item := k.CollectionPattern(), k.ItemPattern()
	h.handle("PUT "+coll, "Create"+k.Op, func(r *http.Request) (any, error) { return h.create(k, r) })
	h.handle("GET "+coll, "List"+k.OpPlural, func(r *http.Request) (any, error) { return h.list(k, r) })
	h.handle("GET "+item, "Describe"+k.Op, func(r *http.Request) (any, error) {
		res, err := h.svc.Describe(r.Context(), pathRef(k, r, ""), r.URL.Query().Get("meshOwner"))
		if err != nil {
			return nil, err
		}
		return k.Data(res), nil
	})
	h.handle("PUT "+item, "Update"+k.Op, func(r *http.Request) (any, error) { return h.update(k, r) })
	h.handle("DELETE "+item, "Delete"+k.Op, func(r *http.Request) (any, error) {
		ver, err := expectedVersion(r)
		if err != nil {
			return nil, err
		}
		res, err := h.svc.Delete(r.Context(), resources.DeleteInput{Ref: pathRef(k, r, ""), MeshOwner: r.URL.Query().Get("meshOwner"), ExpectedVersion: ver})
		if err != nil {
			return nil, err
		}
		return k.Data(res), nil
	})
}

// pathRef builds the ref from the path values; name overrides the name.
func pathRef(k api.KindInfo, r *http.Request, name string) appmesh.Ref {
	ref := appmesh.Ref{Kind: k.Kind, Mesh: r.PathValue("meshName")}
	if k.ParentName != "" {
		ref.Parent = r.PathValue(k.ParentName)
	}
	ref.Name = name
	if name == "" {
		ref.Name = r.PathValue(k.NameField)
	}
	if k.Kind == appmesh.KindMesh {
		ref.Mesh = ref.Name
	}
	return ref
}

// createBody is the body of every Create operation. The name field differs by
// kind, so it is read separately.
type createBody struct {
	Spec        json.RawMessage `json:"spec"`
	Tags        []appmesh.Tag   `json:"tags"`
	ClientToken string          `json:"clientToken"`
}

func (h *Handler) create(k api.KindInfo, r *http.Request) (any, error) {
	var raw map[string]json.RawMessage
	if err := decodeStrict(r.Body, &raw); err != nil {
		return nil, err
	}
	var name string
	if v, ok := raw[k.NameField]; ok {
		if err := json.Unmarshal(v, &name); err != nil {
			return nil, appmesh.ValidationError{{Field: k.NameField, Rule: "must be a string"}}
		}
		delete(raw, k.NameField)
	}
	for f := range raw {
		if f != "spec" && f != "tags" && f != "clientToken" {
			return nil, appmesh.Errorf(appmesh.ErrBadRequest, "unknown field %q", f)
		}
	}
	rest, _ := json.Marshal(raw)
	var body createBody
	if err := json.Unmarshal(rest, &body); err != nil {
		return nil, jsonError(err)
	}
	spec, err := decodeSpec(k.Kind, body.Spec)
	if err != nil {
		return nil, err
	}
	res, err := h.svc.Create(r.Context(), resources.CreateInput{
		Ref:         pathRef(k, r, name),
		Spec:        spec,
		Tags:        body.Tags,
		ClientToken: body.ClientToken,
		MeshOwner:   r.URL.Query().Get("meshOwner"),
	})
	if err != nil {
		return nil, err
	}
	return k.Data(res), nil
}

type updateBody struct {
	Spec        json.RawMessage `json:"spec"`
	ClientToken string          `json:"clientToken"`
}

func (h *Handler) update(k api.KindInfo, r *http.Request) (any, error) {
	var body updateBody
	if err := decodeStrict(r.Body, &body); err != nil {
		return nil, err
	}
	spec, err := decodeSpec(k.Kind, body.Spec)
	if err != nil {
		return nil, err
	}
	ver, err := expectedVersion(r)
	if err != nil {
		return nil, err
	}
	res, err := h.svc.Update(r.Context(), resources.UpdateInput{
		Ref:             pathRef(k, r, ""),
		Spec:            spec,
		ClientToken:     body.ClientToken,
		MeshOwner:       r.URL.Query().Get("meshOwner"),
		ExpectedVersion: ver,
	})
	if err != nil {
		return nil, err
	}
	return k.Data(res), nil
}

func (h *Handler) list(k api.KindInfo, r *http.Request) (any, error) {
	q := r.URL.Query()
	limit := 0
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, appmesh.ValidationError{{Field: "limit", Rule: "must be a whole number between 1 and 100"}}
		}
		if n < 1 || n > 100 {
			return nil, appmesh.ValidationError{{Field: "limit", Rule: "must be between 1 and 100"}}
		}
		limit = n
	}
	ref := pathRef(k, r, "")
	items, next, err := h.svc.List(r.Context(), resources.ListInput{
		Kind: k.Kind, Mesh: ref.Mesh, Parent: ref.Parent,
		MeshOwner: q.Get("meshOwner"), Limit: limit, NextToken: q.Get("nextToken"),
	})
	if err != nil {
		return nil, err
	}
	refs := make([]map[string]any, len(items))
	for i := range items {
		refs[i] = k.RefData(&items[i])
	}
	out := map[string]any{k.ListField: refs}
	if next != "" {
		out["nextToken"] = next
	}
	return out, nil
}

// decodeSpec decodes a spec strictly into the kind's type.
func decodeSpec(kind appmesh.Kind, raw json.RawMessage) (any, error) {
	spec, err := kind.NewSpec()
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 || string(raw) == "null" {
		return spec, nil
	}
	if err := decodeStrict(bytesReader(raw), spec); err != nil {
		var ve appmesh.ValidationError
		if errors.As(err, &ve) {
			for i := range ve {
				ve[i].Field = "spec." + ve[i].Field
			}
			return nil, ve
		}
		return nil, err
	}
	return spec, nil
}

// expectedVersion reads weft's optimistic-concurrency extension: an If-Match
// header carrying the version the caller last read. Absent means "any".
func expectedVersion(r *http.Request) (int64, error) {
	s := r.Header.Get(api.IfMatch)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(trimQuotes(s), 10, 64)
	if err != nil || v < 1 {
		return 0, appmesh.ValidationError{{Field: "If-Match", Rule: "must be a resource version (a whole number of at least 1)"}}
	}
	return v, nil
}

func trimQuotes(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}
