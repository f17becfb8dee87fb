// SPDX-License-Identifier: Apache-2.0

// Package dns is the node agent's DNS responder. Meshed workloads' queries
// reach it (the datapath redirects their UDP and TCP port 53 traffic to its
// listen address, such as 169.254.20.10:53 on the node); it answers the
// mesh's virtual service names itself and forwards every other query to the
// node's own resolvers.
//
// # Answers
//
// SetRecords replaces the whole table of mesh names at once (an atomic
// swap, so a query sees either the old table or the new one, never a mix).
// Names are matched exactly and case-insensitively, with or without the
// trailing dot; there are no search domains and no wildcards. A known name
// gets its A or AAAA records with the configured TTL (5s by default), and
// NODATA (NOERROR with no answer) for a type it has no records of, so that a
// client does not go on to ask the upstream resolvers about a mesh name.
//
// # Forwarding
//
// Any other query goes to Config.Upstreams (by default the nameservers of
// /etc/resolv.conf, leaving out the server's own address), one after the
// other, each with its own timeout, over the transport the client used, and
// keeps the client's query id. A SERVFAIL or REFUSED answer, a timeout or a
// network error moves on to the next upstream; when none answers, the client
// gets SERVFAIL.
//
// # Truncation
//
// A UDP reply larger than the client can take (512 bytes, or the size in its
// EDNS0 OPT record) is cut to fit and marks TC, for mesh answers with many
// addresses and forwarded answers alike; an upstream's own TC reply is passed
// on. The client then retries over TCP, which the server also serves on the
// same address and forwards over TCP.
//
// # Lifecycle
//
// New validates the Config and binds the UDP and TCP sockets, so a busy
// address is reported at once and Addr is known before Run. Run serves until
// its context ends, then stops both servers, lets queries in flight finish
// (a forwarded query is cancelled with the context) and returns after every
// goroutine it started has ended. Close releases the sockets of a server
// whose Run was never called; it is idempotent. Stats returns the query
// counters, and Collector exposes them to Prometheus as
// weft_agent_dns_queries_total.
package dns
