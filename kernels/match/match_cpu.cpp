// Aho-Corasick construction into the flat tables of match.h.
#include <deque>
#include <stdexcept>

#include "kernels/match/match.h"

namespace gpo::match {
namespace {

constexpr uint32_t kNone = UINT32_MAX;

uint8_t fold(uint8_t b) { return (b >= 'A' && b <= 'Z') ? uint8_t(b - 'A' + 'a') : b; }

// ids: the pattern ids that go into this automaton; fold_case: folded automaton.
Automaton build_one(std::span<const Pattern> patterns, const std::vector<uint32_t>& ids, bool fold_case) {
  Automaton a;
  // Byte classes: one per distinct (folded) byte used by a pattern; class 0 for the rest.
  std::array<int, 256> cls{};
  cls.fill(-1);
  uint32_t n = 1;
  for (uint32_t id : ids)
    for (unsigned char c : patterns[id].bytes) {
      uint8_t b = fold_case ? fold(c) : c;
      if (cls[b] < 0) cls[b] = int(n++);
    }
  // Patterns that use every byte value leave class 0 empty: drop it, so 256
  // classes (0..255) still fit the uint8_t table.
  const int shift = n > 256 ? 1 : 0;
  n -= uint32_t(shift);
  for (int b = 0; b < 256; ++b) {
    int c = cls[fold_case ? fold(uint8_t(b)) : b];
    a.byte_class[b] = uint8_t(c < 0 ? 0 : c - shift);
  }
  a.num_classes = n;

  // Trie, built straight into the dense table.
  std::vector<uint32_t>& next = a.next;
  next.assign(n, kNone);
  std::vector<std::vector<uint32_t>> out(1);
  uint32_t states = 1;
  for (uint32_t id : ids) {
    uint32_t s = 0;
    for (unsigned char c : patterns[id].bytes) {
      uint32_t k = a.byte_class[c];
      uint32_t& t = next[size_t(s) * n + k];
      if (t == kNone) {
        t = states++;
        next.resize(size_t(states) * n, kNone);
        out.emplace_back();
      }
      s = next[size_t(s) * n + k];  // re-read: resize may have moved `t`
    }
    out[s].push_back(id);
  }
  a.num_states = states;

  const std::vector<uint32_t> trie_child = next;  // trie edges only (kNone elsewhere), for the renumbering

  // Breadth-first: failure links, then missing transitions become the
  // failure state's (a DFA), and each state inherits its failure's outputs.
  std::vector<uint32_t> fail(states, 0);
  std::deque<uint32_t> queue;
  for (uint32_t k = 0; k < n; ++k) {
    uint32_t& t = next[k];
    if (t == kNone) {
      t = 0;
    } else {
      fail[t] = 0;
      queue.push_back(t);
    }
  }
  while (!queue.empty()) {
    uint32_t s = queue.front();
    queue.pop_front();
    const auto& fo = out[fail[s]];
    out[s].insert(out[s].end(), fo.begin(), fo.end());
    for (uint32_t k = 0; k < n; ++k) {
      uint32_t& t = next[size_t(s) * n + k];
      uint32_t via_fail = next[size_t(fail[s]) * n + k];
      if (t == kNone) {
        t = via_fail;
      } else {
        fail[t] = via_fail;
        queue.push_back(t);
      }
    }
  }

  // Renumber states breadth-first: the shallow states, where a scan of
  // ordinary text spends nearly all its time, end up in one compact block of
  // the table (cache lines on the CPU, L2 on the GPU).
  std::vector<uint32_t> order{0}, rank(states, kNone);
  rank[0] = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    uint32_t s = order[i];
    for (uint32_t k = 0; k < n; ++k) {
      uint32_t t = trie_child[size_t(s) * n + k];
      if (t != kNone && rank[t] == kNone) {
        rank[t] = uint32_t(order.size());
        order.push_back(t);
      }
    }
  }
  std::vector<uint32_t> renumbered(next.size());
  for (uint32_t r = 0; r < states; ++r)
    for (uint32_t k = 0; k < n; ++k) renumbered[size_t(r) * n + k] = rank[next[size_t(order[r]) * n + k]];
  next.swap(renumbered);

  a.out_first.resize(size_t(states) + 1);
  for (uint32_t r = 0; r < states; ++r) {
    a.out_first[r] = uint32_t(a.out_ids.size());
    a.out_ids.insert(a.out_ids.end(), out[order[r]].begin(), out[order[r]].end());
  }
  a.out_first[states] = uint32_t(a.out_ids.size());
  return a;
}

}  // namespace

Matcher build(std::span<const Pattern> patterns) {
  Matcher m;
  std::vector<uint32_t> exact_ids, folded_ids;
  for (uint32_t id = 0; id < patterns.size(); ++id) {
    if (patterns[id].bytes.empty()) throw std::invalid_argument("match: empty pattern");
    (patterns[id].nocase ? folded_ids : exact_ids).push_back(id);
    m.pattern_len.push_back(uint32_t(patterns[id].bytes.size()));
  }
  m.exact = build_one(patterns, exact_ids, false);
  m.folded = build_one(patterns, folded_ids, true);
  return m;
}

}  // namespace gpo::match
