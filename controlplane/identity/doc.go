// SPDX-License-Identifier: Apache-2.0

// Package identity is the controller's mesh CA: it issues the SPIFFE
// certificates of the tunnel between node proxies (docs/proxy.md, "Inbound
// side").
//
// The CA's key and certificate live in a directory of the controller's data
// directory (ca-key.pem, ca.pem, 0600), created at the first start and
// loaded afterwards, so that certificates issued before a restart stay
// valid. Service implements the Identity gRPC service
// (pkg/nodeapi/v1/identity.proto) on the xDS address, behind the same
// authentication as ADS and the registry: a proxy sends a certificate
// signing request for its node's identity
// (spiffe://<trust domain>/node/<node>) or for a virtual node it runs a
// registered workload of (spiffe://<trust domain>/mesh/<mesh>/virtualNode/<name>),
// or for a virtual gateway, and gets a short-lived certificate (24 h by
// default) usable as client and server certificate, and the trust bundle.
//
// What binds a proxy to a node is the node name it presents with the
// controller's bearer token: every holder of the token can ask for any
// node's identity, as it can register any node. Gateways are not
// registered, so a gateway identity is issued to every authenticated
// caller. A per-node credential (issue 4's node identity) would close both.
package identity
