/* Structs shared by xdp_filter.bpf.c and the agent (packet filter path).
 *
 * Maps, all pinned with BTF under /sys/fs/bpf/gpuoffload/ so that
 * `bpftool map dump pinned /sys/fs/bpf/gpuoffload/<map>` prints named fields:
 *   flows     LRU hash   struct gpo_flow_key -> struct gpo_flow_verdict
 *   stats     per-CPU array[1] of struct gpo_xdp_stats
 *   config    array[1] of struct gpo_xdp_config (written by the agent)
 *   xsks      XSKMAP     gpo_xsk_slot(port, rx queue) -> AF_XDP socket of the agent
 *   tx_ports  DEVMAP_HASH ingress ifindex -> peer ifindex (inline mode)
 */
#ifndef GPUOFFLOAD_XDP_FILTER_H
#define GPUOFFLOAD_XDP_FILTER_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define GPO_PIN_DIR "/sys/fs/bpf/gpuoffload"
#define GPO_FLOW_CACHE_ENTRIES 262144
#define GPO_MAX_QUEUES 64
/* XSKMAP slots: IFACE's queues first, then (inline mode) PEER's, so a flow that
 * starts on either port of a bridge reaches the agent. */
#define GPO_XSK_SLOTS (2 * GPO_MAX_QUEUES)
static inline __u32 gpo_xsk_slot(__u32 rx_queue, int on_peer)
{
	if (rx_queue >= GPO_MAX_QUEUES)
		return GPO_XSK_SLOTS; /* no slot: the fail policy applies */
	return on_peer ? GPO_MAX_QUEUES + rx_queue : rx_queue;
}

/* What a rule (or a policy) decides for a packet or a flow. */
enum gpo_action {
	GPO_ACT_PASS = 0,  /* deliver (host mode: up the stack; inline mode: out of the peer port) */
	GPO_ACT_DROP = 1,
	GPO_ACT_ALERT = 2, /* deliver and count/log: Suricata's alert */
};

/* The flow cache key: a 5-tuple with IPv4 addresses stored as v4-mapped IPv6
 * (::ffff:a.b.c.d) so one map serves both families. Direction-normalised: the
 * endpoint (addr, port) that compares lower is stored first, so both directions
 * of a flow share the verdict decided on its first packet (as a stateful
 * firewall, and Suricata's drop, treat a flow). Ports in network byte order;
 * 0 for protocols without ports (ICMP: the type/code are not part of the key). */
struct gpo_flow_key {
	__u8 addr_a[16];
	__u8 addr_b[16];
	__u16 port_a;
	__u16 port_b;
	__u8 proto;
	__u8 pad[3];
};

struct gpo_flow_verdict {
	__u32 rule_id;       /* the deciding rule's sid; 0 = the default policy */
	__u8 action;         /* enum gpo_action */
	__u8 pad[3];
	__u64 hits;          /* packets decided in XDP from this entry */
	__u64 last_seen_ns;  /* bpf_ktime_get_ns() of the last hit (or of install) */
};

struct gpo_counter {
	__u64 packets;
	__u64 bytes;
};

/* One per CPU; the agent sums them. Every packet lands in exactly one of these. */
struct gpo_xdp_stats {
	struct gpo_counter cache_pass;      /* flow cache hit, verdict pass/alert, XDP_PASS */
	struct gpo_counter cache_drop;      /* flow cache hit, verdict drop */
	struct gpo_counter cache_redirect;  /* flow cache hit, pass in inline mode: DEVMAP redirect */
	struct gpo_counter to_agent;        /* flow cache miss, redirected to the agent's AF_XDP socket */
	struct gpo_counter no_socket_pass;  /* miss, no socket bound for the queue, fail-open */
	struct gpo_counter no_socket_drop;  /* miss, no socket bound for the queue, fail-closed */
	struct gpo_counter parse_fail_pass; /* could not parse, unparsed policy pass */
	struct gpo_counter parse_fail_drop; /* could not parse, unparsed policy drop */
	struct gpo_counter non_ip;          /* not IPv4/IPv6 (ARP, LLDP, ...): always passed */
};

/* Written by the agent before it attaches; read by XDP on every packet. */
struct gpo_xdp_config {
	__u8 fail_policy;     /* enum gpo_action: no AF_XDP socket for the queue (agent gone) */
	__u8 unparsed_policy; /* enum gpo_action: truncated/malformed IP packets */
	__u8 inline_mode;     /* 1: pass = redirect to the peer port through tx_ports */
	__u8 pad;
	__u32 peer_ifindex;   /* inline mode: PEER's ifindex (its misses use the upper xsks slots) */
};

/* gcc (user space) does not know clang's unroll pragma. */
#ifdef __clang__
#define GPO_UNROLL _Pragma("unroll")
#else
#define GPO_UNROLL
#endif

/* Builds the direction-normalised key; used by XDP and by the agent (which
 * installs verdicts), so both sides compute the same key by construction.
 * Order: addresses compared bytewise (memcmp order), then ports as numbers. */
/* always_inline: six arguments exceed the five a BPF-to-BPF call may pass. */
static inline __attribute__((always_inline)) void gpo_flow_key_make(struct gpo_flow_key *k, const __u8 src[16], const __u8 dst[16],
				     __u16 sport_be, __u16 dport_be, __u8 proto)
{
	int cmp = 0;
	int i;

GPO_UNROLL
	for (i = 0; i < 16; i++) {
		if (cmp == 0 && src[i] != dst[i])
			cmp = src[i] < dst[i] ? -1 : 1;
	}
	if (cmp == 0 && sport_be != dport_be)
		cmp = __builtin_bswap16(sport_be) < __builtin_bswap16(dport_be) ? -1 : 1;
	const __u8 *a = cmp <= 0 ? src : dst;
	const __u8 *b = cmp <= 0 ? dst : src;
GPO_UNROLL
	for (i = 0; i < 16; i++) {
		k->addr_a[i] = a[i];
		k->addr_b[i] = b[i];
	}
	k->port_a = cmp <= 0 ? sport_be : dport_be;
	k->port_b = cmp <= 0 ? dport_be : sport_be;
	k->proto = proto;
	k->pad[0] = k->pad[1] = k->pad[2] = 0;
}

#endif /* GPUOFFLOAD_XDP_FILTER_H */
