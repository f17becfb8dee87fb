// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// report is everything a bench run measured; results.json is this.
type report struct {
	Started          time.Time      `json:"started"`
	Finished         time.Time      `json:"finished"`
	Machine          string         `json:"machine"`
	Pinning          string         `json:"pinning"`
	Runs             int            `json:"runsPerCell"`
	Duration         string         `json:"runDuration"`
	DirectSaturation float64        `json:"directSaturationPerSecond"`
	Summaries        []summary      `json:"summaries"`
	Results          []runResult    `json:"runs"`
	Footprint        []footprintRow `json:"footprint"`
	ControlPlane     []cpResult     `json:"controlPlane"`
	Goals            []goal         `json:"goals"`

	Variants  []variant  `json:"-"`
	Workloads []workload `json:"-"`
}

const pinning = "weft-proxy, nginx (1 worker), HAProxy (nbthread 1, HTTP and TCP mode) and httputil.ReverseProxy on CPU 1; " +
	"the load generator, the backend, weft-agent and the bench on CPU 0 (taskset at exec; the bench pins its own threads " +
	"with sched_setaffinity). The control plane: the controller on CPU 1, the node clients on CPU 0."

// stat is the median of a figure over the runs, with the spread.
type stat struct {
	Med float64 `json:"median"`
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// summary is one cell: a variant under a workload.
type summary struct {
	Variant        string `json:"variant"`
	Workload       string `json:"workload"`
	Runs           int    `json:"runs"`
	Errors         int64  `json:"errors"`
	Rate           stat   `json:"ratePerSecond"`
	P50            stat   `json:"p50Micros"`
	P90            stat   `json:"p90Micros"`
	P99            stat   `json:"p99Micros"`
	P999           stat   `json:"p999Micros"`
	Max            stat   `json:"maxMicros"`
	ProxyCPU       stat   `json:"proxyCpuMicrosPerRequest"`
	ProxyCgroupCPU stat   `json:"proxyCgroupCpuMicrosPerRequest"`
	KernelCPU      stat   `json:"kernelCpuMicrosPerRequest"`
	BenchSys       stat   `json:"benchSystemCpuMicrosPerRequest"`
	OtherCPU       stat   `json:"otherTenantsCpus"`
	ProxyRSS       stat   `json:"proxyRssMiB"`
	hasProxy       bool
}

// goal is one of the goals, judged.
type goal struct {
	Goal     string `json:"goal"`
	Met      bool   `json:"met"`
	Measured string `json:"measured"`
}

func statOf(rs []runResult, f func(runResult) float64) stat {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return stat{Med: med, Min: v[0], Max: v[len(v)-1]}
}

func summarize(v variant, w string, rs []runResult) summary {
	s := summary{Variant: v.name, Workload: w, Runs: len(rs), hasProxy: v.proxy != ""}
	for _, r := range rs {
		s.Errors += r.Errors
	}
	s.Rate = statOf(rs, func(r runResult) float64 { return r.Rate })
	s.P50 = statOf(rs, func(r runResult) float64 { return r.P50 })
	s.P90 = statOf(rs, func(r runResult) float64 { return r.P90 })
	s.P99 = statOf(rs, func(r runResult) float64 { return r.P99 })
	s.P999 = statOf(rs, func(r runResult) float64 { return r.P999 })
	s.Max = statOf(rs, func(r runResult) float64 { return r.Max })
	s.ProxyCPU = statOf(rs, func(r runResult) float64 { return r.ProxyCPU })
	s.ProxyCgroupCPU = statOf(rs, func(r runResult) float64 { return r.ProxyCgroupCPU })
	s.KernelCPU = statOf(rs, func(r runResult) float64 { return r.KernelCPU })
	s.BenchSys = statOf(rs, func(r runResult) float64 { return r.BenchSys })
	s.OtherCPU = statOf(rs, func(r runResult) float64 { return r.OtherCPU })
	s.ProxyRSS = statOf(rs, func(r runResult) float64 { return r.ProxyRSS })
	return s
}

// column is one figure of the tables.
type column struct {
	head    string
	get     func(summary) stat
	proxy   bool // only for variants with a proxy
	noRatio bool // a condition of the run, not a result
}

var columns = []column{
	{head: "req/s", get: func(s summary) stat { return s.Rate }},
	{head: "p50 µs", get: func(s summary) stat { return s.P50 }},
	{head: "p90 µs", get: func(s summary) stat { return s.P90 }},
	{head: "p99 µs", get: func(s summary) stat { return s.P99 }},
	{head: "p99.9 µs", get: func(s summary) stat { return s.P999 }},
	{head: "max µs", get: func(s summary) stat { return s.Max }},
	{head: "proxy CPU µs/req", get: func(s summary) stat { return s.ProxyCPU }, proxy: true},
	{head: "kernel CPU µs/req", get: func(s summary) stat { return s.KernelCPU }},
	{head: "bench sys µs/req", get: func(s summary) stat { return s.BenchSys }},
	{head: "proxy RSS MiB", get: func(s summary) stat { return s.ProxyRSS }, proxy: true},
	{head: "other tenants CPUs", get: func(s summary) stat { return s.OtherCPU }, noRatio: true},
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func ratio(a, b float64) string {
	if b == 0 || a == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func (rep *report) summarizeAll() map[string]summary {
	byCell := map[string][]runResult{}
	for _, r := range rep.Results {
		byCell[r.Workload+"/"+r.Variant] = append(byCell[r.Workload+"/"+r.Variant], r)
	}
	out := map[string]summary{}
	rep.Summaries = nil
	for _, w := range rep.Workloads {
		for _, v := range rep.Variants {
			rs := byCell[w.name+"/"+v.name]
			if len(rs) == 0 {
				continue
			}
			s := summarize(v, w.name, rs)
			out[w.name+"/"+v.name] = s
			rep.Summaries = append(rep.Summaries, s)
		}
	}
	return out
}

func (rep *report) markdown() string {
	sums := rep.summarizeAll()
	var b strings.Builder
	fmt.Fprintf(&b, "# weft bench\n\n")
	fmt.Fprintf(&b, "%s to %s on %s.\n\n", rep.Started.Format(time.RFC3339), rep.Finished.Format(time.RFC3339), rep.Machine)
	fmt.Fprintf(&b, "CPU pinning: %s\n\n", rep.Pinning)
	if len(rep.Results) > 0 {
		fmt.Fprintf(&b, "Data plane: %d runs of %s per cell, interleaved (every workload over every variant, then again); "+
			"medians, with the spread (min–max of the runs) in brackets. Open-loop latencies count from the intended send time "+
			"(corrected for coordinated omission). Direct saturation: %.0f req/s, which sets the 25%% and 50%% rates. "+
			"Proxy CPU is utime+stime from /proc/PID/stat (10 ms ticks) over the run; kernel CPU is the whole machine's "+
			"system+irq+softirq from /proc/stat, which includes the eBPF programs (and anything else the machine runs); "+
			"bench sys is the system time of the bench's own processes (cpu.stat system_usec of its cgroup tree: client, "+
			"server, proxies, agent), the same kernel work without other tenants' noise. Other tenants CPUs is how many CPUs "+
			"the rest of the machine kept busy during the run (non-idle time from /proc/stat minus the bench's cgroup usage): "+
			"runs with a high value competed for the 2 CPUs with something else.\n\n",
			rep.Runs, rep.Duration, rep.DirectSaturation)
	}
	for _, w := range rep.Workloads {
		direct, ok := sums[w.name+"/direct"]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "### %s (%s)\n\n", w.name, w.describe(rep.DirectSaturation))
		fmt.Fprintf(&b, "| variant |")
		for _, c := range columns {
			fmt.Fprintf(&b, " %s |", c.head)
		}
		fmt.Fprintf(&b, "\n|---|%s\n", strings.Repeat("---|", len(columns)))
		for _, v := range rep.Variants {
			s, ok := sums[w.name+"/"+v.name]
			if !ok {
				continue
			}
			name := v.name
			if s.Errors > 0 {
				name += fmt.Sprintf(" (%d errors)", s.Errors)
			}
			fmt.Fprintf(&b, "| %s |", name)
			for _, c := range columns {
				if c.proxy && !s.hasProxy {
					fmt.Fprintf(&b, " – |")
					continue
				}
				st := c.get(s)
				fmt.Fprintf(&b, " %s [%s–%s] |", num(st.Med), num(st.Min), num(st.Max))
			}
			fmt.Fprintln(&b)
		}
		ratioRow := func(label string, a, base summary, proxyToo bool) {
			fmt.Fprintf(&b, "| *%s* |", label)
			for _, c := range columns {
				if c.noRatio || c.proxy && !proxyToo {
					fmt.Fprintf(&b, " – |")
					continue
				}
				fmt.Fprintf(&b, " %s |", ratio(c.get(a).Med, c.get(base).Med))
			}
			fmt.Fprintln(&b)
		}
		for _, v := range rep.Variants {
			if s, ok := sums[w.name+"/"+v.name]; ok && v.name != "direct" {
				ratioRow(v.name+" ÷ direct", s, direct, false)
			}
		}
		if l7, ok := sums[w.name+"/l7"]; ok {
			for _, other := range []string{"nginx", "haproxy", "haproxy-tcp", "revproxy"} {
				if o, ok := sums[w.name+"/"+other]; ok {
					ratioRow("l7 ÷ "+other, l7, o, true)
				}
			}
		}
		fmt.Fprintln(&b)
	}
	if len(rep.Footprint) > 0 {
		fmt.Fprintf(&b, "### Footprint\n\nResident memory (VmRSS). The agent applies node states with the bench's 2 services "+
			"plus N L7 services (it keeps running, so it also holds what it grew for earlier rows); weft-proxy is a fresh process "+
			"with the bench's configuration plus N services (one virtual host, route, cluster and endpoint each), idle, "+
			"2 s after it is ready.\n\n| extra services | agent RSS MiB | agent apply s | weft-proxy RSS MiB |\n|---|---|---|---|\n")
		for _, f := range rep.Footprint {
			fmt.Fprintf(&b, "| %d | %.1f | %.2f | %.1f |\n", f.Services, f.AgentRSS, f.AgentApply, f.ProxyRSS)
		}
		fmt.Fprintln(&b)
	}
	if len(rep.ControlPlane) > 0 {
		fmt.Fprintf(&b, "### Control plane\n\nAn in-process controller (controlplane.New, its own process on CPU 1) and M simulated "+
			"nodes (a real xdsclient.Registrar and node state client each, on CPU 0). N services with %d registered endpoints each; "+
			"every node state carries all N as L4 ports. Converge: from the start of the one-transaction Apply of the mesh to "+
			"the last client applying the complete state. Endpoint change: one endpoint's new address registered by its node, "+
			"until each client applied it (%d changes × M clients).\n\n", cpEndpoints, cpChanges)
		fmt.Fprintf(&b, "| services | clients | apply s | converge s | change p50 ms | change p99 ms | change max ms | controller CPU s | controller RSS MiB (peak) | node state bytes |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, c := range rep.ControlPlane {
			fmt.Fprintf(&b, "| %d | %d | %.2f | %.2f | %.1f | %.1f | %.1f | %.2f | %.0f (%.0f) | %d |\n",
				c.Services, c.Clients, c.Apply, c.Converge, c.ChangeP50, c.ChangeP99, c.ChangeMax, c.ControllerCPU,
				c.ControllerRSS, c.ControllerPeak, c.StateBytes)
		}
		fmt.Fprintln(&b)
	}
	rep.Goals = rep.judge(sums)
	if len(rep.Goals) > 0 {
		fmt.Fprintf(&b, "### Goals\n\n| goal | met | measured |\n|---|---|---|\n")
		for _, g := range rep.Goals {
			met := "not met"
			if g.Met {
				met = "met"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", g.Goal, met, g.Measured)
		}
		fmt.Fprintln(&b)
	}
	return b.String()
}

func (w workload) describe(sat float64) string {
	switch w.mode {
	case "open":
		rate := w.rate
		if w.satShare > 0 {
			rate = w.satShare * sat
		}
		streams := "connections"
		if w.proto != "http1" {
			streams = "concurrent streams on one connection"
		}
		return fmt.Sprintf("%s, open loop at %.0f req/s over %d %s, 1 KB answers", w.proto, rate, w.conns, streams)
	case "closed":
		return fmt.Sprintf("%s, closed loop over %d connections: saturation", w.proto, w.conns)
	}
	return fmt.Sprintf("%s, a new connection per request, %d concurrent dialers, closed loop", w.proto, w.conns)
}

// judge checks the goals against the summaries.
func (rep *report) judge(sums map[string]summary) []goal {
	var gs []goal
	get := func(w, v string) (summary, bool) { s, ok := sums[w+"/"+v]; return s, ok }
	pct := func(a, b float64) float64 { return (a/b - 1) * 100 }
	// L4 latency within 5% of direct, on the open-loop workloads.
	var worst float64
	var detail []string
	for _, w := range rep.Workloads {
		if w.mode != "open" {
			continue
		}
		d, ok1 := get(w.name, "direct")
		l, ok2 := get(w.name, "l4")
		if !ok1 || !ok2 {
			continue
		}
		p50, p99 := pct(l.P50.Med, d.P50.Med), pct(l.P99.Med, d.P99.Med)
		worst = max(worst, p50, p99)
		detail = append(detail, fmt.Sprintf("%s p50 %+.1f%%, p99 %+.1f%%", w.name, p50, p99))
	}
	if len(detail) > 0 {
		gs = append(gs, goal{"L4 p50 and p99 within 5% of direct (open-loop workloads)", worst <= 5, strings.Join(detail, "; ")})
	}
	if d, ok := get("newconn", "direct"); ok {
		if l, ok := get("newconn", "l4"); ok {
			r := pct(l.Rate.Med, d.Rate.Med)
			gs = append(gs, goal{
				"L4 connection rate within 10% of direct", r >= -10,
				fmt.Sprintf("%.0f vs %.0f conn/s (%+.1f%%)", l.Rate.Med, d.Rate.Med, r),
			})
		}
	}
	perCore := func(v string) float64 {
		s, ok := get("http1-sat", v)
		if !ok || s.ProxyCPU.Med == 0 {
			return 0
		}
		return 1e6 / s.ProxyCPU.Med
	}
	if l7 := perCore("l7"); l7 > 0 {
		for _, o := range []string{"nginx", "haproxy"} {
			if x := perCore(o); x > 0 {
				gs = append(gs, goal{
					"weft-proxy ≥ half of " + o + "'s req/s per core (http1-sat, 1e6 / proxy CPU µs per request)",
					l7 >= x/2, fmt.Sprintf("%.0f vs %.0f req/s per core: %.2f×", l7, x, l7/x),
				})
			}
		}
		if x := perCore("revproxy"); x > 0 {
			gs = append(gs, goal{
				"weft-proxy ≥ 2× httputil.ReverseProxy's req/s per core", l7 >= 2*x,
				fmt.Sprintf("%.0f vs %.0f req/s per core: %.2f×", l7, x, l7/x),
			})
		}
	}
	if d, ok := get("http1-1k", "direct"); ok {
		if l, ok := get("http1-1k", "l7"); ok {
			added := l.P99.Med - d.P99.Med
			gs = append(gs, goal{
				"L7 added p99 < 0.3 ms at 1,000 req/s", added < 300,
				fmt.Sprintf("%.0f µs (p99 %.0f vs %.0f µs)", added, l.P99.Med, d.P99.Med),
			})
		}
	}
	for _, c := range rep.ControlPlane {
		gs = append(gs, goal{
			fmt.Sprintf("one endpoint change at every node within 100 ms p50 (%d services, %d nodes)", c.Services, c.Clients),
			c.ChangeP50 <= 100, fmt.Sprintf("p50 %.1f ms, p99 %.1f ms", c.ChangeP50, c.ChangeP99),
		})
		if c.Services >= 10000 {
			gs = append(gs, goal{
				fmt.Sprintf("%d services converged within 10 s (%d nodes)", c.Services, c.Clients),
				c.Converge <= 10, fmt.Sprintf("%.2f s (of which the store apply %.2f s)", c.Converge, c.Apply),
			})
		}
	}
	return gs
}

func (rep *report) write(dir string) error {
	rep.Pinning = pinning
	md := rep.markdown()
	fmt.Print("\n" + md)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o600); err != nil {
		return err
	}
	j, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), j, 0o600); err != nil {
		return err
	}
	fmt.Printf("wrote %s and %s\n", filepath.Join(dir, "results.md"), filepath.Join(dir, "results.json"))
	return nil
}
