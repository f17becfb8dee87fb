// SPDX-License-Identifier: Apache-2.0

// Package translate turns App Mesh resources into the configuration of
// weft's data plane: per virtual node and virtual gateway, the Envoy v3
// listeners, route configurations, clusters and load assignments of
// appmesh-model.md §15 (names, shapes and defaults); per physical node, the
// agent's nodeapiv1.NodeState.
//
// Translation is pure: Compile indexes an Input (the resources, the service
// addresses of package vip and an EndpointSource) and checks every route
// once; World.Proxy and World.NodeState read the result and may run
// concurrently; Translate does every proxy at once. Output lists are
// sorted, so the same input always gives the same resources, byte for byte
// under deterministic marshalling.
//
// For endpoint changes, a translation can be reused: a Proxy records the
// endpoint answers it was made from, and World.UpdateEndpoints returns it
// unchanged, or with only its changed load assignments made again, when
// the resources are the same (a view of the same Compile); a StateCache
// does the same for node states service by service (CachedNodeState).
// Both give exactly what a fresh translation gives. Memoize makes an
// endpoint source answer each virtual node once per view.
//
// A resource that cannot be translated never blocks the others: it is left
// out (a route with a regex RE2 rejects, a target that does not resolve, a
// gateway route whose target service has no matching port...) and reported
// as a Problem naming it, for the controller to put in its status. A route
// whose target node has no endpoints is not a problem: its cluster simply
// has no endpoints yet.
//
// World.DNSNodes lists the virtual nodes with DNS service discovery (with
// their effective IP preference) for the controller to resolve, and
// World.WithEndpoints gives a compiled world another EndpointSource, so that
// resolved DNS nodes reach the translator as managed endpoints.
//
// docs/xds.md describes the mapping, the L4/L7 rule of the node state and
// what is not done yet.
package translate
