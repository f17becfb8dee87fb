// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
)

// harness lets a command use the test helpers (netsim, testutil), which take
// a testing.TB: it keeps their cleanups and runs them, last in first out,
// when the bench ends, whether it ends normally, on an error, or on Ctrl-C.
// Fatalf panics with a fatalError that guard turns back into an error.
//
// The embedded testing.TB is nil: it only satisfies the interface's
// unexported method. The helpers call the methods defined below and no
// others (Helper, Cleanup, Errorf, Fatal, Fatalf, Logf, Failed, TempDir,
// Name); a call of any other method would panic, which guard reports.
type harness struct {
	testing.TB

	log io.Writer

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	tmp      string
}

// fatalError is what Fatalf panics with.
type fatalError struct{ msg string }

func (e fatalError) Error() string { return e.msg }

func newHarness(log io.Writer) (*harness, error) {
	dir, err := os.MkdirTemp("", "weft-bench-")
	if err != nil {
		return nil, err
	}
	h := &harness{log: log, tmp: dir}
	h.Cleanup(func() { _ = os.RemoveAll(dir) })
	return h, nil
}

// Helper does nothing.
func (*harness) Helper() {}

// Name names the bench in the helpers' messages.
func (*harness) Name() string { return "weft-bench" }

// Cleanup registers f to run when the bench ends.
func (h *harness) Cleanup(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleanups = append(h.cleanups, f)
}

// Errorf records a failure and goes on.
func (h *harness) Errorf(format string, args ...any) {
	h.mu.Lock()
	h.failed = true
	h.mu.Unlock()
	fmt.Fprintf(h.log, "bench: "+format+"\n", args...)
}

// Logf logs.
func (h *harness) Logf(format string, args ...any) {
	fmt.Fprintf(h.log, "bench: "+format+"\n", args...)
}

// Fatalf stops the current step (see guard).
func (*harness) Fatalf(format string, args ...any) {
	panic(fatalError{fmt.Sprintf(format, args...)})
}

// Fatal stops the current step (see guard).
func (*harness) Fatal(args ...any) { panic(fatalError{fmt.Sprint(args...)}) }

// Failed reports whether Errorf was called.
func (h *harness) Failed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failed
}

// TempDir returns a new directory, removed when the bench ends.
func (h *harness) TempDir() string {
	d, err := os.MkdirTemp(h.tmp, "tmp-")
	if err != nil {
		h.Fatalf("temp dir: %v", err)
	}
	return d
}

// guard runs fn and turns a Fatalf (or any panic of the helpers) into an
// error.
func (*harness) guard(fn func() error) (err error) {
	defer func() {
		switch r := recover().(type) {
		case nil:
		case fatalError:
			err = r
		default:
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return fn()
}

// close runs the cleanups, last registered first, and reports whether any
// of them failed.
func (h *harness) close() error {
	for {
		h.mu.Lock()
		if len(h.cleanups) == 0 {
			h.mu.Unlock()
			break
		}
		f := h.cleanups[len(h.cleanups)-1]
		h.cleanups = h.cleanups[:len(h.cleanups)-1]
		h.mu.Unlock()
		if err := h.guard(func() error { f(); return nil }); err != nil {
			h.Errorf("cleanup: %v", err)
		}
	}
	if h.Failed() {
		return errors.New("cleanup failed (see above)")
	}
	return nil
}
