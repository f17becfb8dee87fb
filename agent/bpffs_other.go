// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package agent

import "log/slog"

// MountBPFFS returns ErrNotSupported: bpffs exists only on Linux.
func MountBPFFS(string, *slog.Logger) error { return ErrNotSupported }
