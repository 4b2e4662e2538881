// gpuoffload-bench: every benchmark of the project under one command.
// A suite measures one area (crypto, zstd, classify, offload, ...) and returns
// tables whose rows put the GPU figures next to the CPU reference measured in
// the same run (OpenSSL, libzstd, Hyperscan, ...). The command prints the
// tables, or JSON with --json. A suite is one source file in bench/ and one
// line of the registry in suites.cpp.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <span>
#include <vector>

namespace gpo::bench {

struct Options {
  bool quick = false;        // small sizes and few repetitions (tests, CI smoke)
  int gpu = 0;               // CUDA device ordinal
  unsigned threads = 0;      // CPU reference threads for "all cores" rows; 0 = all
  double min_seconds = 0.2;  // minimum measured time per point
  std::string corpus;        // zstd: folder of input files; empty = the suite's default
  std::vector<std::string> args;  // suite-specific key=value settings (--set k=v)
};

struct Table {
  std::string title;                       // "AES-256-GCM, GB/s of input"
  std::vector<std::string> columns;        // first column names the row
  std::vector<std::vector<std::string>> rows;  // cells already formatted
  std::vector<std::string> notes;          // what limits the figures, data description
};

struct Suite {
  std::string_view name;     // CLI name: "crypto", "zstd", "classify", ...
  std::string_view what;     // one line for --help and --list
  bool needs_gpu;            // skipped with a reason when no GPU is usable
  // Appends tables; returns 0, or non-zero after printing why to stderr.
  int (*run)(const Options&, std::vector<Table>& out);
};

std::span<const Suite> suites();  // the registry (suites.cpp), in run order
const Suite* find_suite(std::string_view name);

// A suite setting given as --set KEY=VALUE, or dflt.
std::string setting(const Options& o, const std::string& key, const std::string& dflt);
bool has_setting(const Options& o, const std::string& key);
// A list setting, --set KEY=1,2,3 (empty items skipped), or dflt.
std::vector<uint32_t> setting_list(const Options& o, const std::string& key, std::vector<uint32_t> dflt);

// Formatting helpers so every suite prints numbers the same way.
std::string fmt_rate(double per_second);      // "1.23M", "456K", "12.3G"
std::string fmt_gbps(double bytes_per_second); // "12.34" (GB/s, 1e9)
std::string fmt_size(size_t bytes);           // "4 KiB", "1 MiB"

// Timing helpers shared by the suites.
inline double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
// Runs every way once per round, `rounds` times, starting each round one way
// further on, so that a machine whose speed drifts during a run (a shared or
// virtual host: 20% within a minute was seen) weighs on every way alike
// instead of on whichever ran last. Returns figures[way][round].
inline std::vector<std::vector<double>> interleaved(int rounds, const std::vector<std::function<double()>>& ways) {
  std::vector<std::vector<double>> got(ways.size());
  for (int r = 0; r < rounds; ++r)
    for (size_t k = 0; k < ways.size(); ++k) {
      const size_t w = (k + size_t(r)) % ways.size();
      got[w].push_back(ways[w]());
    }
  return got;
}
// The rounds' own ratios a[r] / b[r] (figures from the same round), and how
// the table gives them: "median% (lowest-highest%)".
inline std::vector<double> round_ratios(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> q;
  for (size_t r = 0; r < std::min(a.size(), b.size()); ++r)
    if (b[r] > 0) q.push_back(a[r] / b[r]);
  return q;
}
std::string fmt_ratio_spread(const std::vector<double>& ratios);
// How a table's notes say it: "the median of N rounds, ..." or "one round (...)".
std::string rounds_note(int rounds);
inline constexpr const char* ratio_note = "the median of the rounds' own ratios, in brackets the lowest and highest";
// Runs f until min_seconds have passed (at least twice, the first untimed);
// returns seconds per call.
template <typename F>
double time_per_call(double min_seconds, F&& f) {
  f();
  int n = 0;
  const auto t0 = std::chrono::steady_clock::now();
  do {
    f();
    ++n;
  } while (seconds_since(t0) < min_seconds);
  return seconds_since(t0) / n;
}
// Deterministic incompressible bytes (xorshift), seeded.
inline void fill_random(uint8_t* p, size_t n, uint64_t seed) {
  uint64_t x = seed | 1;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    std::memcpy(p + i, &x, 8);
  }
  for (; i < n; ++i) p[i] = uint8_t(i * 131);
}

}  // namespace gpo::bench
