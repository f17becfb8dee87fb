// SPDX-License-Identifier: Apache-2.0

// Package dnsdisco resolves the DNS service discovery of virtual nodes
// (serviceDiscovery.dns, appmesh-model.md §6.3) in the controller, so that
// the translator can give callers real endpoints (EDS, and the agent's L4
// path) instead of a DNS cluster that every proxy resolves on its own.
//
// The xDS Syncer hands the Discovery the DNS nodes the endpoint registry
// does not manage at every rebuild (Sync) and gets back an immutable View,
// which implements translate.EndpointSource. Run looks every hostname up
// every Config.Interval (default 5 s), and at once when a target appears or
// its hostname, response type or IP preference changes; when what a node
// resolves to changes, Changed receives a value and the Syncer rebuilds
// (through its Batcher, like any other change).
//
// What a node resolves to (§6.3, §4.7):
//
//   - the addresses of the latest lookup, IPv4-mapped addresses unmapped and
//     duplicates dropped, in the resolver's order;
//   - filtered by the IP preference: IPv4_ONLY keeps IPv4, IPv6_ONLY keeps
//     IPv6; IPv4_PREFERRED and IPv6_PREFERRED put that family first (stable)
//     and keep the other; none keeps the resolver's order;
//   - LOADBALANCER keeps the first of them (one logical endpoint, as Envoy's
//     LOGICAL_DNS); ENDPOINTS keeps them all (STRICT_DNS);
//   - one endpoint per address and listener port, healthy, on no physical
//     node.
//
// A node is resolved once a lookup gave it at least one address. Until then
// the View does not manage it, so the translator keeps today's DNS cluster
// (the proxy resolves the name itself; nothing is reported). A lookup that
// fails, or gives no address the preference keeps, after the node was
// resolved keeps the last good addresses and is reported as a
// translate.Problem of the virtual node until a lookup succeeds again.
//
// Lookups go through Config.Resolver; the default is net.Resolver with
// PreferGo, whose lookups end with their context (a cgo lookup cannot be
// cancelled). ServerResolver is that resolver asking given nameservers
// instead of /etc/resolv.conf's (the controller's dns.servers). Each lookup has Config.Timeout (default: the interval, at most
// 5 s); lookups of distinct hostnames run concurrently (at most 16 at once),
// a hostname shared by several nodes is looked up once per round.
package dnsdisco
