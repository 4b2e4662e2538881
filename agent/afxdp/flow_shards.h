// The agent's flow table and stream inspector for packet paths on several
// threads (PacketWorkers): a flow's two directions may arrive on queues that
// different threads serve, so its state is shared. The table is split by
// flow key into shards, each a FlowTracker with its FlowInspector behind one
// mutex; every call locks only the shard of the packet's flow, for as long
// as the call takes. The stream memory (--stream-memcap) is one budget for
// all shards; the table size is split evenly.
//
// One thread (one shard) is the single-threaded table with an uncontended
// lock: PacketPath uses this class either way.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <nlohmann/json.hpp>

#include "afxdp/flow_inspector.h"
#include "afxdp/flow_state.h"

namespace gpo::afxdp {

class FlowShards {
 public:
  FlowShards(uint32_t shards, FlowTableConfig table, InspectorConfig inspect, std::shared_ptr<const RuleSnapshot> rules);
  FlowShards(const FlowShards&) = delete;
  FlowShards& operator=(const FlowShards&) = delete;

  // Verdicts of inspected flows pushed out of a full shard (called under its lock).
  void set_install(FlowInspector::Install fn);

  // FlowTracker::observe and FlowInspector::decide of the packet's shard.
  uint8_t observe(const classify::ParsedFrame& p, const uint8_t* frame, uint64_t now_ns);
  FlowDecision decide(const uint8_t* frame, const classify::ParsedFrame& p, const classify::Verdict& v, uint8_t flow,
                      uint64_t now_ns);
  // Has the agent cached a verdict for this flow (and is it still in the table)?
  bool decided(const gpo_flow_key& key);

  void expire(uint64_t now_ns);
  // New rules: streams rescanned, cached-verdict marks cleared.
  void set_rules(std::shared_ptr<const RuleSnapshot> rules);

  uint32_t shard_count() const { return uint32_t(shards_.size()); }
  size_t flows() const;      // entries in the table
  size_t inspected() const;  // of them under inspection
  InspectorCounters counters() const;
  const FlowTableConfig& table_config() const { return table_; }
  const InspectorConfig& inspect_config() const { return inspect_; }
  size_t bytes_held() const { return memory_.used(); }
  // {"flows": {...}, "inspection": {...}} for the status file.
  nlohmann::json to_json() const;

 private:
  struct Shard {
    Shard(FlowTableConfig t, std::shared_ptr<const RuleSnapshot> rules, InspectorConfig i, StreamMemory* mem)
        : flows(t), inspector(flows, std::move(rules), i, mem) {}
    mutable std::mutex mu;
    FlowTracker flows;
    FlowInspector inspector;
  };
  Shard& shard_of(const gpo_flow_key& key);
  Shard& shard_of(const classify::ParsedFrame& p);

  FlowTableConfig table_;
  InspectorConfig inspect_;
  StreamMemory memory_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace gpo::afxdp
