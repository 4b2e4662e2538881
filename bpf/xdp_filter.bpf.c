// SPDX-License-Identifier: GPL-2.0
/* The packet filter's data plane (docs/xdp.md has the policy table).
 *
 * xdp_filter: parse Ethernet / up to two VLAN tags / IPv4 (options) or IPv6
 * (up to GPO_MAX_EXT_HDRS extension headers) / TCP, UDP, ICMP, ICMPv6; look the
 * direction-normalised 5-tuple up in the LRU flow cache. Hit: decide here
 * (unless the entry is idle past its timeout, or a closed TCP flow sees a new
 * SYN: then it is removed and the packet is a miss). Miss, and every IP
 * fragment: hand the packet to the agent through the XSKMAP entry of its rx
 * queue, or apply the fail policy when the agent is gone (no socket bound
 * there, or its heartbeat is stale). Non-IP frames: the non-IP policy (inline
 * mode forwards them to the peer port, so ARP and friends cross the bridge).
 *
 * xdp_inject: run by the agent with BPF_PROG_TEST_RUN + BPF_F_TEST_XDP_LIVE_FRAMES
 * to re-inject a packet it decided to pass: host mode -> XDP_PASS (the kernel
 * builds an skb on ingress_ifindex), inline mode -> out of the peer port.
 */
/* Kernels >= 6.x have a typedef named config in vmlinux.h; our map is "config". */
#define config gpo_vmlinux_config
#include "vmlinux.h"
#undef config
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xdp_filter.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

#define IPPROTO_HOPOPTS 0
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH 51
#define IPPROTO_ICMPV6 58
#define IPPROTO_DSTOPTS 60

#define IP_MF 0x2000
#define IP_OFFSET_MASK 0x1fff
#define IP6_OFFSET_MASK 0xfff8

/* IPv6 extension headers walked before giving up (parse failure). */
#define GPO_MAX_EXT_HDRS 6
#define GPO_MAX_VLAN_TAGS 2

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, GPO_FLOW_CACHE_ENTRIES);
	__type(key, struct gpo_flow_key);
	__type(value, struct gpo_flow_verdict);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gpo_xdp_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gpo_xdp_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, GPO_XSK_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gpo_agent_beat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} agent SEC(".maps");

/* Room in each agent socket (see struct gpo_xsk_credit); the agent mmaps it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GPO_XSK_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct gpo_xsk_credit);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} credits SEC(".maps");

/* ingress ifindex -> peer ifindex (inline mode). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tx_ports SEC(".maps");

enum parse_result {
	PARSE_OK = 0,
	PARSE_NON_IP = 1,
	PARSE_FAIL = 2,
	PARSE_FRAG = 3, /* an IP fragment (first or not): the agent reassembles or the policy drops */
};

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* What the parser learns beyond the key. */
struct pkt_meta {
	__u8 tcp_flags;
	__u8 src_is_a; /* the sender is endpoint a of the key */
};

struct gpo_vlan_tag {
	__be16 tci;
	__be16 encap_proto;
};

struct gpo_ip6_opt {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct gpo_ip6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

static __always_inline void count(struct gpo_counter *c, __u64 bytes)
{
	c->packets++;
	c->bytes += bytes;
}

/* Parses the L4 header at l4; *hdr_len gets its length (0 for protocols
 * without one we know), so a first fragment can be checked to hold it. */
static __always_inline int parse_l4(void *l4, void *data_end, __u8 proto, __u16 *sport, __u16 *dport,
				    struct pkt_meta *meta, __u32 *hdr_len)
{
	*sport = 0;
	*dport = 0;
	*hdr_len = 0;
	meta->tcp_flags = 0;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return PARSE_FAIL;
		/* The data offset must cover the fixed header, and the options it
		 * announces must be in the packet: anything else is malformed. */
		if (th->doff < 5 || l4 + th->doff * 4 > data_end)
			return PARSE_FAIL;
		*sport = th->source;
		*dport = th->dest;
		*hdr_len = th->doff * 4;
		meta->tcp_flags = ((__u8 *)th)[13];
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return PARSE_FAIL;
		*sport = uh->source;
		*dport = uh->dest;
		*hdr_len = 8;
	} else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
		/* Type, code, checksum and the 4-byte rest of header; not keyed. */
		if (l4 + 8 > data_end)
			return PARSE_FAIL;
		*hdr_len = 8;
	}
	/* Other protocols (GRE, ESP, SCTP, ...): keyed by addresses and protocol. */
	return PARSE_OK;
}

static __always_inline int parse_ipv4(void *l3, void *data_end, struct gpo_flow_key *key, struct pkt_meta *meta)
{
	struct iphdr *iph = l3;
	__u8 src[16] = {}, dst[16] = {};
	__u16 sport, dport;
	__u32 ihl, l4_len;

	if ((void *)(iph + 1) > data_end)
		return PARSE_FAIL;
	if (iph->version != 4 || iph->ihl < 5)
		return PARSE_FAIL;
	ihl = iph->ihl * 4;
	if (l3 + ihl > data_end)
		return PARSE_FAIL;
	/* Non-first fragments carry no L4 header: to the agent (or dropped). */
	if (iph->frag_off & bpf_htons(IP_OFFSET_MASK))
		return PARSE_FRAG;
	if (parse_l4(l3 + ihl, data_end, iph->protocol, &sport, &dport, meta, &l4_len) != PARSE_OK)
		return PARSE_FAIL;
	if (iph->frag_off & bpf_htons(IP_MF)) {
		/* A first fragment must hold the whole L4 header within its own IP
		 * length (RFC 1858, RFC 3128): a tiny one hides the ports or flags. */
		if (ihl + l4_len > bpf_ntohs(iph->tot_len))
			return PARSE_FAIL;
		return PARSE_FRAG;
	}

	/* v4-mapped IPv6: ::ffff:a.b.c.d */
	src[10] = src[11] = dst[10] = dst[11] = 0xff;
	__builtin_memcpy(&src[12], &iph->saddr, 4);
	__builtin_memcpy(&dst[12], &iph->daddr, 4);
	meta->src_is_a = gpo_flow_key_make(key, src, dst, sport, dport, iph->protocol);
	return PARSE_OK;
}

static __always_inline int parse_ipv6(void *l3, void *data_end, struct gpo_flow_key *key, struct pkt_meta *meta)
{
	struct ipv6hdr *ip6h = l3;
	__u8 src[16], dst[16];
	__u16 sport, dport;
	__u32 l4_len;
	int fragment = 0;
	void *cur;
	__u8 nexthdr;
	int i;

	if ((void *)(ip6h + 1) > data_end)
		return PARSE_FAIL;
	if (ip6h->version != 6)
		return PARSE_FAIL;
	nexthdr = ip6h->nexthdr;
	cur = ip6h + 1;

	for (i = 0; i < GPO_MAX_EXT_HDRS; i++) {
		if (nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING ||
		    nexthdr == IPPROTO_DSTOPTS) {
			struct gpo_ip6_opt *oh = cur;

			if ((void *)(oh + 1) > data_end)
				return PARSE_FAIL;
			nexthdr = oh->nexthdr;
			cur += (oh->hdrlen + 1) * 8;
		} else if (nexthdr == IPPROTO_AH) {
			struct gpo_ip6_opt *oh = cur;

			if ((void *)(oh + 1) > data_end)
				return PARSE_FAIL;
			nexthdr = oh->nexthdr;
			cur += (oh->hdrlen + 2) * 4;  /* AH counts 32-bit words, minus 2 */
		} else if (nexthdr == IPPROTO_FRAGMENT) {
			struct gpo_ip6_frag *fh = cur;

			if ((void *)(fh + 1) > data_end)
				return PARSE_FAIL;
			/* Same fragment policy as IPv4: non-first ones have no L4 header. */
			if (fh->frag_off & bpf_htons(IP6_OFFSET_MASK))
				return PARSE_FRAG;
			fragment = 1;
			nexthdr = fh->nexthdr;
			cur = fh + 1;
		} else {
			break;
		}
	}
	/* Still an extension header after the bound: give up. */
	if (nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING || nexthdr == IPPROTO_DSTOPTS ||
	    nexthdr == IPPROTO_AH || nexthdr == IPPROTO_FRAGMENT)
		return PARSE_FAIL;
	if (cur > data_end)
		return PARSE_FAIL;
	if (parse_l4(cur, data_end, nexthdr, &sport, &dport, meta, &l4_len) != PARSE_OK)
		return PARSE_FAIL;
	if (fragment) {
		/* The first fragment must hold the whole header chain, L4 header
		 * included, within its payload length (RFC 7112). */
		if ((__u64)(cur - (void *)(ip6h + 1)) + l4_len > bpf_ntohs(ip6h->payload_len))
			return PARSE_FAIL;
		return PARSE_FRAG;
	}

	__builtin_memcpy(src, &ip6h->saddr, 16);
	__builtin_memcpy(dst, &ip6h->daddr, 16);
	meta->src_is_a = gpo_flow_key_make(key, src, dst, sport, dport, nexthdr);
	return PARSE_OK;
}

static __always_inline int parse_packet(void *data, void *data_end, struct gpo_flow_key *key, struct pkt_meta *meta)
{
	struct ethhdr *eth = data;
	void *cur;
	__u16 proto;
	int i;

	if ((void *)(eth + 1) > data_end)
		return PARSE_FAIL;
	proto = eth->h_proto;
	cur = eth + 1;

#pragma unroll
	for (i = 0; i < GPO_MAX_VLAN_TAGS; i++) {
		struct gpo_vlan_tag *vh = cur;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > data_end)
			return PARSE_FAIL;
		proto = vh->encap_proto;
		cur = vh + 1;
	}
	/* A third tag is beyond what we parse. */
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return PARSE_FAIL;

	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(cur, data_end, key, meta);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(cur, data_end, key, meta);
	return PARSE_NON_IP;
}

static __always_inline int policy_action(__u8 policy)
{
	return policy == GPO_ACT_DROP ? XDP_DROP : XDP_PASS;
}

/* Inline mode: out of the peer port. Checks the entry first so the caller's
 * counter tells the truth; returns -1 when there is no peer for this port. */
static __always_inline int to_peer(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;

	if (!bpf_map_lookup_elem(&tx_ports, &ifindex))
		return -1;
	return bpf_redirect_map(&tx_ports, ifindex, XDP_DROP);
}

static __always_inline __u64 idle_timeout(const struct gpo_xdp_config *cfg, __u8 proto, __u64 flags)
{
	if (proto == IPPROTO_TCP)
		return GPO_FLOW_CLOSED(flags) ? cfg->tcp_closed_timeout_ns : cfg->tcp_timeout_ns;
	if (proto == IPPROTO_UDP)
		return cfg->udp_timeout_ns;
	return cfg->other_timeout_ns;
}

/* The agent is there when its socket for this slot is in the XSKMAP (the
 * kernel removes it when the process dies) and, with a heartbeat timeout, its
 * last beat is recent enough (a hung agent counts as gone). */
static __always_inline int agent_alive(const struct gpo_xdp_config *cfg, __u32 slot, __u64 now)
{
	struct gpo_agent_beat *beat;
	__u32 zero = 0;

	if (!bpf_map_lookup_elem(&xsks, &slot))
		return 0;
	if (!cfg->agent_timeout_ns)
		return 1;
	beat = bpf_map_lookup_elem(&agent, &zero);
	if (!beat)
		return 0;
	return now < beat->heartbeat_ns || now - beat->heartbeat_ns <= cfg->agent_timeout_ns;
}

/* Does the agent's socket for this slot have room for one more miss? Takes
 * the room when it does. A flow under inspection may use all of it; a new
 * flow leaves credit_reserve for them. The check and the count are not one
 * atomic step: CPUs racing on one slot may overshoot by one each, which the
 * agent's reserve in `granted` absorbs. */
static __always_inline int agent_has_room(const struct gpo_xdp_config *cfg, __u32 slot, int inspected)
{
	struct gpo_xsk_credit *c;
	__s64 room;

	if (cfg->overload_policy == GPO_OVERLOAD_OFF)
		return 1;
	c = bpf_map_lookup_elem(&credits, &slot);
	if (!c)
		return 1;
	room = (__s64)(c->granted - c->sent);
	if (room <= 0 || (!inspected && room <= (__s64)cfg->credit_reserve))
		return 0;
	__sync_fetch_and_add(&c->sent, 1);
	return 1;
}

/* A policy's pass for a packet the agent does not see: up the stack in host
 * mode, out of the peer port in inline mode (an inline device that passes
 * forwards). */
static __always_inline int pass_unseen(struct xdp_md *ctx, const struct gpo_xdp_config *cfg)
{
	int act;

	if (cfg->inline_mode && (act = to_peer(ctx)) >= 0)
		return act;
	return XDP_PASS;
}

SEC("xdp")
int xdp_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct gpo_flow_verdict *verdict;
	struct gpo_xdp_config *cfg;
	struct gpo_xdp_stats *st;
	struct pkt_meta meta = {};
	struct gpo_flow_key key;
	__u32 zero = 0;
	__u64 now;
	__u32 slot;
	int res, act;
	int inspected = 0;

	st = bpf_map_lookup_elem(&stats, &zero);
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!st || !cfg)
		return XDP_PASS; /* cannot happen: both are arrays of one entry */

	res = parse_packet(data, data_end, &key, &meta);
	if (res == PARSE_NON_IP) {
		if (cfg->non_ip_policy == GPO_ACT_DROP) {
			count(&st->non_ip_drop, bytes);
			return XDP_DROP;
		}
		count(&st->non_ip_pass, bytes);
		/* An inline device is a wire: ARP, LLDP, ... cross it unchanged. */
		if (cfg->inline_mode && (act = to_peer(ctx)) >= 0)
			return act;
		return XDP_PASS;
	}
	if (res == PARSE_FAIL) {
		if (cfg->unparsed_policy == GPO_ACT_DROP) {
			count(&st->parse_fail_drop, bytes);
			return XDP_DROP;
		}
		count(&st->parse_fail_pass, bytes);
		return XDP_PASS;
	}
	now = bpf_ktime_get_ns();
	if (res == PARSE_FRAG) {
		/* Never decided from the cache: only the reassembled datagram tells
		 * what the rules say, so every fragment goes to the agent. */
		if (cfg->frag_policy == GPO_FRAG_DROP) {
			count(&st->frag_drop, bytes);
			return XDP_DROP;
		}
		goto miss;
	}

	verdict = bpf_map_lookup_elem(&flows, &key);
	if (verdict) {
		__u64 flags = verdict->flags;
		__u64 last = verdict->last_seen_ns;
		__u64 timeout = idle_timeout(cfg, key.proto, flags);

		if (key.proto == IPPROTO_TCP && GPO_FLOW_CLOSED(flags) &&
		    (meta.tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
			/* A new connection on the tuple of a closed one: decide it afresh. */
			bpf_map_delete_elem(&flows, &key);
			count(&st->flow_reopened, bytes);
			goto miss;
		}
		if (timeout && now > last && now - last > timeout) {
			bpf_map_delete_elem(&flows, &key);
			count(&st->flow_expired, bytes);
			goto miss;
		}
		__sync_fetch_and_add(&verdict->hits, 1);
		verdict->last_seen_ns = now;
		if (meta.tcp_flags & (TCP_FIN | TCP_RST)) {
			__u64 bit = (meta.tcp_flags & TCP_RST) ? GPO_FLOW_RST
				    : meta.src_is_a		   ? GPO_FLOW_FIN_A
								   : GPO_FLOW_FIN_B;
			if (!(flags & bit))
				__sync_fetch_and_or(&verdict->flags, bit);
		}
		if (verdict->action == GPO_ACT_INSPECT) {
			/* The agent is still reading this flow: its packets go there. */
			inspected = 1;
			goto miss;
		}
		if (verdict->action == GPO_ACT_DROP) {
			count(&st->cache_drop, bytes);
			return XDP_DROP;
		}
		if (cfg->inline_mode && (act = to_peer(ctx)) >= 0) {
			count(&st->cache_redirect, bytes);
			return act;
		}
		count(&st->cache_pass, bytes);
		return XDP_PASS;
	}

miss:
	/* To the agent's socket for this rx queue, when the agent is there. The
	 * XSKMAP entry is looked up first (as xdp-tools does) so the counters say
	 * what happened; the redirect's fallback action is the fail policy, for a
	 * socket that goes away between the two. */
	slot = gpo_xsk_slot(ctx->rx_queue_index, cfg->inline_mode && ctx->ingress_ifindex == cfg->peer_ifindex);
	if (agent_alive(cfg, slot, now)) {
		if (!agent_has_room(cfg, slot, inspected)) {
			/* More misses than the agent takes: the overload policy, counted,
			 * instead of a silent drop at a full socket. */
			if (cfg->overload_policy == GPO_OVERLOAD_DROP) {
				count(&st->overload_drop, bytes);
				return XDP_DROP;
			}
			count(&st->overload_pass, bytes);
			return pass_unseen(ctx, cfg);
		}
		count(&st->to_agent, bytes);
		if (inspected)
			count(&st->inspect_to_agent, bytes);
		return bpf_redirect_map(&xsks, slot, policy_action(cfg->fail_policy));
	}
	if (cfg->fail_policy == GPO_ACT_DROP) {
		count(&st->no_agent_drop, bytes);
		return XDP_DROP;
	}
	count(&st->no_agent_pass, bytes);
	return pass_unseen(ctx, cfg);
}

SEC("xdp")
int xdp_inject(struct xdp_md *ctx)
{
	struct gpo_xdp_config *cfg;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (cfg && cfg->inline_mode)
		return bpf_redirect_map(&tx_ports, ctx->ingress_ifindex, XDP_DROP);
	return XDP_PASS;
}
