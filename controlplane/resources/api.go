// SPDX-License-Identifier: Apache-2.0

package resources

import (
	"time"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// Quotas are the per-account and per-mesh limits of App Mesh (appmesh-model §3),
// with App Mesh's defaults from DefaultQuotas. Each can be raised in the
// controller's configuration.
type Quotas struct {
	MeshesPerAccount        int `json:"meshesPerAccount"`
	VirtualNodesPerMesh     int `json:"virtualNodesPerMesh"`
	VirtualRoutersPerMesh   int `json:"virtualRoutersPerMesh"`
	VirtualServicesPerMesh  int `json:"virtualServicesPerMesh"`
	RoutesPerVirtualRouter  int `json:"routesPerVirtualRouter"`
	VirtualGatewaysPerMesh  int `json:"virtualGatewaysPerMesh"`
	GatewayRoutesPerGateway int `json:"gatewayRoutesPerVirtualGateway"`
	BackendsPerVirtualNode  int `json:"backendsPerVirtualNode"`
}

// DefaultQuotas returns App Mesh's default quotas.
func DefaultQuotas() Quotas {
	return Quotas{
		MeshesPerAccount:        15,
		VirtualNodesPerMesh:     200,
		VirtualRoutersPerMesh:   200,
		VirtualServicesPerMesh:  200,
		RoutesPerVirtualRouter:  50,
		VirtualGatewaysPerMesh:  3,
		GatewayRoutesPerGateway: 10,
		BackendsPerVirtualNode:  50,
	}
}

// Config configures a Service.
type Config struct {
	// Account is the 12-digit account id the controller acts as: the owner of
	// meshes created through it. Default 000000000000.
	Account string
	// Region is the region part of ARNs. Default "local".
	Region string
	// Quotas; zero fields take App Mesh's defaults.
	Quotas Quotas
	// ClientTokenTTL is how long a clientToken is remembered. Default 24h.
	ClientTokenTTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// CreateInput is a create of any kind.
type CreateInput struct {
	Ref         appmesh.Ref
	Spec        any // pointer to the kind's spec; nil means empty
	Tags        []appmesh.Tag
	ClientToken string
	// MeshOwner is the meshOwner query parameter; "" means the caller's account.
	MeshOwner string
}

// UpdateInput replaces the whole spec of a resource.
type UpdateInput struct {
	Ref         appmesh.Ref
	Spec        any
	ClientToken string
	MeshOwner   string
	// ExpectedVersion, when non-zero, makes the update fail with Conflict
	// unless the stored version equals it (optimistic concurrency).
	ExpectedVersion int64
}

// DeleteInput deletes a resource.
type DeleteInput struct {
	Ref       appmesh.Ref
	MeshOwner string
	// ExpectedVersion, when non-zero, makes the delete fail with Conflict
	// unless the stored version equals it.
	ExpectedVersion int64
}

// ListInput lists resources of one kind in one mesh (and parent).
type ListInput struct {
	Kind      appmesh.Kind
	Mesh      string // ignored for meshes
	Parent    string // router or gateway, for routes and gateway routes
	MeshOwner string
	Limit     int    // 1–100; 0 means 100
	NextToken string // from a previous page
}
