// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// LayoutVersion is the version of the pinned map layout this build uses
// (WEFT_LAYOUT_VERSION in bpf/include/weft_common.h). It is stored in the
// pinned weft_metadata map by whoever creates the maps.
const LayoutVersion = 2

const metaMagic = 0x77656674 // "weft"

// linksDir is the subdirectory of Config.PinPath that holds the pinned links.
const linksDir = "links"

// programs are the attached programs of bpf/sock; the test harness program
// (weft_test_decide) is not among them. AccelMsg is loaded always but
// attached (to the weft_accel sockhash) only with Config.Accelerate.
type programs struct {
	Connect4 *ebpf.Program `ebpf:"weft_connect4"`
	Connect6 *ebpf.Program `ebpf:"weft_connect6"`
	Sendmsg4 *ebpf.Program `ebpf:"weft_sendmsg4"`
	Sendmsg6 *ebpf.Program `ebpf:"weft_sendmsg6"`
	Recvmsg4 *ebpf.Program `ebpf:"weft_recvmsg4"`
	Recvmsg6 *ebpf.Program `ebpf:"weft_recvmsg6"`
	Getpeer4 *ebpf.Program `ebpf:"weft_getpeer4"`
	Getpeer6 *ebpf.Program `ebpf:"weft_getpeer6"`
	Sockops  *ebpf.Program `ebpf:"weft_sockops"`
	AccelMsg *ebpf.Program `ebpf:"weft_accel_msg"`
}

type objects struct {
	sockMaps
	programs
}

func (o *objects) close() error {
	return errors.Join(o.Close(), closePrograms(&o.programs))
}

func closePrograms(p *programs) error {
	var errs []error
	for _, prog := range []*ebpf.Program{
		p.Connect4, p.Connect6, p.Sendmsg4, p.Sendmsg6, p.Recvmsg4,
		p.Recvmsg6, p.Getpeer4, p.Getpeer6, p.Sockops, p.AccelMsg,
	} {
		if prog != nil {
			errs = append(errs, prog.Close())
		}
	}
	return errors.Join(errs...)
}

// attachment is one program's cgroup attach point; the link is pinned under
// links/<name>.
type attachment struct {
	name   string
	attach ebpf.AttachType
	prog   *ebpf.Program
}

func (o *objects) attachments() []attachment {
	return []attachment{
		{sockProgWeftConnect4, ebpf.AttachCGroupInet4Connect, o.Connect4},
		{sockProgWeftConnect6, ebpf.AttachCGroupInet6Connect, o.Connect6},
		{sockProgWeftSendmsg4, ebpf.AttachCGroupUDP4Sendmsg, o.Sendmsg4},
		{sockProgWeftSendmsg6, ebpf.AttachCGroupUDP6Sendmsg, o.Sendmsg6},
		{sockProgWeftRecvmsg4, ebpf.AttachCGroupUDP4Recvmsg, o.Recvmsg4},
		{sockProgWeftRecvmsg6, ebpf.AttachCGroupUDP6Recvmsg, o.Recvmsg6},
		{sockProgWeftGetpeer4, ebpf.AttachCgroupInet4GetPeername, o.Getpeer4},
		{sockProgWeftGetpeer6, ebpf.AttachCgroupInet6GetPeername, o.Getpeer6},
		{sockProgWeftSockops, ebpf.AttachCGroupSockOps, o.Sockops},
	}
}

// Datapath is the loaded and attached bpf/sock family. It is the only owner
// of the family's maps; see the package documentation for its lifecycle.
type Datapath struct {
	log      *slog.Logger
	cfg      Config
	cgroupID uint64

	objs  objects
	links []link.Link

	// adopted lists the maps and links that were pinned before New.
	adoptedMaps, adoptedLinks []string

	mu     sync.Mutex // serialises map access (Reconcile, Snapshot, Counters, Dump) with Close
	rmu    sync.Mutex // guards closed and readers
	closed bool
	// readers are the ring buffer readers of running ReadEvents calls,
	// closed by Close to unblock them.
	readers map[*ringbuf.Reader]struct{}

	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, loads the programs, adopts the maps and links pinned
// under cfg.PinPath (or creates and pins them), replaces the programs of
// adopted links in place and attaches the missing ones to cfg.CgroupPath.
// Pinned maps with another layout are an error wrapping ErrLayoutMismatch.
// On failure, New closes what it opened and removes the pins it made, and
// leaves what was pinned before untouched.
func New(cfg Config, log *slog.Logger) (_ *Datapath, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid datapath config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	d := &Datapath{log: log, cfg: cfg, readers: make(map[*ringbuf.Reader]struct{})}

	var created []string // pins made by this call, removed on failure
	defer func() {
		if err != nil {
			for _, p := range created {
				if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
					err = errors.Join(err, fmt.Errorf("remove pin %s: %w", p, rerr))
				}
			}
			err = errors.Join(err, d.Close())
		}
	}()

	if d.cgroupID, err = cgroupID(cfg.CgroupPath); err != nil {
		return nil, err
	}
	if err := ensureBPFFS(cfg.PinPath); err != nil {
		return nil, err
	}
	spec, err := loadSpec(cfg)
	if err != nil {
		return nil, err
	}

	if !cfg.Accelerate {
		d.warnStaleAccel()
	}
	repl, adopted, err := adoptMaps(spec, cfg.PinPath, pinnedMapNames(cfg.Accelerate))
	if err != nil {
		return nil, err
	}
	d.adoptedMaps = adopted
	err = spec.LoadAndAssign(&d.objs, &ebpf.CollectionOptions{MapReplacements: repl})
	for _, m := range repl {
		_ = m.Close() // LoadAndAssign cloned them
	}
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			log.Error("verifier rejected a program", "error", fmt.Sprintf("%+v", verr))
		}
		return nil, fmt.Errorf("load bpf objects: %w", err)
	}

	// Pin the maps this call created, then stamp the layout version.
	metaAdopted := false
	for name, m := range d.mapsByName() {
		if _, ok := repl[name]; ok {
			metaAdopted = metaAdopted || name == sockMapWeftMetadata
			continue
		}
		path := filepath.Join(cfg.PinPath, name)
		if err := m.Pin(path); err != nil {
			return nil, fmt.Errorf("pin map %s: %w", name, err)
		}
		created = append(created, path)
	}
	if !metaAdopted {
		meta := sockWeftMeta{Magic: metaMagic, LayoutVersion: LayoutVersion}
		if err := d.objs.WeftMetadata.Put(uint32(0), meta); err != nil {
			return nil, fmt.Errorf("write layout version: %w", err)
		}
	}

	if err := d.attach(&created); err != nil {
		return nil, err
	}
	if cfg.Accelerate {
		if err := d.attachAccel(&created); err != nil {
			return nil, err
		}
	}
	log.Info("datapath ready", "cgroup", cfg.CgroupPath, "cgroup_id", d.cgroupID, "pin_path", cfg.PinPath,
		"adopted_maps", len(d.adoptedMaps), "adopted_links", len(d.adoptedLinks), "layout_version", LayoutVersion,
		"accelerate", cfg.Accelerate)
	return d, nil
}

// loadSpec returns the collection spec with the configuration set and the
// test harness left out.
func loadSpec(cfg Config) (*ebpf.CollectionSpec, error) {
	spec, err := loadSock()
	if err != nil {
		return nil, fmt.Errorf("load bpf spec: %w", err)
	}
	delete(spec.Programs, sockProgWeftTestDecide)
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone // New pins by itself, after loading succeeded
	}
	if !cfg.Accelerate {
		// The programs reference the acceleration maps, but with
		// WEFT_CFG_ACCEL clear no path touches them: one-entry
		// placeholders, never pinned, instead of a 64Ki-entry sockhash
		// and a preallocated LRU.
		spec.Maps[sockMapWeftAccel].MaxEntries = 1
		spec.Maps[sockMapWeftAccelRx].MaxEntries = 1
	}
	if err := spec.Variables[sockVarWeftCfg].Set(bpfConfig(cfg)); err != nil {
		return nil, fmt.Errorf("set bpf config: %w", err)
	}
	return spec, nil
}

func bpfConfig(cfg Config) sockWeftConfig {
	c := sockWeftConfig{
		ProxyCgroupId:       cfg.ProxyCgroupID,
		TelemetryIntervalNs: uint64(cfg.TelemetryInterval.Nanoseconds()),
		ProxyMark:           cfg.ProxyMark,
	}
	if cfg.ProxyAddr.IsValid() {
		c.Flags |= 1 // WEFT_CFG_PROXY
		c.ProxyAddr = cfg.ProxyAddr.Addr().As16()
		c.ProxyPort = cfg.ProxyAddr.Port()
	}
	if cfg.DNSAddr.IsValid() {
		c.Flags |= 2 // WEFT_CFG_DNS
		c.DnsAddr = cfg.DNSAddr.Addr().As16()
		c.DnsPort = cfg.DNSAddr.Port()
	}
	if cfg.Accelerate {
		c.Flags |= 4 // WEFT_CFG_ACCEL
	}
	return c
}

// pinnedMapNames are the maps of the family that live under PinPath: every
// map of the object except the programs' own globals (.rodata, .bss), and
// the acceleration maps only when acceleration is on.
func pinnedMapNames(accelerate bool) []string {
	names := []string{
		sockMapWeftMetadata, sockMapWeftWorkloads, sockMapWeftServices, sockMapWeftBackends,
		sockMapWeftEgress, sockMapWeftRevnat, sockMapWeftOrigdst, sockMapWeftSockstate,
		sockMapWeftCounters, sockMapWeftEvents,
	}
	if accelerate {
		names = append(names, accelMapNames...)
	}
	return names
}

// accelMapNames are the maps pinned only with Config.Accelerate.
var accelMapNames = []string{sockMapWeftAccel, sockMapWeftAccelRx}

// mapsByName returns the pinned maps (pinnedMapNames) by name.
func (d *Datapath) mapsByName() map[string]*ebpf.Map {
	m := d.objs.sockMaps
	out := map[string]*ebpf.Map{
		sockMapWeftMetadata: m.WeftMetadata, sockMapWeftWorkloads: m.WeftWorkloads,
		sockMapWeftServices: m.WeftServices, sockMapWeftBackends: m.WeftBackends,
		sockMapWeftEgress: m.WeftEgress, sockMapWeftRevnat: m.WeftRevnat,
		sockMapWeftOrigdst: m.WeftOrigdst, sockMapWeftSockstate: m.WeftSockstate,
		sockMapWeftCounters: m.WeftCounters, sockMapWeftEvents: m.WeftEvents,
	}
	if d.cfg.Accelerate {
		out[sockMapWeftAccel] = m.WeftAccel
		out[sockMapWeftAccelRx] = m.WeftAccelRx
	}
	return out
}

// adoptMaps opens the maps pinned under pinPath and checks them against the
// spec: the layout version first, then each map's type, key and value size,
// max entries and flags. It returns them as replacements.
func adoptMaps(spec *ebpf.CollectionSpec, pinPath string, names []string) (repl map[string]*ebpf.Map, adopted []string, err error) {
	repl = make(map[string]*ebpf.Map)
	defer func() {
		if err != nil {
			for _, m := range repl {
				_ = m.Close()
			}
			repl = nil
		}
	}()
	for _, name := range names {
		m, err := ebpf.LoadPinnedMap(filepath.Join(pinPath, name), nil)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("open pinned map %s: %w", name, err)
		}
		repl[name] = m
		adopted = append(adopted, name)
	}
	if len(repl) == 0 {
		return repl, nil, nil
	}
	meta, ok := repl[sockMapWeftMetadata]
	if !ok {
		return nil, nil, fmt.Errorf("adopt maps in %s: %w: maps are pinned but %s is not (refusing to guess their layout)",
			pinPath, ErrLayoutMismatch, sockMapWeftMetadata)
	}
	var v sockWeftMeta
	if err := meta.Lookup(uint32(0), &v); err != nil {
		return nil, nil, fmt.Errorf("read pinned layout version: %w", err)
	}
	if v.Magic != metaMagic || v.LayoutVersion != LayoutVersion {
		return nil, nil, fmt.Errorf("adopt maps in %s: %w: pinned layout version %d (magic %#x), this build uses %d; unpin them (uninstall) or run the matching agent",
			pinPath, ErrLayoutMismatch, v.LayoutVersion, v.Magic, LayoutVersion)
	}
	var errs []error
	for name, m := range repl {
		if err := compatible(spec.Maps[name], m); err != nil {
			errs = append(errs, fmt.Errorf("map %s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, fmt.Errorf("adopt maps in %s: %w: %w", pinPath, ErrLayoutMismatch, err)
	}
	return repl, adopted, nil
}

// compatible compares a pinned map with its spec, naming every difference.
func compatible(spec *ebpf.MapSpec, m *ebpf.Map) error {
	var errs []error
	if m.Type() != spec.Type {
		errs = append(errs, fmt.Errorf("type %v, want %v", m.Type(), spec.Type))
	}
	if m.KeySize() != spec.KeySize {
		errs = append(errs, fmt.Errorf("key size %d, want %d", m.KeySize(), spec.KeySize))
	}
	if m.ValueSize() != spec.ValueSize {
		errs = append(errs, fmt.Errorf("value size %d, want %d", m.ValueSize(), spec.ValueSize))
	}
	if m.MaxEntries() != spec.MaxEntries {
		errs = append(errs, fmt.Errorf("max entries %d, want %d", m.MaxEntries(), spec.MaxEntries))
	}
	if m.Flags() != spec.Flags {
		errs = append(errs, fmt.Errorf("flags %#x, want %#x", m.Flags(), spec.Flags))
	}
	return errors.Join(errs...)
}

// attach adopts each pinned link (checking it is a cgroup link of the right
// attach type on our cgroup) and points it at the new program, or attaches
// and pins a new link.
func (d *Datapath) attach(created *[]string) error {
	dir := filepath.Join(d.cfg.PinPath, linksDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create link pin directory: %w", err)
	}
	for _, a := range d.objs.attachments() {
		path := filepath.Join(dir, a.name)
		l, err := link.LoadPinnedLink(path, nil)
		switch {
		case err == nil:
			d.links = append(d.links, l)
			if err := d.checkLink(l, a); err != nil {
				return fmt.Errorf("adopt link %s: %w", path, err)
			}
			if err := l.Update(a.prog); err != nil {
				return fmt.Errorf("replace program of link %s: %w", path, err)
			}
			d.adoptedLinks = append(d.adoptedLinks, a.name)
		case errors.Is(err, fs.ErrNotExist):
			l, err := link.AttachCgroup(link.CgroupOptions{Path: d.cfg.CgroupPath, Attach: a.attach, Program: a.prog})
			if err != nil {
				return fmt.Errorf("attach %s to %s: %w", a.name, d.cfg.CgroupPath, err)
			}
			d.links = append(d.links, l)
			if err := l.Pin(path); err != nil {
				return fmt.Errorf("pin link %s: %w", a.name, err)
			}
			*created = append(*created, path)
		default:
			return fmt.Errorf("open pinned link %s: %w", path, err)
		}
	}
	return nil
}

func (d *Datapath) checkLink(l link.Link, a attachment) error {
	info, err := l.Info()
	if err != nil {
		return err
	}
	cg := info.Cgroup()
	if cg == nil {
		return fmt.Errorf("link of type %v, want a cgroup link", info.Type)
	}
	if ebpf.AttachType(cg.AttachType) != a.attach {
		return fmt.Errorf("attach type %v, want %v", ebpf.AttachType(cg.AttachType), a.attach)
	}
	if cg.CgroupId != d.cgroupID {
		return fmt.Errorf("attached to cgroup id %d, but %s has id %d (unpin the old datapath to move it)",
			cg.CgroupId, d.cfg.CgroupPath, d.cgroupID)
	}
	return nil
}

// Close releases the Datapath's file descriptors and stops running
// ReadEvents calls. It detaches nothing: the links and maps pinned under
// Config.PinPath keep the programs attached and the state in place until the
// next New adopts them (static stability), or Unpin removes them. Close is
// idempotent.
func (d *Datapath) Close() error {
	d.closeOnce.Do(func() {
		d.rmu.Lock()
		d.closed = true
		var errs []error
		for rd := range d.readers {
			errs = append(errs, rd.Close())
		}
		d.rmu.Unlock()
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, l := range d.links {
			errs = append(errs, l.Close())
		}
		errs = append(errs, d.objs.close())
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// Unpin detaches the programs and removes every pin of the family under
// Config.PinPath (links, then maps; the pin directory if it is left empty),
// then closes d. The maps disappear when the last user closes them. It is
// for uninstalling and for tests; it works on a closed Datapath too.
func (d *Datapath) Unpin() error {
	err := unpinAll(d.cfg.PinPath)
	return errors.Join(err, d.Close())
}

func unpinAll(pinPath string) error {
	var errs []error
	remove := func(p string) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin %s: %w", p, err))
		}
	}
	for _, name := range []string{
		sockProgWeftConnect4, sockProgWeftConnect6, sockProgWeftSendmsg4,
		sockProgWeftSendmsg6, sockProgWeftRecvmsg4, sockProgWeftRecvmsg6, sockProgWeftGetpeer4,
		sockProgWeftGetpeer6, sockProgWeftSockops, sockProgWeftAccelMsg,
	} {
		remove(filepath.Join(pinPath, linksDir, name))
	}
	remove(filepath.Join(pinPath, linksDir))
	// The acceleration maps too, whether or not this Datapath accelerates.
	for _, name := range pinnedMapNames(true) {
		remove(filepath.Join(pinPath, name))
	}
	if err := os.Remove(pinPath); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
		errs = append(errs, fmt.Errorf("remove %s: %w", pinPath, err))
	}
	return errors.Join(errs...)
}

// cgroupID returns the id of a cgroup v2 directory, the inode number that
// bpf_get_current_cgroup_id reports for its processes.
func cgroupID(dir string) (uint64, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	if uint32(sfs.Type) != unix.CGROUP2_SUPER_MAGIC {
		return 0, fmt.Errorf("cgroup %s: not on a cgroup v2 filesystem", dir)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	return st.Ino, nil
}

// ensureBPFFS creates dir if needed and checks that it is on bpffs.
func ensureBPFFS(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return fmt.Errorf("pin directory %s: %w", dir, err)
	}
	if uint32(sfs.Type) != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin directory %s: not on bpffs (mount -t bpf bpf <dir>)", dir)
	}
	return nil
}

// closedErr returns ErrClosed once Close has begun.
func (d *Datapath) closedErr() error {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	if d.closed {
		return ErrClosed
	}
	return nil
}
