// SPDX-License-Identifier: Apache-2.0

package resources

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strconv"

	"github.com/weft-mesh/weft/controlplane/store"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// resolveARN parses an ARN of this controller's region into a ref.
func (s *Service) resolveARN(arn string) (appmesh.Ref, error) {
	ref, err := appmesh.ParseResourcePath(arn)
	if err != nil {
		return appmesh.Ref{}, appmesh.ValidationError{{Field: "resourceArn", Rule: err.Error()}}
	}
	return normalize(ref), nil
}

// TagResource adds tags to a resource, replacing the values of keys it
// already has. Tags do not change the resource's version.
func (s *Service) TagResource(ctx context.Context, arn string, tags []appmesh.Tag) error {
	ref, err := s.resolveARN(arn)
	if err != nil {
		return err
	}
	if err := appmesh.ValidateTags(tags); err != nil {
		return err
	}
	_, err = s.st.Update(ctx, func(tx store.Txn) error {
		cur, err := s.existing(tx, ref, "")
		if err != nil {
			return err
		}
		merged := slices.Clone(cur.Tags)
		for _, t := range tags {
			i := slices.IndexFunc(merged, func(m appmesh.Tag) bool { return m.Key == t.Key })
			if i >= 0 {
				merged[i] = t
			} else {
				merged = append(merged, t)
			}
		}
		if err := appmesh.ValidateTags(merged); err != nil {
			return err
		}
		cur.Tags = merged
		return put(tx, cur)
	})
	return err
}

// UntagResource removes tags by key; keys the resource lacks are ignored.
func (s *Service) UntagResource(ctx context.Context, arn string, keys []string) error {
	ref, err := s.resolveARN(arn)
	if err != nil {
		return err
	}
	_, err = s.st.Update(ctx, func(tx store.Txn) error {
		cur, err := s.existing(tx, ref, "")
		if err != nil {
			return err
		}
		n := len(cur.Tags)
		cur.Tags = slices.DeleteFunc(cur.Tags, func(t appmesh.Tag) bool { return slices.Contains(keys, t.Key) })
		if len(cur.Tags) == n {
			return nil
		}
		return put(tx, cur)
	})
	return err
}

// ListTags returns one page of a resource's tags.
func (s *Service) ListTags(ctx context.Context, arn string, limit int, nextToken string) ([]appmesh.Tag, string, error) {
	ref, err := s.resolveARN(arn)
	if err != nil {
		return nil, "", err
	}
	switch {
	case limit == 0:
		limit = 100
	case limit < 1 || limit > 100:
		return nil, "", appmesh.ValidationError{{Field: "limit", Rule: "must be between 1 and 100"}}
	}
	start := 0
	if nextToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(nextToken)
		if err == nil {
			start, err = strconv.Atoi(string(b))
		}
		if err != nil || start < 0 {
			return nil, "", appmesh.ValidationError{{Field: "nextToken", Rule: "is not a token this API returned"}}
		}
	}
	r, err := s.Describe(ctx, ref, "")
	if err != nil {
		return nil, "", err
	}
	if start > len(r.Tags) {
		start = len(r.Tags)
	}
	end := min(start+limit, len(r.Tags))
	next := ""
	if end < len(r.Tags) {
		next = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))
	}
	return r.Tags[start:end], next, nil
}

// ApplyItem is one resource of a declarative apply.
type ApplyItem struct {
	Ref  appmesh.Ref
	Spec any
	// Tags replace the resource's tags when not nil; nil keeps them.
	Tags []appmesh.Tag
	// ExpectedVersion, when non-zero, fails the apply with Conflict unless the
	// stored resource is at that version.
	ExpectedVersion int64
}

// ApplyAction says what an apply did to one resource.
type ApplyAction string

// Apply actions.
const (
	ApplyCreated   ApplyAction = "created"
	ApplyUpdated   ApplyAction = "updated"
	ApplyUnchanged ApplyAction = "unchanged"
)

// ApplyResult is the outcome for one ApplyItem.
type ApplyResult struct {
	Action   ApplyAction
	Resource *appmesh.Resource
}

// ItemError is an error of one item of an apply, with its index.
type ItemError struct {
	Index int
	Err   error
}

func (e *ItemError) Error() string { return "item " + strconv.Itoa(e.Index) + ": " + e.Err.Error() }

// Unwrap returns the item's error.
func (e *ItemError) Unwrap() error { return e.Err }

// Apply creates or updates every item, in order, in ONE transaction: either all
// of them are written or none is. Later items see the earlier ones, so a set
// in dependency order applies in one call. An item whose spec and tags equal
// the stored ones is left as it is (its version does not change).
//
// With dryRun the transaction is rolled back at the end: the results say what
// would happen, and nothing is written.
func (s *Service) Apply(ctx context.Context, items []ApplyItem, dryRun bool) ([]ApplyResult, error) {
	specs := make([]any, len(items))
	for i, it := range items {
		items[i].Ref = normalize(it.Ref)
		spec, err := prepare(items[i].Ref, it.Spec)
		if err == nil {
			err = appmesh.ValidateTags(it.Tags)
		}
		if err != nil {
			return nil, &ItemError{Index: i, Err: err}
		}
		specs[i] = spec
	}
	var out []ApplyResult
	_, err := s.st.Update(ctx, func(tx store.Txn) error {
		out = make([]ApplyResult, 0, len(items))
		for i, it := range items {
			cur, err := get(tx, it.Ref)
			if err != nil {
				return err
			}
			var res ApplyResult
			if cur == nil {
				if it.ExpectedVersion != 0 {
					err = notFound(it.Ref)
				} else {
					res.Action = ApplyCreated
					res.Resource, err = s.create(tx, it.Ref, specs[i], it.Tags, "")
				}
			} else {
				if cur, err = s.existing(tx, it.Ref, ""); err == nil {
					res.Resource, err = s.update(tx, cur, specs[i], it.Tags, it.ExpectedVersion)
				}
				res.Action = ApplyUpdated
				if err == nil && res.Resource.Metadata.Version == cur.Metadata.Version {
					res.Action = ApplyUnchanged
				}
			}
			if err != nil {
				return &ItemError{Index: i, Err: err}
			}
			out = append(out, res)
		}
		if dryRun {
			return errDryRun
		}
		return nil
	})
	if err != nil && !errors.Is(err, errDryRun) {
		return nil, err
	}
	for _, r := range out {
		s.withStatus(r.Resource)
	}
	return out, nil
}

// errDryRun rolls a dry-run apply back.
var errDryRun = errors.New("dry run")
