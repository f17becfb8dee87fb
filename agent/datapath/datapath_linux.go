// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
	// Report is the periodic telemetry iterator over weft_sockstate; its
	// link (Datapath.report) is not pinned: ReadEvents runs it.
	Report *ebpf.Program `ebpf:"weft_report"`
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
		p.Recvmsg6, p.Getpeer4, p.Getpeer6, p.Sockops, p.AccelMsg, p.Report,
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

type updatedLink struct {
	link link.Link
	prev *ebpf.Program
}

// Datapath is the loaded and attached bpf/sock family. It is the only owner
// of the family's maps; see the package documentation for its lifecycle.
type Datapath struct {
	log      *slog.Logger
	cfg      Config
	cgroupID uint64

	objs  objects
	links []link.Link
	// report is the iterator link of objs.Report on weft_sockstate.
	report *link.Iter

	// adopted lists the maps and links that were pinned before New.
	adoptedMaps, adoptedLinks []string
	// updated are the adopted links New pointed at its programs, with
	// their previous programs, until New succeeds.
	updated []updatedLink

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
// Pinned maps of an older layout with a registered migration are migrated
// (see "Layout changes" in the package documentation); any other layout is
// an error wrapping ErrLayoutMismatch. On failure, New points the links it
// updated back at their previous programs, closes what it opened and
// removes the pins it made, and leaves what was pinned before untouched.
func New(cfg Config, log *slog.Logger) (_ *Datapath, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid datapath config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	d := &Datapath{log: log, cfg: cfg, readers: make(map[*ringbuf.Reader]struct{})}

	var (
		created   []string // pins made by this call, removed on failure
		adoption  *adoption
		committed bool // a migration switched the programs: no rollback
	)
	defer func() {
		if adoption != nil {
			adoption.close()
		}
		if err == nil {
			return
		}
		if committed {
			// Past the switch the new programs stay: the next New
			// completes the migration.
			d.dropRollback()
		} else {
			err = errors.Join(err, d.rollback())
			for _, p := range slices.Backward(created) {
				if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
					err = errors.Join(err, fmt.Errorf("remove pin %s: %w", p, rerr))
				}
			}
		}
		err = errors.Join(err, d.Close())
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
	adoption, err = adoptMaps(spec, cfg.PinPath, pinnedMapNames(cfg.Accelerate))
	if err != nil {
		return nil, err
	}
	d.adoptedMaps = adoption.adopted
	if adoption.from != 0 {
		var names []string
		for _, r := range adoption.replaced {
			names = append(names, r.name)
		}
		log.Info("migrating the pinned datapath", "from_layout", adoption.from, "to_layout", layoutVersion,
			"replaced_maps", names, "adopted_maps", adoption.adopted)
	}
	err = spec.LoadAndAssign(&d.objs, &ebpf.CollectionOptions{MapReplacements: adoption.repl})
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			log.Error("verifier rejected a program", "error", fmt.Sprintf("%+v", verr))
		}
		return nil, fmt.Errorf("load bpf objects: %w", err)
	}

	// Pin the maps this call created (the new maps of a migration under
	// their temporary names), then stamp the layout version of new maps.
	replacedByName := make(map[string]*replaced)
	for _, r := range adoption.replaced {
		replacedByName[r.name] = r
	}
	metaAdopted := false
	for name, m := range d.mapsByName() {
		path := filepath.Join(cfg.PinPath, name)
		if r, ok := replacedByName[name]; ok {
			if r.resumed {
				continue
			}
			path = tempPin(cfg.PinPath, name)
		} else if _, ok := adoption.repl[name]; ok {
			metaAdopted = metaAdopted || name == sockMapWeftMetadata
			continue
		}
		if err := m.Pin(path); err != nil {
			return nil, fmt.Errorf("pin map %s: %w", name, err)
		}
		created = append(created, path)
	}
	if !metaAdopted {
		meta := sockWeftMeta{Magic: metaMagic, LayoutVersion: layoutVersion}
		if err := d.objs.WeftMetadata.Put(uint32(0), meta); err != nil {
			return nil, fmt.Errorf("write layout version: %w", err)
		}
	}

	if err := d.attach(&created); err != nil {
		return nil, err
	}
	if d.report, err = link.AttachIter(link.IterOptions{Program: d.objs.Report, Map: d.objs.WeftSockstate}); err != nil {
		return nil, fmt.Errorf("create the telemetry iterator: %w", err)
	}
	if cfg.Accelerate {
		if err := d.attachAccel(&created); err != nil {
			return nil, err
		}
	}
	if adoption.from != 0 {
		// Every link runs the new programs on the new maps.
		committed = true
		if err := d.commitMigration(adoption); err != nil {
			return nil, fmt.Errorf("migrate maps in %s from layout %d: %w", cfg.PinPath, adoption.from, err)
		}
	}
	d.dropRollback()
	log.Info("datapath ready", "cgroup", cfg.CgroupPath, "cgroup_id", d.cgroupID, "pin_path", cfg.PinPath,
		"adopted_maps", len(d.adoptedMaps), "adopted_links", len(d.adoptedLinks), "layout_version", layoutVersion,
		"migrated_from", adoption.from, "accelerate", cfg.Accelerate)
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
	if adjustSpec != nil {
		adjustSpec(spec)
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

// compatible compares a pinned map with its spec, naming every difference:
// type, key and value size, max entries, flags, and then the BTF layout of
// key and value.
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
	if len(errs) == 0 {
		errs = append(errs, compatibleBTF(spec, m))
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
			if err := d.update(l, a.prog); err != nil {
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

// update points an adopted link at prog (BPF_LINK_UPDATE, atomic for that
// hook), remembering its previous program so that a failing New can point
// it back (rollback).
func (d *Datapath) update(l link.Link, prog *ebpf.Program) error {
	info, err := l.Info()
	if err != nil {
		return err
	}
	prev, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		return fmt.Errorf("open its program %d: %w", info.Program, err)
	}
	if err := l.Update(prog); err != nil {
		return errors.Join(err, prev.Close())
	}
	d.updated = append(d.updated, updatedLink{l, prev})
	return nil
}

// rollback points the links New updated back at their previous programs,
// newest first.
func (d *Datapath) rollback() error {
	var errs []error
	for _, u := range slices.Backward(d.updated) {
		if err := u.link.Update(u.prev); err != nil {
			errs = append(errs, fmt.Errorf("roll link back to program %v: %w", u.prev, err))
		}
	}
	d.dropRollback()
	return errors.Join(errs...)
}

func (d *Datapath) dropRollback() {
	for _, u := range d.updated {
		_ = u.prev.Close()
	}
	d.updated = nil
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
		if d.report != nil {
			errs = append(errs, d.report.Close())
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

// UnpinPath removes every pin of the family under pinPath, like Unpin,
// without a Datapath: it detaches the programs and drops the maps (with
// every connection's state) once nothing else holds them. It is the way
// past a pinned layout that New refuses (ErrLayoutMismatch), for example
// after a downgrade.
func UnpinPath(pinPath string) error {
	return unpinAll(pinPath)
}

func unpinAll(pinPath string) error {
	var errs []error
	remove := func(p string) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin %s: %w", p, err))
		}
	}
	for _, name := range linkNames {
		remove(filepath.Join(pinPath, linksDir, name))
	}
	remove(filepath.Join(pinPath, linksDir))
	// The acceleration maps too, whether or not this Datapath accelerates,
	// and the temporary pins of an interrupted migration (<name>_v<N>).
	for _, name := range pinnedMapNames(true) {
		remove(filepath.Join(pinPath, name))
		tmp, _ := filepath.Glob(filepath.Join(pinPath, name+"_v[0-9]*"))
		for _, p := range tmp {
			remove(p)
		}
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
