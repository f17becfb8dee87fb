// SPDX-License-Identifier: Apache-2.0

package agent_test

// The programs that the end-to-end tests run as workload processes (see
// TestMain). Each prints "key=value" lines that the test parses.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// resolveMain resolves names as an unmodified program does, with the
// system's resolver configuration. Usage: resolve -resolv-conf F
// -nsswitch F -host-mntns NS name...
//
// The test starts it in a mount namespace of its own (CLONE_NEWNS, which
// os/exec follows by making / private), so it first bind-mounts F over
// /etc/resolv.conf and /etc/nsswitch.conf without touching the host's; it
// refuses to when its mount namespace is still -host-mntns. Then, for each
// name, it prints "go name=N addrs=A,B" from net.DefaultResolver (Go's
// resolver with default settings, which reads /etc/resolv.conf) and
// "getent name=N addrs=A,B" from `getent hosts N` (glibc's resolver);
// addrs=none when the lookup failed, with the error on stderr.
func resolveMain(args []string) int {
	fs := flag.NewFlagSet("resolve", flag.ContinueOnError)
	resolvConf := fs.String("resolv-conf", "", "file to bind-mount over /etc/resolv.conf")
	nsswitch := fs.String("nsswitch", "", "file to bind-mount over /etc/nsswitch.conf")
	hostMntNS := fs.String("host-mntns", "", "the test's mount namespace (readlink /proc/self/ns/mnt)")
	if err := fs.Parse(args); err != nil || *resolvConf == "" || *nsswitch == "" || *hostMntNS == "" {
		fmt.Fprintln(os.Stderr, "usage: resolve -resolv-conf F -nsswitch F -host-mntns NS name...")
		return 2
	}
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil || own == *hostMntNS {
		fmt.Fprintf(os.Stderr, "resolve: not in a mount namespace of its own (%s, %v); refusing to mount\n", own, err)
		return 2
	}
	for _, m := range []struct{ src, dst string }{{*resolvConf, "/etc/resolv.conf"}, {*nsswitch, "/etc/nsswitch.conf"}} {
		if err := unix.Mount(m.src, m.dst, "", unix.MS_BIND, ""); err != nil {
			fmt.Fprintf(os.Stderr, "resolve: bind-mount %s over %s: %v\n", m.src, m.dst, err)
			return 1
		}
	}
	getent, getentErr := exec.LookPath("getent")
	for _, name := range fs.Args() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		addrs, err := net.DefaultResolver.LookupHost(ctx, name)
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "go resolver: %s: %v\n", name, err)
		}
		fmt.Printf("go name=%s addrs=%s\n", name, addrList(addrs))

		if getentErr != nil {
			fmt.Fprintf(os.Stderr, "getent: %v\n", getentErr)
			fmt.Printf("getent name=%s addrs=none\n", name)
			continue
		}
		out, err := exec.Command(getent, "hosts", name).Output()
		if err != nil {
			fmt.Fprintf(os.Stderr, "getent hosts %s: %v\n", name, err)
		}
		addrs = nil
		for line := range strings.Lines(string(out)) {
			if f := strings.Fields(line); len(f) > 0 {
				addrs = append(addrs, f[0])
			}
		}
		fmt.Printf("getent name=%s addrs=%s\n", name, addrList(addrs))
	}
	return 0
}

func addrList(addrs []string) string {
	if len(addrs) == 0 {
		return "none"
	}
	addrs = slices.Clone(addrs)
	slices.Sort(addrs)
	return strings.Join(slices.Compact(addrs), ",")
}

// dialEcho connects to an echo server (netsim.EchoServer) and reads its
// greeting line.
func dialEcho(ctx context.Context, addr string) (net.Conn, *bufio.Reader, error) {
	conn, err := (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	r := bufio.NewReader(conn)
	if err := conn.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		conn.Close()
		return nil, nil, err
	}
	if _, err := r.ReadString('\n'); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("read greeting: %w", err)
	}
	return conn, r, nil
}

// exchange sends one line and checks that the same line comes back.
func exchange(conn net.Conn, r *bufio.Reader, line string) error {
	if err := conn.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	if got = strings.TrimSuffix(got, "\n"); got != line {
		return fmt.Errorf("echo %q, want %q", got, line)
	}
	return nil
}

// transferMain sends -bytes bytes to an echo server and reads as many back,
// at once, then closes. Usage: transfer -bytes N address. It prints
// "transfer local=L remote=R sent=N received=N elapsed=D".
func transferMain(args []string) int {
	fs := flag.NewFlagSet("transfer", flag.ContinueOnError)
	n := fs.Int64("bytes", 1<<20, "bytes each way")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: transfer [-bytes N] address")
		return 2
	}
	start := time.Now()
	conn, r, err := dialEcho(context.Background(), fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "transfer:", err)
		return 1
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		fmt.Fprintln(os.Stderr, "transfer:", err)
		return 1
	}
	received := make(chan int64, 1)
	go func() {
		got, _ := io.CopyN(io.Discard, r, *n)
		received <- got
	}()
	sent, err := io.CopyN(conn, zeros{}, *n)
	got := <-received
	if err != nil || got != *n {
		fmt.Fprintf(os.Stderr, "transfer: sent %d (%v), received %d of %d\n", sent, err, got, *n)
		return 1
	}
	fmt.Printf("transfer local=%s remote=%s sent=%d received=%d elapsed=%v\n",
		conn.LocalAddr(), conn.RemoteAddr(), sent, got, time.Since(start).Round(time.Millisecond))
	return 0
}

// zeros reads as zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// holdMain keeps one connection to an echo server and exchanges a line
// every -interval until SIGTERM. Usage: hold [-interval 50ms] address. It
// prints "connected local=L remote=R" first, "ok t=UNIXNANO n=N" after each
// exchange, and "done exchanges=N" at SIGTERM (exit 0); on any error it
// prints "error n=N" (the error on stderr) and exits 1.
func holdMain(args []string) int {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	interval := fs.Duration("interval", 50*time.Millisecond, "time between exchanges")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: hold [-interval d] address")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	conn, r, err := dialEcho(ctx, fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "hold:", err)
		fmt.Println("error n=0")
		return 1
	}
	defer conn.Close()
	fmt.Printf("connected local=%s remote=%s\n", conn.LocalAddr(), conn.RemoteAddr())
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			fmt.Printf("done exchanges=%d\n", n-1)
			return 0
		case <-tick.C:
		}
		if err := exchange(conn, r, fmt.Sprintf("tick-%d", n)); err != nil {
			fmt.Fprintf(os.Stderr, "hold: exchange %d: %v\n", n, err)
			fmt.Printf("error n=%d\n", n)
			return 1
		}
		fmt.Printf("ok t=%d n=%d\n", time.Now().UnixNano(), n)
	}
}

// churnMain opens connections to an echo server in a loop until SIGTERM,
// each exchanging one line, pausing -pause between them. Usage: churn
// [-pause 10ms] address. It prints "ok t=UNIXNANO" or "fail t=UNIXNANO"
// (the error on stderr) per connection, t being its start, and
// "done" at SIGTERM (exit 0).
func churnMain(args []string) int {
	fs := flag.NewFlagSet("churn", flag.ContinueOnError)
	pause := fs.Duration("pause", 10*time.Millisecond, "time between connections")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: churn [-pause d] address")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	for n := 1; ctx.Err() == nil; n++ {
		start := time.Now()
		err := churnOnce(ctx, fs.Arg(0), fmt.Sprintf("conn-%d", n))
		switch {
		case err == nil:
			fmt.Printf("ok t=%d\n", start.UnixNano())
		case ctx.Err() != nil && errors.Is(err, context.Canceled):
			// Stopped mid-connection: not a failure of the network.
		default:
			fmt.Fprintf(os.Stderr, "churn: connection %d: %v\n", n, err)
			fmt.Printf("fail t=%d\n", start.UnixNano())
		}
		select {
		case <-ctx.Done():
		case <-time.After(*pause):
		}
	}
	fmt.Println("done")
	return 0
}

func churnOnce(ctx context.Context, addr, line string) error {
	conn, r, err := dialEcho(ctx, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	return exchange(conn, r, line)
}
