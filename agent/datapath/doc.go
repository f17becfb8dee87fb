// SPDX-License-Identifier: Apache-2.0

// Package datapath loads, attaches, pins and feeds weft's socket-level eBPF
// datapath (bpf/sock). It is the only package that touches its maps: the
// agent hands it a whole desired State and reads counters, telemetry and a
// text dump back; the node proxy opens the original-destination map through
// OpenOrigDst.
//
// # Programs
//
// One family, bpf/sock/sock.c, so that all programs share one set of maps
// without cross-object map passing. Each program is attached to
// Config.CgroupPath with a BPF link:
//
//	weft_connect4/6   cgroup/connect4,6     TCP and connected UDP
//	weft_sendmsg4/6   cgroup/sendmsg4,6     unconnected UDP, per datagram
//	weft_recvmsg4/6   cgroup/recvmsg4,6     UDP reply source back to the asked address
//	weft_getpeer4/6   cgroup/getpeername4,6 peer address back to the asked address
//	weft_sockops      sockops               original destination, close records,
//	                                        acceleration inserts
//	weft_accel_msg    sk_msg on weft_accel  same-node acceleration (Config.Accelerate)
//	weft_report       iter/bpf_sk_storage_map periodic telemetry; an iterator
//	                                        link on weft_sockstate (not pinned)
//	                                        that ReadEvents runs
//
// connect and sendmsg share one decision (in this order): sockets of the
// proxy (Config.ProxyCgroupID, or SO_MARK Config.ProxyMark) pass untouched;
// callers whose cgroup id (bpf_get_current_cgroup_id, the exact cgroup, not
// an ancestor) is not in weft_workloads pass untouched; port 53 (UDP and
// TCP) goes to Config.DNSAddr, even when a service is declared on port 53;
// a service in weft_services is decided L7 (rewrite to Config.ProxyAddr,
// recording the service address) BEFORE any load balancing, and only an L4
// service picks a backend slot; everything else is subject to the mesh's
// DROP_ALL egress filter. Refusals fail the call at once, in the kernel,
// with bpf_set_retval: ECONNREFUSED for an L4 service without backends and
// for an L7 service when no proxy is configured (like a closed port, so
// clients fail fast and retry elsewhere), EPERM for DROP_ALL (a policy
// refusal, distinct from "service down" and from network errors, as the
// Linux errno for "not permitted"), EHOSTUNREACH when an IPv4 socket would
// be rewritten to an IPv6 target. TCP picks a slot with
// bpf_get_prandom_u32() % count at each connect; UDP hashes the socket
// cookie and then sticks to that backend in socket storage for as long as
// the backend stays in its slot. A weight change thus affects new
// connections only.
//
// weft_test_decide is an XDP copy of the decision core for
// BPF_PROG_TEST_RUN table tests: the kernel (6.18) runs neither cgroup
// sock_addr nor sockops programs under test_run (ErrNotSupported), and a
// syscall program would be sleepable, which excludes the LPM trie. New
// never loads it.
//
// # Maps
//
// Layouts are defined once, in bpf/include/weft_common.h; bpf2go turns them
// into the sockWeft* Go types. Addresses are 16 bytes, IPv4 as IPv4-mapped
// IPv6; ports are host order.
//
//	weft_metadata  ARRAY[1]        u32 -> {magic, layout version}         written by New (once, at creation)
//	weft_workloads HASH            cgroup id -> {id, mesh id, flags}      Reconcile
//	weft_services  HASH            {addr, port, proto} -> {service id,
//	                                 slot count, mode}                    Reconcile
//	weft_backends  HASH            {service id, slot} -> {addr, port}     Reconcile
//	weft_egress    LPM_TRIE        {mesh id, addr} -> {flags, ports}      Reconcile
//	weft_revnat    LRU_HASH        {socket cookie, real peer} ->
//	                                 {asked addr, port, kind, service}    connect (UDP)/sendmsg; LRU eviction
//	weft_origdst   LRU_HASH        4-tuple -> {service addr, port,
//	                                 service id, client cgroup id}        sockops; read by the proxy
//	weft_sockstate SK_STORAGE      socket -> connect-time state           connect/sendmsg; sockops, getpeername
//	weft_counters  PERCPU_ARRAY[32] counter index -> u64                  every program; Counters sums them
//	weft_events    RINGBUF 256 KiB connection records                     sockops; ReadEvents
//	weft_accel     SOCKHASH 64Ki   {netns, 4-tuple} -> socket             sockops; Config.Accelerate only
//	weft_accel_rx  LRU_HASH 64Ki   {netns, 4-tuple} -> bytes redirected
//	                                 to that connecting socket            sk_msg; Config.Accelerate only
//
// Weights are expanded into slots by userspace: divided by their greatest
// common divisor and, above MaxSlots, scaled down to MaxSlots slots with at
// least one per backend. Snapshot reconstructs a backend's weight as its
// slot count. An egress prefix entry carries the ports of the shorter
// prefixes of the same mesh that contain it, because an LPM lookup sees
// only the longest match.
//
// # Reverse translation
//
// getpeername of a rewritten TCP socket answers the address the application
// connected to from the socket's storage (connect records the asked and the
// rewritten address there for telemetry anyway), so a TCP connect writes no
// weft_revnat entry and its close deletes none: a hash insert at connect
// and a delete at close per connection. weft_revnat serves UDP (recvmsg
// sources and getpeername of connected UDP sockets), a TCP socket whose
// storage could not be created (StorageFailed), and sockets connected
// before an upgrade whose storage the new programs cannot see (Layout
// changes); its entries leave by LRU eviction.
//
// # The 4-tuple orientation
//
// weft_origdst is keyed by the connection as the CLIENT sees it after the
// redirect: src = the client's address and port, dst = the proxy listener's.
// sockops writes it at BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB (before the
// client's final ACK, so before the proxy can accept) and deletes it at the
// transition to TCP_CLOSE. The proxy, holding the accepted connection,
// calls Lookup(conn.LocalAddr(), conn.RemoteAddr()), which builds
// src = remote, dst = local. TestLayout checks the bytes.
//
// # Telemetry
//
// For TCP connections that meshed workloads open (the client side),
// sockops emits a record to weft_events at the close transition, and
// weft_report one for each open connection every Config.TelemetryInterval:
// bytes each way (bytes_acked and bytes_received, which count sequence
// space, so the SYN and FIN add up to one byte each), srtt_us>>3,
// total_retrans, the duration since connect, the 4-tuple, and the workload
// and service ids recorded at connect. A full ring buffer loses records and counts them (RingbufFull).
// Records are submitted without waking the reader (a wakeup per record is
// an interrupt and a context switch of the agent per connection, which was
// most of L4's cost per new connection); ReadEvents polls every 100 ms, and
// sockops wakes it early once a quarter of the ring buffer waits
// (WEFT_EVENTS_WAKEUP_BYTES), long before it could fill.
//
// Periodic records used to come from BPF_SOCK_OPS_RTT_CB, a program run on
// every ACK of every meshed connection (two per short connection, and a
// cost per ACK on bulk transfers). weft_report instead walks weft_sockstate
// (every socket with storage, in every network namespace) when ReadEvents
// runs it, every half interval: an open connection is reported every one
// to one and a half intervals, idle or not, and nothing runs per packet.
// It holds no socket lock; sockops clears the socket's proto before it
// reserves the close record and weft_report checks it after reserving its
// own, so the ring buffer's lock keeps a periodic record from following
// the close record. No periodic records are written while no ReadEvents
// runs.
//
// # Lifecycle and pinning
//
// New validates the Config (every problem at once), loads the objects,
// adopts the maps pinned under Config.PinPath (a bpffs directory) or
// creates them, and attaches each program through a link pinned under
// PinPath/links. On adoption it checks the stored layout version, then each
// map's type, key and value size, max entries, flags and the BTF layout of
// key and value (member names, offsets and sizes, recursively; typedef and
// struct names aside); a pinned layout of an older version is migrated (see
// Layout changes), any other difference is an error wrapping
// ErrLayoutMismatch, never a silent recreate. Adopted links must be cgroup
// links of the right attach type on the same cgroup; their program is
// replaced in place (BPF_LINK_UPDATE), so there is no moment without a
// program. On failure New points the links it updated back at their
// previous programs and removes only the pins it created.
//
// Close releases the process's file descriptors and DETACHES NOTHING: the
// pinned links keep the programs attached and the pinned maps keep the last
// state, so connections keep being balanced, redirected and filtered while
// no agent runs (static stability). A restarted agent calls New on the same
// PinPath and then Reconcile, which changes only what differs. Unpin
// removes the links (detaching the programs) and the map pins, for
// uninstalling and tests.
//
// UnpinPath does the same without a Datapath: it is the documented way
// past a refused layout (a downgrade), at the cost of detaching the
// programs and dropping all connection state.
//
// Reconcile writes by difference and never flushes; the write order keeps
// concurrent connects safe (slots before the frontend's count, deletions in
// reverse). Counters, ReadEvents, Snapshot and Dump read.
//
// # Layout changes
//
// Changing a struct, map type or size of bpf/include/weft_common.h bumps
// WEFT_LAYOUT_VERSION and LayoutVersion, and registers a migration from
// the previous version in migrate_linux.go (migrations, keyed by the
// version it starts from). weft_metadata's own layout is frozen. A
// migration lists the maps whose shape changed, each with its old shape
// and either a converter of old key and value bytes into new ones, or none
// (the new map starts empty, for state userspace cannot copy). Maps it
// does not list must match the new build exactly and are adopted, as are
// their entries; maps the new layout adds are created. New then:
//
//  1. creates each replaced map's successor and copies the converted
//     entries while the old programs still run (first pass);
//  2. loads the new programs against the adopted and new maps and pins
//     the new maps at temporary names, <name>_v<layout>;
//  3. switches every pinned link to its new program with BPF_LINK_UPDATE
//     (link ids unchanged; each hook changes atomically and is never
//     detached; a failure points the switched links back at their old
//     programs and removes the new pins, leaving the old datapath as it
//     was);
//  4. copies the entries the old programs added between the first pass and
//     the switch, and deletes the copies of the ones they deleted, never
//     overriding what a new program wrote since (catch-up);
//  5. renames each temporary pin over the canonical one (rename(2) on
//     bpffs replaces atomically, so the name never disappears; the old
//     map's last reference then goes with the old programs and it is
//     freed), and stamps the new version last.
//
// An agent that dies between 3 and 5 leaves temporary pins that the
// attached programs use: the next New takes them as the new maps (adding
// what old programs, if some link was still old, wrote since) and
// completes 5; temporary pins no program uses are stale copies from before
// 3 and are made again. A pinned version that is neither current nor
// registered (a newer build's, after a downgrade) is refused with
// ErrLayoutMismatch, and the message says how to start over (UnpinPath).
//
// What cannot be copied: socket maps (weft_accel) are bound to their
// sockmap link and hold live sockets, so no migration may replace them;
// socket storage (weft_sockstate) and the ring buffer start empty. Socket
// storage lives on each socket and is reachable only from programs: the
// sockets open at the switch keep their storage in the old map until it is
// freed, and the new programs find none for them, so their close emits no
// record, and their weft_origdst and weft_revnat entries are not deleted
// at close but left to LRU eviction; their redirects, reverse translation
// and original destination (in the adopted maps) keep working. A connection
// that connect()s under the old programs and reaches ESTABLISHED under the
// new ones (the handshake straddling the switch) gets no original
// destination either. Readers of a replaced map (OpenOrigDst) hold the old
// one, which no program writes any more, and must reopen it.
//
// Layout 1 (before acceleration) migrates to 2 by adopting every map but
// weft_sockstate (104 to 120 bytes: accel_sent, accel), which starts empty,
// and creating the acceleration maps; TestMigrateFromLayout1 runs it
// against layout 1's committed object (testdata/sock_layout1_bpfel.o).
//
// # Same-node acceleration
//
// Config.Accelerate (off by default; Linux 6.10 for sockmap links) lets
// TCP connections of meshed workloads skip the TCP/IP stack when both ends
// are on this host. It sets WEFT_CFG_ACCEL in the programs' read-only
// config; without it no path touches the acceleration maps, which are then
// one-entry placeholders, neither pinned nor adopted, and weft_accel_msg is
// loaded but not attached.
//
// Which sockets: connect() marks a meshed workload's TCP socket a
// candidate (after the unchanged policy decision). sockops inserts it into
// weft_accel at ACTIVE_ESTABLISHED, before its final ACK, and creates its
// weft_accel_rx record; at PASSIVE_ESTABLISHED it inserts the accepted
// socket only if its peer's weft_accel_rx record exists, so only
// connections we see from both ends, in one cgroup subtree. Both ends must
// be this host's in this namespace: both loopback, or local address ==
// remote address. Insertions use BPF_NOEXIST; failures are counted and the
// connection simply stays on TCP. The kernel removes a socket from a
// sockhash when it closes (TestAccelEcho checks the map empties); sockops
// deletes the rx record at the close transition.
//
// Keys: {netns cookie, 4-tuple as the socket itself sees it} (src = the
// socket's own end; for a connecting socket the tuple is weft_origdst's).
// The peer's key is the same tuple reversed in the same namespace. The
// netns cookie keeps two namespaces' identical loopback tuples apart, so
// connections across namespaces (pod to pod, pod to a node proxy) are never
// accelerated: a 4-tuple alone does not name one connection node-wide.
//
// weft_accel_msg runs on every send of an inserted socket and calls
// bpf_msg_redirect_hash(peer key, BPF_F_INGRESS); without the peer in the
// map the send passes to TCP. A connecting socket decides its path once,
// at its first send, and keeps it (storage state WEFT_ACCEL_REDIRECT or
// _PASS): redirected bytes would otherwise overtake earlier bytes still in
// the peer's TCP receive queue. Accepted sockets redirect from their first
// byte (their peer was inserted first). Counters: AccelInserted,
// AccelInsertFailed, AccelRedirected, AccelPassed, AccelBytes,
// AccelRxFailed.
//
// Telemetry: redirected bytes bypass bytes_acked and bytes_received, so
// the sk_msg program counts them: a connecting socket's sends into its
// socket storage (accel_sent), an accepted socket's sends into its peer's
// weft_accel_rx record (neither sk_msg nor sockops can look a socket up in
// a sockhash: both lack bpf_sk_release, so the peer's storage is out of
// reach). Records add both, periodic ones too (weft_report finds the rx
// record by the netns cookie of the socket's namespace).
//
// Attach and restart: weft_accel_msg is attached to weft_accel with a
// BPF_LINK_TYPE_SOCKMAP link (link.AttachRawLink, AttachSkMsgVerdict)
// pinned at links/weft_accel_msg. New adopts it like the cgroup links: it
// must be a sockmap link of the sk_msg verdict type on the adopted
// weft_accel (map id), and gets the new program by BPF_LINK_UPDATE.
// Sockets already in the map keep the program they were inserted under
// until they close. New without Accelerate over an earlier datapath's
// acceleration pins leaves them (and warns): accelerated connections keep
// their path until they close, new ones are not inserted. Unpin removes
// them; dropping a sockhash under live connections would discard the bytes
// queued in their sk_msg ingress queues.
//
// Limits, why it is off by default (datapath-notes 6.7): bytes
// redirected into a socket's sk_msg ingress queue are read only by
// recvmsg; a receiver that reads with splice(2) (Go's io.Copy between TCP
// connections, splice-based proxies) never sees them, and they are dropped
// at close (TestAccelSplice). The proxy's own sockets are therefore never
// candidates (its upgraded-connection copy splices). Redirected bytes are
// charged to the receiver's socket memory but not limited by its TCP
// window: TestAccelNoReader queues about 190 MiB in half a second into a
// peer that never reads (TCP stops near 4 MiB), bounded only by the global
// TCP memory limits. TestAccelThroughput logs the gain on the machine at
// hand.
package datapath
