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
	DefaultDebounce = 100 * time.Millisecond
	DefaultMaxDelay = time.Second
)

// BatcherConfig tunes a Batcher.
type BatcherConfig struct {
	// Debounce is the quiet time after a change before a rebuild starts;
	// every further change restarts it. 0 means DefaultDebounce.
	Debounce time.Duration
	// MaxDelay bounds the time from the first change of a batch to its
	// rebuild, however long changes keep coming. 0 means DefaultMaxDelay.
	MaxDelay time.Duration
}

// Validate checks the configuration.
func (c BatcherConfig) Validate() error {
	if c.Debounce < 0 || c.MaxDelay < 0 {
		return errors.New("batcher: debounce and max delay must not be negative")
	}
	if c.MaxDelay > 0 && c.Debounce > c.MaxDelay {
		return fmt.Errorf("batcher: debounce %s exceeds max delay %s", c.Debounce, c.MaxDelay)
	}
	return nil
}

// RebuildFunc rebuilds every snapshot from the store as of at least
// revision rev, the revision of the last change of the batch.
type RebuildFunc func(ctx context.Context, rev int64) error

// Batcher coalesces store changes into rebuilds: a burst of writes becomes
// one rebuild once the store is quiet for Debounce, or after MaxDelay at
// the latest.
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
		rev      int64
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
		if err := b.rebuild(ctx, rev); err != nil {
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
				if pending {
					if err := flush(); err != nil {
						return err
					}
				}
				return ErrEventsClosed
			}
			rev = max(rev, ev.Revision)
			if !pending {
				pending = true
				deadline.Reset(b.cfg.MaxDelay)
			}
			quiet.Reset(b.cfg.Debounce)
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
