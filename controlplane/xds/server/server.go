// SPDX-License-Identifier: Apache-2.0

package server

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	deltav3 "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/weft-mesh/weft/controlplane/xds"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

// DefaultListen is the address the command serves xDS on by default.
const DefaultListen = "127.0.0.1:7481"

// gRPC tuning, set explicitly (style item 13) rather than left to grpc-go's
// defaults.
const (
	// maxConcurrentStreams bounds the streams of one client connection. A
	// node opens one ADS stream for its agent and one per virtual node its
	// proxy hosts, plus short registry calls; 1000 leaves room for any node
	// while one misbehaving client cannot exhaust the server.
	maxConcurrentStreams = 1000
	// keepaliveTime: the server pings a connection idle this long, so that
	// a node that vanished (power loss, partition) is noticed and its
	// streams closed within keepaliveTime+keepaliveTimeout.
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
	// keepaliveMinTime is the shortest ping interval a client may use
	// (pkg/xdsclient pings every 30s); faster pingers are disconnected
	// with GOAWAY ENHANCE_YOUR_CALM. Pings without an active stream are
	// allowed: an agent between registrations holds an idle connection.
	keepaliveMinTime = 15 * time.Second
	// maxRecvMsgSize bounds a request: discovery requests are small, and a
	// registration of a node's instances stays far below it.
	maxRecvMsgSize = 4 << 20
	// stopGrace is how long Run waits for calls in flight at shutdown.
	stopGrace = 5 * time.Second
)

// Log keys.
const (
	keyNodeID  = "nodeID"
	keyStream  = "stream"
	keyType    = "type"
	keyVersion = "version"
	keyError   = "error"
	keyAddr    = "addr"
	keyDelta   = "delta"
)

// Config configures the server.
type Config struct {
	// Listen is the address to serve on ("127.0.0.1:7481").
	Listen string
	// BearerTokens are the accepted tokens; none means the server is open.
	BearerTokens []string
	// TLS, when set, makes the server speak TLS; with ClientCAs and
	// ClientAuth VerifyClientCertIfGiven, a verified client certificate is
	// a credential.
	TLS *tls.Config
	// AllowUnauthenticated allows an open server on a non-loopback address.
	AllowUnauthenticated bool
}

// Deps are the server's collaborators.
type Deps struct {
	// Cache is the snapshot cache to serve (NewCache); required.
	Cache cachev3.SnapshotCache
	// Registry is the endpoint registry service; nil serves none.
	Registry nodeapiv1.RegistryServer
	// Identity is the mesh CA service; nil serves none.
	Identity nodeapiv1.IdentityServer
	// Registerer takes the server's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// NewCache returns the ADS snapshot cache the server and the Syncer share:
// ADS ordering, one snapshot per node id (cachev3.IDHash).
func NewCache(log *slog.Logger) cachev3.SnapshotCache {
	return cachev3.NewSnapshotCache(true, cachev3.IDHash{}, xds.Logger{Log: log})
}

// Server serves ADS and the registry.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	ln      net.Listener
	grpc    *grpc.Server
	metrics *metrics

	mu    sync.Mutex
	sotw  map[int64]string // stream id → node id
	delta map[int64]string
	nodes map[string]int // node id → open streams
}

// New checks cfg and binds the listener; Run serves.
func New(ctx context.Context, cfg Config, deps Deps, log *slog.Logger) (*Server, error) {
	if deps.Cache == nil {
		return nil, errors.New("new xds server: Deps.Cache is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	open := len(cfg.BearerTokens) == 0 && (cfg.TLS == nil || cfg.TLS.ClientCAs == nil)
	if open && !cfg.AllowUnauthenticated && !isLoopback(ln.Addr()) {
		_ = ln.Close()
		return nil, fmt.Errorf("the xDS server on %s would be open to anyone: configure auth (bearer tokens or client certificates), listen on loopback, or set auth.allowUnauthenticated", ln.Addr())
	}
	s := &Server{
		cfg: cfg, deps: deps, log: log, ln: ln,
		sotw: map[int64]string{}, delta: map[int64]string{}, nodes: map[string]int{},
		metrics: newMetrics(deps.Registerer),
	}
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
	}
	if !open {
		opts = append(opts, grpc.ChainUnaryInterceptor(s.authUnary), grpc.ChainStreamInterceptor(s.authStream))
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	s.grpc = grpc.NewServer(opts...)
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Connected returns the node ids with an open stream.
func (s *Server) Connected() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]bool, len(s.nodes))
	for id := range s.nodes {
		out[id] = true
	}
	return out
}

// Run serves until ctx ends, then ends the streams and stops; it returns
// nil then, or the error that stopped serving.
func (s *Server) Run(ctx context.Context) error {
	// The xDS server's context ends every ADS stream when Run's does, so
	// that GracefulStop does not wait for streams that never end.
	xctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cb := callbacks{s}
	logger := xds.Logger{Log: s.log}
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(s.grpc, ads{
		sotw:  sotwv3.NewServer(xctx, s.deps.Cache, cb, sotwv3.WithOrderedADS(), sotwv3.WithLogger(logger)),
		delta: deltav3.NewServer(xctx, s.deps.Cache, cb, deltav3.WithLogger(logger)),
	})
	if s.deps.Registry != nil {
		nodeapiv1.RegisterRegistryServer(s.grpc, s.deps.Registry)
	}
	if s.deps.Identity != nil {
		nodeapiv1.RegisterIdentityServer(s.grpc, s.deps.Identity)
	}
	served := make(chan error, 1)
	go func() { served <- s.grpc.Serve(s.ln) }()
	s.log.Info("xds server serving", keyAddr, s.ln.Addr().String())
	select {
	case err := <-served:
		return fmt.Errorf("serve xds: %w", err)
	case <-ctx.Done():
	}
	cancel()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		s.grpc.Stop()
		<-stopped
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve xds: %w", err)
	}
	return nil
}

// Close releases the listener of a server that never ran.
func (s *Server) Close() error {
	s.grpc.Stop()
	if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// ads serves both flavours of ADS. It stands in for go-control-plane's
// server/v3, which also serves every per-type and rate-limit service and
// thereby pulls in the go-control-plane/ratelimit module.
type ads struct {
	discoverygrpc.UnimplementedAggregatedDiscoveryServiceServer
	sotw  sotwv3.Server
	delta deltav3.Server
}

func (a ads) StreamAggregatedResources(s discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.sotw.StreamHandler(s, resourcev3.AnyType)
}

func (a ads) DeltaAggregatedResources(s discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.delta.DeltaStreamHandler(s, resourcev3.AnyType)
}

// callbacks are the server's go-control-plane callbacks, for both
// flavours of ADS.
type callbacks struct{ s *Server }

var (
	_ sotwv3.Callbacks  = callbacks{}
	_ deltav3.Callbacks = callbacks{}
)

func (callbacks) OnStreamOpen(context.Context, int64, string) error { return nil }

func (c callbacks) OnStreamClosed(id int64, _ *corev3.Node) { c.s.closed(id, false) }

func (c callbacks) OnStreamRequest(id int64, req *discoverygrpc.DiscoveryRequest) error {
	return c.s.onRequest(id, req)
}

func (callbacks) OnStreamResponse(context.Context, int64, *discoverygrpc.DiscoveryRequest, *discoverygrpc.DiscoveryResponse) {
}

func (callbacks) OnDeltaStreamOpen(context.Context, int64, string) error { return nil }

func (c callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) { c.s.closed(id, true) }

func (c callbacks) OnStreamDeltaRequest(id int64, req *discoverygrpc.DeltaDiscoveryRequest) error {
	return c.s.onDeltaRequest(id, req)
}

func (callbacks) OnStreamDeltaResponse(int64, *discoverygrpc.DeltaDiscoveryRequest, *discoverygrpc.DeltaDiscoveryResponse) {
}

// onRequest pins the stream's node id and logs rejections.
func (s *Server) onRequest(id int64, req *discoverygrpc.DiscoveryRequest) error {
	if err := s.identify(id, req.GetNode(), false); err != nil {
		return err
	}
	if d := req.GetErrorDetail(); d != nil {
		s.rejected(id, false, req.GetTypeUrl(), req.GetVersionInfo(), d.GetMessage())
	}
	return nil
}

func (s *Server) onDeltaRequest(id int64, req *discoverygrpc.DeltaDiscoveryRequest) error {
	if err := s.identify(id, req.GetNode(), true); err != nil {
		return err
	}
	if d := req.GetErrorDetail(); d != nil {
		s.rejected(id, true, req.GetTypeUrl(), "", d.GetMessage())
	}
	return nil
}

func (s *Server) rejected(id int64, delta bool, typeURL, version, msg string) {
	s.mu.Lock()
	node := s.streams(delta)[id]
	s.mu.Unlock()
	s.metrics.nacks.WithLabelValues(typeURL).Inc()
	s.log.Warn("client rejected configuration", keyNodeID, node, keyStream, id, keyDelta, delta,
		keyType, typeURL, keyVersion, version, keyError, msg)
}

func (s *Server) streams(delta bool) map[int64]string {
	if delta {
		return s.delta
	}
	return s.sotw
}

// identify records the node id of a stream's first request and refuses a
// stream without one or one that changes it. go-control-plane fills in the
// first request's node on later requests that carry none.
func (s *Server) identify(id int64, node *corev3.Node, delta bool) error {
	nodeID := node.GetId()
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.streams(delta)
	cur, known := m[id]
	switch {
	case known && nodeID != "" && nodeID != cur:
		return status.Errorf(codes.InvalidArgument, "stream of node %q asked as node %q", cur, nodeID)
	case known:
		return nil
	case nodeID == "":
		return status.Error(codes.InvalidArgument, "the first request of a stream must carry node.id")
	}
	m[id] = nodeID
	s.nodes[nodeID]++
	s.metrics.streams.WithLabelValues(streamKind(delta)).Inc()
	s.log.Info("xds stream opened", keyNodeID, nodeID, keyStream, id, keyDelta, delta)
	return nil
}

func (s *Server) closed(id int64, delta bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.streams(delta)
	nodeID, ok := m[id]
	if !ok {
		return
	}
	delete(m, id)
	if s.nodes[nodeID]--; s.nodes[nodeID] <= 0 {
		delete(s.nodes, nodeID)
	}
	s.metrics.streams.WithLabelValues(streamKind(delta)).Dec()
	s.log.Info("xds stream closed", keyNodeID, nodeID, keyStream, id, keyDelta, delta)
}

func streamKind(delta bool) string {
	if delta {
		return "delta"
	}
	return "sotw"
}

func (s *Server) authUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.authenticate(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.authenticate(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// authenticate accepts a call with a configured bearer token or a verified
// client certificate.
func (s *Server) authenticate(ctx context.Context) error {
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			return nil
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		tok, ok := strings.CutPrefix(v, "Bearer ")
		if !ok {
			continue
		}
		for _, want := range s.cfg.BearerTokens {
			if subtle.ConstantTimeCompare([]byte(tok), []byte(want)) == 1 {
				return nil
			}
		}
	}
	return status.Error(codes.Unauthenticated, "a bearer token or a client certificate is required")
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

type metrics struct {
	streams *prometheus.GaugeVec
	nacks   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_controller_xds_streams",
			Help: "Open ADS streams, by kind (sotw, delta).",
		}, []string{"kind"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_controller_xds_nacks_total",
			Help: "Configurations clients rejected, by type URL.",
		}, []string{"type"}),
	}
	if reg != nil {
		reg.MustRegister(m.streams, m.nacks)
	}
	return m
}
