// SPDX-License-Identifier: Apache-2.0

package resources

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/weft-mesh/weft/controlplane/store"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// All returns every resource of every mesh, read in one consistent view of
// the store, and the revision of that view. The xDS translation starts from
// it; a watch from the returned revision on sees every later change.
func (s *Service) All(ctx context.Context) ([]appmesh.Resource, int64, error) {
	var (
		out []appmesh.Resource
		rev int64
	)
	err := s.st.View(ctx, func(tx store.Reader) error {
		out, rev = out[:0], tx.Revision()
		for _, prefix := range []string{meshPrefix, resPrefix} {
			kvs, err := tx.List(prefix, "", 0)
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				var r appmesh.Resource
				if err := json.Unmarshal(kv.Value, &r); err != nil {
					return fmt.Errorf("decode %s: %w", kv.Key, err)
				}
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list all resources: %w", err)
	}
	return out, rev, nil
}
