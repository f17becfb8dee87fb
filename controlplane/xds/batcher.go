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
	// only (events without a type: the registry or the DNS discovery
	// changed), which the Syncer applies incrementally; a store change in
	// the batch makes its quiet time Debounce. 0 means
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
	// Rev is the revision of the batch's last store change (0: none).
	Rev int64
	// Store is whether the batch has a store change; false means it has
	// only endpoint signals (events whose Type is 0).
	Store bool
}

// RebuildFunc rebuilds the snapshots a batch affects: every snapshot from
// the store as of at least revision b.Rev when b.Store, else those whose
// endpoints changed.
type RebuildFunc func(ctx context.Context, b Batch) error

// Batcher coalesces changes into rebuilds: a burst of writes becomes one
// rebuild once the changes are quiet for Debounce (EndpointDebounce while
// the batch has endpoint signals only), or after MaxDelay at the latest.
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
	var (
		pending  bool
		batch    Batch
		quiet    = time.NewTimer(time.Hour)
		deadline = time.NewTimer(time.Hour)
	)
	quiet.Stop()
	deadline.Stop()
	defer quiet.Stop()
	defer deadline.Stop()
	flush := func() error {
		quiet.Stop()
		deadline.Stop()
		pending = false
		cur := batch
		batch = Batch{Rev: cur.Rev}
		if err := b.rebuild(ctx, cur); err != nil {
			return fmt.Errorf("rebuild at revision %d: %w", cur.Rev, err)
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				if pending {
					if err := flush(); err != nil {
						return err
					}
				}
				return ErrEventsClosed
			}
			batch.Rev = max(batch.Rev, ev.Revision)
			batch.Store = batch.Store || ev.Type != 0
			if !pending {
				pending = true
				deadline.Reset(b.cfg.MaxDelay)
			}
			if batch.Store {
				quiet.Reset(b.cfg.Debounce)
			} else {
				quiet.Reset(b.cfg.EndpointDebounce)
			}
		case <-quiet.C:
			if err := flush(); err != nil {
				return err
			}
		case <-deadline.C:
			if err := flush(); err != nil {
				return err
			}
		}
	}
}
