// SPDX-License-Identifier: Apache-2.0

package meshbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weft-mesh/weft/test/netsim"
)

// Process is one run of a weft binary (or a long-running program) in a
// workload.
type Process struct {
	// Name names the process in messages.
	Name string

	tb     testing.TB
	cmd    *exec.Cmd
	out    *SyncBuffer // stdout and stderr
	done   chan struct{}
	err    error
	killed atomic.Bool
}

// Start starts cmd, whose output it collects. The cleanup of tb stops it
// with SIGTERM (SIGKILL after 10s) and reports an unclean exit of a process
// that was not killed on purpose; a failed test logs its output.
func Start(tb testing.TB, name string, cmd *exec.Cmd) *Process {
	tb.Helper()
	p := &Process{tb: tb, Name: name, cmd: cmd, out: &SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.Stop()
		if tb.Failed() {
			tb.Logf("%s (pid %d) ended with %v; its output (the end of it):\n%s", name, cmd.Process.Pid, p.err, Tail(p.out.Bytes(), 48<<10))
		}
	})
	return p
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output returns what the process has written so far (stdout and stderr).
func (p *Process) Output() []byte { return p.out.Bytes() }

// Exited returns an error when the process has ended.
func (p *Process) Exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %w\n%s", p.Name, p.err, Tail(p.out.Bytes(), 16<<10))
	default:
		return nil
	}
}

// Kill sends SIGKILL and waits until the process is reaped.
func (p *Process) Kill() {
	p.tb.Helper()
	p.killed.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.tb.Fatalf("kill %s: %v", p.Name, err)
	}
	<-p.done
}

// Stop ends the process with SIGTERM, SIGKILL after 10s, and reports an
// unclean exit.
func (p *Process) Stop() {
	tb := p.tb
	tb.Helper()
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			tb.Errorf("%s did not stop within 10s of SIGTERM", p.Name)
			p.killed.Store(true)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	if !p.killed.Load() && p.err != nil {
		tb.Errorf("%s exited with %v", p.Name, p.err)
	}
}

// LogLines returns the process's JSON log lines whose msg is msg.
func (p *Process) LogLines(msg string) []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(string(p.out.Bytes()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// FirstApplied returns the time of the proxy's first "configuration
// applied" of node id after t0, from its JSON log.
func (p *Process) FirstApplied(nodeID string, t0 time.Time) (time.Time, bool) {
	for _, l := range p.LogLines("configuration applied") {
		ts, _ := l["time"].(string)
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err == nil && l["node"] == nodeID && at.After(t0) {
			return at, true
		}
	}
	return time.Time{}, false
}

// Tail returns the last n bytes of b, marked as cut when it is longer.
func Tail(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return append([]byte("...\n"), b[len(b)-n:]...)
}

// WaitOutput waits until p has printed a line starting with prefix.
func WaitOutput(tb testing.TB, p *netsim.Process, prefix string) {
	tb.Helper()
	Eventually(tb, 10*time.Second, func() error {
		for line := range strings.SplitSeq(string(p.Stdout()), "\n") {
			if strings.HasPrefix(line, prefix) {
				return nil
			}
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited (%w) before printing %q; stderr: %s", p.Name, p.Wait(), prefix, p.Stderr())
		default:
		}
		return fmt.Errorf("%s has not printed %q yet", p.Name, prefix)
	})
}

// Eventually calls fn until it returns nil and fails tb with fn's last
// error if that does not happen within timeout, or at once when tb's
// context ends (the demo's Ctrl-C). The interval between calls starts at
// 10ms and doubles up to 250ms.
func Eventually(tb testing.TB, timeout time.Duration, fn func() error) {
	tb.Helper()
	ctx := tb.Context()
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for tries := 1; ; tries++ {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().Add(wait).After(deadline) {
			tb.Fatalf("condition not met after %v (%d tries): %v", timeout, tries, err)
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("interrupted (%v) while waiting: %v", context.Cause(ctx), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// SyncBuffer is a bytes buffer safe for concurrent use.
type SyncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

// Write appends b.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Bytes returns a copy of the contents.
func (b *SyncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.buf)
}
