// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/test/netsim"
)

const childEnv = "WEFT_BENCH_CHILD"

// options are the bench's flags.
type options struct {
	runs       int
	duration   time.Duration
	out        string
	binDir     string
	variants   []string
	workloads  []string
	cpServices []int
	cpClients  int
	skipData   bool
	skipCP     bool
}

// variant is one way from the client to the backend.
type variant struct {
	name string
	// meshed runs the client in the meshed cgroup (the datapath sees it).
	meshed bool
	// proxy is the key of the proxy process in bed.proxies ("": none).
	proxy string
	// base is the target of http1; h2c and grpc use base+1 and base+2
	// (proxies) or their own ports (direct, l4, l7).
	addr  func(b *bed, proto string) netip.AddrPort
	proto []string // the protocols it carries
}

var allProtos = []string{"http1", "h2c", "grpc"}

func protoPort(proto string) uint16 {
	switch proto {
	case "h2c":
		return portH2C
	case "grpc":
		return portGRPC
	}
	return portHTTP1
}

func protoOffset(proto string) uint16 {
	switch proto {
	case "h2c":
		return 1
	case "grpc":
		return 2
	}
	return 0
}

func proxyAt(port uint16) func(b *bed, proto string) netip.AddrPort {
	return func(b *bed, proto string) netip.AddrPort {
		return netip.AddrPortFrom(b.node.Addr, port+protoOffset(proto))
	}
}

var variants = []variant{
	{name: "direct", addr: func(b *bed, p string) netip.AddrPort { return b.serverAddr(protoPort(p)) }, proto: allProtos},
	{name: "l4", meshed: true, addr: func(_ *bed, p string) netip.AddrPort { return netip.AddrPortFrom(vipL4, protoPort(p)) }, proto: allProtos},
	{name: "l7", meshed: true, proxy: "l7", addr: func(_ *bed, p string) netip.AddrPort { return netip.AddrPortFrom(vipL7, protoPort(p)) }, proto: allProtos},
	{name: "nginx", proxy: "nginx", addr: proxyAt(portNginx), proto: allProtos},
	{name: "haproxy", proxy: "haproxy", addr: proxyAt(portHAProxy), proto: allProtos},
	{name: "haproxy-tcp", proxy: "haproxy-tcp", addr: proxyAt(portHAProxyTCP), proto: allProtos},
	{name: "revproxy", proxy: "revproxy", addr: proxyAt(portRevProxy), proto: []string{"http1"}},
}

// workload is one load shape.
type workload struct {
	name, proto, mode string
	conns             int
	// rate is fixed (open loop), or satShare of direct's saturation rate.
	rate, satShare float64
}

var workloads = []workload{
	{name: "http1-1k", proto: "http1", mode: "open", conns: 16, rate: 1000},
	{name: "http1-25%", proto: "http1", mode: "open", conns: 16, satShare: 0.25},
	{name: "http1-50%", proto: "http1", mode: "open", conns: 16, satShare: 0.50},
	{name: "http1-sat", proto: "http1", mode: "closed", conns: 16},
	{name: "newconn", proto: "http1", mode: "newconn", conns: 16},
	{name: "h2c-1k", proto: "h2c", mode: "open", conns: 16, rate: 1000},
	{name: "grpc-1k", proto: "grpc", mode: "open", conns: 16, rate: 1000},
}

// runResult is one load run with the CPU and memory readings around it.
type runResult struct {
	Variant    string  `json:"variant"`
	Workload   string  `json:"workload"`
	Run        int     `json:"run"`
	TargetRate float64 `json:"targetRate,omitempty"`
	loadResult
	// ProxyCPU is the proxy's utime+stime per request (/proc/PID/stat).
	ProxyCPU float64 `json:"proxyCpuMicrosPerRequest"`
	// ProxyCgroupCPU is the proxy cgroup's cpu.stat usage per request.
	ProxyCgroupCPU float64 `json:"proxyCgroupCpuMicrosPerRequest"`
	// KernelCPU is the whole machine's system+irq+softirq per request.
	KernelCPU float64 `json:"kernelCpuMicrosPerRequest"`
	// BenchSys is the system time of the bench's processes per request
	// (cpu.stat system_usec of the bench's cgroup tree).
	BenchSys float64 `json:"benchSystemCpuMicrosPerRequest"`
	// OtherCPU is how many CPUs other tenants of the machine kept busy
	// during the run, on average (machine busy time minus the bench's).
	OtherCPU float64 `json:"otherTenantsCpus"`
	// ProxyRSS is the proxy's resident set after the run, MiB.
	ProxyRSS float64 `json:"proxyRssMiB"`
}

func parseFlags(args []string) (options, error) {
	o := options{}
	fs := flag.NewFlagSet("weft-bench", flag.ContinueOnError)
	fs.IntVar(&o.runs, "runs", 5, "runs per variant and workload (interleaved)")
	fs.DurationVar(&o.duration, "duration", 2*time.Second, "length of one load run")
	fs.StringVar(&o.out, "out", "bench-results", "directory for results.md and results.json")
	fs.StringVar(&o.binDir, "bin-dir", "bin", "directory holding weft-agent and weft-proxy")
	vs := fs.String("variants", "", "comma-separated variants to run (default: all)")
	ws := fs.String("workloads", "", "comma-separated workloads to run (default: all)")
	cps := fs.String("cp-services", "1000,10000", "control plane: comma-separated service counts")
	fs.IntVar(&o.cpClients, "cp-clients", 10, "control plane: simulated node clients")
	fs.BoolVar(&o.skipData, "skip-dataplane", false, "skip the data plane comparison and the footprint")
	fs.BoolVar(&o.skipCP, "skip-controlplane", false, "skip the control plane measurements")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	o.variants, o.workloads = split(*vs), split(*ws)
	for _, n := range o.variants {
		if !slices.ContainsFunc(variants, func(v variant) bool { return v.name == n }) {
			return o, fmt.Errorf("unknown variant %q", n)
		}
	}
	for _, n := range o.workloads {
		if !slices.ContainsFunc(workloads, func(w workload) bool { return w.name == n }) {
			return o, fmt.Errorf("unknown workload %q", n)
		}
	}
	for _, s := range split(*cps) {
		var n int
		if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n <= 0 {
			return o, fmt.Errorf("-cp-services: %q is not a count", s)
		}
		o.cpServices = append(o.cpServices, n)
	}
	if o.runs < 1 || o.duration <= 0 {
		return o, errors.New("-runs and -duration must be positive")
	}
	return o, nil
}

func run(ctx context.Context, args []string) (err error) {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root: it loads eBPF programs and creates namespaces and cgroups")
	}
	if runtime.NumCPU() < 2 {
		return errors.New("needs 2 CPUs: the proxy under test gets one of its own")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bins := binaries{self: self, agent: filepath.Join(o.binDir, "weft-agent"), proxy: filepath.Join(o.binDir, "weft-proxy")}
	for _, p := range []string{bins.agent, bins.proxy, lookPath("nginx"), lookPath("haproxy")} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("missing %s (make bench builds weft-agent and weft-proxy and installs nginx and haproxy)", p)
		}
	}
	if err := pinSelf(cpuRest); err != nil {
		return err
	}
	// The test helpers (netsim, testutil) take a testing.TB: Standalone is
	// one for programs, and its Close removes everything they created,
	// whether the bench ends normally, on an error, or on Ctrl-C.
	h := netsim.NewStandalone(ctx, "weft-bench", os.Stderr)
	defer func() { err = errors.Join(err, h.Close()) }()

	rep := &report{Started: time.Now().UTC(), Machine: machine(), Runs: o.runs, Duration: o.duration.String()}
	if !o.skipData {
		if err := dataPlane(ctx, h, bins, o, rep); err != nil {
			return err
		}
	}
	if !o.skipCP {
		for _, n := range o.cpServices {
			r, err := controlPlane(ctx, n, o.cpClients)
			if err != nil {
				return fmt.Errorf("control plane, %d services: %w", n, err)
			}
			rep.ControlPlane = append(rep.ControlPlane, r)
		}
	}
	rep.Finished = time.Now().UTC()
	return rep.write(o.out)
}

// dataPlane builds the test bed, runs every workload over every variant,
// interleaved, then measures the footprint.
func dataPlane(ctx context.Context, h *netsim.Standalone, bins binaries, o options, rep *report) error {
	start := time.Now()
	b, err := newBed(ctx, h, bins, 0)
	if err != nil {
		return fmt.Errorf("test bed: %w", err)
	}
	fmt.Printf("weft bench: test bed up in %v (node %s, client %s, server %s)\n",
		time.Since(start).Round(time.Millisecond), b.node.Addr, b.client.Addr, b.server.Addr)
	vs := pick(variants, o.variants, func(v variant) string { return v.name })
	ws := pick(workloads, o.workloads, func(w workload) string { return w.name })

	// The direct saturation rate sets the rates of the 25% and 50% loads.
	direct := variants[0]
	calib, err := b.runOnce(ctx, direct, workload{name: "calibration", proto: "http1", mode: "closed", conns: 16}, 0, o.duration)
	if err != nil {
		return fmt.Errorf("calibration: %w", err)
	}
	rep.DirectSaturation = calib.Rate
	fmt.Printf("weft bench: direct saturation %.0f req/s; %d runs of %s, interleaved\n", calib.Rate, o.runs, o.duration)

	for i := range o.runs {
		for _, w := range ws {
			rate := w.rate
			if w.satShare > 0 {
				rate = w.satShare * calib.Rate
			}
			// Rotate the order of the variants from run to run.
			for k := range vs {
				v := vs[(k+i)%len(vs)]
				if !slices.Contains(v.proto, w.proto) {
					continue
				}
				r, err := b.runOnce(ctx, v, w, rate, o.duration)
				if ctx.Err() != nil {
					return fmt.Errorf("interrupted: %w", ctx.Err())
				}
				if err != nil {
					return fmt.Errorf("run %d %s %s: %w", i+1, v.name, w.name, err)
				}
				r.Run = i + 1
				rep.Results = append(rep.Results, r)
				warn := ""
				if r.Errors > 0 {
					warn = fmt.Sprintf("  %d errors (%s)", r.Errors, r.FirstError)
				}
				fmt.Printf("  run %d %-10s %-11s %8.0f/s  p50 %7.1fµs  p99 %8.1fµs  proxy %6.1fµs/req  kernel %6.1fµs/req  bench sys %6.1fµs/req  other %.2f CPUs%s\n",
					i+1, w.name, v.name, r.Rate, r.P50, r.P99, r.ProxyCPU, r.KernelCPU, r.BenchSys, r.OtherCPU, warn)
			}
		}
	}
	fp, err := b.footprint(ctx)
	if err != nil {
		return fmt.Errorf("footprint: %w", err)
	}
	rep.Footprint = fp
	rep.Workloads = ws
	rep.Variants = vs
	return nil
}

func pick[T any](all []T, names []string, name func(T) string) []T {
	if len(names) == 0 {
		return all
	}
	var out []T
	for _, x := range all {
		if slices.Contains(names, name(x)) {
			out = append(out, x)
		}
	}
	return out
}

// runOnce runs the load generator once in the client's namespace (in the
// meshed cgroup for l4 and l7), reading the CPU counters when it starts
// and when it is done.
func (b *bed) runOnce(ctx context.Context, v variant, w workload, rate float64, d time.Duration) (runResult, error) {
	spec := loadSpec{Proto: w.proto, Mode: w.mode, Target: v.addr(b, w.proto).String(), Rate: rate, Conns: w.conns, Duration: d}
	js, err := json.Marshal(spec)
	if err != nil {
		return runResult{}, err
	}
	cg := b.plainClient
	if v.meshed {
		cg = b.client.CgroupPath
	}
	cmd, closeFD, err := b.command(ctx, b.client.NS, cg, cpuRest, []string{childEnv + "=load"}, b.bins.self, string(js))
	if err != nil {
		return runResult{}, err
	}
	defer closeFD()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return runResult{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return runResult{}, err
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return runResult{}, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	fail := func(err error) (runResult, error) {
		return runResult{}, fmt.Errorf("%w; load generator: %s", err, tail(stderr.String(), 1500))
	}
	out := bufio.NewReader(stdout)
	if err := expectLine(out, "ready", 30*time.Second); err != nil {
		return fail(err)
	}
	var proxyCg string
	if v.proxy != "" {
		proxyCg = b.proxies[v.proxy].cgroup
	}
	before, err := snapshot(b.net.CgroupPath, proxyCg)
	if err != nil {
		return runResult{}, err
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		return fail(err)
	}
	if err := expectLine(out, "done", 3*d+30*time.Second); err != nil {
		return fail(err)
	}
	after, err := snapshot(b.net.CgroupPath, proxyCg)
	if err != nil {
		return runResult{}, err
	}
	var r runResult
	if err := json.NewDecoder(out).Decode(&r.loadResult); err != nil {
		return fail(fmt.Errorf("result: %w", err))
	}
	if r.Requests == 0 {
		return fail(fmt.Errorf("no request succeeded: %s", r.FirstError))
	}
	r.Variant, r.Workload, r.TargetRate = v.name, w.name, rate
	n := float64(r.Requests)
	r.KernelCPU = float64(after.kernelTicks-before.kernelTicks) * 1e6 / clkTck / n
	r.BenchSys = float64(after.benchSysMicros-before.benchSysMicros) / n
	secs := after.at.Sub(before.at).Seconds()
	busy := float64(after.busyTicks-before.busyTicks) / clkTck
	own := float64(after.benchMicros-before.benchMicros) / 1e6
	r.OtherCPU = max(0, busy-own) / secs
	if proxyCg != "" {
		r.ProxyCPU = float64(after.procTicks-before.procTicks) * 1e6 / clkTck / n
		r.ProxyCgroupCPU = float64(after.cgroupMicros-before.cgroupMicros) / n
		r.ProxyRSS = float64(rssBytes(proxyCg)) / (1 << 20)
	}
	return r, nil
}

// machine describes the machine for the report.
func machine() string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	var mem string
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		mem = strings.Join(strings.Fields(line)[1:], " ")
	}
	return fmt.Sprintf("%d × %s, %s RAM, Linux %s, %s", runtime.NumCPU(), model, mem,
		unix.ByteSliceToString(u.Release[:]), runtime.Version())
}
