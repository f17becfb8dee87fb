// SPDX-License-Identifier: Apache-2.0

package resources

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/weft-mesh/weft/controlplane/store"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

var accountRE = regexp.MustCompile(`^[0-9]{12}$`)

// Service holds the App Mesh resources: it validates them, keeps references
// consistent, enforces quotas, versions and client tokens, and writes each
// operation as one store transaction.
type Service struct {
	st     store.Store
	cfg    Config
	log    *slog.Logger
	status atomic.Pointer[statusHolder]
}

// New returns a Service over st.
func New(st store.Store, cfg Config, log *slog.Logger) (*Service, error) {
	if cfg.Account == "" {
		cfg.Account = "000000000000"
	}
	if !accountRE.MatchString(cfg.Account) {
		return nil, fmt.Errorf("account %q: must be 12 digits", cfg.Account)
	}
	if cfg.Region == "" {
		cfg.Region = "local"
	}
	if cfg.ClientTokenTTL <= 0 {
		cfg.ClientTokenTTL = 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	def := DefaultQuotas()
	q := &cfg.Quotas
	for _, f := range []struct {
		v *int
		d int
	}{
		{&q.MeshesPerAccount, def.MeshesPerAccount},
		{&q.VirtualNodesPerMesh, def.VirtualNodesPerMesh},
		{&q.VirtualRoutersPerMesh, def.VirtualRoutersPerMesh},
		{&q.VirtualServicesPerMesh, def.VirtualServicesPerMesh},
		{&q.RoutesPerVirtualRouter, def.RoutesPerVirtualRouter},
		{&q.VirtualGatewaysPerMesh, def.VirtualGatewaysPerMesh},
		{&q.GatewayRoutesPerGateway, def.GatewayRoutesPerGateway},
		{&q.BackendsPerVirtualNode, def.BackendsPerVirtualNode},
	} {
		if *f.v <= 0 {
			*f.v = f.d
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{st: st, cfg: cfg, log: log}, nil
}

// Account is the account the service acts as.
func (s *Service) Account() string { return s.cfg.Account }

// ARN returns the full ARN of a resource owned by owner.
func (s *Service) ARN(r appmesh.Ref, owner string) string {
	return "arn:aws:appmesh:" + s.cfg.Region + ":" + owner + ":" + r.ResourcePath()
}

// Describe returns a resource.
func (s *Service) Describe(ctx context.Context, ref appmesh.Ref, meshOwner string) (*appmesh.Resource, error) {
	ref = normalize(ref)
	var out *appmesh.Resource
	err := s.st.View(ctx, func(tx store.Reader) error {
		if err := s.checkMesh(tx, ref.Mesh, meshOwner, ref.Kind == appmesh.KindMesh); err != nil {
			return err
		}
		r, err := get(tx, ref)
		if err != nil {
			return err
		}
		if r == nil {
			return notFound(ref)
		}
		out = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.withStatus(out)
	return out, nil
}

// Create creates a resource.
func (s *Service) Create(ctx context.Context, in CreateInput) (*appmesh.Resource, error) {
	in.Ref = normalize(in.Ref)
	spec, err := prepare(in.Ref, in.Spec)
	if err != nil {
		return nil, err
	}
	if err := appmesh.ValidateTags(in.Tags); err != nil {
		return nil, err
	}
	fp := fingerprint("create", in.Ref, spec, in.Tags)
	var out *appmesh.Resource
	_, err = s.st.Update(ctx, func(tx store.Txn) error {
		done, err := s.replay(tx, in.ClientToken, fp, in.Ref, &out)
		if err != nil || done {
			return err
		}
		if out, err = s.create(tx, in.Ref, spec, in.Tags, in.MeshOwner); err != nil {
			return err
		}
		return s.remember(tx, in.ClientToken, fp, in.Ref)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Update replaces the spec of a resource.
func (s *Service) Update(ctx context.Context, in UpdateInput) (*appmesh.Resource, error) {
	in.Ref = normalize(in.Ref)
	spec, err := prepare(in.Ref, in.Spec)
	if err != nil {
		return nil, err
	}
	fp := fingerprint("update", in.Ref, spec, nil)
	var out *appmesh.Resource
	_, err = s.st.Update(ctx, func(tx store.Txn) error {
		done, err := s.replay(tx, in.ClientToken, fp, in.Ref, &out)
		if err != nil || done {
			return err
		}
		cur, err := s.existing(tx, in.Ref, in.MeshOwner)
		if err != nil {
			return err
		}
		if out, err = s.update(tx, cur, spec, nil, in.ExpectedVersion); err != nil {
			return err
		}
		return s.remember(tx, in.ClientToken, fp, in.Ref)
	})
	if err != nil {
		return nil, err
	}
	s.withStatus(out)
	return out, nil
}

// Delete deletes a resource and returns it with status DELETED.
func (s *Service) Delete(ctx context.Context, in DeleteInput) (*appmesh.Resource, error) {
	in.Ref = normalize(in.Ref)
	var out *appmesh.Resource
	_, err := s.st.Update(ctx, func(tx store.Txn) error {
		cur, err := s.existing(tx, in.Ref, in.MeshOwner)
		if err != nil {
			return err
		}
		if in.ExpectedVersion != 0 && cur.Metadata.Version != in.ExpectedVersion {
			return staleVersion(cur, in.ExpectedVersion)
		}
		if err := s.checkNotInUse(tx, cur.Ref); err != nil {
			return err
		}
		for _, t := range strongRefs(cur.Ref, cur.Spec) {
			if err := tx.Delete(refKey(t, cur.Ref)); err != nil {
				return err
			}
		}
		if err := tx.Delete(key(cur.Ref)); err != nil {
			return err
		}
		cur.Status.Status = appmesh.StatusDeleted
		out = cur
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// List returns one page of resources and the token of the next page ("" when
// this is the last).
func (s *Service) List(ctx context.Context, in ListInput) ([]appmesh.Resource, string, error) {
	limit := in.Limit
	switch {
	case limit == 0:
		limit = 100
	case limit < 1 || limit > 100:
		return nil, "", appmesh.ValidationError{{Field: "limit", Rule: "must be between 1 and 100"}}
	}
	after := ""
	if in.NextToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(in.NextToken)
		if err != nil {
			return nil, "", appmesh.ValidationError{{Field: "nextToken", Rule: "is not a token this API returned"}}
		}
		after = string(b)
	}
	prefix := listPrefix(in.Kind, in.Mesh, in.Parent)
	var out []appmesh.Resource
	next := ""
	err := s.st.View(ctx, func(tx store.Reader) error {
		if in.Kind != appmesh.KindMesh {
			if err := s.checkMesh(tx, in.Mesh, in.MeshOwner, false); err != nil {
				return err
			}
			if err := checkParent(tx, appmesh.Ref{Kind: in.Kind, Mesh: in.Mesh, Parent: in.Parent}); err != nil {
				return err
			}
		}
		kvs, err := tx.List(prefix, after, limit+1)
		if err != nil {
			return err
		}
		if len(kvs) > limit {
			kvs = kvs[:limit]
			next = base64.RawURLEncoding.EncodeToString([]byte(kvs[limit-1].Key))
		}
		for _, kv := range kvs {
			var r appmesh.Resource
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				return fmt.Errorf("decode %s: %w", kv.Key, err)
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	for i := range out {
		s.withStatus(&out[i])
	}
	return out, next, nil
}

// prepare types, defaults and validates a spec on its own.
func prepare(ref appmesh.Ref, spec any) (any, error) {
	if spec == nil {
		var err error
		if spec, err = ref.Kind.NewSpec(); err != nil {
			return nil, appmesh.Errorf(appmesh.ErrBadRequest, "%v", err)
		}
	}
	want, err := ref.Kind.NewSpec()
	if err != nil {
		return nil, appmesh.Errorf(appmesh.ErrBadRequest, "%v", err)
	}
	if fmt.Sprintf("%T", want) != fmt.Sprintf("%T", spec) {
		return nil, fmt.Errorf("spec of a %s is %T, want %T", ref.Kind, spec, want)
	}
	appmesh.Default(ref.Kind, spec)
	if err := appmesh.Validate(ref, spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// create writes a new resource; spec is already prepared.
func (s *Service) create(tx store.Txn, ref appmesh.Ref, spec any, tags []appmesh.Tag, meshOwnerParam string) (*appmesh.Resource, error) {
	meshOwner := s.cfg.Account
	if ref.Kind == appmesh.KindMesh {
		if meshOwnerParam != "" && meshOwnerParam != s.cfg.Account {
			return nil, appmesh.Errorf(appmesh.ErrForbidden, "meshOwner %s: a mesh can only be created in the caller's own account %s", meshOwnerParam, s.cfg.Account)
		}
		n, err := tx.Count(meshPrefix)
		if err != nil {
			return nil, err
		}
		if n >= s.cfg.Quotas.MeshesPerAccount {
			return nil, appmesh.Errorf(appmesh.ErrLimitExceeded, "meshes per account: the limit of %d is reached", s.cfg.Quotas.MeshesPerAccount)
		}
	} else {
		m, err := s.mesh(tx, ref.Mesh, meshOwnerParam)
		if err != nil {
			return nil, err
		}
		meshOwner = m.Metadata.MeshOwner
		if err := checkParent(tx, ref); err != nil {
			return nil, err
		}
		if err := s.checkQuota(tx, ref, spec); err != nil {
			return nil, err
		}
	}
	existing, err := get(tx, ref)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return nil, appmesh.Errorf(appmesh.ErrConflict, "%s %q already exists", ref.Kind, ref.ResourcePath())
	}
	if err := s.checkReferences(tx, ref, spec); err != nil {
		return nil, err
	}
	now := appmesh.Time{Time: s.cfg.Now().UTC().Truncate(time.Millisecond)}
	r := &appmesh.Resource{
		Ref:  ref,
		Spec: spec,
		Metadata: appmesh.Metadata{
			ARN:           s.ARN(ref, s.cfg.Account),
			UID:           uuid.NewString(),
			Version:       1,
			CreatedAt:     now,
			LastUpdatedAt: now,
			MeshOwner:     meshOwner,
			ResourceOwner: s.cfg.Account,
		},
		Status: appmesh.ResourceStatus{Status: appmesh.StatusActive},
		Tags:   slices.Clone(tags),
	}
	if err := put(tx, r); err != nil {
		return nil, err
	}
	for _, t := range strongRefs(ref, spec) {
		if err := tx.Put(refKey(t, ref), nil); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// update replaces cur's spec (and its tags, when tags is not nil). It bumps the
// version only when something changed.
func (s *Service) update(tx store.Txn, cur *appmesh.Resource, spec any, tags []appmesh.Tag, expected int64) (*appmesh.Resource, error) {
	if expected != 0 && cur.Metadata.Version != expected {
		return nil, staleVersion(cur, expected)
	}
	if err := s.checkQuota(tx, cur.Ref, spec); err != nil {
		return nil, err
	}
	if err := s.checkReferences(tx, cur.Ref, spec); err != nil {
		return nil, err
	}
	next := *cur
	next.Spec = spec
	if tags != nil {
		next.Tags = slices.Clone(tags)
	}
	if equalJSON(cur.Spec, next.Spec) && equalJSON(cur.Tags, next.Tags) {
		return cur, nil
	}
	next.Metadata.Version++
	next.Metadata.LastUpdatedAt = appmesh.Time{Time: s.cfg.Now().UTC().Truncate(time.Millisecond)}
	if err := put(tx, &next); err != nil {
		return nil, err
	}
	oldRefs, newRefs := strongRefs(cur.Ref, cur.Spec), strongRefs(cur.Ref, spec)
	for _, t := range oldRefs {
		if !slices.Contains(newRefs, t) {
			if err := tx.Delete(refKey(t, cur.Ref)); err != nil {
				return nil, err
			}
		}
	}
	for _, t := range newRefs {
		if !slices.Contains(oldRefs, t) {
			if err := tx.Put(refKey(t, cur.Ref), nil); err != nil {
				return nil, err
			}
		}
	}
	if err := s.revalidateDependents(tx, cur.Ref); err != nil {
		return nil, err
	}
	return &next, nil
}

// checkReferences checks that what spec names exists and fits (ports,
// protocols), reading the rest of the mesh from tx.
func (s *Service) checkReferences(tx store.Reader, ref appmesh.Ref, spec any) error {
	if ref.Kind == appmesh.KindMesh {
		return nil
	}
	var lookupErr error
	err := appmesh.ValidateReferences(ref, spec, txLookup{tx: tx, mesh: ref.Mesh, err: &lookupErr})
	if lookupErr != nil {
		return lookupErr
	}
	return err
}

// revalidateDependents re-checks everything that depends on changed, directly
// or through other resources (a gateway route depends on its virtual service,
// which depends on its router), against the mesh as it now stands in tx. An
// update that would leave a dependent invalid (a router gaining a second
// listener while its routes name no port) is refused.
func (s *Service) revalidateDependents(tx store.Reader, changed appmesh.Ref) error {
	seen := map[appmesh.Ref]bool{changed: true}
	queue := []appmesh.Ref{changed}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		deps, err := dependents(tx, cur)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if seen[d] {
				continue
			}
			seen[d] = true
			queue = append(queue, d)
			r, err := get(tx, d)
			if err != nil {
				return err
			}
			if r == nil {
				continue
			}
			if err := s.checkReferences(tx, d, r.Spec); err != nil {
				return appmesh.Errorf(appmesh.ErrBadRequest, "this change would make %s %s invalid: %v", d.Kind, d.ResourcePath(), err)
			}
		}
	}
	return nil
}

// dependents are the resources that reference r or are its children.
func dependents(tx store.Reader, r appmesh.Ref) ([]appmesh.Ref, error) {
	var out []appmesh.Ref
	kvs, err := tx.List(refTargetPrefix(r), "", 0)
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		_, src, _ := bytes.Cut([]byte(kv.Key), []byte(refSep))
		if ref, ok := refFromKey(string(src)); ok {
			out = append(out, ref)
		}
	}
	if p := childPrefix(r); p != "" && r.Kind != appmesh.KindMesh {
		kvs, err := tx.List(p, "", 0)
		if err != nil {
			return nil, err
		}
		for _, kv := range kvs {
			if ref, ok := refFromKey(kv.Key); ok {
				out = append(out, ref)
			}
		}
	}
	return out, nil
}

// checkNotInUse refuses to delete r while it has children or referrers.
func (s *Service) checkNotInUse(tx store.Reader, r appmesh.Ref) error {
	if p := childPrefix(r); p != "" {
		kvs, err := tx.List(p, "", 1)
		if err != nil {
			return err
		}
		if len(kvs) > 0 {
			child, _ := refFromKey(kvs[0].Key)
			n, err := tx.Count(p)
			if err != nil {
				return err
			}
			return appmesh.Errorf(appmesh.ErrResourceInUse, "%s %q still contains %d resource(s), among them %s %q: delete them first",
				r.Kind, r.ResourcePath(), n, child.Kind, child.ResourcePath())
		}
	}
	kvs, err := tx.List(refTargetPrefix(r), "", 1)
	if err != nil {
		return err
	}
	if len(kvs) > 0 {
		_, src, _ := bytes.Cut([]byte(kvs[0].Key), []byte(refSep))
		by, _ := refFromKey(string(src))
		return appmesh.Errorf(appmesh.ErrResourceInUse, "%s %q is referenced by %s %q", r.Kind, r.ResourcePath(), by.Kind, by.ResourcePath())
	}
	return nil
}

// checkQuota enforces the per-mesh, per-parent and per-node quotas.
func (s *Service) checkQuota(tx store.Reader, ref appmesh.Ref, spec any) error {
	q := s.cfg.Quotas
	if vn, ok := spec.(*appmesh.VirtualNodeSpec); ok && len(vn.Backends) > q.BackendsPerVirtualNode {
		return appmesh.Errorf(appmesh.ErrLimitExceeded, "spec.backends: backends per virtual node: %d exceeds the limit of %d", len(vn.Backends), q.BackendsPerVirtualNode)
	}
	_, exists, err := tx.Get(key(ref))
	if err != nil || exists {
		return err // updates do not add to a count
	}
	var limit int
	var what string
	switch ref.Kind {
	case appmesh.KindVirtualNode:
		limit, what = q.VirtualNodesPerMesh, "virtual nodes per mesh"
	case appmesh.KindVirtualRouter:
		limit, what = q.VirtualRoutersPerMesh, "virtual routers per mesh"
	case appmesh.KindVirtualService:
		limit, what = q.VirtualServicesPerMesh, "virtual services per mesh"
	case appmesh.KindVirtualGateway:
		limit, what = q.VirtualGatewaysPerMesh, "virtual gateways per mesh"
	case appmesh.KindRoute:
		limit, what = q.RoutesPerVirtualRouter, "routes per virtual router"
	case appmesh.KindGatewayRoute:
		limit, what = q.GatewayRoutesPerGateway, "gateway routes per virtual gateway"
	default:
		return nil
	}
	n, err := tx.Count(listPrefix(ref.Kind, ref.Mesh, ref.Parent))
	if err != nil {
		return err
	}
	if n >= limit {
		return appmesh.Errorf(appmesh.ErrLimitExceeded, "%s: the limit of %d is reached", what, limit)
	}
	return nil
}

// mesh returns the mesh, checking the meshOwner parameter against its owner.
func (s *Service) mesh(tx store.Reader, name, meshOwner string) (*appmesh.Resource, error) {
	ref := appmesh.Ref{Kind: appmesh.KindMesh, Mesh: name, Name: name}
	m, err := get(tx, ref)
	if err != nil {
		return nil, err
	}
	if m == nil || (meshOwner != "" && meshOwner != m.Metadata.MeshOwner) {
		return nil, notFound(ref)
	}
	return m, nil
}

func (s *Service) checkMesh(tx store.Reader, name, meshOwner string, isMesh bool) error {
	if isMesh && meshOwner == "" {
		return nil
	}
	_, err := s.mesh(tx, name, meshOwner)
	return err
}

// existing loads the resource an update or delete names.
func (s *Service) existing(tx store.Reader, ref appmesh.Ref, meshOwner string) (*appmesh.Resource, error) {
	if _, err := s.mesh(tx, ref.Mesh, meshOwner); err != nil {
		return nil, err
	}
	if err := checkParent(tx, ref); err != nil {
		return nil, err
	}
	cur, err := get(tx, ref)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, notFound(ref)
	}
	if cur.Metadata.ResourceOwner != s.cfg.Account && cur.Metadata.MeshOwner != s.cfg.Account {
		return nil, appmesh.Errorf(appmesh.ErrForbidden, "%s %q is owned by account %s", ref.Kind, ref.ResourcePath(), cur.Metadata.ResourceOwner)
	}
	return cur, nil
}

// tokenRecord is what a clientToken remembers: the request it came with and
// the resource it acted on.
type tokenRecord struct {
	Fingerprint string      `json:"fingerprint"`
	Ref         appmesh.Ref `json:"ref"`
	Expires     time.Time   `json:"expires"`
}

// replay answers a request whose clientToken was seen before: the same request
// again is an idempotent success that returns the resource as it is now; a
// different request with the same token is a Conflict.
func (s *Service) replay(tx store.Reader, token, fp string, ref appmesh.Ref, out **appmesh.Resource) (bool, error) {
	if token == "" {
		return false, nil
	}
	b, ok, err := tx.Get(tokenPrefix + token)
	if err != nil || !ok {
		return false, err
	}
	var rec tokenRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return false, fmt.Errorf("decode client token record: %w", err)
	}
	if s.cfg.Now().After(rec.Expires) {
		return false, nil
	}
	if rec.Fingerprint != fp {
		return false, appmesh.Errorf(appmesh.ErrConflict, "clientToken %q was already used with a different request", token)
	}
	r, err := get(tx, ref)
	if err != nil {
		return false, err
	}
	if r == nil {
		return false, notFound(ref)
	}
	*out = r
	return true, nil
}

func (s *Service) remember(tx store.Txn, token, fp string, ref appmesh.Ref) error {
	if token == "" {
		return nil
	}
	b, err := json.Marshal(tokenRecord{Fingerprint: fp, Ref: ref, Expires: s.cfg.Now().Add(s.cfg.ClientTokenTTL)})
	if err != nil {
		return err
	}
	return tx.Put(tokenPrefix+token, b)
}

// ExpireTokens deletes the client-token records that have expired. The
// controller calls it periodically.
func (s *Service) ExpireTokens(ctx context.Context) (int, error) {
	n := 0
	_, err := s.st.Update(ctx, func(tx store.Txn) error {
		kvs, err := tx.List(tokenPrefix, "", 0)
		if err != nil {
			return err
		}
		now := s.cfg.Now()
		for _, kv := range kvs {
			var rec tokenRecord
			if json.Unmarshal(kv.Value, &rec) == nil && now.Before(rec.Expires) {
				continue
			}
			if err := tx.Delete(kv.Key); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

func fingerprint(op string, ref appmesh.Ref, spec any, tags []appmesh.Tag) string {
	b, _ := json.Marshal(struct {
		Op   string
		Ref  appmesh.Ref
		Spec any
		Tags []appmesh.Tag
	}{op, ref, spec, tags})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func get(tx store.Reader, ref appmesh.Ref) (*appmesh.Resource, error) {
	b, ok, err := tx.Get(key(ref))
	if err != nil || !ok {
		return nil, err
	}
	var r appmesh.Resource
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", key(ref), err)
	}
	return &r, nil
}

func put(tx store.Txn, r *appmesh.Resource) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode %s: %w", r.Ref.ResourcePath(), err)
	}
	return tx.Put(key(r.Ref), b)
}

func equalJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func notFound(r appmesh.Ref) error {
	switch {
	case r.Kind == appmesh.KindMesh:
		return appmesh.Errorf(appmesh.ErrNotFound, "meshName: mesh %q not found", r.Name)
	case r.Kind.HasParent():
		return appmesh.Errorf(appmesh.ErrNotFound, "%s %q not found in %s %q of mesh %q", r.Kind.Words(), r.Name, r.Kind.ParentKind().Words(), r.Parent, r.Mesh)
	}
	return appmesh.Errorf(appmesh.ErrNotFound, "%s %q not found in mesh %q", r.Kind.Words(), r.Name, r.Mesh)
}

// checkParent checks that the router or gateway of a route or gateway route
// exists; other kinds have no parent.
func checkParent(tx store.Reader, ref appmesh.Ref) error {
	pk := ref.Kind.ParentKind()
	if pk == "" {
		return nil
	}
	p, err := get(tx, appmesh.Ref{Kind: pk, Mesh: ref.Mesh, Name: ref.Parent})
	if err != nil {
		return err
	}
	if p == nil {
		return parentNotFound(ref)
	}
	return nil
}

// parentNotFound is the error for a route or gateway route whose router or
// gateway does not exist.
func parentNotFound(child appmesh.Ref) error {
	pk := child.Kind.ParentKind()
	return appmesh.Errorf(appmesh.ErrNotFound, "%sName: %s %q not found in mesh %q", pk.LowerCamel(), pk.Words(), child.Parent, child.Mesh)
}

func staleVersion(cur *appmesh.Resource, expected int64) error {
	return appmesh.Errorf(appmesh.ErrConflict, "%s %q is at version %d, not %d: it changed since it was read",
		cur.Ref.Kind, cur.Ref.ResourcePath(), cur.Metadata.Version, expected)
}

// txLookup reads the other resources of a mesh for reference validation. A
// store error is kept and reported after validation, so that it is never
// mistaken for a missing resource.
type txLookup struct {
	tx   store.Reader
	mesh string
	err  *error
}

func (l txLookup) Spec(kind appmesh.Kind, parent, name string) (any, bool) {
	r, err := get(l.tx, appmesh.Ref{Kind: kind, Mesh: l.mesh, Parent: parent, Name: name})
	if err != nil {
		*l.err = errors.Join(*l.err, err)
		return nil, false
	}
	if r == nil {
		return nil, false
	}
	return r.Spec, true
}

// normalize fills in the mesh of a mesh ref.
func normalize(r appmesh.Ref) appmesh.Ref {
	if r.Kind == appmesh.KindMesh {
		r.Mesh = r.Name
		r.Parent = ""
	}
	return r
}
