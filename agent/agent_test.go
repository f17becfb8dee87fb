// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/weft-mesh/weft/agent/datapath"
	wtestutil "github.com/weft-mesh/weft/test/testutil"
)

// fakeDatapath records what the agent asks of the datapath.
type fakeDatapath struct {
	mu           sync.Mutex
	states       []datapath.State
	reconcileErr error
	closed       int
	events       chan datapath.ConnEvent
}

func newFakeDatapath() *fakeDatapath {
	return &fakeDatapath{events: make(chan datapath.ConnEvent)}
}

func (f *fakeDatapath) Reconcile(_ context.Context, s datapath.State) (datapath.Changes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reconcileErr != nil {
		return datapath.Changes{}, f.reconcileErr
	}
	f.states = append(f.states, s)
	return datapath.Changes{ServicesUpserted: len(s.Services), WorkloadsUpserted: len(s.Workloads)}, nil
}

func (f *fakeDatapath) Counters() (datapath.Counters, error) {
	return datapath.Counters{RedirectedL7: 7, BalancedL4: 3}, nil
}

func (f *fakeDatapath) ReadEvents(ctx context.Context, fn func(datapath.ConnEvent)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-f.events:
			fn(ev)
		}
	}
}

func (f *fakeDatapath) Dump() (string, error) { return "svc 10.96.0.10:80 -> proxy\n", nil }

func (f *fakeDatapath) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

func (f *fakeDatapath) reconciled() []datapath.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]datapath.State(nil), f.states...)
}

// fakeDNS records the records it was given.
type fakeDNS struct {
	mu      sync.Mutex
	records map[string][]netip.Addr
}

func (d *fakeDNS) SetRecords(r map[string][]netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.records = r
}

func (d *fakeDNS) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

func (d *fakeDNS) get() map[string][]netip.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.records
}

// writeState replaces the state file atomically, as a controller would.
func writeState(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func stateJSON(version string, services ...string) string {
	var svcs []string
	for i, s := range services {
		svcs = append(svcs, fmt.Sprintf(`{"name": %q, "mesh": "demo", "addresses": ["10.96.0.%d"], "ports": [{"port": 80, "mode": "MODE_L7"}]}`, s, 10+i))
	}
	return `{"node": "node-a", "version": "` + version + `",
		"meshes": [{"name": "demo", "id": 1, "dropAll": true}],
		"services": [` + strings.Join(svcs, ",") + `],
		"workloads": [{"id": 5, "cgroupPath": "kubepods/web", "mesh": "demo", "virtualNode": "web"},
		              {"id": 6, "cgroupPath": "system.slice/orders.service", "mesh": "demo", "virtualNode": "orders-from-file"}]}`
}

type harness struct {
	t      *testing.T
	cfg    Config
	dp     *fakeDatapath
	dns    *fakeDNS
	agent  *Agent
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
	url    string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAgent runs an agent on fakes, with a cgroup root of plain
// directories (their inode numbers stand in for cgroup ids).
func startAgent(t *testing.T, cfg Config) *harness {
	t.Helper()
	for _, p := range []string{"kubepods/web", "system.slice/orders.service"} {
		if err := os.MkdirAll(filepath.Join(cfg.CgroupRoot, p), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, cfg: cfg, dp: newFakeDatapath(), dns: &fakeDNS{}, done: make(chan error, 1), logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(cfg, Deps{Datapath: h.dp, DNS: h.dns, PollInterval: 10 * time.Millisecond, Debounce: 10 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	h.agent = a
	h.url = "http://" + a.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			t.Logf("agent log:\n%s", h.logs.String())
		}
	})
	return h
}

func (h *harness) stop() {
	h.t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Fatal("run did not return after its context ended")
	}
}

var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}

func (h *harness) get(path string) (int, string) {
	h.t.Helper()
	resp, err := httpClient.Get(h.url + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// waitStates waits until the datapath saw n reconciles.
func (h *harness) waitStates(n int) []datapath.State {
	h.t.Helper()
	var got []datapath.State
	wtestutil.Eventually(h.t, 5*time.Second, func() error {
		if got = h.dp.reconciled(); len(got) < n {
			return fmt.Errorf("%d reconciles, want %d", len(got), n)
		}
		return nil
	})
	return got
}

func TestRunReloadsStateFile(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := validConfig(t)
	cfg.Workloads = []VMWorkload{
		{CgroupPath: "system.slice/orders.service", Mesh: "demo", VirtualNode: "orders"},
		{CgroupPath: "system.slice/stopped.service", Mesh: "demo", VirtualNode: "stopped"},
	}
	h := startAgent(t, cfg)

	if code, _ := h.get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before any state = %d, want 503", code)
	}
	if code, _ := h.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}

	writeState(t, cfg.StateFile, stateJSON("v1", "web.demo.local"))
	states := h.waitStates(1)
	s := states[0]
	if len(s.Services) != 1 || s.Services[0].Addr != ip("10.96.0.10") || s.Services[0].Mode != datapath.ModeL7 {
		t.Errorf("v1 services: %+v", s.Services)
	}
	webID, _ := CgroupID(filepath.Join(cfg.CgroupRoot, "kubepods/web"))
	ordersID, _ := CgroupID(filepath.Join(cfg.CgroupRoot, "system.slice/orders.service"))
	wantWls := []datapath.Workload{{CgroupID: webID, ID: 5, MeshID: 1, DropAll: true}, {CgroupID: ordersID, ID: 6, MeshID: 1, DropAll: true}}
	if fmt.Sprint(s.Workloads) != fmt.Sprint(wantWls) {
		t.Errorf("v1 workloads = %+v, want %+v", s.Workloads, wantWls)
	}
	if len(s.Egress) != 1 || s.Egress[0].Prefix != pfx("169.254.100.2/32") || s.Egress[0].Port != 53 {
		t.Errorf("v1 egress = %+v, want the DNS address", s.Egress)
	}
	wtestutil.Eventually(t, 5*time.Second, func() error {
		if code, _ := h.get("/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz = %d", code)
		}
		return nil
	})
	if got := fmt.Sprint(h.dns.get()); got != "map[web.demo.local:[10.96.0.10]]" {
		t.Errorf("dns records = %s", got)
	}

	// /debug/state: the configured workload won over the file's, keeping
	// the file's id.
	code, body := h.get("/debug/state")
	var ds debugState
	if err := json.Unmarshal([]byte(body), &ds); code != http.StatusOK || err != nil {
		t.Fatalf("/debug/state = %d, %v:\n%s", code, err, body)
	}
	if ds.Version != "v1" || len(ds.Workloads) != 2 || ds.Workloads[1].VirtualNode != "orders" || ds.Workloads[1].ID != 6 {
		t.Errorf("/debug/state: %+v", ds)
	}
	if !strings.Contains(string(ds.NodeState), `"web.demo.local"`) {
		t.Errorf("/debug/state nodeState: %s", ds.NodeState)
	}
	if code, body := h.get("/debug/datapath"); code != http.StatusOK || !strings.Contains(body, "svc 10.96.0.10:80") {
		t.Errorf("/debug/datapath = %d %q", code, body)
	}

	// A changed file is reconciled.
	writeState(t, cfg.StateFile, stateJSON("v2", "web.demo.local", "db.demo.local"))
	states = h.waitStates(2)
	if got := len(states[1].Services); got != 2 {
		t.Errorf("v2: %d services, want 2", got)
	}

	// Garbage, and a state that does not translate, are refused; the last
	// good state stays.
	writeState(t, cfg.StateFile, "{not json")
	wtestutil.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(h.logs.String(), "refused state file") {
			return errors.New("no refusal logged")
		}
		return nil
	})
	writeState(t, cfg.StateFile, `{"services": [{"name": "bad", "addresses": ["10.0.0.1"], "ports": [{"port": 80, "mode": "MODE_L4", "backends": [{"address": "nowhere", "weight": 1}]}]}]}`)
	wtestutil.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(h.logs.String(), `backend \"nowhere\"`) {
			return errors.New("bad backend not logged")
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // ten polls
	if n := len(h.dp.reconciled()); n != 2 {
		t.Errorf("%d reconciles after bad files, want 2", n)
	}
	if _, body := h.get("/debug/state"); !strings.Contains(body, `"version": "v2"`) {
		t.Errorf("/debug/state after bad files:\n%s", body)
	}
	if v := testutil.ToFloat64(h.agent.metrics.stateLoads.WithLabelValues(resultError)); v != 2 {
		t.Errorf("state file load errors = %v, want 2", v)
	}

	// A workload's cgroup appearing triggers a reconcile with it.
	if err := os.MkdirAll(filepath.Join(cfg.CgroupRoot, "system.slice/stopped.service"), 0o700); err != nil {
		t.Fatal(err)
	}
	states = h.waitStates(3)
	if got := len(states[2].Workloads); got != 3 {
		t.Errorf("after the cgroup appeared: %d workloads, want 3", got)
	}
	for _, w := range states[2].Workloads {
		if w.ID == firstAutoWorkloadID {
			goto found
		}
	}
	t.Errorf("the VM workload got no auto id: %+v", states[2].Workloads)
found:

	// Metrics: datapath counters, the version, telemetry named from the state.
	h.dp.events <- datapath.ConnEvent{Cookie: 1, WorkloadID: 5, ServiceID: states[2].Services[1].ID, BytesSent: 42, Closed: true}
	_, metrics := h.get("/metrics")
	for _, want := range []string{
		`weft_agent_decisions_total{decision="redirected_l7"} 7`,
		`weft_agent_state_version_info{version="v2"} 1`,
		`weft_agent_reconciles_total{result="ok"} 3`,
		`weft_agent_ready 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	wtestutil.Eventually(t, 5*time.Second, func() error {
		_, metrics := h.get("/metrics")
		want := `weft_agent_tcp_bytes_sent_total{destination_virtual_service="db.demo.local",mesh="demo",source_virtual_node="web"} 42`
		if !strings.Contains(metrics, want) {
			return fmt.Errorf("/metrics lacks %s", want)
		}
		return nil
	})

	h.stop()
	if h.dp.closed != 1 {
		t.Errorf("datapath closed %d times, want 1", h.dp.closed)
	}
	if err := h.agent.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if h.dp.closed != 1 {
		t.Errorf("datapath closed %d times after a second Close, want 1", h.dp.closed)
	}
}

func TestRunRetriesFailedReconcile(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := validConfig(t)
	writeState(t, cfg.StateFile, stateJSON("v1", "web"))
	h := startAgent(t, cfg)
	h.dp.mu.Lock()
	h.dp.reconcileErr = errors.New("map full")
	h.dp.mu.Unlock()
	wtestutil.Eventually(t, 5*time.Second, func() error {
		if v := testutil.ToFloat64(h.agent.metrics.reconciles.WithLabelValues(resultError)); v < 1 {
			return errors.New("no failed reconcile yet")
		}
		return nil
	})
	if h.agent.Ready() {
		t.Error("ready after a failed reconcile")
	}
	h.dp.mu.Lock()
	h.dp.reconcileErr = nil
	h.dp.mu.Unlock()
	h.waitStates(1) // the retry, after a second
	wtestutil.Eventually(t, 5*time.Second, func() error {
		if !h.agent.Ready() {
			return errors.New("not ready")
		}
		return nil
	})
	h.stop()
}

// TestRunNoStateNoReconcile checks that an agent without a state file
// leaves the datapath alone: reconciling nothing would flush it.
func TestRunNoStateNoReconcile(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := startAgent(t, validConfig(t))
	time.Sleep(100 * time.Millisecond)
	if n := len(h.dp.reconciled()); n != 0 {
		t.Errorf("%d reconciles without a state file", n)
	}
	if code, _ := h.get("/debug/state"); code != http.StatusServiceUnavailable {
		t.Errorf("/debug/state = %d, want 503", code)
	}
	h.stop()
}

// TestRunStopsOnDNSFailure checks that a failing component stops the
// agent with its error, and everything else stops too.
func TestRunStopsOnDNSFailure(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dp := newFakeDatapath()
	a, err := New(validConfig(t), Deps{Datapath: dp, DNS: failingDNS{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || err.Error() != "dns: listen udp 169.254.100.2:53: bind: cannot assign requested address" {
		t.Errorf("run = %v", err)
	}
	if dp.closed != 1 {
		t.Errorf("datapath closed %d times", dp.closed)
	}
}

type failingDNS struct{}

func (failingDNS) SetRecords(map[string][]netip.Addr) {}
func (failingDNS) Run(context.Context) error {
	return errors.New("listen udp 169.254.100.2:53: bind: cannot assign requested address")
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	cfg := validConfig(t)
	if _, err := New(cfg, Deps{}, nil); err == nil || !strings.Contains(err.Error(), "Deps.Datapath and Deps.DNS are required") {
		t.Errorf("no deps: err = %v", err)
	}
	bad := cfg
	bad.NodeName = ""
	if _, err := New(bad, Deps{Datapath: newFakeDatapath(), DNS: &fakeDNS{}}, nil); err == nil || !strings.HasPrefix(err.Error(), "invalid configuration: nodeName") {
		t.Errorf("bad config: err = %v", err)
	}
	a, err := New(cfg, Deps{Datapath: newFakeDatapath(), DNS: &fakeDNS{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	taken := cfg
	taken.MetricsListen = a.Addr().String()
	if _, err := New(taken, Deps{Datapath: newFakeDatapath(), DNS: &fakeDNS{}}, nil); err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Errorf("address in use: err = %v", err)
	}
}
