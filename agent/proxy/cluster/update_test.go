// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestUpdateKeepsPoolsAndState(t *testing.T) {
	a, b, c3 := newBackend(t), newBackend(t), newBackend(t)
	m, _ := newManager(t, Options{})
	od := outlier(1, "10s", "10s", 100)
	update(t, m, static(t, "u", od, a.addr, b.addr))
	c := get(t, m, "u")
	for range 4 {
		mustDo(t, c)
	}
	// Eject b by hand (one 5xx).
	l, err := c.acquire(context.Background(), Hints{Avoid: []string{a.addr}})
	if err != nil {
		t.Fatal(err)
	}
	l.Done(500, nil)
	if h, _ := hostState(c, b.addr); !h.Ejected {
		t.Fatal("b not ejected")
	}

	// The same cluster plus a third host and another outlier interval
	// (not a pool setting).
	update(t, m, static(t, "u", outlier(1, "20s", "10s", 100), a.addr, b.addr, c3.addr))
	if got, _ := m.cluster(testNode, "u"); got != c {
		t.Fatal("the cluster object changed across an update")
	}
	if h, _ := hostState(c, b.addr); !h.Ejected {
		t.Error("b's ejection was lost by the update")
	}
	for range 6 {
		mustDo(t, c)
	}
	if n := a.accepted.Load(); n != 1 {
		t.Errorf("a accepted %d connections, want 1 (pool kept)", n)
	}
	if c3.hits.Load() == 0 {
		t.Error("the new host got no requests")
	}

	// Remove a: its pool is closed.
	update(t, m, static(t, "u", outlier(1, "20s", "10s", 100), b.addr, c3.addr))
	eventually(t, func() error {
		if a.closed.Load() != a.accepted.Load() {
			return fmt.Errorf("a: %d accepted, %d closed", a.accepted.Load(), a.closed.Load())
		}
		return nil
	})

	// A pool setting (max_connections) gives new pools but keeps the state.
	update(t, m, static(t, "u", outlier(1, "20s", "10s", 100)+fmt.Sprintf(breakers, 5, 5, 5, 5), b.addr, c3.addr))
	if h, _ := hostState(c, b.addr); !h.Ejected {
		t.Error("b's ejection was lost by a pool change")
	}
	before := c3.accepted.Load()
	mustDo(t, c)
	if c3.accepted.Load() != before+1 {
		t.Error("no new connection after the pool settings changed")
	}

	// Removing the cluster closes every pool.
	if err := m.Update(testNode, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Get(testNode, "u"); ok {
		t.Error("cluster still there")
	}
	eventually(t, func() error {
		if c3.closed.Load() != c3.accepted.Load() {
			return fmt.Errorf("c: %d accepted, %d closed", c3.accepted.Load(), c3.closed.Load())
		}
		return nil
	})
}

func TestUpdateRejects(t *testing.T) {
	m, _ := newManager(t, Options{})
	update(t, m, static(t, "ok", "", "10.0.0.1:80"))
	for _, tc := range []struct {
		name, json, want string
	}{
		{"ring hash", `{"name":"bad","type":"STATIC","lbPolicy":"RING_HASH"}`, "lb_policy RING_HASH"},
		{"two health checks", `{"name":"bad","type":"STATIC","healthChecks":[
			{"timeout":"1s","interval":"1s","unhealthyThreshold":1,"healthyThreshold":1,"tcpHealthCheck":{}},
			{"timeout":"1s","interval":"1s","unhealthyThreshold":1,"healthyThreshold":1,"tcpHealthCheck":{}}]}`, "at most one"},
		{"sds", `{"name":"bad","type":"STATIC","transportSocket":{"name":"envoy.transport_sockets.tls","typedConfig":{
			"@type":"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
			"commonTlsContext":{"tlsCertificateSdsSecretConfigs":[{"name":"cert"}]}}}}`, "SDS"},
		{"missing file", `{"name":"bad","type":"STATIC","transportSocket":{"name":"envoy.transport_sockets.tls","typedConfig":{
			"@type":"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
			"commonTlsContext":{"validationContext":{"trustedCa":{"filename":"/nonexistent/ca.pem"}}}}}}`, "no such file"},
		{"success rate", `{"name":"bad","type":"STATIC","outlierDetection":{"enforcingSuccessRate":100}}`, "success rate"},
		{"hostname in STATIC", `{"name":"bad","type":"STATIC","loadAssignment":{"endpoints":[{"lbEndpoints":[
			{"endpoint":{"address":{"socketAddress":{"address":"example.com","portValue":80}}}}]}]}}`, "not an IP address"},
		{"original dst without cluster provided", `{"name":"bad","type":"ORIGINAL_DST"}`, "CLUSTER_PROVIDED"},
		{"priorities", `{"name":"bad","type":"STATIC","loadAssignment":{"endpoints":[{"priority":1,"lbEndpoints":[
			{"endpoint":{"address":{"socketAddress":{"address":"10.0.0.2","portValue":80}}}}]}]}}`, "priority 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := m.Update(testNode, []*clusterv3.Cluster{static(t, "ok", "", "10.0.0.9:80"), parseCluster(t, "%s", tc.json)}, nil)
			if err == nil || !strings.Contains(err.Error(), "cluster bad") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Update: %v, want an error naming cluster bad with %q", err, tc.want)
			}
			// The previous configuration stays.
			if got := counts(t, get(t, m, "ok"), 2); !cmp.Equal(got, map[string]int{"10.0.0.1:80": 2}) {
				t.Errorf("after a rejected update: %v", got)
			}
			if _, ok := m.Get(testNode, "bad"); ok {
				t.Error("rejected cluster installed")
			}
		})
	}
}

func TestNodeIDs(t *testing.T) {
	m, _ := newManager(t, Options{})
	if err := m.Update("a", []*clusterv3.Cluster{static(t, "same", "", "10.0.0.1:80")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Update("b", []*clusterv3.Cluster{static(t, "same", "", "10.0.0.2:80")}, nil); err != nil {
		t.Fatal(err)
	}
	for node, want := range map[string]string{"a": "10.0.0.1:80", "b": "10.0.0.2:80"} {
		c, ok := m.cluster(node, "same")
		if !ok {
			t.Fatalf("node %s has no cluster", node)
		}
		if got := pickHost(t, c); got != want {
			t.Errorf("node %s: picked %s, want %s", node, got, want)
		}
	}
	if err := m.Update("a", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Get("a", "same"); ok {
		t.Error("node a's cluster outlived its empty update")
	}
	if _, ok := m.Get("b", "same"); !ok {
		t.Error("node b's cluster went with a's")
	}
}

func TestEDS(t *testing.T) {
	b := newBackend(t)
	m, _ := newManager(t, Options{})
	eds := parseCluster(t, `{"name":"cds_egress_demo_blue_shop_http_8080","type":"EDS","edsClusterConfig":{"edsConfig":{"ads":{}}},"connectTimeout":"1s"}`)
	named := parseCluster(t, `{"name":"other","type":"EDS","edsClusterConfig":{"edsConfig":{"ads":{}},"serviceName":"svc"}}`)
	host, port, _ := net.SplitHostPort(b.addr)
	cla := parseCLA(t, `{"clusterName":"cds_egress_demo_blue_shop_http_8080","endpoints":[{"lbEndpoints":[
		{"endpoint":{"address":{"socketAddress":{"address":%q,"portValue":%s}}},"healthStatus":"HEALTHY"}]}]}`, host, port)
	svc := parseCLA(t, `{"clusterName":"svc","endpoints":[{"lbEndpoints":[
		{"endpoint":{"address":{"socketAddress":{"address":"10.0.0.7","portValue":80}}}}]}]}`)
	if err := m.Update(testNode, []*clusterv3.Cluster{eds, named}, []*endpointv3.ClusterLoadAssignment{cla, svc}); err != nil {
		t.Fatal(err)
	}
	if st, body := mustDo(t, get(t, m, "cds_egress_demo_blue_shop_http_8080")); st != 200 || body != b.addr {
		t.Errorf("request: %d %q", st, body)
	}
	if got := pickHost(t, get(t, m, "other")); got != "10.0.0.7:80" {
		t.Errorf("service_name assignment: picked %s", got)
	}
	// Without its assignment an EDS cluster has no hosts.
	if err := m.Update(testNode, []*clusterv3.Cluster{eds}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, m, "cds_egress_demo_blue_shop_http_8080").Acquire(context.Background(), Hints{}); !errors.Is(err, ErrNoHealthyUpstream) {
		t.Errorf("Acquire: %v, want ErrNoHealthyUpstream", err)
	}
}

func TestStrictDNS(t *testing.T) {
	res := &fakeResolver{}
	res.set("color.shop.svc.cluster.local", "10.0.0.1", "10.0.0.2", "fd00::1")
	m, _ := newManager(t, Options{Resolver: res})
	update(t, m, parseCluster(t, `{"name":"dns","type":"STRICT_DNS","dnsRefreshRate":"0.05s","dnsLookupFamily":"V4_ONLY",
		"loadAssignment":{"endpoints":[{"lbEndpoints":[{"endpoint":{"address":{"socketAddress":{"address":"color.shop.svc.cluster.local","portValue":8080}}}}]}]}}`))
	c := get(t, m, "dns")
	run(t, m)
	// Acquire waits for the first resolution.
	if got := counts(t, c, 4); !cmp.Equal(got, map[string]int{"10.0.0.1:8080": 2, "10.0.0.2:8080": 2}) {
		t.Errorf("spread %v", got)
	}
	// Re-resolution: a host goes, one comes; the one that stays keeps its
	// state.
	c.mu.Lock()
	c.byKey["10.0.0.2:8080"].ejections = 7
	c.mu.Unlock()
	res.set("color.shop.svc.cluster.local", "10.0.0.2", "10.0.0.3")
	eventually(t, func() error {
		var addrs []string
		for _, h := range c.Hosts() {
			addrs = append(addrs, h.Address)
		}
		if !slices.Equal(addrs, []string{"10.0.0.2:8080", "10.0.0.3:8080"}) {
			return fmt.Errorf("hosts %v", addrs)
		}
		return nil
	})
	if h, _ := hostState(c, "10.0.0.2:8080"); h.Ejections != 7 {
		t.Errorf("state of a host that stayed was lost: %+v", h)
	}
	// A failed lookup keeps the hosts.
	res.set("color.shop.svc.cluster.local")
	n := res.lookups.Load()
	eventually(t, func() error {
		if res.lookups.Load() < n+2 {
			return errors.New("waiting for lookups")
		}
		return nil
	})
	if len(c.Hosts()) != 2 {
		t.Errorf("hosts after a failed lookup: %v", c.Hosts())
	}
}

func TestLogicalDNS(t *testing.T) {
	b := newBackend(t)
	res := &fakeResolver{}
	res.set("httpbin.org", "127.0.0.1", "10.0.0.9")
	m, _ := newManager(t, Options{Resolver: res})
	update(t, m, parseCluster(t, `{"name":"ldns","type":"LOGICAL_DNS","dnsRefreshRate":"0.05s","dnsLookupFamily":"V4_ONLY",
		"loadAssignment":{"endpoints":[{"lbEndpoints":[{"endpoint":{"address":{"socketAddress":{"address":"httpbin.org","portValue":%s}}}}]}]}}`, b.port()))
	c := get(t, m, "ldns")
	run(t, m)
	if st, body := mustDo(t, c); st != 200 || body != b.addr {
		t.Errorf("request: %d %q", st, body)
	}
	// The latest lookup's first address is where new connections go; the
	// single logical host (and its pool) stays.
	res.set("httpbin.org", "10.0.0.9", "127.0.0.1")
	eventually(t, func() error {
		if got := pickHost(t, c); got != "10.0.0.9:"+b.port() {
			return fmt.Errorf("host %s", got)
		}
		return nil
	})
	if hs := c.Hosts(); len(hs) != 1 {
		t.Errorf("hosts %v, want one logical host", hs)
	}
}

func TestDNSWithoutRun(t *testing.T) {
	res := &fakeResolver{}
	m, _ := newManager(t, Options{Resolver: res})
	update(t, m, parseCluster(t, `{"name":"dns","type":"STRICT_DNS",
		"loadAssignment":{"endpoints":[{"lbEndpoints":[{"endpoint":{"address":{"socketAddress":{"address":"x.example","portValue":80}}}}]}]}}`))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := get(t, m, "dns").Acquire(ctx, Hints{}); !errors.Is(err, ErrNoHealthyUpstream) {
		t.Errorf("Acquire: %v, want ErrNoHealthyUpstream at once", err)
	}
}

// TestGoldenClusters feeds the translator's golden outputs to the manager:
// everything must be accepted except TLS clusters whose certificate files
// do not exist here, which must be rejected by name. (TLS without
// verification, toward a STRICT listener without client policy, needs no
// file and is accepted.)
func TestGoldenClusters(t *testing.T) {
	files, err := filepath.Glob("../../../controlplane/xds/testdata/s*.golden.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		if strings.Contains(f, "nodestate") {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			clusters, assignments := readGolden(t, f)
			m, _ := newManager(t, Options{Resolver: &fakeResolver{}})
			err := m.Update(testNode, clusters, assignments)
			var tlsClusters []string // with certificate files
			for _, c := range clusters {
				if ts := c.GetTransportSocket(); ts != nil && strings.Contains(protojson.Format(ts), "filename") {
					tlsClusters = append(tlsClusters, c.GetName())
				}
			}
			if len(tlsClusters) == 0 {
				if err != nil {
					t.Fatalf("Update: %v", err)
				}
				for _, c := range clusters {
					if _, ok := m.Get(testNode, c.GetName()); !ok {
						t.Errorf("cluster %s missing", c.GetName())
					}
				}
				return
			}
			if err == nil {
				t.Fatal("Update accepted TLS clusters whose files do not exist")
			}
			for _, n := range tlsClusters {
				if !strings.Contains(err.Error(), "cluster "+n+":") {
					t.Errorf("error does not name %s: %v", n, err)
				}
			}
		})
	}
}

func readGolden(t *testing.T, path string) ([]*clusterv3.Cluster, []*endpointv3.ClusterLoadAssignment) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Clusters  []json.RawMessage `json:"clusters"`
		Endpoints []json.RawMessage `json:"endpoints"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	var cs []*clusterv3.Cluster
	for _, r := range raw.Clusters {
		var c clusterv3.Cluster
		if err := protojson.Unmarshal(r, &c); err != nil {
			t.Fatalf("cluster: %v", err)
		}
		cs = append(cs, &c)
	}
	var assignments []*endpointv3.ClusterLoadAssignment
	for _, r := range raw.Endpoints {
		var c endpointv3.ClusterLoadAssignment
		if err := protojson.Unmarshal(r, &c); err != nil {
			t.Fatalf("load assignment: %v", err)
		}
		assignments = append(assignments, &c)
	}
	return cs, assignments
}

// TestTranslatorCluster runs the translator's S8 cluster toward inventory
// (HTTP health check on /healthz, outlier detection after 5 × 5xx) against
// loopback backends, with its intervals shortened.
func TestTranslatorCluster(t *testing.T) {
	const name = "cds_egress_demo_inventory_shop_http_8080"
	clusters, _ := readGolden(t, "../../../controlplane/xds/testdata/s8.test-client.golden.json")
	var c *clusterv3.Cluster
	for _, x := range clusters {
		if x.GetName() == name {
			c = x
		}
	}
	if c == nil {
		t.Fatalf("no %s in the golden file", name)
	}
	if c.GetHealthChecks()[0].GetHttpHealthCheck().GetPath() != "/healthz" || c.GetOutlierDetection().GetConsecutive_5Xx().GetValue() != 5 {
		t.Fatalf("unexpected golden cluster: %v", c)
	}
	c.HealthChecks[0].Interval = durationpb.New(50 * time.Millisecond)
	c.OutlierDetection.Interval = durationpb.New(50 * time.Millisecond)
	c.OutlierDetection.BaseEjectionTime = durationpb.New(100 * time.Millisecond)

	bs := []*backend{newBackend(t), newBackend(t), newBackend(t)}
	var eps []string
	for _, b := range bs {
		host, port, _ := net.SplitHostPort(b.addr)
		eps = append(eps, fmt.Sprintf(`{"endpoint":{"address":{"socketAddress":{"address":%q,"portValue":%s}}},"healthStatus":"HEALTHY"}`, host, port))
	}
	cla := parseCLA(t, `{"clusterName":%q,"endpoints":[{"lbEndpoints":[%s]}]}`, name, strings.Join(eps, ","))
	m, reg := newManager(t, Options{})
	if err := m.Update(testNode, []*clusterv3.Cluster{c}, []*endpointv3.ClusterLoadAssignment{cla}); err != nil {
		t.Fatal(err)
	}
	cl := get(t, m, name)
	run(t, m)

	bs[0].hcStatus.Store(500)
	waitHealthy(t, cl, bs[0].addr, false)
	bs[1].status.Store(503)
	for range 20 {
		mustDo(t, cl)
	}
	if v := counterValue(t, reg, "weft_proxy_outlier_ejections_total", map[string]string{"cluster": name}); v < 1 {
		t.Errorf("the host answering 503 was never ejected")
	}
	bs[0].hcStatus.Store(200)
	bs[1].status.Store(200)
	waitHealthy(t, cl, bs[0].addr, true)
	eventually(t, func() error {
		if h, _ := hostState(cl, bs[1].addr); h.Ejected {
			return errors.New("still ejected")
		}
		return nil
	})
}
