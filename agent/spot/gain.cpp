#include "spot/gain.h"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backend/op_table.h"
#include "planner/profile.h"
#include "spot.h"

namespace gpo::spot {

std::string planner_key(uint32_t op) {
  using backend::OpId;
  switch (op) {
    case GPO_SPOT_EVP_ENCRYPT:
    case GPO_SPOT_EVP_DECRYPT:
    case GPO_SPOT_EVP_CIPHER:
    case GPO_SPOT_KERN_AEAD_ENC:
    case GPO_SPOT_KERN_AEAD_DEC:
    case GPO_SPOT_KERN_SKCIPHER_ENC:
    case GPO_SPOT_KERN_SKCIPHER_DEC:
      return std::string(backend::op_name(OpId::aes256_gcm_encrypt));
    case GPO_SPOT_EVP_DIGEST:
    case GPO_SPOT_SHA256:
      return std::string(backend::op_name(OpId::sha256));
    case GPO_SPOT_ZSTD_COMPRESS:
    case GPO_SPOT_ZSTD_STREAM:
    case GPO_SPOT_KERN_ZSTD_COMPRESS:
      return std::string(backend::op_name(OpId::zstd_compress));
    default:
      return "";
  }
}

GainModel GainModel::load(const std::string& path) {
  // The planner's profile (agent/planner/profile.h), valid only for this machine.
  GainModel m;
  auto loaded = planner::load_profile(path, planner::this_machine(0));
  if (!loaded.profile) {
    m.error_ = loaded.why;
    return m;
  }
  m.loaded_ = true;
  // Per size: the time per job of the largest measured batch the GPU ran
  // (offload batches calls across processes), all CPU threads vs GPU end to end.
  for (const auto& [key, op] : loaded.profile->ops) {
    std::map<uint64_t, const planner::Point*> best;
    for (const auto& p : op.points)
      if (p.gpu_ns > 0 && p.cpu_ns > 0 && (!best[p.size] || best[p.size]->batch < p.batch)) best[p.size] = &p;
    for (const auto& [size, p] : best)
      if (p) m.add_point(key, {size, p->cpu_ns / double(p->batch), p->gpu_ns / double(p->batch)});
  }
  return m;
}

double GainModel::speedup(uint32_t op, uint64_t mean_len) const {
  auto it = ops_.find(planner_key(op));
  if (it == ops_.end() || it->second.empty() || mean_len == 0) return 0;
  const Point* best = nullptr;
  double best_d = 0;
  for (const auto& p : it->second) {
    if (p.size == 0 || p.gpu_ns <= 0) continue;
    double d = std::fabs(std::log2(double(p.size)) - std::log2(double(mean_len)));
    if (!best || d < best_d) { best = &p; best_d = d; }
  }
  return best ? best->cpu_ns / best->gpu_ns : 0;
}

std::string GainModel::describe(uint32_t op, uint64_t mean_len) const {
  std::string key = planner_key(op);
  if (key.empty()) return "no GPU kernel";
  if (!loaded_) return "no profile: run calibrate";
  double s = speedup(op, mean_len);
  if (s == 0) return fmt::format("no {} in profile: run calibrate", key);
  if (s >= 1.0) return fmt::format("{:.1f}x faster on GPU", s);
  return fmt::format("CPU faster (GPU {:.2f}x)", s);
}

}  // namespace gpo::spot
