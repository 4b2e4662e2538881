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
// With a GPU classifier (set_gpu_classifier), batches of at least
// gpu_min_batch frames go to the GPU asynchronously (double buffering: batch N
// on the GPU while batch N+1 is received); its completion eventfd wakes the
// loop, and batches are acted on strictly in arrival order (a flow's packets
// never overtake each other). When both GPU buffers are busy, or the batch is
// small, the CPU classifier takes the batch at once, so the rx loop does not
// wait on the GPU; it waits only when more than max_batches_in_flight batches
// are held (UMEM frames are finite), and then for one GPU batch at most. A
// GPU error re-classifies that batch on the CPU and leaves the GPU unused.
//
// Everything runs on the event loop thread; the rx path never blocks except
// in epoll_wait.
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "afxdp/flow_state.h"
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
  uint32_t gpu_min_batch = 256;    // with a GPU classifier: smaller batches stay on the CPU
  uint32_t max_batches_in_flight = 4;  // batches classified but not yet acted on (GPU in flight)
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
  uint64_t gpu_batches = 0;    // batches classified on the GPU
  uint64_t gpu_frames = 0;
  uint64_t gpu_busy_cpu = 0;   // GPU-sized batches the CPU took because both GPU buffers were busy
  uint64_t gpu_ns = 0;         // submit -> verdicts collected, summed over GPU batches
  uint64_t gpu_wait_ns = 0;    // time the loop blocked on the GPU (queue bound reached)
  uint64_t gpu_errors = 0;     // GPU failures (those batches were classified on the CPU)
};

class PacketPath {
 public:
  PacketPath(loader::XdpFilter& xdp, classify::Classifier& classifier, PacketPathConfig cfg);
  ~PacketPath();
  PacketPath(const PacketPath&) = delete;
  PacketPath& operator=(const PacketPath&) = delete;

  // Optional, before start(): batches >= cfg.gpu_min_batch go to `gpu`
  // (not owned; outlives the path). The CPU classifier stays for the rest.
  void set_gpu_classifier(classify::AsyncClassifier* gpu) { gpu_ = gpu; }

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

  // A batch from receipt to action: verdicts come from the CPU at once or
  // from the GPU later (ticket >= 0 until collected).
  struct Batch {
    std::vector<Pending> pending;
    std::vector<classify::Frame> frames;
    std::vector<classify::Verdict> verdicts;
    int ticket = -1;
    uint64_t submitted_ns = 0;
  };

  void on_readable(XskSocket* s);
  void on_gpu_done();
  void gpu_fail(const char* what);  // logs once; later batches stay on the CPU
  // Acts on finished batches at the front of the queue; waits for the front
  // while the queue is longer than allowed, or for everything when drain.
  void complete_batches(bool drain);
  void act(Batch& b);
  void on_window();
  void process_batch();
  void deliver(XskSocket* from, const RxFrame& f);
  XskSocket* peer_socket(const XskSocket* from) const;
  uint32_t xsk_slot(const XskSocket& s) const;  // its key in the xsks map
  void arm_window();
  void disarm_window();

  loader::XdpFilter& xdp_;
  classify::Classifier& classifier_;
  classify::AsyncClassifier* gpu_ = nullptr;
  bool gpu_failed_ = false;
  std::deque<Batch> batches_;  // classified or in flight, arrival order
  PacketPathConfig cfg_;
  std::vector<std::unique_ptr<XskSocket>> socks_;
  int timer_fd_ = -1;
  bool window_armed_ = false;
  std::vector<Pending> pending_;
  std::unordered_map<gpo_flow_key, uint32_t, KeyHash, KeyEq> uncached_;  // agent-seen packets per open flow
  // Rule `flow:` state: each frame's FlowBits (flow_state.h), set in
  // process_batch() in arrival order. Entries of flows the cache decides
  // age out (idle timeout, bounded table): packets of such a flow already
  // in flight still get the right direction.
  FlowTracker flow_state_;
  PacketCounters c_;
};

}  // namespace gpo::afxdp
