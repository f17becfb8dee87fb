//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * bpf/sock: weft's socket-level datapath, one family so that every program
 * shares one set of maps.
 *
 *   cgroup/connect4,6   TCP and connected UDP: DNS redirect, then the single
 *                       L7-or-L4 decision (L7 first: redirect to the node
 *                       proxy keeping the service address; L4: pick a
 *                       backend slot), then DROP_ALL egress.
 *   cgroup/sendmsg4,6   unconnected UDP: the same decision per datagram; a
 *                       socket sticks to one backend.
 *   cgroup/recvmsg4,6   UDP replies appear to come from the address the
 *   cgroup/getpeername4,6  application asked for (reverse translation).
 *   sockops             original destination of L7 connections by 4-tuple,
 *                       per-connection telemetry to a ring buffer, and (with
 *                       WEFT_CFG_ACCEL) same-node sockets into weft_accel.
 *   sk_msg              weft_accel_msg, attached to weft_accel: redirects a
 *                       socket's sends into its same-node peer's receive
 *                       queue (optional acceleration, off by default).
 *   xdp                 weft_test_decide runs the decision core on a crafted
 *                       request with BPF_PROG_TEST_RUN (tests only, never
 *                       loaded by the agent).
 *
 * Layouts, conventions and the 4-tuple orientation: ../include/weft_common.h.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "weft_common.h"

#define AF_INET 2
#define AF_INET6 10
#define EPERM 1
#define ECONNREFUSED 111
#define EHOSTUNREACH 113

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Keep types that no map or program names in BTF, for bpf2go -type. */
const struct weft_conn_event *unused_conn_event __attribute__((unused));
const enum weft_counter *unused_counter __attribute__((unused));
const enum weft_kind *unused_kind __attribute__((unused));
const enum weft_accel_state *unused_accel_state __attribute__((unused));

/* Set by the loader before load (spec.Variables). */
volatile const struct weft_config weft_cfg = {};

#define PIN __uint(pinning, LIBBPF_PIN_BY_NAME)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct weft_meta);
	PIN;
} weft_metadata SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WEFT_MAX_WORKLOADS);
	__type(key, __u64);
	__type(value, struct weft_workload);
	PIN;
} weft_workloads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WEFT_MAX_SERVICES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct weft_svc_key);
	__type(value, struct weft_svc);
	PIN;
} weft_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WEFT_MAX_BACKEND_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct weft_backend_key);
	__type(value, struct weft_backend);
	PIN;
} weft_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, WEFT_MAX_EGRESS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct weft_egress_key);
	__type(value, struct weft_egress);
	PIN;
} weft_egress SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, WEFT_MAX_REVNAT);
	__type(key, struct weft_revnat_key);
	__type(value, struct weft_revnat);
	PIN;
} weft_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, WEFT_MAX_ORIGDST);
	__type(key, struct weft_origdst_key);
	__type(value, struct weft_origdst);
	PIN;
} weft_origdst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct weft_sock_state);
	PIN;
} weft_sockstate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WEFT_C_MAX);
	__type(key, __u32);
	__type(value, __u64);
	PIN;
} weft_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, WEFT_EVENTS_BYTES);
	PIN;
} weft_events SEC(".maps");

/* Same-node acceleration (weft_common.h). The loader creates and pins these
 * only with Config.Accelerate; otherwise they are one-entry placeholders that
 * no code path touches (WEFT_CFG_ACCEL is clear). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, WEFT_MAX_ACCEL);
	__type(key, struct weft_sock_key);
	__type(value, __u64);
	PIN;
} weft_accel SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, WEFT_MAX_ACCEL);
	__type(key, struct weft_sock_key);
	__type(value, __u64);
	PIN;
} weft_accel_rx SEC(".maps");

/* ------------------------------------------------------------------------ */

static __always_inline void count_n(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&weft_counters, &idx);

	if (v)
		__sync_fetch_and_add(v, n);
}

static __always_inline void count(__u32 idx)
{
	count_n(idx, 1);
}

/* Addresses are handled as four network-order words; see weft_common.h. */
static __always_inline void addr_v4(__u32 *w, __u32 ip4)
{
	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0x0000ffff);
	w[3] = ip4;
}

static __always_inline bool addr_is_v4(const __u32 *w)
{
	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

static __always_inline void addr_copy(__u32 *dst, const __u32 *src)
{
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
}

static __always_inline bool addr_eq(const __u32 *a, const __u32 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

/* Addresses in weft_cfg must be read through volatile: the compiler would
 * otherwise fold them to the zero initialiser. */
static __always_inline void cfg_addr(__u32 *dst, const volatile __u8 *src)
{
	const volatile __u32 *w = (const volatile __u32 *)src;

	dst[0] = w[0];
	dst[1] = w[1];
	dst[2] = w[2];
	dst[3] = w[3];
}

/* A socket's destination and who asks for it. */
struct wreq {
	__u32 addr[4];
	__u64 cgroup_id;
	__u64 cookie;
	__u32 mark;
	__u16 port;
	__u8 proto;
	__u8 sendmsg; /* an unconnected UDP datagram, not a connect */
};

enum wverdict {
	V_PASS = 0,    /* leave the address alone */
	V_REWRITE = 1, /* rewrite to addr:port */
	V_DENY = 2,    /* fail the call with err */
	V_BALANCE = 3, /* L4 service: pick a backend (balance()) */
};

struct wdecision {
	__u32 addr[4];
	__u32 verdict;
	__s32 err;
	__u32 service_id;
	__u32 workload_id;
	__u32 slots; /* V_BALANCE: the frontend's slot count */
	__u16 port;
	__u8 kind;
	__u8 meshed;
};

static __always_inline void deny(struct wdecision *d, int err, __u32 counter)
{
	d->verdict = V_DENY;
	d->err = -err;
	count(counter);
}

static __always_inline void rewrite(struct wdecision *d, const __u32 *addr, __u16 port, __u8 kind)
{
	d->verdict = V_REWRITE;
	addr_copy(d->addr, addr);
	d->port = port;
	d->kind = kind;
}

static __always_inline bool egress_allowed(__u32 mesh_id, const struct wreq *r)
{
	struct weft_egress_key k = {
		.prefixlen = 32 + 128,
		.mesh_id = mesh_id,
	};
	struct weft_egress *e;

	addr_copy((__u32 *)k.addr, r->addr);
	e = bpf_map_lookup_elem(&weft_egress, &k);
	if (!e)
		return false;
	if (e->flags & WEFT_EGRESS_ANY)
		return true;
#pragma unroll
	for (int i = 0; i < WEFT_EGRESS_MAX_PORTS; i++) {
		if (i >= e->nports)
			break;
		if (e->ports[i] == r->port)
			return true;
	}
	return false;
}

/*
 * decide is the single decision point for connect and sendmsg. The order is
 * the design (datapath-notes 6.1, 7.1): the proxy is exempt; unmeshed
 * sockets pass; DNS goes to the agent; a service decides L7 (proxy, keeping
 * the service address) BEFORE any load balancing; only then L4; anything
 * else is subject to the mesh's egress filter.
 */
static __always_inline void decide(const struct wreq *r, struct wdecision *d)
{
	struct weft_svc_key sk = {};
	struct weft_workload *wl;
	struct weft_svc *svc;
	bool exempt;

	d->verdict = V_PASS;
	if (r->proto != WEFT_PROTO_TCP && r->proto != WEFT_PROTO_UDP)
		return;

	addr_copy((__u32 *)sk.addr, r->addr);
	sk.port = r->port;
	sk.proto = r->proto;

	exempt = (weft_cfg.proxy_cgroup_id && r->cgroup_id == weft_cfg.proxy_cgroup_id) ||
		 (weft_cfg.proxy_mark && r->mark == weft_cfg.proxy_mark);
	if (exempt) {
		if (bpf_map_lookup_elem(&weft_services, &sk))
			count(WEFT_C_PROXY_EXEMPT);
		return;
	}

	wl = bpf_map_lookup_elem(&weft_workloads, &r->cgroup_id);
	if (!wl)
		return;
	d->meshed = 1;
	d->workload_id = wl->id;

	if (weft_cfg.flags & WEFT_CFG_DNS) {
		__u32 dns[4];

		cfg_addr(dns, weft_cfg.dns_addr);
		if (r->port == weft_cfg.dns_port && addr_eq(r->addr, dns))
			return; /* already to the resolver */
		if (r->port == 53) {
			rewrite(d, dns, weft_cfg.dns_port, WEFT_KIND_DNS);
			count(WEFT_C_DNS_REDIRECTED);
			return;
		}
	}

	svc = bpf_map_lookup_elem(&weft_services, &sk);
	if (svc) {
		d->service_id = svc->id;
		if (svc->mode == WEFT_MODE_L7 && r->proto == WEFT_PROTO_TCP) {
			if (!(weft_cfg.flags & WEFT_CFG_PROXY)) {
				deny(d, ECONNREFUSED, WEFT_C_L7_NO_PROXY);
				return;
			}
			__u32 proxy[4];

			cfg_addr(proxy, weft_cfg.proxy_addr);
			rewrite(d, proxy, weft_cfg.proxy_port, WEFT_KIND_L7);
			count(WEFT_C_REDIRECTED_L7);
			return;
		}
		d->slots = svc->count;
		if (d->slots == 0 || d->slots > WEFT_MAX_SLOTS) {
			deny(d, ECONNREFUSED, WEFT_C_NO_BACKEND);
			return;
		}
		d->verdict = V_BALANCE;
		return;
	}

	if (wl->flags & WEFT_WL_DROP_ALL) {
		if (egress_allowed(wl->mesh_id, r)) {
			count(WEFT_C_EGRESS_ALLOWED);
			return;
		}
		/* EPERM: a policy refusal, told apart from ECONNREFUSED (no
		 * backend) and from network errors. */
		deny(d, EPERM, WEFT_C_DENIED_EGRESS);
	}
}

/* fmix64 of MurmurHash3: spreads sequential socket cookies. */
static __always_inline __u64 mix64(__u64 k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return k;
}

/*
 * balance picks a backend slot of an L4 service: TCP picks at random per
 * connect; UDP hashes the socket cookie and then sticks to that backend
 * (st, when the socket has storage) for as long as the backend stays in its
 * slot, so one socket talks to one backend. A slot that vanished under a
 * concurrent shrink falls back to slot 0.
 */
static __always_inline void balance(const struct wreq *r, struct wdecision *d,
				    struct weft_sock_state *st)
{
	struct weft_backend_key bk = { .service_id = d->service_id };
	struct weft_backend *be;
	__u32 slots = d->slots;

	if (slots == 0 || slots > WEFT_MAX_SLOTS) {
		deny(d, ECONNREFUSED, WEFT_C_NO_BACKEND);
		return;
	}
	if (r->proto == WEFT_PROTO_UDP) {
		if (st && st->sticky_service == d->service_id && st->sticky_slot < slots) {
			bk.slot = st->sticky_slot;
			be = bpf_map_lookup_elem(&weft_backends, &bk);
			if (be && addr_eq((const __u32 *)be->addr, (const __u32 *)st->sticky.addr) &&
			    be->port == st->sticky.port) {
				count(WEFT_C_UDP_STICKY);
				goto found;
			}
		}
		bk.slot = (__u32)(mix64(r->cookie) % slots);
	} else {
		bk.slot = bpf_get_prandom_u32() % slots;
	}
	be = bpf_map_lookup_elem(&weft_backends, &bk);
	if (!be) {
		bk.slot = 0;
		be = bpf_map_lookup_elem(&weft_backends, &bk);
	}
	if (!be) {
		deny(d, ECONNREFUSED, WEFT_C_NO_BACKEND);
		return;
	}
	if (st && r->proto == WEFT_PROTO_UDP) {
		st->sticky_service = d->service_id;
		st->sticky_slot = bk.slot;
		__builtin_memcpy(&st->sticky, be, sizeof(st->sticky));
	}
found:
	rewrite(d, (const __u32 *)be->addr, be->port, WEFT_KIND_L4);
	count(WEFT_C_BALANCED_L4);
}

enum whook {
	HOOK_CONNECT4,
	HOOK_CONNECT6,
	HOOK_SENDMSG4,
	HOOK_SENDMSG6,
};

/* out handles connect and sendmsg for both families. */
static __always_inline int out(struct bpf_sock_addr *ctx, enum whook hook)
{
	bool v4 = hook == HOOK_CONNECT4 || hook == HOOK_SENDMSG4;
	bool connect = hook == HOOK_CONNECT4 || hook == HOOK_CONNECT6;
	struct weft_sock_state *st = NULL;
	struct wdecision d = {};
	struct wreq r = {};
	struct bpf_sock *sk;

	sk = ctx->sk;
	if (!sk)
		return 1;
	if (v4) {
		addr_v4(r.addr, ctx->user_ip4);
	} else {
		r.addr[0] = ctx->user_ip6[0];
		r.addr[1] = ctx->user_ip6[1];
		r.addr[2] = ctx->user_ip6[2];
		r.addr[3] = ctx->user_ip6[3];
	}
	r.port = bpf_ntohs((__u16)ctx->user_port);
	r.proto = (__u8)ctx->protocol;
	r.sendmsg = !connect;
	r.cgroup_id = bpf_get_current_cgroup_id();
	r.mark = sk->mark;
	r.cookie = bpf_get_socket_cookie(ctx);

	decide(&r, &d);
	/* Only meshed workloads' sockets: not the proxy's own (its upstream
	 * copy of upgraded connections reads with splice(2), which does not
	 * see redirected bytes; see weft_accel_msg). */
	if (!d.meshed)
		return 1;

	/* Socket storage: TCP for the original destination and telemetry,
	 * UDP for the sticky backend. */
	st = bpf_sk_storage_get(&weft_sockstate, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		count(WEFT_C_STORAGE_FAILED);

	if (d.verdict == V_BALANCE)
		balance(&r, &d, st);

	if (d.verdict == V_REWRITE && v4 && !addr_is_v4(d.addr))
		deny(&d, EHOSTUNREACH, WEFT_C_FAMILY_MISMATCH);

	if (d.verdict == V_DENY) {
		bpf_set_retval(d.err);
		return 0;
	}
	if (d.verdict != V_REWRITE) {
		d.kind = WEFT_KIND_NONE;
		addr_copy(d.addr, r.addr);
		d.port = r.port;
	}

	/* A connected TCP socket's reverse translation is its storage
	 * (written below; back() reads it): no weft_revnat entry to write at
	 * connect and delete at close. UDP (recvmsg) and a TCP socket without
	 * storage use weft_revnat. */
	if (d.verdict == V_REWRITE && (!st || !connect || r.proto != WEFT_PROTO_TCP)) {
		struct weft_revnat_key rk = { .cookie = r.cookie, .port = d.port };
		struct weft_revnat rv = { .port = r.port, .kind = d.kind, .service_id = d.service_id };
		struct weft_revnat *old;

		addr_copy((__u32 *)rk.addr, d.addr);
		addr_copy((__u32 *)rv.addr, r.addr);
		/* A UDP socket sends many datagrams: write only on change. */
		old = bpf_map_lookup_elem(&weft_revnat, &rk);
		if (!old || !addr_eq((const __u32 *)old->addr, r.addr) || old->port != rv.port ||
		    old->service_id != rv.service_id || old->kind != rv.kind)
			bpf_map_update_elem(&weft_revnat, &rk, &rv, BPF_ANY);
	}

	if (d.verdict == V_REWRITE) {

		if (v4) {
			ctx->user_ip4 = d.addr[3];
		} else {
			ctx->user_ip6[0] = d.addr[0];
			ctx->user_ip6[1] = d.addr[1];
			ctx->user_ip6[2] = d.addr[2];
			ctx->user_ip6[3] = d.addr[3];
		}
		ctx->user_port = bpf_htons(d.port);
	}

	if (st && connect && r.proto == WEFT_PROTO_TCP) {
		addr_copy((__u32 *)st->orig_addr, r.addr);
		addr_copy((__u32 *)st->dst_addr, d.addr);
		st->orig_port = r.port;
		st->dst_port = d.port;
		st->kind = d.kind;
		st->proto = r.proto;
		st->service_id = d.service_id;
		st->workload_id = d.workload_id;
		st->cgroup_id = r.cgroup_id;
		st->start_ns = bpf_ktime_get_ns();
		st->last_report_ns = st->start_ns;
		st->accel_sent = 0;
		st->accel = (weft_cfg.flags & WEFT_CFG_ACCEL) ? WEFT_ACCEL_CANDIDATE : WEFT_ACCEL_NONE;
	}
	return 1;
}

SEC("cgroup/connect4")
int weft_connect4(struct bpf_sock_addr *ctx)
{
	return out(ctx, HOOK_CONNECT4);
}

SEC("cgroup/connect6")
int weft_connect6(struct bpf_sock_addr *ctx)
{
	return out(ctx, HOOK_CONNECT6);
}

SEC("cgroup/sendmsg4")
int weft_sendmsg4(struct bpf_sock_addr *ctx)
{
	return out(ctx, HOOK_SENDMSG4);
}

SEC("cgroup/sendmsg6")
int weft_sendmsg6(struct bpf_sock_addr *ctx)
{
	return out(ctx, HOOK_SENDMSG6);
}

/* back_to writes the asked address and port as the peer the socket sees. */
static __always_inline void back_to(struct bpf_sock_addr *ctx, bool v4, const __u32 *addr, __u16 port)
{
	if (v4) {
		ctx->user_ip4 = addr[3];
	} else {
		ctx->user_ip6[0] = addr[0];
		ctx->user_ip6[1] = addr[1];
		ctx->user_ip6[2] = addr[2];
		ctx->user_ip6[3] = addr[3];
	}
	ctx->user_port = bpf_htons(port);
	count(WEFT_C_REVNAT);
}

/* back rewrites the peer address a socket sees (recvmsg source, getpeername)
 * to what the application asked for, if we rewrote it: from the socket's
 * storage for a connected TCP socket, from weft_revnat otherwise (UDP, a
 * socket without storage, or one connected before an upgrade whose storage
 * the programs cannot see; see out()). */
static __always_inline int back(struct bpf_sock_addr *ctx, bool v4)
{
	struct weft_revnat_key k = {};
	struct weft_sock_state *st;
	struct weft_revnat *v;
	struct bpf_sock *sk;

	if (v4) {
		addr_v4((__u32 *)k.addr, ctx->user_ip4);
	} else {
		((__u32 *)k.addr)[0] = ctx->user_ip6[0];
		((__u32 *)k.addr)[1] = ctx->user_ip6[1];
		((__u32 *)k.addr)[2] = ctx->user_ip6[2];
		((__u32 *)k.addr)[3] = ctx->user_ip6[3];
	}
	k.port = bpf_ntohs((__u16)ctx->user_port);

	sk = ctx->sk;
	if (sk && ctx->protocol == WEFT_PROTO_TCP) {
		st = bpf_sk_storage_get(&weft_sockstate, sk, 0, 0);
		if (st && st->kind != WEFT_KIND_NONE && st->dst_port == k.port &&
		    addr_eq((const __u32 *)st->dst_addr, (const __u32 *)k.addr)) {
			if (!v4 || addr_is_v4((const __u32 *)st->orig_addr))
				back_to(ctx, v4, (const __u32 *)st->orig_addr, st->orig_port);
			return 1;
		}
	}

	k.cookie = bpf_get_socket_cookie(ctx);
	v = bpf_map_lookup_elem(&weft_revnat, &k);
	if (!v)
		return 1;
	if (v4 && !addr_is_v4((const __u32 *)v->addr))
		return 1;
	back_to(ctx, v4, (const __u32 *)v->addr, v->port);
	return 1;
}

SEC("cgroup/recvmsg4")
int weft_recvmsg4(struct bpf_sock_addr *ctx)
{
	return back(ctx, true);
}

SEC("cgroup/recvmsg6")
int weft_recvmsg6(struct bpf_sock_addr *ctx)
{
	return back(ctx, false);
}

SEC("cgroup/getpeername4")
int weft_getpeer4(struct bpf_sock_addr *ctx)
{
	return back(ctx, true);
}

SEC("cgroup/getpeername6")
int weft_getpeer6(struct bpf_sock_addr *ctx)
{
	return back(ctx, false);
}

/* ------------------------------------------------------------------------ */
/* sockops */

/* tuple writes the connection's 4-tuple as the local socket sees it. */
static __always_inline void tuple(struct bpf_sock_ops *skops, __u32 *src, __u16 *sport, __u32 *dst,
				  __u16 *dport)
{
	if (skops->family == AF_INET) {
		addr_v4(src, skops->local_ip4);
		addr_v4(dst, skops->remote_ip4);
	} else {
		src[0] = skops->local_ip6[0];
		src[1] = skops->local_ip6[1];
		src[2] = skops->local_ip6[2];
		src[3] = skops->local_ip6[3];
		dst[0] = skops->remote_ip6[0];
		dst[1] = skops->remote_ip6[1];
		dst[2] = skops->remote_ip6[2];
		dst[3] = skops->remote_ip6[3];
	}
	/* local_port is host order; remote_port holds the network-order port
	 * in its upper half on little-endian, which bpf_ntohl undoes. */
	*sport = (__u16)skops->local_port;
	*dport = (__u16)bpf_ntohl(skops->remote_port);
}

/* sock_key writes the socket's weft_accel key: its connection as it sees
 * it, in its network namespace. */
static __always_inline void sock_key(struct bpf_sock_ops *skops, struct weft_sock_key *k)
{
	k->netns = bpf_get_netns_cookie(skops);
	tuple(skops, (__u32 *)k->src_addr, &k->src_port, (__u32 *)k->dst_addr, &k->dst_port);
}

/* peer_key is the key of the other end of k's connection. */
static __always_inline void peer_key(const struct weft_sock_key *k, struct weft_sock_key *p)
{
	p->netns = k->netns;
	addr_copy((__u32 *)p->src_addr, (const __u32 *)k->dst_addr);
	addr_copy((__u32 *)p->dst_addr, (const __u32 *)k->src_addr);
	p->src_port = k->dst_port;
	p->dst_port = k->src_port;
	p->_pad = 0;
}

static __always_inline bool addr_loopback(const __u32 *w)
{
	if (addr_is_v4(w))
		return (bpf_ntohl(w[3]) >> 24) == 127;
	return w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == bpf_htonl(1);
}

/* accel_local: both ends are this host's, in this namespace: both loopback,
 * or a connection to the socket's own address (routed through the local
 * table). Anything else is never inserted: a remote peer cannot be in the
 * map, and every inserted socket pays the sk_msg path on each send. */
static __always_inline bool accel_local(const struct weft_sock_key *k)
{
	const __u32 *src = (const __u32 *)k->src_addr, *dst = (const __u32 *)k->dst_addr;

	return addr_eq(src, dst) || (addr_loopback(src) && addr_loopback(dst));
}

/* accel_active inserts a connecting candidate socket at ACTIVE_ESTABLISHED
 * (before its final ACK, so before the peer exists) and creates its
 * weft_accel_rx record, which also makes the peer eligible. */
static __always_inline void accel_active(struct bpf_sock_ops *skops, struct weft_sock_state *st)
{
	struct weft_sock_key k = {};
	__u64 zero = 0;

	st->accel = WEFT_ACCEL_NONE;
	sock_key(skops, &k);
	if (!accel_local(&k))
		return;
	if (bpf_sock_hash_update(skops, &weft_accel, &k, BPF_NOEXIST)) {
		count(WEFT_C_ACCEL_INSERT_FAILED);
		return;
	}
	if (bpf_map_update_elem(&weft_accel_rx, &k, &zero, BPF_ANY))
		count(WEFT_C_ACCEL_RX_FAILED); /* the peer will not be inserted */
	st->accel = WEFT_ACCEL_INSERTED;
	count(WEFT_C_ACCEL_INSERTED);
	/* The close callback deletes the weft_accel_rx record. */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
}

/* accel_passive inserts an accepted socket whose connecting peer was
 * inserted: only the legs we can see from both ends. */
static __always_inline void accel_passive(struct bpf_sock_ops *skops)
{
	struct weft_sock_key k = {}, p = {};

	sock_key(skops, &k);
	if (!accel_local(&k))
		return;
	peer_key(&k, &p);
	if (!bpf_map_lookup_elem(&weft_accel_rx, &p))
		return;
	if (bpf_sock_hash_update(skops, &weft_accel, &k, BPF_NOEXIST)) {
		count(WEFT_C_ACCEL_INSERT_FAILED);
		return;
	}
	count(WEFT_C_ACCEL_INSERTED);
}

/* accel_received returns the bytes the peer of an inserted connecting
 * socket redirected to it. */
static __always_inline __u64 accel_received(struct bpf_sock_ops *skops, struct weft_sock_state *st)
{
	struct weft_sock_key k = {};
	__u64 *rx;

	if (st->accel < WEFT_ACCEL_INSERTED)
		return 0;
	sock_key(skops, &k);
	rx = bpf_map_lookup_elem(&weft_accel_rx, &k);
	return rx ? *rx : 0;
}

/* record_common fills what a telemetry record takes from the socket's
 * storage. */
static __always_inline void record_common(struct weft_conn_event *e, const struct weft_sock_state *st,
					  __u8 closed, __u64 now)
{
	e->cgroup_id = st->cgroup_id;
	e->duration_ns = now - st->start_ns;
	addr_copy((__u32 *)e->orig_addr, (const __u32 *)st->orig_addr);
	e->orig_port = st->orig_port;
	e->closed = closed;
	e->kind = st->kind;
	e->workload_id = st->workload_id;
	e->service_id = st->service_id;
	e->_pad = 0;
}

/* submit hands a record to the reader. No wakeup per record (an IPI and a
 * reader context switch per connection): the reader polls, and is woken
 * once a backlog builds up that could otherwise fill the ring before its
 * next poll. */
static __always_inline void submit(struct weft_conn_event *e)
{
	bpf_ringbuf_submit(e, bpf_ringbuf_query(&weft_events, BPF_RB_AVAIL_DATA) >= WEFT_EVENTS_WAKEUP_BYTES ?
				      BPF_RB_FORCE_WAKEUP :
				      BPF_RB_NO_WAKEUP);
	count(WEFT_C_EVENTS);
}

/* emit writes the close record of a connection. */
static __always_inline void emit(struct bpf_sock_ops *skops, struct weft_sock_state *st, __u64 now)
{
	struct weft_conn_event *e;
	__u64 rx = accel_received(skops, st);

	e = bpf_ringbuf_reserve(&weft_events, sizeof(*e), 0);
	if (!e) {
		count(WEFT_C_RINGBUF_FULL);
		return;
	}
	e->cookie = bpf_get_socket_cookie(skops);
	/* Redirected bytes bypass TCP: add what sk_msg counted. */
	e->bytes_sent = skops->bytes_acked + st->accel_sent;
	e->bytes_received = skops->bytes_received + rx;
	tuple(skops, (__u32 *)e->src_addr, &e->src_port, (__u32 *)e->dst_addr, &e->dst_port);
	e->srtt_us = skops->srtt_us >> 3;
	e->retransmits = skops->total_retrans;
	record_common(e, st, 1, now);
	submit(e);
}

static __always_inline void origdst_key(struct bpf_sock_ops *skops, struct weft_origdst_key *k)
{
	tuple(skops, (__u32 *)k->src_addr, &k->src_port, (__u32 *)k->dst_addr, &k->dst_port);
}

SEC("sockops")
int weft_sockops(struct bpf_sock_ops *skops)
{
	struct weft_sock_state *st;
	struct bpf_sock *sk;
	__u32 op = skops->op;
	__u64 now;

	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB &&
	    op != BPF_SOCK_OPS_STATE_CB)
		return 1;
	/* Of a connection's state transitions only the close matters: the
	 * others (two or three per connection) return before any lookup. */
	if (op == BPF_SOCK_OPS_STATE_CB && skops->args[1] != BPF_TCP_CLOSE)
		return 1;
	sk = skops->sk;
	if (!sk)
		return 1;
	if (op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
		if (weft_cfg.flags & WEFT_CFG_ACCEL)
			accel_passive(skops);
		return 1;
	}
	/* Only sockets of meshed workloads have storage (connect() made it). */
	st = bpf_sk_storage_get(&weft_sockstate, sk, 0, 0);
	if (!st)
		return 1;
	now = bpf_ktime_get_ns();

	switch (op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB: {
		if ((weft_cfg.flags & WEFT_CFG_ACCEL) && st->accel == WEFT_ACCEL_CANDIDATE)
			accel_active(skops, st);
		if (st->proto != WEFT_PROTO_TCP)
			break;
		/* The close only: periodic reports come from weft_report, not
		 * from a callback on every ACK. */
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		st->last_report_ns = now;
		if (st->kind == WEFT_KIND_L7) {
			struct weft_origdst_key k = {};
			struct weft_origdst v = {
				.port = st->orig_port,
				.proto = st->proto,
				.service_id = st->service_id,
				.cgroup_id = st->cgroup_id,
			};

			origdst_key(skops, &k);
			addr_copy((__u32 *)v.addr, (const __u32 *)st->orig_addr);
			if (bpf_map_update_elem(&weft_origdst, &k, &v, BPF_ANY))
				count(WEFT_C_ORIGDST_FAILED);
		}
		break;
	}
	case BPF_SOCK_OPS_STATE_CB: /* BPF_TCP_CLOSE */
		if (st->proto == WEFT_PROTO_TCP) {
			/* Report once; cleared before the record is reserved,
			 * for weft_report (see there). */
			st->proto = 0;
			emit(skops, st, now);
			if (st->kind == WEFT_KIND_L7) {
				struct weft_origdst_key k = {};

				origdst_key(skops, &k);
				bpf_map_delete_elem(&weft_origdst, &k);
			}
		}
		if (st->accel >= WEFT_ACCEL_INSERTED) {
			struct weft_sock_key k = {};

			sock_key(skops, &k);
			bpf_map_delete_elem(&weft_accel_rx, &k);
			st->accel = WEFT_ACCEL_NONE;
		}
		break;
	}
	return 1;
}

/* ------------------------------------------------------------------------ */
/* Periodic telemetry: an iterator over weft_sockstate, which ReadEvents runs
 * every half Config.TelemetryInterval. It sees every socket with storage,
 * in every network namespace, and reports the open TCP connections of
 * meshed workloads whose last report is an interval old, idle ones too.
 * Nothing runs per packet (a sockops RTT callback did, on every ACK).
 *
 * It holds no socket lock, so a connection may close meanwhile; its close
 * record must come last. sockops clears st->proto before it reserves the
 * close record, and this program checks it after it reserved its own: the
 * ring buffer's lock orders the two, so a periodic record reserved after
 * the close record sees the cleared proto and is discarded. */

SEC("iter/bpf_sk_storage_map")
int weft_report(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	struct weft_sock_state *st = ctx->value;
	struct sock *sk = ctx->sk;
	struct weft_conn_event *e;
	struct tcp_sock *tp;
	__u64 now;
	int state;

	if (!sk || !st || st->proto != WEFT_PROTO_TCP || !weft_cfg.telemetry_interval_ns)
		return 0;
	state = sk->__sk_common.skc_state;
	if (state == BPF_TCP_SYN_SENT || state == BPF_TCP_CLOSE)
		return 0;
	now = bpf_ktime_get_ns();
	if (now - st->last_report_ns < weft_cfg.telemetry_interval_ns)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	st->last_report_ns = now;

	e = bpf_ringbuf_reserve(&weft_events, sizeof(*e), 0);
	if (!e) {
		count(WEFT_C_RINGBUF_FULL);
		return 0;
	}
	e->cookie = bpf_get_socket_cookie(sk);
	e->bytes_sent = tp->bytes_acked + st->accel_sent;
	e->bytes_received = tp->bytes_received;
	if (sk->__sk_common.skc_family == AF_INET) {
		addr_v4((__u32 *)e->src_addr, sk->__sk_common.skc_rcv_saddr);
		addr_v4((__u32 *)e->dst_addr, sk->__sk_common.skc_daddr);
	} else {
		addr_copy((__u32 *)e->src_addr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32);
		addr_copy((__u32 *)e->dst_addr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32);
	}
	e->src_port = sk->__sk_common.skc_num;
	e->dst_port = bpf_ntohs(sk->__sk_common.skc_dport);
	e->srtt_us = tp->srtt_us >> 3;
	e->retransmits = tp->total_retrans;
	if (st->accel >= WEFT_ACCEL_INSERTED) {
		/* What its accepted peer redirected to it (accel_received). */
		struct weft_sock_key k = {};
		__u64 *rx;

		k.netns = sk->__sk_common.skc_net.net->net_cookie;
		addr_copy((__u32 *)k.src_addr, (const __u32 *)e->src_addr);
		addr_copy((__u32 *)k.dst_addr, (const __u32 *)e->dst_addr);
		k.src_port = e->src_port;
		k.dst_port = e->dst_port;
		rx = bpf_map_lookup_elem(&weft_accel_rx, &k);
		if (rx)
			e->bytes_received += *rx;
	}
	record_common(e, st, 0, now);
	if (st->proto != WEFT_PROTO_TCP) {
		bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
		return 0;
	}
	submit(e);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* sk_msg: same-node acceleration. Attached to weft_accel, so it runs on
 * every send of an inserted socket. Policy was decided at connect() and is
 * unchanged; this program only chooses the path of the bytes.
 *
 * Redirected bytes land in the peer's sk_msg ingress queue, which only
 * recvmsg reads: a peer that reads with splice(2) (Go's io.Copy between TCP
 * connections, splice-based proxies) never sees them, and they are dropped
 * when it closes (TestAccelSplice). That is why acceleration is off by
 * default and limited to meshed workloads' connections. */

SEC("sk_msg")
int weft_accel_msg(struct sk_msg_md *msg)
{
	struct weft_sock_key peer = {};
	struct weft_sock_state *st = NULL;
	struct bpf_sock *sk = msg->sk;
	__u32 size = msg->size;
	__u64 *rx;

	/* A connecting socket has storage; it decides its path once, at its
	 * first message, so that its bytes never take two paths (redirected
	 * bytes overtake bytes still queued in the peer's TCP receive queue).
	 * An accepted socket's peer was inserted before it, so it redirects
	 * from its first byte. */
	if (sk)
		st = bpf_sk_storage_get(&weft_sockstate, sk, 0, 0);
	if (st && st->accel == WEFT_ACCEL_PASS) {
		count(WEFT_C_ACCEL_PASSED);
		return SK_PASS;
	}

	/* The peer's key: this socket's connection reversed. */
	peer.netns = bpf_get_netns_cookie(msg);
	if (msg->family == AF_INET) {
		addr_v4((__u32 *)peer.src_addr, msg->remote_ip4);
		addr_v4((__u32 *)peer.dst_addr, msg->local_ip4);
	} else {
		((__u32 *)peer.src_addr)[0] = msg->remote_ip6[0];
		((__u32 *)peer.src_addr)[1] = msg->remote_ip6[1];
		((__u32 *)peer.src_addr)[2] = msg->remote_ip6[2];
		((__u32 *)peer.src_addr)[3] = msg->remote_ip6[3];
		((__u32 *)peer.dst_addr)[0] = msg->local_ip6[0];
		((__u32 *)peer.dst_addr)[1] = msg->local_ip6[1];
		((__u32 *)peer.dst_addr)[2] = msg->local_ip6[2];
		((__u32 *)peer.dst_addr)[3] = msg->local_ip6[3];
	}
	/* As in sockops: remote_port is network order in the upper half. */
	peer.src_port = (__u16)bpf_ntohl(msg->remote_port);
	peer.dst_port = (__u16)msg->local_port;

	if (bpf_msg_redirect_hash(msg, &weft_accel, &peer, BPF_F_INGRESS) != SK_PASS) {
		/* No peer in the map (not inserted yet, or closed): TCP. */
		if (st && st->accel == WEFT_ACCEL_INSERTED)
			st->accel = WEFT_ACCEL_PASS;
		count(WEFT_C_ACCEL_PASSED);
		return SK_PASS;
	}
	count(WEFT_C_ACCEL_REDIRECTED);
	count_n(WEFT_C_ACCEL_BYTES, size);
	if (st) {
		if (st->accel == WEFT_ACCEL_INSERTED)
			st->accel = WEFT_ACCEL_REDIRECT;
		__sync_fetch_and_add(&st->accel_sent, size);
	} else {
		/* An accepted socket: these are its connecting peer's
		 * received bytes. */
		rx = bpf_map_lookup_elem(&weft_accel_rx, &peer);
		if (rx)
			__sync_fetch_and_add(rx, size);
		else
			count(WEFT_C_ACCEL_RX_FAILED);
	}
	return SK_PASS;
}

/* ------------------------------------------------------------------------ */
/* Test harness: BPF_PROG_TEST_RUN cannot run cgroup/sock_addr programs, so
 * the decision core is also compiled into an XDP program (the simplest type
 * whose test run takes and returns a buffer; a syscall program would be
 * sleepable, and sleepable programs may not use the LPM trie). The "packet"
 * is a struct weft_decide_io; the program writes the decision into it. The
 * loader never loads it; tests load it against a datapath's maps. */

struct weft_decide_io {
	/* in */
	__u8 addr[16];
	__u64 cgroup_id;
	__u64 cookie;
	__u32 mark;
	__u16 port;
	__u8 proto;
	__u8 sendmsg;
	/* out */
	__u8 new_addr[16];
	__u32 verdict; /* enum wverdict: 0 pass, 1 rewrite, 2 deny */
	__s32 err;
	__u32 service_id;
	__u32 workload_id;
	__u16 new_port;
	__u8 kind;
	__u8 meshed;
};

const struct weft_decide_io *unused_decide_io __attribute__((unused));

SEC("xdp")
int weft_test_decide(struct xdp_md *ctx)
{
	struct weft_decide_io *t = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct wdecision d = {};
	struct wreq r = {};

	if ((void *)(t + 1) > end)
		return XDP_ABORTED;
	addr_copy(r.addr, (const __u32 *)t->addr);
	r.cgroup_id = t->cgroup_id;
	r.cookie = t->cookie;
	r.mark = t->mark;
	r.port = t->port;
	r.proto = t->proto;
	r.sendmsg = t->sendmsg;

	decide(&r, &d);
	if (d.verdict == V_BALANCE)
		balance(&r, &d, NULL);
	if (d.verdict == V_PASS) {
		addr_copy(d.addr, r.addr);
		d.port = r.port;
	}

	addr_copy((__u32 *)t->new_addr, d.addr);
	t->verdict = d.verdict;
	t->err = d.err;
	t->service_id = d.service_id;
	t->workload_id = d.workload_id;
	t->new_port = d.port;
	t->kind = d.kind;
	t->meshed = d.meshed;
	return XDP_PASS;
}
