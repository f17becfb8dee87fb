// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
)

// Errors callers branch on.
var (
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("store closed")
	// ErrCompacted is returned by Watch when the requested revision is older than
	// the oldest change the store still holds; the caller must re-list.
	ErrCompacted = errors.New("revision compacted")
)

// KV is one key and its value.
type KV struct {
	Key   string
	Value []byte
}

// Reader reads a consistent view of the store. It is valid only until the
// function it was passed to returns, and only on that goroutine; using it
// later returns an error. The values it returns are copies that the caller
// owns.
type Reader interface {
	// Get returns the value of key, or ok=false when it does not exist.
	Get(key string) (value []byte, ok bool, err error)
	// List returns up to limit entries (limit <= 0: all) whose keys start with
	// prefix and sort strictly after the key startAfter ("" = from the start),
	// in key order. Keys compare byte-wise, so a page continues from its last
	// key: List(prefix, last.Key, limit).
	List(prefix, startAfter string, limit int) ([]KV, error)
	// Count returns how many keys start with prefix.
	Count(prefix string) (int, error)
	// Revision is the revision of the view: the number of the last committed
	// write transaction.
	Revision() int64
}

// Txn is a read-write transaction. Writes become visible, and are durable, only
// when the function passed to Update returns nil; otherwise nothing is written.
// Its reads see its own writes; Revision is the revision before it.
type Txn interface {
	Reader
	// Put sets key (any non-empty string) to value. The store copies value.
	// Every Put is a change, even one that stores the value the key has.
	Put(key string, value []byte) error
	// Delete removes key. Deleting a key that does not exist is not a change.
	Delete(key string) error
}

// EventType is the type of a change.
type EventType int

// Event types.
const (
	EventPut EventType = iota + 1
	EventDelete
)

// Event is one changed key. All events of one transaction carry the same
// revision and are delivered together, in the order they were written.
type Event struct {
	Revision int64
	Type     EventType
	Key      string
	Value    []byte // nil for EventDelete
}

// Store is a transactional, versioned key-value store with an ordered change
// stream. The embedded bbolt implementation lives in store/boltstore; an etcd one
// can implement the same interface (Update maps onto an STM transaction).
type Store interface {
	// View runs fn on a consistent read-only snapshot and returns fn's error
	// unchanged. fn must not call View or Update.
	View(ctx context.Context, fn func(Reader) error) error
	// Update runs fn in one serializable read-write transaction and commits it
	// durably (fsync) before returning. It returns the new revision, or the
	// current one when fn wrote nothing. When fn returns an error nothing is
	// written and Update returns that error unchanged. fn must not call View
	// or Update.
	Update(ctx context.Context, fn func(Txn) error) (int64, error)
	// Watch streams every change with a revision greater than afterRev, in
	// revision order, until ctx ends or the store closes; then the channel is
	// closed. ErrCompacted when afterRev is older than the retained history.
	// afterRev may be the current revision: the channel then gets the
	// changes to come. A watcher whose reader falls so far behind that the
	// changes it still needs are discarded has its channel closed early;
	// calling Watch again with the last revision received then returns
	// ErrCompacted, and the caller must re-list.
	Watch(ctx context.Context, afterRev int64) (<-chan Event, error)
	// Close releases the store and closes every Watch channel. It is safe to
	// call more than once; every other call after it returns ErrClosed.
	Close() error
}
