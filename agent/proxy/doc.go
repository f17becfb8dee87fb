// SPDX-License-Identifier: Apache-2.0

// Package proxy is the L7 core of weft-proxy, the node's shared proxy: it
// serves the Envoy v3 resources the translator (controlplane/xds/translate)
// produces for every virtual node and virtual gateway on the node, for
// HTTP/1.1, h2c, gRPC and TCP.
//
// # Configuration
//
// Update(nodeID, Resources) compiles one node id's listeners, route
// configurations, clusters and load assignments (node id
// mesh/<m>/virtualNode/<vn> or mesh/<m>/virtualGateway/<vg>). Everything is
// checked and compiled first (Envoy's own ValidateAll, then regexes, header
// and query matchers, weights, retry policies, access log formats); the
// clusters go to the cluster manager (Clusters.Update); only then is the new
// state published with one atomic pointer swap. A resource that does not
// compile rejects the whole update with an error naming it, and the
// previous configuration keeps serving (an ADS NACK). The request path
// reads the published state without locks and never touches a proto.
// SetWorkloads maps callers' cgroup ids to the node ids serving them;
// Delete drops a node id.
//
// ADS (xds.go) drives those three from the controller: it follows the
// node's NodeState for the workloads and keeps one Envoy subscription per
// local virtual node and per configured gateway, with a cache file each
// (docs/proxy.md, "Configuration over ADS").
//
// # Connections
//
// Redirected connections arrive on one outbound listener
// (Config.OutboundListen). OriginalDestination gives the virtual service
// address:port the caller asked for and the caller's cgroup id (the BPF
// implementation, NewBPFOriginalDestination, reads the datapath's pinned
// weft_origdst map); the cgroup id gives the node id, whose egress listener
// (lds_egress_...) picks the filter chain by destination port, destination
// prefix ranges, server name (the ClientHello is read only when a chain for
// the port needs it) and transport protocol, the way Envoy does. An unknown
// caller or a connection no chain takes is closed (DROP_ALL) and counted
// in weft_proxy_connections_rejected_total. A virtual gateway's listeners
// (lds_ingress_..._port_<p>) are bound directly on their own address
// (Config.BindOverrides can move them). A virtual node's inbound listener
// (lds_ingress_...) is served through the tunnel listener
// (Config.TunnelListen, inbound.go): other nodes' proxies send HTTP/2
// CONNECT <pod ip>:<port>, the target's address gives the local workload
// (SetLocalAddresses) and so the node id, and the stream is dispatched to
// that node's inbound listener like an accepted connection; an update that
// changes the listener closes its idle HTTP connections. Without a tunnel
// listener inbound listeners are accepted but not served. With
// Deps.Tunnel (Identities: SPIFFE certificates from the controller's mesh
// CA) the tunnel listener speaks TLS 1.3 with a client certificate
// required, and a caller must be one of the target's allowed callers
// (SetAllowedCallers); without it the tunnel is plaintext h2c
// (docs/proxy.md, "Inbound side").
//
// A chain with a DownstreamTlsContext transport socket terminates TLS
// first (downstreamtls.go: file certificates, client certificate
// validation with SAN matchers, ALPN h2 and http/1.1); PERMISSIVE
// listeners pick their TLS or plaintext chain by the first byte of the
// connection, and server_names chains by the ClientHello's SNI. An HTTP
// connection manager chain hands the connection to one net/http server
// speaking HTTP/1.1, h2c (prior knowledge) and, over TLS when ALPN chose
// h2, HTTP/2 (gRPC rides on either); each request is routed against the
// route configuration current at that moment. A tcp_proxy chain picks a weighted cluster per connection and
// copies both ways with half-close and the idle timeout.
//
// # Upstreams
//
// The proxy consumes a cluster manager (package agent/proxy/cluster) through
// three small interfaces:
//
//	type Clusters interface {
//		Update(nodeID string, clusters []*clusterv3.Cluster, endpoints []*endpointv3.ClusterLoadAssignment) error
//		Get(nodeID, name string) (Cluster, bool)
//	}
//	type Cluster interface {
//		Acquire(ctx context.Context, hints Hints) (Lease, error)
//	}
//	type Hints struct {
//		OriginalDst netip.AddrPort // ORIGINAL_DST clusters forward here
//		Attempt     int            // 0, then 1.. for retries (max_retries breaker)
//		Avoid       []string       // hosts of earlier attempts: pick another if possible
//	}
//	type Lease interface {
//		Transport() http.RoundTripper
//		Dial(ctx context.Context) (net.Conn, error)
//		Host() string
//		Done(statusCode int, err error)
//	}
//
// The contract:
//
//   - Clusters.Update replaces a node id's clusters and load assignments
//     all or nothing (an error keeps the previous set); an empty set removes
//     the node id. It is called with the mutex of Proxy.Update held, before
//     the routes that name the clusters are published. Get is called per
//     request or TCP connection, must not block and must be safe for
//     concurrent use; a route naming a cluster Get does not know gets 503
//     (flag NC).
//   - Acquire picks a host (load balancing, health, outlier ejection,
//     Hints.Avoid) and takes the circuit-breaker slots of one request (or,
//     for tcp_proxy, one connection). It may wait for a pending slot while
//     ctx allows. It fails with an error wrapping ErrOverflow when a breaker
//     is full (503 UO, never retried) or ErrNoHealthyUpstream when no host
//     can be picked (503 UH). Every Lease gets exactly one Done, from any
//     goroutine.
//   - Transport returns a pooled RoundTripper for the host speaking the
//     cluster's protocol: HTTP/1.1, or HTTP/2 with prior knowledge (h2c)
//     when the cluster has http2_protocol_options in its
//     envoy.extensions.upstreams.http.v3.HttpProtocolOptions. The proxy sets
//     URL.Scheme "http", URL.Host = Host() and Request.Host to the
//     :authority; the request's context carries the per-try and route
//     deadlines. Connect failures must satisfy errors.Is(err,
//     ErrConnectFailure) or be a *net.OpError with Op "dial"; a refused
//     HTTP/2 stream must wrap ErrRefusedStream or say REFUSED_STREAM. TLS
//     origination (UpstreamTlsContext) is the Transport's business.
//   - Dial opens one new connection to the host (tcp_proxy), honouring the
//     cluster's connect_timeout and ctx, with the same connect-failure rule.
//   - Host is "address:port" of the picked host.
//   - Done reports the outcome: the upstream's HTTP status (0 when none:
//     TCP, or an error before response headers) and the error (nil, the
//     transport error, context.DeadlineExceeded for timeouts,
//     context.Canceled when the caller left). It feeds outlier detection
//     and releases the breaker slots.
//
// # Request path
//
// Per request: virtual host by :authority (exact, *.suffix, prefix.*, *),
// first matching route in order (prefix, path, safe_regex on the path
// without the query; headers with exact, prefix, suffix, contains,
// safe_regex, range, present and invert, including :method, :scheme,
// :authority and :path; query parameters exact and present; grpc), a
// weighted random cluster, then the rewrites (host_rewrite_literal,
// auto_host_rewrite, prefix_rewrite, regex_rewrite; x-envoy-original-path)
// and the W3C traceparent (trace id kept, new span id; a new trace when
// absent). Attempts follow the RetryPolicy (retry_on 5xx, gateway-error,
// reset, connect-failure, refused-stream, retriable-4xx,
// retriable-status-codes and the gRPC cancelled, deadline-exceeded,
// internal, resource-exhausted, unavailable read from a trailers-only
// response's grpc-status; num_retries; per_try_timeout; jittered
// exponential back-off; a different host when possible). Request bodies up
// to Config.RetryBufferBytes are kept for replay while they stream; a
// larger body is not retried. The route timeout bounds the whole exchange
// (0 disables it), the route idle_timeout cancels a stream without
// activity. Responses stream back (flushed when their length is unknown),
// trailers included; WebSocket upgrades are tunnelled on HTTP/1.1
// listeners that allow them.
//
// # Observability and lifecycle
//
// Access logs (FileAccessLog, text or JSON formats, Envoy command
// operators) are written per request and per TCP connection. /metrics
// serves the weft_proxy_* series, whose labels come from the configuration
// only; /ready and /config_dump complete the admin listener. Run binds the
// listeners (SO_REUSEPORT, so a new process can take over), serves until
// its context ends, then stops accepting and drains for up to
// Config.DrainTimeout before it returns; it waits for every goroutine it
// started.
package proxy
