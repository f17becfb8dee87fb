// SPDX-License-Identifier: Apache-2.0

package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weft-mesh/weft/controlplane/registry"
	"github.com/weft-mesh/weft/controlplane/xds"
	"github.com/weft-mesh/weft/controlplane/xds/server"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

func start(t *testing.T, cfg server.Config) (*server.Server, *grpc.ClientConn) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	cache := server.NewCache(nil)
	snap, err := xds.NewSnapshot(nil, &nodeapiv1.NodeState{Node: "node-a", Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.SetSnapshot(context.Background(), "node-a", snap); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, cfg, server.Deps{Cache: cache, Registry: reg.Service()}, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	conn, err := grpc.NewClient(s.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s, conn
}

func TestDeltaADS(t *testing.T) {
	s, conn := start(t, server.Config{Listen: "127.0.0.1:0"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a hang guard
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "node-a"}, TypeUrl: xds.NodeStateType}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResources()) != 1 || resp.GetResources()[0].GetName() != "node-a" {
		t.Fatalf("delta response: %v", resp)
	}
	if !s.Connected()["node-a"] {
		t.Error("node-a is not connected")
	}
	_ = st.CloseSend()
}

func TestStreamNeedsNodeID(t *testing.T) {
	_, conn := start(t, server.Config{Listen: "127.0.0.1:0"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: xds.NodeStateType}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "node.id") {
		t.Errorf("a stream without node id: %v", err)
	}
}

func TestBearerToken(t *testing.T) {
	_, conn := start(t, server.Config{Listen: "127.0.0.1:0", BearerTokens: []string{"s3cret"}})
	c := nodeapiv1.NewRegistryClient(conn)
	req := &nodeapiv1.RegisterRequest{Node: "node-a"}
	if _, err := c.Register(context.Background(), req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without a token: %v", err)
	}
	bad := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer nope")
	if _, err := c.Register(bad, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("with a wrong token: %v", err)
	}
	good := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer s3cret")
	if _, err := c.Register(good, req); err != nil {
		t.Errorf("with the token: %v", err)
	}
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(context.Background())
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("a stream without a token: %v", err)
	}
}

func TestOpenOnlyOnLoopback(t *testing.T) {
	_, err := server.New(context.Background(), server.Config{Listen: "0.0.0.0:0"}, server.Deps{Cache: server.NewCache(nil)}, nil)
	if err == nil || !strings.Contains(err.Error(), "open to anyone") {
		t.Fatalf("an open server on 0.0.0.0: %v", err)
	}
	s, err := server.New(context.Background(), server.Config{Listen: "0.0.0.0:0", BearerTokens: []string{"t"}}, server.Deps{Cache: server.NewCache(nil)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
