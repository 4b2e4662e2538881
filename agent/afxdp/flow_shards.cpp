#include "afxdp/flow_shards.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "kernels/classify/classify.h"

namespace gpo::afxdp {

FlowShards::FlowShards(uint32_t shards, FlowTableConfig table, InspectorConfig inspect,
                       std::shared_ptr<const RuleSnapshot> rules)
    : table_(table), inspect_(inspect), memory_(inspect.memcap) {
  if (shards == 0) shards = 1;
  FlowTableConfig per = table;
  per.max_flows = std::max<uint32_t>(1, table.max_flows / shards);
  for (uint32_t i = 0; i < shards; i++) shards_.push_back(std::make_unique<Shard>(per, rules, inspect, &memory_));
}

void FlowShards::set_install(FlowInspector::Install fn) {
  for (auto& s : shards_) s->inspector.set_install(fn);
}

FlowShards::Shard& FlowShards::shard_of(const gpo_flow_key& key) {
  if (shards_.size() == 1) return *shards_[0];
  const auto* p = reinterpret_cast<const uint8_t*>(&key);
  uint64_t h = 1469598103934665603ull;  // FNV-1a; both directions share the key
  for (size_t i = 0; i < sizeof key; i++) h = (h ^ p[i]) * 1099511628211ull;
  return *shards_[h % shards_.size()];
}

FlowShards::Shard& FlowShards::shard_of(const classify::ParsedFrame& p) {
  if (shards_.size() == 1) return *shards_[0];
  return shard_of(classify::flow_key(p));
}

uint8_t FlowShards::observe(const classify::ParsedFrame& p, const uint8_t* frame, uint64_t now_ns) {
  if (!p.ok()) return 0;
  Shard& s = shard_of(p);
  std::lock_guard<std::mutex> g(s.mu);
  return s.flows.observe(p, frame, now_ns);
}

FlowDecision FlowShards::decide(const uint8_t* frame, const classify::ParsedFrame& p, const classify::Verdict& v,
                                uint8_t flow, uint64_t now_ns) {
  Shard& s = shard_of(p);
  std::lock_guard<std::mutex> g(s.mu);
  return s.inspector.decide(frame, p, v, flow, now_ns);
}

bool FlowShards::decided(const gpo_flow_key& key) {
  Shard& s = shard_of(key);
  std::lock_guard<std::mutex> g(s.mu);
  const FlowTracker::Flow* f = s.flows.find(key);
  return f && f->decided;
}

void FlowShards::expire(uint64_t now_ns) {
  for (auto& s : shards_) {
    std::lock_guard<std::mutex> g(s->mu);
    s->flows.expire(now_ns);
  }
}

void FlowShards::set_rules(std::shared_ptr<const RuleSnapshot> rules) {
  for (auto& s : shards_) {
    std::lock_guard<std::mutex> g(s->mu);
    s->inspector.set_rules(rules);
    s->flows.clear_decisions();  // what the new rules say comes from them
  }
}

size_t FlowShards::flows() const {
  size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard<std::mutex> g(s->mu);
    n += s->flows.size();
  }
  return n;
}

size_t FlowShards::inspected() const {
  size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard<std::mutex> g(s->mu);
    n += s->flows.inspected();
  }
  return n;
}

InspectorCounters FlowShards::counters() const {
  InspectorCounters t;
  for (auto& s : shards_) {
    std::lock_guard<std::mutex> g(s->mu);
    const InspectorCounters& c = s->inspector.counters();
#define GPO_ADD(f) t.f += c.f;
    GPO_ADD(started) GPO_ADD(midstream) GPO_ADD(in_order) GPO_ADD(out_of_order) GPO_ADD(retransmits)
    GPO_ADD(conflicts) GPO_ADD(ooo_full) GPO_ADD(before_start) GPO_ADD(depth) GPO_ADD(memcap) GPO_ADD(evicted)
    GPO_ADD(expired) GPO_ADD(decided)
#undef GPO_ADD
  }
  return t;
}

nlohmann::json FlowShards::to_json() const {
  const InspectorCounters ic = counters();
  nlohmann::json j;
  j["flows"] = {{"tracked", flows()}, {"max", table_.max_flows}, {"shards", shards_.size()}};
  j["inspection"] = {{"flows", inspected()},
                     {"bytes_held", bytes_held()},
                     {"depth", inspect_.depth},
                     {"depth_policy", inspect_.depth_policy == DepthPolicy::drop ? "drop" : "keep"},
                     {"started", ic.started},
                     {"midstream", ic.midstream},
                     {"in_order", ic.in_order},
                     {"out_of_order", ic.out_of_order},
                     {"retransmits", ic.retransmits},
                     {"conflicts", ic.conflicts},
                     {"ooo_full", ic.ooo_full},
                     {"before_start", ic.before_start},
                     {"depth_reached", ic.depth},
                     {"memcap_reached", ic.memcap},
                     {"evicted", ic.evicted},
                     {"expired", ic.expired},
                     {"decided", ic.decided}};
  return j;
}

}  // namespace gpo::afxdp
