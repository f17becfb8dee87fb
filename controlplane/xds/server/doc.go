// SPDX-License-Identifier: Apache-2.0

// Package server is weft-controller's gRPC server for the data plane: the
// Aggregated Discovery Service (state-of-the-world and delta ADS, from
// go-control-plane's server v3 over an ADS snapshot cache that
// controlplane/xds.Syncer fills) and weft's endpoint registry service
// (weft.nodeapi.v1.Registry, controlplane/registry), on one listener
// (default 127.0.0.1:7481).
//
// Node identity is the node id of a stream's first request: a virtual
// node's or gateway's ARN path (mesh/<mesh>/virtualNode/<name>) for a proxy,
// the node name for an agent. A stream that changes its node id or sends
// none is closed. Authentication follows the REST API's rule: with no
// bearer token configured the server is open and refuses to start on a
// non-loopback address unless AllowUnauthenticated is set; with tokens,
// every call carries "authorization: Bearer <token>" metadata. With a TLS
// configuration the server speaks TLS, and a client certificate verified
// against its client CA is a credential too. Binding node ids to client
// certificates (a node may only ask for its own configuration) comes with
// the mesh CA.
//
// Lifecycle: New binds the listener, so that address and permission errors
// surface before Run; Run serves until its context ends, then ends every
// stream and stops the gRPC server (gracefully, for up to five seconds).
package server
