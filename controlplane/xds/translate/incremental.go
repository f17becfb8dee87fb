// SPDX-License-Identifier: Apache-2.0

package translate

import (
	"maps"
	"slices"
	"sync"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// endpointAnswer is what an EndpointSource answered for one virtual node.
type endpointAnswer struct {
	eps     []Endpoint
	managed bool
}

func (a endpointAnswer) equal(b endpointAnswer) bool {
	return a.managed == b.managed && slices.EqualFunc(a.eps, b.eps, Endpoint.Equal)
}

// deps are the endpoint answers a translation read. A translation is a pure
// function of the compiled resources and these answers, so it is current
// for another endpoint source exactly when the source gives the same
// answers.
type deps map[NodeKey]endpointAnswer

// changed returns the keys whose answer in src differs.
func (d deps) changed(src EndpointSource) []NodeKey {
	var out []NodeKey
	for k, a := range d {
		if !a.equal(ask(src, k)) {
			out = append(out, k)
		}
	}
	return out
}

// current reports whether src gives every recorded answer.
func (d deps) current(src EndpointSource) bool {
	for k, a := range d {
		if !a.equal(ask(src, k)) {
			return false
		}
	}
	return true
}

func ask(src EndpointSource, k NodeKey) endpointAnswer {
	if src == nil {
		return endpointAnswer{}
	}
	eps, managed := src.Endpoints(k)
	return endpointAnswer{eps: eps, managed: managed}
}

// Memoize returns an EndpointSource that asks src once per virtual node and
// then answers from memory; callers must not modify the slices it returns
// (the translator never does). It is safe for concurrent use. The
// controller wraps each view of the registry in one, so that the many
// proxies and node states translated from a view, and the checks of which
// of them a change affects, ask the registry once per node.
func Memoize(src EndpointSource) EndpointSource {
	if src == nil {
		return nil
	}
	return &memo{src: src, answers: map[NodeKey]endpointAnswer{}}
}

type memo struct {
	src     EndpointSource
	mu      sync.Mutex
	answers map[NodeKey]endpointAnswer
}

func (m *memo) Endpoints(k NodeKey) ([]Endpoint, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.answers[k]
	if !ok {
		a = ask(m.src, k)
		m.answers[k] = a
	}
	return a.eps, a.managed
}

// edsAssignment is how a proxy's load assignment was made from the
// endpoints of a virtual node, so that it can be made again alone.
type edsAssignment struct {
	index      int // in Proxy.Endpoints
	node       NodeKey
	port       uint32
	hcPort     uint32
	pref       appmesh.IPPreference
	vn         *appmesh.VirtualNodeSpec // its Cloud Map attributes select the endpoints
	inboundTLS bool                     // the listener has App Mesh TLS (inboundTLS)
}

// UpdateEndpoints returns p (translated by a world of the same resources as
// w) with the endpoints of w's source: p itself when it is current, a copy
// whose changed load assignments alone are made again when only endpoints
// of EDS clusters changed, and ok false when the change is more than that
// (a virtual node became managed or unmanaged, which changes its clusters'
// type): then the caller translates the proxy again with Proxy. The copy is
// what Proxy would return, and shares every other resource with p.
func (w *World) UpdateEndpoints(p *Proxy) (q *Proxy, ok bool) {
	changed := p.deps.changed(w.in.Endpoints)
	if len(changed) == 0 {
		return p, true
	}
	if p.edsDropped {
		return nil, false
	}
	now := maps.Clone(p.deps)
	for _, k := range changed {
		a := ask(w.in.Endpoints, k)
		if a.managed != p.deps[k].managed {
			return nil, false
		}
		now[k] = a
	}
	q = &Proxy{
		NodeID: p.NodeID, Listeners: p.Listeners, Routes: p.Routes, Clusters: p.Clusters,
		Endpoints: slices.Clone(p.Endpoints), deps: now, eds: p.eds,
	}
	remake := make(map[NodeKey]bool, len(changed))
	for _, k := range changed {
		remake[k] = true
	}
	for _, e := range p.eds {
		if !remake[e.node] {
			continue
		}
		name := p.Endpoints[e.index].GetClusterName()
		eps := cloudMapInstances(e.vn, now[e.node].eps)
		cla := endpointsCLA(name, eps, e.port, e.hcPort, e.pref)
		setTunnelMetadata(cla, eps, e.inboundTLS)
		if err := cla.ValidateAll(); err != nil {
			return nil, false // Proxy reports it
		}
		q.Endpoints[e.index] = cla
	}
	return q, true
}
