// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/weft-mesh/weft/agent/datapath"
)

// summary is the median of the runs of one variant and workload, with the
// spread (min and max of the per-run values).
type summary struct {
	Variant, Workload string
	Runs              int
	Rate, RateMin     float64
	RateMax           float64
	P50, P99          float64
	P50Min, P50Max    float64
	P99Min, P99Max    float64
}

func summarize(rs []result) summary {
	pick := func(f func(result) float64) (med, lo, hi float64) {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2], v[0], v[len(v)-1]
	}
	s := summary{Variant: rs[0].Variant, Workload: rs[0].Workload, Runs: len(rs)}
	s.Rate, s.RateMin, s.RateMax = pick(func(r result) float64 { return r.Rate })
	s.P50, s.P50Min, s.P50Max = pick(func(r result) float64 { return r.P50 })
	s.P99, s.P99Min, s.P99Max = pick(func(r result) float64 { return r.P99 })
	return s
}

func report(dir string, results map[string][]result, workloads []string, c datapath.Counters) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# weft bench: direct vs L4 eBPF path\n\n")
	fmt.Fprintf(&b, "%s, %d CPUs (no pinning), kernel %s, Go %s. Medians of the runs, spread in brackets; ratio = l4 / direct.\n\n",
		time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), kernel(), runtime.Version())
	fmt.Fprintf(&b, "| workload | variant | rate (/s) | p50 (µs) | p99 (µs) | rate ratio | p50 ratio | p99 ratio |\n|---|---|---|---|---|---|---|---|\n")
	var all []summary
	for _, w := range workloads {
		d := summarize(results["direct/"+w])
		l := summarize(results["l4/"+w])
		all = append(all, d, l)
		fmt.Fprintf(&b, "| %s | direct | %.0f [%.0f–%.0f] | %.1f [%.1f–%.1f] | %.1f [%.1f–%.1f] | 1 | 1 | 1 |\n",
			w, d.Rate, d.RateMin, d.RateMax, d.P50, d.P50Min, d.P50Max, d.P99, d.P99Min, d.P99Max)
		fmt.Fprintf(&b, "| %s | l4 | %.0f [%.0f–%.0f] | %.1f [%.1f–%.1f] | %.1f [%.1f–%.1f] | %.3f | %.3f | %.3f |\n",
			w, l.Rate, l.RateMin, l.RateMax, l.P50, l.P50Min, l.P50Max, l.P99, l.P99Min, l.P99Max, l.Rate/d.Rate, l.P50/d.P50, l.P99/d.P99)
	}
	fmt.Fprintf(&b, "\nDatapath counters after the run: balanced_l4=%d no_backend=%d.\n", c.BalancedL4, c.NoBackend)
	fmt.Print("\n" + b.String())
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(b.String()), 0o600); err != nil {
		return err
	}
	j, err := json.MarshalIndent(map[string]any{"summaries": all, "runs": results}, "", "  ")
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s and %s\n", filepath.Join(dir, "results.md"), filepath.Join(dir, "results.json"))
	return os.WriteFile(filepath.Join(dir, "results.json"), j, 0o600)
}
