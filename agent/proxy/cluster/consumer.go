// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"github.com/weft-mesh/weft/agent/proxy"
)

// The consumer's interfaces (agent/proxy/upstream.go) that this package
// implements.
var (
	_ proxy.Clusters = (*Manager)(nil)
	_ proxy.Cluster  = (*Cluster)(nil)
	_ proxy.Lease    = (*Lease)(nil)
)

// Hints are the consumer's per-request hints to Acquire.
type Hints = proxy.Hints

// The consumer's sentinel errors, returned wrapped by this package.
var (
	// ErrOverflow: a circuit breaker is full (503, flag UO).
	ErrOverflow = proxy.ErrOverflow
	// ErrNoHealthyUpstream: the cluster has no host to pick (503, flag UH).
	ErrNoHealthyUpstream = proxy.ErrNoHealthyUpstream
	// ErrConnectFailure wraps every failed connect (TCP or TLS handshake),
	// from Lease.Dial and from the Transport.
	ErrConnectFailure = proxy.ErrConnectFailure
)
