// SPDX-License-Identifier: Apache-2.0

package appmesh

// This file holds the App Mesh 2019-01-25 resource specifications. JSON names are
// exactly those of the App Mesh API. Optional scalars are pointers so that "absent"
// and "zero" stay apart through a round trip; required ones are pointers too where
// the validator must be able to say "is required" rather than "must be at least 1".

// Duration is an App Mesh duration: a value and a unit (s or ms).
type Duration struct {
	Unit  DurationUnit `json:"unit,omitempty"`
	Value *int64       `json:"value,omitempty"`
}

// DurationUnit is the unit of a Duration.
type DurationUnit string

// Duration units.
const (
	UnitS  DurationUnit = "s"
	UnitMS DurationUnit = "ms"
)

// PortProtocol is the protocol of a node or router listener.
type PortProtocol string

// Listener protocols.
const (
	ProtocolHTTP  PortProtocol = "http"
	ProtocolHTTP2 PortProtocol = "http2"
	ProtocolGRPC  PortProtocol = "grpc"
	ProtocolTCP   PortProtocol = "tcp"
)

// PortMapping is a port and protocol of a listener.
type PortMapping struct {
	Port     *int32       `json:"port,omitempty"`
	Protocol PortProtocol `json:"protocol,omitempty"`
}

// Tag is a resource tag.
type Tag struct {
	Key   string  `json:"key"`
	Value *string `json:"value,omitempty"`
}

// ---- Mesh -----------------------------------------------------------------

// MeshSpec is the specification of a mesh.
type MeshSpec struct {
	EgressFilter     *EgressFilter         `json:"egressFilter,omitempty"`
	ServiceDiscovery *MeshServiceDiscovery `json:"serviceDiscovery,omitempty"`
}

// EgressFilter says what meshed workloads may reach outside the mesh.
type EgressFilter struct {
	Type EgressFilterType `json:"type,omitempty"`
}

// EgressFilterType is ALLOW_ALL or DROP_ALL.
type EgressFilterType string

// Egress filter types.
const (
	EgressAllowAll EgressFilterType = "ALLOW_ALL"
	EgressDropAll  EgressFilterType = "DROP_ALL"
)

// MeshServiceDiscovery holds mesh-wide service discovery settings.
type MeshServiceDiscovery struct {
	IPPreference IPPreference `json:"ipPreference,omitempty"`
}

// IPPreference is the address family preference of §4.7.
type IPPreference string

// IP preferences.
const (
	IPv6Preferred IPPreference = "IPv6_PREFERRED"
	IPv4Preferred IPPreference = "IPv4_PREFERRED"
	IPv4Only      IPPreference = "IPv4_ONLY"
	IPv6Only      IPPreference = "IPv6_ONLY"
)

// ---- VirtualNode ----------------------------------------------------------

// VirtualNodeSpec is the specification of a virtual node.
type VirtualNodeSpec struct {
	Listeners        []Listener        `json:"listeners,omitempty"`
	ServiceDiscovery *ServiceDiscovery `json:"serviceDiscovery,omitempty"`
	Backends         []Backend         `json:"backends,omitempty"`
	BackendDefaults  *BackendDefaults  `json:"backendDefaults,omitempty"`
	Logging          *Logging          `json:"logging,omitempty"`
}

// Listener is an inbound port of a virtual node.
type Listener struct {
	PortMapping      *PortMapping               `json:"portMapping,omitempty"`
	HealthCheck      *HealthCheckPolicy         `json:"healthCheck,omitempty"`
	OutlierDetection *OutlierDetection          `json:"outlierDetection,omitempty"`
	Timeout          *ListenerTimeout           `json:"timeout,omitempty"`
	TLS              *ListenerTLS               `json:"tls,omitempty"`
	ConnectionPool   *VirtualNodeConnectionPool `json:"connectionPool,omitempty"`
}

// HealthCheckPolicy is an active health check of a listener.
type HealthCheckPolicy struct {
	Protocol           PortProtocol `json:"protocol,omitempty"`
	Path               *string      `json:"path,omitempty"`
	Port               *int32       `json:"port,omitempty"`
	HealthyThreshold   *int32       `json:"healthyThreshold,omitempty"`
	UnhealthyThreshold *int32       `json:"unhealthyThreshold,omitempty"`
	IntervalMillis     *int64       `json:"intervalMillis,omitempty"`
	TimeoutMillis      *int64       `json:"timeoutMillis,omitempty"`
}

// OutlierDetection is passive ejection of failing endpoints.
type OutlierDetection struct {
	MaxServerErrors      *int64    `json:"maxServerErrors,omitempty"`
	Interval             *Duration `json:"interval,omitempty"`
	BaseEjectionDuration *Duration `json:"baseEjectionDuration,omitempty"`
	MaxEjectionPercent   *int32    `json:"maxEjectionPercent,omitempty"`
}

// ListenerTimeout is a one-of by protocol.
type ListenerTimeout struct {
	HTTP  *HTTPTimeout `json:"http,omitempty"`
	HTTP2 *HTTPTimeout `json:"http2,omitempty"`
	GRPC  *GRPCTimeout `json:"grpc,omitempty"`
	TCP   *TCPTimeout  `json:"tcp,omitempty"`
}

// HTTPTimeout holds per-request and idle timeouts.
type HTTPTimeout struct {
	PerRequest *Duration `json:"perRequest,omitempty"`
	Idle       *Duration `json:"idle,omitempty"`
}

// GRPCTimeout holds per-request and idle timeouts.
type GRPCTimeout struct {
	PerRequest *Duration `json:"perRequest,omitempty"`
	Idle       *Duration `json:"idle,omitempty"`
}

// TCPTimeout holds the idle timeout of a TCP connection.
type TCPTimeout struct {
	Idle *Duration `json:"idle,omitempty"`
}

// VirtualNodeConnectionPool is a one-of by protocol.
type VirtualNodeConnectionPool struct {
	TCP   *TCPConnectionPool   `json:"tcp,omitempty"`
	HTTP  *HTTPConnectionPool  `json:"http,omitempty"`
	HTTP2 *HTTP2ConnectionPool `json:"http2,omitempty"`
	GRPC  *GRPCConnectionPool  `json:"grpc,omitempty"`
}

// TCPConnectionPool limits connections.
type TCPConnectionPool struct {
	MaxConnections *int32 `json:"maxConnections,omitempty"`
}

// HTTPConnectionPool limits connections and queued requests.
type HTTPConnectionPool struct {
	MaxConnections     *int32 `json:"maxConnections,omitempty"`
	MaxPendingRequests *int32 `json:"maxPendingRequests,omitempty"`
}

// HTTP2ConnectionPool limits concurrent requests.
type HTTP2ConnectionPool struct {
	MaxRequests *int32 `json:"maxRequests,omitempty"`
}

// GRPCConnectionPool limits concurrent requests.
type GRPCConnectionPool struct {
	MaxRequests *int32 `json:"maxRequests,omitempty"`
}

// ListenerTLS is TLS termination on a node listener.
type ListenerTLS struct {
	Mode        TLSMode                       `json:"mode,omitempty"`
	Certificate *ListenerTLSCertificate       `json:"certificate,omitempty"`
	Validation  *ListenerTLSValidationContext `json:"validation,omitempty"`
}

// TLSMode is STRICT, PERMISSIVE or DISABLED.
type TLSMode string

// TLS modes.
const (
	TLSStrict     TLSMode = "STRICT"
	TLSPermissive TLSMode = "PERMISSIVE"
	TLSDisabled   TLSMode = "DISABLED"
)

// ListenerTLSCertificate is a one-of: acm, file or sds.
type ListenerTLSCertificate struct {
	ACM  *TLSACMCertificate  `json:"acm,omitempty"`
	File *TLSFileCertificate `json:"file,omitempty"`
	SDS  *TLSSDSCertificate  `json:"sds,omitempty"`
}

// TLSACMCertificate names an ACM certificate.
type TLSACMCertificate struct {
	CertificateARN string `json:"certificateArn,omitempty"`
}

// TLSFileCertificate names a certificate chain and key on the proxy's file system.
type TLSFileCertificate struct {
	CertificateChain string `json:"certificateChain,omitempty"`
	PrivateKey       string `json:"privateKey,omitempty"`
}

// TLSSDSCertificate names a secret served over SDS.
type TLSSDSCertificate struct {
	SecretName string `json:"secretName,omitempty"`
}

// ClientTLSCertificate is a one-of: file or sds (no ACM).
type ClientTLSCertificate struct {
	File *TLSFileCertificate `json:"file,omitempty"`
	SDS  *TLSSDSCertificate  `json:"sds,omitempty"`
}

// ListenerTLSValidationContext is the trust of a node listener (file or sds).
type ListenerTLSValidationContext struct {
	Trust                   *ListenerTLSValidationContextTrust `json:"trust,omitempty"`
	SubjectAlternativeNames *SubjectAlternativeNames           `json:"subjectAlternativeNames,omitempty"`
}

// ListenerTLSValidationContextTrust is a one-of: file or sds.
type ListenerTLSValidationContextTrust struct {
	File *TLSValidationContextFileTrust `json:"file,omitempty"`
	SDS  *TLSValidationContextSDSTrust  `json:"sds,omitempty"`
}

// TLSValidationContext is the trust of a client policy.
type TLSValidationContext struct {
	Trust                   *TLSValidationContextTrust `json:"trust,omitempty"`
	SubjectAlternativeNames *SubjectAlternativeNames   `json:"subjectAlternativeNames,omitempty"`
}

// TLSValidationContextTrust is a one-of: acm, file or sds.
type TLSValidationContextTrust struct {
	ACM  *TLSValidationContextACMTrust  `json:"acm,omitempty"`
	File *TLSValidationContextFileTrust `json:"file,omitempty"`
	SDS  *TLSValidationContextSDSTrust  `json:"sds,omitempty"`
}

// TLSValidationContextACMTrust names 1–3 ACM PCA ARNs.
type TLSValidationContextACMTrust struct {
	CertificateAuthorityARNs []string `json:"certificateAuthorityArns,omitempty"`
}

// TLSValidationContextFileTrust names a CA bundle file.
type TLSValidationContextFileTrust struct {
	CertificateChain string `json:"certificateChain,omitempty"`
}

// TLSValidationContextSDSTrust names an SDS secret with the trust bundle.
type TLSValidationContextSDSTrust struct {
	SecretName string `json:"secretName,omitempty"`
}

// SubjectAlternativeNames restricts accepted peer SANs.
type SubjectAlternativeNames struct {
	Match *SubjectAlternativeNameMatchers `json:"match,omitempty"`
}

// SubjectAlternativeNameMatchers lists exact SANs.
type SubjectAlternativeNameMatchers struct {
	Exact []string `json:"exact,omitempty"`
}

// ServiceDiscovery is a one-of: dns or awsCloudMap.
type ServiceDiscovery struct {
	DNS         *DNSServiceDiscovery      `json:"dns,omitempty"`
	AWSCloudMap *CloudMapServiceDiscovery `json:"awsCloudMap,omitempty"`
}

// DNSServiceDiscovery resolves a hostname.
type DNSServiceDiscovery struct {
	Hostname     string          `json:"hostname,omitempty"`
	ResponseType DNSResponseType `json:"responseType,omitempty"`
	IPPreference IPPreference    `json:"ipPreference,omitempty"`
}

// DNSResponseType is LOADBALANCER or ENDPOINTS.
type DNSResponseType string

// DNS response types.
const (
	DNSLoadBalancer DNSResponseType = "LOADBALANCER"
	DNSEndpoints    DNSResponseType = "ENDPOINTS"
)

// CloudMapServiceDiscovery selects instances of a Cloud Map service.
type CloudMapServiceDiscovery struct {
	NamespaceName string                      `json:"namespaceName,omitempty"`
	ServiceName   string                      `json:"serviceName,omitempty"`
	Attributes    []CloudMapInstanceAttribute `json:"attributes,omitempty"`
	IPPreference  IPPreference                `json:"ipPreference,omitempty"`
}

// CloudMapInstanceAttribute is a key/value an instance must carry.
type CloudMapInstanceAttribute struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Backend is a one-of with a single member, virtualService.
type Backend struct {
	VirtualService *VirtualServiceBackend `json:"virtualService,omitempty"`
}

// VirtualServiceBackend names a virtual service a node calls.
type VirtualServiceBackend struct {
	VirtualServiceName string        `json:"virtualServiceName,omitempty"`
	ClientPolicy       *ClientPolicy `json:"clientPolicy,omitempty"`
}

// BackendDefaults applies to every backend without its own policy.
type BackendDefaults struct {
	ClientPolicy *ClientPolicy `json:"clientPolicy,omitempty"`
}

// ClientPolicy is the client-side TLS policy.
type ClientPolicy struct {
	TLS *ClientPolicyTLS `json:"tls,omitempty"`
}

// ClientPolicyTLS originates TLS to backends.
type ClientPolicyTLS struct {
	Enforce     *bool                 `json:"enforce,omitempty"`
	Ports       []int32               `json:"ports,omitempty"`
	Certificate *ClientTLSCertificate `json:"certificate,omitempty"`
	Validation  *TLSValidationContext `json:"validation,omitempty"`
}

// Logging configures access logs.
type Logging struct {
	AccessLog *AccessLog `json:"accessLog,omitempty"`
}

// AccessLog is a one-of with a single member, file.
type AccessLog struct {
	File *FileAccessLog `json:"file,omitempty"`
}

// FileAccessLog writes access logs to a path.
type FileAccessLog struct {
	Path   string         `json:"path,omitempty"`
	Format *LoggingFormat `json:"format,omitempty"`
}

// LoggingFormat is a one-of: text or json.
type LoggingFormat struct {
	Text *string         `json:"text,omitempty"`
	JSON []JSONFormatRef `json:"json,omitempty"`
}

// JSONFormatRef is one key of a JSON access log line.
type JSONFormatRef struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ---- VirtualService -------------------------------------------------------

// VirtualServiceSpec is the specification of a virtual service.
type VirtualServiceSpec struct {
	Provider *VirtualServiceProvider `json:"provider,omitempty"`
}

// VirtualServiceProvider is a one-of: virtualNode or virtualRouter.
type VirtualServiceProvider struct {
	VirtualNode   *VirtualNodeServiceProvider   `json:"virtualNode,omitempty"`
	VirtualRouter *VirtualRouterServiceProvider `json:"virtualRouter,omitempty"`
}

// VirtualNodeServiceProvider names the providing node.
type VirtualNodeServiceProvider struct {
	VirtualNodeName string `json:"virtualNodeName,omitempty"`
}

// VirtualRouterServiceProvider names the providing router.
type VirtualRouterServiceProvider struct {
	VirtualRouterName string `json:"virtualRouterName,omitempty"`
}

// ---- VirtualRouter --------------------------------------------------------

// VirtualRouterSpec is the specification of a virtual router.
type VirtualRouterSpec struct {
	Listeners []VirtualRouterListener `json:"listeners,omitempty"`
}

// VirtualRouterListener is a port of a router.
type VirtualRouterListener struct {
	PortMapping *PortMapping `json:"portMapping,omitempty"`
}

// ---- Route ----------------------------------------------------------------

// RouteSpec is the specification of a route: exactly one route type.
type RouteSpec struct {
	HTTPRoute  *HTTPRoute `json:"httpRoute,omitempty"`
	HTTP2Route *HTTPRoute `json:"http2Route,omitempty"`
	GRPCRoute  *GRPCRoute `json:"grpcRoute,omitempty"`
	TCPRoute   *TCPRoute  `json:"tcpRoute,omitempty"`
	Priority   *int32     `json:"priority,omitempty"`
}

// HTTPRoute is an httpRoute or http2Route.
type HTTPRoute struct {
	Match       *HTTPRouteMatch  `json:"match,omitempty"`
	Action      *HTTPRouteAction `json:"action,omitempty"`
	RetryPolicy *HTTPRetryPolicy `json:"retryPolicy,omitempty"`
	Timeout     *HTTPTimeout     `json:"timeout,omitempty"`
}

// HTTPRouteMatch is ANDed conditions on a request.
type HTTPRouteMatch struct {
	Prefix          *string              `json:"prefix,omitempty"`
	Path            *HTTPPathMatch       `json:"path,omitempty"`
	Headers         []HTTPRouteHeader    `json:"headers,omitempty"`
	Method          HTTPMethod           `json:"method,omitempty"`
	Scheme          HTTPScheme           `json:"scheme,omitempty"`
	QueryParameters []HTTPQueryParameter `json:"queryParameters,omitempty"`
	Port            *int32               `json:"port,omitempty"`
}

// HTTPPathMatch is a one-of: exact or regex.
type HTTPPathMatch struct {
	Exact *string `json:"exact,omitempty"`
	Regex *string `json:"regex,omitempty"`
}

// HTTPRouteHeader matches one header. Without Match it checks presence.
type HTTPRouteHeader struct {
	Name   string             `json:"name"`
	Match  *HeaderMatchMethod `json:"match,omitempty"`
	Invert *bool              `json:"invert,omitempty"`
}

// HeaderMatchMethod is a one-of of string and range matchers.
type HeaderMatchMethod struct {
	Exact  *string     `json:"exact,omitempty"`
	Prefix *string     `json:"prefix,omitempty"`
	Suffix *string     `json:"suffix,omitempty"`
	Regex  *string     `json:"regex,omitempty"`
	Range  *MatchRange `json:"range,omitempty"`
}

// MatchRange is the half-open integer range [start, end).
type MatchRange struct {
	Start *int64 `json:"start,omitempty"`
	End   *int64 `json:"end,omitempty"`
}

// HTTPMethod is an HTTP request method.
type HTTPMethod string

// HTTPScheme is http or https.
type HTTPScheme string

// HTTPQueryParameter matches one query parameter; without Match it checks presence.
type HTTPQueryParameter struct {
	Name  string               `json:"name"`
	Match *QueryParameterMatch `json:"match,omitempty"`
}

// QueryParameterMatch matches a parameter value exactly.
type QueryParameterMatch struct {
	Exact *string `json:"exact,omitempty"`
}

// HTTPRouteAction holds the weighted targets.
type HTTPRouteAction struct {
	WeightedTargets []WeightedTarget `json:"weightedTargets,omitempty"`
}

// WeightedTarget is a virtual node with a relative weight.
type WeightedTarget struct {
	VirtualNode string `json:"virtualNode,omitempty"`
	Weight      *int32 `json:"weight,omitempty"`
	Port        *int32 `json:"port,omitempty"`
}

// HTTPRetryPolicy retries failed HTTP requests.
type HTTPRetryPolicy struct {
	MaxRetries      *int64    `json:"maxRetries,omitempty"`
	PerRetryTimeout *Duration `json:"perRetryTimeout,omitempty"`
	HTTPRetryEvents []string  `json:"httpRetryEvents,omitempty"`
	TCPRetryEvents  []string  `json:"tcpRetryEvents,omitempty"`
}

// GRPCRoute routes gRPC calls.
type GRPCRoute struct {
	Match       *GRPCRouteMatch  `json:"match,omitempty"`
	Action      *GRPCRouteAction `json:"action,omitempty"`
	RetryPolicy *GRPCRetryPolicy `json:"retryPolicy,omitempty"`
	Timeout     *GRPCTimeout     `json:"timeout,omitempty"`
}

// GRPCRouteMatch matches a gRPC call.
type GRPCRouteMatch struct {
	ServiceName *string             `json:"serviceName,omitempty"`
	MethodName  *string             `json:"methodName,omitempty"`
	Metadata    []GRPCRouteMetadata `json:"metadata,omitempty"`
	Port        *int32              `json:"port,omitempty"`
}

// GRPCRouteMetadata matches one metadata entry.
type GRPCRouteMetadata struct {
	Name   string             `json:"name"`
	Match  *HeaderMatchMethod `json:"match,omitempty"`
	Invert *bool              `json:"invert,omitempty"`
}

// GRPCRouteAction holds the weighted targets.
type GRPCRouteAction struct {
	WeightedTargets []WeightedTarget `json:"weightedTargets,omitempty"`
}

// GRPCRetryPolicy retries failed gRPC calls.
type GRPCRetryPolicy struct {
	MaxRetries      *int64    `json:"maxRetries,omitempty"`
	PerRetryTimeout *Duration `json:"perRetryTimeout,omitempty"`
	GRPCRetryEvents []string  `json:"grpcRetryEvents,omitempty"`
	HTTPRetryEvents []string  `json:"httpRetryEvents,omitempty"`
	TCPRetryEvents  []string  `json:"tcpRetryEvents,omitempty"`
}

// TCPRoute routes TCP connections.
type TCPRoute struct {
	Match   *TCPRouteMatch  `json:"match,omitempty"`
	Action  *TCPRouteAction `json:"action,omitempty"`
	Timeout *TCPTimeout     `json:"timeout,omitempty"`
}

// TCPRouteMatch selects the router port.
type TCPRouteMatch struct {
	Port *int32 `json:"port,omitempty"`
}

// TCPRouteAction holds the weighted targets.
type TCPRouteAction struct {
	WeightedTargets []WeightedTarget `json:"weightedTargets,omitempty"`
}

// ---- VirtualGateway -------------------------------------------------------

// VirtualGatewaySpec is the specification of a virtual gateway.
type VirtualGatewaySpec struct {
	Listeners       []VirtualGatewayListener       `json:"listeners,omitempty"`
	BackendDefaults *VirtualGatewayBackendDefaults `json:"backendDefaults,omitempty"`
	Logging         *Logging                       `json:"logging,omitempty"`
}

// VirtualGatewayListener is a port the gateway binds.
type VirtualGatewayListener struct {
	PortMapping    *PortMapping                  `json:"portMapping,omitempty"`
	HealthCheck    *HealthCheckPolicy            `json:"healthCheck,omitempty"`
	ConnectionPool *VirtualGatewayConnectionPool `json:"connectionPool,omitempty"`
	TLS            *VirtualGatewayListenerTLS    `json:"tls,omitempty"`
}

// VirtualGatewayConnectionPool is a one-of by protocol.
type VirtualGatewayConnectionPool struct {
	HTTP  *HTTPConnectionPool  `json:"http,omitempty"`
	HTTP2 *HTTP2ConnectionPool `json:"http2,omitempty"`
	GRPC  *GRPCConnectionPool  `json:"grpc,omitempty"`
}

// VirtualGatewayListenerTLS is TLS termination on a gateway listener.
type VirtualGatewayListenerTLS struct {
	Mode        TLSMode                       `json:"mode,omitempty"`
	Certificate *ListenerTLSCertificate       `json:"certificate,omitempty"`
	Validation  *ListenerTLSValidationContext `json:"validation,omitempty"`
}

// VirtualGatewayBackendDefaults holds the gateway's client policy.
type VirtualGatewayBackendDefaults struct {
	ClientPolicy *ClientPolicy `json:"clientPolicy,omitempty"`
}

// ---- GatewayRoute ---------------------------------------------------------

// GatewayRouteSpec is the specification of a gateway route.
type GatewayRouteSpec struct {
	HTTPRoute  *HTTPGatewayRoute `json:"httpRoute,omitempty"`
	HTTP2Route *HTTPGatewayRoute `json:"http2Route,omitempty"`
	GRPCRoute  *GRPCGatewayRoute `json:"grpcRoute,omitempty"`
	Priority   *int32            `json:"priority,omitempty"`
}

// HTTPGatewayRoute is an httpRoute or http2Route of a gateway.
type HTTPGatewayRoute struct {
	Match  *HTTPGatewayRouteMatch  `json:"match,omitempty"`
	Action *HTTPGatewayRouteAction `json:"action,omitempty"`
}

// HTTPGatewayRouteMatch is ANDed conditions on a request entering the gateway.
type HTTPGatewayRouteMatch struct {
	Prefix          *string                    `json:"prefix,omitempty"`
	Path            *HTTPPathMatch             `json:"path,omitempty"`
	Hostname        *GatewayRouteHostnameMatch `json:"hostname,omitempty"`
	Headers         []HTTPRouteHeader          `json:"headers,omitempty"`
	Method          HTTPMethod                 `json:"method,omitempty"`
	QueryParameters []HTTPQueryParameter       `json:"queryParameters,omitempty"`
	Port            *int32                     `json:"port,omitempty"`
}

// GatewayRouteHostnameMatch is a one-of: exact or suffix.
type GatewayRouteHostnameMatch struct {
	Exact  *string `json:"exact,omitempty"`
	Suffix *string `json:"suffix,omitempty"`
}

// HTTPGatewayRouteAction names the target and rewrites.
type HTTPGatewayRouteAction struct {
	Target  *GatewayRouteTarget      `json:"target,omitempty"`
	Rewrite *HTTPGatewayRouteRewrite `json:"rewrite,omitempty"`
}

// GatewayRouteTarget is a virtual service and an optional provider port.
type GatewayRouteTarget struct {
	VirtualService *GatewayRouteVirtualService `json:"virtualService,omitempty"`
	Port           *int32                      `json:"port,omitempty"`
}

// GatewayRouteVirtualService names the target service.
type GatewayRouteVirtualService struct {
	VirtualServiceName string `json:"virtualServiceName,omitempty"`
}

// HTTPGatewayRouteRewrite rewrites host, prefix or path.
type HTTPGatewayRouteRewrite struct {
	Hostname *GatewayRouteHostnameRewrite   `json:"hostname,omitempty"`
	Prefix   *HTTPGatewayRoutePrefixRewrite `json:"prefix,omitempty"`
	Path     *HTTPGatewayRoutePathRewrite   `json:"path,omitempty"`
}

// DefaultState is ENABLED or DISABLED.
type DefaultState string

// Default states.
const (
	Enabled  DefaultState = "ENABLED"
	Disabled DefaultState = "DISABLED"
)

// GatewayRouteHostnameRewrite controls the Host rewrite.
type GatewayRouteHostnameRewrite struct {
	DefaultTargetHostname DefaultState `json:"defaultTargetHostname,omitempty"`
}

// HTTPGatewayRoutePrefixRewrite is a one-of: defaultPrefix or value.
type HTTPGatewayRoutePrefixRewrite struct {
	DefaultPrefix DefaultState `json:"defaultPrefix,omitempty"`
	Value         *string      `json:"value,omitempty"`
}

// HTTPGatewayRoutePathRewrite replaces the whole path.
type HTTPGatewayRoutePathRewrite struct {
	Exact *string `json:"exact,omitempty"`
}

// GRPCGatewayRoute is a grpcRoute of a gateway.
type GRPCGatewayRoute struct {
	Match  *GRPCGatewayRouteMatch  `json:"match,omitempty"`
	Action *GRPCGatewayRouteAction `json:"action,omitempty"`
}

// GRPCGatewayRouteMatch matches a gRPC call entering the gateway.
type GRPCGatewayRouteMatch struct {
	ServiceName *string                    `json:"serviceName,omitempty"`
	Hostname    *GatewayRouteHostnameMatch `json:"hostname,omitempty"`
	Metadata    []GRPCRouteMetadata        `json:"metadata,omitempty"`
	Port        *int32                     `json:"port,omitempty"`
}

// GRPCGatewayRouteAction names the target and the host rewrite.
type GRPCGatewayRouteAction struct {
	Target  *GatewayRouteTarget      `json:"target,omitempty"`
	Rewrite *GRPCGatewayRouteRewrite `json:"rewrite,omitempty"`
}

// GRPCGatewayRouteRewrite controls the Host rewrite.
type GRPCGatewayRouteRewrite struct {
	Hostname *GatewayRouteHostnameRewrite `json:"hostname,omitempty"`
}
