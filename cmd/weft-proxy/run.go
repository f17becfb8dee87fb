// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	// The typed configs the translator's resources carry, for protojson.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/weft-mesh/weft/agent/proxy"
	"github.com/weft-mesh/weft/agent/proxy/cluster"
	"github.com/weft-mesh/weft/pkg/logging"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
	"github.com/weft-mesh/weft/pkg/version"
	"github.com/weft-mesh/weft/pkg/xdsclient"
)

// Defaults of the flags.
const (
	// defaultOutbound is the agent's default proxy address
	// (agent.DefaultProxyAddr), where the datapath redirects L7 traffic.
	defaultOutbound = "169.254.100.1:15001"
	defaultAdmin    = "127.0.0.1:15090"
	defaultPinPath  = "/sys/fs/bpf/weft"
	defaultCgroup   = "/sys/fs/cgroup"
	defaultCacheDir = "/var/lib/weft/proxy-xds"
)

const (
	keyFile  = "file"
	keyNode  = "node"
	keyCount = "count"
)

// options are the flags that are not the proxy's own Config.
type options struct {
	pinPath     string
	configDir   string
	nodeState   string
	cgroupRoot  string
	xdsServer   string
	tokenFile   string
	nodeID      string
	cacheDir    string
	gateways    []string
	plainTunnel bool
	mark        uint32
	pprofListen string
	showVersion bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		lf  logging.Flags
		cfg proxy.Config
		o   options
	)
	host, _ := os.Hostname()
	lf.Register(fs)
	fs.StringVar(&cfg.OutboundListen, "outbound-listen", defaultOutbound, "listener of redirected L7 connections (empty: none)")
	fs.StringVar(&cfg.AdminListen, "admin-listen", defaultAdmin, "address of /metrics, /ready and /config_dump (empty: none)")
	fs.BoolVar(&o.plainTunnel, "tunnel-plaintext", false, "serve and dial tunnels as plaintext h2c, without the mesh CA's mutual TLS and without caller authorization (tests, migration)")
	fs.StringVar(&cfg.TunnelListen, "tunnel-listen", "", "tunnel listener (host:port, e.g. :15008): other nodes' proxies CONNECT through it to local workloads, served by their inbound listeners (empty: none; the agent's proxy.tunnelAddress registers it)")
	fs.StringVar(&o.pinPath, "pin-path", defaultPinPath, "bpffs directory of the agent's pinned maps (original destinations)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", proxy.DefaultDrainTimeout, "how long in-flight requests may finish after SIGTERM")
	fs.IntVar(&cfg.RetryBufferBytes, "retry-buffer-bytes", proxy.DefaultRetryBufferBytes, "request body bytes kept for retries (larger bodies are not retried)")
	fs.StringVar(&o.xdsServer, "xds-server", "", "the controller's xDS address (host:port): configuration and workloads over ADS")
	fs.StringVar(&o.tokenFile, "xds-token-file", "", "file whose first line is the bearer token presented to the controller")
	fs.StringVar(&o.nodeID, "node-id", host, "this node's id on ADS, the agent's (its node name): its node state lists the workloads (empty: none, gateways only)")
	fs.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir, "directory of the last good configuration of every subscription (empty: none)")
	fs.Func("gateway", "node id of a virtual gateway to serve, mesh/<mesh>/virtualGateway/<name> (repeatable)", func(v string) error {
		if err := proxy.CheckGatewayID(v); err != nil {
			return err
		}
		o.gateways = append(o.gateways, v)
		return nil
	})
	fs.Func("mark", "SO_MARK of every upstream socket, so that the agent's proxy.mark exempts them from redirection (0: none; needs CAP_NET_ADMIN)", func(v string) error {
		m, err := strconv.ParseUint(v, 0, 32)
		if err != nil {
			return fmt.Errorf("want a 32-bit number (decimal or 0x hex), got %q", v)
		}
		o.mark = uint32(m)
		return nil
	})
	fs.StringVar(&o.configDir, "config-dir", "", "directory of *.json files, one per node id, as the translator renders them ({nodeId, listeners, routes, clusters, endpoints}; protojson), instead of ADS")
	fs.StringVar(&o.nodeState, "node-state", "", "node state (protojson weft.nodeapi.v1.NodeState) giving the workloads' cgroups and virtual nodes, instead of ADS")
	fs.StringVar(&o.cgroupRoot, "cgroup-root", defaultCgroup, "cgroup v2 directory the node state's cgroup paths are relative to (the agent's cgroupRoot)")
	fs.StringVar(&o.pprofListen, "pprof-listen", "", "address of net/http/pprof's /debug/pprof/ for profiling (empty: none; never expose it beyond the node)")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.showVersion {
		_, err := fmt.Fprintln(stdout, version.Version)
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	log, err := lf.Logger(stderr)
	if err != nil {
		return err
	}
	setGC(log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var conn *grpc.ClientConn
	if o.xdsServer != "" {
		if conn, err = o.dial(); err != nil {
			return err
		}
		// The connection closes after ADS.Run and Identities.Run returned
		// (g.Wait).
		defer conn.Close()
	}
	copts := cluster.Options{Registerer: reg, Mark: o.mark, Node: o.nodeID}
	deps := proxy.Deps{Registerer: reg, Gatherer: reg}
	var ids *proxy.Identities
	if conn != nil && !o.plainTunnel {
		// The tunnels between node proxies are mutual TLS with the
		// controller's mesh CA: every proxy dials them (a gateway too),
		// one with a tunnel listener also serves them.
		signer := o.nodeID
		if signer == "" {
			if signer, err = os.Hostname(); err != nil || signer == "" {
				signer = "gateway"
			}
		}
		if ids, err = proxy.NewIdentities(conn, signer, cfg.TunnelListen != "", log); err != nil {
			return err
		}
		copts.TunnelIdentity = ids
		if cfg.TunnelListen != "" {
			deps.Tunnel = ids
		}
	}
	clusters := cluster.NewManager(copts, log)
	defer clusters.Close()
	deps.Clusters = clusters
	if cfg.OutboundListen != "" {
		od, err := proxy.NewBPFOriginalDestination(o.pinPath)
		if err != nil {
			return fmt.Errorf("outbound listener needs the datapath's maps: %w", err)
		}
		defer od.Close()
		deps.OriginalDst = od
	}
	p, err := proxy.New(cfg, deps, log)
	if err != nil {
		return err
	}
	if o.configDir != "" {
		if err := loadConfigDir(p, o.configDir, log); err != nil {
			return err
		}
	}
	if o.nodeState != "" {
		w, err := loadWorkloads(o.nodeState, o.cgroupRoot)
		if err != nil {
			return err
		}
		p.SetWorkloads(w)
	}
	g, gctx := errgroup.WithContext(ctx)
	if conn != nil {
		ads, err := o.newADS(conn, p, ids, reg, log)
		if err != nil {
			return err
		}
		warm := ads.Warm()
		if ids != nil {
			// Nothing is served before the tunnels have their identities:
			// the listener's certificate and the callers' (hand-over safety).
			ids.Set(o.gateways)
			warm = ids.Ready(gctx, warm)
		}
		p.WaitFor(warm)
		g.Go(func() error { return ads.Run(gctx) })
	}
	if o.pprofListen != "" {
		if err := servePprof(gctx, g, o.pprofListen, log); err != nil {
			return err
		}
	}
	if ids != nil {
		g.Go(func() error { return ids.Run(gctx) })
	}
	g.Go(func() error { return clusters.Run(gctx) })
	g.Go(func() error { return p.Run(gctx) })
	return g.Wait()
}

// defaultGOGC is the proxy's GC target (GOGC) unless the environment sets
// one. The request path allocates a few KiB per request (net/http's
// request, header maps, contexts) over a small live heap, so with the
// runtime's 100 the collector ran every few thousand requests and took
// about 8% of the proxy's CPU at saturation; 400 runs it a quarter as
// often, for a heap that may grow to five times the live one before a
// collection (measured: 45 instead of 30 MiB resident under saturation;
// idle, with 1,000 services, unchanged at 54 MiB). GOGC and GOMEMLIMIT
// in the environment override it.
const defaultGOGC = 400

// setGC applies defaultGOGC when GOGC is not set.
func setGC(log *slog.Logger) {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	debug.SetGCPercent(defaultGOGC)
	log.Debug("gc target", "gogc", defaultGOGC)
}

// check reports flag combinations that make no sense.
func (o *options) check() error {
	var errs []error
	if o.xdsServer != "" {
		if o.configDir != "" || o.nodeState != "" {
			errs = append(errs, errors.New("-xds-server excludes -config-dir and -node-state: choose one source of configuration"))
		}
		if o.nodeID == "" && len(o.gateways) == 0 {
			errs = append(errs, errors.New("-xds-server needs -node-id or a -gateway"))
		}
	} else if o.tokenFile != "" || len(o.gateways) > 0 {
		errs = append(errs, errors.New("-xds-token-file and -gateway need -xds-server"))
	}
	return errors.Join(errs...)
}

// newADS dials the controller and builds the proxy's ADS wiring.
// dial connects to the controller (ADS, the mesh CA).
func (o *options) dial() (*grpc.ClientConn, error) {
	dc := xdsclient.DialConfig{Server: o.xdsServer}
	if o.tokenFile != "" {
		tok, err := readToken(o.tokenFile)
		if err != nil {
			return nil, err
		}
		dc.Token = tok
	}
	return xdsclient.Dial(dc)
}

func (o *options) newADS(conn *grpc.ClientConn, p *proxy.Proxy, ids *proxy.Identities, reg prometheus.Registerer, log *slog.Logger) (*proxy.ADS, error) {
	deps := proxy.ADSDeps{Conn: conn, Target: p, Registerer: reg}
	if ids != nil {
		deps.Identities = ids
	}
	ads, err := proxy.NewADS(proxy.ADSConfig{
		NodeID:     o.nodeID,
		Gateways:   o.gateways,
		CgroupRoot: o.cgroupRoot,
		CacheDir:   o.cacheDir,
	}, deps, log)
	if err != nil {
		return nil, err
	}
	log.Info("configuration from the controller", "server", o.xdsServer, keyNode, o.nodeID, "gateways", len(o.gateways), "cacheDir", o.cacheDir)
	return ads, nil
}

// readToken returns the first line of the token file.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read xds token: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	tok := strings.TrimSpace(line)
	if tok == "" {
		return "", fmt.Errorf("xds token file %s is empty", path)
	}
	return tok, nil
}

// nodeFile is one node id's resources as the translator's golden files
// render them.
type nodeFile struct {
	NodeID    string            `json:"nodeId"`
	Listeners []json.RawMessage `json:"listeners"`
	Routes    []json.RawMessage `json:"routes"`
	Clusters  []json.RawMessage `json:"clusters"`
	Endpoints []json.RawMessage `json:"endpoints"`
}

// loadConfigDir applies every *.json file of dir, in name order.
func loadConfigDir(p *proxy.Proxy, dir string, log *slog.Logger) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	slices.Sort(files)
	for _, f := range files {
		res, id, err := readNodeFile(f)
		if err != nil {
			return err
		}
		if err := p.Update(id, res); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		log.Info("configuration loaded", keyFile, f, keyNode, id)
	}
	return nil
}

func readNodeFile(path string) (proxy.Resources, string, error) {
	var res proxy.Resources
	b, err := os.ReadFile(path)
	if err != nil {
		return res, "", err
	}
	var nf nodeFile
	if err := json.Unmarshal(b, &nf); err != nil {
		return res, "", fmt.Errorf("%s: %w", path, err)
	}
	if nf.NodeID == "" {
		return res, "", fmt.Errorf("%s: no nodeId", path)
	}
	var errs []error
	res.Listeners = decodeAll(nf.Listeners, func() *listenerv3.Listener { return &listenerv3.Listener{} }, &errs)
	res.Routes = decodeAll(nf.Routes, func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} }, &errs)
	res.Clusters = decodeAll(nf.Clusters, func() *clusterv3.Cluster { return &clusterv3.Cluster{} }, &errs)
	res.Endpoints = decodeAll(nf.Endpoints, func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} }, &errs)
	if err := errors.Join(errs...); err != nil {
		return res, "", fmt.Errorf("%s: %w", path, err)
	}
	return res, nf.NodeID, nil
}

func decodeAll[T proto.Message](raw []json.RawMessage, mk func() T, errs *[]error) []T {
	out := make([]T, 0, len(raw))
	for _, r := range raw {
		m := mk()
		if err := protojson.Unmarshal(r, m); err != nil {
			*errs = append(*errs, err)
			continue
		}
		out = append(out, m)
	}
	return out
}

// loadWorkloads maps the node state's workloads to node ids by cgroup id
// (the inode of the cgroup v2 directory, what bpf_get_current_cgroup_id
// returns).
func loadWorkloads(path, cgroupRoot string) (map[uint64]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st nodeapiv1.NodeState
	if err := protojson.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[uint64]string{}
	var errs []error
	for _, w := range st.GetWorkloads() {
		fi, err := os.Stat(filepath.Join(cgroupRoot, w.GetCgroupPath()))
		if err != nil {
			errs = append(errs, fmt.Errorf("workload %d: %w", w.GetId(), err))
			continue
		}
		sys, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			errs = append(errs, fmt.Errorf("workload %d: no inode number", w.GetId()))
			continue
		}
		out[sys.Ino] = "mesh/" + w.GetMesh() + "/virtualNode/" + w.GetVirtualNode()
	}
	return out, errors.Join(errs...)
}
