// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package agent

import "log/slog"

// NewDatapath returns ErrNotSupported: the datapath needs Linux.
func NewDatapath(Config, *slog.Logger) (Datapath, error) { return nil, ErrNotSupported }
