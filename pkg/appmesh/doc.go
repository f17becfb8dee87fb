// SPDX-License-Identifier: Apache-2.0

// Package appmesh holds the AWS App Mesh resource model that weft accepts: the
// seven kinds and their specs with the exact JSON names of the App Mesh API
// (2019-01-25), resource identity (Ref, ARN-like paths), the storage envelope,
// and the App Mesh error types.
//
// It also checks and completes resources before they are stored:
//
//   - Validate checks names and every rule of a spec that needs no other
//     resource; ValidateTags checks tags.
//   - ValidateReferences checks what depends on the other resources of the
//     mesh (existence, listener ports, route type against listener protocol),
//     through a Lookup the caller provides.
//   - Default fills in the defaults App Mesh's Describe returns.
//
// Broken rules come back as a ValidationError of FieldErrors naming JSON paths
// ("spec.listeners[0].portMapping.port: must be between 1 and 65535"); missing
// resources as an *APIError of type ErrNotFound. docs/validation.md lists the
// rules and the decisions taken where the App Mesh reference is silent.
package appmesh
