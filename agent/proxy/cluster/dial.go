// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"fmt"
	"net"
	"syscall"
	"time"
)

// newDialer returns the dialer of upstream sockets: with a mark, every
// socket gets SO_MARK before it connects, which is what the datapath's
// connect hook looks at to let the proxy's own connections pass.
func newDialer(timeout time.Duration, mark uint32) *net.Dialer {
	d := &net.Dialer{}
	d.Timeout = timeout
	if mark != 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = setMark(fd, mark) }); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("set SO_MARK %#x: %w", mark, serr)
			}
			return nil
		}
	}
	return d
}
