// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/weft-mesh/weft/agent/datapath"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
	"github.com/weft-mesh/weft/pkg/xdsclient"
)

// ErrNotSupported is returned where the agent needs Linux.
var ErrNotSupported = errors.New("not supported on this platform")

// Log keys.
const (
	keyComponent = "component"
	keyError     = "error"
	keyPath      = "path"
	keyVersion   = "version"
	keyNode      = "node"
	keyWorkload  = "workload"
	keyReason    = "reason"
	keyAddr      = "addr"
	keyRetryIn   = "retryIn"
	keyServer    = "server"
	keySysctl    = "sysctl"
	keyValue     = "value"
	keyWas       = "was"
)

// Datapath is what the agent needs of the datapath loader
// (*datapath.Datapath). The agent owns it once New succeeds: Run, or Close,
// closes it, which leaves its programs attached and its maps pinned.
type Datapath interface {
	// Reconcile makes the maps equal to the whole state s, by difference.
	Reconcile(ctx context.Context, s datapath.State) (datapath.Changes, error)
	// Counters returns the decision counters, summed over CPUs.
	Counters() (datapath.Counters, error)
	// ReadEvents calls fn for every connection report until ctx ends.
	ReadEvents(ctx context.Context, fn func(datapath.ConnEvent)) error
	// Dump describes the maps, for /debug/datapath.
	Dump() (string, error)
	// Close releases the loader's handles without detaching or unpinning.
	Close() error
}

// DNS is the agent's DNS responder (*dns.Server).
type DNS interface {
	// SetRecords replaces the mesh names the responder answers.
	SetRecords(records map[string][]netip.Addr)
	// Run answers queries until ctx ends.
	Run(ctx context.Context) error
}

// Deps are the agent's collaborators. Tests pass fakes; NewDefault builds
// the real ones from the Config.
type Deps struct {
	// Datapath is required.
	Datapath Datapath
	// DNS is required.
	DNS DNS
	// Sources discover workloads, the first winning where two name the same
	// cgroup; all win over the state file. Nil: the Config's VM workloads.
	Sources []WorkloadSource
	// PollInterval is how often the state file and the sources are checked
	// (default 1s).
	PollInterval time.Duration
	// Debounce is how long a reconcile waits for further changes (default
	// 200ms).
	Debounce time.Duration
	// Resync is how often the whole state is reconciled without a change,
	// repairing drift (default 1m).
	Resync time.Duration
	// Collectors are more metrics for the agent's registry (the DNS
	// responder's, say).
	Collectors []prometheus.Collector
}

// Agent keeps this node's datapath equal to the desired state: the state
// file merged with the discovered workloads. See the package doc.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	dp      Datapath
	dns     DNS
	sources []WorkloadSource
	dnsAddr netip.AddrPort
	poll    time.Duration
	bounce  time.Duration
	resync  time.Duration

	// Written by the watcher (and the ADS client), read by the reconciler.
	mu        sync.Mutex
	ns        *nodeapiv1.NodeState // last good node state; nil before the first
	nsWls     []Workload           // ns's workloads, without cgroup ids (ADS)
	nsGen     uint64               // counts node states taken from ADS
	workloads []Workload           // merged, with cgroup ids
	trigger   chan struct{}
	nsChanged chan struct{} // the ADS client took a node state
	polled    atomic.Bool   // the watcher has merged the workloads once

	// The controller connection, with XDS.Server.
	xconn     *grpc.ClientConn
	xclient   *xdsclient.Client
	registrar *xdsclient.Registrar
	nodeAddr  netip.Addr

	tr      *translator // the reconciler's
	applied atomic.Pointer[desired]
	ready   atomic.Bool
	// named is closed once applied holds a state, which names the
	// connection reports; see readEvents.
	named     chan struct{}
	namedOnce sync.Once

	reg     *prometheus.Registry
	metrics *agentMetrics
	tel     *telemetry
	srv     *http.Server
	ln      net.Listener

	closeOnce sync.Once
	closeErr  error
}

// New checks cfg, binds the HTTP listener and returns an agent that Run
// starts. It fills the constant defaults of cfg; the host-dependent ones are
// SetDefaults's. From a successful New on, the agent owns deps.Datapath.
func New(cfg Config, deps Deps, log *slog.Logger) (*Agent, error) {
	cfg.setConstDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if deps.Datapath == nil || deps.DNS == nil {
		return nil, errors.New("new agent: Deps.Datapath and Deps.DNS are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dnsAddr, _ := netip.ParseAddrPort(cfg.DNS.Listen) // checked by Validate
	a := &Agent{
		cfg:     cfg,
		log:     log,
		dp:      deps.Datapath,
		dns:     deps.DNS,
		sources: deps.Sources,
		dnsAddr: netip.AddrPortFrom(dnsAddr.Addr().Unmap(), dnsAddr.Port()),
		poll:    cmpOr(deps.PollInterval, time.Second),
		bounce:  cmpOr(deps.Debounce, 200*time.Millisecond),
		resync:  cmpOr(deps.Resync, time.Minute),
		trigger: make(chan struct{}, 1),
		named:   make(chan struct{}),
		tr:      newTranslator(),
		reg:     prometheus.NewRegistry(),
		tel:     newTelemetry(cfg.Telemetry.MaxLabelSets, cfg.Telemetry.MaxConnections),
	}
	if a.sources == nil {
		a.sources = []WorkloadSource{NewVMSource(cfg.CgroupRoot, cfg.Workloads)}
	}
	a.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newDatapathCollector(a.dp.Counters),
		a.tel,
	)
	for _, c := range deps.Collectors {
		if err := a.reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	a.metrics = newAgentMetrics(a.reg)
	if err := a.newXDS(); err != nil {
		return nil, err
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", cfg.MetricsListen)
	if err != nil {
		if a.xconn != nil {
			_ = a.xconn.Close()
		}
		return nil, fmt.Errorf("listen on %s: %w", cfg.MetricsListen, err)
	}
	a.ln = ln
	a.srv = &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return a, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Addr is the address of the metrics and debug server.
func (a *Agent) Addr() net.Addr { return a.ln.Addr() }

// Registry is the agent's metrics registry.
func (a *Agent) Registry() *prometheus.Registry { return a.reg }

// Ready reports whether the datapath holds a reconciled state.
func (a *Agent) Ready() bool { return a.ready.Load() }

// Run runs the agent until ctx ends: the state watcher, the reconciler, the
// DNS responder, the telemetry reader and the HTTP server. It returns once
// all of them stopped, after closing the datapath, which leaves the programs
// attached and the maps pinned: workloads keep their last state while the
// agent is away, and the next agent adopts and reconciles it. Run returns
// nil when ctx ended, or the first error that stopped the agent.
func (a *Agent) Run(ctx context.Context) error {
	defer func() { _ = a.Close() }()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.watch(ctx) })
	g.Go(func() error { return a.reconcileLoop(ctx) })
	g.Go(func() error {
		err := a.dns.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("stopped")
		}
		return fmt.Errorf("dns: %w", err)
	})
	g.Go(func() error { return a.readEvents(ctx) })
	if a.xclient != nil {
		g.Go(func() error { return a.xclient.Run(ctx) })
		g.Go(func() error { return a.registrar.Run(ctx) })
	}
	g.Go(func() error {
		err := a.srv.Serve(a.ln)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve http: %w", err)
	})
	g.Go(func() error {
		<-ctx.Done()
		a.ready.Store(false)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return a.srv.Shutdown(sctx)
	})
	if a.xclient != nil {
		a.log.Info("agent running", keyNode, a.cfg.NodeName, keyAddr, a.ln.Addr().String(), keyServer, a.cfg.XDS.Server, keyPath, a.cfg.XDS.CacheFile)
	} else {
		a.log.Info("agent running", keyNode, a.cfg.NodeName, keyAddr, a.ln.Addr().String(), keyPath, a.cfg.StateFile)
	}
	err := g.Wait()
	a.log.Info("agent stopped; datapath programs stay attached with the last state")
	return err
}

// Close closes the HTTP listener, the DNS responder's sockets (if it has a
// Close method) and the datapath (which stays attached and pinned). Run
// calls it; call it only for an agent that never runs. It is idempotent.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		if err := a.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			a.closeErr = err
		}
		if a.xconn != nil {
			if err := a.xconn.Close(); err != nil {
				a.closeErr = errors.Join(a.closeErr, fmt.Errorf("close controller connection: %w", err))
			}
		}
		if c, ok := a.dns.(interface{ Close() }); ok {
			c.Close() // a responder that never ran still holds its sockets
		}
		if err := a.dp.Close(); err != nil {
			a.closeErr = errors.Join(a.closeErr, fmt.Errorf("close datapath: %w", err))
		}
	})
	return a.closeErr
}

// readEvents feeds the datapath's connection reports to the telemetry,
// restarting the reader with backoff if it fails: telemetry is not worth
// stopping the agent for.
//
// It starts reading only once a state has been applied: the reports are
// named from the applied state, and after a restart the ring buffer holds
// the reports of every connection that closed while no agent ran, which
// would otherwise all be counted as "unknown". They wait in the ring buffer
// meanwhile (a full one loses reports and counts them).
func (a *Agent) readEvents(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-a.named:
	}
	backoff := time.Second
	for {
		err := a.dp.ReadEvents(ctx, a.observe)
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("read connection reports", keyError, err, keyRetryIn, backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// observe counts one connection report under the names of the applied
// state.
func (a *Agent) observe(ev datapath.ConnEvent) {
	a.tel.observe(ev, a.connLabels)
}

func (a *Agent) connLabels(workloadID, serviceID uint32) connLabels {
	l := connLabels{labelUnknown, labelUnknown, labelUnknown}
	d := a.applied.Load()
	if d == nil {
		return l
	}
	if w, ok := d.workloadNames[workloadID]; ok {
		l.mesh, l.source = w.mesh, w.virtualNode
	}
	if s, ok := d.serviceNames[serviceID]; ok {
		l.destination = s.name
		if l.mesh == labelUnknown && s.mesh != "" {
			l.mesh = s.mesh
		}
	}
	return l
}
