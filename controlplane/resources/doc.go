// SPDX-License-Identifier: Apache-2.0

// Package resources is the controller's model of record: it creates, reads,
// updates, deletes and lists the seven App Mesh resource kinds with the
// semantics of the App Mesh 2019-01-25 API.
//
// Every operation is one store transaction. Within it the service defaults and
// validates the spec (package appmesh), checks that the mesh, the parent and
// every referenced resource exist, enforces the quotas, compares versions for
// optimistic concurrency, and keeps a reverse-reference index so that deleting
// a resource that is still referenced fails with ResourceInUse naming the
// referrer. A clientToken makes a create or update idempotent for
// Config.ClientTokenTTL: the same request again returns the resource, another
// request with the same token is a Conflict.
//
// Apply writes a whole set of resources in one transaction, so a set either
// lands entirely or not at all; weftctl apply uses it.
//
// The layout of the keys in the store is described in keys.go. Errors returned
// to callers are *appmesh.APIError or appmesh.ValidationError, whose types map
// onto App Mesh's error types.
package resources
