// SPDX-License-Identifier: Apache-2.0

// Package controlplane wires the weft controller: the store (bbolt under
// Config.DataDir), the resource service, and the HTTP server that carries the
// App Mesh-compatible REST API, weft's own /weft/v1 extensions, /healthz,
// /readyz and /metrics.
//
// New opens the store and binds the listener, so that configuration and
// permission errors surface before Run; Run serves until its context ends,
// then drains in-flight requests for up to ten seconds and closes the store.
// The controller never imports the datapath (github.com/cilium/ebpf or
// agent/...): it runs unprivileged.
package controlplane
