// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"encoding/json"
	"net/http"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/weft-mesh/weft/agent/datapath"
)

// debugState is the body of /debug/state.
type debugState struct {
	Version    string                  `json:"version"`
	Node       string                  `json:"node,omitempty"`
	Workloads  []Workload              `json:"workloads"`
	Skipped    []skippedWorkload       `json:"skippedWorkloads,omitempty"`
	Datapath   datapath.State          `json:"datapath"`
	DNSRecords map[string][]netip.Addr `json:"dnsRecords"`
	// NodeState is the state file's content the datapath state came from.
	NodeState json.RawMessage `json:"nodeState"`
}

func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{
		// A failing datapath counter read must not hide the other metrics.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slogPrinter{a},
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "not ready: no state reconciled yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /debug/datapath", func(w http.ResponseWriter, _ *http.Request) {
		s, err := a.dp.Dump()
		if err != nil {
			http.Error(w, "dump datapath: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(s))
	})
	mux.HandleFunc("GET /debug/state", func(w http.ResponseWriter, _ *http.Request) {
		d := a.applied.Load()
		if d == nil {
			http.Error(w, "no state reconciled yet", http.StatusServiceUnavailable)
			return
		}
		ns, err := protojson.Marshal(d.source)
		if err != nil {
			http.Error(w, "encode node state: "+err.Error(), http.StatusInternalServerError)
			return
		}
		body := debugState{
			Version: d.Version, Node: d.Node, Workloads: d.Workloads, Skipped: d.Skipped,
			Datapath: d.State, DNSRecords: d.Records, NodeState: ns,
		}
		if body.Workloads == nil {
			body.Workloads = []Workload{}
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(body)
	})
	return mux
}

// slogPrinter lets promhttp log through the agent's logger.
type slogPrinter struct{ a *Agent }

func (p slogPrinter) Println(v ...any) {
	p.a.log.Warn("serve metrics", keyError, fmtArgs(v))
}

func fmtArgs(v []any) any {
	if len(v) == 1 {
		return v[0]
	}
	return v
}
