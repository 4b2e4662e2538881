// What the integration tests share: the real agent binary started inside a
// test network namespace with its own pin directory, status file and pid
// file, and readers for the pinned maps it leaves (stats, flow verdicts).
#pragma once
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bpf/xdp_filter.h"
#include "common/netns.h"
#include "common/proc.h"
#include "loader/xdp_loader.h"

namespace gpo::test {

using namespace std::chrono_literals;

inline gpo_flow_key flow_key4(const std::string& src, uint16_t sport, const std::string& dst, uint16_t dport,
                              uint8_t proto = 17) {
  uint8_t s[16] = {}, d[16] = {};
  s[10] = s[11] = d[10] = d[11] = 0xff;
  inet_pton(AF_INET, src.c_str(), s + 12);
  inet_pton(AF_INET, dst.c_str(), d + 12);
  gpo_flow_key k{};
  gpo_flow_key_make(&k, s, d, htons(sport), htons(dport), proto);
  return k;
}

class AgentFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!is_root()) GTEST_SKIP() << "needs root (network namespaces, XDP, AF_XDP)";
    try {
      loader::ensure_bpffs();
    } catch (const std::exception& e) {
      GTEST_SKIP() << "no bpffs: " << e.what();
    }
    static std::atomic<int> seq{0};
    int n = seq++;
    tmp_ = std::filesystem::temp_directory_path() / ("gpo-it-" + std::to_string(getpid()) + "-" + std::to_string(n));
    std::filesystem::create_directories(tmp_);
    // Own pin directory: parallel tests and a running agent never share maps.
    pin_dir_ = "/sys/fs/bpf/gpo-it-" + std::to_string(getpid()) + "-" + std::to_string(n);
    rules_ = (tmp_ / "test.rules").string();
  }

  void TearDown() override {
    agent_.reset();
    nets_.clear();
    std::error_code ec;
    if (!pin_dir_.empty()) std::filesystem::remove_all(pin_dir_, ec);
    if (!tmp_.empty()) std::filesystem::remove_all(tmp_, ec);
  }

  void write_rules(const std::string& text) { std::ofstream(rules_) << text; }

  NetNs& netns(const std::string& tag) {
    nets_.push_back(std::make_unique<NetNs>(tag));
    return *nets_.back();
  }

  std::string status_file() const { return (tmp_ / "status.json").string(); }
  std::string pid_file() const { return (tmp_ / "agent.pid").string(); }

  std::vector<std::string> agent_argv(const std::string& xdp, const std::vector<std::string>& extra) const {
    std::vector<std::string> argv{AGENT_BIN, "run", "--xdp", xdp, "--rules", rules_, "--pin-dir", pin_dir_,
                                  "--status-file", status_file(), "--status-interval-ms", "100",
                                  "--pid-file", pid_file(), "--no-spot", "--no-offload"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  // Starts the agent in ns and waits until it serves.
  std::unique_ptr<NsProcess> start_agent(const NetNs& ns, const std::string& xdp,
                                         const std::vector<std::string>& extra = {}) {
    auto log = (tmp_ / ("agent-" + std::to_string(starts_++) + ".log")).string();
    auto p = std::make_unique<NsProcess>(ns, agent_argv(xdp, extra), log);
    bool ready = p->wait_for_log("packet filter ready", 20s);
    EXPECT_TRUE(ready) << "agent did not get ready:\n" << p->log();
    return ready ? std::move(p) : nullptr;
  }

  int map_fd(const std::string& name) {
    int fd = bpf_obj_get((pin_dir_ + "/" + name).c_str());
    EXPECT_GE(fd, 0) << "pinned map " << pin_dir_ << "/" << name << ": " << strerror(errno);
    return fd;
  }

  // The verdict cached for key, waiting up to timeout for it to appear.
  std::optional<gpo_flow_verdict> flow(const gpo_flow_key& key, std::chrono::milliseconds timeout = 2000ms) {
    int fd = map_fd("flows");
    if (fd < 0) return std::nullopt;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::optional<gpo_flow_verdict> out;
    do {
      gpo_flow_verdict v{};
      // A verdict: an entry that only routes a flow under inspection to the agent is none.
      if (bpf_map_lookup_elem(fd, &key, &v) == 0 && v.action != GPO_ACT_INSPECT) {
        out = v;
        break;
      }
      std::this_thread::sleep_for(10ms);
    } while (std::chrono::steady_clock::now() < deadline);
    close(fd);
    return out;
  }

  gpo_xdp_stats stats() {
    int fd = map_fd("stats");
    gpo_xdp_stats s{};
    if (fd >= 0) {
      s = loader::sum_stats(fd);
      close(fd);
    }
    return s;
  }

  nlohmann::json status_json() {
    std::ifstream in(status_file());
    nlohmann::json j;
    try {
      if (in) in >> j;
    } catch (const std::exception&) {
    }
    return j;
  }

  // The status file once the agent rewrote it (it does every 100 ms).
  nlohmann::json fresh_status() {
    std::this_thread::sleep_for(300ms);
    return status_json();
  }

  std::filesystem::path tmp_;
  std::string pin_dir_, rules_;
  std::vector<std::unique_ptr<NetNs>> nets_;
  std::unique_ptr<NsProcess> agent_;
  int starts_ = 0;
};

}  // namespace gpo::test
