// SPDX-License-Identifier: Apache-2.0

package registry

// FreshView builds a view from scratch, for comparison with View.
func (r *Registry) FreshView() *View {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buildLocked()
}
