// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"net"
	"testing"

	"golang.org/x/sys/unix"

	wtestutil "github.com/weft-mesh/weft/test/testutil"
)

// sockMark reads SO_MARK of a TCP connection.
func sockMark(t *testing.T, conn net.Conn) int {
	t.Helper()
	if cc, ok := conn.(*countedConn); ok {
		conn = cc.Conn
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		t.Fatalf("connection is a %T, want *net.TCPConn", conn)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var mark int
	var serr error
	if err := rc.Control(func(fd uintptr) { mark, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("getsockopt SO_MARK: %v", serr)
	}
	return mark
}

// TestMark checks that Options.Mark reaches the upstream sockets of
// tcp_proxy leases and of health checks, and that without it they carry
// none.
func TestMark(t *testing.T) {
	wtestutil.RequirePrivileged(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	for _, tc := range []struct {
		name string
		mark uint32
	}{
		{"marked", 0x2a},
		{"unmarked", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newManager(t, Options{Mark: tc.mark})
			update(t, m, static(t, "up", "", ln.Addr().String()))
			l, err := get(t, m, "up").Acquire(context.Background(), Hints{})
			if err != nil {
				t.Fatal(err)
			}
			conn, err := l.Dial(context.Background())
			l.Done(0, err)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer conn.Close()
			if got := sockMark(t, conn); got != int(tc.mark) {
				t.Errorf("lease connection SO_MARK = %#x, want %#x", got, tc.mark)
			}
			hc, err := newDialer(0, tc.mark).DialContext(context.Background(), "tcp", ln.Addr().String())
			if err != nil {
				t.Fatalf("health check dial: %v", err)
			}
			defer hc.Close()
			if got := sockMark(t, hc); got != int(tc.mark) {
				t.Errorf("health check connection SO_MARK = %#x, want %#x", got, tc.mark)
			}
		})
	}
}
