// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/weft-mesh/weft/test/testutil"
)

// echoTrailer is what the echo server writes after the client's EOF, before
// it closes: the client reads it after its own shutdown(SHUT_WR), which
// checks half-close in both directions.
const echoTrailer = "weft-eof\n"

// pattern returns n reproducible pseudo-random bytes.
func pattern(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{'w', 'e', 'f', 't'}).Read(b)
	return b
}

// childServe starts an echo server on c.Addr in the child and answers with
// its address. Mode "rw" echoes with read/write; "splice" with io.Copy,
// which Go implements with splice(2) between TCP sockets; "sendfile" reads
// everything into a file with read and sends it back after the client's
// EOF with io.Copy from the file, which Go implements with sendfile(2).
func childServe(c childCmd, r *childResult) error {
	ln, err := net.Listen("tcp4", c.Addr)
	if err != nil {
		return err
	}
	r.Local = ln.Addr().String()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				switch c.Mode {
				case "splice":
					if _, err := io.Copy(conn, conn); err != nil {
						return
					}
				case "noread":
					select {} // hold the connection, never read, until the child exits
				case "sendfile":
					if err := echoSendfile(conn.(*net.TCPConn)); err != nil {
						fmt.Fprintln(os.Stderr, "child: sendfile echo:", err)
						return
					}
				default:
					buf := make([]byte, 256<<10)
					for {
						n, err := conn.Read(buf)
						if n > 0 {
							if _, werr := conn.Write(buf[:n]); werr != nil {
								return
							}
						}
						if errors.Is(err, io.EOF) {
							break
						}
						if err != nil {
							return
						}
					}
				}
				_, _ = conn.Write([]byte(echoTrailer))
			}()
		}
	}()
	return nil
}

func echoSendfile(conn *net.TCPConn) error {
	f, err := os.CreateTemp("", "weft-echo-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := io.Copy(f, struct{ io.Reader }{conn}); err != nil { // plain reads
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err = conn.ReadFrom(f) // sendfile(2)
	return err
}

// childEcho sends c.Bytes of a pattern in c.Chunk writes while reading the
// echo, checks it byte for byte, half-closes, and expects the trailer and
// then EOF.
func childEcho(c childCmd, r *childResult) error {
	conn, _, err := childDial(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	r.Peer, r.Local = peerOf(conn), conn.LocalAddr().String()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	want := pattern(c.Bytes)
	chunk := c.Chunk
	if chunk <= 0 {
		chunk = 64 << 10
	}
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		for off := 0; off < len(want); off += chunk {
			if _, err := conn.Write(want[off:min(off+chunk, len(want))]); err != nil {
				werr <- err
				return
			}
		}
		werr <- conn.(*net.TCPConn).CloseWrite()
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if i := firstDiff(got, want); i >= 0 {
		return fmt.Errorf("echo differs at byte %d of %d", i, len(want))
	}
	rest, err := io.ReadAll(conn)
	if err != nil {
		return fmt.Errorf("read after half-close: %w", err)
	}
	if string(rest) != echoTrailer {
		return fmt.Errorf("after half-close: %q, want %q then EOF", rest, echoTrailer)
	}
	r.ElapsedNs = int64(time.Since(start))
	return nil
}

// childPush writes c.Bytes to a peer that does not read, for at most c.Ms
// milliseconds, and reports how many bytes the kernel took.
func childPush(c childCmd, r *childResult) error {
	conn, _, err := childDial(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(time.Duration(c.Ms) * time.Millisecond))
	buf := make([]byte, 64<<10)
	for r.Bytes < c.Bytes {
		n, err := conn.Write(buf)
		r.Bytes += n
		if err != nil {
			break
		}
	}
	return nil
}

// childPingPong does c.N round trips of c.Bytes each and half-closes.
func childPingPong(c childCmd, r *childResult) error {
	conn, br, err := childDial(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	r.Local = conn.LocalAddr().String()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	start := time.Now()
	if err := roundTrip(conn, br, c.Bytes, c.N); err != nil {
		return err
	}
	r.ElapsedNs = int64(time.Since(start))
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	rest, err := io.ReadAll(br)
	if err == nil && string(rest) != echoTrailer {
		err = fmt.Errorf("after half-close: %q", rest)
	}
	return err
}

// roundTrip writes size bytes and reads them back, n times.
func roundTrip(conn net.Conn, br *bufio.Reader, size, n int) error {
	msg := pattern(size)
	got := make([]byte, size)
	for i := range max(n, 1) {
		if _, err := conn.Write(msg); err != nil {
			return fmt.Errorf("round trip %d: %w", i, err)
		}
		if _, err := io.ReadFull(br, got); err != nil {
			return fmt.Errorf("round trip %d: %w", i, err)
		}
		if !bytes.Equal(got, msg) {
			return fmt.Errorf("round trip %d: echo differs", i)
		}
	}
	return nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// accelSetup starts a datapath (Accelerate as given) with an L4 service
// whose backend is an echo server in a child process of the unmeshed
// cgroup e.other (inside the attach cgroup, so sockops sees the accepted
// side), and a client child in the workload cgroup.
func accelSetup(t *testing.T, accelerate bool, mode string) (e *env, d *Datapath, client *child, svc string) {
	t.Helper()
	e = newEnv(t)
	testutil.SkipOnOldKernel(t, "6.10", "sockmap BPF links")
	cfg := e.config()
	cfg.Accelerate = accelerate
	d = e.start(cfg)
	srv := e.child(e.other).must(childCmd{Op: "serve", Addr: "127.0.0.1:0", Mode: mode})
	be := netip.MustParseAddrPort(srv.Local)
	reconcile(t, d, State{
		Workloads: []Workload{{CgroupID: e.wl.id, ID: 5, MeshID: 1}},
		Services:  []Service{l4(90, "10.96.0.90", 80, TCP, Backend{be, 1})},
	})
	return e, d, e.child(e.wl), "10.96.0.90:80"
}

// accelState returns the weft_accel keys and the weft_accel_rx records.
func accelState(t *testing.T, d *Datapath) (socks []sockWeftSockKey, rx map[sockWeftSockKey]uint64) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	entries, err := d.accelEntries(1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.cookie == 0 {
			t.Errorf("sockhash entry %+v without socket cookie", e.key)
		}
		socks = append(socks, e.key)
	}
	rx = map[sockWeftSockKey]uint64{}
	var k sockWeftSockKey
	var v uint64
	it := d.objs.WeftAccelRx.Iterate()
	for it.Next(&k, &v) {
		rx[k] = v
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return socks, rx
}

func keyString(k sockWeftSockKey) string {
	return fmt.Sprintf("netns %d %v -> %v", k.Netns, netip.AddrPortFrom(addrFrom16(k.SrcAddr), k.SrcPort),
		netip.AddrPortFrom(addrFrom16(k.DstAddr), k.DstPort))
}

// TestAccelEcho: with Accelerate on, a meshed client's connection to an L4
// backend on the same node is inserted from both ends and redirected; the
// echo is byte-exact for small and 8 MiB transfers, half-close works both
// ways, telemetry reports the redirected bytes, and closing removes both
// sockets from the sockhash (the kernel does) and the rx record (sockops).
func TestAccelEcho(t *testing.T) {
	_, d, client, svc := accelSetup(t, true, "rw")
	events, stop := collectEvents(t, d)
	defer stop()

	// One held connection: both ends in the sockhash, keys reversed, one
	// netns, and the rx record under the client's key.
	held := client.must(childCmd{Op: "open", Addr: svc})
	client.must(childCmd{Op: "roundtrip", Bytes: 1000, N: 10})
	socks, rx := accelState(t, d)
	local := netip.MustParseAddrPort(held.Local)
	var ck *sockWeftSockKey
	for i, k := range socks {
		t.Logf("sockhash: %s", keyString(k))
		if netip.AddrPortFrom(addrFrom16(k.SrcAddr), k.SrcPort) == local {
			ck = &socks[i]
		}
	}
	if len(socks) != 2 || ck == nil {
		t.Fatalf("sockhash holds %d sockets (client %v found: %t), want the 2 ends of %v", len(socks), local, ck != nil, local)
	}
	var peer sockWeftSockKey
	for _, k := range socks {
		if k != *ck {
			peer = k
		}
	}
	if peer.Netns != ck.Netns || peer.SrcAddr != ck.DstAddr || peer.SrcPort != ck.DstPort ||
		peer.DstAddr != ck.SrcAddr || peer.DstPort != ck.SrcPort {
		t.Errorf("server key %s is not the client key %s reversed", keyString(peer), keyString(*ck))
	}
	if got, ok := rx[*ck]; !ok || got != 10*1000 {
		t.Errorf("rx record of the client: %d (present %t), want 10000 redirected bytes; all: %v", got, ok, rx)
	}
	// The periodic record (every 1 s here) counts the redirected bytes both
	// ways, though no ACK carried them.
	testutil.Eventually(t, 5*time.Second, func() error {
		var last *ConnEvent
		for _, ev := range events() {
			if ev.Src == local && !ev.Closed {
				last = &ev
			}
		}
		if last == nil {
			return errors.New("no periodic record of the held connection")
		}
		if last.BytesSent < 10*1000 || last.BytesReceived < 10*1000 {
			return fmt.Errorf("periodic record of the held connection: sent %d, received %d; want >= 10000 each", last.BytesSent, last.BytesReceived)
		}
		return nil
	})
	client.must(childCmd{Op: "close"})
	testutil.Eventually(t, 5*time.Second, func() error {
		socks, rx := accelState(t, d)
		if len(socks) != 0 || len(rx) != 0 {
			return fmt.Errorf("after close: %d sockets in the sockhash, %d rx records", len(socks), len(rx))
		}
		return nil
	})

	for _, n := range []int{1, 100, 64 << 10, 8 << 20} {
		t.Run(fmt.Sprintf("%dB", n), func(t *testing.T) {
			before := counters(t, d)
			r := client.must(childCmd{Op: "echo", Addr: svc, Bytes: n, Chunk: 16 << 10})
			after := counters(t, d)
			t.Logf("%d bytes echoed in %v; counters: inserted +%d, redirected +%d (%d bytes), passed +%d, failed +%d/+%d",
				n, time.Duration(r.ElapsedNs), after.AccelInserted-before.AccelInserted,
				after.AccelRedirected-before.AccelRedirected, after.AccelBytes-before.AccelBytes,
				after.AccelPassed-before.AccelPassed, after.AccelInsertFailed-before.AccelInsertFailed,
				after.AccelRxFailed-before.AccelRxFailed)
			if after.AccelInserted-before.AccelInserted != 2 {
				t.Errorf("inserted %d sockets, want 2 (client and accepted socket)", after.AccelInserted-before.AccelInserted)
			}
			if after.AccelRedirected == before.AccelRedirected {
				t.Error("redirect counter did not move")
			}
			// Both directions carry n bytes, the server also the trailer.
			if got, want := after.AccelBytes-before.AccelBytes, uint64(2*n+len(echoTrailer)); got > want {
				t.Errorf("redirected %d bytes, more than the %d the connection carried", got, want)
			}
			ev, _ := closedEvent(t, events, r.Local)
			t.Logf("close record: sent %d received %d", ev.BytesSent, ev.BytesReceived)
			// +1 each for SYN and FIN in TCP's sequence space.
			if ev.BytesSent < uint64(n) || ev.BytesSent > uint64(n)+2 {
				t.Errorf("telemetry: %d bytes sent, want %d (+2)", ev.BytesSent, n)
			}
			if want := uint64(n + len(echoTrailer)); ev.BytesReceived < want || ev.BytesReceived > want+2 {
				t.Errorf("telemetry: %d bytes received, want %d (+2)", ev.BytesReceived, want)
			}
			if ev.WorkloadID != 5 || ev.ServiceID != 90 {
				t.Errorf("labels: workload %d service %d", ev.WorkloadID, ev.ServiceID)
			}
		})
	}
	if c := counters(t, d); c.AccelInsertFailed != 0 || c.AccelRxFailed != 0 {
		t.Errorf("failures: %+v", c)
	}
}

// TestAccelOff: without Accelerate nothing is inserted or pinned and the
// sk_msg program is not attached; the same echo works through TCP.
func TestAccelOff(t *testing.T) {
	e, d, client, svc := accelSetup(t, false, "rw")
	events, stop := collectEvents(t, d)
	defer stop()
	r := client.must(childCmd{Op: "echo", Addr: svc, Bytes: 1 << 20})
	ev, _ := closedEvent(t, events, r.Local)
	if ev.BytesSent < 1<<20 || ev.BytesReceived < 1<<20+uint64(len(echoTrailer)) {
		t.Errorf("telemetry without acceleration: %+v", ev)
	}
	c := counters(t, d)
	if c.AccelInserted+c.AccelInsertFailed+c.AccelRedirected+c.AccelPassed+c.AccelBytes+c.AccelRxFailed != 0 {
		t.Errorf("acceleration counters moved while off: %+v", c)
	}
	var k sockWeftSockKey
	var v uint64
	if d.objs.WeftAccel.Iterate().Next(&k, &v) {
		t.Errorf("placeholder sockhash holds %s", keyString(k))
	}
	for _, p := range []string{sockMapWeftAccel, sockMapWeftAccelRx, filepath.Join(linksDir, sockProgWeftAccelMsg)} {
		if _, err := os.Lstat(filepath.Join(e.pin, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pin %s exists with acceleration off (%v)", p, err)
		}
	}
	if len(d.links) != len(d.objs.attachments()) {
		t.Errorf("%d links, want the %d cgroup links only", len(d.links), len(d.objs.attachments()))
	}
}

// TestAccelSplice records a kernel limitation: bytes redirected into a
// socket's sk_msg ingress queue are invisible to splice(2) (tcp_splice_read
// reads only the TCP receive queue), so a receiver that splices (Go's
// io.Copy between TCP connections) never gets them, and they are dropped
// when it closes. If this starts passing, the kernel changed: update the
// package documentation and docs/agent.md. Senders using sendfile(2) (a
// splice into the socket, through tcp_bpf_sendmsg) are fine.
func TestAccelSplice(t *testing.T) {
	t.Run("splice reader", func(t *testing.T) {
		_, d, client, svc := accelSetup(t, true, "splice")
		r := client.do(childCmd{Op: "echo", Addr: svc, Bytes: 64 << 10})
		c := counters(t, d)
		t.Logf("echo through a splice(2) reader with acceleration: error %q; redirected %d sends, %d bytes",
			r.Err, c.AccelRedirected, c.AccelBytes)
		if r.Err == "" {
			t.Error("a splice(2) reader got redirected bytes; the kernel now supports it: update the documentation")
		}
	})
	t.Run("sendfile writer", func(t *testing.T) {
		_, d, client, svc := accelSetup(t, true, "sendfile")
		for _, n := range []int{100, 8 << 20} {
			r := client.must(childCmd{Op: "echo", Addr: svc, Bytes: n})
			t.Logf("%d bytes echoed with sendfile(2) in %v", n, time.Duration(r.ElapsedNs))
		}
		if c := counters(t, d); c.AccelRedirected == 0 {
			t.Errorf("nothing redirected: %+v", c)
		}
	})
}

// TestAccelNoReader logs how many bytes a sender can hand to a same-node
// peer that never reads, with and without acceleration: TCP stops at the
// receiver's window and buffers; a redirect is charged to the receiver's
// socket memory without its window. It asserts nothing.
func TestAccelNoReader(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprintf("accelerate=%t", on), func(t *testing.T) {
			_, _, client, svc := accelSetup(t, on, "noread")
			r := client.must(childCmd{Op: "push", Addr: svc, Bytes: 256 << 20, Ms: 500})
			t.Logf("accelerate=%t: the kernel took %d KiB for a peer that does not read", on, r.Bytes>>10)
		})
	}
}

// TestAccelThroughput logs the throughput and round-trip time of a
// same-node echo with and without acceleration. It asserts nothing about
// the numbers: they depend on the machine.
func TestAccelThroughput(t *testing.T) {
	const bulk = 64 << 20
	const trips, size = 20000, 64
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprintf("accelerate=%t", on), func(t *testing.T) {
			_, d, client, svc := accelSetup(t, on, "rw")
			client.must(childCmd{Op: "echo", Addr: svc, Bytes: 1 << 20}) // warm up
			r := client.must(childCmd{Op: "echo", Addr: svc, Bytes: bulk, Chunk: 256 << 10})
			el := time.Duration(r.ElapsedNs)
			p := client.must(childCmd{Op: "pingpong", Addr: svc, Bytes: size, N: trips})
			pl := time.Duration(p.ElapsedNs)
			c := counters(t, d)
			t.Logf("accelerate=%t: bulk echo %d MiB each way in %v = %.0f MiB/s each way; %d round trips of %d B in %v = %.1f µs each; redirected %d sends, %d MiB",
				on, bulk>>20, el.Round(time.Millisecond), float64(bulk)/(1<<20)/el.Seconds(),
				trips, size, pl.Round(time.Millisecond), float64(pl.Microseconds())/trips, c.AccelRedirected, c.AccelBytes>>20)
		})
	}
}

// TestAccelRestartAdopts: with acceleration on, a restarted agent adopts the
// sockhash, the rx map and the sk_msg link (same ids, new program), a
// connection accelerated before the restart keeps working across it and
// across a restart with acceleration off (which leaves the pins alone), and
// a pinned sockhash of another layout is refused.
func TestAccelRestartAdopts(t *testing.T) {
	e := newEnv(t)
	testutil.SkipOnOldKernel(t, "6.10", "sockmap BPF links")
	cfg := e.config()
	cfg.Accelerate = true
	d1, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unpinAll(cfg.PinPath) })
	srv := e.child(e.other).must(childCmd{Op: "serve", Addr: "127.0.0.1:0", Mode: "rw"})
	state := State{
		Workloads: []Workload{{CgroupID: e.wl.id, ID: 5, MeshID: 1}},
		Services:  []Service{l4(91, "10.96.0.91", 80, TCP, Backend{netip.MustParseAddrPort(srv.Local), 1})},
	}
	reconcile(t, d1, state)
	client := e.child(e.wl)
	client.must(childCmd{Op: "open", Addr: "10.96.0.91:80"})
	client.must(childCmd{Op: "roundtrip", Bytes: 4096, N: 5})
	ids1 := mapIDs(t, d1)
	accel1 := accelLink(t, d1)
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}

	// No agent: the held connection and a new one are still accelerated.
	client.must(childCmd{Op: "roundtrip", Bytes: 4096, N: 5})
	other := e.child(e.wl)
	other.must(childCmd{Op: "echo", Addr: "10.96.0.91:80", Bytes: 1 << 20})

	d2, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d2.Close() })
	if len(d2.adoptedMaps) != len(pinnedMapNames(true)) || len(d2.adoptedLinks) != len(d2.objs.attachments())+1 {
		t.Errorf("adopted maps %v and links %v, want all (with the acceleration ones)", d2.adoptedMaps, d2.adoptedLinks)
	}
	if ids2 := mapIDs(t, d2); fmt.Sprint(ids2) != fmt.Sprint(ids1) {
		t.Errorf("map ids changed across restart: %v -> %v", ids1, ids2)
	}
	if accel2 := accelLink(t, d2); accel2.ID != accel1.ID || accel2.Program == accel1.Program {
		t.Errorf("sk_msg link: id %d -> %d, program %d -> %d; want same link, new program",
			accel1.ID, accel2.ID, accel1.Program, accel2.Program)
	}
	c := counters(t, d2)
	if c.AccelInserted < 4 || c.AccelRedirected == 0 {
		t.Errorf("counters across restart: %+v, want >= 4 inserted and redirects", c)
	}
	before := c.AccelRedirected
	client.must(childCmd{Op: "roundtrip", Bytes: 4096, N: 5})
	other.must(childCmd{Op: "echo", Addr: "10.96.0.91:80", Bytes: 1 << 20})
	if c := counters(t, d2); c.AccelRedirected == before {
		t.Error("no redirect after adoption")
	}
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart with acceleration off: the pins stay, the accelerated
	// connection keeps working, a new one is not inserted.
	off := cfg
	off.Accelerate = false
	d3, err := New(off, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	client.must(childCmd{Op: "roundtrip", Bytes: 4096, N: 5})
	inserted := counters(t, d3).AccelInserted
	other.must(childCmd{Op: "echo", Addr: "10.96.0.91:80", Bytes: 1 << 20})
	if c := counters(t, d3); c.AccelInserted != inserted {
		t.Errorf("acceleration off, yet %d sockets were inserted", c.AccelInserted-inserted)
	}
	for _, p := range []string{sockMapWeftAccel, sockMapWeftAccelRx, filepath.Join(linksDir, sockProgWeftAccelMsg)} {
		if _, err := os.Lstat(filepath.Join(cfg.PinPath, p)); err != nil {
			t.Errorf("acceleration pin %s: %v; New without Accelerate must leave it", p, err)
		}
	}
	if err := d3.Close(); err != nil {
		t.Fatal(err)
	}
	client.must(childCmd{Op: "close"})

	// A pinned sockhash of another layout is refused, and left in place.
	path := filepath.Join(cfg.PinPath, sockMapWeftAccel)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	wrong, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.SockHash, KeySize: 36, ValueSize: 8, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	if err := wrong.Pin(path); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, testLogger(t)); !errors.Is(err, ErrLayoutMismatch) {
		t.Errorf("New over a sockhash of another layout: %v, want ErrLayoutMismatch", err)
	} else {
		t.Logf("refused: %v", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("the refused sockhash pin was removed: %v", err)
	}
}

// accelLink returns the info of d's sk_msg link.
func accelLink(t *testing.T, d *Datapath) link.Info {
	t.Helper()
	for _, l := range d.links {
		info, err := l.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Type == sockmapLinkType {
			return *info
		}
	}
	t.Fatal("no sockmap link")
	return link.Info{}
}
