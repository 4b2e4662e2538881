// The agent's packet path: AF_XDP sockets on every rx queue of the filtered
// interfaces, batches of flow-cache misses through the classifier, and the
// verdicts acted on and installed in the XDP flow cache.
//
//   XDP miss -> XSKMAP -> socket rx ring -> batch (size or time window)
//     -> Classifier::classify -> per packet:
//          drop       : recycle the frame (never delivered)
//          pass/alert : host mode  -> re-inject through xdp_inject (BPF_PROG_TEST_RUN,
//                                     live frames): the skb goes up the stack
//                       inline mode -> TX on the peer interface's AF_XDP socket
//     -> flow verdict into the `flows` map, so later packets stay in the kernel.
//
// Verdicts the classifier marks not cacheable (a content rule matched the
// headers but not yet the payload) keep the flow coming to the agent, up to
// inspect_packets packets of that flow; then the verdict of the last packet
// is cached (bounded inspection, as an IDS bounds stream depth).
//
// Everything runs on the event loop thread; the rx path never blocks except
// in epoll_wait.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "afxdp/xsk_socket.h"
#include "bpf/xdp_filter.h"
#include "kernels/classify/classify.h"

namespace gpo::loader {
class XdpFilter;
}
namespace gpo::loop {
class EventLoop;
}

namespace gpo::afxdp {

struct PacketPathConfig {
  uint32_t batch_size = 64;        // classify at most this many frames at once
  uint32_t batch_window_us = 100;  // wait at most this long to fill a batch (0: classify what is there)
  uint32_t inspect_packets = 16;   // cap on agent-classified packets of a not-cacheable flow
  BindMode bind_mode = BindMode::auto_;
  uint32_t rx_frames = 2048;       // UMEM frames per socket for rx
};

struct PacketCounters {
  uint64_t rx = 0;             // frames received from XDP
  uint64_t rx_bytes = 0;
  uint64_t passed = 0;         // verdict pass (alerts included)
  uint64_t dropped = 0;        // verdict drop
  uint64_t alerts = 0;         // verdict alert (also counted in passed)
  uint64_t reinjected = 0;     // host mode: delivered up the stack through xdp_inject
  uint64_t reinject_fail = 0;
  uint64_t tx = 0;             // inline mode: sent on the peer port
  uint64_t tx_fail = 0;
  uint64_t cache_installs = 0;
  uint64_t cache_install_fail = 0;
  uint64_t uncacheable = 0;    // verdicts not cacheable (flow stays with the agent)
  uint64_t capped = 0;         // not-cacheable flows cached after inspect_packets
  uint64_t csum_completed = 0;  // offload-only L4 checksums completed before delivery
  uint64_t batches = 0;
  uint64_t classify_ns = 0;    // total time in Classifier::classify
  uint64_t classify_ns_max = 0;
};

class PacketPath {
 public:
  PacketPath(loader::XdpFilter& xdp, classify::Classifier& classifier, PacketPathConfig cfg);
  ~PacketPath();
  PacketPath(const PacketPath&) = delete;
  PacketPath& operator=(const PacketPath&) = delete;

  // Opens one socket per rx queue of every interface, registers them with the
  // loop and only then puts them in the XSKMAP. Throws std::runtime_error.
  void start(loop::EventLoop& loop);
  // Takes the sockets out of the XSKMAP (the fail policy applies from here),
  // classifies what is still pending, and closes the sockets.
  void stop(loop::EventLoop& loop);

  const PacketCounters& counters() const { return c_; }
  size_t socket_count() const { return socks_.size(); }
  bool any_zero_copy() const;
  // Agent counters, XDP counters (summed over CPUs) and the socket list.
  nlohmann::json to_json() const;

 private:
  struct Pending {
    XskSocket* sock;
    RxFrame frame;
  };
  struct KeyHash {
    size_t operator()(const gpo_flow_key& k) const noexcept;
  };
  struct KeyEq {
    bool operator()(const gpo_flow_key& a, const gpo_flow_key& b) const noexcept;
  };

  void on_readable(XskSocket* s);
  void on_window();
  void process_batch();
  void deliver(XskSocket* from, const RxFrame& f);
  XskSocket* peer_socket(const XskSocket* from) const;
  uint32_t xsk_slot(const XskSocket& s) const;  // its key in the xsks map
  void arm_window();
  void disarm_window();

  loader::XdpFilter& xdp_;
  classify::Classifier& classifier_;
  PacketPathConfig cfg_;
  std::vector<std::unique_ptr<XskSocket>> socks_;
  int timer_fd_ = -1;
  bool window_armed_ = false;
  std::vector<Pending> pending_;
  std::vector<classify::Frame> frames_;
  std::vector<classify::Verdict> verdicts_;
  std::unordered_map<gpo_flow_key, uint32_t, KeyHash, KeyEq> uncached_;  // agent-seen packets per open flow
  PacketCounters c_;
};

}  // namespace gpo::afxdp
