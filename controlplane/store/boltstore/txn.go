// SPDX-License-Identifier: Apache-2.0

package boltstore

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/weft-mesh/weft/controlplane/store"
)

// errTxnDone is returned when a Reader or Txn is used after the function it
// was passed to has returned: its bbolt memory is gone by then.
var errTxnDone = errors.New("transaction has ended")

// reader implements store.Reader on a bbolt transaction.
type reader struct {
	kv   *bolt.Bucket
	rev  int64
	done bool
}

var _ store.Reader = (*reader)(nil)

// newReader opens the data bucket of tx and reads the revision.
func newReader(tx *bolt.Tx) (reader, error) {
	kv := tx.Bucket(bucketKV)
	if kv == nil {
		return reader{}, fmt.Errorf("open bucket %s: bucket not found", bucketKV)
	}
	rev, err := readRevision(tx)
	if err != nil {
		return reader{}, err
	}
	return reader{kv: kv, rev: rev}, nil
}

// Get implements store.Reader.
func (r *reader) Get(key string) ([]byte, bool, error) {
	if r.done {
		return nil, false, fmt.Errorf("get key %q: %w", truncate(key), errTxnDone)
	}
	k := []byte(key)
	got, v := r.kv.Cursor().Seek(k)
	if got == nil || !bytes.Equal(got, k) {
		return nil, false, nil
	}
	return clone(v), true, nil
}

// List implements store.Reader with one cursor walk that starts at the first
// wanted key.
func (r *reader) List(prefix, startAfter string, limit int) ([]store.KV, error) {
	if r.done {
		return nil, fmt.Errorf("list prefix %q: %w", truncate(prefix), errTxnDone)
	}
	c := r.kv.Cursor()
	p := []byte(prefix)
	var k, v []byte
	if startAfter < prefix {
		k, v = c.Seek(p)
	} else {
		k, v = c.Seek([]byte(startAfter))
		if k != nil && string(k) == startAfter {
			k, v = c.Next()
		}
	}
	var out []store.KV
	for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if limit > 0 && len(out) == limit {
			break
		}
		out = append(out, store.KV{Key: string(k), Value: clone(v)})
	}
	return out, nil
}

// Count implements store.Reader with one cursor walk over the prefix.
func (r *reader) Count(prefix string) (int, error) {
	if r.done {
		return 0, fmt.Errorf("count prefix %q: %w", truncate(prefix), errTxnDone)
	}
	c := r.kv.Cursor()
	p := []byte(prefix)
	n := 0
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		n++
	}
	return n, nil
}

// Revision implements store.Reader.
func (r *reader) Revision() int64 { return r.rev }

// txn implements store.Txn on a writable bbolt transaction. It records the
// encoded events of the transaction as they are written.
type txn struct {
	reader
	log    []byte // encoded events, in write order
	events int
}

var _ store.Txn = (*txn)(nil)

// Put implements store.Txn. It copies value: bbolt needs it unchanged until
// the commit, and the caller may reuse it.
func (t *txn) Put(key string, value []byte) error {
	if t.done {
		return fmt.Errorf("put key %q: %w", truncate(key), errTxnDone)
	}
	v := clone(value)
	if err := t.kv.Put([]byte(key), v); err != nil {
		return fmt.Errorf("put key %q: %w", truncate(key), err)
	}
	t.log = appendEvent(t.log, store.EventPut, key, v)
	t.events++
	return nil
}

// Delete implements store.Txn. Deleting a key that does not exist writes
// nothing and records no event.
func (t *txn) Delete(key string) error {
	if t.done {
		return fmt.Errorf("delete key %q: %w", truncate(key), errTxnDone)
	}
	k := []byte(key)
	c := t.kv.Cursor()
	if got, _ := c.Seek(k); got == nil || !bytes.Equal(got, k) {
		return nil
	}
	if err := t.kv.Delete(k); err != nil {
		return fmt.Errorf("delete key %q: %w", truncate(key), err)
	}
	t.log = appendEvent(t.log, store.EventDelete, key, nil)
	t.events++
	return nil
}

// clone copies bbolt memory into a new, never nil, slice.
func clone(b []byte) []byte {
	out := make([]byte, len(b))
	copy(out, b)
	return out
}

// truncate shortens a key for an error message; bbolt keys may be 32 KiB.
func truncate(key string) string {
	const maxLen = 128
	if len(key) <= maxLen {
		return key
	}
	return strings.ToValidUTF8(key[:maxLen], "") + "..."
}
