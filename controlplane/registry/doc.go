// SPDX-License-Identifier: Apache-2.0

// Package registry is the controller's endpoint registry: the workload
// instances that node agents report, each node's set held under a lease.
//
// An agent registers the whole set of instances of its node (mesh, virtual
// node, cgroup path, addresses, ports, health, Cloud Map attributes) with
// Register, over the gRPC service weft.nodeapi.v1.Registry that Service
// implements, and sends the same set again every third of the lease
// (Config.TTL, default 30 s).
// A node whose lease lapses is dropped with all its instances: its
// endpoints leave every load assignment and L4 backend list, and its
// NodeState is no longer computed. Deregister drops a node at once.
//
// View returns an immutable, consistent copy of the registrations that the
// translator reads: it implements translate.EndpointSource (a virtual node is
// managed once any instance of it has been registered since the controller
// started, so that a node whose instances all went away has an empty load
// assignment rather than falling back to DNS) and gives each node's
// workloads for its NodeState. Changed signals every change of content; a
// renewal that sends what is registered already is not a change. A view
// after a change starts from a copy of the last one and computes again only
// what the change touched, so that one node's change costs little in a
// registry of tens of thousands of endpoints.
//
// # Static stability
//
// Registrations live in memory only. After a controller restart the
// registry is empty until the agents renew (within a third of the lease, or
// at once when their ADS stream reconnects); the controller therefore holds
// back its first snapshots for a warm-up period (see docs/xds.md), so that
// no proxy is told that every endpoint went away. Nothing is persisted
// because the agents are the source of truth for what runs on their nodes.
//
// Lifecycle: New returns a Registry that is usable at once; Run expires
// lapsed leases until its context ends and starts no goroutine of its own.
package registry
