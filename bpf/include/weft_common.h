/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * weft_common.h: the map keys and values that weft's BPF programs share with
 * the Go loader (agent/datapath, which gets these as Go types from bpf2go).
 *
 * Conventions, for every struct below:
 *   - Addresses are 16 bytes in network byte order. IPv4 is written as an
 *     IPv4-mapped IPv6 address (::ffff:a.b.c.d), whether the socket is
 *     AF_INET or a dual-stack AF_INET6 socket, so one key matches both.
 *   - Ports are in HOST byte order.
 *   - Padding is explicit (named _pad*) and always zero, so hash keys never
 *     hold uninitialised bytes.
 *
 * Changing any struct, map type or map size here changes the pinned layout:
 * bump WEFT_LAYOUT_VERSION (and LayoutVersion in agent/datapath) and
 * register a migration from the previous version in
 * agent/datapath/migrate_linux.go, or a restarted agent would refuse the
 * pinned maps. The loader adopts pinned maps of this version (sizes and BTF
 * layout checked), migrates those of a registered older version and refuses
 * any other. struct weft_meta and weft_metadata never change.
 */
#ifndef WEFT_COMMON_H
#define WEFT_COMMON_H

#define WEFT_LAYOUT_VERSION 2
#define WEFT_META_MAGIC 0x77656674 /* "weft" */

/* Map sizes (part of the layout). */
#define WEFT_MAX_WORKLOADS 4096
#define WEFT_MAX_SERVICES 16384
#define WEFT_MAX_BACKEND_SLOTS 262144
#define WEFT_MAX_EGRESS 16384
#define WEFT_MAX_REVNAT 65536
#define WEFT_MAX_ORIGDST 65536
#define WEFT_EVENTS_BYTES (256 * 1024)
/* sockops wakes the ring buffer's reader only once this much is waiting
 * (not part of the layout). Below it, records are submitted without a
 * wakeup and the reader collects them on its own schedule (ReadEvents polls):
 * a wakeup per record is an interrupt and a reader context switch per
 * connection. */
#define WEFT_EVENTS_WAKEUP_BYTES (WEFT_EVENTS_BYTES / 4)
#define WEFT_MAX_ACCEL 65536 /* weft_accel and weft_accel_rx */

/* At most this many slots per service: userspace expands weights into at
 * most WEFT_MAX_SLOTS slots (slot count proportional to weight). */
#define WEFT_MAX_SLOTS 256
/* At most this many distinct ports per egress prefix. */
#define WEFT_EGRESS_MAX_PORTS 16

/* IP protocol numbers, as in the service key. */
#define WEFT_PROTO_TCP 6
#define WEFT_PROTO_UDP 17

/* Service modes (weft_svc.mode), equal to datapath.ModeL4/ModeL7. */
#define WEFT_MODE_L4 1
#define WEFT_MODE_L7 2

/* Workload flags. */
#define WEFT_WL_DROP_ALL (1 << 0) /* mesh egressFilter DROP_ALL */

/* Configuration flags (weft_config.flags). */
#define WEFT_CFG_PROXY (1 << 0) /* proxy_addr/proxy_port are set */
#define WEFT_CFG_DNS (1 << 1)   /* dns_addr/dns_port are set */
#define WEFT_CFG_ACCEL (1 << 2) /* same-node sk_msg acceleration is on */

/* Egress entry flags. */
#define WEFT_EGRESS_ANY (1 << 0)     /* any port (own or inherited rule) */
#define WEFT_EGRESS_OWN_ANY (1 << 1) /* this prefix itself has a port-0 rule */

/* What a connect/sendmsg rewrite was (weft_revnat.kind, weft_sock_state.kind,
 * weft_conn_event.kind). */
enum weft_kind {
	WEFT_KIND_NONE = 0, /* meshed, not rewritten (telemetry only) */
	WEFT_KIND_L4 = 1,   /* balanced to a backend */
	WEFT_KIND_L7 = 2,   /* redirected to the node proxy */
	WEFT_KIND_DNS = 3,  /* redirected to the agent's resolver */
};

/* Same-node acceleration state of a connecting socket (weft_sock_state.accel). */
enum weft_accel_state {
	WEFT_ACCEL_NONE = 0,      /* not a candidate (acceleration off, or not TCP) */
	WEFT_ACCEL_CANDIDATE = 1, /* connect() saw it: sockops may insert it */
	WEFT_ACCEL_INSERTED = 2,  /* in weft_accel, nothing sent yet */
	WEFT_ACCEL_REDIRECT = 3,  /* its first message was redirected: keep redirecting */
	WEFT_ACCEL_PASS = 4,      /* its first message went through TCP: never redirect */
};

/* Indexes of the per-CPU counter array weft_counters. */
enum weft_counter {
	WEFT_C_REDIRECTED_L7 = 0,  /* connect rewritten to the proxy */
	WEFT_C_BALANCED_L4 = 1,    /* connect/sendmsg rewritten to a backend */
	WEFT_C_DENIED_EGRESS = 2,  /* DROP_ALL denied a destination (EPERM) */
	WEFT_C_NO_BACKEND = 3,     /* L4 service without backends (ECONNREFUSED) */
	WEFT_C_DNS_REDIRECTED = 4, /* port 53 rewritten to the agent resolver */
	WEFT_C_RINGBUF_FULL = 5,   /* bpf_ringbuf_reserve failed, event lost */
	WEFT_C_L7_NO_PROXY = 6,    /* L7 service but no proxy configured (ECONNREFUSED) */
	WEFT_C_PROXY_EXEMPT = 7,   /* proxy's own connect to a service, untouched */
	WEFT_C_EGRESS_ALLOWED = 8, /* DROP_ALL allowed by an egress rule */
	WEFT_C_REVNAT = 9,         /* recvmsg/getpeername answer rewritten back */
	WEFT_C_FAMILY_MISMATCH = 10, /* IPv4 socket, IPv6 target (EHOSTUNREACH) */
	WEFT_C_ORIGDST_FAILED = 11,  /* original-destination map update failed */
	WEFT_C_STORAGE_FAILED = 12,  /* socket storage could not be created */
	WEFT_C_EVENTS = 13,          /* telemetry records written */
	WEFT_C_UDP_STICKY = 14,      /* UDP datagram kept on its socket's backend */
	WEFT_C_ACCEL_INSERTED = 15,  /* socket inserted into weft_accel */
	WEFT_C_ACCEL_INSERT_FAILED = 16, /* weft_accel insertion failed (full, exists) */
	WEFT_C_ACCEL_REDIRECTED = 17,    /* sk_msg: message redirected to the peer */
	WEFT_C_ACCEL_PASSED = 18,        /* sk_msg: message left to TCP (no local peer) */
	WEFT_C_ACCEL_BYTES = 19,         /* sk_msg: bytes redirected */
	WEFT_C_ACCEL_RX_FAILED = 20,     /* weft_accel_rx update failed (bytes not reported) */
	WEFT_C_MAX = 32,             /* size of the array */
};

/* Load-time configuration, a read-only global (.rodata) set by the loader. */
struct weft_config {
	__u8 proxy_addr[16];
	__u8 dns_addr[16];
	__u64 proxy_cgroup_id; /* 0: none */
	__u64 telemetry_interval_ns; /* 0: report at close only */
	__u32 proxy_mark;            /* 0: none */
	__u16 proxy_port;
	__u16 dns_port;
	__u32 flags; /* WEFT_CFG_* */
	__u32 _pad;
};

/* weft_metadata[0]: identifies the pinned layout. */
struct weft_meta {
	__u32 magic;          /* WEFT_META_MAGIC */
	__u32 layout_version; /* WEFT_LAYOUT_VERSION of who created the maps */
};

/* weft_workloads: cgroup id (bpf_get_current_cgroup_id) -> workload. */
struct weft_workload {
	__u32 id;
	__u32 mesh_id;
	__u32 flags; /* WEFT_WL_* */
	__u32 _pad;
};

/* weft_services: {addr, port, proto} -> frontend. */
struct weft_svc_key {
	__u8 addr[16];
	__u16 port;
	__u8 proto; /* WEFT_PROTO_* */
	__u8 _pad;
};

struct weft_svc {
	__u32 id;    /* service id, the first half of the slot keys */
	__u32 count; /* slots 0..count-1 hold backends; 0: no backends. Written last. */
	__u8 mode;   /* WEFT_MODE_* */
	__u8 _pad[3];
};

/* weft_backends: {service id, slot} -> backend. */
struct weft_backend_key {
	__u32 service_id;
	__u32 slot;
};

struct weft_backend {
	__u8 addr[16];
	__u16 port;
	__u16 _pad;
};

/* weft_egress (LPM trie): {mesh id, addr} -> allowed ports. prefixlen counts
 * the 32 bits of mesh_id plus the address bits (an IPv4 /24 is 32+96+24). */
struct weft_egress_key {
	__u32 prefixlen;
	__u32 mesh_id; /* host order; always matched in full (prefixlen >= 32) */
	__u8 addr[16];
};

struct weft_egress {
	__u32 flags;  /* WEFT_EGRESS_* */
	__u16 nports; /* ports[0..nports): allowed ports */
	__u16 nown;   /* ports[0..nown) are this prefix's own rules; the rest are
			 inherited from shorter prefixes of the same mesh */
	__u16 ports[WEFT_EGRESS_MAX_PORTS];
};

/* weft_revnat (LRU): {socket cookie, address the socket really talks to} ->
 * address the application asked for. recvmsg and getpeername use it. */
struct weft_revnat_key {
	__u64 cookie;
	__u8 addr[16];
	__u16 port;
	__u16 _pad;
	__u32 _pad2;
};

struct weft_revnat {
	__u8 addr[16];
	__u16 port;
	__u8 kind; /* enum weft_kind */
	__u8 _pad;
	__u32 service_id;
};

/*
 * weft_origdst (LRU, pinned, read by the proxy): THE 4-tuple orientation.
 *
 * The key is the connection as the CLIENT (the redirected workload socket)
 * sees it after the redirect:
 *   src = the client's local address and port,
 *   dst = the proxy listener's address and port the client was rewritten to.
 * The proxy, holding the accepted connection, therefore builds the key as
 *   src = conn.RemoteAddr(), dst = conn.LocalAddr().
 * Written by sockops at ACTIVE_ESTABLISHED, deleted at the close transition.
 */
struct weft_origdst_key {
	__u8 src_addr[16];
	__u8 dst_addr[16];
	__u16 src_port;
	__u16 dst_port;
};

struct weft_origdst {
	__u8 addr[16]; /* the service address the client connected to */
	__u16 port;
	__u8 proto;
	__u8 _pad;
	__u32 service_id;
	__u64 cgroup_id; /* the client's cgroup id, at connect() */
};

/* weft_sockstate (SK_STORAGE): per-socket state of meshed workloads. */
struct weft_sock_state {
	__u8 orig_addr[16]; /* what the application connected to */
	__u8 dst_addr[16];  /* what it was rewritten to (= orig if not) */
	__u16 orig_port;
	__u16 dst_port;
	__u8 kind; /* enum weft_kind */
	__u8 proto;
	__u16 _pad;
	__u32 service_id;
	__u32 workload_id;
	__u64 cgroup_id;
	__u64 start_ns;       /* connect(), bpf_ktime_get_ns */
	__u64 last_report_ns; /* last periodic telemetry record */
	/* Unconnected UDP: the backend this socket sticks to. */
	__u32 sticky_service;
	__u32 sticky_slot;
	struct weft_backend sticky;
	__u32 _pad2;
	/* Same-node acceleration: bytes this socket sent by sk_msg redirect
	 * (TCP's bytes_acked does not see them). The bytes its peer redirected
	 * to it are in weft_accel_rx. */
	__u64 accel_sent;
	__u8 accel; /* enum weft_accel_state */
	__u8 _pad3[7];
};

/*
 * weft_accel (SOCKHASH) and weft_accel_rx (LRU): same-node acceleration.
 *
 * A socket is keyed by its connection AS IT SEES IT, in its network
 * namespace:
 *   src = the socket's own (local) address and port,
 *   dst = its peer's (remote) address and port,
 * so for a connecting socket the tuple is exactly weft_origdst_key's. The
 * peer socket of the same connection has the reversed key (src <-> dst) with
 * the same netns cookie; the sk_msg program redirects to that key. The netns
 * cookie is part of the key because a 4-tuple is unique only within one
 * namespace (every namespace has its own 127.0.0.1): without it a loopback
 * connection could be redirected into another pod's socket.
 *
 * weft_accel: key -> the socket (value: its cookie, as userspace reads it).
 * sockops inserts (BPF_NOEXIST) a meshed workload's connecting socket (which
 * connect() marked WEFT_ACCEL_CANDIDATE) at ACTIVE_ESTABLISHED, and an
 * accepted socket at
 * PASSIVE_ESTABLISHED only if its peer was inserted (its weft_accel_rx
 * record exists), in both cases only if both ends are this host's in this
 * namespace (both loopback, or local address == remote address). The
 * kernel removes a socket from the map when it closes.
 *
 * weft_accel_rx: an inserted connecting socket's key -> bytes its peer
 * redirected to it (the receiver's TCP bytes_received does not see them,
 * and neither sk_msg nor sockops may look a socket up in a SOCKHASH: both
 * lack bpf_sk_release). Created with 0 when the connecting socket is
 * inserted, added to by the peer's sk_msg program, read by telemetry and
 * deleted at the connecting socket's close.
 */
struct weft_sock_key {
	__u64 netns; /* bpf_get_netns_cookie */
	__u8 src_addr[16];
	__u8 dst_addr[16];
	__u16 src_port;
	__u16 dst_port;
	__u32 _pad;
};

/* weft_events (ring buffer): one TCP connection report. */
struct weft_conn_event {
	__u64 cookie;
	__u64 cgroup_id;
	__u64 bytes_sent;     /* bytes_acked + bytes sent by sk_msg redirect */
	__u64 bytes_received; /* bytes_received + bytes redirected to it */
	__u64 duration_ns;    /* since connect() */
	__u8 src_addr[16];    /* local end of the client socket */
	__u8 dst_addr[16];    /* remote end (backend or proxy) */
	__u8 orig_addr[16];   /* what the application connected to */
	__u16 src_port;
	__u16 dst_port;
	__u16 orig_port;
	__u8 closed;
	__u8 kind; /* enum weft_kind */
	__u32 workload_id;
	__u32 service_id;
	__u32 srtt_us; /* srtt_us >> 3 */
	__u32 retransmits;
	__u32 _pad;
};

#endif /* WEFT_COMMON_H */
