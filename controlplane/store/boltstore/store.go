// SPDX-License-Identifier: Apache-2.0

package boltstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/weft-mesh/weft/controlplane/store"
)

// Defaults for the zero Options.
const (
	DefaultHistoryLimit = 10000
	DefaultTimeout      = time.Second
)

// ErrLocked is returned by Open when another Store, in this process or
// another one, holds the file.
var ErrLocked = errors.New("database is locked by another process")

// Bucket and key names; see the package doc for the layout.
var (
	bucketKV   = []byte("kv")
	bucketLog  = []byte("log")
	bucketMeta = []byte("meta")

	metaRevision = []byte("revision")
	metaVersion  = []byte("version")
)

// layoutVersion is the version of the file layout this package writes.
const layoutVersion = 1

// Log keys.
const (
	logComponent = "component"
	logPath      = "path"
	logRevision  = "revision"
	logOldest    = "oldest_revision"
	logCurrent   = "current_revision"
	logDeleted   = "deleted"
	logError     = "error"
)

// Options configure Open. The zero value is valid and means the defaults.
type Options struct {
	// HistoryLimit is how many of the latest write transactions the change
	// log keeps for Watch (0: DefaultHistoryLimit). A watcher may resume from
	// any revision in that window; older ones get store.ErrCompacted.
	HistoryLimit int
	// Timeout is how long Open waits for the file lock (0: DefaultTimeout)
	// before it fails with ErrLocked.
	Timeout time.Duration
}

// Validate reports every invalid field.
func (o Options) Validate() error {
	var errs []error
	if o.HistoryLimit < 0 {
		errs = append(errs, fmt.Errorf("history limit %d is negative", o.HistoryLimit))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("lock timeout %s is negative", o.Timeout))
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults() Options {
	if o.HistoryLimit == 0 {
		o.HistoryLimit = DefaultHistoryLimit
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	return o
}

// Store is a store.Store in one bbolt file. It is safe for concurrent use.
type Store struct {
	db           *bolt.DB
	path         string
	historyLimit int64
	log          *slog.Logger

	closed    atomic.Bool
	done      chan struct{} // closed by Close; stops the watchers
	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex
	changed  chan struct{}  // closed and replaced after every write commit
	watchers sync.WaitGroup // Add only under mu while not closed
}

var _ store.Store = (*Store)(nil)

// Open opens the store file at path, creating it and its parent directory if
// missing. log may be nil.
func Open(path string, opts Options, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	opts = opts.withDefaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w (waited %s)", path, ErrLocked, opts.Timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	var rev, oldest int64
	err = db.Update(func(tx *bolt.Tx) error {
		if err := initLayout(tx); err != nil {
			return err
		}
		rev, oldest, err = history(tx)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{
		db:           db,
		path:         path,
		historyLimit: int64(opts.HistoryLimit),
		log:          log.With(logComponent, "boltstore"),
		done:         make(chan struct{}),
		changed:      make(chan struct{}),
	}
	s.log.Info("opened store", logPath, path, logRevision, rev, logOldest, oldest)
	return s, nil
}

// initLayout creates the buckets of a new file and checks the layout version
// of an existing one.
func initLayout(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketKV, bucketLog, bucketMeta} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	v := meta.Get(metaVersion)
	if v == nil {
		if err := meta.Put(metaVersion, encodeRev(layoutVersion)); err != nil {
			return fmt.Errorf("write layout version: %w", err)
		}
		return nil
	}
	got, err := decodeRev(v)
	if err != nil {
		return fmt.Errorf("read layout version: %w", err)
	}
	if got != layoutVersion {
		return fmt.Errorf("check layout version: file has %d, this build reads %d", got, layoutVersion)
	}
	return nil
}

// readRevision returns the revision stored in tx.
func readRevision(tx *bolt.Tx) (int64, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, fmt.Errorf("open bucket %s: bucket not found", bucketMeta)
	}
	v := meta.Get(metaRevision)
	if v == nil {
		return 0, nil
	}
	rev, err := decodeRev(v)
	if err != nil {
		return 0, fmt.Errorf("read revision: %w", err)
	}
	return rev, nil
}

// history returns the current revision and the oldest revision still in the
// change log (rev+1 when the log is empty).
func history(tx *bolt.Tx) (rev, oldest int64, err error) {
	rev, err = readRevision(tx)
	if err != nil {
		return 0, 0, err
	}
	lb := tx.Bucket(bucketLog)
	if lb == nil {
		return 0, 0, fmt.Errorf("open bucket %s: bucket not found", bucketLog)
	}
	k, _ := lb.Cursor().First()
	if k == nil {
		return rev, rev + 1, nil
	}
	oldest, err = decodeRev(k)
	if err != nil {
		return 0, 0, fmt.Errorf("read oldest log entry: %w", err)
	}
	return rev, oldest, nil
}

// begin starts a bbolt transaction, or returns store.ErrClosed or the
// context's error.
func (s *Store) begin(ctx context.Context, writable bool) (*bolt.Tx, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tx, err := s.db.Begin(writable)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return nil, store.ErrClosed
	}
	if err != nil {
		return nil, fmt.Errorf("begin transaction: %w", err)
	}
	return tx, nil
}

// View implements store.Store. fn's error is returned unchanged.
func (s *Store) View(ctx context.Context, fn func(store.Reader) error) error {
	tx, err := s.begin(ctx, false)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	r, err := newReader(tx)
	if err != nil {
		return fmt.Errorf("view store: %w", err)
	}
	defer func() { r.done = true }()
	return fn(&r)
}

// Update implements store.Store. When fn returns an error, nothing is written
// and that error is returned unchanged. When fn wrote nothing, the bbolt
// transaction is rolled back, so the file is not touched.
func (s *Store) Update(ctx context.Context, fn func(store.Txn) error) (int64, error) {
	tx, err := s.begin(ctx, true)
	if err != nil {
		return 0, err
	}
	// Rolls back on every path but a successful commit, panics included.
	defer func() { _ = tx.Rollback() }()
	r, err := newReader(tx)
	if err != nil {
		return 0, fmt.Errorf("update store: %w", err)
	}
	t := &txn{reader: r}
	err = fn(t)
	t.done = true
	if err != nil {
		return 0, err
	}
	if t.events == 0 {
		return t.rev, nil
	}
	rev := t.rev + 1
	if err := s.appendLog(tx, rev, t.log); err != nil {
		return 0, fmt.Errorf("update store to revision %d: %w", rev, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit revision %d: %w", rev, err)
	}
	s.notifyCommit()
	return rev, nil
}

// appendLog stores the new revision and its log entry and trims the log to
// the history limit, all in tx.
func (s *Store) appendLog(tx *bolt.Tx, rev int64, entry []byte) error {
	if err := tx.Bucket(bucketMeta).Put(metaRevision, encodeRev(rev)); err != nil {
		return fmt.Errorf("write revision: %w", err)
	}
	lb := tx.Bucket(bucketLog)
	if err := lb.Put(encodeRev(rev), entry); err != nil {
		return fmt.Errorf("append log entry: %w", err)
	}
	_, err := trimLog(lb, rev-s.historyLimit)
	return err
}

// trimLog deletes the log entries with revision <= upTo and returns how many
// it deleted. Usually that is one entry, the one the new transaction pushed
// out of the window.
func trimLog(lb *bolt.Bucket, upTo int64) (int, error) {
	if upTo <= 0 {
		return 0, nil
	}
	var old [][]byte
	c := lb.Cursor()
	limit := encodeRev(upTo)
	for k, _ := c.First(); k != nil && string(k) <= string(limit); k, _ = c.Next() {
		old = append(old, clone(k))
	}
	// Delete after the walk: deleting under a bbolt cursor can skip keys.
	for _, k := range old {
		if err := lb.Delete(k); err != nil {
			return 0, fmt.Errorf("trim log: %w", err)
		}
	}
	return len(old), nil
}

// Compact discards the change log before revision rev, so that Watch(ctx,
// afterRev) with afterRev < rev-1 returns store.ErrCompacted. It does not
// change the data or the revision; rev must not be greater than the current
// revision.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	tx, err := s.begin(ctx, true)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	cur, err := readRevision(tx)
	if err != nil {
		return fmt.Errorf("compact log to revision %d: %w", rev, err)
	}
	if rev > cur {
		return fmt.Errorf("compact log to revision %d: beyond current revision %d", rev, cur)
	}
	n, err := trimLog(tx.Bucket(bucketLog), rev-1)
	if err != nil {
		return fmt.Errorf("compact log to revision %d: %w", rev, err)
	}
	if n == 0 {
		return nil
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("compact log to revision %d: %w", rev, err)
	}
	s.log.Info("compacted change log", logOldest, rev, logDeleted, n)
	return nil
}

// notifyCommit wakes every watcher waiting for a commit.
func (s *Store) notifyCommit() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// commitSignal returns a channel that is closed at the next commit.
func (s *Store) commitSignal() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Close implements store.Store: it closes the watch channels, waits for the
// watcher goroutines and transactions in flight, and releases the file.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed.Store(true)
		close(s.done)
		s.mu.Unlock()
		s.watchers.Wait()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close store %s: %w", s.path, err)
			s.log.Error("close store", logPath, s.path, logError, err)
			return
		}
		s.log.Info("closed store", logPath, s.path)
	})
	return s.closeErr
}
