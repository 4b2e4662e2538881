// FlowTracker (agent/afxdp/flow_state.h): the FlowBits each packet of a flow
// gets, on hand-built exchanges checked against Suricata's rules for
// direction and `established`; then the classifier with `flow:` rules on them.
#include <gtest/gtest.h>

#include "afxdp/flow_state.h"
#include "kernels/classify/classify_cpu.h"
#include "rules/compiler.h"
#include "rules/parser.h"
#include "unit/rules_frames.h"

using gpo::afxdp::FlowTracker;
using gpo::test::build_frame;
using gpo::test::FrameSpec;
using gpo::test::ip16;
namespace cls = gpo::classify;

namespace {

constexpr uint8_t S = 0x02, SA = 0x12, A = 0x10, PA = 0x18, R = 0x04, FA = 0x11;
constexpr uint8_t kToServer = cls::kFlowToServer, kToClient = cls::kFlowToClient, kEst = cls::kFlowEstablished;

// client 198.18.0.1:40000 <-> server 198.18.0.2:80
FrameSpec tcp(bool from_client, uint8_t flags, uint32_t seq, uint32_t ack, std::string payload = "") {
  FrameSpec f;
  f.src = ip16(from_client ? "198.18.0.1" : "198.18.0.2");
  f.dst = ip16(from_client ? "198.18.0.2" : "198.18.0.1");
  f.sport = from_client ? 40000 : 80;
  f.dport = from_client ? 80 : 40000;
  f.tcp_flags = flags;
  f.seq = seq;
  f.ack = ack;
  f.payload = std::move(payload);
  return f;
}

uint8_t see(FlowTracker& t, const FrameSpec& f, uint64_t now = 1) {
  auto b = build_frame(f);
  return t.observe(cls::parse_frame(b.data(), uint32_t(b.size())), b.data(), now);
}

}  // namespace

TEST(FlowState, TcpHandshakeEstablishesAfterTheLastAck) {
  FlowTracker t;
  EXPECT_EQ(see(t, tcp(true, S, 1000, 0)), kToServer);
  EXPECT_EQ(see(t, tcp(false, SA, 5000, 1001)), kToClient);
  EXPECT_EQ(see(t, tcp(true, A, 1001, 5001)), kToServer);  // completes the handshake: not yet established
  EXPECT_EQ(see(t, tcp(true, PA, 1001, 5001, "GET /")), kToServer | kEst);
  EXPECT_EQ(see(t, tcp(false, PA, 5001, 1006, "200")), kToClient | kEst);
  EXPECT_EQ(see(t, tcp(true, FA, 1006, 5004)), kToServer | kEst);
  EXPECT_EQ(see(t, tcp(false, R, 5004, 0)), kToClient | kEst);
  EXPECT_EQ(t.size(), 1u);
}

TEST(FlowState, WrongAcknowledgementsMidstreamAndResetsNeverEstablish) {
  FlowTracker t;
  see(t, tcp(true, S, 1000, 0));
  see(t, tcp(false, SA, 5000, 999));  // acknowledges the wrong sequence number
  see(t, tcp(true, A, 1001, 5001));
  EXPECT_EQ(see(t, tcp(true, PA, 1001, 5001, "x")), kToServer);

  FlowTracker mid;  // first packet is data: picked up mid-stream
  EXPECT_EQ(see(mid, tcp(false, PA, 1, 1, "x")), kToServer);  // its sender is taken as the client
  EXPECT_EQ(see(mid, tcp(true, PA, 1, 1, "y")), kToClient);
  EXPECT_EQ(see(mid, tcp(false, PA, 2, 2, "z")), kToServer);

  FlowTracker rst;
  see(rst, tcp(true, S, 1000, 0));
  see(rst, tcp(false, R | A, 0, 1001));
  see(rst, tcp(true, A, 1001, 1));
  EXPECT_EQ(see(rst, tcp(true, PA, 1001, 1, "x")), kToServer);

  FlowTracker synack;  // SYN/ACK seen first: its receiver is the client
  EXPECT_EQ(see(synack, tcp(false, SA, 5000, 1001)), kToClient);
  EXPECT_EQ(see(synack, tcp(true, A, 1001, 5001)), kToServer);
}

TEST(FlowState, ANewSynOnAReusedTupleStartsOver) {
  FlowTracker t;
  see(t, tcp(true, S, 1000, 0));
  see(t, tcp(false, SA, 5000, 1001));
  see(t, tcp(true, A, 1001, 5001));
  EXPECT_EQ(see(t, tcp(true, PA, 1001, 5001, "x")), kToServer | kEst);
  EXPECT_EQ(see(t, tcp(true, S, 1000, 0)), kToServer | kEst) << "a retransmitted SYN changes nothing";
  // The old server opens a connection on the same tuple: it is the client now.
  EXPECT_EQ(see(t, tcp(false, S, 777, 0)), kToServer);
  EXPECT_EQ(see(t, tcp(true, SA, 9000, 778)), kToClient);
  see(t, tcp(false, A, 778, 9001));
  EXPECT_EQ(see(t, tcp(false, PA, 778, 9001, "y")), kToServer | kEst);
  EXPECT_EQ(t.size(), 1u);
}

TEST(FlowState, UdpIsEstablishedOnceBothDirectionsWereSeen) {
  FlowTracker t;
  FrameSpec q;
  q.proto = 17;
  q.src = ip16("198.18.0.1");
  q.dst = ip16("198.18.0.53");
  q.sport = 5353;
  q.dport = 53;
  FrameSpec r = q;
  std::swap(r.src, r.dst);
  std::swap(r.sport, r.dport);
  EXPECT_EQ(see(t, q), kToServer);
  EXPECT_EQ(see(t, q), kToServer);
  EXPECT_EQ(see(t, r), kToClient | kEst);  // the reply itself counts
  EXPECT_EQ(see(t, q), kToServer | kEst);
}

TEST(FlowState, ForgetIdleAndBoundedTable) {
  FlowTracker t({.max_flows = 4, .tcp_idle_ns = 1000, .udp_idle_ns = 1000, .other_idle_ns = 1000});
  see(t, tcp(true, S, 1, 0), 10);
  FrameSpec f = tcp(true, S, 1, 0);
  auto b = build_frame(f);
  t.forget(cls::flow_key(cls::parse_frame(b.data(), uint32_t(b.size()))));
  EXPECT_EQ(t.size(), 0u);
  // A flow idle longer than idle_ns starts over: its next packet's sender is the client.
  see(t, tcp(true, S, 1, 0), 10);
  EXPECT_EQ(see(t, tcp(false, PA, 1, 1), 5000), kToServer);
  for (uint16_t port = 1; port <= 20; ++port) {
    FrameSpec x = tcp(true, S, 1, 0);
    x.sport = port;
    see(t, x, 6000 + port);
  }
  EXPECT_LE(t.size(), 4u);
}

TEST(FlowState, FlowRulesOnATrackedExchange) {
  auto pr = gpo::rules::parse_rules(
      "alert tcp any any -> any 80 (msg:\"syn\"; flow:not_established,to_server; flags:S; sid:1;)\n"
      "drop tcp any any -> any 80 (msg:\"get\"; flow:established,to_server; content:\"GET\"; depth:3; sid:2;)\n"
      "alert tcp any 80 -> any any (msg:\"reply\"; flow:established,from_server; content:\"200\"; sid:3;)\n");
  ASSERT_TRUE(pr.ok());
  auto tables = std::make_shared<cls::RuleTables>(gpo::rules::compile(pr.set));
  cls::CpuClassifier c(tables);
  FlowTracker t;
  auto verdict = [&](const FrameSpec& f) {
    auto b = build_frame(f);
    auto p = cls::parse_frame(b.data(), uint32_t(b.size()));
    cls::Frame fr{b.data(), uint32_t(b.size()), t.observe(p, b.data(), 1)};
    return c.classify_parsed(fr, p);
  };
  cls::Verdict v = verdict(tcp(true, S, 1000, 0));
  EXPECT_EQ(v.rule_id, 1u);
  v = verdict(tcp(false, SA, 5000, 1001));
  EXPECT_EQ(v.rule_id, 0u);
  EXPECT_FALSE(v.cacheable);  // rules 1 and 2 match this flow's other direction
  v = verdict(tcp(true, A, 1001, 5001));
  EXPECT_EQ(v.rule_id, 0u);
  EXPECT_FALSE(v.cacheable);
  EXPECT_EQ(verdict(tcp(true, PA, 1001, 5001, "XGET /")).rule_id, 0u);  // GET not in the first 3 bytes
  EXPECT_EQ(verdict(tcp(false, PA, 5001, 1006, "HTTP/1.1 200 OK")).rule_id, 3u);
  v = verdict(tcp(true, PA, 1006, 5016, "GET /x"));
  EXPECT_EQ(v.rule_id, 2u);
  EXPECT_EQ(v.action, GPO_ACT_DROP);
}
