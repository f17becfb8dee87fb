// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package proxy

import "syscall"

// reusePort does nothing where SO_REUSEPORT hand-over is not supported.
func reusePort(_, _ string, _ syscall.RawConn) error { return nil }
