// SPDX-License-Identifier: Apache-2.0

// Package xds turns the controller's resources into xDS snapshots for
// go-control-plane's snapshot cache.
//
//   - Subpackage vip allocates the service addresses, persisted in the store.
//   - Subpackage translate translates the resources of a mesh into Envoy
//     resources per virtual node or gateway and a NodeState per node.
//   - NewSnapshot wraps the result in a Snapshot: go-control-plane's snapshot
//     extended with weft's NodeState type (NodeStateType), versioned per
//     type by a content hash and checked with Consistent before it is
//     returned.
//   - Batcher coalesces the store's change stream into few rebuilds, and
//     the endpoint signals into batches of their own.
//   - Syncer is the controller loop: it watches the store, the endpoint
//     registry and the DNS discovery (controlplane/dnsdisco), and on each
//     batch with a store change lists everything, syncs the service
//     addresses, translates (with the registry's endpoints first and
//     resolved DNS nodes' second), and sets the snapshots whose versions
//     changed in the ADS snapshot cache; on a batch of endpoint signals
//     only it refreshes: it keeps the last rebuild's compiled world and
//     translations and translates again only the proxies and node states
//     whose endpoints changed (World.UpdateEndpoints, StateCache), with the
//     same result as a rebuild;
//     it keeps the translation problems in memory and answers
//     ResourceProblem, which the resource service shows in the resources'
//     status (never written to the store).
//   - Logger adapts slog to go-control-plane's logger.
//   - Subpackage server serves the cache over ADS, with the registry.
//
// Ownership: a Snapshot is immutable once built and may be handed to the
// cache and read concurrently. Batcher.Run owns its goroutine's timers and
// returns when its context ends or its change stream closes; it never
// starts goroutines. Syncer.Run returns when its context ends; the one
// goroutine it starts per store watch (merging the registry's and the DNS
// discovery's signals into the change stream) ends before the watch is
// abandoned.
package xds
