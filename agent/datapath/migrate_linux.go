// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Layout migration: see "Layout changes" in the package documentation.

// layoutVersion is the layout this build creates and adopts: LayoutVersion,
// except in the migration tests, which pretend to be a later build.
var layoutVersion uint32 = LayoutVersion

// adjustSpec, when set (tests only), edits the spec after loadSpec, as a
// later build with another layout would have compiled it.
var adjustSpec func(*ebpf.CollectionSpec)

// A migration turns the maps pinned by layout version from into the current
// layout. Every pinned map it does not list must already have its current
// shape and BTF layout, and is adopted as it is.
type migration struct {
	from uint32
	maps map[string]mapMigration
}

// mapMigration is what happens to one pinned map whose shape changed.
type mapMigration struct {
	// old is the shape the pinned map has in layout from. A pinned map of
	// that shape is replaced; one that already has the current shape is
	// adopted (an interrupted migration that got as far as its pins);
	// anything else is refused.
	old mapShape
	// convert turns one entry of the old map into the entry of the new
	// one; ok false drops the entry. nil: the new map starts empty
	// (state that userspace cannot copy, see why).
	convert func(key, value []byte) (newKey, newValue []byte, ok bool, err error)
	// why is logged when the map is replaced.
	why string
}

// mapShape is what the kernel knows of a map's layout besides its BTF.
type mapShape struct {
	typ                           ebpf.MapType
	key, value, maxEntries, flags uint32
}

func shapeOf(m *ebpf.Map) mapShape {
	return mapShape{m.Type(), m.KeySize(), m.ValueSize(), m.MaxEntries(), m.Flags()}
}

func specShape(s *ebpf.MapSpec) mapShape {
	return mapShape{s.Type, s.KeySize, s.ValueSize, s.MaxEntries, s.Flags}
}

func (s mapShape) String() string {
	return fmt.Sprintf("%v key %d value %d max %d flags %#x", s.typ, s.key, s.value, s.maxEntries, s.flags)
}

// migrations are the known migration paths, by the version they start from.
// A pinned layout that is neither layoutVersion nor listed here (a newer
// build's, after a downgrade) is refused.
var migrations = map[uint32]migration{
	1: migrationFrom1,
}

// migrationFrom1: layout 1 is the datapath before same-node acceleration
// (commit d159ba3). Layout 2 added weft_accel and weft_accel_rx (created
// like any missing map) and grew struct weft_sock_state from 104 to 120
// bytes (accel_sent, accel). Every other map is unchanged and adopted.
var migrationFrom1 = migration{
	from: 1,
	maps: map[string]mapMigration{
		sockMapWeftSockstate: {
			old: mapShape{ebpf.SkStorage, 4, 104, 0, unix.BPF_F_NO_PREALLOC},
			why: "socket storage cannot be read or written from userspace without the sockets: the new map starts " +
				"empty; sockets that exist now lose their storage (no close record, their weft_origdst and " +
				"weft_revnat entries are left to LRU eviction instead of deleted at close, UDP stickiness is " +
				"recomputed from the socket cookie); their redirects and original destinations are unaffected",
		},
	},
}

// copyable reports whether userspace can copy the entries of a map of type
// t. Others a migration can only start empty (socket storage, ring buffer)
// or must keep (see replaceable).
func copyable(t ebpf.MapType) bool {
	switch t {
	case ebpf.Hash, ebpf.LRUHash, ebpf.Array, ebpf.LPMTrie:
		return true
	}
	return false
}

// replaceable reports whether a migration may replace a map of type t:
// not a socket map, which its sockmap link is bound to and whose live
// sockets' queued bytes belong to it.
func replaceable(t ebpf.MapType) bool {
	return t != ebpf.SockHash && t != ebpf.SockMap
}

// validate checks a migration against the spec it migrates to: a
// programming error, caught by TestMigrationsValid.
func (mg migration) validate(spec *ebpf.CollectionSpec) error {
	var errs []error
	if mg.from == layoutVersion {
		errs = append(errs, fmt.Errorf("migration from the current layout %d", mg.from))
	}
	for name, mm := range mg.maps {
		ms, ok := spec.Maps[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: not a map of the spec", name))
		case name == sockMapWeftMetadata:
			errs = append(errs, fmt.Errorf("%s: its layout is frozen", name))
		case !replaceable(ms.Type) || !replaceable(mm.old.typ):
			errs = append(errs, fmt.Errorf("%s: a %v cannot be replaced under live connections", name, ms.Type))
		case mm.convert != nil && (!copyable(mm.old.typ) || !copyable(ms.Type)):
			errs = append(errs, fmt.Errorf("%s: %v entries cannot be copied from userspace", name, mm.old.typ))
		case mm.convert == nil && mm.why == "":
			errs = append(errs, fmt.Errorf("%s: starts empty without a reason", name))
		}
	}
	return errors.Join(errs...)
}

// replaced is one pinned map a migration replaces.
type replaced struct {
	name     string
	mm       mapMigration
	old, new *ebpf.Map
	// resumed: new is the temporary pin of an interrupted migration that
	// the attached programs already use.
	resumed bool
	// copied holds the entries the first pass wrote: old key -> new
	// key and value (for the pass after the switch).
	copied map[string][2][]byte
}

// adoption is what New does with the pinned maps.
type adoption struct {
	// repl are the maps the programs are loaded against: adopted pins and
	// the new maps of replaced ones.
	repl    map[string]*ebpf.Map
	adopted []string
	// from is the pinned layout version when it is migrated, else 0.
	from     uint32
	replaced []*replaced
}

func (a *adoption) close() {
	for _, m := range a.repl {
		_ = m.Close()
	}
	for _, r := range a.replaced {
		_ = r.old.Close()
		if r.new != nil {
			_ = r.new.Close()
		}
	}
	a.repl, a.replaced = nil, nil
}

// tempPin is where the new map of a replaced one is pinned until the
// programs use it: <name>_v<layout>.
func tempPin(pinPath, name string) string {
	return filepath.Join(pinPath, name+"_v"+strconv.FormatUint(uint64(layoutVersion), 10))
}

// forceHint says how to get past a refused layout.
func forceHint(pinPath string) string {
	return fmt.Sprintf("run the agent build of that layout, or start over by removing the pins (datapath.UnpinPath(%q), "+
		"or rm -r %s), which detaches the programs and drops every connection's state", pinPath, pinPath)
}

// adoptMaps opens the maps pinned under pinPath and checks them against the
// spec: the layout version first, then each map's type, key and value size,
// max entries, flags and BTF layout. Of the current layout, they are all
// adopted. Of a layout with a registered migration, the maps it lists are
// replaced by new ones, filled (not yet pinned: see commitMigration); the
// others are adopted. Any other layout is an error wrapping
// ErrLayoutMismatch.
func adoptMaps(spec *ebpf.CollectionSpec, pinPath string, names []string) (_ *adoption, err error) {
	a := &adoption{repl: make(map[string]*ebpf.Map)}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	for _, name := range names {
		m, err := ebpf.LoadPinnedMap(filepath.Join(pinPath, name), nil)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open pinned map %s: %w", name, err)
		}
		a.repl[name] = m
		a.adopted = append(a.adopted, name)
	}
	if len(a.repl) == 0 {
		return a, nil
	}
	meta, ok := a.repl[sockMapWeftMetadata]
	if !ok {
		return nil, fmt.Errorf("adopt maps in %s: %w: maps are pinned but %s is not (refusing to guess their layout); %s",
			pinPath, ErrLayoutMismatch, sockMapWeftMetadata, forceHint(pinPath))
	}
	var v sockWeftMeta
	if err := meta.Lookup(uint32(0), &v); err != nil {
		return nil, fmt.Errorf("read pinned layout version: %w", err)
	}
	var mg migration
	if v.Magic != metaMagic || v.LayoutVersion != layoutVersion {
		var ok bool
		mg, ok = migrations[v.LayoutVersion]
		if v.Magic != metaMagic || !ok {
			return nil, fmt.Errorf("adopt maps in %s: %w: pinned layout version %d (magic %#x), this build uses %d and migrates from %v only; %s",
				pinPath, ErrLayoutMismatch, v.LayoutVersion, v.Magic, layoutVersion, knownMigrations(), forceHint(pinPath))
		}
		if err := mg.validate(spec); err != nil {
			return nil, fmt.Errorf("migration from layout %d: %w", mg.from, err)
		}
		a.from = mg.from
	}
	var errs []error
	for _, name := range a.adopted {
		m := a.repl[name]
		mm, listed := mg.maps[name]
		if listed && shapeOf(m) == mm.old {
			a.replaced = append(a.replaced, &replaced{name: name, mm: mm, old: m})
			delete(a.repl, name)
			continue
		}
		if err := compatible(spec.Maps[name], m); err != nil {
			if listed {
				err = fmt.Errorf("%w (and not the shape %v that the migration from %d replaces)", err, mm.old, mg.from)
			}
			errs = append(errs, fmt.Errorf("map %s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		if a.from != 0 {
			return nil, fmt.Errorf("migrate maps in %s from layout %d: %w: %w; %s", pinPath, a.from, ErrLayoutMismatch, err, forceHint(pinPath))
		}
		return nil, fmt.Errorf("adopt maps in %s: %w: %w; %s", pinPath, ErrLayoutMismatch, err, forceHint(pinPath))
	}
	a.adopted = slices.DeleteFunc(a.adopted, func(n string) bool { _, ok := a.repl[n]; return !ok })
	if a.from != 0 {
		if err := a.prepare(spec, pinPath); err != nil {
			return nil, fmt.Errorf("migrate maps in %s from layout %d: %w", pinPath, a.from, err)
		}
	}
	return a, nil
}

func knownMigrations() []uint32 {
	var out []uint32
	for from := range migrations {
		out = append(out, from)
	}
	slices.Sort(out)
	return out
}

// prepare creates the new map of each replaced one and copies the entries
// over (first pass, while the old programs still run), or, after an
// interrupted migration, takes the temporary pin that the attached programs
// already use.
func (a *adoption) prepare(spec *ebpf.CollectionSpec, pinPath string) error {
	inUse, err := attachedMapIDs(pinPath)
	if err != nil {
		return err
	}
	for _, r := range a.replaced {
		ms := spec.Maps[r.name].Copy()
		ms.Pinning = ebpf.PinNone
		tmp := tempPin(pinPath, r.name)
		if m, err := ebpf.LoadPinnedMap(tmp, nil); err == nil {
			id, ierr := mapID(m)
			if ierr == nil && inUse[id] && compatible(ms, m) == nil {
				// The programs were switched, the pins were not
				// renamed: the temporary map is the live one.
				r.new, r.resumed = m, true
			} else {
				// A copy that never went live: start again.
				_ = m.Close()
				if err := os.Remove(tmp); err != nil {
					return fmt.Errorf("remove stale %s: %w", tmp, err)
				}
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("open %s: %w", tmp, err)
		}
		if r.new == nil {
			if r.new, err = ebpf.NewMap(ms); err != nil {
				return fmt.Errorf("create %s: %w", r.name, err)
			}
		}
		if r.mm.convert != nil {
			// A resumed map may lack what the old programs still
			// attached wrote since: add what is missing.
			if r.copied, err = copyEntries(r, nil); err != nil {
				return err
			}
		}
		nm, err := r.new.Clone()
		if err != nil {
			return fmt.Errorf("clone %s: %w", r.name, err)
		}
		a.repl[r.name] = nm
	}
	return nil
}

// copyEntries converts every entry of r.old that is not in skip and writes
// it to r.new unless the key is there already (BPF_NOEXIST: never over an
// entry the new programs wrote). It returns what it wrote.
func copyEntries(r *replaced, skip map[string][2][]byte) (map[string][2][]byte, error) {
	out := make(map[string][2][]byte)
	it := r.old.Iterate()
	for {
		// Fresh slices each time: Next writes into a slice of the
		// right length in place.
		var k, v []byte
		if !it.Next(&k, &v) {
			break
		}
		if _, ok := skip[string(k)]; ok {
			continue
		}
		nk, nv, ok, err := r.mm.convert(k, v)
		if err != nil {
			return nil, fmt.Errorf("convert %s entry %x: %w", r.name, k, err)
		}
		if !ok {
			continue
		}
		err = r.new.Update(nk, nv, ebpf.UpdateNoExist)
		if errors.Is(err, ebpf.ErrKeyExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("copy %s entry %x: %w", r.name, k, err)
		}
		out[string(k)] = [2][]byte{slices.Clone(nk), slices.Clone(nv)}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate %s: %w", r.name, err)
	}
	return out, nil
}

// catchUp is the pass after the switch, when no old program writes to r.old
// any more: it copies the entries the old programs added after the first
// pass and deletes the copies of entries they deleted (unless a new
// program has rewritten them since). It returns the counts.
func catchUp(r *replaced) (added, deleted int, err error) {
	if r.mm.convert == nil {
		return 0, 0, nil
	}
	more, err := copyEntries(r, r.copied)
	if err != nil {
		return 0, 0, err
	}
	var v []byte
	for ok, kv := range r.copied {
		err := r.old.Lookup([]byte(ok), &v)
		if err == nil {
			continue
		}
		if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return len(more), deleted, fmt.Errorf("look up %s: %w", r.name, err)
		}
		var cur []byte
		if r.new.Lookup(kv[0], &cur) == nil && bytes.Equal(cur, kv[1]) {
			if err := r.new.Delete(kv[0]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return len(more), deleted, fmt.Errorf("delete %s entry: %w", r.name, err)
			}
			deleted++
		}
	}
	return len(more), deleted, nil
}

// commitMigration runs once every link uses the new programs: it catches the
// replaced maps up, moves their pins over the old ones (rename(2) replaces
// the old pin atomically, so the canonical name never disappears) and
// stamps the layout version. From here on the old maps are unreferenced and
// freed.
func (d *Datapath) commitMigration(a *adoption) error {
	var errs []error
	for _, r := range a.replaced {
		added, deleted, err := catchUp(r)
		if err != nil {
			// The programs already use the new map: losing a few
			// entries is all that can happen now.
			d.log.Warn("migration: catching up a replaced map failed", "map", r.name, "error", err)
		}
		path := filepath.Join(d.cfg.PinPath, r.name)
		if err := os.Rename(tempPin(d.cfg.PinPath, r.name), path); err != nil {
			errs = append(errs, fmt.Errorf("move pin of the new %s over the old one: %w", r.name, err))
			continue
		}
		oldID, _ := mapID(r.old)
		newID, _ := mapID(r.new)
		d.log.Info("migration: map replaced", "map", r.name, "from_layout", a.from, "old_id", oldID, "new_id", newID,
			"copied", len(r.copied)+added, "caught_up_added", added, "caught_up_deleted", deleted,
			"resumed", r.resumed, "converted", r.mm.convert != nil, "note", r.mm.why)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w (the programs use the new maps; the next start completes the migration)", err)
	}
	meta := sockWeftMeta{Magic: metaMagic, LayoutVersion: layoutVersion}
	if err := d.objs.WeftMetadata.Put(uint32(0), meta); err != nil {
		return fmt.Errorf("write layout version: %w (the next start completes the migration)", err)
	}
	return nil
}

// attachedMapIDs returns the ids of the maps that the programs of the links
// pinned under pinPath use.
func attachedMapIDs(pinPath string) (map[ebpf.MapID]bool, error) {
	out := make(map[ebpf.MapID]bool)
	for _, name := range linkNames {
		l, err := link.LoadPinnedLink(filepath.Join(pinPath, linksDir, name), nil)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open pinned link %s: %w", name, err)
		}
		info, err := l.Info()
		_ = l.Close()
		if err != nil {
			return nil, fmt.Errorf("link %s: %w", name, err)
		}
		prog, err := ebpf.NewProgramFromID(info.Program)
		if err != nil {
			return nil, fmt.Errorf("program of link %s: %w", name, err)
		}
		pinfo, err := prog.Info()
		_ = prog.Close()
		if err != nil {
			return nil, fmt.Errorf("program of link %s: %w", name, err)
		}
		ids, _ := pinfo.MapIDs()
		for _, id := range ids {
			out[id] = true
		}
	}
	return out, nil
}

func mapID(m *ebpf.Map) (ebpf.MapID, error) {
	info, err := m.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return id, nil
}

// linkNames are the names of every link the family pins under links/.
var linkNames = []string{
	sockProgWeftConnect4, sockProgWeftConnect6, sockProgWeftSendmsg4,
	sockProgWeftSendmsg6, sockProgWeftRecvmsg4, sockProgWeftRecvmsg6, sockProgWeftGetpeer4,
	sockProgWeftGetpeer6, sockProgWeftSockops, sockProgWeftAccelMsg,
}

// --- BTF layout --------------------------------------------------------------

// btfLayout describes the memory layout of a BTF type: sizes, signedness,
// member names and offsets, array lengths, recursively; typedefs, qualifiers
// and type names do not count.
func btfLayout(t btf.Type) string {
	var b strings.Builder
	writeLayout(&b, t, 0)
	return b.String()
}

func writeLayout(b *strings.Builder, t btf.Type, depth int) {
	if depth > 16 {
		b.WriteString("...")
		return
	}
	switch t := btf.UnderlyingType(t).(type) {
	case *btf.Int:
		sign := "u"
		if t.Encoding&btf.Signed != 0 {
			sign = "s"
		}
		fmt.Fprintf(b, "%s%d", sign, t.Size*8)
	case *btf.Enum:
		fmt.Fprintf(b, "enum%d", t.Size*8)
	case *btf.Pointer:
		b.WriteString("ptr")
	case *btf.Array:
		fmt.Fprintf(b, "[%d]", t.Nelems)
		writeLayout(b, t.Type, depth+1)
	case *btf.Struct:
		writeMembers(b, "struct", t.Size, t.Members, depth)
	case *btf.Union:
		writeMembers(b, "union", t.Size, t.Members, depth)
	default:
		fmt.Fprintf(b, "%T", t)
	}
}

func writeMembers(b *strings.Builder, kind string, size uint32, ms []btf.Member, depth int) {
	fmt.Fprintf(b, "%s%d{", kind, size)
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, "%s@%d", m.Name, m.Offset)
		if m.BitfieldSize != 0 {
			fmt.Fprintf(b, ":%d", m.BitfieldSize)
		}
		b.WriteByte(' ')
		writeLayout(b, m.Type, depth+1)
	}
	b.WriteByte('}')
}

// layoutHash is a short digest of a layout, for messages.
func layoutHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:6])
}

// pinnedBTF returns the key and value types the kernel recorded for m, or
// nils when m was created without BTF.
func pinnedBTF(m *ebpf.Map) (key, value btf.Type, err error) {
	// struct bpf_map_info up to btf_value_type_id: type, id, key_size,
	// value_size, max_entries, map_flags, name[16], ifindex,
	// btf_vmlinux_value_type_id, netns_dev, netns_ino, btf_id,
	// btf_key_type_id, btf_value_type_id.
	var info struct {
		Type, ID, KeySize, ValueSize, MaxEntries, Flags uint32
		Name                                            [16]byte
		Ifindex, VmlinuxValueTypeID                     uint32
		NetnsDev, NetnsIno                              uint64
		BTFID, KeyTypeID, ValueTypeID, VmlinuxID        uint32
		_                                               [64]byte
	}
	attr := struct {
		fd, infoLen uint32
		info        uint64
	}{uint32(m.FD()), uint32(unsafe.Sizeof(info)), uint64(uintptr(unsafe.Pointer(&info)))}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_OBJ_GET_INFO_BY_FD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(&info)
	runtime.KeepAlive(m)
	if errno != 0 {
		return nil, nil, fmt.Errorf("map info: %w", errno)
	}
	if info.BTFID == 0 || info.ValueTypeID == 0 {
		return nil, nil, nil
	}
	h, err := btf.NewHandleFromID(btf.ID(info.BTFID))
	if err != nil {
		return nil, nil, fmt.Errorf("map BTF: %w", err)
	}
	defer h.Close()
	s, err := h.Spec(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("map BTF: %w", err)
	}
	if info.KeyTypeID != 0 {
		if key, err = s.TypeByID(btf.TypeID(info.KeyTypeID)); err != nil {
			return nil, nil, fmt.Errorf("map BTF key type: %w", err)
		}
	}
	if value, err = s.TypeByID(btf.TypeID(info.ValueTypeID)); err != nil {
		return nil, nil, fmt.Errorf("map BTF value type: %w", err)
	}
	return key, value, nil
}

// compatibleBTF compares the BTF layouts of a pinned map's key and value
// with the spec's. A map pinned without BTF has sizes only to compare.
func compatibleBTF(spec *ebpf.MapSpec, m *ebpf.Map) error {
	key, value, err := pinnedBTF(m)
	if err != nil {
		return err
	}
	var errs []error
	check := func(what string, pinned, want btf.Type) {
		if pinned == nil || want == nil {
			return
		}
		p, w := btfLayout(pinned), btfLayout(want)
		if p != w {
			errs = append(errs, fmt.Errorf("%s BTF layout %s %s, want %s %s", what, layoutHash(p), p, layoutHash(w), w))
		}
	}
	check("key", key, spec.Key)
	check("value", value, spec.Value)
	return errors.Join(errs...)
}
