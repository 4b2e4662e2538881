// The agent's flow table: the one place that follows the flows whose packets
// reach the agent. Per flow it knows which side is the client, where a TCP
// handshake stands, whether the flow is established, when it was last seen,
// whether its verdict is cached in XDP, and, while content rules may still
// decide it, the stream inspector's state (flow_inspector.h keeps its
// reassembled streams in these entries). Every packet the agent classifies
// gets its classify::FlowBits (to_server / to_client, established) from
// observe(), in arrival order; the same entry then feeds stream reassembly
// and gives the cache entry its client side (GPO_FLOW_CLIENT_A/B).
//
// Suricata's meaning, which the rules were written for:
//  - The client is the sender of the flow's first packet, except that a TCP
//    SYN/ACK seen first makes its receiver the client.
//  - TCP is established once the three-way handshake completed BEFORE this
//    packet: SYN (client), SYN/ACK acknowledging it (server), ACK
//    acknowledging that (client); the handshake's last ACK itself is not yet
//    established, the packets after it are. A flow picked up mid-stream (its
//    first packet no SYN) or reset during the handshake never becomes
//    established (Suricata's default, stream.midstream: false).
//  - Other protocols are established once both directions were seen, this
//    packet included (a UDP reply is established).
//  - A SYN with another initial sequence number than the client's first SYN
//    is a new connection on the same tuple (port reuse, or a new attempt):
//    the flow starts over, its cached-verdict mark and inspection included.
//
// Lifetime and bounds: an entry lives while packets of its flow reach the
// agent, also after its verdict is cached (packets already on their way
// still get the flow's direction), until it is idle past its protocol's
// timeout (the flow cache's own timeouts: a flow the cache forgot starts over
// here too). The table holds max_flows entries; when it is full the least
// recently seen flow goes, one that is not under inspection first (a flood
// of new flows cannot push the flows being inspected out). An entry under
// inspection that leaves without a packet (expired, evicted) is handed to the
// on_leave callback first (the inspector caches its depth-policy verdict).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <unordered_map>

#include "bpf/xdp_filter.h"
#include "kernels/classify/frame.h"

namespace gpo::afxdp {

struct FlowTableConfig {
  uint32_t max_flows = 65536;
  uint64_t tcp_idle_ns = 600ull * 1000000000ull;
  uint64_t udp_idle_ns = 300ull * 1000000000ull;
  uint64_t other_idle_ns = 60ull * 1000000000ull;
};

// The stream inspector's per-flow state (defined in flow_inspector.h).
struct InspectState;
struct InspectStateDeleter {
  void operator()(InspectState* s) const;  // flow_inspector.cpp
};

class FlowTracker {
 public:
  enum class Tcp : uint8_t { kNone, kSynSent, kSynAckSent, kEstablished, kNever };
  enum class Leave : uint8_t { kExpired, kEvicted };

  struct Flow {
    gpo_flow_key key{};
    bool client_is_a = true;  // the client is the key's (addr_a, port_a) side
    Tcp tcp = Tcp::kNone;
    bool seen_to_server = false, seen_to_client = false;
    uint32_t client_isn = 0, server_isn = 0;
    uint64_t last_ns = 0;
    // The verdict cached for the flow by the agent (packets of it still on
    // their way to the agent get it without inspection).
    bool decided = false;
    uint8_t action = 0;
    uint32_t rule_id = 0;
    uint64_t decided_ns = 0;  // when it was (last) installed
    // Present while content rules may still decide the flow.
    std::unique_ptr<InspectState, InspectStateDeleter> inspect;

    bool established() const;
    // GPO_FLOW_CLIENT_A or GPO_FLOW_CLIENT_B, for the flow's cache entry.
    uint64_t client_flag() const { return client_is_a ? GPO_FLOW_CLIENT_A : GPO_FLOW_CLIENT_B; }

   private:
    friend class FlowTracker;
    std::list<Flow*>::iterator lru_pos;
  };
  using OnLeave = std::function<void(Flow&, Leave)>;

  explicit FlowTracker(FlowTableConfig cfg = {});
  FlowTracker(const FlowTracker&) = delete;
  FlowTracker& operator=(const FlowTracker&) = delete;

  // The packet's classify::FlowBits, after which the flow's state includes
  // it. frame: the frame `p` was parsed from (TCP sequence numbers). 0 for a
  // frame that did not parse.
  uint8_t observe(const classify::ParsedFrame& p, const uint8_t* frame, uint64_t now_ns);
  // The flow's entry; null when it is not in the table.
  Flow* find(const gpo_flow_key& key);
  // The entry moves between "plain" and "under inspection" (eviction order).
  void start_inspection(Flow& f, std::unique_ptr<InspectState, InspectStateDeleter> s);
  void end_inspection(Flow& f);

  void set_on_leave(OnLeave fn) { on_leave_ = std::move(fn); }
  void forget(const gpo_flow_key& key);
  // Entries idle past their protocol's timeout go (the housekeeping timer).
  void expire(uint64_t now_ns);
  // Every cached-verdict mark goes (a rule reload: verdicts may change).
  void clear_decisions();
  void clear();

  size_t size() const { return flows_.size(); }
  size_t inspected() const { return inspect_lru_.size(); }
  const FlowTableConfig& config() const { return cfg_; }
  uint64_t idle_ns(uint8_t proto) const;

  template <typename F>
  void for_each_inspected(F&& fn) {
    for (Flow* f : inspect_lru_) fn(*f);
  }

 private:
  struct KeyHash {
    size_t operator()(const gpo_flow_key& k) const noexcept;
  };
  struct KeyEq {
    bool operator()(const gpo_flow_key& a, const gpo_flow_key& b) const noexcept;
  };
  using Table = std::unordered_map<gpo_flow_key, Flow, KeyHash, KeyEq>;

  std::list<Flow*>& lru_of(const Flow& f) { return f.inspect ? inspect_lru_ : plain_lru_; }
  void touch(Flow& f);
  void erase(Table::iterator it, bool leaving, Leave why);
  void reset(Flow& f, const classify::ParsedFrame& p, bool from_a);
  void make_room();

  FlowTableConfig cfg_;
  Table flows_;
  std::list<Flow*> plain_lru_, inspect_lru_;  // front: most recently seen
  OnLeave on_leave_;
};

}  // namespace gpo::afxdp
