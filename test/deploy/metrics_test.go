// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-mesh/weft/agent"
	"github.com/weft-mesh/weft/agent/datapath"
	"github.com/weft-mesh/weft/agent/proxy"
	"github.com/weft-mesh/weft/agent/proxy/cluster"
	"github.com/weft-mesh/weft/controlplane"
	"github.com/weft-mesh/weft/pkg/xdsclient"
	"github.com/weft-mesh/weft/test/testutil"
)

// dashboardMetrics returns the weft_ metric names the Grafana dashboard's
// queries use, with the panel titles that use them.
func dashboardMetrics(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(deployPath(t, "grafana", "weft-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Error("dashboard: no title or uid")
	}
	name := regexp.MustCompile(`\bweft_[a-z0-9_]+`)
	out := map[string][]string{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q: no queries", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") {
				t.Errorf("dashboard panel %q: unbalanced parentheses in %s", p.Title, tg.Expr)
			}
			ms := name.FindAllString(tg.Expr, -1)
			if len(ms) == 0 {
				t.Errorf("dashboard panel %q: query %s names no weft metric", p.Title, tg.Expr)
			}
			for _, m := range ms {
				out[m] = append(out[m], p.Title)
			}
		}
	}
	return out
}

// registered reports whether reg holds a metric named name: registering a
// probe of that name with another help string fails exactly then. The
// series names of histograms (_bucket, _sum, _count) count as their
// family's.
func registered(reg prometheus.Registerer, name string) bool {
	names := []string{name}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			names = append(names, base)
		}
	}
	for _, n := range names {
		probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: n, Help: "weft test/deploy probe"})
		err := reg.Register(probe)
		if err == nil {
			reg.Unregister(probe)
			continue
		}
		if strings.Contains(err.Error(), "previously registered descriptor with the same fully-qualified name") {
			return true
		}
	}
	return false
}

// TestProbesAndMetrics starts a real controller, agent (on a fake
// datapath) and proxy, from the configuration of the Kubernetes manifests
// where it applies; checks that every probe path of the manifests answers
// 200 on its component, and that every metric the dashboard queries is
// registered by the component its prefix names.
func TestProbesAndMetrics(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	var wait []func()
	t.Cleanup(func() {
		cancel()
		for _, w := range wait {
			w()
		}
	})
	goRun := func(what string, fn func(context.Context) error) {
		done := make(chan error, 1)
		go func() { done <- fn(ctx) }()
		wait = append(wait, func() {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v", what, err)
			}
		})
	}

	// The controller, with the ConfigMap's configuration on loopback.
	m, _ := loadManifests(t)
	ccfg := loadControllerConfig(t, "ConfigMap weft-controller", m.configMaps["weft-controller"].Data["controller.yaml"])
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, "s3cret\n")
	ccfg.DataDir, ccfg.APIListen, ccfg.XDSListen, ccfg.Auth.BearerTokenFile = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0", tokenFile
	zero := controlplane.Duration(0)
	ccfg.Registry.WarmUp = &zero
	ctrl, err := controlplane.New(ctx, ccfg, log)
	if err != nil {
		t.Fatal(err)
	}
	goRun("controller", ctrl.Run)

	// The agent, with the ConfigMap's configuration on loopback and a state
	// file instead of the controller.
	acfg := loadAgentConfig(t, "ConfigMap weft-agent", m.configMaps["weft-agent"].Data["agent.yaml"], "node-a")
	state := filepath.Join(t.TempDir(), "state.json")
	writeFile(t, state, `{"node": "node-a", "version": "v1"}`)
	acfg.XDS, acfg.StateFile = agent.XDSConfig{}, state
	acfg.CgroupRoot, acfg.MetricsListen = t.TempDir(), "127.0.0.1:0"
	acfg.DNS.Listen = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	acfg.DNS.Upstreams = []string{"127.0.0.1:1"}
	dns, err := agent.NewDNS(acfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ag, err := agent.New(acfg, agent.Deps{Datapath: fakeDatapath{}, DNS: dns, Collectors: []prometheus.Collector{dns.Collector()}}, log)
	if err != nil {
		dns.Close()
		t.Fatal(err)
	}
	goRun("agent", ag.Run)

	// The proxy, wired as weft-proxy wires it, on ADS from the controller.
	preg := prometheus.NewRegistry()
	clusters := cluster.NewManager(cluster.Options{Registerer: preg, Mark: 0}, log)
	p, err := proxy.New(proxy.Config{AdminListen: "127.0.0.1:0", DrainTimeout: 100 * time.Millisecond, RetryBufferBytes: proxy.DefaultRetryBufferBytes},
		proxy.Deps{Clusters: clusters, Registerer: preg, Gatherer: preg}, log)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := xdsclient.Dial(xdsclient.DialConfig{Server: ctrl.XDSAddr().String(), Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	wait = append(wait, func() { _ = conn.Close() })
	if _, err := proxy.NewADS(proxy.ADSConfig{NodeID: "node-a", CacheDir: t.TempDir(), CgroupRoot: t.TempDir()},
		proxy.ADSDeps{Conn: conn, Target: p, Registerer: preg}, log); err != nil {
		t.Fatal(err)
	}
	goRun("clusters", clusters.Run)
	goRun("proxy", p.Run)
	select {
	case <-p.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("proxy not ready")
	}

	bases := map[string]string{
		"controller": "http://" + ctrl.Addr().String(),
		"agent":      "http://" + ag.Addr().String(),
		"proxy":      "http://" + p.AdminAddr().String(),
	}
	paths := probePaths(t)
	for _, comp := range []string{"controller", "agent", "proxy"} {
		if len(paths[comp]) == 0 {
			t.Errorf("%s: no probes in the manifests", comp)
		}
		for _, path := range paths[comp] {
			testutil.Eventually(t, 10*time.Second, func() error {
				return get(ctx, bases[comp]+path)
			})
		}
	}

	regs := map[string]prometheus.Registerer{
		"weft_controller_": ctrl.Metrics(),
		"weft_agent_":      ag.Registry(),
		"weft_proxy_":      preg,
	}
	names := dashboardMetrics(t)
	if len(names) < 20 {
		t.Errorf("dashboard queries only %d metrics", len(names))
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	}) {
		var reg prometheus.Registerer
		for prefix, r := range regs {
			if strings.HasPrefix(name, prefix) {
				reg = r
			}
		}
		if reg == nil || !registered(reg, name) {
			t.Errorf("dashboard panels %q query %s, which no component registers", names[name], name)
		}
	}
	// The probe itself must tell a missing name apart.
	if registered(ctrl.Metrics(), "weft_controller_no_such_metric_total") {
		t.Error("registered reports a metric that does not exist")
	}
}

// get fetches url and wants 200.
func get(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, body)
	}
	return nil
}

// fakeDatapath stands in for the eBPF datapath: it accepts every state.
type fakeDatapath struct{}

func (fakeDatapath) Reconcile(context.Context, datapath.State) (datapath.Changes, error) {
	return datapath.Changes{}, nil
}
func (fakeDatapath) Counters() (datapath.Counters, error) { return datapath.Counters{}, nil }
func (fakeDatapath) ReadEvents(ctx context.Context, _ func(datapath.ConnEvent)) error {
	<-ctx.Done()
	return nil
}
func (fakeDatapath) Dump() (string, error) { return "", nil }
func (fakeDatapath) Close() error          { return nil }
