// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package netsim

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/weft-mesh/weft/test/testutil"
)

// New skips the test (or fails it under WEFT_REQUIRE_PRIVILEGED=1) outside
// Linux.
func New(tb testing.TB, _ Options) *Net {
	tb.Helper()
	testutil.RequirePrivileged(tb)
	tb.Fatal("netsim: simulated networks need Linux")
	return nil
}

// Main runs the tests; outside Linux there are no workload processes.
func Main(m *testing.M, _ Programs) {
	os.Exit(m.Run())
}

// RunMain returns at once outside Linux: there are no workload processes.
func RunMain(Programs) {}

// CgroupID returns testutil.ErrNotSupported outside Linux.
func CgroupID(string) (uint64, error) {
	return 0, fmt.Errorf("read cgroup id: %w", testutil.ErrNotSupported)
}

// AddNode fails the test outside Linux.
func (n *Net) AddNode(string) *Node {
	n.t.Helper()
	n.t.Fatal("netsim: simulated networks need Linux")
	return nil
}

// Nodes returns nil outside Linux.
func (*Net) Nodes() []*Node { return nil }

// AddWorkload fails the test outside Linux.
func (node *Node) AddWorkload(string, WorkloadOptions) *Workload {
	node.net.t.Helper()
	node.net.t.Fatal("netsim: simulated networks need Linux")
	return nil
}

// Workloads returns nil outside Linux.
func (*Node) Workloads() []*Workload { return nil }

// String returns the node's name.
func (node *Node) String() string { return node.Name }

// String returns "node/workload".
func (w *Workload) String() string { return w.Node.Name + "/" + w.Name }

// Program returns a command whose Start fails outside Linux.
func (*Workload) Program(ctx context.Context, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Err = fmt.Errorf("netsim: run program: %w", testutil.ErrNotSupported)
	return cmd
}

// Command returns a command whose Start fails outside Linux.
func (*Workload) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Err = fmt.Errorf("netsim: run command: %w", testutil.ErrNotSupported)
	return cmd
}

// Run returns testutil.ErrNotSupported outside Linux.
func (*Workload) Run(context.Context, string, ...string) ([]byte, error) {
	return nil, fmt.Errorf("netsim: run program: %w", testutil.ErrNotSupported)
}

// Start returns testutil.ErrNotSupported outside Linux.
func (*Workload) Start(context.Context, string, ...string) (*Process, error) {
	return nil, fmt.Errorf("netsim: start program: %w", testutil.ErrNotSupported)
}

// Pid returns -1 outside Linux.
func (*Process) Pid() int { return -1 }

// Done returns a closed channel outside Linux.
func (*Process) Done() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// Wait returns testutil.ErrNotSupported outside Linux.
func (*Process) Wait() error { return testutil.ErrNotSupported }

// Signal returns testutil.ErrNotSupported outside Linux.
func (*Process) Signal(os.Signal) error { return testutil.ErrNotSupported }

// Kill returns testutil.ErrNotSupported outside Linux.
func (*Process) Kill() error { return testutil.ErrNotSupported }

// Stdout returns nil outside Linux.
func (*Process) Stdout() []byte { return nil }

// Stderr returns nil outside Linux.
func (*Process) Stderr() []byte { return nil }
