// SPDX-License-Identifier: Apache-2.0

package netsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Standalone is a testing.TB for programs that are not tests, such as `make
// demo`: it lets them use New, the workload processes and the test/testutil
// helpers, which all take a testing.TB. It implements what those use: Helper,
// Cleanup, TempDir, Name, Context, Log(f), Error(f), Fatal(f), Fail(Now),
// Failed, Skip(f/Now) (a skip is a failure: a program has nothing to skip
// to), Skipped, Output, Attr and ArtifactDir (the temporary directory).
// Setenv and Chdir panic: they change the whole process.
//
// Fatal and FailNow end the function given to Do, which returns the error;
// they must be called from Do's goroutine, as with testing.T. Close runs the
// cleanups (last registered first) and removes the temporary directories.
type Standalone struct {
	// testing.TB is never set: it only supplies testing.TB's unexported
	// method. Every exported method is Standalone's own.
	testing.TB

	name string
	ctx  context.Context
	log  io.Writer

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	errs     []string
	tmp      string
	tmpN     int
	closed   bool
}

// fatal is the panic value of Fatal and FailNow, recovered by Do.
type fatal struct{}

// NewStandalone returns a Standalone named name (it appears in temporary
// directory names) whose Context is ctx and whose Log output goes to log
// (io.Discard if nil).
func NewStandalone(ctx context.Context, name string, log io.Writer) *Standalone {
	if log == nil {
		log = io.Discard
	}
	return &Standalone{name: name, ctx: ctx, log: log}
}

// Do runs fn. It returns nil when fn returns and nothing failed, and an error
// that holds every Error and Fatal message otherwise, also when fn called
// Fatal or FailNow (which end fn). Another panic is not recovered.
func (s *Standalone) Do(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(fatal); !ok {
				panic(r)
			}
		}
		err = s.Err()
	}()
	fn()
	return nil
}

// Err returns an error holding the Error and Fatal messages so far, or nil
// when nothing failed.
func (s *Standalone) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.failed {
		return nil
	}
	var errs []error
	for _, e := range s.errs {
		errs = append(errs, errors.New(e))
	}
	if len(errs) == 0 {
		errs = append(errs, errors.New("failed"))
	}
	return errors.Join(errs...)
}

// Close runs the cleanups, last registered first (a cleanup may register
// more), then removes the temporary directories. It returns Err. Calling
// it again does nothing more.
func (s *Standalone) Close() error {
	for {
		s.mu.Lock()
		if len(s.cleanups) == 0 {
			s.closed = true
			tmp := s.tmp
			s.tmp = ""
			s.mu.Unlock()
			if tmp != "" {
				if err := os.RemoveAll(tmp); err != nil {
					s.Errorf("remove %s: %v", tmp, err)
				}
			}
			return s.Err()
		}
		fn := s.cleanups[len(s.cleanups)-1]
		s.cleanups = s.cleanups[:len(s.cleanups)-1]
		s.mu.Unlock()
		s.runCleanup(fn)
	}
}

// runCleanup runs one cleanup; a Fatal in it ends only that cleanup.
func (s *Standalone) runCleanup(fn func()) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(fatal); !ok {
				panic(r)
			}
		}
	}()
	fn()
}

// Helper does nothing.
func (*Standalone) Helper() {}

// Name returns the name given to NewStandalone.
func (s *Standalone) Name() string { return s.name }

// Context returns the context given to NewStandalone.
func (s *Standalone) Context() context.Context { return s.ctx }

// Output returns the log writer.
func (s *Standalone) Output() io.Writer { return s.log }

// Cleanup registers fn to run at Close.
func (s *Standalone) Cleanup(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, fn)
}

// TempDir returns a new directory under a temporary directory of the
// Standalone's own, which Close removes.
func (s *Standalone) TempDir() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		panic("netsim: TempDir after Close")
	}
	if s.tmp == "" {
		dir, err := os.MkdirTemp("", "weft-"+s.name+"-")
		if err != nil {
			s.fail(fmt.Sprintf("TempDir: %v", err))
			panic(fatal{})
		}
		s.tmp = dir
	}
	s.tmpN++
	dir := filepath.Join(s.tmp, fmt.Sprintf("%03d", s.tmpN))
	if err := os.Mkdir(dir, 0o700); err != nil {
		s.fail(fmt.Sprintf("TempDir: %v", err))
		panic(fatal{})
	}
	return dir
}

// ArtifactDir returns a new temporary directory.
func (s *Standalone) ArtifactDir() string { return s.TempDir() }

// Attr logs the attribute.
func (s *Standalone) Attr(key, value string) { s.Logf("=== ATTR %s %s", key, value) }

// Log writes its arguments to the log, as fmt.Sprintln does.
func (s *Standalone) Log(args ...any) { s.logLine(fmt.Sprintln(args...)) }

// Logf writes to the log.
func (s *Standalone) Logf(format string, args ...any) { s.logLine(fmt.Sprintf(format, args...)) }

func (s *Standalone) logLine(line string) {
	if line == "" || line[len(line)-1] != '\n' {
		line += "\n"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = io.WriteString(s.log, line)
}

func (s *Standalone) fail(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed = true
	if msg != "" {
		s.errs = append(s.errs, msg)
	}
}

// Fail marks the Standalone as failed.
func (s *Standalone) Fail() { s.fail("") }

// Failed reports whether anything failed.
func (s *Standalone) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// Error records a failure, as fmt.Sprint formats it.
func (s *Standalone) Error(args ...any) { s.fail(fmt.Sprint(args...)) }

// Errorf records a failure.
func (s *Standalone) Errorf(format string, args ...any) { s.fail(fmt.Sprintf(format, args...)) }

// FailNow marks the Standalone as failed and ends the function given to Do.
func (s *Standalone) FailNow() {
	s.fail("")
	panic(fatal{})
}

// Fatal is Error then FailNow.
func (s *Standalone) Fatal(args ...any) {
	s.fail(fmt.Sprint(args...))
	panic(fatal{})
}

// Fatalf is Errorf then FailNow.
func (s *Standalone) Fatalf(format string, args ...any) {
	s.fail(fmt.Sprintf(format, args...))
	panic(fatal{})
}

// Skip is Fatal: a program has nothing to skip to.
func (s *Standalone) Skip(args ...any) { s.Fatal(append([]any{"skipped: "}, args...)...) }

// Skipf is Fatalf: a program has nothing to skip to.
func (s *Standalone) Skipf(format string, args ...any) { s.Fatalf("skipped: "+format, args...) }

// SkipNow is FailNow.
func (s *Standalone) SkipNow() { s.Fatal("skipped") }

// Skipped returns false: skips are failures.
func (*Standalone) Skipped() bool { return false }

// Setenv panics: it would change the whole process.
func (*Standalone) Setenv(string, string) { panic("netsim: Standalone.Setenv is not supported") }

// Chdir panics: it would change the whole process.
func (*Standalone) Chdir(string) { panic("netsim: Standalone.Chdir is not supported") }
