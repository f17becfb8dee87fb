// SPDX-License-Identifier: Apache-2.0

package manifest

import "github.com/weft-mesh/weft/pkg/appmesh"

// This file mirrors the appmesh.k8s.aws/v1beta2 custom resources of
// aws-app-mesh-controller-for-k8s (apis/appmesh/v1beta2 and the CRD schemas of
// its Helm chart). Only the parts that differ from the App Mesh API are
// spelled out; subtrees with the same JSON shape reuse the pkg/appmesh types.
// The CRD differs from the API in these places:
//   - references: virtualNodeRef/virtualNodeARN, virtualServiceRef/
//     virtualServiceARN, virtualRouterRef/virtualRouterARN instead of names;
//   - ACM fields are spelled certificateARN and certificateAuthorityARNs
//     (the API says certificateArn and certificateAuthorityArns);
//   - a gateway listener's validation trust also allows acm (the API does
//     not: converting one is an error);
//   - the mesh IP preference is meshServiceDiscovery.ipPreference, and a
//     node's dns and awsCloudMap have no ipPreference;
//   - k8s-only fields: awsName, meshRef, meshOwner, namespaceSelector,
//     podSelector, gatewayRouteSelector, backendGroups, virtualGatewayRef,
//     and routes inline in the VirtualRouter.

// k8sObject is a Kubernetes object with a typed spec. status is accepted and
// ignored.
type k8sObject[S any] struct {
	APIVersion string        `json:"apiVersion"`
	Kind       string        `json:"kind"`
	Metadata   k8sObjectMeta `json:"metadata"`
	Spec       S             `json:"spec"`
	Status     any           `json:"status"`
}

// k8sObjectMeta is metav1.ObjectMeta. Only name, namespace and labels are
// used; the other standard fields are accepted and ignored.
type k8sObjectMeta struct {
	Name                       string            `json:"name"`
	Namespace                  string            `json:"namespace"`
	Labels                     map[string]string `json:"labels"`
	Annotations                map[string]string `json:"annotations"`
	GenerateName               any               `json:"generateName"`
	SelfLink                   any               `json:"selfLink"`
	UID                        any               `json:"uid"`
	ResourceVersion            any               `json:"resourceVersion"`
	Generation                 any               `json:"generation"`
	CreationTimestamp          any               `json:"creationTimestamp"`
	DeletionTimestamp          any               `json:"deletionTimestamp"`
	DeletionGracePeriodSeconds any               `json:"deletionGracePeriodSeconds"`
	OwnerReferences            any               `json:"ownerReferences"`
	Finalizers                 any               `json:"finalizers"`
	ManagedFields              any               `json:"managedFields"`
	ClusterName                any               `json:"clusterName"`
}

// k8sNamespace is a core v1 Namespace; only its labels matter.
type k8sNamespace = k8sObject[any]

// k8sMeshRef is spec.meshRef (MeshReference). The webhook fills in uid.
type k8sMeshRef struct {
	Name string `json:"name"`
	UID  any    `json:"uid"`
}

// k8sRef is a VirtualNodeReference, VirtualServiceReference,
// VirtualRouterReference or BackendGroupReference.
type k8sRef struct {
	Namespace *string `json:"namespace"`
	Name      string  `json:"name"`
}

// k8sGatewayRef is a GatewayRoute's virtualGatewayRef.
type k8sGatewayRef struct {
	Namespace *string `json:"namespace"`
	Name      string  `json:"name"`
	UID       any     `json:"uid"`
}

// ---- Mesh ------------------------------------------------------------------

type k8sMeshSpec struct {
	AWSName              *string                       `json:"awsName"`
	NamespaceSelector    *LabelSelector                `json:"namespaceSelector"`
	EgressFilter         *appmesh.EgressFilter         `json:"egressFilter"`
	MeshOwner            *string                       `json:"meshOwner"`
	MeshServiceDiscovery *appmesh.MeshServiceDiscovery `json:"meshServiceDiscovery"`
}

// ---- TLS pieces with CRD spelling --------------------------------------------

type k8sListenerTLSCertificate struct {
	ACM  *k8sACMCertificate          `json:"acm"`
	File *appmesh.TLSFileCertificate `json:"file"`
	SDS  *appmesh.TLSSDSCertificate  `json:"sds"`
}

type k8sACMCertificate struct {
	CertificateARN string `json:"certificateARN"`
}

type k8sTrust struct {
	ACM  *k8sACMTrust                           `json:"acm"`
	File *appmesh.TLSValidationContextFileTrust `json:"file"`
	SDS  *appmesh.TLSValidationContextSDSTrust  `json:"sds"`
}

type k8sACMTrust struct {
	CertificateAuthorityARNs []string `json:"certificateAuthorityARNs"`
}

type k8sValidationContext struct {
	Trust                   *k8sTrust                        `json:"trust"`
	SubjectAlternativeNames *appmesh.SubjectAlternativeNames `json:"subjectAlternativeNames"`
}

type k8sClientPolicy struct {
	TLS *k8sClientPolicyTLS `json:"tls"`
}

type k8sClientPolicyTLS struct {
	Enforce     *bool                         `json:"enforce"`
	Ports       []int32                       `json:"ports"`
	Certificate *appmesh.ClientTLSCertificate `json:"certificate"`
	Validation  *k8sValidationContext         `json:"validation"`
}

type k8sBackendDefaults struct {
	ClientPolicy *k8sClientPolicy `json:"clientPolicy"`
}

// ---- VirtualNode -------------------------------------------------------------

type k8sVirtualNodeSpec struct {
	AWSName          *string              `json:"awsName"`
	PodSelector      *LabelSelector       `json:"podSelector"`
	Listeners        []k8sListener        `json:"listeners"`
	ServiceDiscovery *k8sServiceDiscovery `json:"serviceDiscovery"`
	Backends         []k8sBackend         `json:"backends"`
	BackendGroups    []k8sRef             `json:"backendGroups"`
	BackendDefaults  *k8sBackendDefaults  `json:"backendDefaults"`
	Logging          *appmesh.Logging     `json:"logging"`
	MeshRef          *k8sMeshRef          `json:"meshRef"`
}

type k8sListener struct {
	PortMapping      *appmesh.PortMapping               `json:"portMapping"`
	HealthCheck      *appmesh.HealthCheckPolicy         `json:"healthCheck"`
	OutlierDetection *appmesh.OutlierDetection          `json:"outlierDetection"`
	Timeout          *appmesh.ListenerTimeout           `json:"timeout"`
	TLS              *k8sListenerTLS                    `json:"tls"`
	ConnectionPool   *appmesh.VirtualNodeConnectionPool `json:"connectionPool"`
}

type k8sListenerTLS struct {
	Mode        appmesh.TLSMode                       `json:"mode"`
	Certificate *k8sListenerTLSCertificate            `json:"certificate"`
	Validation  *appmesh.ListenerTLSValidationContext `json:"validation"`
}

type k8sServiceDiscovery struct {
	AWSCloudMap *k8sCloudMap `json:"awsCloudMap"`
	DNS         *k8sDNS      `json:"dns"`
}

type k8sCloudMap struct {
	NamespaceName string                              `json:"namespaceName"`
	ServiceName   string                              `json:"serviceName"`
	Attributes    []appmesh.CloudMapInstanceAttribute `json:"attributes"`
}

type k8sDNS struct {
	Hostname     string                  `json:"hostname"`
	ResponseType appmesh.DNSResponseType `json:"responseType"`
}

type k8sBackend struct {
	VirtualService *k8sVirtualServiceBackend `json:"virtualService"`
}

type k8sVirtualServiceBackend struct {
	VirtualServiceRef *k8sRef          `json:"virtualServiceRef"`
	VirtualServiceARN *string          `json:"virtualServiceARN"`
	ClientPolicy      *k8sClientPolicy `json:"clientPolicy"`
}

// ---- VirtualService ------------------------------------------------------------

type k8sVirtualServiceSpec struct {
	AWSName  *string      `json:"awsName"`
	Provider *k8sProvider `json:"provider"`
	MeshRef  *k8sMeshRef  `json:"meshRef"`
}

type k8sProvider struct {
	VirtualNode   *k8sNodeProvider   `json:"virtualNode"`
	VirtualRouter *k8sRouterProvider `json:"virtualRouter"`
}

type k8sNodeProvider struct {
	VirtualNodeRef *k8sRef `json:"virtualNodeRef"`
	VirtualNodeARN *string `json:"virtualNodeARN"`
}

type k8sRouterProvider struct {
	VirtualRouterRef *k8sRef `json:"virtualRouterRef"`
	VirtualRouterARN *string `json:"virtualRouterARN"`
}

// ---- VirtualRouter and its routes ----------------------------------------------

type k8sVirtualRouterSpec struct {
	AWSName   *string                         `json:"awsName"`
	Listeners []appmesh.VirtualRouterListener `json:"listeners"`
	Routes    []k8sRoute                      `json:"routes"`
	MeshRef   *k8sMeshRef                     `json:"meshRef"`
}

type k8sRoute struct {
	Name       string        `json:"name"`
	GRPCRoute  *k8sGRPCRoute `json:"grpcRoute"`
	HTTPRoute  *k8sHTTPRoute `json:"httpRoute"`
	HTTP2Route *k8sHTTPRoute `json:"http2Route"`
	TCPRoute   *k8sTCPRoute  `json:"tcpRoute"`
	Priority   *int32        `json:"priority"`
}

type k8sRouteAction struct {
	WeightedTargets []k8sWeightedTarget `json:"weightedTargets"`
}

type k8sWeightedTarget struct {
	VirtualNodeRef *k8sRef `json:"virtualNodeRef"`
	VirtualNodeARN *string `json:"virtualNodeARN"`
	Weight         *int32  `json:"weight"`
	Port           *int32  `json:"port"`
}

type k8sHTTPRoute struct {
	Match       *appmesh.HTTPRouteMatch  `json:"match"`
	Action      *k8sRouteAction          `json:"action"`
	RetryPolicy *appmesh.HTTPRetryPolicy `json:"retryPolicy"`
	Timeout     *appmesh.HTTPTimeout     `json:"timeout"`
}

type k8sGRPCRoute struct {
	Match       *appmesh.GRPCRouteMatch  `json:"match"`
	Action      *k8sRouteAction          `json:"action"`
	RetryPolicy *appmesh.GRPCRetryPolicy `json:"retryPolicy"`
	Timeout     *appmesh.GRPCTimeout     `json:"timeout"`
}

type k8sTCPRoute struct {
	Match   *appmesh.TCPRouteMatch `json:"match"`
	Action  *k8sRouteAction        `json:"action"`
	Timeout *appmesh.TCPTimeout    `json:"timeout"`
}

// ---- VirtualGateway ----------------------------------------------------------------

type k8sVirtualGatewaySpec struct {
	AWSName              *string              `json:"awsName"`
	NamespaceSelector    *LabelSelector       `json:"namespaceSelector"`
	PodSelector          *LabelSelector       `json:"podSelector"`
	GatewayRouteSelector *LabelSelector       `json:"gatewayRouteSelector"`
	Listeners            []k8sGatewayListener `json:"listeners"`
	BackendDefaults      *k8sBackendDefaults  `json:"backendDefaults"`
	Logging              *appmesh.Logging     `json:"logging"`
	MeshRef              *k8sMeshRef          `json:"meshRef"`
}

type k8sGatewayListener struct {
	PortMapping    *appmesh.PortMapping                  `json:"portMapping"`
	HealthCheck    *appmesh.HealthCheckPolicy            `json:"healthCheck"`
	ConnectionPool *appmesh.VirtualGatewayConnectionPool `json:"connectionPool"`
	TLS            *k8sGatewayListenerTLS                `json:"tls"`
}

type k8sGatewayListenerTLS struct {
	Mode        appmesh.TLSMode            `json:"mode"`
	Certificate *k8sListenerTLSCertificate `json:"certificate"`
	Validation  *k8sValidationContext      `json:"validation"`
}

// ---- GatewayRoute ------------------------------------------------------------------

type k8sGatewayRouteSpec struct {
	AWSName           *string              `json:"awsName"`
	GRPCRoute         *k8sGRPCGatewayRoute `json:"grpcRoute"`
	HTTPRoute         *k8sHTTPGatewayRoute `json:"httpRoute"`
	HTTP2Route        *k8sHTTPGatewayRoute `json:"http2Route"`
	Priority          *int32               `json:"priority"`
	VirtualGatewayRef *k8sGatewayRef       `json:"virtualGatewayRef"`
	MeshRef           *k8sMeshRef          `json:"meshRef"`
}

type k8sHTTPGatewayRoute struct {
	Match  *appmesh.HTTPGatewayRouteMatch `json:"match"`
	Action *k8sHTTPGatewayRouteAction     `json:"action"`
}

type k8sHTTPGatewayRouteAction struct {
	Target  *k8sGatewayRouteTarget           `json:"target"`
	Rewrite *appmesh.HTTPGatewayRouteRewrite `json:"rewrite"`
}

type k8sGRPCGatewayRoute struct {
	Match  *appmesh.GRPCGatewayRouteMatch `json:"match"`
	Action *k8sGRPCGatewayRouteAction     `json:"action"`
}

type k8sGRPCGatewayRouteAction struct {
	Target  *k8sGatewayRouteTarget           `json:"target"`
	Rewrite *appmesh.GRPCGatewayRouteRewrite `json:"rewrite"`
}

type k8sGatewayRouteTarget struct {
	VirtualService *k8sGatewayRouteVirtualService `json:"virtualService"`
	Port           *int32                         `json:"port"`
}

type k8sGatewayRouteVirtualService struct {
	VirtualServiceRef *k8sRef `json:"virtualServiceRef"`
	VirtualServiceARN *string `json:"virtualServiceARN"`
}

// ---- BackendGroup --------------------------------------------------------------------

type k8sBackendGroupSpec struct {
	VirtualServices []k8sRef    `json:"virtualservices"`
	MeshRef         *k8sMeshRef `json:"meshRef"`
}
