// SPDX-License-Identifier: Apache-2.0

// Package xdsclient is the data plane's client of weft-controller: one
// state-of-the-world ADS stream per node id (Client), the typed glue the
// node proxy and the agent use (Subscribe, SubscribeNodeState), and the
// endpoint registration with its lease (Registrar).
//
// A Client subscribes to a set of type URLs (wildcard) for one node id and
// delivers the whole configuration, every type, to its ApplyFunc whenever a
// version changes. The ApplyFunc's error rejects the change: the client
// NACKs it with the error as detail and keeps the last good configuration in
// force. A response whose version the client holds already (the controller
// re-sends everything on a new stream) is acknowledged without a call.
//
// Subscribe applies the types of one change together: a response that
// leaves a reference unresolved (a route to a cluster not sent yet, a
// cluster dropped while a route still uses it) is held, unacknowledged,
// until the responses that complete it arrive, for Config.MaxHold at most
// (Config.Consistent, ProxyResources.Dangling).
//
// # Static stability
//
// The client keeps serving its last good configuration while the
// controller is away, and reconnects with exponential backoff and jitter
// (Config.MinBackoff to Config.MaxBackoff). With Config.CacheFile set, every
// configuration it applied is written to that file (a temporary file,
// fsync, rename, fsync of the directory), and Run first applies the file's
// configuration, so a component can start while the controller is down.
// The cache is loaded only when it was written for the same node id.
//
// Lifecycle: Dial returns the gRPC connection the caller owns and shares
// between its clients (closing it is the caller's job, after their Run
// returned). Run of a Client or a Registrar returns nil when its context
// ends and starts no goroutine that outlives it.
package xdsclient
