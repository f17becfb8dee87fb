// SPDX-License-Identifier: Apache-2.0

package resources

import "github.com/weft-mesh/weft/pkg/appmesh"

// StatusSource knows why a resource is not (entirely) in effect: the
// controller's xDS Syncer, from the problems of its last translation
// (xds.Syncer.ResourceProblem). It is consulted on every read and must be
// cheap and safe for concurrent use.
type StatusSource interface {
	// ResourceProblem returns the problem of this version of the resource
	// (uid tells a resource from an earlier one of the same name); ok is
	// false when there is none.
	ResourceProblem(ref appmesh.Ref, uid string, version int64) (message string, ok bool)
}

type statusHolder struct{ src StatusSource }

// SetStatusSource makes Describe, List, Update and Apply report the
// problems src knows of in the status of the resources they return:
// INACTIVE with the problem as message, instead of the stored ACTIVE. The
// problems are never written to the store (a write would be a change the
// translator must rebuild on). nil stops the overlay.
func (s *Service) SetStatusSource(src StatusSource) {
	if src == nil {
		s.status.Store(nil)
		return
	}
	s.status.Store(&statusHolder{src: src})
}

// withStatus overlays the status source's problem, if any, on an ACTIVE
// resource.
func (s *Service) withStatus(r *appmesh.Resource) {
	if r == nil || r.Status.Status != appmesh.StatusActive {
		return
	}
	h := s.status.Load()
	if h == nil {
		return
	}
	if msg, ok := h.src.ResourceProblem(r.Ref, r.Metadata.UID, r.Metadata.Version); ok {
		r.Status = appmesh.ResourceStatus{Status: appmesh.StatusInactive, Message: msg}
	}
}
