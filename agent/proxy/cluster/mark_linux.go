// SPDX-License-Identifier: Apache-2.0

package cluster

import "golang.org/x/sys/unix"

func setMark(fd uintptr, mark uint32) error {
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
}
