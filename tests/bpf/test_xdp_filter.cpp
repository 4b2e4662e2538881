// xdp_filter on crafted packets through BPF_PROG_TEST_RUN, katran-style: each
// row is a packet, the map state before it, the XDP action and the stats
// counter it must land in. Adding a case is adding a row.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <time.h>

#include <cstring>
#include <functional>
#include <memory>
#include <optional>

#include "bpf/xdp_test_env.h"
#include "common/packet_builder.h"
#include "common/proc.h"
#include "loader/xdp_loader.h"

using gpo::loader::XdpFilter;
using gpo::loader::XdpOptions;
using gpo::test::addr16;
using gpo::test::PacketBuilder;
using gpo::test::xdp_test_run;

namespace {

using Counter = gpo_counter gpo_xdp_stats::*;

struct CounterName {
  Counter c;
  const char* name;
};
// Every packet path counter (the X-macro of xdp_filter.h): a packet lands in exactly one.
constexpr CounterName kCounters[] = {
#define GPO_X_NAME(name, what) {&gpo_xdp_stats::name, #name},
    GPO_XDP_PATHS(GPO_X_NAME)
#undef GPO_X_NAME
};

// A flow as the packet sees it (source first); installed with gpo_flow_key_make.
struct Flow {
  std::string src, dst;
  uint16_t sport = 0, dport = 0;  // host order
  uint8_t proto = 0;
};

gpo_flow_key key_of(const Flow& f) {
  gpo_flow_key k;
  auto s = addr16(f.src), d = addr16(f.dst);
  gpo_flow_key_make(&k, s.data(), d.data(), htons(f.sport), htons(f.dport), f.proto);
  return k;
}

struct MapSetup {
  uint8_t fail_policy = GPO_ACT_PASS;
  uint8_t unparsed_policy = GPO_ACT_PASS;
  uint8_t non_ip_policy = GPO_ACT_PASS;
  uint8_t frag_policy = GPO_FRAG_REASSEMBLE;
  bool inline_mode = false;
  bool peer_port = false;  // tx_ports entry for the ingress interface (lo)
  std::optional<Flow> cached;
  uint8_t cached_action = GPO_ACT_DROP;
};

struct Row {
  std::string desc;
  std::vector<uint8_t> pkt;
  MapSetup setup;
  uint32_t expect_action;
  Counter expect_counter;
};

const char* counter_name(Counter c) {
  for (const auto& n : kCounters)
    if (n.c == c) return n.name;
  return "?";
}

class XdpFilterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!gpo::test::is_root()) return;
    XdpOptions o;
    o.pin_dir = "";  // never touch a running agent's pinned maps
    filter_ = XdpFilter::load(o).release();
  }
  static void TearDownTestSuite() {
    delete filter_;
    filter_ = nullptr;
  }
  void SetUp() override {
    if (!gpo::test::is_root()) GTEST_SKIP() << "needs root for BPF_PROG_TEST_RUN";
    ASSERT_NE(filter_, nullptr);
    reset();
  }

  // Empty cache, zero stats, default config, no peer port.
  void reset() {
    filter_->flush_flows();
    int ncpu = libbpf_num_possible_cpus();
    std::vector<gpo_xdp_stats> zero(ncpu);
    uint32_t k0 = 0;
    ASSERT_EQ(bpf_map_update_elem(filter_->stats_fd(), &k0, zero.data(), BPF_ANY), 0);
    filter_->set_config(config_of({}));
    uint32_t lo = 1;
    bpf_map_delete_elem(filter_->tx_ports_fd(), &lo);
  }

  static gpo_xdp_config config_of(const MapSetup& s) {
    gpo_xdp_config c{};
    c.fail_policy = s.fail_policy;
    c.unparsed_policy = s.unparsed_policy;
    c.non_ip_policy = s.non_ip_policy;
    c.frag_policy = s.frag_policy;
    c.inline_mode = s.inline_mode;
    return c;
  }

  void apply(const MapSetup& s) {
    filter_->set_config(config_of(s));
    if (s.peer_port) {
      uint32_t lo = 1;  // test runs arrive on the namespace's lo (ifindex 1); redirect back to it
      ASSERT_EQ(bpf_map_update_elem(filter_->tx_ports_fd(), &lo, &lo, BPF_ANY), 0) << strerror(errno);
    }
    if (s.cached) filter_->install_verdict(key_of(*s.cached), s.cached_action, 7);
  }

  // Runs one row from a clean state and checks action and the one counter.
  void check(const Row& r) {
    SCOPED_TRACE(r.desc);
    reset();
    apply(r.setup);
    auto run = xdp_test_run(filter_->filter_prog_fd(), r.pkt);
    ASSERT_EQ(run.rc, 0) << "BPF_PROG_TEST_RUN: " << strerror(run.err);
    EXPECT_STREQ(gpo::test::xdp_action_name(run.action), gpo::test::xdp_action_name(r.expect_action));
    expect_only(r.expect_counter, r.pkt.size());
  }

  // Every packet lands in exactly one counter.
  void expect_only(Counter want, size_t bytes, uint64_t packets = 1) {
    auto st = filter_->read_stats();
    for (const auto& n : kCounters) {
      if (n.c == want) {
        EXPECT_EQ((st.*n.c).packets, packets) << n.name;
        EXPECT_EQ((st.*n.c).bytes, bytes * packets) << n.name;
      } else {
        EXPECT_EQ((st.*n.c).packets, 0u) << n.name << " (expected only " << counter_name(want) << ")";
      }
    }
  }

  static XdpFilter* filter_;
};
XdpFilter* XdpFilterTest::filter_ = nullptr;

// One encapsulation/protocol case: the packet in both directions and its flow.
struct KeyCase {
  std::string desc;
  std::function<PacketBuilder(const Flow&)> make;  // builds the packet for a flow
  Flow flow;
};

Flow reversed(const Flow& f) { return {f.dst, f.src, f.dport, f.sport, f.proto}; }

std::vector<KeyCase> key_cases() {
  const std::string a4 = "198.18.0.1", b4 = "198.18.1.2";
  const std::string a6 = "2001:db8::1", b6 = "2001:db8::2";
  auto l4 = [](PacketBuilder& p, const Flow& f) -> PacketBuilder& {
    if (f.proto == 6) return p.tcp(f.sport, f.dport);
    if (f.proto == 17) return p.udp(f.sport, f.dport);
    if (f.proto == 1) return p.icmp();
    if (f.proto == 58) return p.icmpv6();
    return p.ip_proto(f.proto);
  };
  std::vector<KeyCase> c;
  c.push_back({"IPv4 TCP", [=](const Flow& f) { PacketBuilder p; p.eth().ipv4(f.src, f.dst); return l4(p, f).payload("GET /"); },
               {a4, b4, 40000, 80, 6}});
  c.push_back({"IPv4 UDP", [=](const Flow& f) { PacketBuilder p; p.eth().ipv4(f.src, f.dst); return l4(p, f).payload("q"); },
               {a4, b4, 5353, 53, 17}});
  c.push_back({"IPv4 ICMP (ports 0)", [=](const Flow& f) { PacketBuilder p; p.eth().ipv4(f.src, f.dst); return l4(p, f); },
               {a4, b4, 0, 0, 1}});
  c.push_back({"IPv4 GRE (other protocol, ports 0)",
               [=](const Flow& f) { PacketBuilder p; p.eth().ipv4(f.src, f.dst); return l4(p, f).payload("grebody"); },
               {a4, b4, 0, 0, 47}});
  c.push_back({"IPv4 with 40 bytes of options, TCP with 20 bytes of options",
               [=](const Flow& f) { PacketBuilder p; p.eth().ipv4(f.src, f.dst, 40).tcp(f.sport, f.dport, 0x10, 20); return p; },
               {a4, b4, 443, 51000, 6}});
  c.push_back({"802.1Q VLAN, IPv4 UDP",
               [=](const Flow& f) { PacketBuilder p; p.eth().vlan(10).ipv4(f.src, f.dst); return l4(p, f); },
               {a4, b4, 1234, 4321, 17}});
  c.push_back({"QinQ (802.1ad + 802.1Q), IPv4 TCP",
               [=](const Flow& f) { PacketBuilder p; p.eth().vlan(100, 0x88a8).vlan(10).ipv4(f.src, f.dst); return l4(p, f); },
               {a4, b4, 22, 60000, 6}});
  c.push_back({"IPv6 TCP", [=](const Flow& f) { PacketBuilder p; p.eth().ipv6(f.src, f.dst); return l4(p, f).payload("x"); },
               {a6, b6, 40000, 443, 6}});
  c.push_back({"IPv6 UDP", [=](const Flow& f) { PacketBuilder p; p.eth().ipv6(f.src, f.dst); return l4(p, f); },
               {a6, b6, 546, 547, 17}});
  c.push_back({"IPv6 ICMPv6 (ports 0)", [=](const Flow& f) { PacketBuilder p; p.eth().ipv6(f.src, f.dst); return l4(p, f); },
               {a6, b6, 0, 0, 58}});
  c.push_back({"IPv6 hop-by-hop + routing + destination options, UDP",
               [=](const Flow& f) {
                 PacketBuilder p;
                 p.eth().ipv6(f.src, f.dst).ipv6_ext(gpo::test::kHopByHop, 8).ipv6_ext(gpo::test::kRouting, 24)
                     .ipv6_ext(gpo::test::kDestOpts, 16);
                 return l4(p, f).payload("ext");
               },
               {a6, b6, 7000, 7001, 17}});
  c.push_back({"IPv6 AH + destination options, TCP",
               [=](const Flow& f) {
                 PacketBuilder p;
                 p.eth().ipv6(f.src, f.dst).ipv6_ext(gpo::test::kAuth, 24).ipv6_ext(gpo::test::kDestOpts, 8);
                 return l4(p, f);
               },
               {a6, b6, 179, 33000, 6}});
  c.push_back({"VLAN, IPv6 with 6 extension headers (the bound), UDP",
               [=](const Flow& f) {
                 PacketBuilder p;
                 p.eth().vlan(5).ipv6(f.src, f.dst);
                 for (int i = 0; i < 6; i++) p.ipv6_ext(gpo::test::kDestOpts, 8);
                 return l4(p, f);
               },
               {a6, b6, 9, 10, 17}});
  c.push_back({"same address both ends, ports decide the order",
               [=](const Flow& f) { PacketBuilder p; p.eth().ipv4(f.src, f.dst); return l4(p, f); },
               {a4, a4, 9000, 80, 17}});
  return c;
}

// The key XDP computes matches gpo_flow_key_make's, in both directions: a
// verdict installed from user space for the forward tuple hits for both.
TEST_F(XdpFilterTest, EveryEncapsulationParsesToTheSharedKeyBothWays) {
  for (const auto& kc : key_cases()) {
    for (bool reverse : {false, true}) {
      Flow pkt_flow = reverse ? reversed(kc.flow) : kc.flow;
      Row r{kc.desc + (reverse ? " (reverse direction)" : ""), kc.make(pkt_flow).build(), {}, XDP_DROP,
            &gpo_xdp_stats::cache_drop};
      r.setup.cached = kc.flow;
      r.setup.cached_action = GPO_ACT_DROP;
      check(r);
      // And without the entry the same packet is a miss (so the hit was the key's doing).
      Row miss{r.desc + ", not cached", r.pkt, {}, XDP_PASS, &gpo_xdp_stats::no_agent_pass};
      check(miss);
    }
  }
}

// A different tuple must not hit: each field of the key matters.
TEST_F(XdpFilterTest, NearbyTuplesMiss) {
  Flow f{"198.18.0.1", "198.18.1.2", 1000, 2000, 17};
  auto pkt = [](const Flow& g) {
    PacketBuilder p;
    p.eth().ipv4(g.src, g.dst);
    return (g.proto == 6 ? p.tcp(g.sport, g.dport) : p.udp(g.sport, g.dport)).build();
  };
  std::vector<std::pair<std::string, Flow>> others = {
      {"other source address", {"198.18.0.3", "198.18.1.2", 1000, 2000, 17}},
      {"other destination address", {"198.18.0.1", "198.18.1.3", 1000, 2000, 17}},
      {"other source port", {"198.18.0.1", "198.18.1.2", 1001, 2000, 17}},
      {"other destination port", {"198.18.0.1", "198.18.1.2", 1000, 2001, 17}},
      {"other protocol", {"198.18.0.1", "198.18.1.2", 1000, 2000, 6}},
      {"ports swapped but not addresses", {"198.18.0.1", "198.18.1.2", 2000, 1000, 17}},
  };
  for (const auto& [desc, g] : others) {
    Row r{desc, pkt(g), {}, XDP_PASS, &gpo_xdp_stats::no_agent_pass};
    r.setup.cached = f;
    check(r);
  }
}

TEST_F(XdpFilterTest, PolicyTable) {
  const Flow f{"198.18.0.1", "198.18.1.2", 40000, 80, 6};
  auto tcp = PacketBuilder().eth().ipv4(f.src, f.dst).tcp(f.sport, f.dport).payload("hello").build();
  auto arp = PacketBuilder().eth({2, 0, 0, 0, 0, 1}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0x0806)
                 .payload(std::vector<uint8_t>(28, 0)).build();
  auto vlan_arp = PacketBuilder().eth().vlan(3).payload(std::vector<uint8_t>(28, 0)).build();
  auto three_tags = PacketBuilder().eth().vlan(1, 0x88a8).vlan(2, 0x8100).vlan(3).ipv4(f.src, f.dst)
                        .tcp(f.sport, f.dport).build();
  auto frag4 = PacketBuilder().eth().ipv4(f.src, f.dst).ipv4_frag(1480, false).ip_proto(6)
                   .payload(std::string(64, 'x')).build();
  auto frag6 = PacketBuilder().eth().ipv6("2001:db8::1", "2001:db8::2").ipv6_ext(gpo::test::kFragment, 8, 1448, true)
                   .ip_proto(17).payload(std::string(64, 'x')).build();
  auto lldp = PacketBuilder().eth({2, 0, 0, 0, 0, 1}, {0x01, 0x80, 0xc2, 0, 0, 0x0e}, 0x88cc)
                  .payload(std::vector<uint8_t>(32, 0)).build();
  // First fragments: whole L4 header (a fragment, to the agent), or too short.
  auto first4 = PacketBuilder().eth().ipv4(f.src, f.dst).ipv4_frag(0, true).tcp(f.sport, f.dport)
                    .payload(std::string(64, 'x')).build();
  auto first6 = PacketBuilder().eth().ipv6("2001:db8::1", "2001:db8::2").ipv6_ext(gpo::test::kFragment, 8, 0, true)
                    .udp(1000, 2000).payload(std::string(64, 'x')).build();
  auto tiny4 = PacketBuilder().eth().ipv4(f.src, f.dst).ipv4_frag(0, true).ip_proto(6)
                   .payload(std::string(8, 'x')).build();  // 8 bytes of a 20-byte TCP header
  // The full TCP header in the frame, but the IP length says 8 bytes of it:
  // Ethernet padding must not count as the header.
  auto tiny4_padded = PacketBuilder().eth().ipv4(f.src, f.dst).ipv4_frag(0, true).tcp(f.sport, f.dport).build();
  tiny4_padded[14 + 2] = 0;
  tiny4_padded[14 + 3] = 20 + 8;  // total length: IP header + 8 bytes
  auto tiny6 = PacketBuilder().eth().ipv6("2001:db8::1", "2001:db8::2").ipv6_ext(gpo::test::kFragment, 8, 0, true)
                   .ip_proto(17).payload(std::string(4, 'x')).build();  // half a UDP header
  auto seven_ext = [&] {
    PacketBuilder p;
    p.eth().ipv6("2001:db8::1", "2001:db8::2");
    for (int i = 0; i < 7; i++) p.ipv6_ext(gpo::test::kDestOpts, 8);
    return p.udp(1, 2).build();
  }();
  auto bad_ihl = tcp;
  bad_ihl[14] = 0x44;  // IHL 4 (< 5)
  auto bad_version = tcp;
  bad_version[14] = 0x65;  // ethertype IPv4, version 6
  auto bad_doff = tcp;
  bad_doff[14 + 20 + 12] = 0x40;  // TCP data offset 4 (< 5)
  auto doff_beyond = PacketBuilder().eth().ipv4(f.src, f.dst).tcp(f.sport, f.dport).build();
  doff_beyond[14 + 20 + 12] = 0xf0;  // announces 60 bytes of TCP header, 20 present

  auto cached = [&](uint8_t action, bool inl = false, bool peer = false) {
    MapSetup s;
    s.cached = f;
    s.cached_action = action;
    s.inline_mode = inl;
    s.peer_port = peer;
    return s;
  };
  auto policies = [](uint8_t fail, uint8_t unparsed) {
    MapSetup s;
    s.fail_policy = fail;
    s.unparsed_policy = unparsed;
    return s;
  };
  auto frag_drop = [] {
    MapSetup s;
    s.frag_policy = GPO_FRAG_DROP;
    return s;
  };
  auto cached_first = [&] {  // the TCP flow of first4, cached drop; fail-open
    MapSetup s;
    s.cached = f;
    return s;
  };
  auto cached_first6 = [&] {  // the UDP flow of first6, cached pass; fail-closed
    MapSetup s;
    s.cached = Flow{"2001:db8::1", "2001:db8::2", 1000, 2000, 17};
    s.cached_action = GPO_ACT_PASS;
    s.fail_policy = GPO_ACT_DROP;
    return s;
  };
  auto inline_peer = [] {
    MapSetup s;
    s.inline_mode = true;
    s.peer_port = true;
    s.fail_policy = s.unparsed_policy = GPO_ACT_DROP;
    return s;
  };
  auto inline_open = [] {
    MapSetup s;
    s.inline_mode = true;
    s.peer_port = true;
    return s;
  };
  auto inspect_closed = [&] {
    MapSetup s = cached(GPO_ACT_INSPECT);
    s.fail_policy = GPO_ACT_DROP;
    return s;
  };
  auto inline_no_peer = [] {
    MapSetup s;
    s.inline_mode = true;
    return s;
  };
  auto non_ip_drop = [] {
    MapSetup s;
    s.non_ip_policy = GPO_ACT_DROP;
    return s;
  };
  const auto P = GPO_ACT_PASS, D = GPO_ACT_DROP;

  std::vector<Row> rows = {
      {"cache hit, drop", tcp, cached(GPO_ACT_DROP), XDP_DROP, &gpo_xdp_stats::cache_drop},
      {"cache hit, pass, host mode", tcp, cached(GPO_ACT_PASS), XDP_PASS, &gpo_xdp_stats::cache_pass},
      {"cache hit, alert delivers like pass", tcp, cached(GPO_ACT_ALERT), XDP_PASS, &gpo_xdp_stats::cache_pass},
      {"cache hit, pass, inline mode: DEVMAP redirect to the peer", tcp, cached(GPO_ACT_PASS, true, true), XDP_REDIRECT,
       &gpo_xdp_stats::cache_redirect},
      {"cache hit, alert, inline mode: redirect", tcp, cached(GPO_ACT_ALERT, true, true), XDP_REDIRECT,
       &gpo_xdp_stats::cache_redirect},
      {"cache hit, drop, inline mode", tcp, cached(GPO_ACT_DROP, true, true), XDP_DROP, &gpo_xdp_stats::cache_drop},
      {"cache hit, pass, inline mode without a peer entry: up the stack", tcp, cached(GPO_ACT_PASS, true, false),
       XDP_PASS, &gpo_xdp_stats::cache_pass},
      {"miss, no socket, fail-open", tcp, policies(P, P), XDP_PASS, &gpo_xdp_stats::no_agent_pass},
      {"miss, no socket, fail-open, inline mode: forwarded to the peer (an inline device that passes forwards)", tcp,
       inline_open(), XDP_REDIRECT, &gpo_xdp_stats::no_agent_pass},
      {"cache hit, under inspection (GPO_ACT_INSPECT), no socket: a miss, fail-closed", tcp, inspect_closed(),
       XDP_DROP, &gpo_xdp_stats::no_agent_drop},
      {"miss, no socket, fail-closed", tcp, policies(D, P), XDP_DROP, &gpo_xdp_stats::no_agent_drop},
      {"miss, no socket, fail-closed, unparsed pass does not matter", tcp, policies(D, P), XDP_DROP,
       &gpo_xdp_stats::no_agent_drop},
      {"ARP passes even fail-closed with unparsed drop", arp, policies(D, D), XDP_PASS, &gpo_xdp_stats::non_ip_pass},
      {"VLAN-tagged non-IP passes", vlan_arp, policies(D, D), XDP_PASS, &gpo_xdp_stats::non_ip_pass},
      {"three VLAN tags: parse failure, pass", three_tags, policies(P, P), XDP_PASS, &gpo_xdp_stats::parse_fail_pass},
      {"three VLAN tags: parse failure, drop", three_tags, policies(P, D), XDP_DROP, &gpo_xdp_stats::parse_fail_drop},
      // Fragments go to the agent (reassembly) whatever the cache says; with
      // no agent the fail policy decides them like any miss.
      {"IPv4 non-first fragment, no agent, fail-open", frag4, policies(P, D), XDP_PASS, &gpo_xdp_stats::no_agent_pass},
      {"IPv4 non-first fragment, no agent, fail-closed", frag4, policies(D, P), XDP_DROP,
       &gpo_xdp_stats::no_agent_drop},
      {"IPv6 non-first fragment, no agent, fail-closed", frag6, policies(D, P), XDP_DROP,
       &gpo_xdp_stats::no_agent_drop},
      {"IPv4 non-first fragment, fragment policy drop", frag4, frag_drop(), XDP_DROP, &gpo_xdp_stats::frag_drop},
      {"IPv6 non-first fragment, fragment policy drop", frag6, frag_drop(), XDP_DROP, &gpo_xdp_stats::frag_drop},
      {"IPv4 first fragment of a cached drop flow: still a fragment, not a cache hit", first4, cached_first(),
       XDP_PASS, &gpo_xdp_stats::no_agent_pass},
      {"IPv6 first fragment of a cached drop flow: still a fragment", first6, cached_first6(), XDP_DROP,
       &gpo_xdp_stats::no_agent_drop},
      {"IPv4 first fragment too short for the TCP header (RFC 1858): unparsed", tiny4, policies(P, D), XDP_DROP,
       &gpo_xdp_stats::parse_fail_drop},
      {"IPv4 first fragment, TCP header cut by the IP length, padded frame: unparsed", tiny4_padded,
       policies(P, D), XDP_DROP, &gpo_xdp_stats::parse_fail_drop},
      {"IPv6 first fragment too short for the UDP header (RFC 7112): unparsed", tiny6, policies(P, D), XDP_DROP,
       &gpo_xdp_stats::parse_fail_drop},
      {"IPv6 first fragment too short, unparsed policy pass", tiny6, policies(D, P), XDP_PASS,
       &gpo_xdp_stats::parse_fail_pass},
      // Non-IP frames: the non-IP policy; an inline device forwards them.
      {"ARP, inline mode: forwarded to the peer port", arp, inline_peer(), XDP_REDIRECT, &gpo_xdp_stats::non_ip_pass},
      {"VLAN-tagged ARP, inline mode: forwarded", vlan_arp, inline_peer(), XDP_REDIRECT, &gpo_xdp_stats::non_ip_pass},
      {"LLDP, non-IP policy drop", lldp, non_ip_drop(), XDP_DROP, &gpo_xdp_stats::non_ip_drop},
      {"ARP, inline mode without a peer entry: up the stack", arp, inline_no_peer(), XDP_PASS,
       &gpo_xdp_stats::non_ip_pass},
      {"IPv6 with 7 extension headers (over the bound)", seven_ext, policies(P, D), XDP_DROP,
       &gpo_xdp_stats::parse_fail_drop},
      {"IPv4 IHL < 5", bad_ihl, policies(P, D), XDP_DROP, &gpo_xdp_stats::parse_fail_drop},
      {"ethertype IPv4 carrying version 6", bad_version, policies(P, D), XDP_DROP, &gpo_xdp_stats::parse_fail_drop},
      {"TCP data offset < 5", bad_doff, policies(P, D), XDP_DROP, &gpo_xdp_stats::parse_fail_drop},
      {"TCP data offset beyond the packet", doff_beyond, policies(P, D), XDP_DROP, &gpo_xdp_stats::parse_fail_drop},
  };
  for (const auto& r : rows) check(r);
}

// Cut packets at every byte inside their headers: always a parse failure
// under the unparsed policy (both ways), never a verifier or runtime issue.
// The full headers with no payload still parse.
TEST_F(XdpFilterTest, TruncatedAtEveryHeaderBoundaryIsAParseFailure) {
  std::vector<std::pair<std::string, PacketBuilder>> packets = {
      {"QinQ IPv4(options) TCP(options)",
       PacketBuilder().eth().vlan(1, 0x88a8).vlan(2).ipv4("198.18.0.1", "198.18.0.2", 12).tcp(1, 2, 0x02, 8).payload("p")},
      {"VLAN IPv6 ext headers UDP",
       PacketBuilder().eth().vlan(9).ipv6("2001:db8::1", "2001:db8::2").ipv6_ext(gpo::test::kHopByHop, 16)
           .ipv6_ext(gpo::test::kAuth, 12).ipv6_ext(gpo::test::kFragment).udp(3, 4).payload("p")},
      {"IPv4 ICMP", PacketBuilder().eth().ipv4("198.18.0.1", "198.18.0.2").icmp().payload("p")},
      {"IPv6 ICMPv6", PacketBuilder().eth().ipv6("2001:db8::1", "2001:db8::2").icmpv6().payload("p")},
  };
  for (const auto& [desc, b] : packets) {
    auto full = b.build();
    auto bounds = b.boundaries();
    size_t headers_end = bounds.back().offset;  // where the payload starts
    ASSERT_EQ(bounds.back().layer, "payload");
    std::string layers;
    for (const auto& bd : bounds) layers += bd.layer + "@" + std::to_string(bd.offset) + " ";
    for (uint8_t policy : {GPO_ACT_PASS, GPO_ACT_DROP}) {
      for (size_t len = 0; len < headers_end; len++) {
        std::vector<uint8_t> cut(full.begin(), full.begin() + len);
        SCOPED_TRACE(desc + " cut at " + std::to_string(len) + " [" + layers + "] unparsed " +
                     gpo_action_name(policy));
        reset();
        MapSetup ms;
        ms.unparsed_policy = policy;
        filter_->set_config(config_of(ms));
        auto run = xdp_test_run(filter_->filter_prog_fd(), cut);
        if (len < 14) {
          // The kernel refuses test frames shorter than an Ethernet header
          // (EINVAL) before our program runs; real drivers never deliver them.
          EXPECT_NE(run.rc, 0);
          continue;
        }
        ASSERT_EQ(run.rc, 0) << strerror(run.err);
        EXPECT_EQ(run.action, policy == GPO_ACT_DROP ? XDP_DROP : XDP_PASS);
        expect_only(policy == GPO_ACT_DROP ? &gpo_xdp_stats::parse_fail_drop : &gpo_xdp_stats::parse_fail_pass,
                    cut.size());
        if (HasFailure()) return;
      }
    }
    // Headers complete, payload cut away: parses, a plain miss.
    reset();
    std::vector<uint8_t> headers(full.begin(), full.begin() + headers_end);
    auto run = xdp_test_run(filter_->filter_prog_fd(), headers);
    ASSERT_EQ(run.rc, 0);
    expect_only(&gpo_xdp_stats::no_agent_pass, headers.size());
  }
}

TEST_F(XdpFilterTest, HitsCountAndLastSeenAdvance) {
  Flow f{"198.18.0.1", "198.18.1.2", 5000, 6000, 17};
  auto fwd = PacketBuilder().eth().ipv4(f.src, f.dst).udp(f.sport, f.dport).payload("abc").build();
  auto rev = PacketBuilder().eth().ipv4(f.dst, f.src).udp(f.dport, f.sport).payload("abcdef").build();
  filter_->install_verdict(key_of(f), GPO_ACT_PASS, 42);
  auto key = key_of(f);
  gpo_flow_verdict v{};
  ASSERT_EQ(bpf_map_lookup_elem(filter_->flows_fd(), &key, &v), 0);
  EXPECT_EQ(v.hits, 0u);
  EXPECT_EQ(v.rule_id, 42u);
  uint64_t installed = v.last_seen_ns;
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t before = uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
  EXPECT_GE(before, installed);

  for (int i = 0; i < 3; i++) ASSERT_EQ(xdp_test_run(filter_->filter_prog_fd(), fwd).action, XDP_PASS);
  ASSERT_EQ(xdp_test_run(filter_->filter_prog_fd(), rev).action, XDP_PASS);
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t after = uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;

  ASSERT_EQ(bpf_map_lookup_elem(filter_->flows_fd(), &key, &v), 0);
  EXPECT_EQ(v.hits, 4u);
  EXPECT_EQ(v.rule_id, 42u);
  EXPECT_EQ(v.action, GPO_ACT_PASS);
  EXPECT_GE(v.last_seen_ns, before);  // bpf_ktime_get_ns() and CLOCK_MONOTONIC are one clock
  EXPECT_LE(v.last_seen_ns, after);
  auto st = filter_->read_stats();
  EXPECT_EQ(st.cache_pass.packets, 4u);
  EXPECT_EQ(st.cache_pass.bytes, 3 * fwd.size() + rev.size());
}

uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// Idle timeouts per protocol: an entry last seen longer ago than its
// protocol's timeout is removed and the packet is a miss; a fresh one hits.
TEST_F(XdpFilterTest, IdleEntriesExpirePerProtocol) {
  const Flow udp{"198.18.0.1", "198.18.1.2", 5000, 53, 17}, tcp{"198.18.0.1", "198.18.1.2", 5001, 80, 6};
  auto udp_pkt = PacketBuilder().eth().ipv4(udp.src, udp.dst).udp(udp.sport, udp.dport).build();
  auto tcp_pkt = PacketBuilder().eth().ipv4(tcp.src, tcp.dst).tcp(tcp.sport, tcp.dport, 0x10).build();
  gpo_xdp_config c = config_of({});
  c.udp_timeout_ns = 2'000'000'000ull;  // 2 s
  c.tcp_timeout_ns = 0;                  // never
  filter_->set_config(c);
  auto age = [&](const Flow& f, uint64_t ago_ns) {
    filter_->install_verdict(key_of(f), GPO_ACT_DROP, 9);
    auto k = key_of(f);
    gpo_flow_verdict v{};
    ASSERT_EQ(bpf_map_lookup_elem(filter_->flows_fd(), &k, &v), 0);
    v.last_seen_ns = mono_ns() - ago_ns;
    ASSERT_EQ(bpf_map_update_elem(filter_->flows_fd(), &k, &v, BPF_EXIST), 0);
  };
  age(udp, 1'000'000'000ull);  // 1 s idle: within 2 s
  EXPECT_EQ(xdp_test_run(filter_->filter_prog_fd(), udp_pkt).action, XDP_DROP);
  age(udp, 3'000'000'000ull);  // 3 s idle: expired
  EXPECT_EQ(xdp_test_run(filter_->filter_prog_fd(), udp_pkt).action, XDP_PASS);  // miss, fail-open
  auto k = key_of(udp);
  gpo_flow_verdict v{};
  EXPECT_NE(bpf_map_lookup_elem(filter_->flows_fd(), &k, &v), 0) << "the expired entry is removed";
  age(tcp, 3600'000'000'000ull);  // an hour idle, TCP timeout 0 = never
  EXPECT_EQ(xdp_test_run(filter_->filter_prog_fd(), tcp_pkt).action, XDP_DROP);
  auto st = filter_->read_stats();
  EXPECT_EQ(st.cache_drop.packets, 2u);
  EXPECT_EQ(st.no_agent_pass.packets, 1u);
  EXPECT_EQ(st.flow_expired.packets, 1u);
}

// TCP: FIN and RST are noted on the entry; a closed flow expires after the
// closed timeout, and a new SYN on its tuple is a new flow (a miss).
TEST_F(XdpFilterTest, TcpFinRstCloseTheFlowAndANewSynReopensIt) {
  const Flow f{"198.18.0.1", "198.18.1.2", 40000, 80, 6};
  auto seg = [&](bool from_client, uint8_t flags) {
    PacketBuilder p;
    if (from_client) p.eth().ipv4(f.src, f.dst).tcp(f.sport, f.dport, flags);
    else p.eth().ipv4(f.dst, f.src).tcp(f.dport, f.sport, flags);
    return p.build();
  };
  // Endpoint a of the key is 198.18.0.1 (the client here).
  auto k = key_of(f);
  ASSERT_EQ(std::memcmp(k.addr_a, addr16(f.src).data(), 16), 0);
  gpo_xdp_config c = config_of({});
  c.tcp_timeout_ns = 3600'000'000'000ull;
  c.tcp_closed_timeout_ns = 2'000'000'000ull;  // short: a guest just booted has little uptime to go back in
  filter_->set_config(c);
  filter_->install_verdict(k, GPO_ACT_PASS, 5, GPO_FLOW_CLIENT_A);
  auto flags = [&] {
    gpo_flow_verdict v{};
    EXPECT_EQ(bpf_map_lookup_elem(filter_->flows_fd(), &k, &v), 0);
    return v.flags;
  };
  EXPECT_EQ(xdp_test_run(filter_->filter_prog_fd(), seg(true, 0x10)).action, XDP_PASS);
  EXPECT_EQ(flags(), uint64_t(GPO_FLOW_CLIENT_A));
  EXPECT_EQ(xdp_test_run(filter_->filter_prog_fd(), seg(true, 0x11)).action, XDP_PASS);  // FIN+ACK from a
  EXPECT_EQ(flags(), uint64_t(GPO_FLOW_CLIENT_A | GPO_FLOW_FIN_A));
  EXPECT_FALSE(GPO_FLOW_CLOSED(flags()));
  // A SYN while only half closed is just a packet of the flow.
  EXPECT_EQ(xdp_test_run(filter_->filter_prog_fd(), seg(true, 0x02)).action, XDP_PASS);
  EXPECT_EQ(filter_->read_stats().cache_pass.packets, 3u);
  EXPECT_EQ(xdp_test_run(filter_->filter_prog_fd(), seg(false, 0x11)).action, XDP_PASS);  // FIN+ACK from b
  EXPECT_TRUE(GPO_FLOW_CLOSED(flags()));
  // The last ACK still belongs to the closed flow.
  EXPECT_EQ(xdp_test_run(filter_->filter_prog_fd(), seg(true, 0x10)).action, XDP_PASS);
  EXPECT_EQ(filter_->read_stats().cache_pass.packets, 5u);
  // A new connection on the same tuple: decided afresh (a miss; no agent: fail-open).
  EXPECT_EQ(xdp_test_run(filter_->filter_prog_fd(), seg(true, 0x02)).action, XDP_PASS);
  auto st = filter_->read_stats();
  EXPECT_EQ(st.flow_reopened.packets, 1u);
  EXPECT_EQ(st.no_agent_pass.packets, 1u);
  gpo_flow_verdict v{};
  EXPECT_NE(bpf_map_lookup_elem(filter_->flows_fd(), &k, &v), 0);

  // RST from either side closes at once; the closed timeout then applies.
  filter_->install_verdict(k, GPO_ACT_DROP, 5, GPO_FLOW_CLIENT_A);
  EXPECT_EQ(xdp_test_run(filter_->filter_prog_fd(), seg(false, 0x04)).action, XDP_DROP);
  EXPECT_TRUE(GPO_FLOW_CLOSED(flags()));
  ASSERT_EQ(bpf_map_lookup_elem(filter_->flows_fd(), &k, &v), 0);
  v.last_seen_ns = mono_ns() - 5'000'000'000ull;  // past the closed timeout, far within the open one
  ASSERT_EQ(bpf_map_update_elem(filter_->flows_fd(), &k, &v, BPF_EXIST), 0);
  EXPECT_EQ(xdp_test_run(filter_->filter_prog_fd(), seg(true, 0x10)).action, XDP_PASS);  // expired: miss
  EXPECT_EQ(filter_->read_stats().flow_expired.packets, 1u);
}

// Installing the verdict a flow already has (each queued packet of a flow
// carries it) keeps the hits and flags XDP collected.
TEST_F(XdpFilterTest, ReinstallingTheSameVerdictKeepsHitsAndFlags) {
  const Flow f{"198.18.0.1", "198.18.1.2", 40001, 80, 6};
  auto fin = PacketBuilder().eth().ipv4(f.src, f.dst).tcp(f.sport, f.dport, 0x11).build();
  auto k = key_of(f);
  EXPECT_TRUE(filter_->install_verdict(k, GPO_ACT_PASS, 3, GPO_FLOW_CLIENT_A));
  for (int i = 0; i < 3; i++) ASSERT_EQ(xdp_test_run(filter_->filter_prog_fd(), fin).action, XDP_PASS);
  EXPECT_FALSE(filter_->install_verdict(k, GPO_ACT_PASS, 3, GPO_FLOW_CLIENT_A));
  gpo_flow_verdict v{};
  ASSERT_EQ(bpf_map_lookup_elem(filter_->flows_fd(), &k, &v), 0);
  EXPECT_EQ(v.hits, 3u);
  EXPECT_EQ(v.flags, uint64_t(GPO_FLOW_CLIENT_A | GPO_FLOW_FIN_A));
  // Another verdict replaces it.
  EXPECT_TRUE(filter_->install_verdict(k, GPO_ACT_DROP, 4, GPO_FLOW_CLIENT_A));
  ASSERT_EQ(bpf_map_lookup_elem(filter_->flows_fd(), &k, &v), 0);
  EXPECT_EQ(v.action, GPO_ACT_DROP);
  EXPECT_EQ(v.hits, 0u);
}

TEST_F(XdpFilterTest, FlushEmptiesTheCache) {
  for (uint16_t p = 1; p <= 50; p++) filter_->install_verdict(key_of({"198.18.0.1", "198.18.0.2", p, 80, 6}), GPO_ACT_DROP, p);
  EXPECT_EQ(filter_->flush_flows(), 50u);
  gpo_flow_key k;
  EXPECT_NE(bpf_map_get_next_key(filter_->flows_fd(), nullptr, &k), 0);
}

// xdp_inject (the agent's re-injection program): pass in host mode, out of
// the peer port in inline mode.
TEST_F(XdpFilterTest, InjectPassesInHostModeAndRedirectsInline) {
  auto pkt = PacketBuilder().eth().ipv4("198.18.0.1", "198.18.0.2").udp(1, 2).build();
  auto run = xdp_test_run(filter_->inject_prog_fd(), pkt);
  ASSERT_EQ(run.rc, 0);
  EXPECT_EQ(run.action, XDP_PASS);
  MapSetup s;
  s.inline_mode = true;
  s.peer_port = true;
  apply(s);
  run = xdp_test_run(filter_->inject_prog_fd(), pkt);
  ASSERT_EQ(run.rc, 0);
  EXPECT_EQ(run.action, XDP_REDIRECT);
  // Injection is not a filtering decision: no counter moves.
  auto st = filter_->read_stats();
  for (const auto& n : kCounters) EXPECT_EQ((st.*n.c).packets, 0u) << n.name;
}

}  // namespace
