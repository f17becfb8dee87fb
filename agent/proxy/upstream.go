// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// Clusters is the upstream cluster manager as the proxy uses it. Package
// agent/proxy/cluster implements it; the package documentation states the
// contract in full.
type Clusters interface {
	// Update replaces the clusters and load assignments of a node id (a
	// virtual node or gateway the proxy serves). It is all or nothing: an
	// error rejects the whole set and the previous one keeps serving. An
	// empty set removes the node id. Proxy.Update calls it after its own
	// checks passed and before it swaps its routing tables.
	Update(nodeID string, clusters []*clusterv3.Cluster, endpoints []*endpointv3.ClusterLoadAssignment) error
	// Get returns a node id's cluster by name. It is called once per
	// request or TCP connection and must not block.
	Get(nodeID, name string) (Cluster, bool)
}

// Cluster is one upstream cluster of one node id.
type Cluster interface {
	// Acquire picks a host and reserves the request (HTTP) or connection
	// (TCP) against the circuit breakers. It may wait for a pending slot
	// (max_pending_requests) while ctx allows. It returns an error wrapping
	// ErrOverflow when a breaker is full and ErrNoHealthyUpstream when no
	// host can be picked. Every Lease it returns gets exactly one Done.
	Acquire(ctx context.Context, hints Hints) (Lease, error)
}

// Hints tell Acquire about the request it picks a host for.
type Hints struct {
	// OriginalDst is where the caller connected to: the virtual service
	// address and port for redirected connections, the listener address
	// for a gateway. An ORIGINAL_DST cluster forwards there.
	OriginalDst netip.AddrPort
	// Attempt is 0 for the first try and n for the n-th retry (for the
	// max_retries breaker).
	Attempt int
	// Avoid lists the hosts (Lease.Host) of this request's earlier
	// attempts: pick another host when the cluster has a healthy one
	// (Envoy's previous_hosts retry predicate).
	Avoid []string
}

// Lease is one acquired upstream host for one request or connection.
type Lease interface {
	// Transport sends HTTP requests to the host, over pooled connections
	// of the cluster's protocol (HTTP/1.1, or HTTP/2 prior knowledge for
	// clusters with http2_protocol_options). The proxy sets URL.Scheme to
	// "http" and URL.Host to Host(); Request.Host is the :authority.
	// Dial failures must be recognisable as connect failures: wrap
	// ErrConnectFailure, or return a *net.OpError with Op "dial" (what
	// net/http's Transport does). A stream the server refused must wrap
	// ErrRefusedStream or mention REFUSED_STREAM in its text (net/http's
	// bundled HTTP/2 does not export its error type).
	Transport() http.RoundTripper
	// Dial opens a new connection to the host for tcp_proxy, within the
	// cluster's connect_timeout and ctx.
	Dial(ctx context.Context) (net.Conn, error)
	// Host is the host as address:port, for URL.Host and access logs.
	Host() string
	// Done ends the lease: statusCode is the upstream's HTTP status (0 when
	// there was none: TCP, or an error before the response headers), err
	// the attempt's error (nil on success; context.DeadlineExceeded for a
	// timeout, context.Canceled when the downstream went away). It feeds
	// outlier detection and releases the circuit-breaker slots.
	Done(statusCode int, err error)
}

// Errors a Cluster or Lease returns for the proxy to branch on.
var (
	// ErrOverflow means a circuit breaker is full: 503 with flag UO, not
	// retried.
	ErrOverflow = errors.New("upstream overflow")
	// ErrNoHealthyUpstream means the cluster has no host to pick: 503
	// with flag UH.
	ErrNoHealthyUpstream = errors.New("no healthy upstream")
	// ErrConnectFailure marks a failed connect: retry_on connect-failure.
	ErrConnectFailure = errors.New("upstream connect failure")
	// ErrRefusedStream marks an HTTP/2 stream the upstream refused:
	// retry_on refused-stream.
	ErrRefusedStream = errors.New("upstream refused stream")
)

// OriginalDestination recovers, for a connection the datapath redirected to
// the outbound listener, the address the caller connected to and the
// caller's cgroup id. The BPF-backed implementation is NewBPFOriginalDestination.
type OriginalDestination interface {
	// Lookup returns an error wrapping ErrNoOriginalDestination when the
	// connection was not redirected (or its entry is gone).
	Lookup(conn net.Conn) (dst netip.AddrPort, cgroupID uint64, err error)
}

// ErrNoOriginalDestination means a connection has no recorded original
// destination.
var ErrNoOriginalDestination = errors.New("no original destination")
