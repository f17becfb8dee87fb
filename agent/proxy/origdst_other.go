// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package proxy

import (
	"net"
	"net/netip"

	"github.com/weft-mesh/weft/agent/datapath"
)

// BPFOriginalDestination needs Linux.
type BPFOriginalDestination struct{}

// NewBPFOriginalDestination fails with datapath.ErrNotSupported.
func NewBPFOriginalDestination(string) (*BPFOriginalDestination, error) {
	return nil, datapath.ErrNotSupported
}

// Lookup fails with datapath.ErrNotSupported.
func (*BPFOriginalDestination) Lookup(net.Conn) (netip.AddrPort, uint64, error) {
	return netip.AddrPort{}, 0, datapath.ErrNotSupported
}

// Close does nothing.
func (*BPFOriginalDestination) Close() error { return nil }
