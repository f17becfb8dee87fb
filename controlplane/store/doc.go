// SPDX-License-Identifier: Apache-2.0

// Package store defines the controller's storage: a transactional, versioned
// key-value Store with an ordered change stream (Watch), so that the API
// server writes resources and the xDS side follows every change in order.
//
// Implementations: store/boltstore (one embedded bbolt file). Each one runs
// the conformance suite in store/storetest.
//
// Revisions count write transactions: the first one that writes is revision
// 1, and a transaction that writes nothing does not use one. Every event of a
// transaction carries its revision, so a client that has applied revision N
// resumes with Watch(ctx, N).
package store
