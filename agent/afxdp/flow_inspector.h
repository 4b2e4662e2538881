// Content inspection of the flows whose verdict content rules may still
// change (a content rule matches their headers but not, so far, their
// payload). Their packets keep coming to the agent; this decides them. The
// flows themselves (direction, establishment, timeouts, bounds) are the flow
// table's (flow_state.h): this keeps its streams in the table's entries.
//
// TCP: each direction is reassembled in sequence order before the content
// rules see it (Suricata's stream reassembly): a pattern split across
// segments, sent out of order or hidden behind an overlapping retransmission
// is found as the receiver's stack will assemble it. The invariant that makes
// it safe inline: every byte the agent lets through at a sequence number is
// the byte it inspected there. So
//  - a segment whose bytes differ from bytes already seen at the same
//    sequence numbers (in order or held out of order) is dropped, whatever
//    the receiver's overlap policy would have made of it;
//  - out-of-order segments are delivered (the receiver buffers them too) and
//    kept; the segment that closes the gap is inspected together with them
//    before it goes, so the receiver's application never reads stream bytes
//    the rules have not seen in order;
//  - data before the first sequence number seen (a flow picked up mid-stream)
//    is dropped: it was never inspected.
// Patterns are matched incrementally (the Aho-Corasick state is carried
// across segments), so each stream byte is scanned once; contents with
// positions (offset, depth, distance, within) are searched in the stream's
// bytes, positions counted from the start of the direction's stream.
//
// Other protocols: each datagram is a message; it is classified alone.
//
// Which verdicts end inspection: the one rule for every packet the agent
// decides (classify::decide's `cacheable`: no earlier rule can still match a
// later packet of the flow, in either direction), applied to the stream.
//
// Bounds: `depth` bytes per TCP direction (all protocols: per flow for the
// others), like Suricata's stream.reassembly.depth; then the depth policy
// (keep: cache the verdict the flow has at that point, drop: cache drop).
// memcap bounds the stream bytes held over all flows (a flow that cannot get
// memory reaches its depth). A flow evicted from the full flow table gets the
// depth policy; an idle one is forgotten.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "afxdp/flow_state.h"
#include "afxdp/rule_snapshot.h"
#include "bpf/xdp_filter.h"
#include "kernels/classify/classify.h"
#include "kernels/classify/frame.h"

namespace gpo::afxdp {

enum class DepthPolicy : uint8_t { keep, drop };

struct InspectorConfig {
  uint64_t depth = 1u << 20;        // bytes inspected per TCP direction / per flow of other protocols
  DepthPolicy depth_policy = DepthPolicy::keep;
  size_t memcap = 64u << 20;        // stream bytes held over all flows
  uint32_t max_ooo_segments = 256;  // out-of-order segments held per direction
  uint32_t inspect_packets = 0;     // also stop after this many packets of a flow (0: no such cap)
};

struct InspectorCounters {
  uint64_t started = 0;        // flows taken under inspection
  uint64_t midstream = 0;      // TCP directions picked up without their SYN
  uint64_t in_order = 0;       // TCP segments that added in-order stream bytes
  uint64_t out_of_order = 0;   // TCP segments held ahead of a gap
  uint64_t retransmits = 0;    // TCP segments with only bytes already seen (identical)
  uint64_t conflicts = 0;      // dropped: bytes differing from what was inspected at that sequence
  uint64_t ooo_full = 0;       // dropped: too many out-of-order segments held
  uint64_t before_start = 0;   // dropped: data before the first sequence number seen
  uint64_t depth = 0;          // flows that reached the depth (then the depth policy)
  uint64_t memcap = 0;         // flows that could not get stream memory (depth policy)
  uint64_t evicted = 0;        // flows evicted from the full flow table (depth policy)
  uint64_t expired = 0;        // idle flows forgotten (or restarted by a new SYN on their tuple)
  uint64_t decided = 0;        // flows that left inspection with a cacheable verdict
};

struct FlowDecision {
  uint8_t action = GPO_ACT_PASS;
  uint32_t rule_id = 0;
  bool deliver = true;   // false: this packet is dropped
  bool install = false;  // cache (action, rule_id, flags) for the flow
  uint64_t flags = 0;    // GPO_FLOW_CLIENT_A/B for the cache entry
  bool already_decided = false;  // the flow's verdict was cached before this packet came
  // Install (again) the flow's GPO_ACT_INSPECT cache entry, which routes its
  // packets to the agent ahead of new flows: at the start of inspection, and
  // every kReinstallAfterNs after (the cache's LRU may have pushed it out).
  bool route_to_agent = false;
};

// A packet of a decided flow arriving this long after the install means the
// cache no longer holds the verdict: it is installed again.
inline constexpr uint64_t kReinstallAfterNs = 200ull * 1000000ull;

// The state of one flow under inspection (FlowTracker::Flow::inspect).
struct InspectState {
  struct Stream {  // one direction of a TCP flow
    bool started = false;
    uint32_t base = 0;  // sequence number of stream byte 0
    std::string data;   // the in-order bytes inspected so far (at most depth)
    std::map<uint32_t, std::string> ooo;  // held ahead of the gap: offset from base -> bytes
    uint32_t st_exact = 0, st_folded = 0;  // automaton states after data
    std::vector<uint64_t> seen;            // bit per pattern id: occurs in data
  };
  Stream dir[2];           // [0]: sent by endpoint a of the key, [1]: by b
  uint64_t inspected = 0;  // other protocols: payload bytes
  uint64_t packets = 0;
  uint8_t last_action = GPO_ACT_PASS;
  uint32_t last_rule = 0;
  size_t bytes = 0;        // stream bytes held (in data and ooo)
  uint64_t routed_ns = 0;  // when its GPO_ACT_INSPECT cache entry was last installed
};

// Stream bytes held by every inspector that shares it (--stream-memcap): the
// agent's threads inspect in one budget.
class StreamMemory {
 public:
  explicit StreamMemory(size_t cap) : cap_(cap) {}
  bool take(size_t n);  // false (nothing taken) when n more would pass the cap
  void give(size_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }
  size_t used() const { return used_.load(std::memory_order_relaxed); }
  size_t cap() const { return cap_; }

 private:
  std::atomic<size_t> used_{0};
  size_t cap_;
};

class FlowInspector {
 public:
  using Install = std::function<void(const gpo_flow_key&, uint8_t action, uint32_t rule_id, uint64_t flags)>;

  // flows: the flow table this inspects in (it outlives the inspector).
  // memory: the stream budget shared with other inspectors (null: its own,
  // of cfg.memcap bytes).
  FlowInspector(FlowTracker& flows, std::shared_ptr<const RuleSnapshot> rules, InspectorConfig cfg,
                StreamMemory* memory = nullptr);
  ~FlowInspector();
  FlowInspector(const FlowInspector&) = delete;
  FlowInspector& operator=(const FlowInspector&) = delete;
  // Verdicts for flows that leave the table without a packet (eviction).
  void set_install(Install fn) { install_ = std::move(fn); }

  // Decides one packet (or reassembled datagram) the classifier has seen:
  // v is its verdict for the packet alone, flow its classify::FlowBits (the
  // flow table's observe() gave them; the flow is in the table). p must be ok().
  FlowDecision decide(const uint8_t* frame, const classify::ParsedFrame& p, const classify::Verdict& v, uint8_t flow,
                      uint64_t now_ns);
  // New rules: stored stream bytes are scanned again with the new patterns.
  void set_rules(std::shared_ptr<const RuleSnapshot> rules);

  const InspectorCounters& counters() const { return c_; }
  size_t flows() const { return flows_.inspected(); }
  size_t bytes_held() const { return bytes_; }  // by this inspector's flows
  const InspectorConfig& config() const { return cfg_; }

 private:
  using Stream = InspectState::Stream;
  using Flow = FlowTracker::Flow;
  enum class Seg { ok, conflict, ooo_full, before_start, depth, memcap };

  Seg segment(InspectState& f, Stream& s, uint32_t seq, uint8_t tcp_flags, const uint8_t* payload, uint32_t len);
  Seg append(InspectState& f, Stream& s, const uint8_t* bytes, size_t n);
  void scan(Stream& s, const uint8_t* bytes, size_t n) const;
  // The position search of a rule's contents (classify::decide's `search`)
  // over the stream's inspected bytes; s may be null (no bytes).
  int search(const Stream* s, const classify::RuleEntry& r) const;
  FlowDecision leave(Flow& f, uint8_t action, uint32_t rule_id, uint64_t now_ns);  // cache it, end inspection
  void release(InspectState& st);  // its bytes leave the memcap

  FlowTracker& flows_;
  std::shared_ptr<const RuleSnapshot> rules_;
  InspectorConfig cfg_;
  Install install_;
  size_t bytes_ = 0;
  std::unique_ptr<StreamMemory> own_mem_;
  StreamMemory* mem_;
  InspectorCounters c_;
};

}  // namespace gpo::afxdp
