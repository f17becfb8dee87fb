// SPDX-License-Identifier: Apache-2.0

package boltstore

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/weft-mesh/weft/controlplane/store"
)

// Watch tuning. A watcher holds at most one batch plus the channel buffer in
// memory, however far behind its reader is.
const (
	watchBuffer     = 64   // events buffered in a watch channel
	batchMaxTxns    = 256  // log entries read per read transaction
	batchSoftEvents = 1024 // stop a batch after the entry that reaches this
)

// Watch implements store.Store.
//
// Each watcher is one goroutine that owns a cursor, next: the last revision
// it has handed to the channel. It loops: take the current commit signal,
// read the log entries after next in a short read transaction, send their
// events, and, once it has caught up, wait for the signal. Taking the signal
// before reading means a commit that the read missed has not yet signalled,
// so it wakes the watcher; reading by revision from the log gives order,
// no gaps and no duplicates whether an event is replayed or live. Update
// only closes a channel to signal, so it never waits for a watcher.
func (s *Store) Watch(ctx context.Context, afterRev int64) (<-chan store.Event, error) {
	tx, err := s.begin(ctx, false)
	if err != nil {
		return nil, err
	}
	rev, oldest, err := history(tx)
	_ = tx.Rollback()
	if err != nil {
		return nil, fmt.Errorf("watch after revision %d: %w", afterRev, err)
	}
	if afterRev < oldest-1 {
		return nil, fmt.Errorf("watch after revision %d, oldest kept is %d: %w", afterRev, oldest, store.ErrCompacted)
	}

	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil, store.ErrClosed
	}
	s.watchers.Add(1)
	s.mu.Unlock()

	ch := make(chan store.Event, watchBuffer)
	go s.runWatcher(ctx, afterRev, ch)
	s.log.Debug("started watcher", logRevision, afterRev, logCurrent, rev)
	return ch, nil
}

// runWatcher feeds ch with the events after revision next until ctx ends,
// the store closes, or the watcher falls behind the retained history.
func (s *Store) runWatcher(ctx context.Context, next int64, ch chan<- store.Event) {
	defer s.watchers.Done()
	defer close(ch)
	for {
		if ctx.Err() != nil || s.closed.Load() {
			return
		}
		changed := s.commitSignal()
		evs, last, more, err := s.readLog(next)
		if errors.Is(err, store.ErrCompacted) {
			s.log.Warn("closed watcher that fell behind the change log", logRevision, next, logError, err)
			return
		}
		if err != nil {
			s.log.Error("closed watcher", logRevision, next, logError, err)
			return
		}
		for _, ev := range evs {
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			case <-s.done:
				return
			}
		}
		next = last
		if more {
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}

// readLog reads, in one read transaction, the events of the log entries after
// revision next, at most one batch. last is the revision of the last entry
// read (next if none), and more tells that the batch was cut short.
func (s *Store) readLog(next int64) (evs []store.Event, last int64, more bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		_, oldest, err := history(tx)
		if err != nil {
			return err
		}
		if next+1 < oldest {
			return fmt.Errorf("read log after revision %d, oldest kept is %d: %w", next, oldest, store.ErrCompacted)
		}
		last = next
		c := tx.Bucket(bucketLog).Cursor()
		txns := 0
		for k, v := c.Seek(encodeRev(next + 1)); k != nil; k, v = c.Next() {
			if txns == batchMaxTxns || len(evs) >= batchSoftEvents {
				more = true
				break
			}
			rev, err := decodeRev(k)
			if err != nil {
				return fmt.Errorf("read log key: %w", err)
			}
			if evs, err = decodeEvents(evs, rev, v); err != nil {
				return err
			}
			last = rev
			txns++
		}
		return nil
	})
	return evs, last, more, err
}
