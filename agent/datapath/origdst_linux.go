// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// OrigDstReader reads the pinned original-destination map. It is what the
// node proxy (a separate process) uses to learn, for an accepted connection,
// which service address the client connected to and from which cgroup.
type OrigDstReader struct {
	m *ebpf.Map
}

// OpenOrigDst opens the original-destination map pinned under pinPath (the
// agent's Config.PinPath) read-only, after checking that its layout version
// and sizes are the ones this build reads.
func OpenOrigDst(pinPath string) (*OrigDstReader, error) {
	ro := &ebpf.LoadPinOptions{ReadOnly: true}
	meta, err := ebpf.LoadPinnedMap(filepath.Join(pinPath, sockMapWeftMetadata), ro)
	if err != nil {
		return nil, fmt.Errorf("open original destinations: %w", err)
	}
	defer meta.Close()
	var v sockWeftMeta
	if err := meta.Lookup(uint32(0), &v); err != nil {
		return nil, fmt.Errorf("open original destinations: read layout version: %w", err)
	}
	if v.Magic != metaMagic || v.LayoutVersion != layoutVersion {
		return nil, fmt.Errorf("open original destinations: %w: pinned layout version %d, this build reads %d",
			ErrLayoutMismatch, v.LayoutVersion, layoutVersion)
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinPath, sockMapWeftOrigdst), ro)
	if err != nil {
		return nil, fmt.Errorf("open original destinations: %w", err)
	}
	if m.Type() != ebpf.LRUHash || m.KeySize() != origDstKeySize || m.ValueSize() != origDstValueSize {
		err := fmt.Errorf("open original destinations: %w: %v with key %d and value %d bytes, want LRUHash %d/%d",
			ErrLayoutMismatch, m.Type(), m.KeySize(), m.ValueSize(), origDstKeySize, origDstValueSize)
		return nil, errors.Join(err, m.Close())
	}
	return &OrigDstReader{m: m}, nil
}

// Sizes of struct weft_origdst_key and struct weft_origdst.
const (
	origDstKeySize   = 36
	origDstValueSize = 32
)

// origDstKey builds the map key of a connection the proxy accepted: the
// orientation of weft_common.h is the client's view (src = client, dst =
// proxy listener), so src is the accepted connection's remote address and
// dst its local address.
func origDstKey(local, remote netip.AddrPort) sockWeftOrigdstKey {
	return sockWeftOrigdstKey{
		SrcAddr: remote.Addr().As16(),
		SrcPort: remote.Port(),
		DstAddr: local.Addr().As16(),
		DstPort: local.Port(),
	}
}

// Lookup returns the original destination and the client's cgroup id of a
// connection the proxy accepted: local and remote are the accepted
// connection's LocalAddr and RemoteAddr. ok is false when there is no record
// (not a redirected connection, or already closed).
func (r *OrigDstReader) Lookup(local, remote netip.AddrPort) (orig netip.AddrPort, cgroupID uint64, ok bool, err error) {
	var v sockWeftOrigdst
	err = r.m.Lookup(origDstKey(local, remote), &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return netip.AddrPort{}, 0, false, nil
	}
	if err != nil {
		return netip.AddrPort{}, 0, false, fmt.Errorf("look up original destination of %v->%v: %w", remote, local, err)
	}
	return netip.AddrPortFrom(addrFrom16(v.Addr), v.Port), v.CgroupId, true, nil
}

// Close closes the map.
func (r *OrigDstReader) Close() error {
	return r.m.Close()
}
