// SPDX-License-Identifier: Apache-2.0

// Package cluster is weft-proxy's upstream cluster manager: it turns the
// Envoy v3 Clusters and ClusterLoadAssignments the control plane serves
// (controlplane/xds/translate) into load-balanced, health-checked,
// circuit-broken connection pools for the L7 core in agent/proxy.
//
// The Manager implements the consumer's interfaces of agent/proxy
// (proxy.Clusters, proxy.Cluster, proxy.Lease; see consumer.go) and returns
// the consumer's sentinel errors, wrapped.
//
// # Lifecycle and ownership
//
// NewManager returns a Manager without clusters. Update installs the
// complete CDS + EDS set of one node id (each virtual node or gateway the
// proxy serves has its own); it validates everything first and changes
// nothing on error (the error names each offending cluster). Run runs the
// background work — active health checks, outlier-detection intervals, DNS
// refreshes, ORIGINAL_DST host clean-up — for the clusters of every
// update, until its context ends, and returns only after all of it
// stopped. Close closes idle connections and makes further Acquire and
// Update calls fail with ErrClosed. The Manager owns every connection it
// pools; a caller owns the connections it got from Lease.Dial.
//
// # Requests
//
// The L7 core asks Get(nodeID, name) for a cluster, Acquire(ctx, hints)
// for a lease, uses the lease's Transport (HTTP) or Dial (tcp_proxy) and
// reports the outcome with Done, which releases the breaker slots and
// feeds outlier detection. Errors wrapping ErrOverflow or
// ErrNoHealthyUpstream both mean 503. Hints.Attempt > 0 takes a
// max_retries slot; Hints.Avoid steers retries to other hosts;
// Hints.OriginalDst is where an ORIGINAL_DST cluster (App Mesh's
// mesh-allow-all and amazonaws passthrough) connects.
//
// A lease's Transport sends HTTP/1.1 GET, HEAD, OPTIONS and TRACE requests
// without a body (and that do not upgrade) over the host's own keep-alive
// client (h1.go), which writes
// the request and reads the response on the caller's goroutine; requests
// with a body, upgrades and HTTP/2 go through the host's net/http
// Transport. Both honour max_connections, the idle timeout and the
// request's context the same way.
//
// # Hosts
//
// A host is healthy unless EDS marks it UNHEALTHY, DRAINING or TIMEOUT, or
// active health checks failed it; hosts start healthy. The load balancer
// (round robin, weighted when endpoints have weights; least request; random)
// picks among healthy, non-ejected hosts, unless fewer than
// healthy_panic_threshold (default 50%) of the hosts are, after Envoy's
// overprovisioning factor of 1.4, in which case it picks among all of them
// (panic mode). Hosts keep their pool, health and ejection state across
// updates as long as their address stays in the cluster.
//
// A host whose LbEndpoint has the metadata filter_metadata["weft.tunnel"]
// ({node, tunnel: "ip:port", inbound_tls}, the translator sets it for every
// endpoint whose node registered a tunnel listener) is reached through that
// node proxy's tunnel listener, unless the node is Options.Node (the
// proxy's own) and inbound_tls is not set: a pod of the proxy's own node
// is dialled directly, but App Mesh TLS is spoken only by the inbound
// side, so such a listener is reached through the own tunnel too. Each
// connection of its pool is an HTTP/2 CONNECT stream to the host's address
// on a shared connection per tunnel (tunnel.go), with the cluster's TLS
// inside it. With Options.TunnelIdentity that connection is mutual TLS:
// the certificate of the cluster's node id, and the listener's node
// identity checked against the mesh CA; without it, plaintext h2c.
//
// docs/proxy-upstreams.md lists what is supported and how it maps to App
// Mesh fields.
package cluster
