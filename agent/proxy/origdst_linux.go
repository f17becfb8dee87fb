// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/weft-mesh/weft/agent/datapath"
)

// BPFOriginalDestination reads original destinations from the datapath's
// pinned weft_origdst map.
type BPFOriginalDestination struct {
	r *datapath.OrigDstReader
}

// NewBPFOriginalDestination opens the map pinned under pinPath (the
// agent's pin path). Close releases it.
func NewBPFOriginalDestination(pinPath string) (*BPFOriginalDestination, error) {
	r, err := datapath.OpenOrigDst(pinPath)
	if err != nil {
		return nil, err
	}
	return &BPFOriginalDestination{r: r}, nil
}

// Lookup implements OriginalDestination.
func (b *BPFOriginalDestination) Lookup(conn net.Conn) (netip.AddrPort, uint64, error) {
	local, remote := addrPortOf(conn.LocalAddr()), addrPortOf(conn.RemoteAddr())
	orig, cgroup, ok, err := b.r.Lookup(local, remote)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	if !ok {
		return netip.AddrPort{}, 0, fmt.Errorf("%v -> %v: %w", remote, local, ErrNoOriginalDestination)
	}
	return netip.AddrPortFrom(orig.Addr().Unmap(), orig.Port()), cgroup, nil
}

// Close closes the map.
func (b *BPFOriginalDestination) Close() error { return b.r.Close() }
