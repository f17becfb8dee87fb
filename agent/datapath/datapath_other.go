// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package datapath

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
)

// ErrNotSupported is returned on systems other than Linux.
var ErrNotSupported = errors.New("datapath: not supported on this operating system")

// Datapath needs Linux; elsewhere New fails.
type Datapath struct{}

// New fails with ErrNotSupported.
func New(Config, *slog.Logger) (*Datapath, error) { return nil, ErrNotSupported }

// Close does nothing.
func (*Datapath) Close() error { return nil }

// Unpin fails with ErrNotSupported.
func (*Datapath) Unpin() error { return ErrNotSupported }

// Reconcile fails with ErrNotSupported.
func (*Datapath) Reconcile(context.Context, State) (Changes, error) {
	return Changes{}, ErrNotSupported
}

// Snapshot fails with ErrNotSupported.
func (*Datapath) Snapshot() (State, error) { return State{}, ErrNotSupported }

// Counters fails with ErrNotSupported.
func (*Datapath) Counters() (Counters, error) { return Counters{}, ErrNotSupported }

// ReadEvents fails with ErrNotSupported.
func (*Datapath) ReadEvents(context.Context, func(ConnEvent)) error { return ErrNotSupported }

// Dump fails with ErrNotSupported.
func (*Datapath) Dump() (string, error) { return "", ErrNotSupported }

// OrigDstReader needs Linux.
type OrigDstReader struct{}

// OpenOrigDst fails with ErrNotSupported.
func OpenOrigDst(string) (*OrigDstReader, error) { return nil, ErrNotSupported }

// Lookup fails with ErrNotSupported.
func (*OrigDstReader) Lookup(netip.AddrPort, netip.AddrPort) (netip.AddrPort, uint64, bool, error) {
	return netip.AddrPort{}, 0, false, ErrNotSupported
}

// Close does nothing.
func (*OrigDstReader) Close() error { return nil }

// UnpinPath fails with ErrNotSupported.
func UnpinPath(string) error { return ErrNotSupported }
