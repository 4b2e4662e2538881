// The agent's packet path: AF_XDP sockets on every rx queue of the filtered
// interfaces, batches of flow-cache misses through the classifier, and the
// verdicts acted on and installed in the XDP flow cache.
//
//   XDP miss -> XSKMAP -> socket rx ring
//     -> IP fragment? copied into the reassembler (ip_reassembly.h), frame recycled;
//        a complete datagram joins the batch as one packet
//     -> batch (size or time window); each packet, in arrival order, through
//        the flow table (FlowTracker::observe, flow_state.h): its flow's
//        direction and establishment, the flow bits `flow:` rules test
//     -> Classifier::classify (each packet alone, with its flow bits)
//     -> FlowInspector::decide (flow_inspector.h): flows a content rule may
//        still decide stay under inspection (TCP reassembled in stream order,
//        the streams kept in the same flow table's entries)
//     -> per packet:
//          drop       : recycle the frame (never delivered)
//          pass/alert : host mode  -> re-inject through xdp_inject (BPF_PROG_TEST_RUN,
//                                     live frames): the skb goes up the stack
//                       inline mode -> TX on the peer interface's AF_XDP socket
//          (a reassembled datagram: each of its fragments, as they came)
//     -> flow verdict into the `flows` map, so later packets stay in the kernel.
//
// A timer beats the agent's heartbeat into the `agent` map (XDP treats a
// stale one as "agent gone": the fail policy) and expires reassembly and
// inspection state. reload() swaps in new rules between two batches and
// removes the cached verdicts they could change.
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
#include <vector>

#include <nlohmann/json.hpp>

#include "afxdp/flow_inspector.h"
#include "afxdp/flow_state.h"
#include "afxdp/ip_reassembly.h"
#include "afxdp/rule_snapshot.h"
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
  FlowTableConfig flows;           // the agent's flow table: size, idle timeouts
  InspectorConfig inspect;         // flows under inspection: depth, its policy, memory
  ReassemblyLimits reassembly;     // IP fragments
  uint32_t housekeeping_ms = 250;  // heartbeat and expiry period
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
  uint64_t uncacheable = 0;    // packets decided while their flow stays under inspection
  uint64_t already_decided = 0;  // packets of flows whose verdict was cached while they were on their way
  uint64_t stream_dropped = 0;  // TCP segments dropped by stream reassembly (conflict, before start, full)
  uint64_t unparsed = 0;       // frames the agent could not parse (unparsed or non-IP policy applied)
  uint64_t fragments_delivered = 0;  // fragments of passed datagrams delivered
  uint64_t invalidated = 0;    // cached verdicts removed by rule reloads
  uint64_t reloads = 0;
  uint64_t tx_retries = 0;     // TX rings that needed another kick later
  uint64_t errors = 0;         // exceptions caught while acting on a packet
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
  PacketPath(loader::XdpFilter& xdp, std::shared_ptr<const RuleSnapshot> rules, classify::Classifier& classifier,
             PacketPathConfig cfg);
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

  // New rules, atomically between two batches: everything already received
  // is decided by the old rules first, then the cached verdicts the new rules
  // could change are removed (verdict_could_change), then the new rules take
  // over (the stored TCP streams are scanned again for the new patterns).
  // The classifiers are the caller's (built from next); gpu may be null.
  struct ReloadResult {
    size_t invalidated = 0, kept = 0;
  };
  ReloadResult reload(std::shared_ptr<const RuleSnapshot> next, classify::Classifier& cpu,
                      classify::AsyncClassifier* gpu);

  const PacketCounters& counters() const { return c_; }
  const FlowTracker& flows() const { return flows_; }
  const FlowInspector& inspector() const { return inspector_; }
  const FragmentReassembler& reassembler() const { return reasm_; }
  size_t socket_count() const { return socks_.size(); }
  bool any_zero_copy() const;
  // Agent counters, XDP counters (summed over CPUs) and the socket list.
  nlohmann::json to_json() const;

 private:
  struct Pending {
    XskSocket* sock;
    RxFrame frame;                      // frame.addr == kNoUmem: data points into datagram
    std::shared_ptr<Datagram> datagram;  // a reassembled datagram and its fragments
  };
  static constexpr uint64_t kNoUmem = ~uint64_t(0);

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
  void act_one(const Pending& p, const classify::Verdict& v, uint8_t flow, uint64_t now);
  void on_window();
  void process_batch();
  void housekeeping();
  void deliver(XskSocket* from, uint8_t* data, uint32_t len);
  void flush_all_tx();
  XskSocket* peer_socket(const XskSocket* from) const;
  uint32_t xsk_slot(const XskSocket& s) const;  // its key in the xsks map
  void arm_window();
  void disarm_window();

  loader::XdpFilter& xdp_;
  std::shared_ptr<const RuleSnapshot> rules_;
  classify::Classifier* classifier_;
  loop::EventLoop* loop_ = nullptr;
  classify::AsyncClassifier* gpu_ = nullptr;
  bool gpu_failed_ = false;
  std::deque<Batch> batches_;  // classified or in flight, arrival order
  PacketPathConfig cfg_;
  std::vector<std::unique_ptr<XskSocket>> socks_;
  int timer_fd_ = -1;
  bool window_armed_ = false;
  bool tx_backlog_ = false;  // a TX ring still holds frames: the window timer kicks again
  std::vector<Pending> pending_;
  // The flow table (flow_state.h): every frame's flow bits, set in
  // process_batch() in arrival order, and the streams of the flows under
  // inspection (inspector_ keeps them there).
  FlowTracker flows_;
  FlowInspector inspector_;
  FragmentReassembler reasm_;
  PacketCounters c_;
};

}  // namespace gpo::afxdp
