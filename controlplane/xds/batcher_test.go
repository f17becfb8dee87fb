// SPDX-License-Identifier: Apache-2.0

package xds_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weft-mesh/weft/controlplane/store"
	"github.com/weft-mesh/weft/controlplane/store/boltstore"
	"github.com/weft-mesh/weft/controlplane/xds"
)

// rebuilds records the revisions the batcher rebuilt at.
type rebuilds struct {
	mu      sync.Mutex
	revs    []int64
	batches []xds.Batch
}

func (r *rebuilds) rebuild(_ context.Context, b xds.Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revs = append(r.revs, b.Rev)
	r.batches = append(r.batches, b)
	return nil
}

func (r *rebuilds) getBatches() []xds.Batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]xds.Batch(nil), r.batches...)
}

func (r *rebuilds) get() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.revs...)
}

func runBatcher(t *testing.T, cfg xds.BatcherConfig, rb xds.RebuildFunc, events <-chan store.Event) (stop func() error) {
	t.Helper()
	b, err := xds.NewBatcher(cfg, rb)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, events) }()
	return func() error {
		cancel()
		return <-done
	}
}

// TestBatcherCoalescesBurst delivers 1,000 events within a few
// milliseconds and expects a handful of rebuilds, the last at the last
// revision.
func TestBatcherCoalescesBurst(t *testing.T) {
	defer goleak.VerifyNone(t)
	var rb rebuilds
	events := make(chan store.Event)
	stop := runBatcher(t, xds.BatcherConfig{Debounce: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond}, rb.rebuild, events)
	for i := int64(1); i <= 1000; i++ {
		events <- store.Event{Revision: i, Type: store.EventPut, Key: "k"}
	}
	waitFor(t, func() bool { revs := rb.get(); return len(revs) > 0 && revs[len(revs)-1] == 1000 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(rb.get()); n > 5 {
		t.Errorf("%d rebuilds for a burst of 1000 events, want at most 5", n)
	}
}

// TestBatcherEndpointBatches sends endpoint signals (events without a
// type): they are rebuilt after EndpointDebounce, as an endpoint-only
// batch, while a store change would wait for Debounce (an hour here); a
// batch with both is a store batch. 1,000 signals coalesce into few
// batches.
func TestBatcherEndpointBatches(t *testing.T) {
	defer goleak.VerifyNone(t)
	var rb rebuilds
	events := make(chan store.Event)
	b, err := xds.NewBatcher(xds.BatcherConfig{Debounce: time.Hour, EndpointDebounce: 5 * time.Millisecond, MaxDelay: 2 * time.Hour}, rb.rebuild)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Run(context.Background(), events) }()
	for range 1000 {
		events <- store.Event{}
	}
	waitFor(t, func() bool { return len(rb.getBatches()) > 0 })
	got := rb.getBatches()
	if len(got) > 5 {
		t.Errorf("%d rebuilds for a burst of 1000 endpoint signals, want at most 5", len(got))
	}
	for _, bt := range got {
		if bt.Store || bt.Rev != 0 {
			t.Errorf("endpoint-only burst rebuilt as %+v", bt)
		}
	}
	events <- store.Event{Revision: 7, Type: store.EventPut, Key: "k"}
	events <- store.Event{}
	close(events)
	if err := <-done; !errors.Is(err, xds.ErrEventsClosed) {
		t.Fatalf("Run: %v, want ErrEventsClosed", err)
	}
	all := rb.getBatches()
	if last := all[len(all)-1]; len(all) != len(got)+1 || last != (xds.Batch{Rev: 7, Store: true}) {
		t.Errorf("batches after a store change and a signal: %+v", all[len(got):])
	}
}

// TestBatcherEndpointsDoNotWaitForStore sends a store change, whose batch
// waits for Debounce (an hour here), then an endpoint signal: the signal
// is rebuilt as an endpoint batch at once, the store change stays pending
// until the stream closes.
func TestBatcherEndpointsDoNotWaitForStore(t *testing.T) {
	defer goleak.VerifyNone(t)
	var rb rebuilds
	events := make(chan store.Event)
	b, err := xds.NewBatcher(xds.BatcherConfig{Debounce: time.Hour, EndpointDebounce: time.Millisecond, MaxDelay: 2 * time.Hour}, rb.rebuild)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Run(context.Background(), events) }()
	events <- store.Event{Revision: 3, Type: store.EventPut, Key: "k"}
	events <- store.Event{}
	waitFor(t, func() bool { return len(rb.getBatches()) > 0 })
	close(events)
	if err := <-done; !errors.Is(err, xds.ErrEventsClosed) {
		t.Fatalf("Run: %v, want ErrEventsClosed", err)
	}
	want := []xds.Batch{{Rev: 3}, {Rev: 3, Store: true}}
	if got := rb.getBatches(); !slices.Equal(got, want) {
		t.Errorf("batches %+v, want %+v", got, want)
	}
}

// TestBatcherMaxDelay keeps events coming for longer than MaxDelay and
// expects a rebuild before they stop.
func TestBatcherMaxDelay(t *testing.T) {
	defer goleak.VerifyNone(t)
	var rb rebuilds
	events := make(chan store.Event)
	stop := runBatcher(t, xds.BatcherConfig{Debounce: 50 * time.Millisecond, MaxDelay: 100 * time.Millisecond}, rb.rebuild, events)
	deadline := time.Now().Add(400 * time.Millisecond)
	for i := int64(1); time.Now().Before(deadline); i++ {
		events <- store.Event{Revision: i}
		time.Sleep(5 * time.Millisecond)
	}
	if len(rb.get()) == 0 {
		t.Error("no rebuild while events kept coming for 4x MaxDelay")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestBatcherWithStore drives the batcher from a real boltstore Watch: 1,000
// writes in 100 transactions become few rebuilds, and closing the store
// flushes and ends Run with ErrEventsClosed.
func TestBatcherWithStore(t *testing.T) {
	defer goleak.VerifyNone(t)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "weft.db"), boltstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := st.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var rb rebuilds
	b, err := xds.NewBatcher(xds.BatcherConfig{Debounce: 200 * time.Millisecond, MaxDelay: time.Second}, rb.rebuild)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, events) }()
	var last int64
	for i := range 100 {
		last, err = st.Update(ctx, func(tx store.Txn) error {
			for j := range 10 {
				if err := tx.Put("k/"+strconv.Itoa(i*10+j), []byte("v")); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { revs := rb.get(); return len(revs) > 0 && revs[len(revs)-1] == last })
	if n := len(rb.get()); n > 10 {
		t.Errorf("%d rebuilds for 100 transactions, want a few", n)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, xds.ErrEventsClosed) {
		t.Errorf("Run after the store closed = %v, want ErrEventsClosed", err)
	}
}

func TestBatcherRebuildError(t *testing.T) {
	defer goleak.VerifyNone(t)
	boom := errors.New("boom")
	events := make(chan store.Event, 1)
	b, err := xds.NewBatcher(xds.BatcherConfig{Debounce: time.Millisecond, MaxDelay: time.Millisecond}, func(context.Context, xds.Batch) error { return boom })
	if err != nil {
		t.Fatal(err)
	}
	events <- store.Event{Revision: 7}
	if err := b.Run(context.Background(), events); !errors.Is(err, boom) {
		t.Errorf("Run = %v, want the rebuild error", err)
	}
}

func TestBatcherConfigValidate(t *testing.T) {
	if _, err := xds.NewBatcher(xds.BatcherConfig{Debounce: time.Second, MaxDelay: time.Millisecond}, nil); err == nil {
		t.Error("debounce above max delay accepted")
	}
	if _, err := xds.NewBatcher(xds.BatcherConfig{Debounce: -1}, nil); err == nil {
		t.Error("negative debounce accepted")
	}
}

// waitFor polls cond for up to 10 s (generous: the machine is shared).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
