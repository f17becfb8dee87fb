// SPDX-License-Identifier: Apache-2.0

package manifest

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// namespaceNameLabel is the label Kubernetes puts on every namespace
// (since 1.21), so that selectors can pick a namespace by name.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// k8sObj is one decoded appmesh.k8s.aws custom resource.
type k8sObj struct {
	it        item
	kind      string
	name      string // metadata.name
	namespace string // "" for a Mesh
	labels    map[string]string
	spec      any // *k8sMeshSpec, *k8sVirtualNodeSpec, ...
	ok        bool

	awsName   string
	mesh      string // AWS name of the mesh; "" when it could not be resolved
	meshOwner string
}

type objKey struct{ kind, namespace, name string }

// k8sConverter converts the Kubernetes documents of a set. It decodes all of
// them first, because mesh membership, gateway selection, backend groups and
// AWS names of references depend on other documents of the set.
type k8sConverter struct {
	c        *converter
	byID     map[int]*k8sObj
	byKey    map[objKey]*k8sObj
	ordered  []*k8sObj // every object, input order
	nsLabels map[string]map[string]string
	nsSource map[string]Source
}

func newK8sConverter(c *converter, items []item) *k8sConverter {
	k := &k8sConverter{
		c:        c,
		byID:     map[int]*k8sObj{},
		byKey:    map[objKey]*k8sObj{},
		nsLabels: map[string]map[string]string{},
		nsSource: map[string]Source{},
	}
	for _, it := range items {
		if it.form != FormKubernetes {
			continue
		}
		if it.kind == k8sKindNamespace {
			k.addNamespace(it)
			continue
		}
		if o := k.decode(it); o != nil {
			k.byID[it.id] = o
			key := objKey{o.kind, o.namespace, o.name}
			if prev, dup := k.byKey[key]; dup {
				c.errs.add(it.src, it.field("metadata.name"), "duplicate %s %s (already defined at %s)", o.kind, o.display(), prev.it.src)
				o.ok = false
				continue
			}
			k.byKey[key] = o
			k.ordered = append(k.ordered, o)
		}
	}
	// Meshes first: members need their AWS names and owners.
	for _, o := range k.ordered {
		if o.kind == string(appmesh.KindMesh) {
			s := o.spec.(*k8sMeshSpec)
			o.awsName = orDefault(s.AWSName, o.name)
			o.mesh = o.awsName
			if s.MeshOwner != nil {
				o.meshOwner = *s.MeshOwner
			}
		}
	}
	for _, o := range k.ordered {
		if o.kind != string(appmesh.KindMesh) {
			o.awsName = k.defaultName(o)
		}
		// A BackendGroup only lists services; a broken object is reported
		// already and is not converted.
		if o.kind != string(appmesh.KindMesh) && o.kind != k8sKindBackendGroup && o.ok {
			k.resolveMesh(o)
		}
	}
	return k
}

// display names a namespaced object as namespace/name.
func (o *k8sObj) display() string {
	if o.namespace == "" {
		return o.name
	}
	return o.namespace + "/" + o.name
}

func (k *k8sConverter) addNamespace(it item) {
	var ns k8sNamespace
	if !k.c.decodeInto(it, "", it.obj, &ns) {
		return
	}
	name := ns.Metadata.Name
	if name == "" {
		k.c.errs.add(it.src, it.field("metadata.name"), "is required")
		return
	}
	if prev, dup := k.nsSource[name]; dup {
		k.c.errs.add(it.src, it.field("metadata.name"), "duplicate Namespace %s (already defined at %s)", name, prev)
		return
	}
	labels := maps.Clone(ns.Metadata.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[namespaceNameLabel] = name
	k.nsLabels[name] = labels
	k.nsSource[name] = it.src
}

// labelsOf gives the labels of a namespace, from its Namespace document or,
// without one, only the label Kubernetes adds to every namespace.
func (k *k8sConverter) labelsOf(ns string) map[string]string {
	if l, ok := k.nsLabels[ns]; ok {
		return l
	}
	return map[string]string{namespaceNameLabel: ns}
}

// decode decodes a custom resource strictly into its typed form.
func (k *k8sConverter) decode(it item) *k8sObj {
	o := &k8sObj{it: it, kind: it.kind}
	var meta k8sObjectMeta
	switch it.kind {
	case string(appmesh.KindMesh):
		o.spec, meta, o.ok = decodeK8s[k8sMeshSpec](k.c, it)
	case string(appmesh.KindVirtualNode):
		o.spec, meta, o.ok = decodeK8s[k8sVirtualNodeSpec](k.c, it)
	case string(appmesh.KindVirtualService):
		o.spec, meta, o.ok = decodeK8s[k8sVirtualServiceSpec](k.c, it)
	case string(appmesh.KindVirtualRouter):
		o.spec, meta, o.ok = decodeK8s[k8sVirtualRouterSpec](k.c, it)
	case string(appmesh.KindVirtualGateway):
		o.spec, meta, o.ok = decodeK8s[k8sVirtualGatewaySpec](k.c, it)
	case string(appmesh.KindGatewayRoute):
		o.spec, meta, o.ok = decodeK8s[k8sGatewayRouteSpec](k.c, it)
	case k8sKindBackendGroup:
		o.spec, meta, o.ok = decodeK8s[k8sBackendGroupSpec](k.c, it)
	default:
		return nil
	}
	if meta.Name == "" {
		if missing(it.obj, "metadata", "name") {
			k.c.errs.add(it.src, it.field("metadata.name"), "is required")
		}
		return nil
	}
	o.name, o.labels = meta.Name, meta.Labels
	if it.kind != string(appmesh.KindMesh) { // Mesh is cluster-scoped: namespace is ignored
		o.namespace = meta.Namespace
		if o.namespace == "" {
			o.namespace = k.c.opts.namespace()
		}
	}
	for _, s := range k.selectors(o) {
		for _, e := range s.sel.validate() {
			k.c.errs.addErr(it.src, it.field(joinPath(s.path, e.path)), e.err)
			o.ok = false
		}
	}
	return o
}

// decodeK8s decodes a custom resource with spec type S.
func decodeK8s[S any](c *converter, it item) (*S, k8sObjectMeta, bool) {
	var obj k8sObject[S]
	ok := c.decodeInto(it, "", it.obj, &obj)
	return &obj.Spec, obj.Metadata, ok
}

type pathSelector struct {
	path string
	sel  *LabelSelector
}

// selectors lists the label selectors of an object with their paths.
func (k *k8sConverter) selectors(o *k8sObj) []pathSelector {
	switch s := o.spec.(type) {
	case *k8sMeshSpec:
		return []pathSelector{{"spec.namespaceSelector", s.NamespaceSelector}}
	case *k8sVirtualNodeSpec:
		return []pathSelector{{"spec.podSelector", s.PodSelector}}
	case *k8sVirtualGatewaySpec:
		return []pathSelector{
			{"spec.namespaceSelector", s.NamespaceSelector},
			{"spec.podSelector", s.PodSelector},
			{"spec.gatewayRouteSelector", s.GatewayRouteSelector},
		}
	}
	return nil
}

// defaultName is the AWS name of a namespaced object: spec.awsName, else
// <name>_<namespace> (<name>.<namespace> for a VirtualService).
func (k *k8sConverter) defaultName(o *k8sObj) string {
	var aws *string
	switch s := o.spec.(type) {
	case *k8sVirtualNodeSpec:
		aws = s.AWSName
	case *k8sVirtualServiceSpec:
		aws = s.AWSName
	case *k8sVirtualRouterSpec:
		aws = s.AWSName
	case *k8sVirtualGatewaySpec:
		aws = s.AWSName
	case *k8sGatewayRouteSpec:
		aws = s.AWSName
	}
	return orDefault(aws, defaultAWSName(o.kind, o.name, o.namespace))
}

func defaultAWSName(kind, name, namespace string) string {
	if kind == string(appmesh.KindVirtualService) {
		return name + "." + namespace
	}
	return name + "_" + namespace
}

func orDefault(s *string, def string) string {
	if s == nil || *s == "" {
		return def
	}
	return *s
}

// meshRefOf returns spec.meshRef of any namespaced kind.
func meshRefOf(spec any) *k8sMeshRef {
	switch s := spec.(type) {
	case *k8sVirtualNodeSpec:
		return s.MeshRef
	case *k8sVirtualServiceSpec:
		return s.MeshRef
	case *k8sVirtualRouterSpec:
		return s.MeshRef
	case *k8sVirtualGatewaySpec:
		return s.MeshRef
	case *k8sGatewayRouteSpec:
		return s.MeshRef
	case *k8sBackendGroupSpec:
		return s.MeshRef
	}
	return nil
}

// resolveMesh finds the mesh of a namespaced object as the controller's
// webhook does: spec.meshRef if set, else the one Mesh whose
// namespaceSelector selects the object's namespace, else the default mesh.
func (k *k8sConverter) resolveMesh(o *k8sObj) {
	if ref := meshRefOf(o.spec); ref != nil && ref.Name != "" {
		if m := k.byKey[objKey{string(appmesh.KindMesh), "", ref.Name}]; m != nil {
			o.mesh, o.meshOwner = m.awsName, m.meshOwner
		} else {
			o.mesh = ref.Name // a Mesh outside the set: its AWS name is its k8s name
		}
		return
	}
	labels := k.labelsOf(o.namespace)
	var matches []*k8sObj
	for _, m := range k.ordered {
		if m.kind == string(appmesh.KindMesh) && m.spec.(*k8sMeshSpec).NamespaceSelector.Matches(labels) {
			matches = append(matches, m)
		}
	}
	switch len(matches) {
	case 1:
		o.mesh, o.meshOwner = matches[0].awsName, matches[0].meshOwner
	case 0:
		if k.c.opts.DefaultMesh != "" {
			o.mesh = k.c.opts.DefaultMesh
			return
		}
		hint := ""
		if _, ok := k.nsLabels[o.namespace]; !ok {
			hint = fmt.Sprintf("; the input has no Namespace document for %q", o.namespace)
		}
		k.c.errs.add(o.it.src, "", "no Mesh selects namespace %q of %s %s (namespace labels %s%s); "+
			"set spec.meshRef, add a Mesh whose namespaceSelector matches, or give a default mesh",
			o.namespace, o.kind, o.display(), formatLabels(labels), hint)
	default:
		names := make([]string, len(matches))
		for i, m := range matches {
			names[i] = m.name
		}
		k.c.errs.add(o.it.src, "", "namespace %q of %s %s is selected by several Meshes (%s); set spec.meshRef",
			o.namespace, o.kind, o.display(), strings.Join(names, ", "))
	}
}

// formatLabels renders labels as k=v,k=v in key order.
func formatLabels(l map[string]string) string {
	if len(l) == 0 {
		return "<none>"
	}
	parts := make([]string, 0, len(l))
	for _, key := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, key+"="+l[key])
	}
	return strings.Join(parts, ",")
}

// convert converts one Kubernetes item. Namespaces and BackendGroups yield
// no resources.
func (k *k8sConverter) convert(it item) []Document {
	o := k.byID[it.id]
	if o == nil || !o.ok || (o.kind != string(appmesh.KindMesh) && o.mesh == "") {
		return nil
	}
	cv := &k8sConv{k: k, o: o, ok: true}
	var docs []Document
	switch s := o.spec.(type) {
	case *k8sMeshSpec:
		spec := &appmesh.MeshSpec{EgressFilter: s.EgressFilter, ServiceDiscovery: s.MeshServiceDiscovery}
		docs = []Document{cv.doc(appmesh.Ref{Kind: appmesh.KindMesh, Mesh: o.awsName, Name: o.awsName}, spec, nil)}
	case *k8sVirtualNodeSpec:
		docs = []Document{cv.doc(cv.ref(appmesh.KindVirtualNode, "", o.awsName), cv.virtualNode(s), s.PodSelector)}
	case *k8sVirtualServiceSpec:
		docs = []Document{cv.doc(cv.ref(appmesh.KindVirtualService, "", o.awsName), cv.virtualService(s), nil)}
	case *k8sVirtualRouterSpec:
		docs = cv.virtualRouter(s)
	case *k8sVirtualGatewaySpec:
		docs = []Document{cv.doc(cv.ref(appmesh.KindVirtualGateway, "", o.awsName), cv.virtualGateway(s), s.PodSelector)}
	case *k8sGatewayRouteSpec:
		gw, ok := cv.gateway(s)
		if !ok {
			return nil
		}
		docs = []Document{cv.doc(cv.ref(appmesh.KindGatewayRoute, gw, o.awsName), cv.gatewayRoute(s), nil)}
	}
	if !cv.ok {
		return nil
	}
	return docs
}

// k8sConv converts one object; ok turns false on the first error.
type k8sConv struct {
	k  *k8sConverter
	o  *k8sObj
	ok bool
}

func (cv *k8sConv) errorf(path, format string, args ...any) {
	cv.k.c.errs.add(cv.o.it.src, cv.o.it.field(path), format, args...)
	cv.ok = false
}

func (cv *k8sConv) ref(kind appmesh.Kind, parent, name string) appmesh.Ref {
	return appmesh.Ref{Kind: kind, Mesh: cv.o.mesh, Parent: parent, Name: name}
}

func (cv *k8sConv) doc(ref appmesh.Ref, spec any, pods *LabelSelector) Document {
	return Document{
		Source:    cv.o.it.src,
		Form:      FormKubernetes,
		Resource:  appmesh.Resource{Ref: ref, Spec: spec},
		MeshOwner: cv.o.meshOwner,
		K8s: &K8sInfo{
			Namespace:   cv.o.namespace,
			Name:        cv.o.name,
			Labels:      maps.Clone(cv.o.labels),
			PodSelector: pods,
		},
	}
}

// resolve turns a …Ref or …ARN pair into the AWS name of the target. A Ref's
// namespace defaults to the object's; a target in the set gives its awsName,
// one outside the set the default naming. An ARN must name a resource of the
// kind in the object's mesh.
func (cv *k8sConv) resolve(path string, target appmesh.Kind, refField string, ref *k8sRef, arnField string, arn *string) string {
	switch {
	case ref != nil && arn != nil:
		cv.errorf(path, "exactly one of %s and %s may be set, not both", refField, arnField)
		return ""
	case ref == nil && arn == nil:
		cv.errorf(path, "one of %s and %s is required", refField, arnField)
		return ""
	case arn != nil:
		r, err := appmesh.ParseResourcePath(*arn)
		switch {
		case err != nil:
			cv.errorf(joinPath(path, arnField), "%v", err)
		case r.Kind != target:
			cv.errorf(joinPath(path, arnField), "names a %s, not a %s", r.Kind, target)
		case r.Mesh != cv.o.mesh:
			cv.errorf(joinPath(path, arnField), "names a %s in mesh %q, but this %s is in mesh %q", target, r.Mesh, cv.o.kind, cv.o.mesh)
		default:
			return r.Name
		}
		return ""
	}
	if ref.Name == "" {
		cv.errorf(joinPath(path, refField+".name"), "is required")
		return ""
	}
	ns := cv.o.namespace
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = *ref.Namespace
	}
	return cv.lookup(joinPath(path, refField), string(target), ns, ref.Name)
}

// lookup gives the AWS name of the object kind ns/name: its awsName when it is
// in the set (and then it must be in the same mesh), else the default naming.
func (cv *k8sConv) lookup(path, kind, ns, name string) string {
	t := cv.k.byKey[objKey{kind, ns, name}]
	if t == nil {
		return defaultAWSName(kind, name, ns)
	}
	if t.mesh != "" && t.mesh != cv.o.mesh {
		cv.errorf(path, "%s %s is in mesh %q, but this %s is in mesh %q", kind, t.display(), t.mesh, cv.o.kind, cv.o.mesh)
	}
	return t.awsName
}

func (cv *k8sConv) virtualNode(s *k8sVirtualNodeSpec) *appmesh.VirtualNodeSpec {
	spec := &appmesh.VirtualNodeSpec{Logging: s.Logging}
	for _, l := range s.Listeners {
		spec.Listeners = append(spec.Listeners, appmesh.Listener{
			PortMapping:      l.PortMapping,
			HealthCheck:      l.HealthCheck,
			OutlierDetection: l.OutlierDetection,
			Timeout:          l.Timeout,
			TLS:              listenerTLS(l.TLS),
			ConnectionPool:   l.ConnectionPool,
		})
	}
	if sd := s.ServiceDiscovery; sd != nil {
		spec.ServiceDiscovery = &appmesh.ServiceDiscovery{}
		if m := sd.AWSCloudMap; m != nil {
			spec.ServiceDiscovery.AWSCloudMap = &appmesh.CloudMapServiceDiscovery{
				NamespaceName: m.NamespaceName, ServiceName: m.ServiceName, Attributes: m.Attributes,
			}
		}
		if d := sd.DNS; d != nil {
			spec.ServiceDiscovery.DNS = &appmesh.DNSServiceDiscovery{Hostname: d.Hostname, ResponseType: d.ResponseType}
		}
	}
	seen := map[string]string{} // virtual service name -> field of the backend naming it
	for i, b := range s.Backends {
		p := indexPath("spec.backends", i)
		if b.VirtualService == nil {
			cv.errorf(p+".virtualService", "is required")
			continue
		}
		vs := b.VirtualService
		name := cv.resolve(p+".virtualService", appmesh.KindVirtualService, "virtualServiceRef", vs.VirtualServiceRef, "virtualServiceARN", vs.VirtualServiceARN)
		if name == "" {
			continue
		}
		if prev, dup := seen[name]; dup {
			cv.errorf(p, "duplicate backend %s (also %s)", name, prev)
			continue
		}
		seen[name] = p
		spec.Backends = append(spec.Backends, appmesh.Backend{VirtualService: &appmesh.VirtualServiceBackend{
			VirtualServiceName: name,
			ClientPolicy:       clientPolicy(vs.ClientPolicy),
		}})
	}
	for i, g := range s.BackendGroups {
		for _, name := range cv.backendGroup(indexPath("spec.backendGroups", i), g) {
			if _, dup := seen[name]; dup {
				continue // named already, explicitly or by another group
			}
			seen[name] = indexPath("spec.backendGroups", i)
			spec.Backends = append(spec.Backends, appmesh.Backend{VirtualService: &appmesh.VirtualServiceBackend{VirtualServiceName: name}})
		}
	}
	if bd := s.BackendDefaults; bd != nil {
		spec.BackendDefaults = &appmesh.BackendDefaults{ClientPolicy: clientPolicy(bd.ClientPolicy)}
	}
	return spec
}

// backendGroup lists the AWS names of the virtual services a backend group
// reference stands for. "*" is every VirtualService of the namespace (the
// node's unless the reference names one) in the set and in the node's mesh.
func (cv *k8sConv) backendGroup(path string, g k8sRef) []string {
	ns := cv.o.namespace
	if g.Namespace != nil && *g.Namespace != "" {
		ns = *g.Namespace
	}
	var names []string
	if g.Name == "*" {
		for _, t := range cv.k.ordered {
			if t.kind == string(appmesh.KindVirtualService) && t.namespace == ns && t.mesh == cv.o.mesh {
				names = append(names, t.awsName)
			}
		}
		return names
	}
	bg := cv.k.byKey[objKey{k8sKindBackendGroup, ns, g.Name}]
	if bg == nil {
		cv.errorf(path, "BackendGroup %s/%s is not in the input", ns, g.Name)
		return nil
	}
	for j, ref := range bg.spec.(*k8sBackendGroupSpec).VirtualServices {
		rns := bg.namespace
		if ref.Namespace != nil && *ref.Namespace != "" {
			rns = *ref.Namespace
		}
		if ref.Name == "" {
			cv.errorf(path, "BackendGroup %s: spec.virtualservices[%d].name is required", bg.display(), j)
			continue
		}
		names = append(names, cv.lookup(path, string(appmesh.KindVirtualService), rns, ref.Name))
	}
	return names
}

func listenerTLS(t *k8sListenerTLS) *appmesh.ListenerTLS {
	if t == nil {
		return nil
	}
	return &appmesh.ListenerTLS{Mode: t.Mode, Certificate: listenerCertificate(t.Certificate), Validation: t.Validation}
}

func listenerCertificate(c *k8sListenerTLSCertificate) *appmesh.ListenerTLSCertificate {
	if c == nil {
		return nil
	}
	out := &appmesh.ListenerTLSCertificate{File: c.File, SDS: c.SDS}
	if c.ACM != nil {
		out.ACM = &appmesh.TLSACMCertificate{CertificateARN: c.ACM.CertificateARN}
	}
	return out
}

func clientPolicy(p *k8sClientPolicy) *appmesh.ClientPolicy {
	if p == nil {
		return nil
	}
	out := &appmesh.ClientPolicy{}
	if t := p.TLS; t != nil {
		out.TLS = &appmesh.ClientPolicyTLS{Enforce: t.Enforce, Ports: t.Ports, Certificate: t.Certificate}
		if v := t.Validation; v != nil {
			out.TLS.Validation = &appmesh.TLSValidationContext{Trust: trust(v.Trust), SubjectAlternativeNames: v.SubjectAlternativeNames}
		}
	}
	return out
}

func trust(t *k8sTrust) *appmesh.TLSValidationContextTrust {
	if t == nil {
		return nil
	}
	out := &appmesh.TLSValidationContextTrust{File: t.File, SDS: t.SDS}
	if t.ACM != nil {
		out.ACM = &appmesh.TLSValidationContextACMTrust{CertificateAuthorityARNs: t.ACM.CertificateAuthorityARNs}
	}
	return out
}

func (cv *k8sConv) virtualService(s *k8sVirtualServiceSpec) *appmesh.VirtualServiceSpec {
	spec := &appmesh.VirtualServiceSpec{}
	p := s.Provider
	if p == nil {
		return spec
	}
	spec.Provider = &appmesh.VirtualServiceProvider{}
	if n := p.VirtualNode; n != nil {
		name := cv.resolve("spec.provider.virtualNode", appmesh.KindVirtualNode, "virtualNodeRef", n.VirtualNodeRef, "virtualNodeARN", n.VirtualNodeARN)
		spec.Provider.VirtualNode = &appmesh.VirtualNodeServiceProvider{VirtualNodeName: name}
	}
	if r := p.VirtualRouter; r != nil {
		name := cv.resolve("spec.provider.virtualRouter", appmesh.KindVirtualRouter, "virtualRouterRef", r.VirtualRouterRef, "virtualRouterARN", r.VirtualRouterARN)
		spec.Provider.VirtualRouter = &appmesh.VirtualRouterServiceProvider{VirtualRouterName: name}
	}
	return spec
}

// virtualRouter gives the router (listeners only) and one Route per
// spec.routes entry, named routes[].name, under the router's AWS name.
func (cv *k8sConv) virtualRouter(s *k8sVirtualRouterSpec) []Document {
	router := cv.o.awsName
	docs := []Document{cv.doc(cv.ref(appmesh.KindVirtualRouter, "", router), &appmesh.VirtualRouterSpec{Listeners: s.Listeners}, nil)}
	seen := map[string]int{}
	for i, r := range s.Routes {
		p := indexPath("spec.routes", i)
		if r.Name == "" {
			cv.errorf(p+".name", "is required")
			continue
		}
		if j, dup := seen[r.Name]; dup {
			cv.errorf(p+".name", "duplicate route name %q (also spec.routes[%d])", r.Name, j)
			continue
		}
		seen[r.Name] = i
		spec := &appmesh.RouteSpec{
			Priority:   r.Priority,
			HTTPRoute:  cv.httpRoute(p+".httpRoute", r.HTTPRoute),
			HTTP2Route: cv.httpRoute(p+".http2Route", r.HTTP2Route),
		}
		if g := r.GRPCRoute; g != nil {
			spec.GRPCRoute = &appmesh.GRPCRoute{Match: g.Match, RetryPolicy: g.RetryPolicy, Timeout: g.Timeout}
			if g.Action != nil {
				spec.GRPCRoute.Action = &appmesh.GRPCRouteAction{WeightedTargets: cv.targets(p+".grpcRoute.action", g.Action)}
			}
		}
		if t := r.TCPRoute; t != nil {
			spec.TCPRoute = &appmesh.TCPRoute{Match: t.Match, Timeout: t.Timeout}
			if t.Action != nil {
				spec.TCPRoute.Action = &appmesh.TCPRouteAction{WeightedTargets: cv.targets(p+".tcpRoute.action", t.Action)}
			}
		}
		docs = append(docs, cv.doc(cv.ref(appmesh.KindRoute, router, r.Name), spec, nil))
	}
	return docs
}

func (cv *k8sConv) httpRoute(path string, r *k8sHTTPRoute) *appmesh.HTTPRoute {
	if r == nil {
		return nil
	}
	out := &appmesh.HTTPRoute{Match: r.Match, RetryPolicy: r.RetryPolicy, Timeout: r.Timeout}
	if r.Action != nil {
		out.Action = &appmesh.HTTPRouteAction{WeightedTargets: cv.targets(path+".action", r.Action)}
	}
	return out
}

func (cv *k8sConv) targets(path string, a *k8sRouteAction) []appmesh.WeightedTarget {
	var out []appmesh.WeightedTarget
	for i, t := range a.WeightedTargets {
		name := cv.resolve(indexPath(path+".weightedTargets", i), appmesh.KindVirtualNode, "virtualNodeRef", t.VirtualNodeRef, "virtualNodeARN", t.VirtualNodeARN)
		out = append(out, appmesh.WeightedTarget{VirtualNode: name, Weight: t.Weight, Port: t.Port})
	}
	return out
}

func (cv *k8sConv) virtualGateway(s *k8sVirtualGatewaySpec) *appmesh.VirtualGatewaySpec {
	spec := &appmesh.VirtualGatewaySpec{Logging: s.Logging}
	for i, l := range s.Listeners {
		p := indexPath("spec.listeners", i)
		gl := appmesh.VirtualGatewayListener{PortMapping: l.PortMapping, HealthCheck: l.HealthCheck, ConnectionPool: l.ConnectionPool}
		if t := l.TLS; t != nil {
			gl.TLS = &appmesh.VirtualGatewayListenerTLS{Mode: t.Mode, Certificate: listenerCertificate(t.Certificate)}
			if v := t.Validation; v != nil {
				gl.TLS.Validation = &appmesh.ListenerTLSValidationContext{SubjectAlternativeNames: v.SubjectAlternativeNames}
				if tr := v.Trust; tr != nil {
					if tr.ACM != nil {
						cv.errorf(p+".tls.validation.trust.acm", "the App Mesh API has no ACM trust for gateway listeners (use file or sds)")
					}
					gl.TLS.Validation.Trust = &appmesh.ListenerTLSValidationContextTrust{File: tr.File, SDS: tr.SDS}
				}
			}
		}
		spec.Listeners = append(spec.Listeners, gl)
	}
	if bd := s.BackendDefaults; bd != nil {
		spec.BackendDefaults = &appmesh.VirtualGatewayBackendDefaults{ClientPolicy: clientPolicy(bd.ClientPolicy)}
	}
	return spec
}

// gateway finds the AWS name of a GatewayRoute's gateway: spec.virtualGatewayRef
// if set, else the one VirtualGateway of the set whose namespaceSelector
// selects the route's namespace and whose gatewayRouteSelector (absent: all)
// selects the route's labels. The gateway must be in the route's mesh.
func (cv *k8sConv) gateway(s *k8sGatewayRouteSpec) (string, bool) {
	o := cv.o
	if ref := s.VirtualGatewayRef; ref != nil {
		if ref.Name == "" {
			cv.errorf("spec.virtualGatewayRef.name", "is required")
			return "", false
		}
		ns := o.namespace
		if ref.Namespace != nil && *ref.Namespace != "" {
			ns = *ref.Namespace
		}
		name := cv.lookup("spec.virtualGatewayRef", string(appmesh.KindVirtualGateway), ns, ref.Name)
		return name, cv.ok
	}
	nsLabels := cv.k.labelsOf(o.namespace)
	var matches []*k8sObj
	for _, g := range cv.k.ordered {
		if g.kind != string(appmesh.KindVirtualGateway) {
			continue
		}
		gs := g.spec.(*k8sVirtualGatewaySpec)
		if gs.NamespaceSelector.Matches(nsLabels) && (gs.GatewayRouteSelector == nil || gs.GatewayRouteSelector.Matches(o.labels)) {
			matches = append(matches, g)
		}
	}
	switch len(matches) {
	case 0:
		cv.errorf("", "no VirtualGateway selects GatewayRoute %s (namespace labels %s, route labels %s); set spec.virtualGatewayRef",
			o.display(), formatLabels(nsLabels), formatLabels(o.labels))
		return "", false
	case 1:
		g := matches[0]
		if g.mesh != "" && g.mesh != o.mesh {
			cv.errorf("", "VirtualGateway %s, which selects this GatewayRoute, is in mesh %q, but the route is in mesh %q", g.display(), g.mesh, o.mesh)
			return "", false
		}
		return g.awsName, true
	}
	names := make([]string, len(matches))
	for i, g := range matches {
		names[i] = g.display()
	}
	cv.errorf("", "several VirtualGateways select GatewayRoute %s (%s); set spec.virtualGatewayRef", o.display(), strings.Join(names, ", "))
	return "", false
}

func (cv *k8sConv) gatewayRoute(s *k8sGatewayRouteSpec) *appmesh.GatewayRouteSpec {
	spec := &appmesh.GatewayRouteSpec{Priority: s.Priority}
	httpRoute := func(path string, r *k8sHTTPGatewayRoute) *appmesh.HTTPGatewayRoute {
		if r == nil {
			return nil
		}
		out := &appmesh.HTTPGatewayRoute{Match: r.Match}
		if a := r.Action; a != nil {
			out.Action = &appmesh.HTTPGatewayRouteAction{Target: cv.gatewayTarget(path+".action.target", a.Target), Rewrite: a.Rewrite}
		}
		return out
	}
	spec.HTTPRoute = httpRoute("spec.httpRoute", s.HTTPRoute)
	spec.HTTP2Route = httpRoute("spec.http2Route", s.HTTP2Route)
	if r := s.GRPCRoute; r != nil {
		spec.GRPCRoute = &appmesh.GRPCGatewayRoute{Match: r.Match}
		if a := r.Action; a != nil {
			spec.GRPCRoute.Action = &appmesh.GRPCGatewayRouteAction{Target: cv.gatewayTarget("spec.grpcRoute.action.target", a.Target), Rewrite: a.Rewrite}
		}
	}
	return spec
}

func (cv *k8sConv) gatewayTarget(path string, t *k8sGatewayRouteTarget) *appmesh.GatewayRouteTarget {
	if t == nil {
		return nil
	}
	out := &appmesh.GatewayRouteTarget{Port: t.Port}
	if vs := t.VirtualService; vs != nil {
		name := cv.resolve(path+".virtualService", appmesh.KindVirtualService, "virtualServiceRef", vs.VirtualServiceRef, "virtualServiceARN", vs.VirtualServiceARN)
		out.VirtualService = &appmesh.GatewayRouteVirtualService{VirtualServiceName: name}
	}
	return out
}
