// SPDX-License-Identifier: Apache-2.0

// Package controlplane wires the weft controller: the store (bbolt under
// Config.DataDir), the resource service, the HTTP server that carries the
// App Mesh-compatible REST API, weft's own /weft/v1 extensions (among them
// /weft/v1/problems, the translation problems), /healthz, /readyz and
// /metrics; and the data plane's side: the endpoint registry
// (controlplane/registry), the DNS discovery that resolves
// serviceDiscovery.dns into endpoints (controlplane/dnsdisco, unless
// Config.DNS turns it off), the snapshot pipeline (xds.Syncer, also the
// source of the INACTIVE status and message of resources it could not
// translate) and, with
// Config.XDSListen, the gRPC server of ADS and the registry
// (controlplane/xds/server).
//
// New opens the store and binds the listeners, so that configuration and
// permission errors surface before Run; Run serves until its context ends,
// then drains in-flight requests for up to ten seconds, ends the xDS
// streams, and closes the store.
// The controller never imports the datapath (github.com/cilium/ebpf or
// agent/...): it runs unprivileged.
package controlplane
