// The packet filter end to end: the real agent binary, XDP on a veth in a
// network namespace, AF_XDP, the CPU classifier, re-injection and the flow
// cache, with UDP traffic from another namespace (198.18.0.0/15 only).
//
// Host mode:   ns src (198.18.0.1, s0) <-veth-> ns dut (198.18.0.2, d0; agent --xdp d0)
// Inline mode: ns src (198.18.0.1, s0) <-> a0 [ns dut: agent --xdp a0,b0] b0 <-> ns dst (198.18.0.3, t0)
//
// Every test bounds its packets (a handful) and its waits (seconds).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "backend/backend.h"
#include "bpf/xdp_filter.h"
#include "cli/commands.h"
#include "common/netns.h"
#include "common/proc.h"
#include "integration/agent_fixture.h"
#include "loader/xdp_loader.h"

using namespace std::chrono_literals;
using gpo::test::NetNs;
using gpo::test::NsProcess;

namespace {

constexpr uint32_t kSidDropPort = 101;
constexpr uint32_t kSidEvil = 102;
constexpr const char* kRules =
    "# integration test rules\n"
    "drop udp any any -> any 7001 (msg:\"drop port 7001\"; sid:101;)\n"
    "drop udp any any -> any 7002 (msg:\"evil payload\"; content:\"EVIL\"; sid:102;)\n"
    "default pass\n";

gpo_flow_key udp_key(const std::string& src, uint16_t sport, const std::string& dst, uint16_t dport) {
  return gpo::test::flow_key4(src, sport, dst, dport);
}

// Host mode:   ns src (198.18.0.1, s0) <-veth-> ns dut (198.18.0.2, d0; agent --xdp d0)
// Inline mode: ns src (198.18.0.1, s0) <-> a0 [ns dut: agent --xdp a0,b0] b0 <-> ns dst (198.18.0.3, t0)
class PacketFilter : public gpo::test::AgentFixture {
 protected:
  void SetUp() override {
    AgentFixture::SetUp();
    if (IsSkipped()) return;
    write_rules(kRules);
  }

  void host_topology() {
    src_ = &netns("src");
    dut_ = &netns("dut");
    gpo::test::make_veth(*src_, "s0", *dut_, "d0", 1);
    gpo::test::add_addr(*src_, "s0", "198.18.0.1/24");
    gpo::test::add_addr(*dut_, "d0", "198.18.0.2/24");
  }

  std::unique_ptr<NsProcess> start_agent(const std::string& xdp, std::vector<std::string> extra = {}) {
    return AgentFixture::start_agent(*dut_, xdp, extra);
  }

  void send(const NetNs& from, uint16_t sport, const std::string& dst, uint16_t dport, const std::string& payload,
            const std::string& src = "198.18.0.1") {
    ASSERT_TRUE(gpo::test::udp_send(from, src, sport, dst, dport, payload))
        << "send " << payload << ": " << strerror(errno);
  }

  NetNs* src_ = nullptr;
  NetNs* dut_ = nullptr;
  NetNs* dst_ = nullptr;
};

using Strings = std::vector<std::string>;

TEST_F(PacketFilter, HostModeFirstPacketReinjectedDropNeverDeliveredLaterPacketsCached) {
  host_topology();
  agent_ = start_agent("d0");
  ASSERT_TRUE(agent_);
  int rx_pass = gpo::test::udp_bind(*dut_, "198.18.0.2", 7000);
  int rx_drop = gpo::test::udp_bind(*dut_, "198.18.0.2", 7001);

  // Pass flow: the first packet goes XDP -> AF_XDP -> classify -> re-inject.
  const auto before = stats();
  send(*src_, 40000, "198.18.0.2", 7000, "pass-0");
  EXPECT_EQ(gpo::test::udp_recv_all(rx_pass, 3000ms, 1), Strings{"pass-0"}) << agent_->log();
  auto pass_key = udp_key("198.18.0.1", 40000, "198.18.0.2", 7000);
  auto v = flow(pass_key);
  ASSERT_TRUE(v) << "no flow verdict installed for the pass flow\n" << agent_->log();
  EXPECT_EQ(v->action, GPO_ACT_PASS);
  EXPECT_EQ(v->rule_id, 0u);  // the default policy
  const auto mid = stats();
  EXPECT_EQ(mid.to_agent.packets - before.to_agent.packets, 1u);

  // Later packets of the flow are decided in XDP, with their content intact.
  Strings want;
  for (int i = 1; i <= 4; i++) {
    send(*src_, 40000, "198.18.0.2", 7000, "pass-" + std::to_string(i));
    want.push_back("pass-" + std::to_string(i));
  }
  EXPECT_EQ(gpo::test::udp_recv_all(rx_pass, 3000ms, 4), want);
  const auto after_pass = stats();
  EXPECT_EQ(after_pass.cache_pass.packets - mid.cache_pass.packets, 4u);
  EXPECT_EQ(after_pass.to_agent.packets - mid.to_agent.packets, 0u);

  // Drop flow: never reaches the socket, first packet nor later ones.
  send(*src_, 40001, "198.18.0.2", 7001, "drop-0");
  auto dv = flow(udp_key("198.18.0.1", 40001, "198.18.0.2", 7001));
  ASSERT_TRUE(dv) << "no flow verdict installed for the drop flow\n" << agent_->log();
  EXPECT_EQ(dv->action, GPO_ACT_DROP);
  EXPECT_EQ(dv->rule_id, kSidDropPort);
  const auto mid2 = stats();
  for (int i = 1; i <= 4; i++) send(*src_, 40001, "198.18.0.2", 7001, "drop-" + std::to_string(i));
  EXPECT_TRUE(gpo::test::udp_recv_all(rx_drop, 500ms).empty());
  const auto end = stats();
  EXPECT_EQ(end.cache_drop.packets - mid2.cache_drop.packets, 4u);
  EXPECT_EQ(end.to_agent.packets - before.to_agent.packets, 2u);  // one per flow

  // The agent's own counters (status file) agree.
  std::this_thread::sleep_for(300ms);
  auto st = status_json();
  ASSERT_TRUE(st.contains("packet_filter")) << st.dump();
  auto& a = st["packet_filter"]["agent"];
  EXPECT_EQ(a["rx"].get<uint64_t>(), 2u);
  EXPECT_EQ(a["reinjected"].get<uint64_t>(), 1u);
  EXPECT_EQ(a["dropped"].get<uint64_t>(), 1u);
  EXPECT_EQ(a["cache_installs"].get<uint64_t>(), 2u);

  // SIGTERM: clean stop with a one-line summary; the program is detached.
  agent_->signal(SIGTERM);
  EXPECT_EQ(agent_->wait(10s), 0) << agent_->log();
  EXPECT_NE(agent_->log().find("2 packets to the agent, 1 passed, 1 dropped, 2 flow verdicts cached"),
            std::string::npos)
      << agent_->log();
  EXPECT_EQ(dut_->within([&] { return gpo::loader::attached_prog_name(dut_->ifindex("d0")); }), "");
  close(rx_pass);
  close(rx_drop);
}

TEST_F(PacketFilter, ContentRuleDropsOnlyMatchingFlowAndInspectionIsCapped) {
  host_topology();
  agent_ = start_agent("d0", {"--inspect-packets", "3"});
  ASSERT_TRUE(agent_);
  int rx = gpo::test::udp_bind(*dut_, "198.18.0.2", 7002);
  auto key_a = udp_key("198.18.0.1", 41000, "198.18.0.2", 7002);
  auto key_b = udp_key("198.18.0.1", 41001, "198.18.0.2", 7002);

  // Flow A never carries the pattern: every packet is delivered; the verdict is
  // not cacheable (the content rule's header matches) until 3 packets were inspected.
  for (int i = 0; i < 2; i++) {
    send(*src_, 41000, "198.18.0.2", 7002, "hello-" + std::to_string(i));
    EXPECT_EQ(gpo::test::udp_recv_all(rx, 3000ms, 1), Strings{"hello-" + std::to_string(i)}) << agent_->log();
  }
  EXPECT_FALSE(flow(key_a, 200ms)) << "a flow under content inspection was cached early";
  send(*src_, 41000, "198.18.0.2", 7002, "hello-2");
  EXPECT_EQ(gpo::test::udp_recv_all(rx, 3000ms, 1), Strings{"hello-2"});
  auto va = flow(key_a);
  ASSERT_TRUE(va) << "inspection cap did not cache the flow\n" << agent_->log();
  EXPECT_EQ(va->action, GPO_ACT_PASS);

  // Flow B: delivered until the pattern shows up; that packet is dropped and the
  // flow's drop verdict is cached, so the packet after it is dropped in XDP.
  send(*src_, 41001, "198.18.0.2", 7002, "hello-b");
  EXPECT_EQ(gpo::test::udp_recv_all(rx, 3000ms, 1), Strings{"hello-b"});
  send(*src_, 41001, "198.18.0.2", 7002, "xx EVIL xx");
  auto vb = flow(key_b);
  ASSERT_TRUE(vb) << agent_->log();
  EXPECT_EQ(vb->action, GPO_ACT_DROP);
  EXPECT_EQ(vb->rule_id, kSidEvil);
  const auto s0 = stats();
  send(*src_, 41001, "198.18.0.2", 7002, "after");
  EXPECT_TRUE(gpo::test::udp_recv_all(rx, 500ms).empty());
  EXPECT_EQ(stats().cache_drop.packets - s0.cache_drop.packets, 1u);
  // Flow A, cached as pass, still delivers.
  send(*src_, 41000, "198.18.0.2", 7002, "hello-3");
  EXPECT_EQ(gpo::test::udp_recv_all(rx, 3000ms, 1), Strings{"hello-3"});
  close(rx);
}

// The GPU classifier in the real packet path (run --backend cuda): every batch
// goes to the GPU (--gpu-min-batch 1) and gets the CPU classifier's verdicts:
// a pass flow delivered and cached, a content drop cached with its sid.
// `flow:` rules get the direction the agent's flow tracker gives each packet:
// the client's first packet is to_server (dropped by a to_server rule), and
// not to_client (passed, and not cached: a reply could still match).
TEST_F(PacketFilter, FlowRulesSeeTheDirectionTheAgentTracks) {
  std::ofstream(rules_) << "drop udp any any -> any 7003 (msg:\"to server\"; flow:to_server; sid:103;)\n"
                           "drop udp any any -> any 7004 (msg:\"to client\"; flow:to_client; sid:104;)\n"
                           "default pass\n";
  host_topology();
  agent_ = start_agent("d0");
  ASSERT_TRUE(agent_);
  int rx3 = gpo::test::udp_bind(*dut_, "198.18.0.2", 7003);
  int rx4 = gpo::test::udp_bind(*dut_, "198.18.0.2", 7004);
  send(*src_, 40003, "198.18.0.2", 7003, "to-server");
  send(*src_, 40004, "198.18.0.2", 7004, "not-to-client");
  EXPECT_EQ(gpo::test::udp_recv_all(rx4, 3000ms, 1), Strings{"not-to-client"}) << agent_->log();
  EXPECT_TRUE(gpo::test::udp_recv_all(rx3, 500ms, 1).empty()) << agent_->log();
  auto v = flow(udp_key("198.18.0.1", 40003, "198.18.0.2", 7003));
  ASSERT_TRUE(v) << agent_->log();
  EXPECT_EQ(v->rule_id, 103u);
  EXPECT_EQ(v->action, GPO_ACT_DROP);
  EXPECT_FALSE(flow(udp_key("198.18.0.1", 40004, "198.18.0.2", 7004), 300ms));
  // The status file carries the running rule set (what `status` prints).
  auto j = status_json();
  EXPECT_EQ(j["rule_set"].value("loaded", 0), 2) << j.dump();
  EXPECT_EQ(j["rule_set"].value("rules", 0), 2) << j.dump();
  close(rx3);
  close(rx4);
}

TEST_F(PacketFilter, GpuClassifierDecidesBatchesInThePacketPath) {
  std::string why;
  if (gpo::backend::cuda_device_count(&why) <= 0) GTEST_SKIP() << "no usable GPU: " << why;
  host_topology();
  agent_ = start_agent("d0", {"--backend", "cuda", "--gpu-min-batch", "1"});
  ASSERT_TRUE(agent_);
  int rx = gpo::test::udp_bind(*dut_, "198.18.0.2", 7002);
  send(*src_, 42000, "198.18.0.2", 7002, "harmless");
  EXPECT_EQ(gpo::test::udp_recv_all(rx, 3000ms, 1), Strings{"harmless"}) << agent_->log();
  send(*src_, 42001, "198.18.0.2", 7002, "an EVIL payload");
  auto v = flow(udp_key("198.18.0.1", 42001, "198.18.0.2", 7002));
  ASSERT_TRUE(v) << agent_->log();
  EXPECT_EQ(v->action, GPO_ACT_DROP);
  EXPECT_EQ(v->rule_id, kSidEvil);
  EXPECT_TRUE(gpo::test::udp_recv_all(rx, 500ms).empty()) << "the EVIL packet was delivered";
  std::this_thread::sleep_for(300ms);
  auto st = status_json();
  ASSERT_TRUE(st.contains("packet_filter")) << st.dump();
  auto& a = st["packet_filter"]["agent"];
  EXPECT_EQ(a["gpu_batches"].get<uint64_t>(), a["batches"].get<uint64_t>()) << st.dump();
  EXPECT_GE(a["gpu_frames"].get<uint64_t>(), 2u) << st.dump();
  EXPECT_EQ(a["gpu_errors"].get<uint64_t>(), 0u) << st.dump();
  close(rx);
}

class FailPolicy : public PacketFilter, public ::testing::WithParamInterface<std::string> {};

TEST_P(FailPolicy, AgentKilledNewFlowsFollowPolicyThenRestartServes) {
  const bool closed = GetParam() == "closed";
  host_topology();
  agent_ = start_agent("d0", {"--fail-policy", GetParam()});
  ASSERT_TRUE(agent_);
  int rx = gpo::test::udp_bind(*dut_, "198.18.0.2", 7000);

  send(*src_, 42000, "198.18.0.2", 7000, "before-kill");
  EXPECT_EQ(gpo::test::udp_recv_all(rx, 3000ms, 1), Strings{"before-kill"}) << agent_->log();
  ASSERT_TRUE(flow(udp_key("198.18.0.1", 42000, "198.18.0.2", 7000)));

  agent_->signal(SIGKILL);
  EXPECT_EQ(agent_->wait(5s), 128 + SIGKILL);
  // The XDP program stays attached: the kernel keeps enforcing without the agent.
  EXPECT_EQ(dut_->within([&] { return gpo::loader::attached_prog_name(dut_->ifindex("d0")); }), "xdp_filter");

  const auto s0 = stats();
  send(*src_, 42001, "198.18.0.2", 7000, "new-flow-agent-gone");
  auto got = gpo::test::udp_recv_all(rx, closed ? 500ms : 3000ms, 1);
  const auto s1 = stats();
  if (closed) {
    EXPECT_TRUE(got.empty()) << "fail-closed delivered a new flow without the agent";
    EXPECT_EQ(s1.no_agent_drop.packets - s0.no_agent_drop.packets, 1u);
  } else {
    EXPECT_EQ(got, Strings{"new-flow-agent-gone"});
    EXPECT_EQ(s1.no_agent_pass.packets - s0.no_agent_pass.packets, 1u);
  }
  EXPECT_EQ(s1.to_agent.packets, s0.to_agent.packets);
  // A flow decided before the kill is still decided from the cache.
  send(*src_, 42000, "198.18.0.2", 7000, "cached-flow");
  EXPECT_EQ(gpo::test::udp_recv_all(rx, 3000ms, 1), Strings{"cached-flow"});

  // Restart: the agent serves new flows again.
  agent_ = start_agent("d0", {"--fail-policy", GetParam()});
  ASSERT_TRUE(agent_);
  const auto s2 = stats();
  send(*src_, 42002, "198.18.0.2", 7000, "after-restart");
  EXPECT_EQ(gpo::test::udp_recv_all(rx, 3000ms, 1), Strings{"after-restart"}) << agent_->log();
  EXPECT_EQ(stats().to_agent.packets - s2.to_agent.packets, 1u);
  send(*src_, 42003, "198.18.0.2", 7001, "drop-after-restart");
  auto dv = flow(udp_key("198.18.0.1", 42003, "198.18.0.2", 7001));
  ASSERT_TRUE(dv) << agent_->log();
  EXPECT_EQ(dv->action, GPO_ACT_DROP);
  close(rx);
}

INSTANTIATE_TEST_SUITE_P(Policies, FailPolicy, ::testing::Values("open", "closed"));

TEST_F(PacketFilter, InlineModeBridgesPassAndBlocksDrop) {
  src_ = &netns("src");
  dut_ = &netns("dut");
  dst_ = &netns("dst");
  gpo::test::make_veth(*src_, "s0", *dut_, "a0", 1);
  gpo::test::make_veth(*dut_, "b0", *dst_, "t0", 2);
  gpo::test::add_addr(*src_, "s0", "198.18.0.1/24");
  gpo::test::add_addr(*dst_, "t0", "198.18.0.3/24");
  // Frames redirected by XDP into another veth lose the offload state, so a
  // locally computed partial checksum would not verify at dst: make src write
  // full checksums, as traffic from a wire has (the agent's own path completes
  // partial checksums, the kernel's DEVMAP fast path cannot).
  gpo::test::set_tx_checksum(*src_, "s0", false);
  gpo::test::set_tx_checksum(*dst_, "t0", false);
  ASSERT_NO_THROW(gpo::test::attach_xdp_pass(*src_, "s0"));
  ASSERT_NO_THROW(gpo::test::attach_xdp_pass(*dst_, "t0"));
  if (HasFatalFailure()) return;

  agent_ = start_agent("a0,b0");
  ASSERT_TRUE(agent_);
  EXPECT_NE(agent_->log().find("inline"), std::string::npos) << agent_->log();
  int rx_pass = gpo::test::udp_bind(*dst_, "198.18.0.3", 7000);
  int rx_drop = gpo::test::udp_bind(*dst_, "198.18.0.3", 7001);

  // First packet: AF_XDP in on a0, classified, TX on b0's socket.
  send(*src_, 43000, "198.18.0.3", 7000, "inline-0");
  EXPECT_EQ(gpo::test::udp_recv_all(rx_pass, 3000ms, 1), Strings{"inline-0"}) << agent_->log();
  auto v = flow(udp_key("198.18.0.1", 43000, "198.18.0.3", 7000));
  ASSERT_TRUE(v) << agent_->log();
  EXPECT_EQ(v->action, GPO_ACT_PASS);
  // Later packets: DEVMAP redirect in XDP, never in the agent.
  const auto s0 = stats();
  Strings want;
  for (int i = 1; i <= 4; i++) {
    send(*src_, 43000, "198.18.0.3", 7000, "inline-" + std::to_string(i));
    want.push_back("inline-" + std::to_string(i));
  }
  EXPECT_EQ(gpo::test::udp_recv_all(rx_pass, 3000ms, 4), want);
  EXPECT_EQ(stats().cache_redirect.packets - s0.cache_redirect.packets, 4u);

  for (int i = 0; i < 3; i++) send(*src_, 43001, "198.18.0.3", 7001, "inline-drop-" + std::to_string(i));
  EXPECT_TRUE(gpo::test::udp_recv_all(rx_drop, 700ms).empty());
  auto dv = flow(udp_key("198.18.0.1", 43001, "198.18.0.3", 7001));
  ASSERT_TRUE(dv);
  EXPECT_EQ(dv->action, GPO_ACT_DROP);

  // A flow that starts on the PEER side: its miss reaches the agent through
  // PEER's own xsks slot and goes out of IFACE.
  const auto s1 = stats();
  int rx_back = gpo::test::udp_bind(*src_, "198.18.0.1", 7003);
  send(*dst_, 43002, "198.18.0.1", 7003, "from-peer-0", "198.18.0.3");
  EXPECT_EQ(gpo::test::udp_recv_all(rx_back, 3000ms, 1), Strings{"from-peer-0"}) << agent_->log();
  EXPECT_EQ(stats().to_agent.packets - s1.to_agent.packets, 1u);
  auto bv = flow(udp_key("198.18.0.3", 43002, "198.18.0.1", 7003));
  ASSERT_TRUE(bv) << agent_->log();
  EXPECT_EQ(bv->action, GPO_ACT_PASS);
  close(rx_back);

  agent_->signal(SIGTERM);
  EXPECT_EQ(agent_->wait(10s), 0) << agent_->log();
  close(rx_pass);
  close(rx_drop);
}

// Clear errors, each a one-line message with the right exit code.
TEST(RunErrors, InvalidRulesListsEveryProblem) {
  auto dir = std::filesystem::temp_directory_path() / ("gpo-it-rules-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto bad = (dir / "bad.rules").string();
  std::ofstream(bad) << "drop udp any any -> any 7001 (sid:1;)\n"
                        "frobnicate udp any any -> any 1 (sid:2;)\n"
                        "drop udp any any -> any 99999 (sid:3;)\n";
  auto r = gpo::test::run_proc({AGENT_BIN, "run", "--rules", bad, "--status-file", ""}, 20);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(r.exit_code, gpo::cli::kFailure) << r.out;
  EXPECT_NE(r.out.find(bad + ":2:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(bad + ":3:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2 problem(s)"), std::string::npos) << r.out;
}

TEST(RunErrors, MissingInterfaceAndCudaBackend) {
  if (!gpo::test::is_root()) GTEST_SKIP() << "needs root to get as far as the interface";
  NetNs ns("err");
  std::string pin = "/sys/fs/bpf/gpo-it-err-" + std::to_string(getpid());
  auto r = gpo::test::run_proc({"ip", "netns", "exec", ns.name(), AGENT_BIN, "run", "--xdp", "nosuchif0",
                                "--pin-dir", pin, "--status-file", ""},
                               20);
  std::error_code ec;
  std::filesystem::remove_all(pin, ec);
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("nosuchif0"), std::string::npos) << r.out;

  // --backend cuda without a usable GPU is refused; with one the agent would run.
  std::string why;
  if (gpo::backend::cuda_device_count(&why) > 0) return;
  auto c = gpo::test::run_proc({AGENT_BIN, "run", "--backend", "cuda", "--status-file", ""}, 20);
  EXPECT_EQ(c.exit_code, gpo::cli::kUnsupported) << c.out;
  EXPECT_NE(c.out.find("backend cuda"), std::string::npos) << c.out;
}

TEST(RunConfig, PrintConfigRoundTripsThroughConfigFile) {
  auto dir = std::filesystem::temp_directory_path() / ("gpo-it-cfg-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto p = gpo::test::run_proc({AGENT_BIN, "run", "--print-config", "--batch-size", "32", "--fail-policy", "closed"}, 20);
  ASSERT_EQ(p.exit_code, 0) << p.out;
  EXPECT_NE(p.out.find("batch-size=32"), std::string::npos) << p.out;
  EXPECT_NE(p.out.find("fail-policy=\"closed\""), std::string::npos) << p.out;
  auto cfg = (dir / "agent.toml").string();
  std::ofstream(cfg) << p.out;
  auto q = gpo::test::run_proc({AGENT_BIN, "run", "--config", cfg, "--print-config"}, 20);
  std::filesystem::remove_all(dir);
  ASSERT_EQ(q.exit_code, 0) << q.out;
  EXPECT_NE(q.out.find("batch-size=32"), std::string::npos) << q.out;
  EXPECT_NE(q.out.find("fail-policy=\"closed\""), std::string::npos) << q.out;
}

}  // namespace
