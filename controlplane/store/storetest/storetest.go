// SPDX-License-Identifier: Apache-2.0

// Package storetest is the conformance suite for store.Store
// implementations. An implementation's tests call Run with a function that
// opens a new, empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := boltstore.Open(filepath.Join(t.TempDir(), "weft.db"), boltstore.Options{}, nil)
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// The subtests run one after another, close their store, and fail on leaked
// goroutines (goleak), so the store must stop every goroutine it started by
// the time Close returns.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/weft-mesh/weft/controlplane/store"
)

// Compacter is implemented by stores that can drop their change history on
// demand. After Compact(ctx, rev), Watch with afterRev < rev-1 must return
// store.ErrCompacted. The suite tests ErrCompacted only on stores that
// implement it.
type Compacter interface {
	Compact(ctx context.Context, rev int64) error
}

// waitTimeout bounds every wait of the suite; it is generous because the
// suite runs under -race on slow disks.
const waitTimeout = 30 * time.Second

// Run runs the conformance suite. open is called once per subtest and must
// return a new, empty store; the suite closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"GetPutDelete", testGetPutDelete},
		{"ValuesAreCopies", testValuesAreCopies},
		{"List", testList},
		{"ListPagination", testListPagination},
		{"Count", testCount},
		{"ReadOwnWrites", testReadOwnWrites},
		{"Revision", testRevision},
		{"Rollback", testRollback},
		{"CanceledContext", testCanceledContext},
		{"UseAfterEnd", testUseAfterEnd},
		{"Watch", testWatch},
		{"WatchTransactionEvents", testWatchTransactionEvents},
		{"WatchLargeTransaction", testWatchLargeTransaction},
		{"WatchConcurrentWriters", testWatchConcurrentWriters},
		{"WatchSlowReader", testWatchSlowReader},
		{"WatchCompacted", testWatchCompacted},
		{"WatchClosesOnCancel", testWatchClosesOnCancel},
		{"WatchClosesOnClose", testWatchClosesOnClose},
		{"Closed", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			// Registered first, so it runs after the store is closed.
			t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("close store: %v", err)
				}
			})
			tt.fn(t, s)
		})
	}
}

func testGetPutDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustGet(t, s, "a/b", nil, false)

	putAll(t, s, "a/b", "1", "a/c", "")
	mustGet(t, s, "a/b", []byte("1"), true)
	mustGet(t, s, "a/c", []byte{}, true) // an empty value exists
	mustGet(t, s, "a", nil, false)

	putAll(t, s, "a/b", "2")
	mustGet(t, s, "a/b", []byte("2"), true)

	mustUpdate(t, s, func(tx store.Txn) error { return tx.Delete("a/b") })
	mustGet(t, s, "a/b", nil, false)
	mustGet(t, s, "a/c", []byte{}, true)

	// Keys are arbitrary strings.
	odd := []string{"x", "x/", "x//y", "x\x00y", "x\xffy", "ключ/значение"}
	for i, k := range odd {
		putAll(t, s, k, fmt.Sprint(i))
	}
	for i, k := range odd {
		mustGet(t, s, k, []byte(fmt.Sprint(i)), true)
	}

	// A put of an empty key fails and writes nothing.
	before := revision(t, s)
	_, err := s.Update(ctx, func(tx store.Txn) error { return tx.Put("", []byte("v")) })
	if err == nil {
		t.Error("Put with an empty key: got nil error")
	}
	if got := revision(t, s); got != before {
		t.Errorf("revision after failed put = %d, want %d", got, before)
	}
}

func testValuesAreCopies(t *testing.T, s store.Store) {
	ctx := t.Context()
	in := []byte("value")
	mustUpdate(t, s, func(tx store.Txn) error {
		if err := tx.Put("k", in); err != nil {
			return err
		}
		in[0] = 'X' // the caller reuses its buffer before the commit
		return nil
	})
	mustGet(t, s, "k", []byte("value"), true)

	var got []byte
	mustView(t, s, func(r store.Reader) error {
		v, _, err := r.Get("k")
		got = v
		return err
	})
	got[0] = 'Y'
	var listed []store.KV
	mustView(t, s, func(r store.Reader) error {
		var err error
		listed, err = r.List("", "", 0)
		return err
	})
	listed[0].Value[0] = 'Z'
	mustGet(t, s, "k", []byte("value"), true)

	// Values stay valid after the transaction, while other writes reuse its
	// memory.
	for i := range 20 {
		putAll(t, s, fmt.Sprintf("other/%02d", i), string(make([]byte, 512)))
	}
	if string(got[1:]) != "alue" || string(listed[0].Value[1:]) != "alue" {
		t.Errorf("values read earlier changed: %q, %q", got, listed[0].Value)
	}

	ch, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	ev := receive(t, ch, 1)[0]
	ev.Value[0] = 'W'
	mustGet(t, s, "k", []byte("value"), true)
}

// listKeys is the data set of the List and Count tests, in key order.
var listKeys = []string{
	"a", "a/", "a/1", "a/2", "a/2/x", "a/3", "a0", "ab", "b/1", "b/2", "\xff",
}

func putListKeys(t *testing.T, s store.Store) {
	t.Helper()
	mustUpdate(t, s, func(tx store.Txn) error {
		// Written out of order: the store sorts.
		for _, i := range []int{7, 2, 10, 0, 5, 3, 8, 1, 6, 9, 4} {
			if err := tx.Put(listKeys[i], []byte("v"+listKeys[i])); err != nil {
				return err
			}
		}
		return nil
	})
}

func testList(t *testing.T, s store.Store) {
	putListKeys(t, s)
	tests := []struct {
		name       string
		prefix     string
		startAfter string
		limit      int
		want       []string
	}{
		{name: "all", want: listKeys},
		{name: "all negative limit", limit: -1, want: listKeys},
		{name: "prefix", prefix: "a/", want: []string{"a/", "a/1", "a/2", "a/2/x", "a/3"}},
		{name: "prefix is a key", prefix: "a", want: listKeys[:8]},
		{name: "nested prefix", prefix: "a/2", want: []string{"a/2", "a/2/x"}},
		{name: "no match", prefix: "c/", want: nil},
		{name: "limit", prefix: "a/", limit: 2, want: []string{"a/", "a/1"}},
		{name: "limit above count", prefix: "b/", limit: 5, want: []string{"b/1", "b/2"}},
		{name: "start after key", prefix: "a/", startAfter: "a/1", want: []string{"a/2", "a/2/x", "a/3"}},
		{name: "start after missing key", prefix: "a/", startAfter: "a/10", want: []string{"a/2", "a/2/x", "a/3"}},
		{name: "start after and limit", prefix: "a/", startAfter: "a/1", limit: 1, want: []string{"a/2"}},
		{name: "start after last", prefix: "a/", startAfter: "a/3", want: nil},
		{name: "start after below prefix", prefix: "b/", startAfter: "a", want: []string{"b/1", "b/2"}},
		{name: "start after beyond prefix", prefix: "a/", startAfter: "b", want: nil},
		{name: "start after without prefix", startAfter: "b/1", want: []string{"b/2", "\xff"}},
		{name: "high byte", prefix: "\xff", want: []string{"\xff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []store.KV
			mustView(t, s, func(r store.Reader) error {
				var err error
				got, err = r.List(tt.prefix, tt.startAfter, tt.limit)
				return err
			})
			var want []store.KV
			for _, k := range tt.want {
				want = append(want, store.KV{Key: k, Value: []byte("v" + k)})
			}
			if diff := cmp.Diff(want, got, cmpEmpty); diff != "" {
				t.Errorf("List(%q, %q, %d) mismatch (-want +got):\n%s", tt.prefix, tt.startAfter, tt.limit, diff)
			}
		})
	}
}

func testListPagination(t *testing.T, s store.Store) {
	var want []string
	mustUpdate(t, s, func(tx store.Txn) error {
		for i := range 250 {
			k := fmt.Sprintf("svc/%03d", i)
			want = append(want, k)
			if err := tx.Put(k, []byte(k)); err != nil {
				return err
			}
		}
		// Neighbours that a page must not include.
		if err := tx.Put("svc", nil); err != nil {
			return err
		}
		return tx.Put("svd/000", nil)
	})

	var got []string
	var sizes []int
	after := ""
	for range 10 {
		var page []store.KV
		mustView(t, s, func(r store.Reader) error {
			var err error
			page, err = r.List("svc/", after, 100)
			return err
		})
		sizes = append(sizes, len(page))
		if len(page) == 0 {
			break
		}
		for _, kv := range page {
			if string(kv.Value) != kv.Key {
				t.Fatalf("value of %q = %q", kv.Key, kv.Value)
			}
			got = append(got, kv.Key)
		}
		after = page[len(page)-1].Key
	}
	if diff := cmp.Diff([]int{100, 100, 50, 0}, sizes); diff != "" {
		t.Errorf("page sizes mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paged keys mismatch (-want +got):\n%s", diff)
	}
}

func testCount(t *testing.T, s store.Store) {
	mustView(t, s, func(r store.Reader) error {
		n, err := r.Count("")
		if n != 0 {
			t.Errorf("Count on an empty store = %d, want 0", n)
		}
		return err
	})
	putListKeys(t, s)
	tests := []struct {
		prefix string
		want   int
	}{
		{"", len(listKeys)},
		{"a", 8},
		{"a/", 5},
		{"a/2", 2},
		{"b/", 2},
		{"c", 0},
		{"\xff", 1},
	}
	for _, tt := range tests {
		mustView(t, s, func(r store.Reader) error {
			n, err := r.Count(tt.prefix)
			if n != tt.want {
				t.Errorf("Count(%q) = %d, want %d", tt.prefix, n, tt.want)
			}
			return err
		})
	}
	mustUpdate(t, s, func(tx store.Txn) error { return tx.Delete("a/2") })
	mustView(t, s, func(r store.Reader) error {
		n, err := r.Count("a/")
		if n != 4 {
			t.Errorf("Count(a/) after a delete = %d, want 4", n)
		}
		return err
	})
}

func testReadOwnWrites(t *testing.T, s store.Store) {
	putAll(t, s, "k/1", "old", "k/2", "two")
	mustUpdate(t, s, func(tx store.Txn) error {
		if got := tx.Revision(); got != 1 {
			t.Errorf("Txn.Revision = %d, want 1 (the last committed)", got)
		}
		if err := tx.Put("k/1", []byte("new")); err != nil {
			return err
		}
		if err := tx.Put("k/3", []byte("three")); err != nil {
			return err
		}
		if err := tx.Delete("k/2"); err != nil {
			return err
		}
		v, ok, err := tx.Get("k/1")
		if err != nil || !ok || string(v) != "new" {
			t.Errorf("Get(k/1) in txn = %q, %v, %v; want new", v, ok, err)
		}
		if _, ok, _ := tx.Get("k/2"); ok {
			t.Error("Get(k/2) in txn found a key deleted in the txn")
		}
		kvs, err := tx.List("k/", "", 0)
		if err != nil {
			return err
		}
		want := []store.KV{{Key: "k/1", Value: []byte("new")}, {Key: "k/3", Value: []byte("three")}}
		if diff := cmp.Diff(want, kvs); diff != "" {
			t.Errorf("List in txn mismatch (-want +got):\n%s", diff)
		}
		if n, err := tx.Count("k/"); err != nil || n != 2 {
			t.Errorf("Count in txn = %d, %v; want 2", n, err)
		}
		return nil
	})
}

func testRevision(t *testing.T, s store.Store) {
	ctx := t.Context()
	if got := revision(t, s); got != 0 {
		t.Fatalf("revision of a new store = %d, want 0", got)
	}
	if rev := putAll(t, s, "a", "1"); rev != 1 {
		t.Errorf("first write: revision %d, want 1", rev)
	}
	// Many writes in one transaction: one revision.
	if rev := putAll(t, s, "a", "2", "b", "2", "c", "2"); rev != 2 {
		t.Errorf("three puts in one txn: revision %d, want 2", rev)
	}
	// Reads do not bump it.
	mustView(t, s, func(r store.Reader) error { _, _, err := r.Get("a"); return err })
	// Neither do updates that write nothing: no calls, only reads, or
	// deleting a missing key.
	noops := map[string]func(store.Txn) error{
		"empty":          func(store.Txn) error { return nil },
		"read only":      func(tx store.Txn) error { _, _, err := tx.Get("a"); return err },
		"delete missing": func(tx store.Txn) error { return tx.Delete("missing") },
	}
	for name, fn := range noops {
		rev, err := s.Update(ctx, fn)
		if err != nil {
			t.Fatalf("no-op update %s: %v", name, err)
		}
		if rev != 2 {
			t.Errorf("no-op update %s: revision %d, want 2", name, rev)
		}
	}
	// A put of an unchanged value is a change.
	if rev := putAll(t, s, "a", "2"); rev != 3 {
		t.Errorf("put of the same value: revision %d, want 3", rev)
	}
	if rev := mustUpdate(t, s, func(tx store.Txn) error { return tx.Delete("a") }); rev != 4 {
		t.Errorf("delete: revision %d, want 4", rev)
	}
	if got := revision(t, s); got != 4 {
		t.Errorf("View revision = %d, want 4", got)
	}
}

// testError is a caller's error type that Update must pass through.
type testError struct{ code int }

func (e *testError) Error() string { return fmt.Sprintf("test error %d", e.code) }

func testRollback(t *testing.T, s store.Store) {
	ctx := t.Context()
	putAll(t, s, "keep", "1", "gone", "1")
	ch, err := s.Watch(ctx, 1)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	sentinel := errors.New("sentinel")
	for _, want := range []error{sentinel, fmt.Errorf("wrapped: %w", &testError{code: 7})} {
		rev, err := s.Update(ctx, func(tx store.Txn) error {
			for _, op := range []error{tx.Put("keep", []byte("2")), tx.Put("new", []byte("2")), tx.Delete("gone")} {
				if op != nil {
					return op
				}
			}
			return want
		})
		if !errors.Is(err, want) {
			t.Errorf("Update error = %v, want %v", err, want)
		}
		if rev != 0 {
			t.Errorf("Update revision on error = %d, want 0", rev)
		}
	}
	var te *testError
	_, err = s.Update(ctx, func(store.Txn) error { return &testError{code: 9} })
	if !errors.As(err, &te) || te.code != 9 {
		t.Errorf("errors.As on Update error %v: got %v", err, te)
	}
	mustGet(t, s, "keep", []byte("1"), true)
	mustGet(t, s, "new", nil, false)
	mustGet(t, s, "gone", []byte("1"), true)
	if got := revision(t, s); got != 1 {
		t.Errorf("revision after rollbacks = %d, want 1", got)
	}
	// The rolled-back writes never reach a watcher: the next event is the
	// next commit.
	putAll(t, s, "after", "x")
	want := []store.Event{{Revision: 2, Type: store.EventPut, Key: "after", Value: []byte("x")}}
	if diff := cmp.Diff(want, receive(t, ch, 1)); diff != "" {
		t.Errorf("events after rollback mismatch (-want +got):\n%s", diff)
	}
}

func testCanceledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	called := false
	if _, err := s.Update(ctx, func(tx store.Txn) error { called = true; return tx.Put("k", nil) }); !errors.Is(err, context.Canceled) {
		t.Errorf("Update with canceled context: %v, want context.Canceled", err)
	}
	if err := s.View(ctx, func(store.Reader) error { called = true; return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("View with canceled context: %v, want context.Canceled", err)
	}
	if _, err := s.Watch(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Watch with canceled context: %v, want context.Canceled", err)
	}
	if called {
		t.Error("a function ran although the context was canceled")
	}
	mustGet(t, s, "k", nil, false)
	if got := revision(t, s); got != 0 {
		t.Errorf("revision = %d, want 0", got)
	}
}

func testUseAfterEnd(t *testing.T, s store.Store) {
	putAll(t, s, "k", "v")
	var kept store.Txn
	mustUpdate(t, s, func(tx store.Txn) error { kept = tx; return nil })
	if err := kept.Put("k", []byte("late")); err == nil {
		t.Error("Put after Update returned: got nil error")
	}
	if _, _, err := kept.Get("k"); err == nil {
		t.Error("Get after Update returned: got nil error")
	}
	var keptR store.Reader
	mustView(t, s, func(r store.Reader) error { keptR = r; return nil })
	if _, err := keptR.List("", "", 0); err == nil {
		t.Error("List after View returned: got nil error")
	}
	mustGet(t, s, "k", []byte("v"), true)
}

func testWatch(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Five transactions: revisions 1..5, each putting k<rev>.
	var all []store.Event
	for rev := int64(1); rev <= 5; rev++ {
		k := fmt.Sprintf("k%d", rev)
		putAll(t, s, k, k)
		all = append(all, store.Event{Revision: rev, Type: store.EventPut, Key: k, Value: []byte(k)})
	}
	watchers := map[int64]<-chan store.Event{}
	for _, after := range []int64{0, 2, 5} {
		ch, err := s.Watch(ctx, after)
		if err != nil {
			t.Fatalf("Watch(%d): %v", after, err)
		}
		watchers[after] = ch
	}
	// One live transaction after the watchers started.
	mustUpdate(t, s, func(tx store.Txn) error { return tx.Delete("k1") })
	all = append(all, store.Event{Revision: 6, Type: store.EventDelete, Key: "k1"})

	for _, after := range []int64{0, 2, 5} {
		t.Run(fmt.Sprintf("after %d", after), func(t *testing.T) {
			want := all[after:]
			got := receive(t, watchers[after], len(want))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("events mismatch (-want +got):\n%s", diff)
			}
			expectNothing(t, watchers[after])
		})
	}
}

func testWatchTransactionEvents(t *testing.T, s store.Store) {
	ctx := t.Context()
	putAll(t, s, "old", "1")
	ch, err := s.Watch(ctx, 1)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	mustUpdate(t, s, func(tx store.Txn) error {
		for _, op := range []func() error{
			func() error { return tx.Put("z", []byte("1")) },
			func() error { return tx.Put("a", []byte("1")) },
			func() error { return tx.Put("z", []byte("2")) }, // same key twice
			func() error { return tx.Delete("old") },
			func() error { return tx.Delete("never") },       // not a change
			func() error { return tx.Put("a", []byte("1")) }, // same value: a change
			func() error { return tx.Put("e", nil) },
			func() error { return tx.Delete("e") }, // put then delete
		} {
			if err := op(); err != nil {
				return err
			}
		}
		return nil
	})
	want := []store.Event{
		{Revision: 2, Type: store.EventPut, Key: "z", Value: []byte("1")},
		{Revision: 2, Type: store.EventPut, Key: "a", Value: []byte("1")},
		{Revision: 2, Type: store.EventPut, Key: "z", Value: []byte("2")},
		{Revision: 2, Type: store.EventDelete, Key: "old"},
		{Revision: 2, Type: store.EventPut, Key: "a", Value: []byte("1")},
		{Revision: 2, Type: store.EventPut, Key: "e", Value: []byte{}},
		{Revision: 2, Type: store.EventDelete, Key: "e"},
	}
	got := receive(t, ch, len(want))
	if diff := cmp.Diff(want, got, cmpEmpty); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
	for _, ev := range got {
		if ev.Type == store.EventDelete && ev.Value != nil {
			t.Errorf("delete event of %q has value %q, want nil", ev.Key, ev.Value)
		}
	}
	expectNothing(t, ch)
}

func testWatchLargeTransaction(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 5000
	ch, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	mustUpdate(t, s, func(tx store.Txn) error {
		for i := range n {
			if err := tx.Put(fmt.Sprintf("bulk/%05d", i), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	})
	putAll(t, s, "next", "v")
	got := receive(t, ch, n+1)
	for i, ev := range got[:n] {
		if ev.Revision != 1 || ev.Key != fmt.Sprintf("bulk/%05d", i) {
			t.Fatalf("event %d = rev %d key %q, want rev 1 key bulk/%05d", i, ev.Revision, ev.Key, i)
		}
	}
	if ev := got[n]; ev.Revision != 2 || ev.Key != "next" {
		t.Errorf("last event = rev %d key %q, want rev 2 key next", ev.Revision, ev.Key)
	}
}

func testWatchConcurrentWriters(t *testing.T, s store.Store) {
	ctx := t.Context()
	const (
		writers = 8
		txns    = 25 // per writer
		perTxn  = 3
	)
	ch, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	var (
		mu      sync.Mutex
		written = map[int64][]string{} // revision -> keys in write order
		wg      sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for i := range txns {
				var keys []string
				for j := range perTxn {
					keys = append(keys, fmt.Sprintf("w%d/t%02d/k%d", w, i, j))
				}
				rev, err := s.Update(ctx, func(tx store.Txn) error {
					for _, k := range keys {
						if err := tx.Put(k, []byte(k)); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Errorf("writer %d: Update: %v", w, err)
					return
				}
				mu.Lock()
				if _, dup := written[rev]; dup {
					t.Errorf("revision %d returned twice", rev)
				}
				written[rev] = keys
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	got := receive(t, ch, writers*txns*perTxn)
	seen := map[int64]bool{}
	var prev int64
	var batch []string
	check := func() {
		if diff := cmp.Diff(written[prev], batch); diff != "" {
			t.Errorf("events of revision %d mismatch (-want +got):\n%s", prev, diff)
		}
	}
	for _, ev := range got {
		if ev.Revision != prev {
			if ev.Revision < prev {
				t.Fatalf("revision %d after %d", ev.Revision, prev)
			}
			if seen[ev.Revision] {
				t.Fatalf("events of revision %d are not contiguous", ev.Revision)
			}
			if prev != 0 {
				check()
			}
			seen[ev.Revision] = true
			prev, batch = ev.Revision, nil
		}
		batch = append(batch, ev.Key)
	}
	check()
	if len(seen) != writers*txns {
		t.Errorf("saw %d revisions, want %d", len(seen), writers*txns)
	}
	for rev := int64(1); rev <= writers*txns; rev++ {
		if !seen[rev] {
			t.Errorf("revision %d missing", rev)
		}
	}
	expectNothing(t, ch)
}

func testWatchSlowReader(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 1000
	// stalled does not read at all until the writes are done; slow reads
	// with a pause after each event while they happen.
	stalled, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	slow, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	var slowGot []store.Event
	slowDone := make(chan struct{})
	go func() {
		defer close(slowDone)
		timer := time.NewTimer(waitTimeout)
		defer timer.Stop()
		for len(slowGot) < n {
			select {
			case ev, ok := <-slow:
				if !ok {
					return
				}
				slowGot = append(slowGot, ev)
				time.Sleep(200 * time.Microsecond)
			case <-timer.C:
				return
			}
		}
	}()

	start := time.Now()
	for i := 1; i <= n; i++ {
		k := fmt.Sprintf("k/%04d", i)
		if rev := putAll(t, s, k, k); rev != int64(i) {
			t.Fatalf("write %d: revision %d", i, rev)
		}
	}
	t.Logf("%d transactions committed in %s with a stalled watcher", n, time.Since(start))

	<-slowDone
	check := func(name string, got []store.Event) {
		t.Helper()
		if len(got) != n {
			t.Fatalf("%s watcher got %d events, want %d", name, len(got), n)
		}
		for i, ev := range got {
			k := fmt.Sprintf("k/%04d", i+1)
			if ev.Revision != int64(i+1) || ev.Key != k || string(ev.Value) != k {
				t.Fatalf("%s watcher event %d = {%d %q %q}, want {%d %q %q}", name, i, ev.Revision, ev.Key, ev.Value, i+1, k, k)
			}
		}
	}
	check("slow", slowGot)
	check("stalled", receive(t, stalled, n))
	expectNothing(t, stalled)
}

func testWatchCompacted(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, ok := s.(Compacter)
	if !ok {
		t.Skip("store does not implement storetest.Compacter")
	}
	for i := range 10 {
		putAll(t, s, "k", fmt.Sprint(i))
	}
	if err := c.Compact(ctx, 6); err != nil {
		t.Fatalf("Compact(6): %v", err)
	}
	for _, after := range []int64{0, 4} {
		if _, err := s.Watch(ctx, after); !errors.Is(err, store.ErrCompacted) {
			t.Errorf("Watch(%d) after Compact(6): %v, want ErrCompacted", after, err)
		}
	}
	for _, after := range []int64{5, 9, 10} {
		ch, err := s.Watch(ctx, after)
		if err != nil {
			t.Fatalf("Watch(%d) after Compact(6): %v", after, err)
		}
		got := receive(t, ch, int(10-after))
		for i, ev := range got {
			if want := after + 1 + int64(i); ev.Revision != want || string(ev.Value) != fmt.Sprint(want-1) {
				t.Errorf("Watch(%d) event %d = rev %d value %q, want rev %d", after, i, ev.Revision, ev.Value, want)
			}
		}
	}
	// A watcher that is behind when history is dropped must not skip: it
	// either delivers every event or its channel closes early, and then
	// watching again from where it stopped returns ErrCompacted.
	ch, err := s.Watch(ctx, 10)
	if err != nil {
		t.Fatalf("Watch(10): %v", err)
	}
	const last = 310
	for i := 11; i <= last; i++ {
		putAll(t, s, "k", fmt.Sprint(i))
	}
	if err := c.Compact(ctx, 300); err != nil {
		t.Fatalf("Compact(300): %v", err)
	}
	got := drainUntil(t, ch, last)
	checkConsecutive(t, got, 11)
	if n := int64(len(got)); n < last-10 {
		stopped := 10 + n
		if stopped >= 299 {
			t.Errorf("watcher closed after revision %d although the store kept 300 on", stopped)
		}
		if _, err := s.Watch(ctx, stopped); !errors.Is(err, store.ErrCompacted) {
			t.Errorf("Watch(%d) after the watcher was dropped: %v, want ErrCompacted", stopped, err)
		}
	}
}

func testWatchClosesOnCancel(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	putAll(t, s, "a", "1")
	ch, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	receive(t, ch, 1)
	idle, err := s.Watch(ctx, 1) // waiting for a commit when canceled
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	cancel()
	for range drain(t, ch) {
	}
	for range drain(t, idle) {
	}
	// The store still works.
	if rev := putAll(t, s, "b", "2"); rev != 2 {
		t.Errorf("revision after cancel = %d, want 2", rev)
	}
}

func testWatchClosesOnClose(t *testing.T, s store.Store) {
	ctx := t.Context()
	putAll(t, s, "a", "1")
	idle, err := s.Watch(ctx, 1)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	// One that never reads, with more events than a channel buffers.
	for i := range 200 {
		putAll(t, s, "b", fmt.Sprint(i))
	}
	blocked, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Close did not return while a watcher was not reading")
	}
	// Either watcher may have buffered some events; those must be in order.
	checkConsecutive(t, drain(t, idle), 2)
	checkConsecutive(t, drain(t, blocked), 1)
}

func testClosed(t *testing.T, s store.Store) {
	ctx := t.Context()
	putAll(t, s, "a", "1")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.View(ctx, func(store.Reader) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("View after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Update(ctx, func(store.Txn) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Update after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Watch(ctx, 0); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Watch after Close: %v, want ErrClosed", err)
	}
}

// cmpEmpty treats nil and empty values alike where the test does not care.
var cmpEmpty = cmp.Comparer(func(a, b []byte) bool { return string(a) == string(b) })

// putAll writes key, value pairs in one transaction and returns its revision.
func putAll(t *testing.T, s store.Store, kv ...string) int64 {
	t.Helper()
	return mustUpdate(t, s, func(tx store.Txn) error {
		for i := 0; i+1 < len(kv); i += 2 {
			if err := tx.Put(kv[i], []byte(kv[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
}

func mustUpdate(t *testing.T, s store.Store, fn func(store.Txn) error) int64 {
	t.Helper()
	rev, err := s.Update(t.Context(), fn)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	return rev
}

func mustView(t *testing.T, s store.Store, fn func(store.Reader) error) {
	t.Helper()
	if err := s.View(t.Context(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

func mustGet(t *testing.T, s store.Store, key string, want []byte, wantOK bool) {
	t.Helper()
	mustView(t, s, func(r store.Reader) error {
		v, ok, err := r.Get(key)
		if err != nil {
			return err
		}
		if ok != wantOK || string(v) != string(want) || (wantOK && v == nil) {
			t.Errorf("Get(%q) = %q, %v; want %q, %v", key, v, ok, want, wantOK)
		}
		return nil
	})
}

func revision(t *testing.T, s store.Store) int64 {
	t.Helper()
	var rev int64
	mustView(t, s, func(r store.Reader) error { rev = r.Revision(); return nil })
	return rev
}

// receive reads n events from ch, failing on a timeout or an early close.
func receive(t *testing.T, ch <-chan store.Event, n int) []store.Event {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	got := make([]store.Event, 0, n)
	for len(got) < n {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %d of %d events", len(got), n)
			}
			got = append(got, ev)
		case <-timer.C:
			t.Fatalf("timed out after %d of %d events", len(got), n)
		}
	}
	return got
}

// expectNothing fails if ch delivers an event within a short time.
func expectNothing(t *testing.T, ch <-chan store.Event) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if ok {
			t.Errorf("unexpected event %+v", ev)
		} else {
			t.Error("channel closed unexpectedly")
		}
	case <-time.After(50 * time.Millisecond):
	}
}

// drainUntil reads ch until it delivers an event of revision last or closes,
// failing on a timeout.
func drainUntil(t *testing.T, ch <-chan store.Event, last int64) []store.Event {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	var got []store.Event
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return got
			}
			got = append(got, ev)
			if ev.Revision >= last {
				return got
			}
		case <-timer.C:
			t.Fatalf("no event of revision %d and no close after %s (%d events read)", last, waitTimeout, len(got))
			return got
		}
	}
}

// checkConsecutive checks that evs, one event per transaction, have the
// revisions first, first+1, ...
func checkConsecutive(t *testing.T, evs []store.Event, first int64) {
	t.Helper()
	for i, ev := range evs {
		if want := first + int64(i); ev.Revision != want {
			t.Fatalf("event %d has revision %d, want %d", i, ev.Revision, want)
		}
	}
}

// drain returns the remaining events of ch and fails if ch is not closed
// within waitTimeout.
func drain(t *testing.T, ch <-chan store.Event) []store.Event {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	var got []store.Event
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return got
			}
			got = append(got, ev)
		case <-timer.C:
			t.Fatalf("channel not closed after %s (%d events read)", waitTimeout, len(got))
			return got
		}
	}
}
