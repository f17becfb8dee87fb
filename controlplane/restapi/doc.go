// SPDX-License-Identifier: Apache-2.0

// Package restapi serves the controller's HTTP API: the App Mesh 2019-01-25
// REST surface (every Create, Describe, Update, Delete and List of the seven
// kinds, and the tagging operations) with App Mesh's paths, bodies, error
// types and status codes, so AWS SDK clients work against it unchanged; and
// weft's own extensions: If-Match optimistic concurrency and the
// transactional POST /weft/v1/apply.
//
// Authenticator decides who may call: open (loopback only, enforced by the
// controller), bearer tokens, verified client certificates, or AWS SigV4
// signatures recomputed with the AWS SDK's signer. Every request is counted
// in weft_controller_api_requests_total{operation,code} and timed in
// weft_controller_api_request_duration_seconds{operation}.
package restapi
