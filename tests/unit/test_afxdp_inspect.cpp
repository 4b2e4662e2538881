// The packet path's user-space guards, without a kernel: IP fragment
// reassembly (ip_reassembly.h), TCP stream inspection (flow_inspector.h) and
// which cached verdicts a rule reload invalidates (rule_snapshot.h).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "afxdp/flow_inspector.h"
#include "afxdp/ip_reassembly.h"
#include "afxdp/rule_snapshot.h"
#include "common/packet_builder.h"
#include "kernels/classify/classify_cpu.h"

namespace {

using gpo::afxdp::Datagram;
using gpo::afxdp::FlowInspector;
using gpo::afxdp::FragmentReassembler;
using gpo::test::PacketBuilder;
using R = FragmentReassembler::Result;

constexpr uint64_t kSec = 1000000000ull;

// ---- IP fragments -------------------------------------------------------------

// The UDP datagram (header + payload) the fragment tests cut up.
std::vector<uint8_t> udp_datagram(const std::string& payload) {
  auto whole = PacketBuilder().eth().ipv4("198.18.0.1", "198.18.0.2").udp(1000, 2000).payload(payload).build();
  return std::vector<uint8_t>(whole.begin() + 14 + 20, whole.end());
}

std::vector<uint8_t> frag4(const std::vector<uint8_t>& l4, size_t off, size_t len, bool more) {
  std::vector<uint8_t> piece(l4.begin() + off, l4.begin() + off + len);
  return PacketBuilder().eth().ipv4("198.18.0.1", "198.18.0.2").ipv4_frag(uint16_t(off), more).ip_proto(17)
      .payload(piece).build();
}

uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }

TEST(IpReassembly, InOrderAndOutOfOrderGiveTheWholeDatagram) {
  const auto l4 = udp_datagram(std::string(40, 'a') + "EVIL" + std::string(20, 'b'));
  for (bool reverse : {false, true}) {
    FragmentReassembler r;
    std::vector<std::vector<uint8_t>> frags = {frag4(l4, 0, 24, true), frag4(l4, 24, 24, true),
                                               frag4(l4, 48, l4.size() - 48, false)};
    if (reverse) std::swap(frags[0], frags[2]);
    Datagram d;
    EXPECT_EQ(r.add(frags[0].data(), uint32_t(frags[0].size()), 0, d), R::kHeld);
    EXPECT_EQ(r.add(frags[1].data(), uint32_t(frags[1].size()), 0, d), R::kHeld);
    ASSERT_EQ(r.add(frags[2].data(), uint32_t(frags[2].size()), 0, d), R::kComplete);
    const uint8_t* ip = d.frame.data() + 14;
    EXPECT_EQ(rd16(ip + 2), 20 + l4.size()) << "total length";
    EXPECT_EQ(rd16(ip + 6) & 0x3fff, 0) << "no MF, no offset";
    uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2) sum += rd16(ip + i);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    EXPECT_EQ(sum, 0xffffu) << "header checksum";
    EXPECT_EQ(std::vector<uint8_t>(d.frame.begin() + 34, d.frame.end()), l4);
    EXPECT_EQ(d.fragments, frags) << "the fragments, as they came, for delivery";
    EXPECT_EQ(r.datagrams_held(), 0u);
    EXPECT_EQ(r.bytes_held(), 0u);
    EXPECT_EQ(r.counters().datagrams, 1u);
  }
}

TEST(IpReassembly, ExactDuplicateIsNotDeliveredTwice) {
  const auto l4 = udp_datagram(std::string(30, 'x'));
  FragmentReassembler r;
  auto a = frag4(l4, 0, 16, true), b = frag4(l4, 16, l4.size() - 16, false);
  Datagram d;
  EXPECT_EQ(r.add(a.data(), uint32_t(a.size()), 0, d), R::kHeld);
  EXPECT_EQ(r.add(a.data(), uint32_t(a.size()), 0, d), R::kHeld);
  ASSERT_EQ(r.add(b.data(), uint32_t(b.size()), 0, d), R::kComplete);
  EXPECT_EQ(d.fragments.size(), 2u);
  EXPECT_EQ(r.counters().duplicates, 1u);
}

TEST(IpReassembly, OverlapDropsTheDatagramUntilTheTimeout) {
  const auto l4 = udp_datagram(std::string(40, 'x'));
  FragmentReassembler r({.timeout_ns = 10 * kSec});
  auto a = frag4(l4, 0, 24, true);
  auto rewrite = frag4(udp_datagram(std::string(40, 'y')), 16, 16, true);  // bytes 16..32, different
  auto last = frag4(l4, 24, l4.size() - 24, false);
  Datagram d;
  EXPECT_EQ(r.add(a.data(), uint32_t(a.size()), 0, d), R::kHeld);
  EXPECT_EQ(r.add(rewrite.data(), uint32_t(rewrite.size()), 0, d), R::kDropped);
  EXPECT_EQ(r.add(last.data(), uint32_t(last.size()), 1 * kSec, d), R::kDropped) << "poisoned until the timeout";
  EXPECT_EQ(r.counters().overlaps, 1u);
  EXPECT_EQ(r.counters().dropped_fragments, 3u);
  EXPECT_EQ(r.bytes_held(), 0u);
  r.expire(11 * kSec);
  EXPECT_EQ(r.datagrams_held(), 0u);
  EXPECT_EQ(r.add(a.data(), uint32_t(a.size()), 12 * kSec, d), R::kHeld);
  EXPECT_EQ(r.add(last.data(), uint32_t(last.size()), 12 * kSec, d), R::kComplete);
}

TEST(IpReassembly, BoundsHoldIncompleteTimeoutsBadLengthsAndMemcap) {
  const auto l4 = udp_datagram(std::string(40, 'x'));
  Datagram d;
  {
    FragmentReassembler r({.timeout_ns = 5 * kSec});
    auto a = frag4(l4, 0, 24, true);
    EXPECT_EQ(r.add(a.data(), uint32_t(a.size()), 0, d), R::kHeld);
    r.expire(4 * kSec);
    EXPECT_EQ(r.datagrams_held(), 1u);
    r.expire(6 * kSec);
    EXPECT_EQ(r.datagrams_held(), 0u);
    EXPECT_EQ(r.counters().timeouts, 1u);
    EXPECT_EQ(r.counters().dropped_fragments, 1u);
  }
  {
    FragmentReassembler r;
    auto odd = frag4(l4, 0, 20, true);  // a middle fragment must be a multiple of 8 long
    EXPECT_EQ(r.add(odd.data(), uint32_t(odd.size()), 0, d), R::kDropped);
    EXPECT_EQ(r.counters().invalid, 1u);
  }
  {
    FragmentReassembler r;
    auto last = frag4(l4, 24, l4.size() - 24, false);
    auto beyond = frag4(udp_datagram(std::string(80, 'x')), 64, 16, true);  // past the end the last one set
    EXPECT_EQ(r.add(last.data(), uint32_t(last.size()), 0, d), R::kHeld);
    EXPECT_EQ(r.add(beyond.data(), uint32_t(beyond.size()), 0, d), R::kDropped);
  }
  {
    FragmentReassembler r({.memcap = 60});  // the fragment's frame (58 bytes) and its piece (24) do not fit
    auto a = frag4(l4, 0, 24, true);
    EXPECT_EQ(r.add(a.data(), uint32_t(a.size()), 0, d), R::kDropped);
    EXPECT_EQ(r.counters().over_limit, 1u);
  }
}

TEST(IpReassembly, Ipv6FragmentsLoseTheirFragmentHeader) {
  const std::string payload(40, 'v');
  auto whole = PacketBuilder().eth().ipv6("2001:2::1", "2001:2::2").ipv6_ext(gpo::test::kDestOpts, 8)
                   .udp(1000, 2000).payload(payload).build();
  const std::vector<uint8_t> l4(whole.begin() + 14 + 40 + 8, whole.end());
  auto frag6 = [&](size_t off, size_t len, bool more) {
    return PacketBuilder().eth().ipv6("2001:2::1", "2001:2::2").ipv6_ext(gpo::test::kDestOpts, 8)
        .ipv6_ext(gpo::test::kFragment, 8, uint16_t(off), more).ip_proto(17)
        .payload(std::vector<uint8_t>(l4.begin() + off, l4.begin() + off + len)).build();
  };
  FragmentReassembler r;
  auto a = frag6(0, 24, true), b = frag6(24, l4.size() - 24, false);
  Datagram d;
  EXPECT_EQ(r.add(b.data(), uint32_t(b.size()), 0, d), R::kHeld);
  ASSERT_EQ(r.add(a.data(), uint32_t(a.size()), 0, d), R::kComplete);
  EXPECT_EQ(d.frame, whole) << "the datagram as if it had never been fragmented";
  EXPECT_TRUE(gpo::afxdp::is_ip_fragment(a.data(), uint32_t(a.size())));
  EXPECT_FALSE(gpo::afxdp::is_ip_fragment(whole.data(), uint32_t(whole.size())));
}

// ---- TCP streams ----------------------------------------------------------------

class StreamTest : public ::testing::Test {
 protected:
  void load(const std::string& rules, gpo::afxdp::InspectorConfig cfg = {}) {
    auto path = std::filesystem::temp_directory_path() / ("gpo-inspect-" + std::to_string(getpid()) + ".rules");
    std::ofstream(path) << rules;
    std::vector<std::string> problems;
    snap_ = gpo::afxdp::load_rule_snapshot(path.string(), problems);
    std::filesystem::remove(path);
    ASSERT_TRUE(snap_) << (problems.empty() ? "" : problems[0]);
    cpu_ = std::make_unique<gpo::classify::CpuClassifier>(snap_->tables);
    insp_.reset();
    flows_ = std::make_unique<gpo::afxdp::FlowTracker>();
    insp_ = std::make_unique<FlowInspector>(*flows_, snap_, cfg);
  }

  // A segment of the client 198.18.0.1:40000 -> 198.18.0.2:80 (or the reverse).
  static std::vector<uint8_t> seg(uint32_t rel, const std::string& data, uint8_t flags = 0x18, bool to_server = true) {
    PacketBuilder p;
    if (to_server) p.eth().ipv4("198.18.0.1", "198.18.0.2").tcp(40000, 80, flags);
    else p.eth().ipv4("198.18.0.2", "198.18.0.1").tcp(80, 40000, flags);
    // ISNs 1000 (client) and 5000 (server); each side acknowledges the other's SYN.
    p.tcp_seq((to_server ? 1000u : 5000u) + rel).tcp_ack(to_server ? 5001u : 1001u);
    return p.payload(data).build();
  }

  // As the packet path does: the flow table gives the packet its flow bits,
  // the classifier decides it alone, the inspector in its flow.
  gpo::afxdp::FlowDecision push(const std::vector<uint8_t>& f, uint64_t now = 0) {
    auto parsed = gpo::classify::parse_frame(f.data(), uint32_t(f.size()));
    EXPECT_TRUE(parsed.ok());
    gpo::classify::Frame fr{f.data(), uint32_t(f.size()), flows_->observe(parsed, f.data(), now)};
    last_bits_ = fr.flow;
    auto v = cpu_->classify_parsed(fr, parsed);
    return insp_->decide(f.data(), parsed, v, fr.flow, now);
  }

  std::shared_ptr<const gpo::afxdp::RuleSnapshot> snap_;
  std::unique_ptr<gpo::classify::CpuClassifier> cpu_;
  std::unique_ptr<gpo::afxdp::FlowTracker> flows_;
  std::unique_ptr<FlowInspector> insp_;
  uint8_t last_bits_ = 0;
};

constexpr const char* kEvilRules =
    "drop tcp any any -> any 80 (content:\"EVILPATTERN\"; sid:7;)\n"
    "default pass\n";

TEST_F(StreamTest, PatternSplitAcrossSegmentsIsFound) {
  load(kEvilRules);
  auto syn = push(seg(0, "", 0x02));  // ISN 1000: data starts at 1001
  EXPECT_FALSE(syn.install);
  EXPECT_TRUE(syn.deliver);
  auto a = push(seg(1, "GET /EVIL"));
  EXPECT_TRUE(a.deliver);
  EXPECT_FALSE(a.install);
  auto b = push(seg(10, "PATTERN x"));
  EXPECT_FALSE(b.deliver);
  EXPECT_TRUE(b.install);
  EXPECT_EQ(b.action, GPO_ACT_DROP);
  EXPECT_EQ(b.rule_id, 7u);
  EXPECT_EQ(b.flags, uint64_t(GPO_FLOW_CLIENT_A)) << "198.18.0.1 sent the SYN and is endpoint a";
  EXPECT_EQ(insp_->flows(), 0u);
}

TEST_F(StreamTest, OutOfOrderSegmentIsHeldAndTheGapFillerDecides) {
  load(kEvilRules);
  push(seg(0, "", 0x02));
  auto later = push(seg(10, "PATTERN x"));
  EXPECT_TRUE(later.deliver) << "ahead of the gap: delivered and kept";
  auto filler = push(seg(1, "GET /EVIL"));
  EXPECT_FALSE(filler.deliver) << "the segment that would let the receiver read the pattern";
  EXPECT_EQ(filler.action, GPO_ACT_DROP);
  EXPECT_EQ(insp_->counters().out_of_order, 1u);
}

TEST_F(StreamTest, BytesThatDifferFromWhatWasInspectedAreDropped) {
  load(kEvilRules);
  push(seg(0, "", 0x02));
  EXPECT_TRUE(push(seg(1, "EVILPXXXXXX")).deliver);
  auto rewrite = push(seg(6, "ATTERN"));
  EXPECT_FALSE(rewrite.deliver);
  EXPECT_FALSE(rewrite.install) << "the flow stays under inspection";
  EXPECT_EQ(insp_->counters().conflicts, 1u);
  EXPECT_TRUE(push(seg(6, "XXXXXX")).deliver) << "an identical retransmission is fine";
  EXPECT_EQ(insp_->counters().retransmits, 1u);
  // Data before the first sequence number seen: never inspected, dropped.
  EXPECT_FALSE(push(seg(0, "Z")).deliver);
}

TEST_F(StreamTest, DepthPolicyKeepCachesTheLastVerdictDropCachesDrop) {
  for (auto policy : {gpo::afxdp::DepthPolicy::keep, gpo::afxdp::DepthPolicy::drop}) {
    gpo::afxdp::InspectorConfig cfg;
    cfg.depth = 30;
    cfg.depth_policy = policy;
    load(kEvilRules, cfg);
    push(seg(0, "", 0x02));
    auto a = push(seg(1, std::string(20, 'a')));
    EXPECT_FALSE(a.install);
    auto b = push(seg(21, std::string(20, 'b')));
    EXPECT_TRUE(b.install) << "past the depth";
    EXPECT_EQ(b.action, policy == gpo::afxdp::DepthPolicy::keep ? GPO_ACT_PASS : GPO_ACT_DROP);
    EXPECT_EQ(insp_->counters().depth, 1u);
  }
}

// One verdict serves both directions: a packet of the direction no content
// rule looks at must not end the inspection of the other one.
TEST_F(StreamTest, RepliesDoNotEndTheInspectionOfTheOtherDirection) {
  load(kEvilRules);
  push(seg(0, "", 0x02));
  auto synack = push(seg(0, "", 0x12, false));
  EXPECT_FALSE(synack.install) << "a SYN-ACK would have cached pass for the client's stream too";
  EXPECT_TRUE(synack.deliver);
  EXPECT_FALSE(push(seg(0, "banner", 0x18, false)).install);
  EXPECT_EQ(insp_->flows(), 1u);
  auto evil = push(seg(1, "x EVILPATTERN"));
  EXPECT_FALSE(evil.deliver);
  EXPECT_EQ(evil.rule_id, 7u);

  // A rule on what the server sends: the client's first packet does not match
  // it, and still the flow stays under inspection.
  load("drop tcp any 80 -> any any (content:\"LEAK\"; sid:9;)\ndefault pass\n");
  auto syn = push(seg(0, "", 0x02));
  EXPECT_FALSE(syn.install);
  EXPECT_TRUE(push(seg(1, "GET /", 0x18)).deliver);
  push(seg(0, "", 0x12, false));
  auto leak = push(seg(1, "the LEAK", 0x18, false));
  EXPECT_FALSE(leak.deliver);
  EXPECT_EQ(leak.rule_id, 9u);
}

// The same flow table gives the rules their flow bits and keeps the streams:
// a `flow:established,to_server` content rule sees the client's stream only
// after the handshake, the server's replies are to_client.
TEST_F(StreamTest, FlowRulesSeeTheTableDirectionAndHandshake) {
  load("drop tcp any any -> any 80 (flow:established,to_server; content:\"EVILPATTERN\"; sid:7;)\n"
       "alert tcp any 80 -> any any (flow:to_client; content:\"banner\"; sid:8;)\n"
       "default pass\n");
  namespace c = gpo::classify;
  EXPECT_FALSE(push(seg(0, "", 0x02)).install) << "rule 7 may match this flow later";
  EXPECT_EQ(last_bits_, c::kFlowToServer);
  push(seg(0, "", 0x12, false));  // SYN-ACK
  EXPECT_EQ(last_bits_, c::kFlowToClient);
  push(seg(1, "", 0x10));  // the handshake's ACK: not yet established
  EXPECT_EQ(last_bits_, c::kFlowToServer);
  auto a = push(seg(1, "GET /EVIL"));
  EXPECT_EQ(last_bits_, c::kFlowToServer | c::kFlowEstablished);
  EXPECT_TRUE(a.deliver);
  auto reply = push(seg(1, "a banner", 0x18, false));
  EXPECT_EQ(last_bits_, c::kFlowToClient | c::kFlowEstablished);
  EXPECT_EQ(reply.rule_id, 8u);
  EXPECT_EQ(reply.action, GPO_ACT_ALERT);
  EXPECT_FALSE(reply.install) << "rule 7 can still match the client's stream";
  auto b = push(seg(10, "PATTERN x"));
  EXPECT_FALSE(b.deliver);
  EXPECT_EQ(b.rule_id, 7u);
  EXPECT_TRUE(b.install);
  EXPECT_EQ(b.flags, uint64_t(GPO_FLOW_CLIENT_A)) << "the table's client: 198.18.0.1 sent the SYN";
  EXPECT_EQ(insp_->flows(), 0u);
  EXPECT_EQ(flows_->size(), 1u) << "the flow stays in the table, decided";
  auto late = push(seg(19, "more"));
  EXPECT_TRUE(late.already_decided) << "a packet on its way before the install gets the flow's verdict";
  EXPECT_FALSE(late.deliver);
  EXPECT_FALSE(late.install);

  // Before the handshake completes, the same pattern does not match rule 7.
  load("drop tcp any any -> any 80 (flow:established,to_server; content:\"EVILPATTERN\"; sid:7;)\ndefault pass\n");
  push(seg(0, "", 0x02));
  EXPECT_TRUE(push(seg(1, "EVILPATTERN")).deliver) << "not established: the SYN-ACK and ACK never came";
}

// One table: a flood of flows decided at once cannot push a flow under
// inspection out; an idle one goes, and a new SYN on a reused tuple starts over.
TEST_F(StreamTest, TheTableKeepsInspectedFlowsAndRestartsReusedTuples) {
  gpo::afxdp::InspectorConfig cfg;
  load(kEvilRules, cfg);
  insp_.reset();  // it refers to the table it inspects in: it goes first
  flows_ = std::make_unique<gpo::afxdp::FlowTracker>(gpo::afxdp::FlowTableConfig{.max_flows = 8});
  insp_ = std::make_unique<FlowInspector>(*flows_, snap_, cfg);
  push(seg(0, "", 0x02));
  push(seg(1, "GET /EVIL"));
  ASSERT_EQ(insp_->flows(), 1u);
  for (uint16_t port = 1; port <= 50; ++port) {  // UDP flows, each decided by its first packet
    auto u = PacketBuilder().eth().ipv4("198.18.0.9", "198.18.0.2").udp(port, 53).payload("q").build();
    EXPECT_TRUE(push(u).install);
  }
  EXPECT_LE(flows_->size(), 8u);
  EXPECT_EQ(insp_->flows(), 1u) << "the flood went through the plain entries";
  EXPECT_FALSE(push(seg(10, "PATTERN")).deliver) << "the stream survived the flood";

  // A new connection on the tuple (new ISN): a new flow, inspection from its start.
  auto syn2 = PacketBuilder().eth().ipv4("198.18.0.1", "198.18.0.2").tcp(40000, 80, 0x02).tcp_seq(90000).build();
  EXPECT_FALSE(push(syn2).install);
  EXPECT_FALSE(push(syn2).already_decided) << "the old drop verdict is not the new connection's";
  auto d = PacketBuilder().eth().ipv4("198.18.0.1", "198.18.0.2").tcp(40000, 80, 0x18).tcp_seq(90001)
               .payload("clean").build();
  EXPECT_TRUE(push(d).deliver);
  EXPECT_EQ(insp_->flows(), 1u);
  // Idle past the TCP timeout: the sweep forgets it and its stream bytes.
  flows_->expire(flows_->config().tcp_idle_ns + 1000);
  EXPECT_EQ(insp_->flows(), 0u);
  EXPECT_EQ(insp_->bytes_held(), 0u);
  EXPECT_EQ(flows_->size(), 0u);
}

TEST_F(StreamTest, NewRulesRescanTheStoredStream) {
  load(kEvilRules);
  push(seg(0, "", 0x02));
  EXPECT_TRUE(push(seg(1, "xx BADWORD xx")).deliver);
  auto path = std::filesystem::temp_directory_path() / ("gpo-inspect2-" + std::to_string(getpid()) + ".rules");
  std::ofstream(path) << "drop tcp any any -> any 80 (content:\"BADWORD\"; sid:8;)\n"
                         "drop tcp any any -> any 80 (content:\"EVILPATTERN\"; sid:7;)\ndefault pass\n";
  std::vector<std::string> problems;
  auto next = gpo::afxdp::load_rule_snapshot(path.string(), problems);
  std::filesystem::remove(path);
  ASSERT_TRUE(next);
  insp_->set_rules(next);
  snap_ = next;
  cpu_ = std::make_unique<gpo::classify::CpuClassifier>(next->tables);
  auto d = push(seg(14, "more"));
  EXPECT_EQ(d.action, GPO_ACT_DROP) << "the pattern was already in the stream";
  EXPECT_EQ(d.rule_id, 8u);
}

// ---- reload: which cached verdicts could change -----------------------------------

std::shared_ptr<const gpo::afxdp::RuleSnapshot> snapshot(const std::string& text) {
  auto path = std::filesystem::temp_directory_path() / ("gpo-snap-" + std::to_string(getpid()) + ".rules");
  std::ofstream(path) << text;
  std::vector<std::string> problems;
  auto s = gpo::afxdp::load_rule_snapshot(path.string(), problems);
  std::filesystem::remove(path);
  return s;
}

TEST(RuleReload, OnlyVerdictsTheNewRulesCouldChangeAreInvalidated) {
  auto base = snapshot("drop udp any any -> any 7001 (sid:1;)\n"
                       "drop tcp any any -> any 80 (content:\"EVIL\"; sid:2;)\ndefault pass\n");
  ASSERT_TRUE(base);
  auto key = [](uint16_t dport, uint8_t proto) {
    uint8_t s[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1};
    uint8_t d[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 2};
    gpo_flow_key k;
    gpo_flow_key_make(&k, s, d, htons(40000), htons(dport), proto);
    return k;
  };
  gpo_flow_verdict by_default{}, by_port{}, by_content{};
  by_port.action = by_content.action = GPO_ACT_DROP;
  by_port.rule_id = 1;
  by_content.rule_id = 2;
  using gpo::afxdp::verdict_could_change;
  // The same file: nothing changes.
  EXPECT_FALSE(verdict_could_change(*base, *base, key(7000, 17), by_default));
  EXPECT_FALSE(verdict_could_change(*base, *base, key(80, 6), by_content));
  // A new rule for another port: the flows it does not match keep their verdicts.
  auto other = snapshot("drop udp any any -> any 9000 (sid:9;)\ndrop udp any any -> any 7001 (sid:1;)\n"
                        "drop tcp any any -> any 80 (content:\"EVIL\"; sid:2;)\ndefault pass\n");
  EXPECT_FALSE(verdict_could_change(*base, *other, key(7000, 17), by_default));
  EXPECT_FALSE(verdict_could_change(*base, *other, key(7001, 17), by_port));
  EXPECT_TRUE(verdict_could_change(*base, *other, key(9000, 17), by_default));
  // An earlier rule that now matches, a changed content, another default.
  auto earlier = snapshot("pass udp any any -> any 7001 (sid:5;)\ndrop udp any any -> any 7001 (sid:1;)\n"
                          "drop tcp any any -> any 80 (content:\"EVIL\"; sid:2;)\ndefault pass\n");
  EXPECT_TRUE(verdict_could_change(*base, *earlier, key(7001, 17), by_port));
  auto content = snapshot("drop udp any any -> any 7001 (sid:1;)\n"
                          "drop tcp any any -> any 80 (content:\"WICKED\"; sid:2;)\ndefault pass\n");
  EXPECT_TRUE(verdict_could_change(*base, *content, key(80, 6), by_content));
  EXPECT_FALSE(verdict_could_change(*base, *content, key(7001, 17), by_port));
  auto strict = snapshot("drop udp any any -> any 7001 (sid:1;)\n"
                         "drop tcp any any -> any 80 (content:\"EVIL\"; sid:2;)\ndefault drop\n");
  EXPECT_TRUE(verdict_could_change(*base, *strict, key(7000, 17), by_default));
  EXPECT_FALSE(verdict_could_change(*base, *strict, key(7001, 17), by_port));
  // The decider removed.
  auto gone = snapshot("drop tcp any any -> any 80 (content:\"EVIL\"; sid:2;)\ndefault pass\n");
  EXPECT_TRUE(verdict_could_change(*base, *gone, key(7001, 17), by_port));
}

}  // namespace
