// SPDX-License-Identifier: Apache-2.0

// Package manifest turns the files a user hands to `weftctl apply` into App
// Mesh resources (pkg/appmesh), and renders resources back as files for
// `weftctl get -o yaml`.
//
// # Input forms
//
// A set of files may mix three forms freely, in YAML (multi-document, ---) or
// JSON (an object, an array of objects, or concatenated objects):
//
//  1. weft's own documents, apiVersion weft-mesh.io/v1, with kind Mesh,
//     VirtualNode, VirtualService, VirtualRouter, Route, VirtualGateway or
//     GatewayRoute; metadata.name, metadata.mesh (every kind but Mesh),
//     metadata.virtualRouter (Route), metadata.virtualGateway (GatewayRoute),
//     optional metadata.tags and metadata.meshOwner; spec is the App Mesh API
//     spec with its exact JSON names. Marshal writes this form; it adds the
//     read-only metadata (arn, uid, version, createdAt, lastUpdatedAt,
//     resourceOwner) and status.status of stored resources, which apply
//     ignores and Unmarshal restores.
//  2. App Mesh Kubernetes custom resources, apiVersion appmesh.k8s.aws/v1beta2
//     (Mesh, VirtualNode, VirtualService, VirtualRouter, VirtualGateway,
//     GatewayRoute, BackendGroup), with v1 Namespace documents for namespace
//     labels. Field names are those of aws-app-mesh-controller-for-k8s.
//  3. App Mesh API input and output: the input of create-* and update-*
//     (--cli-input-json or --cli-input-yaml: meshName, the name fields, spec,
//     tags, clientToken, meshOwner), whose kind follows from the most specific
//     name field present (gatewayRouteName, routeName, virtualGatewayName,
//     virtualRouterName, virtualServiceName, virtualNodeName; meshName alone
//     is a Mesh), and the output of describe-* ({"virtualNode": {...}}).
//     metadata, status and clientToken play no part in apply.
//
// A document without apiVersion is of the API form when it has meshName or is
// a describe wrapper. Documents of other API groups (a Deployment, a
// Service) are skipped, so that whole application manifests can be applied;
// an unknown kind or version of weft-mesh.io or appmesh.k8s.aws is an error.
// Kubernetes Lists (kind v1 List or *List with items) are expanded.
//
// Decoding is strict in every form: unknown fields, fields in the wrong case,
// duplicate keys, values of the wrong type and integers that do not fit the
// field (int32 ports and weights) are errors that name the field path, e.g.
// "app.yaml#2: spec.routes[0].httpRoute.action.weightedTarget: unknown field
// (did you mean "weightedTargets"?)". Every error of a set is reported, each
// an *Error. An empty array is the same as an absent list, and null the
// same as an absent field.
//
// # Kubernetes mapping
//
// The conversion follows the controller and its webhooks (appmesh-model.md
// §14) and needs the whole set, so Load and Convert take all files at once:
//
//   - AWS names: spec.awsName, else the Mesh's metadata.name,
//     <name>.<namespace> for a VirtualService and <name>_<namespace> for the
//     other kinds. A Route is named routes[].name under the router's AWS name;
//     a GatewayRoute keeps <name>_<namespace> under its gateway's AWS name.
//   - Namespaces: a namespaced resource without metadata.namespace is in
//     Options.DefaultNamespace ("default" unless set), as with kubectl. The
//     labels of a namespace come from its Namespace document; every namespace
//     also carries kubernetes.io/metadata.name=<name>, as Kubernetes adds it,
//     and a namespace without a Namespace document has only that label.
//   - Mesh membership: spec.meshRef.name wins (the Mesh of that name in the
//     set, with its awsName; else that name as the AWS name). Otherwise the
//     one Mesh of the set whose namespaceSelector selects the namespace
//     labels; an empty selector selects every namespace, an absent one none.
//     Several matches are an error; no match falls back to
//     Options.DefaultMesh, else is an error. Both errors name the document.
//     A Mesh's spec.meshOwner becomes Document.MeshOwner of its members.
//   - References: exactly one of …Ref and …ARN. A Ref's namespace defaults to
//     the referring object's; a referenced object in the set gives its
//     awsName (and must be in the same mesh), one outside the set the default
//     naming. An ARN (or a bare resource path mesh/…) must name the expected
//     kind in the referring object's mesh, and gives the name in it.
//   - VirtualRouter: one VirtualRouter (listeners only) plus one Route per
//     spec.routes entry, in order; route names must be unique and present.
//     priority and the route blocks map straight to RouteSpec;
//     weightedTargets' virtualNodeRef/virtualNodeARN become virtualNode.
//   - GatewayRoute: spec.virtualGatewayRef wins (namespace defaults to the
//     route's). Otherwise the one VirtualGateway of the set whose
//     namespaceSelector (absent: none) selects the route's namespace labels
//     and whose gatewayRouteSelector (absent: all) selects the route's
//     labels; zero or several are errors, and the gateway must be in the
//     route's mesh. Targets' virtualServiceRef/ARN become virtualServiceName.
//   - VirtualNode backends: virtualServiceRef/virtualServiceARN become
//     virtualServiceName; duplicates are an error (as in the webhook).
//     backendGroups add the virtual services of BackendGroup documents of the
//     set (missing groups are errors); name "*" adds every VirtualService of
//     the set in the group reference's namespace (default: the node's) that
//     is in the node's mesh. Group backends come after explicit ones and
//     repeat none of them; they carry no client policy.
//   - Mesh: meshServiceDiscovery.ipPreference becomes
//     serviceDiscovery.ipPreference; egressFilter maps as is.
//   - TLS: the CRD's acm.certificateARN and acm.certificateAuthorityARNs
//     become the API's certificateArn and certificateAuthorityArns. An ACM
//     trust on a gateway listener, which the CRD allows and the API does not,
//     is an error.
//   - Fields that are not App Mesh spec (awsName, meshRef, meshOwner,
//     namespaceSelector, podSelector, gatewayRouteSelector, backendGroups,
//     virtualGatewayRef, status) are dropped, except that Document.K8s keeps
//     the namespace, name, labels and podSelector (VirtualNode,
//     VirtualGateway) for the node agent. Kubernetes objects have no tags.
//
// The conversion does not validate specs beyond what it needs (use
// appmesh.Validate) and does not apply defaults.
//
// # Order
//
// Load and Convert return documents in dependency order (appmesh.Kinds) and,
// within a kind, in input order: files in the order given, directories in
// lexical order, documents in file order, routes in spec.routes order.
// Duplicate resources (same appmesh.Ref) are errors naming both sources.
package manifest
