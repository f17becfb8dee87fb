// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/weft-mesh/weft/test/testutil"
)

// layout1Object is the compiled datapath of layout version 1: commit
// d159ba3's agent/datapath/sock_bpfel.o, byte for byte (git show
// d159ba3:agent/datapath/sock_bpfel.o).
const layout1Object = "testdata/sock_layout1_bpfel.o"

// startLayout1 leaves cfg.PinPath as the layout-1 agent (commit d159ba3)
// left it after a Reconcile of state and a Close: its object loaded with
// cfg's configuration, its ten maps pinned, layout version 1 stamped, its
// nine cgroup links attached and pinned, and no process holding anything.
func startLayout1(t *testing.T, cfg Config, state State) {
	t.Helper()
	if cfg.Accelerate {
		t.Fatal("layout 1 has no acceleration")
	}
	cfg = cfg.withDefaults()
	spec, err := ebpf.LoadCollectionSpec(layout1Object)
	if err != nil {
		t.Fatal(err)
	}
	delete(spec.Programs, sockProgWeftTestDecide)
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	if err := spec.Variables[sockVarWeftCfg].Set(bpfConfig(cfg)); err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	if err := ensureBPFFS(cfg.PinPath); err != nil {
		t.Fatal(err)
	}
	for _, name := range pinnedMapNames(false) {
		if err := coll.Maps[name].Pin(filepath.Join(cfg.PinPath, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := coll.Maps[sockMapWeftMetadata].Put(uint32(0), sockWeftMeta{Magic: metaMagic, LayoutVersion: 1}); err != nil {
		t.Fatal(err)
	}
	// Layout 1's Reconcile is this one (reconcile_linux.go has not changed
	// since), on its four desired-state maps.
	old := &Datapath{log: testLogger(t), objs: objects{sockMaps: sockMaps{
		WeftWorkloads: coll.Maps[sockMapWeftWorkloads], WeftServices: coll.Maps[sockMapWeftServices],
		WeftBackends: coll.Maps[sockMapWeftBackends], WeftEgress: coll.Maps[sockMapWeftEgress],
	}}}
	reconcile(t, old, state)

	p := coll.Programs
	objs := objects{programs: programs{
		Connect4: p[sockProgWeftConnect4], Connect6: p[sockProgWeftConnect6],
		Sendmsg4: p[sockProgWeftSendmsg4], Sendmsg6: p[sockProgWeftSendmsg6],
		Recvmsg4: p[sockProgWeftRecvmsg4], Recvmsg6: p[sockProgWeftRecvmsg6],
		Getpeer4: p[sockProgWeftGetpeer4], Getpeer6: p[sockProgWeftGetpeer6],
		Sockops: p[sockProgWeftSockops],
	}}
	if err := os.MkdirAll(filepath.Join(cfg.PinPath, linksDir), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, a := range objs.attachments() {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cfg.CgroupPath, Attach: a.attach, Program: a.prog})
		if err != nil {
			t.Fatal(err)
		}
		err = l.Pin(filepath.Join(cfg.PinPath, linksDir, a.name))
		if cerr := l.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// pinnedIDs returns the id of every map pinned under pin, by file name.
func pinnedIDs(t *testing.T, pin string) map[string]ebpf.MapID {
	t.Helper()
	out := map[string]ebpf.MapID{}
	ents, err := os.ReadDir(pin)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if ent.IsDir() {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(pin, ent.Name()), nil)
		if err != nil {
			t.Fatal(err)
		}
		id, err := mapID(m)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[ent.Name()] = id
	}
	return out
}

// pinnedLink is a pinned link's id and current program.
type pinnedLink struct {
	ID   link.ID
	Prog ebpf.ProgramID
}

func pinnedLinks(t *testing.T, pin string) map[string]pinnedLink {
	t.Helper()
	out := map[string]pinnedLink{}
	for _, name := range linkNames {
		l, err := link.LoadPinnedLink(filepath.Join(pin, linksDir, name), nil)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[name] = pinnedLink{info.ID, info.Program}
	}
	return out
}

func pinnedVersion(t *testing.T, pin string) uint32 {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(pin, sockMapWeftMetadata), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var v sockWeftMeta
	if err := m.Lookup(uint32(0), &v); err != nil {
		t.Fatal(err)
	}
	return v.LayoutVersion
}

// setPinnedVersion overwrites the pinned layout version.
func setPinnedVersion(t *testing.T, pin string, version uint32) {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(pin, sockMapWeftMetadata), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Put(uint32(0), sockWeftMeta{Magic: metaMagic, LayoutVersion: version}); err != nil {
		t.Fatal(err)
	}
}

// rawEntries returns every entry of the map pinned at path, as bytes.
func rawEntries(t *testing.T, path string) map[string][]byte {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out := map[string][]byte{}
	it := m.Iterate()
	for {
		var k, v []byte // fresh: Next fills a slice of the right length in place
		if !it.Next(&k, &v) {
			break
		}
		out[string(k)] = v
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// fakeProxy stands in for the node proxy: it accepts redirected
// connections, reports them, and answers "proxy" first and to every line.
func (e *env) fakeProxy() (netip.AddrPort, <-chan [2]netip.AddrPort) {
	e.t.Helper()
	ln := e.tcpListener("127.0.0.1:0")
	acc := make(chan [2]netip.AddrPort, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			acc <- [2]netip.AddrPort{netip.MustParseAddrPort(conn.LocalAddr().String()), netip.MustParseAddrPort(conn.RemoteAddr().String())}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				br := bufio.NewReader(conn)
				for {
					if _, err := fmt.Fprintln(conn, "proxy"); err != nil {
						return
					}
					if _, err := br.ReadString('\n'); err != nil {
						return
					}
				}
			}()
		}
	}()
	e.t.Cleanup(func() { ln.Close(); wg.Wait() })
	return netip.MustParseAddrPort(ln.Addr().String()), acc
}

func accepted(t *testing.T, acc <-chan [2]netip.AddrPort) (local, remote netip.AddrPort) {
	t.Helper()
	select {
	case a := <-acc:
		return a[0], a[1]
	case <-time.After(5 * time.Second):
		t.Fatal("proxy accepted nothing")
	}
	return
}

// duringNew runs New(cfg) while a workload child connects to addr in a loop
// for loopMs, starting New after startMs, and checks that New ran inside
// the loop and that no connection failed.
func (e *env) duringNew(cfg Config, addr string, startMs, loopMs int) (*Datapath, error) {
	e.t.Helper()
	c := e.child(e.wl)
	done := make(chan childResult, 1)
	go func() { done <- c.do(childCmd{Op: "loop", Addr: addr, Ms: loopMs}) }()
	time.Sleep(time.Duration(startMs) * time.Millisecond)
	start := time.Now()
	d, err := New(cfg, testLogger(e.t))
	took := time.Since(start)
	r := <-done
	total := 0
	for _, n := range r.IDs {
		total += n
	}
	e.t.Logf("New took %v (from %dms into a %v loop): %d connections succeeded %v, %d failed (last: %s)",
		took, startMs, time.Duration(r.ElapsedNs), total, r.IDs, r.Failed, r.LastErr)
	if time.Duration(startMs)*time.Millisecond+took > time.Duration(r.ElapsedNs)-100*time.Millisecond {
		e.t.Errorf("New (%v) did not run inside the connect loop (%v); lengthen the loop", took, time.Duration(r.ElapsedNs))
	}
	if r.Failed != 0 || total < 50 {
		e.t.Errorf("connect loop across New: %d failed (last: %s), %d succeeded; want 0 failed", r.Failed, r.LastErr, total)
	}
	return d, err
}

// Migration from layout 1 (before acceleration) to the current layout:
// traffic flows throughout, the links are updated in place, the desired
// state, counters and the original destination of an open L7 connection
// survive, the socket storage map is replaced and the old one freed.
func TestMigrateFromLayout1(t *testing.T) {
	e := newEnv(t)
	a := e.tcpServer("127.0.0.1:0", "a", false)
	b := e.tcpServer("127.0.0.2:0", "b", false)
	realSrv := e.tcpServer("127.0.0.5:0", "real", false)
	proxy, acc := e.fakeProxy()
	cfg := e.config()
	cfg.ProxyAddr, cfg.ProxyCgroupID = proxy, e.proxy.id
	state := State{
		Workloads: []Workload{{CgroupID: e.wl.id, ID: 1, MeshID: 1}},
		Services: []Service{
			l4(70, "10.96.0.70", 80, TCP, Backend{a, 3}, Backend{b, 1}),
			{ID: 40, Addr: realSrv.Addr(), Port: realSrv.Port(), Proto: TCP, Mode: ModeL7},
		},
		Egress: []EgressRule{{MeshID: 1, Prefix: netip.MustParsePrefix("192.0.2.0/24"), Port: 443}},
	}
	t.Cleanup(func() { _ = unpinAll(cfg.PinPath) })
	startLayout1(t, cfg, state)

	// An L7 connection opened under layout 1, held across the migration.
	c := e.child(e.wl)
	if held := c.must(childCmd{Op: "hold", Addr: realSrv.String()}); held.ID != "proxy" {
		t.Fatalf("L7 connect under layout 1 reached %q, want the proxy", held.ID)
	}
	local, remote := accepted(t, acc)
	if _, ok := rawEntries(t, filepath.Join(cfg.PinPath, sockMapWeftOrigdst))[string(mustBytes(t, origDstKey(local, remote)))]; !ok {
		t.Fatal("layout 1 wrote no original destination")
	}
	ids1, links1 := pinnedIDs(t, cfg.PinPath), pinnedLinks(t, cfg.PinPath)
	if len(links1) != 9 {
		t.Fatalf("layout 1 pinned links %v", links1)
	}

	d, err := e.duringNew(cfg, "10.96.0.70:80", 600, 2500)
	if err != nil {
		t.Fatalf("New over layout 1: %v", err)
	}
	t.Cleanup(func() { d.Close() })

	ids2, links2 := pinnedIDs(t, cfg.PinPath), pinnedLinks(t, cfg.PinPath)
	t.Logf("map ids %v -> %v", ids1, ids2)
	if len(ids2) != len(ids1) {
		t.Errorf("pins %v after the migration, want the same names as %v (no temporary pin left)", ids2, ids1)
	}
	for name, id := range ids1 {
		if replacedMap := name == sockMapWeftSockstate; (ids2[name] == id) == replacedMap {
			t.Errorf("map %s: id %d -> %d; want only %s replaced", name, id, ids2[name], sockMapWeftSockstate)
		}
	}
	for name, l1 := range links1 {
		if l2 := links2[name]; l2.ID != l1.ID || l2.Prog == l1.Prog {
			t.Errorf("link %s: %+v -> %+v; want the same link with a new program", name, l1, l2)
		}
	}
	if v := pinnedVersion(t, cfg.PinPath); v != LayoutVersion {
		t.Errorf("pinned layout version %d after the migration, want %d", v, LayoutVersion)
	}
	inUse, err := attachedMapIDs(cfg.PinPath)
	if err != nil {
		t.Fatal(err)
	}
	if !inUse[ids2[sockMapWeftSockstate]] || inUse[ids1[sockMapWeftSockstate]] {
		t.Errorf("attached programs use maps %v; want the new socket storage %d, not the old %d",
			inUse, ids2[sockMapWeftSockstate], ids1[sockMapWeftSockstate])
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		m, err := ebpf.NewMapFromID(ids1[sockMapWeftSockstate])
		if err == nil {
			m.Close()
			return errors.New("the old socket storage map still exists")
		}
		return nil
	})

	// Desired state, counters.
	if ch := reconcile(t, d, state); ch != (Changes{}) {
		t.Errorf("Reconcile of layout 1's state after the migration: %+v, want no change", ch)
	}
	if got := counters(t, d); got.RedirectedL7 != 1 || got.BalancedL4 == 0 {
		t.Errorf("counters after the migration %+v: want layout 1's RedirectedL7 1 and the loop's BalancedL4", got)
	}

	// The held connection: still answered, its original destination still
	// resolvable (weft_origdst is adopted).
	if r := c.must(childCmd{Op: "ask"}); r.ID != "proxy" {
		t.Errorf("held L7 connection answered %q after the migration", r.ID)
	}
	od, err := OpenOrigDst(cfg.PinPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { od.Close() })
	orig, cgid, ok, err := od.Lookup(local, remote)
	if err != nil || !ok || orig != realSrv || cgid != e.wl.id {
		t.Errorf("original destination of the held connection: %v %d %t %v; want %v %d", orig, cgid, ok, err, realSrv, e.wl.id)
	}
	// Its socket storage is gone with the old map, so its close deletes
	// nothing: the record stays until LRU eviction (documented).
	c.must(childCmd{Op: "close"})
	time.Sleep(200 * time.Millisecond)
	if _, _, ok, _ := od.Lookup(local, remote); !ok {
		t.Error("the held connection's original destination was deleted at close; update the documentation")
	}

	// A new L7 connection gets storage in the new map: recorded, and
	// deleted at close.
	c2 := e.child(e.wl)
	c2.must(childCmd{Op: "hold", Addr: realSrv.String()})
	local2, remote2 := accepted(t, acc)
	if orig, _, ok, err := od.Lookup(local2, remote2); err != nil || !ok || orig != realSrv {
		t.Errorf("new L7 connection after the migration: %v %t %v", orig, ok, err)
	}
	c2.must(childCmd{Op: "close"})
	testutil.Eventually(t, 5*time.Second, func() error {
		if _, _, ok, err := od.Lookup(local2, remote2); ok || err != nil {
			return fmt.Errorf("entry still there (lookup error: %w)", err)
		}
		return nil
	})

	// The next start is a plain adoption.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d2.Close() })
	if ids3 := pinnedIDs(t, cfg.PinPath); fmt.Sprint(ids3) != fmt.Sprint(ids2) || len(d2.adoptedMaps) != len(pinnedMapNames(false)) {
		t.Errorf("restart after the migration: maps %v -> %v, adopted %v; want all adopted", ids2, ids3, d2.adoptedMaps)
	}
}

func mustBytes(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A migration that fails after some links were switched points them back
// at the old programs and removes what it pinned; a layout without a
// migration path is refused. Traffic flows throughout and the pins are
// left as they were; the migration then succeeds once the obstacle is gone.
func TestMigrateRollbackAndRefusal(t *testing.T) {
	e := newEnv(t)
	testutil.SkipOnOldKernel(t, "6.10", "sockmap BPF links")
	a := e.tcpServer("127.0.0.1:0", "a", false)
	cfg := e.config()
	state := State{
		Workloads: []Workload{{CgroupID: e.wl.id, ID: 1, MeshID: 1}},
		Services:  []Service{l4(71, "10.96.0.71", 80, TCP, Backend{a, 1})},
	}
	t.Cleanup(func() { _ = unpinAll(cfg.PinPath) })
	startLayout1(t, cfg, state)
	// An obstacle that New meets after switching the nine cgroup links: a
	// cgroup link pinned where the sk_msg link belongs.
	bogus := filepath.Join(cfg.PinPath, linksDir, sockProgWeftAccelMsg)
	if err := os.Link(filepath.Join(cfg.PinPath, linksDir, sockProgWeftConnect4), bogus); err != nil {
		t.Fatal(err)
	}
	ids1, links1 := pinnedIDs(t, cfg.PinPath), pinnedLinks(t, cfg.PinPath)
	unchanged := func(when string) {
		t.Helper()
		if ids := pinnedIDs(t, cfg.PinPath); fmt.Sprint(ids) != fmt.Sprint(ids1) {
			t.Errorf("%s: pinned maps %v, want %v", when, ids, ids1)
		}
		if links := pinnedLinks(t, cfg.PinPath); fmt.Sprint(links) != fmt.Sprint(links1) {
			t.Errorf("%s: links %v, want %v (same programs)", when, links, links1)
		}
		if v := pinnedVersion(t, cfg.PinPath); v != 1 {
			t.Errorf("%s: layout version %d, want 1", when, v)
		}
	}

	acfg := cfg
	acfg.Accelerate = true
	_, err := e.duringNew(acfg, "10.96.0.71:80", 300, 1500)
	if err == nil || !strings.Contains(err.Error(), "want a sockmap link") {
		t.Fatalf("New with a bogus sk_msg link pin: %v, want the link refused", err)
	}
	t.Logf("failed as expected: %v", err)
	unchanged("after the failed migration")

	// No migration path: refused, with the way out.
	saved := migrations
	migrations = map[uint32]migration{}
	_, err = New(cfg, testLogger(t))
	migrations = saved
	if !errors.Is(err, ErrLayoutMismatch) || !strings.Contains(err.Error(), "UnpinPath") {
		t.Errorf("New over layout 1 without its migration: %v, want ErrLayoutMismatch naming UnpinPath", err)
	}
	t.Logf("refused as expected: %v", err)
	unchanged("after the refusal")
	if r := e.child(e.wl).must(childCmd{Op: "tcp", Addr: "10.96.0.71:80", N: 20}); r.IDs["a"] != 20 {
		t.Errorf("layout 1 after the refusals: %v", r.IDs)
	}

	if err := os.Remove(bogus); err != nil {
		t.Fatal(err)
	}
	d, err := e.duringNew(acfg, "10.96.0.71:80", 300, 1500)
	if err != nil {
		t.Fatalf("New over layout 1 with acceleration: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	links2 := pinnedLinks(t, cfg.PinPath)
	for name, l1 := range links1 {
		if name == sockProgWeftAccelMsg {
			continue // the bogus one
		}
		if l2 := links2[name]; l2.ID != l1.ID || l2.Prog == l1.Prog {
			t.Errorf("link %s: %+v -> %+v; want the same link with a new program", name, l1, l2)
		}
	}
	if _, ok := links2[sockProgWeftAccelMsg]; !ok {
		t.Error("no sk_msg link after the migration")
	}
	if v := pinnedVersion(t, cfg.PinPath); v != LayoutVersion {
		t.Errorf("layout version %d after the migration", v)
	}
	if r := e.child(e.wl).must(childCmd{Op: "tcp", Addr: "10.96.0.71:80", N: 20}); r.IDs["a"] != 20 {
		t.Errorf("after the migration: %v", r.IDs)
	}
}

// withLayout3 makes this test binary a later build of layout 3 until the
// test ends: weft_workloads values grow from 16 to 24 bytes (a u64
// appended), and a test-only migration from layout 2 converts them
// (appending layout3Gen) and copies weft_origdst unchanged into a new map.
func withLayout3(t *testing.T) {
	t.Helper()
	const gen = 0x1f2e3d4c5b6a7988
	savedV, savedM, savedA := layoutVersion, migrations, adjustSpec
	t.Cleanup(func() { layoutVersion, migrations, adjustSpec = savedV, savedM, savedA })
	layoutVersion = 3
	adjustSpec = func(spec *ebpf.CollectionSpec) {
		ms := spec.Maps[sockMapWeftWorkloads]
		st, ok := btf.UnderlyingType(ms.Value).(*btf.Struct)
		if !ok {
			panic(fmt.Sprintf("weft_workloads value %T", ms.Value))
		}
		wide := btf.Copy(st).(*btf.Struct)
		wide.Name, wide.Size = "weft_workload_v3", 24
		wide.Members = append(wide.Members, btf.Member{
			Name: "generation", Offset: 128, Type: &btf.Int{Name: "__u64", Size: 8},
		})
		ms.Value, ms.ValueSize = wide, 24
	}
	spec, err := loadSock()
	if err != nil {
		t.Fatal(err)
	}
	migrations = map[uint32]migration{2: {
		from: 2,
		maps: map[string]mapMigration{
			sockMapWeftWorkloads: {
				old: specShape(spec.Maps[sockMapWeftWorkloads]),
				convert: func(k, v []byte) ([]byte, []byte, bool, error) {
					if len(v) != 16 {
						return nil, nil, false, fmt.Errorf("value of %d bytes", len(v))
					}
					return k, binary.NativeEndian.AppendUint64(slices.Clone(v), gen), true, nil
				},
			},
			sockMapWeftOrigdst: {
				old: specShape(spec.Maps[sockMapWeftOrigdst]),
				convert: func(k, v []byte) ([]byte, []byte, bool, error) {
					return k, v, true, nil
				},
			},
		},
	}}
}

// A test-only migration from the current layout to a pretend layout 3 that
// converts a desired-state map (a wider value) and copies a
// connection-state map: traffic flows throughout, the links are updated in
// place, the converted entries are all there, the held L7 connection's
// original destination is resolvable in the new map and deleted from it at
// close by the new programs.
func TestMigrateConverts(t *testing.T) {
	e := newEnv(t)
	a := e.tcpServer("127.0.0.1:0", "a", false)
	b := e.tcpServer("127.0.0.2:0", "b", false)
	realSrv := e.tcpServer("127.0.0.5:0", "real", false)
	proxy, acc := e.fakeProxy()
	cfg := e.config()
	cfg.ProxyAddr, cfg.ProxyCgroupID = proxy, e.proxy.id
	t.Cleanup(func() { _ = unpinAll(cfg.PinPath) })
	d1, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	reconcile(t, d1, State{
		Workloads: []Workload{
			{CgroupID: e.wl.id, ID: 1, MeshID: 1}, {CgroupID: e.other.id + 1000, ID: 7, MeshID: 2, DropAll: true},
		},
		Services: []Service{
			l4(72, "10.96.0.72", 80, TCP, Backend{a, 1}, Backend{b, 1}),
			{ID: 41, Addr: realSrv.Addr(), Port: realSrv.Port(), Proto: TCP, Mode: ModeL7},
		},
	})
	c := e.child(e.wl)
	c.must(childCmd{Op: "hold", Addr: realSrv.String()})
	local, remote := accepted(t, acc)
	od1, err := OpenOrigDst(cfg.PinPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { od1.Close() })
	wl1 := rawEntries(t, filepath.Join(cfg.PinPath, sockMapWeftWorkloads))
	ids1, links1 := pinnedIDs(t, cfg.PinPath), pinnedLinks(t, cfg.PinPath)
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}

	withLayout3(t)
	d2, err := e.duringNew(cfg, "10.96.0.72:80", 500, 2000)
	if err != nil {
		t.Fatalf("New migrating to layout 3: %v", err)
	}
	t.Cleanup(func() { d2.Close() })

	ids2, links2 := pinnedIDs(t, cfg.PinPath), pinnedLinks(t, cfg.PinPath)
	for name, id := range ids1 {
		replacedMap := name == sockMapWeftWorkloads || name == sockMapWeftOrigdst
		if (ids2[name] == id) == replacedMap {
			t.Errorf("map %s: id %d -> %d", name, id, ids2[name])
		}
	}
	if len(ids2) != len(ids1) {
		t.Errorf("pins %v, want %v's names", ids2, ids1)
	}
	for name, l1 := range links1 {
		if l2 := links2[name]; l2.ID != l1.ID || l2.Prog == l1.Prog {
			t.Errorf("link %s: %+v -> %+v; want the same link with a new program", name, l1, l2)
		}
	}
	if v := pinnedVersion(t, cfg.PinPath); v != 3 {
		t.Errorf("layout version %d, want 3", v)
	}
	wl2 := rawEntries(t, filepath.Join(cfg.PinPath, sockMapWeftWorkloads))
	if len(wl2) != len(wl1) || len(wl1) != 2 {
		t.Errorf("workloads: %d entries -> %d", len(wl1), len(wl2))
	}
	for k, v1 := range wl1 {
		if v2 := wl2[k]; len(v2) != 24 || !bytes.Equal(v2[:16], v1) || binary.NativeEndian.Uint64(v2[16:]) != 0x1f2e3d4c5b6a7988 {
			t.Errorf("workload %x: %x -> %x, want the old value and the generation", k, v1, v2)
		}
	}

	// The held connection's original destination, in the new map.
	od2, err := OpenOrigDst(cfg.PinPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { od2.Close() })
	if orig, cgid, ok, err := od2.Lookup(local, remote); err != nil || !ok || orig != realSrv || cgid != e.wl.id {
		t.Errorf("held connection in the converted origdst: %v %d %t %v", orig, cgid, ok, err)
	}
	if r := c.must(childCmd{Op: "ask"}); r.ID != "proxy" {
		t.Errorf("held connection answered %q", r.ID)
	}
	c.must(childCmd{Op: "close"})
	testutil.Eventually(t, 5*time.Second, func() error {
		if _, _, ok, err := od2.Lookup(local, remote); ok || err != nil {
			return fmt.Errorf("entry still in the new map (lookup error: %w)", err)
		}
		return nil
	})
	// A reader opened before the migration still holds the old map, which
	// no program writes any more: readers reopen after a restart.
	if _, _, ok, _ := od1.Lookup(local, remote); !ok {
		t.Error("the old reader's map lost the entry; it should be frozen")
	}

	// The next start of layout 3 adopts (BTF of the wider value included).
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
	d3, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("restart at layout 3: %v", err)
	}
	t.Cleanup(func() { d3.Close() })
	if ids3 := pinnedIDs(t, cfg.PinPath); fmt.Sprint(ids3) != fmt.Sprint(ids2) {
		t.Errorf("restart at layout 3: maps %v -> %v", ids2, ids3)
	}
}

// An interrupted migration is completed, not redone: a temporary pin that
// the attached programs use is the live map; one they do not use is a
// stale copy and is replaced.
func TestMigrateResumes(t *testing.T) {
	e := newEnv(t)
	a := e.tcpServer("127.0.0.1:0", "a", false)
	cfg := e.config()
	state := State{
		Workloads: []Workload{{CgroupID: e.wl.id, ID: 1, MeshID: 1}},
		Services:  []Service{l4(73, "10.96.0.73", 80, TCP, Backend{a, 1})},
	}
	t.Cleanup(func() { _ = unpinAll(cfg.PinPath) })
	startLayout1(t, cfg, state)
	spec, err := loadSock()
	if err != nil {
		t.Fatal(err)
	}
	tmp := tempPin(cfg.PinPath, sockMapWeftSockstate)
	canonical := filepath.Join(cfg.PinPath, sockMapWeftSockstate)

	// A crash before the switch left a copy that never went live.
	ms := spec.Maps[sockMapWeftSockstate].Copy()
	ms.Pinning = ebpf.PinNone
	stale, err := ebpf.NewMap(ms)
	if err != nil {
		t.Fatal(err)
	}
	staleID, _ := mapID(stale)
	if err := stale.Pin(tmp); err != nil {
		t.Fatal(err)
	}
	stale.Close()
	d, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New over a stale temporary pin: %v", err)
	}
	live := pinnedIDs(t, cfg.PinPath)[sockMapWeftSockstate]
	if live == staleID {
		t.Error("the stale copy was taken as the live map")
	}
	if _, err := os.Lstat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary pin left: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	// A crash after the switch, before the pins moved: the live map is at
	// the temporary pin, an old-shaped map at the canonical one, layout 1.
	if err := os.Rename(canonical, tmp); err != nil {
		t.Fatal(err)
	}
	spec1, err := ebpf.LoadCollectionSpec(layout1Object)
	if err != nil {
		t.Fatal(err)
	}
	ms1 := spec1.Maps[sockMapWeftSockstate].Copy()
	ms1.Pinning = ebpf.PinNone
	old, err := ebpf.NewMap(ms1)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Pin(canonical); err != nil {
		t.Fatal(err)
	}
	old.Close()
	setPinnedVersion(t, cfg.PinPath, 1)
	ids1 := pinnedIDs(t, cfg.PinPath)
	d, err = New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New resuming: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	ids2 := pinnedIDs(t, cfg.PinPath)
	if ids2[sockMapWeftSockstate] != live || len(ids2) != len(ids1)-1 {
		t.Errorf("after resuming: %v; want %s = the live %d and no temporary pin", ids2, sockMapWeftSockstate, live)
	}
	if v := pinnedVersion(t, cfg.PinPath); v != LayoutVersion {
		t.Errorf("layout version %d after resuming", v)
	}
	if r := e.child(e.wl).must(childCmd{Op: "tcp", Addr: "10.96.0.73:80", N: 20}); r.IDs["a"] != 20 {
		t.Errorf("after resuming: %v", r.IDs)
	}
}

// The pass after the switch copies what the old programs added and drops
// what they deleted, but never overrides what the new programs wrote.
func TestMigrateCatchUp(t *testing.T) {
	testutil.RequirePrivileged(t)
	ms := &ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 16}
	oldM, err := ebpf.NewMap(ms)
	if err != nil {
		t.Fatal(err)
	}
	defer oldM.Close()
	newM, err := ebpf.NewMap(ms)
	if err != nil {
		t.Fatal(err)
	}
	defer newM.Close()
	put := func(m *ebpf.Map, k, v uint32) {
		t.Helper()
		if err := m.Put(k, v); err != nil {
			t.Fatal(err)
		}
	}
	for k := uint32(1); k <= 3; k++ {
		put(oldM, k, 10*k)
	}
	r := &replaced{name: "test", old: oldM, new: newM, mm: mapMigration{
		convert: func(k, v []byte) ([]byte, []byte, bool, error) {
			n := binary.NativeEndian.Uint32(v)
			return k, binary.NativeEndian.AppendUint32(nil, n+1), true, nil
		},
	}}
	if r.copied, err = copyEntries(r, nil); err != nil {
		t.Fatal(err)
	}
	// Between the first pass and the switch: the old programs add 4 and 5
	// and delete 2 and 3; a new program (already switched) rewrites 3 and
	// writes 5.
	put(oldM, 4, 40)
	put(oldM, 5, 50)
	for _, k := range []uint32{2, 3} {
		if err := oldM.Delete(k); err != nil {
			t.Fatal(err)
		}
	}
	put(newM, 3, 99)
	put(newM, 5, 555)
	added, deleted, err := catchUp(r)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint32]uint32{}
	var k, v uint32
	it := newM.Iterate()
	for it.Next(&k, &v) {
		got[k] = v
	}
	want := map[uint32]uint32{1: 11, 3: 99, 4: 41, 5: 555}
	if added != 1 || deleted != 1 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("catch-up added %d deleted %d, new map %v; want 1, 1, %v", added, deleted, got, want)
	}
}

// A pinned map with the right sizes but another BTF layout is refused and
// left in place.
func TestAdoptRefusesBTFLayout(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	d := e.start(cfg)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.PinPath, sockMapWeftWorkloads)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	spec, err := loadSock()
	if err != nil {
		t.Fatal(err)
	}
	ms := spec.Maps[sockMapWeftWorkloads].Copy()
	ms.Pinning = ebpf.PinNone
	st := btf.Copy(btf.UnderlyingType(ms.Value)).(*btf.Struct)
	st.Members[0].Name, st.Members[1].Name = st.Members[1].Name, st.Members[0].Name // id <-> mesh_id
	ms.Value = st
	wrong, err := ebpf.NewMap(ms)
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	if err := wrong.Pin(path); err != nil {
		t.Fatal(err)
	}
	wrongID, _ := mapID(wrong)
	_, err = New(cfg, testLogger(t))
	if !errors.Is(err, ErrLayoutMismatch) || !strings.Contains(err.Error(), "BTF layout") {
		t.Fatalf("New over a map of another BTF layout: %v, want ErrLayoutMismatch", err)
	}
	t.Logf("refused: %v", err)
	if id := pinnedIDs(t, cfg.PinPath)[sockMapWeftWorkloads]; id != wrongID {
		t.Errorf("the refused map's pin now holds map %d, want %d", id, wrongID)
	}
}

// The registered migrations are valid against the compiled spec, and
// layout 1 (the committed object of that layout) differs from the current
// layout exactly where migrationFrom1 says.
func TestMigrationsValid(t *testing.T) {
	spec, err := loadSock()
	if err != nil {
		t.Fatal(err)
	}
	for from, mg := range migrations {
		if mg.from != from {
			t.Errorf("migration registered under %d says from %d", from, mg.from)
		}
		if err := mg.validate(spec); err != nil {
			t.Errorf("migration from %d: %v", from, err)
		}
	}
	spec1, err := ebpf.LoadCollectionSpec(layout1Object)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range pinnedMapNames(true) {
		ms, ms1 := spec.Maps[name], spec1.Maps[name]
		mm, listed := migrationFrom1.maps[name]
		switch {
		case ms1 == nil:
			if slices.Contains(pinnedMapNames(false), name) {
				t.Errorf("%s: not in layout 1 but pinned without acceleration", name)
			}
		case listed:
			if specShape(ms1) != mm.old {
				t.Errorf("%s: layout 1 shape %v, the migration expects %v", name, specShape(ms1), mm.old)
			}
		default:
			if specShape(ms1) != specShape(ms) {
				t.Errorf("%s: layout 1 shape %v, current %v, yet not migrated", name, specShape(ms1), specShape(ms))
			}
			for _, p := range [][2]btf.Type{{ms1.Key, ms.Key}, {ms1.Value, ms.Value}} {
				if p[0] != nil && btfLayout(p[0]) != btfLayout(p[1]) {
					t.Errorf("%s: layout 1 BTF %s, current %s, yet not migrated", name, btfLayout(p[0]), btfLayout(p[1]))
				}
			}
		}
	}
	t.Logf("weft_sock_state: layout 1 %s", btfLayout(spec1.Maps[sockMapWeftSockstate].Value))

	bad := []migration{
		{from: 1, maps: map[string]mapMigration{sockMapWeftAccel: {why: "x"}}},
		{from: 1, maps: map[string]mapMigration{sockMapWeftMetadata: {why: "x"}}},
		{from: 1, maps: map[string]mapMigration{sockMapWeftSockstate: {
			old:     mapShape{ebpf.SkStorage, 4, 104, 0, unix.BPF_F_NO_PREALLOC},
			convert: func(k, v []byte) ([]byte, []byte, bool, error) { return k, v, true, nil },
		}}},
		{from: 1, maps: map[string]mapMigration{sockMapWeftWorkloads: {}}},
		{from: 1, maps: map[string]mapMigration{"weft_nonesuch": {why: "x"}}},
		{from: LayoutVersion},
	}
	for i, mg := range bad {
		if err := mg.validate(spec); err == nil {
			t.Errorf("bad migration %d passed validation", i)
		}
	}
}
