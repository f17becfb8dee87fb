// SPDX-License-Identifier: Apache-2.0

package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/weft-mesh/weft/controlplane/store"
	"github.com/weft-mesh/weft/controlplane/store/storetest"
)

var _ storetest.Compacter = (*Store)(nil)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		t.Helper()
		return openTest(t, filepath.Join(t.TempDir(), "weft.db"), Options{})
	})
}

// checkLeaks fails the test if it leaves goroutines behind once its
// cleanups, closing its stores, have run. Call it first.
func checkLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// testLogger logs to the test's output, shown on failure or with -v.
// Benchmarks get a silent logger, so their output stays a table.
func testLogger(tb testing.TB) *slog.Logger {
	tb.Helper()
	if _, ok := tb.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openTest opens a store and closes it at the end of the test.
func openTest(tb testing.TB, path string, opts Options) *Store {
	tb.Helper()
	s, err := Open(path, opts, testLogger(tb))
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func put(tb testing.TB, s *Store, kv ...string) int64 {
	tb.Helper()
	rev, err := s.Update(context.Background(), func(tx store.Txn) error {
		for i := 0; i+1 < len(kv); i += 2 {
			if err := tx.Put(kv[i], []byte(kv[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("Update: %v", err)
	}
	return rev
}

// logRange returns the current revision and the oldest one in the log.
func logRange(tb testing.TB, s *Store) (rev, oldest int64) {
	tb.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rev, oldest, err = history(tx)
		return err
	})
	if err != nil {
		tb.Fatalf("read history: %v", err)
	}
	return rev, oldest
}

// receiveN reads n events from ch or fails after a timeout.
func receiveN(tb testing.TB, ch <-chan store.Event, n int) []store.Event {
	tb.Helper()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	var got []store.Event
	for len(got) < n {
		select {
		case ev, ok := <-ch:
			if !ok {
				tb.Fatalf("channel closed after %d of %d events", len(got), n)
			}
			got = append(got, ev)
		case <-timer.C:
			tb.Fatalf("timed out after %d of %d events", len(got), n)
		}
	}
	return got
}

func TestReopen(t *testing.T) {
	checkLeaks(t)
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "weft.db")

	s, err := Open(path, Options{}, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	put(t, s, "a", "1")
	put(t, s, "b", "2", "c", "3")
	if _, err := s.Update(ctx, func(tx store.Txn) error { return tx.Delete("a") }); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openTest(t, path, Options{})
	var kvs []store.KV
	var rev int64
	err = s.View(ctx, func(r store.Reader) error {
		rev = r.Revision()
		var err error
		kvs, err = r.List("", "", 0)
		return err
	})
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	if rev != 3 {
		t.Errorf("revision after reopen = %d, want 3", rev)
	}
	wantKVs := []store.KV{{Key: "b", Value: []byte("2")}, {Key: "c", Value: []byte("3")}}
	if diff := cmp.Diff(wantKVs, kvs); diff != "" {
		t.Errorf("data after reopen mismatch (-want +got):\n%s", diff)
	}
	if got := put(t, s, "d", "4"); got != 4 {
		t.Errorf("first write after reopen: revision %d, want 4", got)
	}

	// The history written before the reopen is still there.
	ch, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	want := []store.Event{
		{Revision: 1, Type: store.EventPut, Key: "a", Value: []byte("1")},
		{Revision: 2, Type: store.EventPut, Key: "b", Value: []byte("2")},
		{Revision: 2, Type: store.EventPut, Key: "c", Value: []byte("3")},
		{Revision: 3, Type: store.EventDelete, Key: "a"},
		{Revision: 4, Type: store.EventPut, Key: "d", Value: []byte("4")},
	}
	if diff := cmp.Diff(want, receiveN(t, ch, len(want))); diff != "" {
		t.Errorf("replayed history mismatch (-want +got):\n%s", diff)
	}
}

func TestHistoryLimit(t *testing.T) {
	checkLeaks(t)
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "weft.db")

	s, err := Open(path, Options{HistoryLimit: 5}, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	for i := range 3 {
		put(t, s, "k", fmt.Sprint(i))
	}
	if rev, oldest := logRange(t, s); rev != 3 || oldest != 1 {
		t.Errorf("after 3 writes: revision %d oldest %d, want 3 and 1", rev, oldest)
	}
	for i := 3; i < 12; i++ {
		put(t, s, "k", fmt.Sprint(i))
	}
	// Revisions 8..12 are kept.
	if rev, oldest := logRange(t, s); rev != 12 || oldest != 8 {
		t.Errorf("after 12 writes: revision %d oldest %d, want 12 and 8", rev, oldest)
	}
	if _, err := s.Watch(ctx, 6); !errors.Is(err, store.ErrCompacted) {
		t.Errorf("Watch(6): %v, want ErrCompacted", err)
	}
	if _, err := s.Watch(ctx, 0); !errors.Is(err, store.ErrCompacted) {
		t.Errorf("Watch(0): %v, want ErrCompacted", err)
	}
	ch, err := s.Watch(ctx, 7)
	if err != nil {
		t.Fatalf("Watch(7): %v", err)
	}
	for i, ev := range receiveN(t, ch, 5) {
		if ev.Revision != int64(8+i) {
			t.Errorf("event %d: revision %d, want %d", i, ev.Revision, 8+i)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// A smaller limit applies from the next write on.
	s = openTest(t, path, Options{HistoryLimit: 2})
	if rev, oldest := logRange(t, s); rev != 12 || oldest != 8 {
		t.Errorf("after reopen: revision %d oldest %d, want 12 and 8", rev, oldest)
	}
	put(t, s, "k", "x")
	if rev, oldest := logRange(t, s); rev != 13 || oldest != 12 {
		t.Errorf("after a write with limit 2: revision %d oldest %d, want 13 and 12", rev, oldest)
	}
}

func TestCompact(t *testing.T) {
	checkLeaks(t)
	ctx := t.Context()
	s := openTest(t, filepath.Join(t.TempDir(), "weft.db"), Options{})
	for i := range 5 {
		put(t, s, "k", fmt.Sprint(i))
	}
	if err := s.Compact(ctx, 6); err == nil {
		t.Error("Compact(6) beyond revision 5: got nil error")
	}
	if err := s.Compact(ctx, 0); err != nil {
		t.Errorf("Compact(0): %v", err)
	}
	if err := s.Compact(ctx, 5); err != nil {
		t.Errorf("Compact(5): %v", err)
	}
	if rev, oldest := logRange(t, s); rev != 5 || oldest != 5 {
		t.Errorf("after Compact(5): revision %d oldest %d, want 5 and 5", rev, oldest)
	}
	if err := s.Compact(ctx, 3); err != nil {
		t.Errorf("Compact(3) below the oldest: %v", err)
	}
	if got := put(t, s, "k", "x"); got != 6 {
		t.Errorf("revision after Compact = %d, want 6", got)
	}
}

// TestSlowWatcherDropped: a watcher that reads nothing while more than the
// history limit of transactions commit never blocks Update, never skips an
// event, and is closed once its next events are gone.
func TestSlowWatcherDropped(t *testing.T) {
	checkLeaks(t)
	ctx := t.Context()
	s := openTest(t, filepath.Join(t.TempDir(), "weft.db"), Options{HistoryLimit: 10})
	ch, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	// More than the channel buffer plus one batch plus the history.
	const n = watchBuffer + batchMaxTxns + 100
	for i := 1; i <= n; i++ {
		put(t, s, "k", fmt.Sprint(i))
	}
	var got []store.Event
	timeout := time.After(30 * time.Second)
	for open := true; open; {
		select {
		case ev, ok := <-ch:
			if ok {
				got = append(got, ev)
			}
			open = ok
		case <-timeout:
			t.Fatalf("channel not closed; read %d events", len(got))
		}
	}
	for i, ev := range got {
		if ev.Revision != int64(i+1) {
			t.Fatalf("event %d: revision %d, want %d", i, ev.Revision, i+1)
		}
	}
	if len(got) >= n-10 {
		t.Fatalf("read %d events; the watcher should have been dropped", len(got))
	}
	if _, err := s.Watch(ctx, int64(len(got))); !errors.Is(err, store.ErrCompacted) {
		t.Errorf("Watch(%d): %v, want ErrCompacted", len(got), err)
	}
}

func TestOpenLocked(t *testing.T) {
	checkLeaks(t)
	path := filepath.Join(t.TempDir(), "weft.db")
	openTest(t, path, Options{})

	for _, timeout := range []time.Duration{100 * time.Millisecond, 0} {
		wait := timeout
		if wait == 0 {
			wait = DefaultTimeout
		}
		start := time.Now()
		s, err := Open(path, Options{Timeout: timeout}, testLogger(t))
		elapsed := time.Since(start)
		if err == nil {
			_ = s.Close()
			t.Fatal("second Open of an open file: got nil error")
		}
		if !errors.Is(err, ErrLocked) {
			t.Errorf("second Open: %v, want ErrLocked", err)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "open store "+path+": database is locked by another process") {
			t.Errorf("error message %q is not clear", msg)
		}
		if elapsed < wait/2 || elapsed > wait+2*time.Second { // bbolt polls the lock every 50ms
			t.Errorf("second Open with timeout %s failed after %s", timeout, elapsed)
		}
		t.Logf("second Open with timeout %s: %v (after %s)", timeout, err, elapsed.Round(time.Millisecond))
	}
}

func TestOpenCreatesDirectory(t *testing.T) {
	checkLeaks(t)
	dir := filepath.Join(t.TempDir(), "data", "nested")
	path := filepath.Join(dir, "weft.db")
	openTest(t, path, Options{})
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {path, 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatalf("stat: %v", err)
		}
		// The umask may only remove bits.
		if fi.Mode()&^c.mode != 0 {
			t.Errorf("mode of %s = %s, want at most %s", c.path, fi.Mode(), c.mode)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()

	_, err := Open(filepath.Join(dir, "weft.db"), Options{HistoryLimit: -1, Timeout: -time.Second}, nil)
	if err == nil || !strings.Contains(err.Error(), "history limit -1 is negative") || !strings.Contains(err.Error(), "lock timeout -1s is negative") {
		t.Errorf("Open with invalid options: %v, want both fields reported", err)
	}

	notDB := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("not a bbolt file ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(notDB, Options{}, nil); err == nil || !strings.HasPrefix(err.Error(), "open store "+notDB+": ") {
		t.Errorf("Open of a non-bbolt file: %v", err)
	}

	// A file from a newer layout is refused, not misread.
	newer := filepath.Join(dir, "newer.db")
	db, err := bolt.Open(newer, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(metaVersion, encodeRev(layoutVersion+1))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(newer, Options{}, nil); err == nil || !strings.Contains(err.Error(), "check layout version: file has 2, this build reads 1") {
		t.Errorf("Open of a newer layout: %v", err)
	}
}

func TestUpdatePanic(t *testing.T) {
	checkLeaks(t)
	s := openTest(t, filepath.Join(t.TempDir(), "weft.db"), Options{})
	put(t, s, "a", "1")
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic in fn was not propagated")
			}
		}()
		_, _ = s.Update(t.Context(), func(tx store.Txn) error {
			if err := tx.Put("a", []byte("2")); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	// The write lock was released and nothing was written.
	if got := put(t, s, "b", "1"); got != 2 {
		t.Errorf("revision after a panicking update = %d, want 2", got)
	}
	err := s.View(t.Context(), func(r store.Reader) error {
		v, _, err := r.Get("a")
		if string(v) != "1" {
			t.Errorf("a = %q after a panicking update, want 1", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCodec(t *testing.T) {
	want := []store.Event{
		{Revision: 7, Type: store.EventPut, Key: "a/b", Value: []byte("v")},
		{Revision: 7, Type: store.EventPut, Key: "", Value: []byte{}},
		{Revision: 7, Type: store.EventDelete, Key: "a/b"},
		{Revision: 7, Type: store.EventPut, Key: strings.Repeat("k", 300), Value: bytes.Repeat([]byte("v"), 3000)},
	}
	var buf []byte
	for _, ev := range want {
		buf = appendEvent(buf, ev.Type, ev.Key, ev.Value)
	}
	got, err := decodeEvents(nil, 7, buf)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
	if got, err := decodeEvents(nil, 1, nil); err != nil || len(got) != 0 {
		t.Errorf("decode empty entry = %v, %v", got, err)
	}

	for name, bad := range map[string][]byte{
		"bad type":          {9, 1, 'k'},
		"short key":         {byte(store.EventPut), 5, 'k'},
		"missing value":     {byte(store.EventPut), 1, 'k'},
		"short value":       {byte(store.EventPut), 1, 'k', 4, 'v'},
		"bad varint":        {byte(store.EventDelete), 0xff},
		"trailing garbage":  append(appendEvent(nil, store.EventDelete, "k", nil), 0),
		"huge length":       {byte(store.EventDelete), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"truncated in full": buf[:len(buf)-1],
	} {
		if _, err := decodeEvents(nil, 3, bad); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: decode error %v, want errCorrupt", name, err)
		}
	}
	if _, err := decodeRev([]byte{1, 2}); !errors.Is(err, errCorrupt) {
		t.Errorf("decodeRev of 2 bytes: %v, want errCorrupt", err)
	}
}

func BenchmarkUpdate(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "weft.db"), Options{})
	ctx := b.Context()
	value := []byte(`{"spec":{"listeners":[{"port":8080}]}}`)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		key := fmt.Sprintf("mesh/m1/virtualNode/vn-%06d", i%5000)
		if _, err := s.Update(ctx, func(tx store.Txn) error { return tx.Put(key, value) }); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkView(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "weft.db"), Options{})
	ctx := b.Context()
	const n = 1000
	_, err := s.Update(ctx, func(tx store.Txn) error {
		for i := range n {
			if err := tx.Put(fmt.Sprintf("mesh/m1/virtualNode/vn-%06d", i), make([]byte, 256)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("mesh/m1/virtualNode/vn-%06d", i)
	}
	b.Run("Get", func(b *testing.B) {
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			err := s.View(ctx, func(r store.Reader) error {
				_, ok, err := r.Get(keys[i%n])
				if !ok {
					return errors.New("missing key")
				}
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("List100", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			err := s.View(ctx, func(r store.Reader) error {
				kvs, err := r.List("mesh/m1/virtualNode/", keys[400], 100)
				if len(kvs) != 100 {
					return fmt.Errorf("listed %d", len(kvs))
				}
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
