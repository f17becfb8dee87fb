// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/test/testutil"
)

// childEnv marks the test binary re-executed as a client process: tests run
// their clients as child processes placed in a cgroup at birth
// (CLONE_INTO_CGROUP), because cgroup membership is per process.
const childEnv = "WEFT_DATAPATH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChild(os.Stdin, os.Stdout))
	}
	goleak.VerifyTestMain(m)
}

// childCmd is one request to a child; childResult its answer.
type childCmd struct {
	Op    string `json:"op"`
	Addr  string `json:"addr,omitempty"`
	N     int    `json:"n,omitempty"`     // connections, sockets
	M     int    `json:"m,omitempty"`     // datagrams per socket
	Bytes int    `json:"bytes,omitempty"` // transfer size
	Mark  int    `json:"mark,omitempty"`  // SO_MARK
	Ms    int    `json:"ms,omitempty"`    // duration of slow transfers
	Mode  string `json:"mode,omitempty"`  // serve: "rw" or "splice"
	Chunk int    `json:"chunk,omitempty"` // write size of echo and pingpong
}

type childResult struct {
	IDs       map[string]int `json:"ids,omitempty"`   // backend id -> connections or sockets
	Peers     map[string]int `json:"peers,omitempty"` // getpeername / recvfrom source -> count
	ID        string         `json:"id,omitempty"`
	Peer      string         `json:"peer,omitempty"`
	Local     string         `json:"local,omitempty"`
	Mixed     int            `json:"mixed,omitempty"` // UDP sockets that saw two backends
	Err       string         `json:"err,omitempty"`
	Errno     int            `json:"errno,omitempty"`
	ElapsedNs int64          `json:"elapsed_ns,omitempty"`
	Bytes     int            `json:"bytes,omitempty"`  // push: bytes written
	Failed    int            `json:"failed,omitempty"` // loop: failed connections
	LastErr   string         `json:"last_err,omitempty"`
}

// runChild serves childCmds from in until EOF.
func runChild(in io.Reader, out io.Writer) int {
	var held net.Conn
	var heldR *bufio.Reader
	sc := bufio.NewScanner(in)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var c childCmd
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 2
		}
		var r childResult
		var err error
		switch c.Op {
		case "tcp":
			err = childTCP(c, &r)
		case "hold":
			if held != nil {
				held.Close()
			}
			held, heldR, err = childDial(c)
			if err == nil {
				r.ID, err = readLine(heldR)
				r.Peer, r.Local = peerOf(held), held.LocalAddr().String()
			}
		case "ask":
			if held == nil {
				err = errors.New("nothing held")
				break
			}
			if _, err = held.Write([]byte("?\n")); err == nil {
				r.ID, err = readLine(heldR)
			}
		case "close":
			if held != nil {
				err = held.Close()
				held = nil
			}
		case "dialerr":
			start := time.Now()
			var conn net.Conn
			conn, _, err = childDial(c)
			r.ElapsedNs = int64(time.Since(start))
			if conn != nil {
				conn.Close()
			}
		case "udp":
			err = childUDP(c, &r)
		case "loop":
			childLoop(c, &r)
		case "transfer":
			err = childTransfer(c, &r)
		case "serve":
			err = childServe(c, &r)
		case "echo":
			err = childEcho(c, &r)
		case "pingpong":
			err = childPingPong(c, &r)
		case "push":
			err = childPush(c, &r)
		case "open":
			if held != nil {
				held.Close()
			}
			held, heldR, err = childDial(c)
			if err == nil {
				r.Local = held.LocalAddr().String()
			}
		case "roundtrip":
			if held == nil {
				err = errors.New("nothing held")
				break
			}
			err = roundTrip(held, heldR, c.Bytes, c.N)
		default:
			err = fmt.Errorf("unknown op %q", c.Op)
		}
		if err != nil {
			r.Err = err.Error()
			var errno syscall.Errno
			if errors.As(err, &errno) {
				r.Errno = int(errno)
			}
		}
		if err := enc.Encode(r); err != nil {
			return 2
		}
	}
	return 0
}

func childDial(c childCmd) (net.Conn, *bufio.Reader, error) {
	d := net.Dialer{Timeout: 3 * time.Second}
	if c.Mark != 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, c.Mark)
			})
			return errors.Join(err, serr)
		}
	}
	conn, err := d.DialContext(context.Background(), "tcp", c.Addr)
	if err != nil {
		return nil, nil, err
	}
	return conn, bufio.NewReader(conn), nil
}

func readLine(r *bufio.Reader) (string, error) {
	s, err := r.ReadString('\n')
	return strings.TrimSpace(s), err
}

// peerOf asks the kernel directly (getpeername(2)).
func peerOf(conn net.Conn) string {
	rc, err := conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return "error: " + err.Error()
	}
	var out string
	_ = rc.Control(func(fd uintptr) {
		sa, err := unix.Getpeername(int(fd))
		if err != nil {
			out = "error: " + err.Error()
			return
		}
		out = sockaddrString(sa)
	})
	return out
}

func sockaddrString(sa unix.Sockaddr) string {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)).String()
	}
	return fmt.Sprintf("%T", sa)
}

func childTCP(c childCmd, r *childResult) error {
	r.IDs, r.Peers = map[string]int{}, map[string]int{}
	for range c.N {
		conn, br, err := childDial(c)
		if err != nil {
			return err
		}
		id, err := readLine(br)
		r.Peers[peerOf(conn)]++
		conn.Close()
		if err != nil {
			return err
		}
		r.IDs[id]++
	}
	return nil
}

// childLoop connects to Addr over and over for Ms milliseconds, reading
// the server's first line each time, and counts the successes by answer and
// the failures; it never stops at a failure.
func childLoop(c childCmd, r *childResult) {
	r.IDs = map[string]int{}
	start := time.Now()
	for time.Since(start) < time.Duration(c.Ms)*time.Millisecond {
		conn, br, err := childDial(c)
		if err == nil {
			var id string
			id, err = readLine(br)
			conn.Close()
			if err == nil {
				r.IDs[id]++
				continue
			}
		}
		r.Failed++
		r.LastErr = err.Error()
	}
	r.ElapsedNs = int64(time.Since(start))
}

// childUDP opens N unconnected sockets and sends M datagrams from each with
// sendto; each reply names the backend that answered.
func childUDP(c childCmd, r *childResult) error {
	dst, err := netip.ParseAddrPort(c.Addr)
	if err != nil {
		return err
	}
	r.IDs, r.Peers = map[string]int{}, map[string]int{}
	buf := make([]byte, 512)
	for range c.N {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for range max(c.M, 1) {
			if _, err := conn.WriteToUDPAddrPort([]byte("q"), dst); err != nil {
				conn.Close()
				return err
			}
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, src, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				conn.Close()
				return err
			}
			seen[string(buf[:n])] = true
			r.Peers[netip.AddrPortFrom(src.Addr().Unmap(), src.Port()).String()]++
		}
		conn.Close()
		if len(seen) > 1 {
			r.Mixed++
		}
		for id := range seen {
			r.IDs[id]++
		}
	}
	return nil
}

// childTransfer sends Bytes and reads as many back (an echo server), writing
// in 64 KiB chunks spread over Ms milliseconds.
func childTransfer(c childCmd, r *childResult) error {
	conn, _, err := childDial(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	r.Peer, r.Local = peerOf(conn), conn.LocalAddr().String()
	readErr := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.Discard, conn, int64(c.Bytes))
		readErr <- err
	}()
	chunk := make([]byte, 64<<10)
	chunks := (c.Bytes + len(chunk) - 1) / len(chunk)
	pause := time.Duration(c.Ms) * time.Millisecond / time.Duration(max(chunks, 1))
	for left := c.Bytes; left > 0; left -= len(chunk) {
		if _, err := conn.Write(chunk[:min(left, len(chunk))]); err != nil {
			return err
		}
		time.Sleep(pause)
	}
	return <-readErr
}

// --- test side -------------------------------------------------------------

// env is one test's isolated world: a network namespace, a private bpffs,
// an attach cgroup with a workload, a proxy and an unmeshed child cgroup.
type env struct {
	t         *testing.T
	ns        *testutil.NetNS
	root, pin string
	wl, proxy cg
	other     cg
}

type cg struct {
	path string
	id   uint64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testutil.RequirePrivileged(t)
	testutil.SkipOnOldKernel(t, "6.6", "cgroup sock_addr links, bpf_set_retval, tcx")
	e := &env{t: t, root: testutil.TempCgroup(t)}
	e.wl, e.proxy, e.other = e.subCgroup("workload"), e.subCgroup("proxy"), e.subCgroup("other")
	e.pin = filepath.Join(testutil.MountBPFFS(t), "weft")
	e.ns = testutil.NewNetNS(t)
	return e
}

func (e *env) subCgroup(name string) cg {
	e.t.Helper()
	dir := filepath.Join(e.root, name)
	if err := os.Mkdir(dir, 0o750); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			e.t.Errorf("remove cgroup: %v", err)
		}
	})
	id, err := cgroupID(dir)
	if err != nil {
		e.t.Fatal(err)
	}
	return cg{dir, id}
}

// config returns a Config for the env's cgroup and pin path.
func (e *env) config() Config {
	return Config{CgroupPath: e.root, PinPath: e.pin, TelemetryInterval: time.Second}
}

// start runs New and registers Unpin as cleanup.
func (e *env) start(cfg Config) *Datapath {
	e.t.Helper()
	d, err := New(cfg, testLogger(e.t))
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	e.t.Cleanup(func() {
		if err := d.Unpin(); err != nil {
			e.t.Errorf("Unpin: %v", err)
		}
	})
	return d
}

func reconcile(t *testing.T, d *Datapath, s State) Changes {
	t.Helper()
	ch, err := d.Reconcile(context.Background(), s)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	return ch
}

func counters(t *testing.T, d *Datapath) Counters {
	t.Helper()
	c, err := d.Counters()
	if err != nil {
		t.Fatalf("Counters: %v", err)
	}
	return c
}

// do runs fn inside the env's network namespace.
func (e *env) do(fn func() error) {
	e.t.Helper()
	if err := e.ns.Do(fn); err != nil {
		e.t.Fatal(err)
	}
}

// child is a client process in a cgroup and the env's namespace.
type child struct {
	t   *testing.T
	in  io.WriteCloser
	out *bufio.Scanner
}

func (e *env) child(g cg) *child {
	e.t.Helper()
	dir, err := os.Open(g.path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer dir.Close()
	cmd := exec.CommandContext(e.t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	in, err := cmd.StdinPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	e.do(cmd.Start)
	e.t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() {
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
			}
		}()
		_ = cmd.Wait()
		close(done)
	})
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	return &child{t: e.t, in: in, out: sc}
}

func (c *child) do(cmd childCmd) childResult {
	c.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := c.in.Write(append(b, '\n')); err != nil {
		c.t.Fatalf("child %s: %v", cmd.Op, err)
	}
	if !c.out.Scan() {
		c.t.Fatalf("child %s: no answer: %v", cmd.Op, c.out.Err())
	}
	var r childResult
	if err := json.Unmarshal(c.out.Bytes(), &r); err != nil {
		c.t.Fatalf("child %s: %v", cmd.Op, err)
	}
	return r
}

// must fails the test if the child reported an error.
func (c *child) must(cmd childCmd) childResult {
	c.t.Helper()
	r := c.do(cmd)
	if r.Err != "" {
		c.t.Fatalf("child %s %s: %s", cmd.Op, cmd.Addr, r.Err)
	}
	return r
}

// tcpServer listens on addr (port 0: any) in the env's namespace; each
// connection gets "id\n" and then one "id\n" per "?\n" it sends. With echo
// set it echoes everything instead.
func (e *env) tcpServer(addr, id string, echo bool) netip.AddrPort {
	e.t.Helper()
	var ln net.Listener
	e.do(func() error {
		var err error
		ln, err = (&net.ListenConfig{}).Listen(context.Background(), "tcp4", addr)
		return err
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[conn] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, conn)
					mu.Unlock()
					conn.Close()
				}()
				if echo {
					_, _ = io.Copy(conn, conn)
					return
				}
				if _, err := fmt.Fprintln(conn, id); err != nil {
					return
				}
				br := bufio.NewReader(conn)
				for {
					if _, err := br.ReadString('\n'); err != nil {
						return
					}
					if _, err := fmt.Fprintln(conn, id); err != nil {
						return
					}
				}
			}()
		}
	}()
	e.t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

// udpServer answers every datagram with id, in the env's namespace.
func (e *env) udpServer(addr, id string) netip.AddrPort {
	e.t.Helper()
	var pc net.PacketConn
	e.do(func() error {
		var err error
		pc, err = (&net.ListenConfig{}).ListenPacket(context.Background(), "udp4", addr)
		return err
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(id), from)
		}
	}()
	e.t.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// testLogger logs through t.Log.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
