// SPDX-License-Identifier: Apache-2.0

package netsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The environment of the re-exec protocol between a test binary and the
// children it starts in workloads.
const (
	// envNetNS asks the child to enter this network namespace (a path)
	// and exec its target: the trampoline.
	envNetNS = "WEFT_NETSIM_NETNS"
	// envExec is the trampoline's target for Command; without it the
	// trampoline re-executes the test binary (Program).
	envExec = "WEFT_NETSIM_EXEC"
	// envProgram names the Programs entry that the test binary runs instead
	// of its tests.
	envProgram = "WEFT_NETSIM_PROGRAM"
)

// Exit codes of a child that could not start its program.
const (
	exitTrampoline = 126
	exitUnknown    = 127
)

// waitDelay bounds how long Run and Start wait for a program's output
// after it exits (a grandchild may hold the pipes open).
const waitDelay = time.Second

// errNoMain is the error of every Program and Command when the test binary
// did not go through Main.
var errNoMain = errors.New("netsim: the test binary must call netsim.Main from TestMain (a program: netsim.RunMain from main)")

// mainPrograms is the table given to Main. Main sets it once, before any
// test runs; afterwards it is only read (a constants-like table in the sense
// of house style item 10, not a registry that grows at run time).
var mainPrograms Programs

// Main is what a test package that uses workload processes calls from
// TestMain, before anything else:
//
//	func TestMain(m *testing.M) {
//		netsim.Main(m, netsim.Programs{
//			"client": clientMain,
//		})
//	}
//
// In the test binary itself Main runs the tests (m.Run) and exits with their
// result. In a child started by Workload.Program, Run, Start or Command it
// instead enters the workload's network namespace and execs the target, or
// runs the named program from progs and exits with its code. Main never
// returns.
func Main(m *testing.M, progs Programs) {
	RunMain(progs)
	os.Exit(m.Run())
}

// RunMain is Main for a program that is not a test (one that uses a
// Standalone): its main calls RunMain first thing. In a child started by
// Workload.Program, Run, Start or Command, RunMain plays the child's part
// (see Main) and exits; otherwise it records progs for Program and
// returns, and the program goes on.
func RunMain(progs Programs) {
	if code, isChild := runChild(progs); isChild {
		os.Exit(code)
	}
	mainPrograms = Programs{}
	for name, fn := range progs {
		mainPrograms[name] = fn
	}
}

// runChild plays the child's part of the protocol, if the environment asks
// for one.
func runChild(progs Programs) (code int, isChild bool) {
	if nsPath, ok := os.LookupEnv(envNetNS); ok {
		return trampoline(nsPath), true
	}
	name, ok := os.LookupEnv(envProgram)
	if !ok {
		return 0, false
	}
	// The program's own children must not take themselves for programs.
	_ = os.Unsetenv(envProgram)
	fn := progs[name]
	if fn == nil {
		fmt.Fprintf(os.Stderr, "netsim: unknown program %q\n", name)
		return exitUnknown, true
	}
	return fn(os.Args[1:]), true
}

// trampoline enters the network namespace at nsPath and execs the target.
// The process was born in the workload's cgroup (clone3 with
// CLONE_INTO_CGROUP), and execve keeps only the calling thread, so the
// target runs in the cgroup and the namespace from its first instruction. It
// returns only on failure.
func trampoline(nsPath string) int {
	// Never unlocked: the thread either execs or the process exits.
	runtime.LockOSThread()
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "netsim: %v\n", err)
		return exitTrampoline
	}
	fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(fmt.Errorf("open network namespace %s: %w", nsPath, err))
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fail(fmt.Errorf("enter network namespace %s: %w", nsPath, err))
	}
	_ = unix.Close(fd)
	env := withoutEnv(os.Environ(), envNetNS, envExec)
	target, ok := os.LookupEnv(envExec)
	if ok {
		env = withoutEnv(env, envProgram)
	} else {
		target = "/proc/self/exe"
	}
	err = unix.Exec(target, os.Args, env)
	return fail(fmt.Errorf("exec %s: %w", target, err))
}

// withoutEnv returns env without the variables named in keys.
func withoutEnv(env []string, keys ...string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, key := range keys {
			drop = drop || k == key
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

// String returns "node/workload".
func (w *Workload) String() string { return w.Node.Name + "/" + w.Name }

// String returns the node's name.
func (node *Node) String() string { return node.Name }

// Program returns a command, not yet started, that runs the Go program
// registered as prog (see Main) with args, as a process of its own in the
// workload's cgroup and network namespace from its first instruction: the
// test binary is started in the cgroup (clone3 with CLONE_INTO_CGROUP),
// enters the namespace and re-executes itself as the program. The caller
// owns the command: set Stdout and the like, add to Env (never replace it),
// then Start and Wait it from any goroutine. A process that outlives the
// test is killed by the Net's cleanup, and it dies with the test binary
// (SIGKILL as parent-death signal).
//
// Start fails with a clear error when the test binary does not call Main or
// prog is not in its Programs.
func (w *Workload) Program(ctx context.Context, prog string, args ...string) *exec.Cmd {
	self, err := os.Executable()
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = append(childEnv(), envNetNS+"="+w.NS.Path(), envProgram+"="+prog)
	cmd.SysProcAttr = w.sysProcAttr()
	switch {
	case err != nil:
		cmd.Err = fmt.Errorf("netsim: find test binary: %w", err)
	case mainPrograms == nil:
		cmd.Err = errNoMain
	case mainPrograms[prog] == nil:
		cmd.Err = fmt.Errorf("netsim: unknown program %q: add it to the Programs given to netsim.Main", prog)
	}
	return cmd
}

// Command returns a command, not yet started, that runs the executable name
// (looked up in PATH) with args in the workload's cgroup and network
// namespace from its first instruction; see Program for how, and for the
// caller's part. The test binary must call Main.
func (w *Workload) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	self, err := os.Executable()
	path, lookErr := exec.LookPath(name)
	cmd := exec.CommandContext(ctx, self)
	cmd.Args = append([]string{name}, args...)
	cmd.Env = append(childEnv(), envNetNS+"="+w.NS.Path(), envExec+"="+path)
	cmd.SysProcAttr = w.sysProcAttr()
	switch {
	case err != nil:
		cmd.Err = fmt.Errorf("netsim: find test binary: %w", err)
	case lookErr != nil:
		cmd.Err = lookErr
	case mainPrograms == nil:
		cmd.Err = errNoMain
	}
	return cmd
}

// childEnv returns the test binary's environment for a child, without the
// protocol's variables. A test binary built with -race sleeps a second on
// exit (GORACE atexit_sleep_ms defaults to 1000) to let threads finish,
// which would add a second to every Run; programs skip that sleep unless
// GORACE asks for it.
func childEnv() []string {
	env := withoutEnv(os.Environ(), envNetNS, envExec, envProgram, "GORACE")
	gorace := os.Getenv("GORACE")
	if !strings.Contains(gorace, "atexit_sleep_ms") {
		gorace = strings.TrimSpace(gorace + " atexit_sleep_ms=0")
	}
	return append(env, "GORACE="+gorace)
}

func (w *Workload) sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		UseCgroupFD: true,
		CgroupFD:    w.cgroupFD,
		// Sent when the thread that started the process dies, which in Go
		// means the whole test binary (the runtime keeps its threads).
		Pdeathsig: syscall.SIGKILL,
	}
}

// Run runs the program prog (see Program) with args to completion and
// returns its standard output. When it fails, the error holds its exit
// status and standard error.
func (w *Workload) Run(ctx context.Context, prog string, args ...string) ([]byte, error) {
	cmd := w.Program(ctx, prog, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = waitDelay
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("run %s in %s: %w; stderr: %s", prog, w, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// Start starts the program prog (see Program) with args and returns it
// running. Its output is collected (Process.Stdout, Process.Stderr) and
// logged if the test fails. The test's Cleanup kills it if it still runs;
// ctx ending kills it too.
func (w *Workload) Start(ctx context.Context, prog string, args ...string) (*Process, error) {
	cmd := w.Program(ctx, prog, args...)
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", prog, w, err)
	}
	p := &Process{Name: prog, cmd: cmd, out: stdout, errOut: stderr, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	n := w.Node.net
	n.mu.Lock()
	n.res.Pids = append(n.res.Pids, cmd.Process.Pid)
	n.mu.Unlock()
	n.t.Cleanup(func() {
		_ = p.Kill()
		<-p.done
		if n.t.Failed() {
			n.t.Logf("netsim: %s: %s (pid %d) ended with %v\nstdout:\n%s\nstderr:\n%s",
				w, prog, p.Pid(), p.err, stdout.Bytes(), stderr.Bytes())
		}
	})
	return p, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns what exec.Cmd.Wait
// returned. It may be called any number of times, from any goroutine.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Signal sends sig to the process; it does nothing once the process has
// exited.
func (p *Process) Signal(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", p.Name, err)
	}
	return nil
}

// Kill sends SIGKILL to the process; it does nothing once the process has
// exited. Call Wait to know it is gone.
func (p *Process) Kill() error { return p.Signal(os.Kill) }

// Stdout returns what the process has written to its standard output so
// far.
func (p *Process) Stdout() []byte { return p.out.Bytes() }

// Stderr returns what the process has written to its standard error so
// far.
func (p *Process) Stderr() []byte { return p.errOut.Bytes() }
