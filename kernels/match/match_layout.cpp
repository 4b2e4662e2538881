// match::Matcher -> the GPU layout of match_gpu.h (host side; no CUDA needed,
// so the unit tests run the same scan code on the CPU).
#include <algorithm>
#include <stdexcept>

#include "kernels/match/match_gpu.h"

namespace gpo::match::gpu {
namespace {

MatcherImage::Automaton convert(const Automaton& a) {
  MatcherImage::Automaton out;
  out.active = !a.empty();
  out.num_classes = a.num_classes;
  out.num_states = a.num_states;
  if (!out.active) {
    // One root row that loops to itself: a scan of it is a no-op anyway (skipped by `active`).
    out.next.assign(a.num_classes, 0);
    out.out_first.assign(2, 0);
    return out;
  }
  const uint64_t entries = uint64_t(a.num_states) * a.num_classes;
  if (entries >= kHitFlag) throw std::length_error("match gpu: automaton table over 2^31 entries");
  out.next.resize(a.next.size());
  for (size_t i = 0; i < a.next.size(); ++i) {
    const uint32_t t = a.next[i];
    const bool hit = a.out_first[t + 1] != a.out_first[t];
    out.next[i] = t * a.num_classes | (hit ? kHitFlag : 0u);
  }
  out.out_first = a.out_first;
  out.out_ids = a.out_ids;
  if (out.out_ids.empty()) out.out_ids.push_back(0);  // never read; keeps the upload non-empty
  return out;
}

AutomatonView view_of(const MatcherImage::Automaton& a) {
  AutomatonView v;
  v.next = a.next.data();
  v.out_first = a.out_first.data();
  v.out_ids = a.out_ids.data();
  v.num_classes = a.num_classes;
  v.num_states = a.num_states;
  v.active = a.active ? 1 : 0;
  return v;
}

}  // namespace

MatcherImage build_image(const Matcher& m) {
  MatcherImage img;
  img.exact = convert(m.exact);
  img.folded = convert(m.folded);
  img.classes.resize(256);
  for (int b = 0; b < 256; ++b) img.classes[b] = uint32_t(m.exact.byte_class[b]) | uint32_t(m.folded.byte_class[b]) << 16;
  img.num_patterns = m.num_patterns();
  for (uint32_t len : m.pattern_len) img.max_pattern_len = std::max(img.max_pattern_len, len);
  return img;
}

MatcherView MatcherImage::view() const {
  MatcherView v;
  v.exact = view_of(exact);
  v.folded = view_of(folded);
  v.classes = classes.data();
  v.num_patterns = num_patterns;
  v.max_pattern_len = max_pattern_len;
  return v;
}

size_t MatcherImage::bytes() const {
  auto one = [](const MatcherImage::Automaton& a) { return (a.next.size() + a.out_first.size() + a.out_ids.size()) * sizeof(uint32_t); };
  return one(exact) + one(folded) + classes.size() * sizeof(uint32_t);
}

}  // namespace gpo::match::gpu
