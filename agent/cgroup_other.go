// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package agent

// CgroupID returns ErrNotSupported: cgroup v2 ids exist only on Linux.
func CgroupID(string) (uint64, error) { return 0, ErrNotSupported }
