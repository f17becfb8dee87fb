// SPDX-License-Identifier: Apache-2.0

package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// scriptedADS is an ADS server whose responses the test sends one by one,
// in the order it chooses, and which records every request it gets.
type scriptedADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	send chan *discoveryv3.DiscoveryResponse
	reqs chan *discoveryv3.DiscoveryRequest
}

func (s *scriptedADS) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := st.Recv()
			if err != nil {
				errc <- err
				return
			}
			s.reqs <- req
		}
	}()
	for {
		select {
		case r := <-s.send:
			if err := st.Send(r); err != nil {
				return err
			}
		case err := <-errc:
			return err
		}
	}
}

// holdBed is a Client of Subscribe on a scriptedADS.
type holdBed struct {
	t      *testing.T
	srv    *scriptedADS
	client *Client
	nonce  int

	mu      sync.Mutex
	applied []ProxyResources
	reject  error
}

func newHoldBed(t *testing.T, maxHold time.Duration) *holdBed {
	t.Helper()
	b := &holdBed{t: t, srv: &scriptedADS{send: make(chan *discoveryv3.DiscoveryResponse), reqs: make(chan *discoveryv3.DiscoveryRequest, 100)}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, b.srv)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	b.client, err = Subscribe(conn, Config{NodeID: "mesh/m/virtualNode/vn", MaxHold: maxHold}, func(_ context.Context, r ProxyResources) error {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.reject != nil {
			return b.reject
		}
		b.applied = append(b.applied, r)
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.client.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for range ProxyTypeURLs() { // the subscriptions
		b.request(time.Second)
	}
	return b
}

// push sends one response and returns its nonce.
func (b *holdBed) push(typeURL, version string, ms ...proto.Message) string {
	b.t.Helper()
	b.nonce++
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: version, Nonce: fmt.Sprint(b.nonce)}
	for _, m := range ms {
		a, err := anypb.New(m)
		if err != nil {
			b.t.Fatal(err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	b.srv.send <- resp
	return resp.Nonce
}

// request returns the next request the server got, or nil after wait.
func (b *holdBed) request(wait time.Duration) *discoveryv3.DiscoveryRequest {
	select {
	case r := <-b.srv.reqs:
		return r
	case <-time.After(wait):
		return nil
	}
}

// acks returns the nonces of the next n requests, each with its error
// detail ("" for an ACK).
func (b *holdBed) acks(n int) map[string]string {
	b.t.Helper()
	out := map[string]string{}
	for range n {
		r := b.request(5 * time.Second)
		if r == nil {
			b.t.Fatalf("no request after %v acks: %v", len(out), out)
		}
		out[r.GetResponseNonce()] = r.GetErrorDetail().GetMessage()
	}
	return out
}

// noAck fails when the server gets a request within d.
func (b *holdBed) noAck(d time.Duration, why string) {
	b.t.Helper()
	if r := b.request(d); r != nil {
		b.t.Fatalf("%s: the server got %v", why, r)
	}
}

func (b *holdBed) appliedCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.applied)
}

func (b *holdBed) last() ProxyResources {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.applied[len(b.applied)-1]
}

func tcpListener(t *testing.T, clusters ...string) *listenerv3.Listener {
	t.Helper()
	tp := &tcpproxyv3.TcpProxy{StatPrefix: "s"}
	if len(clusters) == 1 {
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: clusters[0]}
	} else {
		wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
		for _, c := range clusters {
			wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: c, Weight: 1})
		}
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	return &listenerv3.Listener{Name: "tcp", FilterChains: []*listenerv3.FilterChain{{
		Filters: []*listenerv3.Filter{{Name: "tcp", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, tp)}}},
	}}}
}

func httpListener(t *testing.T, rds string) *listenerv3.Listener {
	t.Helper()
	h := &hcmv3.HttpConnectionManager{StatPrefix: "h", RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: rds}}}
	return &listenerv3.Listener{Name: "http", FilterChains: []*listenerv3.FilterChain{{
		Filters: []*listenerv3.Filter{{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, h)}}},
	}}}
}

func routeTo(name string, clusters ...string) *routev3.RouteConfiguration {
	vh := &routev3.VirtualHost{Name: "vh", Domains: []string{"*"}}
	for _, c := range clusters {
		vh.Routes = append(vh.Routes, &routev3.Route{Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: c},
		}}})
	}
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{vh}}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}}
}

func load(name string) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name}
}

func names[T interface{ GetName() string }](xs []T) string {
	var s []string
	for _, x := range xs {
		s = append(s, x.GetName())
	}
	return strings.Join(s, ",")
}

// TestHoldUntilConsistent sends the types of each change in the worst
// order and checks that the proxy's apply function only ever sees a
// configuration whose references resolve, the types of one change
// together, and that every held response is acknowledged when it is
// applied.
func TestHoldUntilConsistent(t *testing.T) {
	b := newHoldBed(t, time.Minute)
	const (
		cds = resourcev3.ClusterType
		eds = resourcev3.EndpointType
		lds = resourcev3.ListenerType
		rds = resourcev3.RouteType
	)

	// The first configuration: incomplete ones are acknowledged and kept.
	n1 := b.push(cds, "1", edsCluster("a"))
	n2 := b.push(eds, "1", load("a"))
	n3 := b.push(lds, "1", tcpListener(t, "a"), httpListener(t, "r"))
	if got := b.acks(3); got[n1] != "" || got[n2] != "" || got[n3] != "" || len(got) != 3 {
		t.Fatalf("acks of an incomplete configuration: %v", got)
	}
	// RDS completes it.
	n4 := b.push(rds, "1", routeTo("r", "a"))
	if got := b.acks(1); got[n4] != "" || len(got) != 1 {
		t.Fatalf("ack of the first whole configuration: %v", got)
	}
	if b.appliedCount() != 1 {
		t.Fatalf("applied %d configurations, want the first whole one", b.appliedCount())
	}

	// A change adding cluster b, sent RDS first, then LDS, CDS, EDS.
	r2 := b.push(rds, "2", routeTo("r", "a", "b"))
	b.noAck(100*time.Millisecond, "a route to cluster b before CDS has it")
	l2 := b.push(lds, "2", tcpListener(t, "a", "b"), httpListener(t, "r"))
	c2 := b.push(cds, "2", edsCluster("a"), edsCluster("b"))
	b.noAck(100*time.Millisecond, "cluster b before its endpoints")
	if n := b.appliedCount(); n != 1 {
		t.Fatalf("a configuration with dangling references was applied (%d applied)", n)
	}
	e2 := b.push(eds, "2", load("a"), load("b"))
	got := b.acks(4)
	for _, n := range []string{r2, l2, c2, e2} {
		if d, ok := got[n]; !ok || d != "" {
			t.Errorf("response %s: not acknowledged when applied: %v", n, got)
		}
	}
	if n := b.appliedCount(); n != 2 {
		t.Fatalf("the four types of one change gave %d apply calls, want one", n-1)
	}
	if r := b.last(); names(r.Clusters) != "a,b" || len(r.Endpoints) != 2 || r.Dangling() != nil {
		t.Errorf("applied clusters %s, %d loads: %v", names(r.Clusters), len(r.Endpoints), r.Dangling())
	}

	// Removing b: CDS and EDS first, while the routes still send to it.
	c3 := b.push(cds, "3", edsCluster("a"))
	e3 := b.push(eds, "3", load("a"))
	b.noAck(100*time.Millisecond, "cluster b removed while routes send to it")
	l3 := b.push(lds, "3", tcpListener(t, "a"), httpListener(t, "r"))
	b.noAck(100*time.Millisecond, "cluster b removed while route r sends to it")
	r3 := b.push(rds, "3", routeTo("r", "a"))
	got = b.acks(4)
	for _, n := range []string{c3, e3, l3, r3} {
		if d, ok := got[n]; !ok || d != "" {
			t.Errorf("response %s: not acknowledged: %v", n, got)
		}
	}
	if r := b.last(); b.appliedCount() != 3 || names(r.Clusters) != "a" || r.Dangling() != nil {
		t.Errorf("after the removal: %d applied, clusters %s, %v", b.appliedCount(), names(r.Clusters), r.Dangling())
	}

	// A change that needs only one type goes through at once.
	c4 := b.push(cds, "4", edsCluster("a"))
	if got := b.acks(1); got[c4] != "" {
		t.Errorf("a consistent change: %v", got)
	}
	// The same version again is acknowledged without a call.
	c5 := b.push(cds, "4", edsCluster("a"))
	if got := b.acks(1); got[c5] != "" || b.appliedCount() != 4 {
		t.Errorf("an unchanged version: %v, %d applied", got, b.appliedCount())
	}
	st := b.client.Stats()
	t.Logf("stats: %+v", st)
	if st.Forced != 0 || st.Held == 0 || st.Applied != 4 {
		t.Errorf("stats %+v: want 4 applied, some held, none forced", st)
	}

	// A refused change NACKs every response it was made of.
	b.mu.Lock()
	b.reject = errors.New("no thanks")
	b.mu.Unlock()
	r6 := b.push(rds, "6", routeTo("r", "a", "c"))
	c6 := b.push(cds, "6", edsCluster("a"), edsCluster("c"))
	e6 := b.push(eds, "6", load("a"), load("c"))
	got = b.acks(3)
	for _, n := range []string{r6, c6, e6} {
		if got[n] != "no thanks" {
			t.Errorf("response %s of a refused change: %q, want a NACK (%v)", n, got[n], got)
		}
	}
	if b.appliedCount() != 4 {
		t.Errorf("a refused change counted as applied")
	}
}

// TestHoldGivesUp checks that a configuration whose counterpart never
// comes is applied after MaxHold, and acknowledged then.
func TestHoldGivesUp(t *testing.T) {
	const maxHold = 300 * time.Millisecond
	b := newHoldBed(t, maxHold)
	b.push(resourcev3.ClusterType, "1", edsCluster("a"))
	b.push(resourcev3.EndpointType, "1", load("a"))
	b.push(resourcev3.ListenerType, "1", tcpListener(t, "a"))
	b.push(resourcev3.RouteType, "1")
	b.acks(4)
	begin := time.Now()
	n := b.push(resourcev3.ListenerType, "2", tcpListener(t, "gone"))
	got := b.acks(1)
	waited := time.Since(begin)
	t.Logf("a listener sending to a missing cluster was applied after %v (MaxHold %v)", waited.Round(time.Millisecond), maxHold)
	if got[n] != "" || b.appliedCount() != 2 {
		t.Fatalf("ack %v, %d applied: want the held listener applied and acknowledged", got, b.appliedCount())
	}
	if err := b.last().Dangling(); err == nil || !strings.Contains(err.Error(), `cluster "gone" (listener tcp)`) {
		t.Errorf("Dangling of the forced configuration: %v", err)
	}
	if st := b.client.Stats(); st.Forced != 1 {
		t.Errorf("stats %+v: want one forced", st)
	}
}

func TestDangling(t *testing.T) {
	r := ProxyResources{
		Listeners: []*listenerv3.Listener{httpListener(t, "r"), httpListener(t, "missing-rds"), tcpListener(t, "a", "x")},
		Routes:    []*routev3.RouteConfiguration{routeTo("r", "a", "y")},
		Clusters:  []*clusterv3.Cluster{edsCluster("a"), edsCluster("z"), {Name: "static"}},
		Endpoints: []*endpointv3.ClusterLoadAssignment{load("a")},
	}
	err := r.Dangling()
	for _, want := range []string{`route configuration "missing-rds"`, `cluster "x" (listener tcp)`, `cluster "y" (route configuration r)`, `endpoints of "z"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Dangling: %v, want it to name %s", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "static") {
		t.Errorf("a cluster without EDS needs no endpoints: %v", err)
	}
	ok := ProxyResources{
		Listeners: []*listenerv3.Listener{httpListener(t, "r")},
		Routes:    []*routev3.RouteConfiguration{routeTo("r", "a")},
		Clusters:  []*clusterv3.Cluster{edsCluster("a")},
		Endpoints: []*endpointv3.ClusterLoadAssignment{load("a")},
	}
	if err := ok.Dangling(); err != nil {
		t.Errorf("a resolved configuration: %v", err)
	}
}
