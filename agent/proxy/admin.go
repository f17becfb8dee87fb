// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// adminHandler serves /metrics, /ready and /config_dump.
func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	if p.gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(p.gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if p.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("LIVE\n"))
	})
	mux.HandleFunc("GET /config_dump", func(w http.ResponseWriter, _ *http.Request) {
		b, err := p.ConfigDump()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	return mux
}

// ConfigDump renders the current configuration: every node id's resources
// (protojson) and the workloads.
func (p *Proxy) ConfigDump() ([]byte, error) {
	st := p.state.Load()
	type node struct {
		Listeners []json.RawMessage `json:"listeners"`
		Routes    []json.RawMessage `json:"routes"`
		Clusters  []json.RawMessage `json:"clusters"`
		Endpoints []json.RawMessage `json:"endpoints"`
		NotServed []string          `json:"notServedListeners,omitempty"`
	}
	doc := struct {
		Nodes     map[string]node   `json:"nodes"`
		Workloads map[string]string `json:"workloads"`
	}{Nodes: map[string]node{}, Workloads: map[string]string{}}
	var err error
	list := func(n int, at func(int) proto.Message) []json.RawMessage {
		out := make([]json.RawMessage, 0, n)
		for i := range n {
			b, merr := protojson.Marshal(at(i))
			if merr != nil {
				err = merr
				continue
			}
			out = append(out, b)
		}
		return out
	}
	for _, id := range slices.Sorted(maps.Keys(st.nodes)) {
		r := st.nodes[id].res
		doc.Nodes[id] = node{
			Listeners: list(len(r.Listeners), func(i int) proto.Message { return r.Listeners[i] }),
			Routes:    list(len(r.Routes), func(i int) proto.Message { return r.Routes[i] }),
			Clusters:  list(len(r.Clusters), func(i int) proto.Message { return r.Clusters[i] }),
			Endpoints: list(len(r.Endpoints), func(i int) proto.Message { return r.Endpoints[i] }),
			NotServed: st.nodes[id].ignored,
		}
	}
	for cg, id := range st.workloads {
		doc.Workloads[strconv.FormatUint(cg, 10)] = id
	}
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(doc, "", "  ")
}
