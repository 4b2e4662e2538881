// Multi-pattern matcher (Aho-Corasick) for packet payloads.
//
// The compiled matcher is plain data: flat arrays indexed by state and byte
// class, no pointers, so the GPU classifier copies the arrays as
// they are and walks the same automaton per packet.
//
// Case: a pattern is either exact (byte for byte) or nocase (ASCII letters
// fold, as Suricata's nocase). The two kinds live in two automata: `exact`
// reads raw bytes, `folded` reads bytes through a byte-class table in which
// 'A' and 'a' share a class, so neither scan lowercases the text.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace gpo::match {

struct Pattern {
  std::string bytes;    // raw bytes (hex escapes already decoded); may hold NUL
  bool nocase = false;  // ASCII case-insensitive
};

// One deterministic automaton (full transition table, failure links folded in).
// State 0 is the root. next[state * num_classes + byte_class[b]] is the state
// after reading byte b. Patterns that end in `state` (its own and those of its
// suffixes) are out_ids[out_first[state] .. out_first[state + 1]).
struct Automaton {
  uint32_t num_states = 1;
  uint32_t num_classes = 1;                // class 0: bytes in no pattern (when every byte is in one: a byte class)
  std::array<uint8_t, 256> byte_class{};   // byte -> class (folded automaton: A-Z share a-z's class)
  std::vector<uint32_t> next;              // num_states * num_classes
  std::vector<uint32_t> out_first;         // num_states + 1 (CSR offsets into out_ids)
  std::vector<uint32_t> out_ids;           // pattern ids

  bool empty() const { return out_ids.empty(); }
  size_t table_bytes() const {
    return sizeof(byte_class) + (next.size() + out_first.size() + out_ids.size()) * sizeof(uint32_t);
  }
};

// Both automata plus what the pattern ids mean. Pattern ids are the indices of
// the span given to build().
struct Matcher {
  Automaton exact;
  Automaton folded;
  std::vector<uint32_t> pattern_len;  // per pattern id
  uint32_t num_patterns() const { return static_cast<uint32_t>(pattern_len.size()); }
  size_t table_bytes() const {
    return exact.table_bytes() + folded.table_bytes() + pattern_len.size() * sizeof(uint32_t);
  }
};

// Builds the matcher. Empty patterns are rejected (std::invalid_argument):
// they would match everywhere and say nothing.
Matcher build(std::span<const Pattern> patterns);

// Reports every occurrence in text: on_match(pattern_id, end) where the
// occurrence is text[end - pattern_len[pattern_id], end). Occurrences come in
// order of `end` within each automaton (exact first, then folded).
// Streaming form: starts in `state` and leaves the automaton's state after the
// text there, so a stream scanned piece by piece finds every occurrence that
// one scan of the concatenation would (the packet filter's TCP streams).
template <typename OnMatch>
void scan_automaton_from(const Automaton& a, uint32_t& state, const uint8_t* text, size_t len, OnMatch&& on_match) {
  if (a.empty()) return;
  const uint32_t* next = a.next.data();
  const uint32_t nc = a.num_classes;
  uint32_t s = state;
  for (size_t i = 0; i < len; ++i) {
    s = next[size_t(s) * nc + a.byte_class[text[i]]];
    for (uint32_t o = a.out_first[s], e = a.out_first[s + 1]; o < e; ++o) on_match(a.out_ids[o], i + 1);
  }
  state = s;
}

template <typename OnMatch>
void scan_automaton(const Automaton& a, const uint8_t* text, size_t len, OnMatch&& on_match) {
  uint32_t s = 0;
  scan_automaton_from(a, s, text, len, on_match);
}

template <typename OnMatch>
void scan(const Matcher& m, const uint8_t* text, size_t len, OnMatch&& on_match) {
  scan_automaton(m.exact, text, len, on_match);
  scan_automaton(m.folded, text, len, on_match);
}

}  // namespace gpo::match
