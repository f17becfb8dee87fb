// SPDX-License-Identifier: Apache-2.0

// Package e2e holds the end-to-end tests of weft: a whole mesh on
// simulated nodes (package test/netsim) on one machine, with the real
// weft-controller, weft-agent and weft-proxy binaries, real workloads and
// real clients. The tests are behind the build tag e2e and need root on
// Linux (6.6 or later); `make e2e` runs them, and `make test` too.
//
// # Topology
//
//	 fabric netns: bridge 10.220.0.254/24
//	   |                          |                          |
//	 node-a 10.220.0.1          node-b 10.220.0.2          ctrl 10.220.0.3
//	+--------------------+     +--------------------+     +------------------+
//	| weft-agent   (1)   |     | weft-agent   (1)   |     | weft-controller  |
//	|  DNS :53, 9465     |     |  DNS :53, 9465     |     |  API  :7480      |
//	| weft-proxy   (2)   |     | weft-proxy   (2)   |     |  xDS  :7481      |
//	|  :15001, :15008,   |     |  :15001, :15008,   |     |  (host network)  |
//	|  15090             |     |  15090             |     |                  |
//	|                    |     |                    |     | weftctl (pkg/ctl)|
//	|  pod front         |     |  pod blue    :8080 |     +------------------+
//	|  10.221.1.2        |     |  pod green   :8080 |        ^  ADS, registry
//	|  (clients)         |     |  pod color-grpc    |        |  (bearer token)
//	|                    |     |        :9090       |        |
//	|                    |     |  pod db      :5432 |   agents and proxies
//	+--------------------+     +--------------------+   of both nodes
//	 (1) host network, its own cgroup; not meshed
//	 (2) host network, its own cgroup: the agent's proxy.cgroupPath, so its
//	     upstream connections are never redirected
//
// The controller runs on a node of its own (a netsim node without an agent,
// like a control-plane host): both nodes reach it over the fabric at
// 10.220.0.3, and so does weftctl, which the test runs there as a program
// (pkg/ctl.Run) since the API is only reachable inside the simulated
// network. The API and ADS listen on that non-loopback address, so a
// bearer token file protects both; agents and proxies present it.
//
// On each node the agent and the proxy run in the node's network namespace,
// each in a cgroup of its own under the node's cgroup (the agent's
// cgroupRoot). The agent takes its node state over ADS (node id = node name)
// and registers its pods, each at its own pod address (the agent's
// workloads[].addresses). The proxy listens on the node's fabric address,
// port 15001 (the agent's proxy.address; pods reach it through their
// default route, as they would a link-local address on a real node),
// subscribes to the node's NodeState to learn the local workloads, and to
// one Envoy configuration per local virtual node.
//
// # Traffic
//
//	front --DNS (sendmsg redirect)--> agent A: color... = 240.240.x.y
//	front --connect(240.240.x.y:8080)--> [connect4: L7] --> proxy A :15001
//	      proxy A --route canary 90/10--> blue or green pod on node B :8080
//	front --connect(db VIP:15432)--> [connect4: L4] --> db pod on node B :5432
//
// Each proxy also serves a tunnel listener on its node's address, port
// 15008, which its agent registers (proxy.tunnelAddress). In TestMesh and
// TestFailuresUnderTraffic no listener has App Mesh TLS, so proxy A dials
// the pods of node B directly (plaintext, routed by the nodes, never
// NATed) and node B's proxy serves no traffic, though it takes its
// configuration all the same. In TestInboundMTLS payments' listener is
// STRICT mTLS: proxy A reaches payments' pod through node B's tunnel
// listener (an HTTP/2 CONNECT stream over mutual TLS with SPIFFE
// certificates of the controller's mesh CA; node B checks that checkout
// may call payments), and node B's proxy terminates the TLS checkout's
// client policy originates, inside the stream, with payments' inbound
// listener:
//
//	checkout --connect(VIP:8080)--> proxy A :15001 --TLS (client policy,
//	  client cert checkout, SAN payments) in CONNECT <payments pod>:8080-->
//	  proxy B :15008 --inbound listener: STRICT, SAN checkout--> payments pod :8080
//
// # What TestMesh checks
//
//  1. The canary (appmesh-model.md §16 S1): front calls
//     http://color.shop.svc.cluster.local:8080/ by name; 1000 requests
//     split 90/10 within five standard deviations.
//  2. S3: a gRPC call with x-tenant acme-* takes route get-color and is
//     retried 3 times on UNAVAILABLE; another tenant takes any-method with
//     the default 2 retries (attempts counted at the backend).
//  3. S4: the TCP route stays on the L4 path: db-primary sees front's own
//     address, balanced_l4 moves, redirected_l7 does not, the proxy sees
//     nothing.
//  4. A weight change applied through the API (90/10 to 0/100) reaches the
//     proxy (the propagation time is logged).
//  5. The controller is killed under load and restarted on the same data:
//     no request fails, and no proxy or agent applies a new configuration
//     (the restarted controller's warm-up lets the agents register again
//     first, so it computes the same versions).
//
// # What TestInboundMTLS checks
//
// appmesh-model.md §16 S6 (testdata/s6.yaml, with certificates the test
// makes: a CA, payments' and checkout's, a client certificate with another
// SAN and a server certificate without payments' SAN):
//
//  1. checkout → payments: 500 requests answered by the payments server,
//     counted by proxy A for checkout and by proxy B on payments' inbound
//     listener (rds_ingress_http_8080).
//  2. Node B's tunnel refuses plaintext h2c, a client certificate with
//     checkout's identity from another CA, and payments' own identity
//     (403: payments lists no backend it serves; unauthorized).
//  3. A plaintext request through node B's tunnel to payments' pod matches
//     no chain of the STRICT listener: closed unanswered, no_filter_chain.
//  4. A client certificate of the mesh CA with SAN intruder... is refused
//     (tls_handshake_failed); checkout's certificate on the same path gets
//     payments' answer.
//  5. payments switched to the certificate without its SAN (through the
//     API): every request fails with 503 "upstream connect error ...
//     connection failure", after exactly three handshakes each (the
//     default retry policy's two retries), then the right certificate
//     brings the answers back.
//
// The mesh itself (the nodes, the weft processes and their configurations,
// the workload programs, metric scraping, weftctl) is package test/meshbed,
// which `make demo` (test/demo) runs too; this package holds the checks.
//
// Timing is logged, never asserted: waits poll with generous limits. The
// binaries are plain builds (not -race) to keep the run short. Everything
// belongs to the test: processes are stopped by pid at cleanup, and
// netsim removes namespaces, mounts and cgroups.
package e2e
