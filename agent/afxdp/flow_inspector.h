// The agent's table of flows under inspection: flows whose verdict content
// may still change (a content rule matches their headers but not, so far,
// their payload). Their packets keep coming to the agent; this decides them.
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
// across segments), so each stream byte is scanned once.
//
// Other protocols: each datagram is a message; it is classified alone.
//
// Bounds: `depth` bytes per TCP direction (all protocols: per flow for the
// others), like Suricata's stream.reassembly.depth; then the depth policy
// (keep: cache the verdict the flow has at that point, drop: cache drop).
// memcap bounds the stream bytes held over all flows (a flow that cannot get
// memory reaches its depth); max_flows the table (the least recently seen
// flow is evicted with the depth policy); flows idle past their protocol's
// timeout are forgotten.
#pragma once
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

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
  uint32_t max_flows = 65536;
  uint32_t max_ooo_segments = 256;  // out-of-order segments held per direction
  uint32_t inspect_packets = 0;     // also stop after this many packets of a flow (0: no such cap)
  uint64_t tcp_idle_ns = 600ull * 1000000000ull;
  uint64_t udp_idle_ns = 300ull * 1000000000ull;
  uint64_t other_idle_ns = 60ull * 1000000000ull;
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
  uint64_t evicted = 0;        // flows evicted from a full table (depth policy)
  uint64_t expired = 0;        // idle flows forgotten
  uint64_t decided = 0;        // flows that left inspection with a cacheable verdict
};

struct FlowDecision {
  uint8_t action = GPO_ACT_PASS;
  uint32_t rule_id = 0;
  bool deliver = true;   // false: this packet is dropped
  bool install = false;  // cache (action, rule_id, flags) for the flow
  uint64_t flags = 0;    // GPO_FLOW_CLIENT_A/B for the cache entry
};

// What is known about a packet's flow, for rules that depend on it
// (Suricata's flow:to_server / to_client / established).
struct FlowFacts {
  bool side_known = false;
  bool to_server = false;    // sent by the client (the side that opened the flow)
  bool established = false;  // TCP: SYN, SYN-ACK and ACK seen; other protocols: both sides seen
};

class FlowInspector {
 public:
  using Install = std::function<void(const gpo_flow_key&, uint8_t action, uint32_t rule_id, uint64_t flags)>;

  FlowInspector(std::shared_ptr<const RuleSnapshot> rules, InspectorConfig cfg);
  // Verdicts for flows that leave the table without a packet (eviction).
  void set_install(Install fn) { install_ = std::move(fn); }

  // Decides one packet (or reassembled datagram) the classifier has seen:
  // v is its verdict for the packet alone. p must be ok().
  // flow: the packet's classify::FlowBits (flow_state.h).
  FlowDecision decide(const uint8_t* frame, const classify::ParsedFrame& p, const classify::Verdict& v, uint8_t flow,
                      uint64_t now_ns);
  // The flow facts of a packet, before it is classified: from the table when
  // the flow is in it, else from the packet itself (a SYN goes to the server).
  FlowFacts facts(const uint8_t* frame, const classify::ParsedFrame& p) const;
  // The cache flags (client side) for a packet that opens a flow.
  static uint64_t client_flags(const uint8_t* frame, const classify::ParsedFrame& p);
  void expire(uint64_t now_ns);
  // New rules: stored stream bytes are scanned again with the new patterns.
  void set_rules(std::shared_ptr<const RuleSnapshot> rules);
  void clear();

  const InspectorCounters& counters() const { return c_; }
  size_t flows() const { return flows_.size(); }
  size_t bytes_held() const { return bytes_; }
  const InspectorConfig& config() const { return cfg_; }

 private:
  struct Stream {  // one direction of a TCP flow
    bool started = false;
    uint32_t base = 0;  // sequence number of stream byte 0
    std::string data;   // the in-order bytes inspected so far (at most depth)
    std::map<uint32_t, std::string> ooo;  // held ahead of the gap: offset from base -> bytes
    uint32_t st_exact = 0, st_folded = 0;  // automaton states after data
    std::vector<uint64_t> seen;            // bit per pattern id: occurs in data
  };
  struct Flow {
    gpo_flow_key key{};
    Stream dir[2];  // [0]: sent by endpoint a of the key, [1]: by b
    int client = -1;  // 0: a, 1: b, -1: not known
    uint8_t handshake = 0;
    bool seen_from[2] = {false, false};
    uint64_t inspected = 0;  // other protocols: payload bytes
    uint64_t packets = 0;
    uint64_t last_ns = 0;
    uint8_t last_action = GPO_ACT_PASS;
    uint32_t last_rule = 0;
    size_t bytes = 0;
    std::list<gpo_flow_key>::iterator lru;
  };
  struct KeyHash {
    size_t operator()(const gpo_flow_key& k) const noexcept;
  };
  struct KeyEq {
    bool operator()(const gpo_flow_key& a, const gpo_flow_key& b) const noexcept;
  };
  enum class Seg { ok, conflict, ooo_full, before_start, depth, memcap };

  Seg segment(Flow& f, Stream& s, uint32_t seq, uint8_t tcp_flags, const uint8_t* payload, uint32_t len);
  Seg append(Flow& f, Stream& s, const uint8_t* bytes, size_t n);
  void scan(Stream& s, const uint8_t* bytes, size_t n) const;
  // The position search of a rule's contents (classify::decide's `search`)
  // over the stream's inspected bytes; s may be null (no bytes).
  int search(const Stream* s, const classify::RuleEntry& r) const;
  FlowDecision leave(Flow& f, uint8_t action, uint32_t rule_id);  // install and forget
  bool other_side_open(const Flow* f, int from, const classify::ParsedFrame& p, uint8_t flow) const;
  void forget(const gpo_flow_key& k);
  uint64_t flags_of(const Flow& f) const;
  uint64_t idle_ns(uint8_t proto) const;

  std::shared_ptr<const RuleSnapshot> rules_;
  InspectorConfig cfg_;
  Install install_;
  std::unordered_map<gpo_flow_key, Flow, KeyHash, KeyEq> flows_;
  std::list<gpo_flow_key> lru_;  // front: most recently seen
  size_t bytes_ = 0;
  InspectorCounters c_;
};

}  // namespace gpo::afxdp
