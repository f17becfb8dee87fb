// SPDX-License-Identifier: Apache-2.0

package xds

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/weft-mesh/weft/controlplane/store"
)

// ErrEventsClosed is returned by Batcher.Run when the change stream ends
// (the store closed, or the watcher fell behind the store's history): the
// caller watches again, or re-lists on store.ErrCompacted.
var ErrEventsClosed = errors.New("change stream closed")

// Batcher defaults.
const (
	DefaultDebounce         = 100 * time.Millisecond
	DefaultEndpointDebounce = 10 * time.Millisecond
	DefaultMaxDelay         = time.Second
)

// BatcherConfig tunes a Batcher.
type BatcherConfig struct {
	// Debounce is the quiet time after a change before a rebuild starts;
	// every further change restarts it. 0 means DefaultDebounce.
	Debounce time.Duration
	// EndpointDebounce is the quiet time of a batch of endpoint signals
	// (events without a type: the registry or the DNS discovery changed),
	// which the Syncer applies incrementally. 0 means
	// DefaultEndpointDebounce, capped at Debounce.
	EndpointDebounce time.Duration
	// MaxDelay bounds the time from the first change of a batch to its
	// rebuild, however long changes keep coming. 0 means DefaultMaxDelay.
	MaxDelay time.Duration
}

// Validate checks the configuration.
func (c BatcherConfig) Validate() error {
	if c.Debounce < 0 || c.EndpointDebounce < 0 || c.MaxDelay < 0 {
		return errors.New("batcher: debounces and max delay must not be negative")
	}
	if c.MaxDelay > 0 && c.Debounce > c.MaxDelay {
		return fmt.Errorf("batcher: debounce %s exceeds max delay %s", c.Debounce, c.MaxDelay)
	}
	return nil
}

// Batch is what a batch of changes holds.
type Batch struct {
	// Rev is the revision of the last store change seen (0: none yet).
	Rev int64
	// Store is whether the batch has a store change; false means it has
	// only endpoint signals (events whose Type is 0).
	Store bool
}

// RebuildFunc rebuilds the snapshots a batch affects: every snapshot from
// the store as of at least revision b.Rev when b.Store, else those whose
// endpoints changed.
type RebuildFunc func(ctx context.Context, b Batch) error

// Batcher coalesces changes into rebuilds: a burst of store writes becomes
// one rebuild once the writes are quiet for Debounce, or after MaxDelay at
// the latest. Endpoint signals are batched alike on their own, with
// EndpointDebounce, into endpoint batches (Batch.Store false), even while
// a store batch is pending: an endpoint change never waits for a store
// change's debounce. A store batch's rebuild covers the endpoint signals
// pending with it.
type Batcher struct {
	cfg     BatcherConfig
	rebuild RebuildFunc
}

// NewBatcher returns a Batcher that calls rebuild.
func NewBatcher(cfg BatcherConfig, rebuild RebuildFunc) (*Batcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.EndpointDebounce == 0 {
		cfg.EndpointDebounce = min(DefaultEndpointDebounce, cfg.Debounce)
	}
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = max(DefaultMaxDelay, cfg.Debounce)
	}
	return &Batcher{cfg: cfg, rebuild: rebuild}, nil
}

// Run reads events (from store.Store.Watch) until ctx ends, which returns
// nil, or the channel closes, which rebuilds what is pending and returns
// ErrEventsClosed. Rebuilds run on Run's goroutine, one at a time; changes
// that arrive meanwhile form the next batch. A rebuild error ends Run.
func (b *Batcher) Run(ctx context.Context, events <-chan store.Event) error {
	var rev int64
	st := newPending(b.cfg.Debounce, b.cfg.MaxDelay)
	eps := newPending(b.cfg.EndpointDebounce, b.cfg.MaxDelay)
	defer st.clear()
	defer eps.clear()
	flush := func(withStore bool) error {
		// A store batch covers the endpoint signals too; an endpoint
		// batch leaves a pending store change pending.
		eps.clear()
		if withStore {
			st.clear()
		}
		if err := b.rebuild(ctx, Batch{Rev: rev, Store: withStore}); err != nil {
			return fmt.Errorf("rebuild at revision %d: %w", rev, err)
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				if st.pending || eps.pending {
					if err := flush(st.pending); err != nil {
						return err
					}
				}
				return ErrEventsClosed
			}
			rev = max(rev, ev.Revision)
			if ev.Type != 0 {
				st.add()
			} else {
				eps.add()
			}
		case <-st.quiet.C:
			if err := flush(true); err != nil {
				return err
			}
		case <-st.deadline.C:
			if err := flush(true); err != nil {
				return err
			}
		case <-eps.quiet.C:
			if err := flush(false); err != nil {
				return err
			}
		case <-eps.deadline.C:
			if err := flush(false); err != nil {
				return err
			}
		}
	}
}

// pending is one kind of batch being collected: its quiet time restarts at
// each change, its deadline runs from the first.
type pending struct {
	pending            bool
	debounce, maxDelay time.Duration
	quiet, deadline    *time.Timer
}

func newPending(debounce, maxDelay time.Duration) *pending {
	p := &pending{debounce: debounce, maxDelay: maxDelay, quiet: time.NewTimer(time.Hour), deadline: time.NewTimer(time.Hour)}
	p.clear()
	return p
}

func (p *pending) add() {
	if !p.pending {
		p.pending = true
		p.deadline.Reset(p.maxDelay)
	}
	p.quiet.Reset(p.debounce)
}

func (p *pending) clear() {
	p.pending = false
	p.quiet.Stop()
	p.deadline.Stop()
}
