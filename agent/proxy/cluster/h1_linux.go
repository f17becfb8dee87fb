// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"errors"
	"syscall"
)

// idleIntact peeks, without blocking, at an idle connection's socket: it
// is intact when there is nothing to read (no bytes the server sent
// unasked, no end of stream).
func idleIntact(sc syscall.Conn) bool {
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	intact := false
	var b [1]byte
	if err := rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		intact = errors.Is(rerr, syscall.EAGAIN)
		return true // never wait
	}); err != nil {
		return false
	}
	return intact
}
