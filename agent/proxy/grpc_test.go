// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// healthServer fails its first `fail` Checks with UNAVAILABLE, and streams
// three statuses on Watch.
type healthServer struct {
	healthpb.UnimplementedHealthServer
	fail  int64
	calls atomic.Int64
}

func (s *healthServer) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if s.calls.Add(1) <= s.fail {
		return nil, status.Error(codes.Unavailable, "not yet")
	}
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-served-by", "health"))
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (s *healthServer) Watch(_ *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	for _, st := range []healthpb.HealthCheckResponse_ServingStatus{
		healthpb.HealthCheckResponse_NOT_SERVING, healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_SERVICE_UNKNOWN,
	} {
		if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return status.Error(codes.Aborted, "done watching")
}

// TestGRPC runs grpc-go through the proxy: a unary call retried on
// UNAVAILABLE (with trailers passed through), a server stream, and a
// method no route takes.
func TestGRPC(t *testing.T) {
	w := buildWorld(t, "s0", "testdata/grpc.yaml")
	h := newHarness(t, w, Config{})
	h.load(nodeID("demo", clientNode))
	srv := grpc.NewServer()
	hs := &healthServer{fail: 2}
	healthpb.RegisterHealthServer(srv, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	h.route("health_shop", 9090, ln.Addr().String())

	src := h.caller("demo", clientNode, "health.shop.svc.cluster.local", 9090)
	conn, err := grpc.NewClient("passthrough:///health.shop.svc.cluster.local:9090",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
			return d.DialContext(ctx, "tcp", h.p.OutboundAddr().String())
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var trailer metadata.MD
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("check: %v %v", resp, err)
	}
	retries := h.p.m.retries.WithLabelValues(nodeID("demo", clientNode), "cds_egress_demo_health_shop_grpc_9090")
	t.Logf("check served after %d calls; trailer %v", hs.calls.Load(), trailer)
	if hs.calls.Load() != 3 || testutil.ToFloat64(retries) != 2 || len(trailer.Get("x-served-by")) != 1 {
		t.Errorf("want 3 calls (2 retried) and the x-served-by trailer; got %d calls, trailer %v", hs.calls.Load(), trailer)
	}

	// Too many failures: the status comes through after 3 retries.
	hs.calls.Store(0)
	hs.fail = 10
	_, err = client.Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unavailable || hs.calls.Load() != 4 {
		t.Errorf("check after exhausted retries: %v after %d calls, want UNAVAILABLE after 4", err, hs.calls.Load())
	}

	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []healthpb.HealthCheckResponse_ServingStatus
	for {
		m, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.Aborted {
				t.Errorf("watch ended with %v, want ABORTED from the server", err)
			}
			break
		}
		got = append(got, m.GetStatus())
	}
	if len(got) != 3 {
		t.Errorf("watch: got %v, want 3 statuses", got)
	}

	// A method no route takes: UNIMPLEMENTED from the proxy (404).
	err = conn.Invoke(ctx, "/grpc.health.v1.Health/List", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("unrouted method: got %v, want UNIMPLEMENTED", err)
	}
}
