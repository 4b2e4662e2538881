// The miss path under a flood of new flows (the real agent, host mode): XDP
// sends the agent's sockets only what they have room for and gives the rest
// the overload policy, counted; nothing sent to the agent is lost; a cached
// flow and a flow under inspection cross untouched while the flood lasts.
//
//   ns src (198.18.0.1, s0) <-veth-> ns dut (198.18.0.2, d0; agent --xdp d0)
//
// The flood: new UDP flows (one frame each, sources 198.19.0.0/16) from an
// AF_PACKET socket with sendmmsg (bench/new_flows.h), bounded in count and
// time, far faster than one agent thread decides new flows. Counts, not
// timings, are checked; the VM layer (VMTEST, emulated CPU) sends less.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "bench/new_flows.h"
#include "common/netns.h"
#include "common/proc.h"
#include "integration/agent_fixture.h"

using namespace std::chrono_literals;
using gpo::test::NetNs;

namespace {

bool emulated() { return std::getenv("VMTEST") != nullptr; }

// Flows to 7100 stay under inspection: the content rule's header matches and
// its pattern never comes.
constexpr const char* kRules =
    "drop udp any any -> any 7100 (msg:\"never sent\"; content:\"NEVER-IN-THESE-PACKETS\"; sid:1;)\n"
    "default pass\n";

// One UDP flow at a steady rate (a connected socket in ns), and the count of
// what reached the receiving socket: a receiver thread drains it meanwhile.
class SteadyFlow {
 public:
  SteadyFlow(const NetNs& src, uint16_t sport, const NetNs& dst, uint16_t dport) {
    rx_ = gpo::test::udp_bind(dst, "198.18.0.2", dport);
    // A starved receiver thread must not lose what the filter delivered.
    int big = 16 << 20;
    setsockopt(rx_, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    tx_ = src.socket(AF_INET, SOCK_DGRAM);
    sockaddr_in a{}, b{};
    a.sin_family = b.sin_family = AF_INET;
    a.sin_port = htons(sport);
    b.sin_port = htons(dport);
    inet_pton(AF_INET, "198.18.0.1", &a.sin_addr);
    inet_pton(AF_INET, "198.18.0.2", &b.sin_addr);
    if (tx_ < 0 || bind(tx_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        connect(tx_, reinterpret_cast<sockaddr*>(&b), sizeof b) != 0)
      throw std::runtime_error(std::string("steady flow socket: ") + strerror(errno));
    receiver_ = std::thread([this] {
      char buf[2048];
      while (!stop_rx_) {
        pollfd p{rx_, POLLIN, 0};
        if (poll(&p, 1, 50) != 1) continue;
        while (recv(rx_, buf, sizeof buf, MSG_DONTWAIT) > 0) received_++;
      }
    });
  }
  ~SteadyFlow() {
    stop();
    close(tx_);
    close(rx_);
  }
  bool send_one() {
    const std::string payload = "steady-" + std::to_string(sent_);
    if (::send(tx_, payload.data(), payload.size(), 0) != ssize_t(payload.size())) return false;
    sent_++;
    return true;
  }
  // Sends at pps on a thread until stop_sending().
  void start_sending(double pps) {
    sender_ = std::thread([this, pps] {
      const auto t0 = std::chrono::steady_clock::now();
      for (uint64_t i = 0; !stop_tx_ && i < 100000; i++) {
        std::this_thread::sleep_until(t0 + std::chrono::duration<double>(double(i) / pps));
        send_one();
      }
    });
  }
  void stop_sending() {
    stop_tx_ = true;
    if (sender_.joinable()) sender_.join();
  }
  // Waits (bounded) until every packet sent arrived; returns what arrived.
  uint64_t settle(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (received_ < sent_ && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
    return received_;
  }
  void stop() {
    stop_sending();
    stop_rx_ = true;
    if (receiver_.joinable()) receiver_.join();
  }
  uint64_t sent() const { return sent_; }

 private:
  int rx_ = -1, tx_ = -1;
  std::atomic<uint64_t> sent_{0}, received_{0};
  std::atomic<bool> stop_tx_{false}, stop_rx_{false};
  std::thread sender_, receiver_;
};

// A counter of IFACE's in ns (a veth counts there the frames it could not
// hand to its peer: the peer's ring was full, before XDP saw them).
uint64_t link_stat(const NetNs& ns, const std::string& iface, const std::string& counter) {
  const auto r = ns.exec({"cat", "/sys/class/net/" + iface + "/statistics/" + counter});
  return r.exit_code == 0 ? std::strtoull(r.out.c_str(), nullptr, 10) : 0;
}

uint64_t sum_paths(const gpo_xdp_stats& s) {
  uint64_t n = 0;
#define GPO_X_SUM(name, what) n += s.name.packets;
  GPO_XDP_PATHS(GPO_X_SUM)
#undef GPO_X_SUM
  return n;
}

struct Case {
  const char* name;
  const char* policy;  // --overload-policy
  int queues;          // veth queues
  const char* workers;
  bool gpu = false;    // --backend cuda, every batch on the GPU (skipped without one)
};

class MissPath : public gpo::test::AgentFixture, public ::testing::WithParamInterface<Case> {};

// The flood is decided by the policy in XDP where the agent has no room, and
// by the agent where it has: every frame takes exactly one counted path, the
// agent receives and decides everything sent to it (no socket drops), a
// warning says the policy is in force, and the cached flow and the flow under
// inspection lose nothing meanwhile.
TEST_P(MissPath, AFloodOfNewFlowsFollowsThePolicyAndSparesKnownFlows) {
  const Case& c = GetParam();
  std::vector<std::string> extra{"--overload-policy", c.policy, "--workers", c.workers};
  if (c.gpu) {
    std::string why;
    if (gpo::backend::cuda_device_count(&why) <= 0) GTEST_SKIP() << "no usable GPU: " << why;
    for (const char* a : {"--backend", "cuda", "--gpu-min-batch", "1"}) extra.push_back(a);
  }
  write_rules(kRules);
  NetNs& src = netns("src");
  NetNs& dut = netns("dut");
  gpo::test::make_veth(src, "s0", dut, "d0", 1, c.queues);
  gpo::test::add_addr(src, "s0", "198.18.0.1/24");
  // A veth has no queue by default: when the flood fills the peer's ring it
  // drops frames, known flows' too, before XDP sees them. A NIC's sender has
  // a queue; with one, a recent kernel's veth holds senders back
  // instead, and what is lost can only be the filter's doing.
  const bool queued = src.exec({"tc", "qdisc", "add", "dev", "s0", "root", "pfifo", "limit", "1000"}).exit_code == 0;
  gpo::test::add_addr(dut, "d0", "198.18.0.2/24");
  agent_ = start_agent(dut, "d0", extra);
  ASSERT_TRUE(agent_);
  if (std::string(c.workers) != "1") {
    EXPECT_NE(agent_->log().find(std::string(c.workers) + " worker(s)"), std::string::npos) << agent_->log();
  }

  // A cached flow and a flow under inspection, before the flood.
  SteadyFlow cached(src, 5000, dut, 7000), inspected(src, 5001, dut, 7100);
  ASSERT_TRUE(cached.send_one());
  ASSERT_TRUE(inspected.send_one());
  ASSERT_EQ(cached.settle(5s), 1u) << agent_->log();
  ASSERT_EQ(inspected.settle(5s), 1u) << agent_->log();
  auto v = flow(gpo::test::flow_key4("198.18.0.1", 5000, "198.18.0.2", 7000));
  ASSERT_TRUE(v) << "the first flow was not cached\n" << agent_->log();
  EXPECT_EQ(v->action, GPO_ACT_PASS);
  EXPECT_FALSE(flow(gpo::test::flow_key4("198.18.0.1", 5001, "198.18.0.2", 7100), 200ms))
      << "the flow to 7100 is under inspection: no verdict";

  const gpo_xdp_stats before = stats();
  auto veth_drops = [&] { return link_stat(src, "s0", "tx_dropped") + link_stat(dut, "d0", "rx_dropped"); };
  const uint64_t veth_drops0 = veth_drops();
  const nlohmann::json s0 = fresh_status();
  const uint64_t rx0 = s0["packet_filter"]["agent"].value("rx", 0ull);
  const uint64_t decided0 = s0["packet_filter"]["agent"].value("passed", 0ull) +
                            s0["packet_filter"]["agent"].value("dropped", 0ull);

  // The flood, with both known flows running through it.
  const uint64_t flood = emulated() ? 20000 : 100000;
  const double flood_pps = emulated() ? 20000 : 200000;
  // The flow under inspection stays well inside the room kept for such flows
  // (a quarter of a socket's 2048 frames) even while the agent is starved
  // for seconds on a loaded machine.
  cached.start_sending(emulated() ? 200 : 1000);
  inspected.start_sending(emulated() ? 20 : 100);
  std::this_thread::sleep_for(100ms);
  // AF_PACKET sends out of the tx queue of the sending CPU, and a veth
  // delivers on the peer's rx queue of that index: one sender per CPU (at
  // most per queue) spreads the flood over the queues, as RSS would.
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  const int senders = int(std::max(1L, std::min<long>(cpus, c.queues)));
  gpo::bench::NewFlowGenerator::Result sent;
  {
    std::vector<std::thread> threads;
    std::vector<gpo::bench::NewFlowGenerator::Result> part(static_cast<size_t>(senders));
    std::atomic<int> failures{0};
    for (int i = 0; i < senders; i++)
      threads.emplace_back([&, i] {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(i, &set);
        sched_setaffinity(0, sizeof set, &set);
        gpo::bench::NewFlowOptions o;
        o.fd = src.socket(AF_PACKET, SOCK_RAW, 0);
        o.ifindex = src.ifindex("s0");
        o.first = uint64_t(i) << 32;  // each sender its own tuples
        auto mac = [](const std::string& m, uint8_t out[6]) {
          sscanf(m.c_str(), "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &out[0], &out[1], &out[2], &out[3], &out[4], &out[5]);
        };
        mac(gpo::test::veth_mac(1, 1), o.src_mac);
        mac(gpo::test::veth_mac(1, 2), o.dst_mac);
        o.dst_ip = "198.18.0.2";
        try {
          gpo::bench::NewFlowGenerator gen(o);
          part[size_t(i)] = gen.send(flood / uint64_t(senders), flood_pps / senders, emulated() ? 30 : 10);
        } catch (const std::exception&) {
          failures++;
        }
        close(o.fd);
      });
    for (auto& t : threads) t.join();
    ASSERT_EQ(failures.load(), 0) << "a flood sender failed";
    for (auto& p : part) {
      sent.sent += p.sent;
      sent.seconds = std::max(sent.seconds, p.seconds);
    }
  }
  std::this_thread::sleep_for(100ms);
  cached.stop_sending();
  inspected.stop_sending();
  ASSERT_GT(sent.sent, flood / 2) << "the generator sent too little to flood anything";

  // Known flows: every packet arrived, the cached one decided in XDP. Where
  // the veth could not hold its sender back (no tc, an older kernel) and
  // dropped frames itself, as many of the known flows' may be missing.
  const uint64_t cached_arrived = cached.settle(10s), inspected_arrived = inspected.settle(20s);
  const uint64_t veth_lost = veth_drops() - veth_drops0;
  const std::string where =
      "\nveth drops: " + std::to_string(veth_lost) + (queued ? " (s0 queued)" : " (s0 without a queue)");
  EXPECT_LE(cached.sent() - cached_arrived, veth_lost) << "cached flow packets lost during the flood" << where;
  EXPECT_LE(inspected.sent() - inspected_arrived, veth_lost)
      << "packets of the flow under inspection lost during the flood" << where << "\n"
      << fresh_status()["packet_filter"].dump(2) << dut.exec({"ip", "-s", "link", "show", "d0"}).out
      << dut.exec({"cat", "/proc/net/snmp"}).out;
  auto v2 = flow(gpo::test::flow_key4("198.18.0.1", 5000, "198.18.0.2", 7000));
  ASSERT_TRUE(v2);
  EXPECT_GE(v2->hits - v->hits + 1, cached_arrived) << "the cached flow's packets were decided in XDP";

  // The agent drains what it took in.
  nlohmann::json st;
  uint64_t to_agent = 0;
  gpo_xdp_stats after{};
  for (auto deadline = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < deadline;) {
    after = stats();
    to_agent = after.to_agent.packets - before.to_agent.packets;
    st = fresh_status();
    if (st["packet_filter"]["agent"].value("rx", 0ull) - rx0 >= to_agent) break;
  }
  const auto& pf = st["packet_filter"];
  const uint64_t rx = pf["agent"].value("rx", 0ull) - rx0;
  const uint64_t decided = pf["agent"].value("passed", 0ull) + pf["agent"].value("dropped", 0ull) - decided0;
  const uint64_t over_pass = after.overload_pass.packets - before.overload_pass.packets;
  const uint64_t over_drop = after.overload_drop.packets - before.overload_drop.packets;
  const uint64_t inspected_in = after.inspect_to_agent.packets - before.inspect_to_agent.packets;

  EXPECT_EQ(rx, to_agent) << "every miss XDP sent to the agent reached it\n" << pf.dump(2);
  EXPECT_EQ(decided, rx) << "and was decided";
  EXPECT_EQ(pf.value("socket_drops", 1ull), 0u) << "nothing dropped at a full socket\n" << pf.dump(2);
  // One counted path per frame: the flood and the inspected flow were misses
  // (to the agent or the policy), the cached flow hits.
  const uint64_t seen = sum_paths(after) - sum_paths(before) - (after.non_ip_pass.packets - before.non_ip_pass.packets);
  EXPECT_EQ(seen, to_agent + over_pass + over_drop + (after.cache_pass.packets - before.cache_pass.packets))
      << "a frame took a path outside the miss path and the cache";
  EXPECT_LE(to_agent + over_pass + over_drop, sent.sent + inspected.sent());
  EXPECT_GE(inspected_in, inspected_arrived - 1)
      << "the inspected flow's packets went to the agent, ahead of the flood";
  // The policy was in force, as configured, and said so.
  if (std::string(c.policy) == "drop") {
    EXPECT_GT(over_drop, 0u) << "the flood never exceeded the agent (sent " << sent.sent << " at "
                             << sent.rate() << "/s)";
    EXPECT_EQ(over_pass, 0u);
  } else {
    EXPECT_GT(over_pass, 0u) << "the flood never exceeded the agent (sent " << sent.sent << " at "
                             << sent.rate() << "/s)";
    EXPECT_EQ(over_drop, 0u);
  }
  EXPECT_TRUE(agent_->wait_for_log("overload: misses arrive faster", 5s)) << agent_->log();
  EXPECT_EQ(pf.value("overload_policy", std::string()), c.policy);
  EXPECT_GT(pf["rates"].value("overload_total", 0ull), 0u) << pf.dump(2);
  if (std::string(c.workers) != "1" && senders > 1) {
    ASSERT_TRUE(pf.contains("per_worker")) << pf.dump(2);
    for (const auto& w : pf["per_worker"]) {
      EXPECT_GT(w.value("rx", 0ull), 0u) << "a worker took no miss: " << pf.dump(2);
      if (c.gpu) {
        EXPECT_GT(w.value("gpu_batches", 0ull), 0u) << "a worker's batches never reached the GPU";
      }
    }
  }
  if (c.gpu) {
    EXPECT_EQ(pf["agent"].value("gpu_errors", 1ull), 0u) << pf.dump(2);
    // Every batch went to the GPU, or to the CPU only because both GPU buffers were busy.
    EXPECT_EQ(pf["agent"].value("gpu_batches", 0ull) + pf["agent"].value("gpu_busy_cpu", 0ull),
              pf["agent"].value("batches", 1ull))
        << pf.dump(2);
  }

  // `status` (text) shows the policy, the counters and the miss rates.
  auto r = gpo::test::run_proc({AGENT_BIN, "status", "--pin-dir", pin_dir_, "--status-file", status_file()}, 30);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find(std::string("overload: ") + c.policy), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(std::string("overload_") + c.policy), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("misses/s"), std::string::npos) << r.out;
  r = gpo::test::run_proc({AGENT_BIN, "status", "--json", "--pin-dir", pin_dir_, "--status-file", status_file()}, 30);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto js = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(js.is_discarded()) << r.out;
  EXPECT_EQ(js["config"].value("overload_policy", std::string()), c.policy);
  EXPECT_EQ(js["stats"][std::string("overload_") + c.policy].value("packets", 0ull),
            std::string(c.policy) == "drop" ? after.overload_drop.packets : after.overload_pass.packets);
  ASSERT_TRUE(js.contains("miss_path")) << r.out;
  EXPECT_TRUE(js["miss_path"]["rates"].contains("decided_per_s")) << r.out;
}

INSTANTIATE_TEST_SUITE_P(Policies, MissPath,
                         ::testing::Values(Case{"PassOneWorker", "pass", 1, "1"},
                                           Case{"DropTwoWorkersFourQueues", "drop", 4, "2"},
                                           Case{"GpuTwoWorkersFourQueues", "pass", 4, "2", true}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
