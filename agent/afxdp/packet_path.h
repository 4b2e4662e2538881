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
//        the streams kept in the same flow table's entries; their cache entry
//        says GPO_ACT_INSPECT, which routes them here ahead of new flows)
//     -> per packet:
//          drop       : recycle the frame (never delivered)
//          pass/alert : host mode  -> re-inject through xdp_inject (BPF_PROG_TEST_RUN,
//                                     live frames): the skb goes up the stack
//                       inline mode -> TX on the peer interface's AF_XDP socket
//          (a reassembled datagram: each of its fragments, as they came)
//     -> flow verdict into the `flows` map, so later packets stay in the kernel.
//     -> the frame back on its socket's fill ring, and the socket's credit
//        (the `credits` map) raised by as much: XDP sends a socket only what
//        it has room for and gives the rest the overload policy (counted),
//        never a silent drop at a full ring.
//
// Workers (cfg.workers): rx queue q is served by worker q % workers, each on
// its own thread with its own event loop, sockets, batches, classifiers and
// reassembler (worker 0 runs on the caller's loop). The flow table is shared
// (FlowShards: a flow's directions may arrive on different queues). Each
// worker batches for its own GPU classifier, all on the same GPU.
//
// A timer beats the agent's heartbeat into the `agent` map (XDP treats a
// stale one as "agent gone": the fail policy), expires reassembly and flow
// state, and watches the overload counters: rates for `status`, and a
// warning at most every overload_warn_s while the policy is in force.
// reload() swaps in new rules between two batches (every worker paused) and
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
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "afxdp/flow_inspector.h"
#include "afxdp/flow_shards.h"
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
  uint32_t workers = 1;            // threads on the miss path (at most the rx queues)
  uint32_t overload_warn_s = 10;   // at most one overload warning per this many seconds
};

// The agent's counters, one definition (X-macro) for the struct, the sum over
// workers and the status file: X(name, what).
#define GPO_PACKET_COUNTERS(X)                                                                       \
  X(rx, "frames received from XDP")                                                               \
  X(rx_bytes, "bytes of them")                                                                    \
  X(passed, "verdict pass (alerts included)")                                                     \
  X(dropped, "verdict drop")                                                                      \
  X(alerts, "verdict alert (also counted in passed)")                                             \
  X(reinjected, "host mode: delivered up the stack through xdp_inject")                           \
  X(reinject_fail, "host mode: re-injections that failed")                                        \
  X(tx, "inline mode: sent on the peer port")                                                     \
  X(tx_fail, "inline mode: no room to send on the peer port")                                     \
  X(cache_installs, "verdicts installed in the flow cache")                                       \
  X(cache_install_fail, "verdict installs that failed")                                           \
  X(inspect_installs, "flows put under inspection (GPO_ACT_INSPECT entries)")                     \
  X(uncacheable, "packets decided while their flow stays under inspection")                       \
  X(already_decided, "packets of flows whose verdict was cached while they were on their way")    \
  X(stream_dropped, "TCP segments dropped by stream reassembly (conflict, before start, full)")   \
  X(unparsed, "frames the agent could not parse (unparsed or non-IP policy applied)")             \
  X(fragments_delivered, "fragments of passed datagrams delivered")                               \
  X(invalidated, "cached verdicts removed by rule reloads")                                       \
  X(reloads, "rule reloads")                                                                      \
  X(tx_retries, "TX rings that needed another kick later")                                        \
  X(errors, "exceptions caught while acting on a packet")                                         \
  X(csum_completed, "offload-only L4 checksums completed before delivery")                        \
  X(batches, "batches classified")                                                                \
  X(classify_ns_total, "total time in Classifier::classify")                                          \
  X(gpu_batches, "batches classified on the GPU")                                                 \
  X(gpu_frames, "frames classified on the GPU")                                                   \
  X(gpu_busy_cpu, "GPU-sized batches the CPU took because both GPU buffers were busy")            \
  X(gpu_ns_total, "submit -> verdicts collected, summed over GPU batches")                            \
  X(gpu_wait_ns_total, "time the loop blocked on the GPU (queue bound reached)")                      \
  X(gpu_errors, "GPU failures (those batches were classified on the CPU)")                        \
  X(credit_repaid, "socket credit given back for frames the kernel dropped anyway")

struct PacketCounters {
#define GPO_X_FIELD(name, what) uint64_t name = 0;
  GPO_PACKET_COUNTERS(GPO_X_FIELD)
#undef GPO_X_FIELD
  uint64_t classify_ns_max = 0;
  PacketCounters& operator+=(const PacketCounters& o);
};

// The miss path's rates over the last watch period (PacketPath::rates()).
struct MissRates {
  double seconds = 0;         // the period measured
  double misses = 0;          // per second: flow-cache misses (to the agent, or overload)
  double to_agent = 0;        // per second: sent to the agent's sockets
  double decided = 0;         // per second: packets the agent decided
  double overload = 0;        // per second: misses the overload policy decided in XDP
  uint64_t overload_total = 0;
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
  void set_gpu_classifier(classify::AsyncClassifier* gpu) { gpu0_ = gpu; }
  // With cfg.workers > 1, before start(): the classifiers of workers 1..N-1,
  // made from a rule snapshot (again on every reload). Without a CPU maker
  // every worker gets a CpuClassifier; without a GPU maker only worker 0 has
  // the GPU classifier set above (the others classify on the CPU).
  using CpuMaker = std::function<std::unique_ptr<classify::Classifier>(const RuleSnapshot&)>;
  using GpuMaker = std::function<std::unique_ptr<classify::AsyncClassifier>(const RuleSnapshot&)>;
  void set_classifier_makers(CpuMaker cpu, GpuMaker gpu) {
    make_cpu_ = std::move(cpu);
    make_gpu_ = std::move(gpu);
  }

  // Opens one socket per rx queue of every interface (served by workers
  // round robin), starts the workers' threads, and only then puts the
  // sockets in the XSKMAP. Throws std::runtime_error.
  void start(loop::EventLoop& loop);
  // Takes the sockets out of the XSKMAP (the fail policy applies from here),
  // classifies what is still pending, stops the workers' threads.
  void stop(loop::EventLoop& loop);

  // New rules, atomically between two batches: every worker decides what it
  // already received by the old rules and pauses, then the cached verdicts
  // the new rules could change are removed (verdict_could_change), then the
  // new rules take over (the stored TCP streams are scanned again for the new
  // patterns). Worker 0's classifiers are the caller's (built from next; gpu
  // may be null); the other workers' come from the makers.
  struct ReloadResult {
    size_t invalidated = 0, kept = 0;
  };
  ReloadResult reload(std::shared_ptr<const RuleSnapshot> next, classify::Classifier& cpu,
                      classify::AsyncClassifier* gpu);

  // Summed over workers (a snapshot: other workers publish theirs per batch).
  PacketCounters counters() const;
  MissRates rates() const;
  const FlowShards& flows() const { return flows_; }
  size_t socket_count() const;
  uint32_t worker_count() const { return uint32_t(workers_.size()); }
  // CPU seconds each worker's thread has run so far (benchmarks: decisions per core).
  std::vector<double> worker_cpu_seconds() const;
  bool any_zero_copy() const;
  // Agent counters, XDP counters (summed over CPUs) and the socket list.
  nlohmann::json to_json() const;

 private:
  struct Worker;
  friend struct Worker;

  void housekeeping();
  void watch_overload(uint64_t now);
  uint32_t xsk_slot(const XskSocket& s) const;  // its key in the xsks map
  void install(const gpo_flow_key& key, uint8_t action, uint32_t rule_id, uint64_t flags, PacketCounters& c);

  loader::XdpFilter& xdp_;
  std::shared_ptr<const RuleSnapshot> rules_;
  PacketPathConfig cfg_;
  classify::Classifier* classifier0_;
  classify::AsyncClassifier* gpu0_ = nullptr;
  CpuMaker make_cpu_;
  GpuMaker make_gpu_;
  loop::EventLoop* loop_ = nullptr;
  // The flow table (flow_state.h) in shards: every frame's flow bits, set in
  // process_batch() in arrival order, and the streams of the flows under
  // inspection (flow_inspector.h keeps them there).
  FlowShards flows_;
  std::vector<std::unique_ptr<Worker>> workers_;
  gpo_xsk_credit* credits_ = nullptr;  // the mmapped credits map

  // The overload watch (housekeeping, worker 0's loop).
  mutable std::mutex rates_mu_;
  MissRates rates_;
  uint64_t watch_ns_ = 0;
  gpo_xdp_stats watch_stats_{};
  uint64_t watch_decided_ = 0;
  uint64_t warned_ns_ = 0;
  uint64_t overload_since_warn_ = 0;
};

}  // namespace gpo::afxdp
