// SPDX-License-Identifier: Apache-2.0

package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"

	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

// Registrar defaults.
const (
	// DefaultRenewal is the renewal interval until the controller told the
	// lease (a third of the controller's default 30s lease).
	DefaultRenewal = 10 * time.Second
	// registerTimeout bounds one registration call.
	registerTimeout = 10 * time.Second
)

// RegistrarConfig configures a Registrar.
type RegistrarConfig struct {
	// NodeID is the node registered, the agent's ADS node id.
	NodeID string
	// TunnelAddress is the node proxy's tunnel listener (ip:port reachable
	// from other nodes), registered with the node; empty: none.
	TunnelAddress string
	// Instances returns the node's instances now; ok=false means they are
	// not known yet (the agent has not discovered its workloads), and the
	// registrar waits for the next Kick rather than register too few.
	Instances func() (instances []*nodeapiv1.Instance, ok bool)
	// MinBackoff and MaxBackoff bound the retry delay after a failure;
	// defaults DefaultMinBackoff and DefaultRenewal. The delay never
	// exceeds a third of the lease.
	MinBackoff, MaxBackoff time.Duration
}

// Registrar keeps a node's registration in the controller's endpoint
// registry: it registers the node's instances, renews them every third of
// the lease the controller grants, registers again at once on Kick (the
// instances changed, or the ADS stream reconnected, perhaps to a restarted
// controller), and retries with backoff after a failure. It never
// deregisters: a stopped agent's workloads keep running, and its lease
// runs out on its own if the agent does not come back.
type Registrar struct {
	client nodeapiv1.RegistryClient
	cfg    RegistrarConfig
	log    *slog.Logger
	kick   chan struct{}

	mu         sync.Mutex
	lease      time.Duration
	registered int
}

// NewRegistrar returns a Registrar over conn (Dial); Run starts it.
func NewRegistrar(conn grpc.ClientConnInterface, cfg RegistrarConfig, log *slog.Logger) (*Registrar, error) {
	if conn == nil || cfg.NodeID == "" || cfg.Instances == nil {
		return nil, errors.New("new registrar: a connection, a node id and an instances function are required")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultRenewal
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registrar{
		client: nodeapiv1.NewRegistryClient(conn), cfg: cfg,
		log: log.With(keyNodeID, cfg.NodeID), kick: make(chan struct{}, 1),
	}, nil
}

// Kick registers again as soon as possible.
func (r *Registrar) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Registered counts successful registrations and renewals.
func (r *Registrar) Registered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.registered
}

// Run registers and renews until ctx ends, which returns nil.
func (r *Registrar) Run(ctx context.Context) error {
	backoff := r.cfg.MinBackoff
	failing := false
	for {
		var wait <-chan time.Time
		ins, ok := r.cfg.Instances()
		if ok {
			lease, err := r.register(ctx, ins)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				d := backoff/2 + rand.N(backoff/2+1)
				if !failing {
					r.log.Warn("register endpoints; retrying", keyError, err, keyRetryIn, d)
				}
				failing = true
				wait = time.After(d)
				backoff = min(2*backoff, r.cfg.MaxBackoff, max(lease/3, r.cfg.MinBackoff))
			default:
				if failing {
					r.log.Info("registered endpoints again", keyCount, len(ins))
				}
				failing = false
				backoff = r.cfg.MinBackoff
				wait = time.After(lease / 3)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wait: // nil while the instances are unknown
		case <-r.kick:
		}
	}
}

// register sends one registration and returns the lease to renew within
// (the last known one after a failure).
func (r *Registrar) register(ctx context.Context, ins []*nodeapiv1.Instance) (time.Duration, error) {
	r.mu.Lock()
	lease := r.lease
	r.mu.Unlock()
	if lease <= 0 {
		lease = 3 * DefaultRenewal
	}
	cctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	resp, err := r.client.Register(cctx, &nodeapiv1.RegisterRequest{Node: r.cfg.NodeID, Instances: ins, TunnelAddress: r.cfg.TunnelAddress})
	if err != nil {
		return lease, fmt.Errorf("register node %s: %w", r.cfg.NodeID, err)
	}
	if l := resp.GetLease().AsDuration(); l > 0 {
		lease = l
	}
	r.mu.Lock()
	r.lease = lease
	r.registered++
	r.mu.Unlock()
	r.log.Debug("registered endpoints", keyCount, len(ins))
	return lease, nil
}
