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
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/agent/datapath"
	"github.com/weft-mesh/weft/test/testutil"
)

const childEnv = "WEFT_BENCH_CHILD"

// result is one client run.
type result struct {
	Variant  string    `json:"variant"`
	Workload string    `json:"workload"`
	Ops      int       `json:"ops"`
	Seconds  float64   `json:"seconds"`
	Rate     float64   `json:"ratePerSecond"`
	P50      float64   `json:"p50Micros"`
	P90      float64   `json:"p90Micros"`
	P99      float64   `json:"p99Micros"`
	Max      float64   `json:"maxMicros"`
	Samples  []float64 `json:"-"`
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	runs := fs.Int("runs", 5, "runs per variant and workload (interleaved)")
	dur := fs.Duration("duration", 3*time.Second, "length of one run")
	out := fs.String("out", "bench-results", "directory for results.md and results.json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root: it loads eBPF programs and creates cgroups")
	}
	cg2, err := testutil.Cgroup2Path()
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp(cg2, "weft-bench-")
	if err != nil {
		return fmt.Errorf("create cgroup: %w", err)
	}
	meshCg, plainCg := filepath.Join(root, "mesh"), filepath.Join(root, "plain")
	wlCg := filepath.Join(meshCg, "workload")
	for _, d := range []string{meshCg, plainCg, wlCg} {
		if err := os.Mkdir(d, 0o750); err != nil {
			return err
		}
	}
	defer func() {
		for _, d := range []string{wlCg, meshCg, plainCg, root} {
			_ = os.Remove(d)
		}
	}()
	pins, err := os.MkdirTemp("", "weft-bench-bpffs-")
	if err != nil {
		return err
	}
	if err := unix.Mount("bpffs", pins, "bpf", 0, ""); err != nil {
		return fmt.Errorf("mount bpffs: %w", err)
	}
	defer func() { _ = unix.Unmount(pins, 0); _ = os.Remove(pins) }()

	// Backends: a TCP server that accepts and closes (connection rate) and an
	// HTTP server answering 1 KB (request latency), both on loopback.
	acceptLn, err := listen(ctx)
	if err != nil {
		return err
	}
	defer acceptLn.Close()
	go func() {
		for {
			c, err := acceptLn.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	httpLn, err := listen(ctx)
	if err != nil {
		return err
	}
	body := []byte(strings.Repeat("x", 1024))
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(body)
	})}
	go func() { _ = srv.Serve(httpLn) }()
	defer srv.Close()

	dp, err := datapath.New(datapath.Config{CgroupPath: meshCg, PinPath: filepath.Join(pins, "weft")}, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("load datapath: %w", err)
	}
	defer func() { _ = dp.Unpin(); _ = dp.Close() }()
	wlID, err := cgroupID(wlCg)
	if err != nil {
		return err
	}
	vip := netip.MustParseAddr("10.96.255.1")
	state := datapath.State{
		Workloads: []datapath.Workload{{CgroupID: wlID, ID: 1, MeshID: 1}},
		Services: []datapath.Service{
			{ID: 1, Addr: vip, Port: 80, Proto: datapath.TCP, Mode: datapath.ModeL4, Backends: []datapath.Backend{{Addr: addrPort(acceptLn), Weight: 1}}},
			{ID: 2, Addr: vip, Port: 8080, Proto: datapath.TCP, Mode: datapath.ModeL4, Backends: []datapath.Backend{{Addr: addrPort(httpLn), Weight: 1}}},
		},
	}
	if _, err := dp.Reconcile(ctx, state); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}

	type variant struct {
		name, cgroup string
		connect      netip.AddrPort
		http         netip.AddrPort
	}
	variants := []variant{
		{"direct", plainCg, addrPort(acceptLn), addrPort(httpLn)},
		{"l4", wlCg, netip.AddrPortFrom(vip, 80), netip.AddrPortFrom(vip, 8080)},
	}
	workloads := []string{"connect", "request"}
	results := map[string][]result{}
	fmt.Printf("weft bench: %d runs of %s per variant and workload, interleaved; %d CPUs, kernel %s\n", *runs, *dur, runtime.NumCPU(), kernel())
	for i := range *runs {
		for _, w := range workloads {
			for _, v := range variants {
				target := v.connect
				if w == "request" {
					target = v.http
				}
				r, err := runChild(ctx, v.cgroup, w, target, *dur)
				if err != nil {
					return fmt.Errorf("run %d %s %s: %w", i, v.name, w, err)
				}
				r.Variant = v.name
				results[v.name+"/"+w] = append(results[v.name+"/"+w], r)
				fmt.Printf("  run %d  %-7s %-7s %9.0f/s  p50 %7.1fµs  p99 %7.1fµs\n", i+1, v.name, w, r.Rate, r.P50, r.P99)
			}
		}
	}
	counters, err := dp.Counters()
	if err != nil {
		return err
	}
	return report(*out, results, workloads, counters)
}

func listen(ctx context.Context) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", "127.0.0.1:0")
}

func addrPort(ln net.Listener) netip.AddrPort {
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func cgroupID(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat cgroup %s: %w", path, err)
	}
	return st.Ino, nil
}

func kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// runChild runs one client as a child process placed in cgroup before it
// sends anything: the child waits for a line on stdin, written after its pid
// is in cgroup.procs.
func runChild(ctx context.Context, cgroup, workload string, target netip.AddrPort, d time.Duration) (result, error) {
	cmd := exec.CommandContext(ctx, "/proc/self/exe", target.String(), d.String())
	cmd.Env = append(os.Environ(), childEnv+"="+workload)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return result{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return result{}, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() { _ = cmd.Wait() }()
	if err := os.WriteFile(filepath.Join(cgroup, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		_ = cmd.Process.Kill()
		return result{}, fmt.Errorf("move client into %s: %w", cgroup, err)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		return result{}, err
	}
	var r result
	if err := json.NewDecoder(stdout).Decode(&r); err != nil {
		return result{}, fmt.Errorf("client result: %w", err)
	}
	return r, nil
}

// child is the client: it waits for "go", then runs the workload against the
// target for the duration and prints a result as JSON.
func child(workload string, args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "child: want TARGET DURATION")
		return 2
	}
	target := args[0]
	d, err := time.ParseDuration(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	var op func() error
	switch workload {
	case "connect":
		// A new connection each time, closed at once: what the L4 path adds
		// is all at connect().
		op = func() error {
			c, err := net.DialTimeout("tcp", target, 2*time.Second) //nolint:noctx,gosec // a benchmark client with a timeout, to the bench's own backend
			if err != nil {
				return err
			}
			return c.Close()
		}
	case "request":
		// One HTTP/1.1 request with a 1 KB answer on a new connection.
		tr := &http.Transport{DisableKeepAlives: true}
		c := &http.Client{Transport: tr, Timeout: 2 * time.Second}
		url := "http://" + target + "/"
		op = func() error {
			resp, err := c.Get(url) //nolint:noctx,gosec // a benchmark client with a timeout, to the bench's own backend
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return err
		}
	default:
		fmt.Fprintln(os.Stderr, "child: unknown workload", workload)
		return 2
	}
	var samples []float64
	start := time.Now()
	for time.Since(start) < d {
		t0 := time.Now()
		if err := op(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 1
		}
		samples = append(samples, float64(time.Since(t0).Nanoseconds())/1000)
	}
	el := time.Since(start).Seconds()
	slices.Sort(samples)
	q := func(p float64) float64 { return samples[min(len(samples)-1, int(p*float64(len(samples))))] }
	r := result{
		Workload: workload, Ops: len(samples), Seconds: el, Rate: float64(len(samples)) / el,
		P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: samples[len(samples)-1],
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return 1
	}
	return 0
}
