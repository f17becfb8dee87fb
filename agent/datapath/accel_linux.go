// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// sockmapLinkType is BPF_LINK_TYPE_SOCKMAP (Linux 6.10), for which
// cilium/ebpf v0.22 has no name.
const sockmapLinkType link.Type = 14

// attachAccel attaches weft_accel_msg to the weft_accel sockhash as
// sk_msg verdict program through a BPF link (BPF_LINK_TYPE_SOCKMAP, Linux
// 6.10+) pinned at links/weft_accel_msg, or adopts the pinned link: it
// must be a sockmap link of the sk_msg verdict attach type on the very
// sockhash this Datapath uses, and gets the new program in place
// (BPF_LINK_UPDATE), like the cgroup links.
func (d *Datapath) attachAccel(created *[]string) error {
	path := filepath.Join(d.cfg.PinPath, linksDir, sockProgWeftAccelMsg)
	l, err := link.LoadPinnedLink(path, nil)
	switch {
	case err == nil:
		d.links = append(d.links, l)
		if err := d.checkAccelLink(l); err != nil {
			return fmt.Errorf("adopt link %s: %w", path, err)
		}
		if err := d.update(l, d.objs.AccelMsg); err != nil {
			return fmt.Errorf("replace program of link %s: %w", path, err)
		}
		d.adoptedLinks = append(d.adoptedLinks, sockProgWeftAccelMsg)
	case errors.Is(err, fs.ErrNotExist):
		raw, err := link.AttachRawLink(link.RawLinkOptions{
			Target:  d.objs.WeftAccel.FD(),
			Program: d.objs.AccelMsg,
			Attach:  ebpf.AttachSkMsgVerdict,
		})
		if err != nil {
			return fmt.Errorf("attach %s to %s (sockmap links need Linux 6.10): %w",
				sockProgWeftAccelMsg, sockMapWeftAccel, err)
		}
		d.links = append(d.links, raw)
		if err := raw.Pin(path); err != nil {
			return fmt.Errorf("pin link %s: %w", sockProgWeftAccelMsg, err)
		}
		*created = append(*created, path)
	default:
		return fmt.Errorf("open pinned link %s: %w", path, err)
	}
	return nil
}

func (d *Datapath) checkAccelLink(l link.Link) error {
	info, err := l.Info()
	if err != nil {
		return err
	}
	if info.Type != sockmapLinkType {
		return fmt.Errorf("link of type %v, want a sockmap link", info.Type)
	}
	mapID, attach, err := sockmapLinkInfo(l)
	if err != nil {
		return err
	}
	if ebpf.AttachType(attach) != ebpf.AttachSkMsgVerdict {
		return fmt.Errorf("attach type %v, want %v", ebpf.AttachType(attach), ebpf.AttachSkMsgVerdict)
	}
	minfo, err := d.objs.WeftAccel.Info()
	if err != nil {
		return err
	}
	if id, _ := minfo.ID(); uint32(id) != mapID {
		return fmt.Errorf("attached to map id %d, but %s has id %d (unpin the old datapath)", mapID, sockMapWeftAccel, id)
	}
	return nil
}

// sockmapLinkInfo reads the sockmap part of a link's bpf_link_info (map id
// and attach type), which cilium/ebpf v0.22 does not decode.
func sockmapLinkInfo(l link.Link) (mapID, attachType uint32, err error) {
	fdl, ok := l.(interface{ FD() int })
	if !ok {
		return 0, 0, fmt.Errorf("link %T has no file descriptor", l)
	}
	// struct bpf_link_info: type, id, prog_id, then the 8-aligned union;
	// its sockmap member is {map_id, attach_type}.
	var info struct {
		Type, ID, ProgID, _ uint32
		MapID, AttachType   uint32
		_                   [40]byte
	}
	attr := struct {
		fd, infoLen uint32
		info        uint64
	}{uint32(fdl.FD()), uint32(unsafe.Sizeof(info)), uint64(uintptr(unsafe.Pointer(&info)))}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_OBJ_GET_INFO_BY_FD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(&info)
	runtime.KeepAlive(l)
	if errno != 0 {
		return 0, 0, fmt.Errorf("link info: %w", errno)
	}
	if link.Type(info.Type) != sockmapLinkType {
		return 0, 0, fmt.Errorf("link of type %d, want a sockmap link", info.Type)
	}
	return info.MapID, info.AttachType, nil
}

// warnStaleAccel logs acceleration pins left by an earlier datapath that had
// Config.Accelerate on. New leaves them alone: the pinned link keeps
// redirecting the connections already in the pinned sockhash until they
// close (removing them under live connections would drop the bytes queued
// in the receivers' sk_msg queues), while the new sockops program inserts
// no new socket. Unpin removes them; New with Accelerate adopts them.
func (d *Datapath) warnStaleAccel() {
	var stale []string
	for _, p := range []string{
		filepath.Join(d.cfg.PinPath, linksDir, sockProgWeftAccelMsg),
		filepath.Join(d.cfg.PinPath, sockMapWeftAccel),
		filepath.Join(d.cfg.PinPath, sockMapWeftAccelRx),
	} {
		if _, err := os.Lstat(p); err == nil {
			stale = append(stale, p)
		}
	}
	if len(stale) > 0 {
		d.log.Warn("acceleration is off but an earlier datapath's acceleration pins exist; connections already accelerated keep their path until they close, new ones are not accelerated; Unpin removes the pins",
			"pins", stale)
	}
}

// accelEntry is one socket in the weft_accel sockhash.
type accelEntry struct {
	key    sockWeftSockKey
	cookie uint64
}

// accelEntries lists the weft_accel sockhash (up to limit entries): the
// kernel answers a userspace lookup of a sockhash with an 8-byte value with
// the socket's cookie. The caller holds d.mu.
func (d *Datapath) accelEntries(limit int) ([]accelEntry, error) {
	if !d.cfg.Accelerate {
		return nil, nil
	}
	var out []accelEntry
	var k sockWeftSockKey
	var cookie uint64
	it := d.objs.WeftAccel.Iterate()
	for len(out) < limit && it.Next(&k, &cookie) {
		out = append(out, accelEntry{k, cookie})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate %s: %w", sockMapWeftAccel, err)
	}
	return out, nil
}
