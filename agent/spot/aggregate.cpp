#include "spot/aggregate.h"

#include <algorithm>
#include <cstring>

#include "spot/ops.h"

namespace gpo::spot {

uint32_t log2_slot(uint64_t len) {
  uint32_t r = len ? 63 - __builtin_clzll(len) : 0;
  return r < GPO_SPOT_HIST_SLOTS ? r : GPO_SPOT_HIST_SLOTS - 1;
}

uint64_t ProcessStats::bytes() const {
  uint64_t b = 0;
  for (const auto& [op, s] : ops) b += s.bytes;
  return b;
}

double ProcessStats::rate_bps() const {
  double r = 0;
  for (const auto& [op, s] : ops) r += s.rate_bps;
  return r;
}

void Aggregator::add(const gpo_spot_event& e) {
  events_++;
  auto& p = procs_[e.tgid];
  p.tgid = e.tgid;
  // The process's main thread names it best; a worker's comm is still better than none.
  if (p.comm.empty() || e.pid == e.tgid)
    p.comm.assign(e.comm, strnlen(e.comm, sizeof e.comm));
  p.cgroup_id = e.cgroup_id;
  if (e.flags & GPO_SPOT_F_KERNEL) p.kernel = true;
  p.last_seen_ns = std::max<uint64_t>(p.last_seen_ns, e.ts_ns);
  auto& s = p.ops[e.op];
  s.calls++;
  s.bytes += e.len;
  s.max_len = std::max<uint64_t>(s.max_len, e.len);
  s.slots[log2_slot(e.len)]++;
  s.last_ns = e.ts_ns;
}

void Aggregator::tick(uint64_t now_ns, uint64_t idle_ns) {
  double dt = last_tick_ns_ && now_ns > last_tick_ns_ ? (now_ns - last_tick_ns_) * 1e-9 : 0;
  for (auto it = procs_.begin(); it != procs_.end();) {
    uint64_t last = it->second.last_seen_ns;
    for (auto& [op, s] : it->second.ops) {
      s.rate_bps = dt > 0 ? (s.bytes - s.bytes_at_tick) / dt : 0;
      s.bytes_at_tick = s.bytes;
      last = std::max<uint64_t>(last, s.last_ns);
    }
    bool measuring = it->second.window && it->second.window->open;
    if (idle_ns && !measuring && it->second.offloaded_by.empty() && now_ns > last && now_ns - last > idle_ns)
      it = procs_.erase(it);
    else
      ++it;
  }
  last_tick_ns_ = now_ns;
}

void Aggregator::set_sampled(uint32_t tgid, const std::string& comm, uint32_t op, const SampledOp& s, uint64_t now_ns) {
  auto& p = procs_[tgid];
  p.tgid = tgid;
  if (!comm.empty()) p.comm = comm;
  p.sampled[op] = s;
  if (s.cpu > 0) p.last_seen_ns = std::max(p.last_seen_ns, now_ns);
}

void Aggregator::set_sizes(uint32_t tgid, uint32_t op, const gpo_spot_hist& h, const std::string& from, uint64_t now_ns) {
  auto& p = procs_[tgid];
  p.tgid = tgid;
  auto& old = p.sizes[op];
  if (old.calls != h.calls) p.last_seen_ns = std::max(p.last_seen_ns, now_ns);
  old = h;
  p.sizes_from = from;
}

void Aggregator::set_window(uint32_t tgid, const WindowInfo& w, uint64_t now_ns) {
  auto& p = procs_[tgid];
  p.tgid = tgid;
  p.window = w;
  p.last_seen_ns = std::max(p.last_seen_ns, now_ns);
}

void Aggregator::mark_offloaded(uint32_t tgid, const std::string& by) {
  if (by.empty()) {
    if (auto it = procs_.find(tgid); it != procs_.end()) it->second.offloaded_by.clear();
    return;
  }
  auto& p = procs_[tgid];
  p.tgid = tgid;
  p.offloaded_by = by;
}

const ProcessStats* Aggregator::process(uint32_t tgid) const {
  auto it = procs_.find(tgid);
  return it == procs_.end() ? nullptr : &it->second;
}

std::vector<const ProcessStats*> Aggregator::ranked() const {
  std::vector<const ProcessStats*> v;
  for (const auto& [tgid, p] : procs_) v.push_back(&p);
  auto cpu = [](const ProcessStats* p) {
    double c = 0;
    for (const auto& [op, s] : p->sampled) c += s.cpu_period;
    return c;
  };
  std::stable_sort(v.begin(), v.end(), [&](const ProcessStats* a, const ProcessStats* b) {
    if (cpu(a) != cpu(b)) return cpu(a) > cpu(b);
    if (a->rate_bps() != b->rate_bps()) return a->rate_bps() > b->rate_bps();
    return a->bytes() > b->bytes();
  });
  return v;
}

nlohmann::json Aggregator::to_json() const {
  auto procs = nlohmann::json::array();
  for (const auto* p : ranked()) {
    auto ops = nlohmann::json::object();
    for (const auto& [op, s] : p->ops) {
      auto hist = nlohmann::json::object();
      for (uint32_t k = 0; k < GPO_SPOT_HIST_SLOTS; k++)
        if (s.slots[k]) hist[std::to_string(1ull << k)] = s.slots[k];
      ops[std::string(op_name(op))] = {{"calls", s.calls},       {"bytes", s.bytes},
                                       {"max_len", s.max_len},   {"mean_len", s.mean_len()},
                                       {"rate_bps", s.rate_bps}, {"size_log2_hist", hist}};
    }
    auto sizes = nlohmann::json::object();
    for (const auto& [op, h] : p->sizes) {
      if (!h.calls) continue;
      auto hist = nlohmann::json::object();
      for (uint32_t k = 0; k < GPO_SPOT_HIST_SLOTS; k++)
        if (h.slots[k]) hist[std::to_string(1ull << k)] = h.slots[k];
      sizes[std::string(op_name(op))] = {
          {"calls", h.calls}, {"bytes", h.bytes}, {"mean_len", h.bytes / h.calls}, {"size_log2_hist", hist}};
    }
    auto cpu = nlohmann::json::object();
    for (const auto& [op, s] : p->sampled)
      cpu[std::string(sample_op_name(op))] = {
          {"samples", s.samples}, {"cpu", s.cpu}, {"cpu_period", s.cpu_period}};
    nlohmann::json window = nullptr;
    if (p->window)
      window = {{"open", p->window->open},          {"op", sample_op_name(p->window->sample_op)},
                {"started_ns", p->window->started_ns}, {"ended_ns", p->window->ended_ns},
                {"calls", p->window->calls},         {"probes", p->window->probes},
                {"ended_by", p->window->ended_by}};
    procs.push_back({{"pid", p->tgid},
                     {"comm", p->comm},
                     {"cgroup_id", p->cgroup_id},
                     {"kernel", p->kernel},
                     {"bytes", p->bytes()},
                     {"rate_bps", p->rate_bps()},
                     {"ops", ops},
                     {"sizes", sizes},
                     {"sizes_from", p->sizes_from},
                     {"cpu", cpu},
                     {"window", window},
                     {"offloaded_by", p->offloaded_by.empty() ? nlohmann::json(nullptr) : nlohmann::json(p->offloaded_by)}});
  }
  return procs;
}

}  // namespace gpo::spot
