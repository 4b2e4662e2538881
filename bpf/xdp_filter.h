/* Structs shared by xdp_filter.bpf.c and the agent (packet filter path).
 *
 * Maps, all pinned with BTF under /sys/fs/bpf/gpuoffload/ so that
 * `bpftool map dump pinned /sys/fs/bpf/gpuoffload/<map>` prints named fields:
 *   flows     LRU hash   struct gpo_flow_key -> struct gpo_flow_verdict
 *   stats     per-CPU array[1] of struct gpo_xdp_stats
 *   config    array[1] of struct gpo_xdp_config (written by the agent)
 *   agent     array[1] of struct gpo_agent_beat (the agent's heartbeat)
 *   xsks      XSKMAP     gpo_xsk_slot(port, rx queue) -> AF_XDP socket of the agent
 *   credits   array (mmapable) of struct gpo_xsk_credit per xsks slot: room in the agent's socket
 *   tx_ports  DEVMAP_HASH ingress ifindex -> peer ifindex (inline mode)
 * The XDP attachments themselves are bpf_links pinned as link_<ifindex> in the
 * same directory, so they outlive the agent (a crash never detaches the filter).
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
	/* Only in the flow cache: the agent is inspecting the flow (a content rule
	 * may still decide it). Its packets go to the agent like misses, ahead of
	 * new flows when the agent's socket is short of room (credit_reserve). */
	GPO_ACT_INSPECT = 3,
};

#ifndef __VMLINUX_H__
/* User space: the name of an enum gpo_action, as rules, logs and `status` write it. */
static inline const char *gpo_action_name(__u8 action)
{
	switch (action) {
	case GPO_ACT_PASS: return "pass";
	case GPO_ACT_DROP: return "drop";
	case GPO_ACT_ALERT: return "alert";
	case GPO_ACT_INSPECT: return "inspect";
	}
	return "unknown";
}
#endif

/* What a miss gets when the agent's socket has no room for it (config.overload_policy). */
enum gpo_overload_policy {
	GPO_OVERLOAD_OFF = 0,  /* no room check: the kernel drops what the socket cannot take (socket_drops) */
	GPO_OVERLOAD_PASS = 1, /* passed uninspected (inline mode: to the peer port) */
	GPO_OVERLOAD_DROP = 2,
};

/* Room in one agent socket, so XDP never redirects a miss the socket would
 * drop: `granted` is written by the agent (the frames it has given the
 * socket's fill ring so far, less a small reserve for CPUs racing on one
 * slot, plus what the kernel dropped anyway), `sent` counted by XDP (misses
 * redirected to the slot). A miss goes to the agent while sent < granted
 * (new flows: while granted - sent > config.credit_reserve), else the
 * overload policy decides it. On their own cache lines: the agent writes
 * one, XDP the other. */
struct gpo_xsk_credit {
	__u64 granted;
	__u64 pad[7];
	__u64 sent;
	__u64 pad2[7];
};

/* IP fragments (config.frag_policy). */
enum gpo_frag_policy {
	GPO_FRAG_REASSEMBLE = 0, /* every fragment goes to the agent, which reassembles before the rules */
	GPO_FRAG_DROP = 1,       /* every fragment is dropped in XDP */
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

/* gpo_flow_verdict.flags. Which endpoint is the client (the one that opened
 * the flow: the SYN's sender, or the sender of the first packet the agent saw)
 * is set by the agent when it installs the verdict; the TCP end-of-flow bits
 * are set by XDP as FIN/RST segments cross. */
enum gpo_flow_flags {
	GPO_FLOW_CLIENT_A = 1 << 0, /* endpoint a of the key is the client */
	GPO_FLOW_CLIENT_B = 1 << 1, /* endpoint b is the client (neither bit: not known) */
	GPO_FLOW_FIN_A = 1 << 2,    /* a sent FIN */
	GPO_FLOW_FIN_B = 1 << 3,    /* b sent FIN */
	GPO_FLOW_RST = 1 << 4,      /* either side sent RST */
};
/* A TCP flow is closed after RST or a FIN from both sides: it expires after
 * config.tcp_closed_timeout_ns, and a new SYN on its tuple is a new flow. */
#define GPO_FLOW_CLOSED(f) (((f) & GPO_FLOW_RST) || (((f) & GPO_FLOW_FIN_A) && ((f) & GPO_FLOW_FIN_B)))

struct gpo_flow_verdict {
	__u32 rule_id;       /* the deciding rule's sid; 0 = the default policy */
	__u8 action;         /* enum gpo_action */
	__u8 pad[3];
	__u64 flags;         /* enum gpo_flow_flags (64 bits: BPF's atomic OR needs them) */
	__u64 hits;          /* packets decided in XDP from this entry */
	__u64 last_seen_ns;  /* bpf_ktime_get_ns() of the last hit (or of install) */
};

struct gpo_counter {
	__u64 packets;
	__u64 bytes;
};

/* The stats counters, one definition (X-macro) for XDP, the agent's JSON,
 * `status` and the tests. GPO_XDP_PATHS: every packet lands in exactly one.
 * GPO_XDP_EVENTS: things that happened to flow cache entries (packets = events). */
#define GPO_XDP_PATHS(X)                                                                       \
	X(cache_pass, "cache hit, passed")                                                     \
	X(cache_drop, "cache hit, dropped")                                                    \
	X(cache_redirect, "cache hit, redirected to the peer port")                           \
	X(to_agent, "cache miss or fragment, sent to the agent (AF_XDP)")                     \
	X(no_agent_pass, "miss, agent gone (no socket or no heartbeat), fail-open")            \
	X(no_agent_drop, "miss, agent gone (no socket or no heartbeat), fail-closed")          \
	X(overload_pass, "miss, agent's socket full (overload), overload policy pass")         \
	X(overload_drop, "miss, agent's socket full (overload), overload policy drop")         \
	X(parse_fail_pass, "unparsed (malformed, tiny first fragment, long header chain), passed") \
	X(parse_fail_drop, "unparsed (malformed, tiny first fragment, long header chain), dropped") \
	X(frag_drop, "IP fragment, fragment policy drop")                                     \
	X(non_ip_pass, "not IP (ARP, LLDP, ...): passed, forwarded to the peer in inline mode") \
	X(non_ip_drop, "not IP, non-IP policy drop")
#define GPO_XDP_EVENTS(X)                                                                      \
	X(flow_expired, "cache entries found idle past their timeout (then a miss)")         \
	X(flow_reopened, "closed TCP entries replaced by a new SYN (then a miss)")             \
	X(inspect_to_agent, "packets of flows under inspection sent to the agent (in to_agent)")

/* One per CPU; the agent sums them. */
struct gpo_xdp_stats {
#define GPO_X_COUNTER(name, what) struct gpo_counter name;
	GPO_XDP_PATHS(GPO_X_COUNTER)
	GPO_XDP_EVENTS(GPO_X_COUNTER)
#undef GPO_X_COUNTER
};

/* Written by the agent before it attaches; read by XDP on every packet. */
struct gpo_xdp_config {
	__u8 fail_policy;     /* enum gpo_action: a miss while the agent is gone */
	__u8 unparsed_policy; /* enum gpo_action: malformed IP packets, tiny first fragments, long chains */
	__u8 inline_mode;     /* 1: pass = redirect to the peer port through tx_ports */
	__u8 non_ip_policy;   /* enum gpo_action: not IPv4/IPv6 (pass: forwarded in inline mode) */
	__u8 frag_policy;     /* enum gpo_frag_policy */
	__u8 overload_policy; /* enum gpo_overload_policy: a miss the agent's socket has no room for */
	__u8 pad[2];
	__u32 peer_ifindex;   /* inline mode: PEER's ifindex (its misses use the upper xsks slots) */
	/* Room in a socket kept for flows under inspection (GPO_ACT_INSPECT):
	 * new flows are overload once fewer credits than this remain. */
	__u32 credit_reserve;
	/* The agent counts as gone when its heartbeat is older than this (0: only
	 * a missing XSKMAP entry says so). */
	__u64 agent_timeout_ns;
	/* Idle timeouts of cached verdicts (0: never expire). */
	__u64 tcp_timeout_ns;
	__u64 udp_timeout_ns;
	__u64 other_timeout_ns;
	__u64 tcp_closed_timeout_ns; /* after RST or FIN both ways */
};

/* Written by the agent every heartbeat (a timer of its event loop). */
struct gpo_agent_beat {
	__u64 heartbeat_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) of the last beat */
	__u32 pid;
	__u32 pad;
};

/* gcc (user space) does not know clang's unroll pragma. */
#ifdef __clang__
#define GPO_UNROLL _Pragma("unroll")
#else
#define GPO_UNROLL
#endif

/* Builds the direction-normalised key; used by XDP and by the agent (which
 * installs verdicts), so both sides compute the same key by construction.
 * Order: addresses compared bytewise (memcmp order), then ports as numbers.
 * Returns 1 when the source endpoint became endpoint a (0: it is b). */
/* always_inline: six arguments exceed the five a BPF-to-BPF call may pass. */
static inline __attribute__((always_inline)) int gpo_flow_key_make(struct gpo_flow_key *k, const __u8 src[16], const __u8 dst[16],
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
	return cmp <= 0;
}

#endif /* GPUOFFLOAD_XDP_FILTER_H */
