// Suite "classify": the packet filter's classifier, packets/s and Gbit/s of
// frames, side by side in one run: the GPU classifier's kernel alone (frames
// already on the device), the GPU end to end (frames in host memory ->
// verdicts in host memory, two batches in flight as the packet path runs
// it), the CPU classifier on one core and on all cores, Hyperscan alone on
// the same payloads (all cores) and DPDK's rte_acl on the same rules (IPv4
// header rules only; all cores), both through bench/baselines.h.
//
// Data (bench/classify_workload.h, fixed seeds): ET-Open-style rule files of
// 1K, 10K, 100K rules, 30% with 1-2 contents drawn from 100, 1K or 10K
// patterns; frames of 64 and 1500 bytes, 25% IPv6, 10% VLAN, 5% carrying a
// pattern. A row says whether every GPU verdict equalled the CPU's.
//
// Settings (--set k=v): rules=1000,10000  patterns=100,1000  sizes=64,1500
// batches=256,4096,65536  acl_max_rules=1000 (rte_acl is skipped above it).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "bench/baselines.h"
#include "bench/bench.h"
#include "bench/classify_workload.h"
#include "kernels/classify/classify_cpu.h"
#include "kernels/classify/frame.h"
#include "rules/compiler.h"
#include "rules/parser.h"
#ifdef GPUOFFLOAD_HAVE_CUDA
#include "kernels/classify/classify_runner.h"
#endif

namespace gpo::bench {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string k(uint32_t n) { return n >= 1000 && n % 1000 == 0 ? std::to_string(n / 1000) + "K" : std::to_string(n); }

// CPU classifier over the frames on `threads` threads (each its own instance), frames/s.
double cpu_rate(const std::shared_ptr<const classify::RuleTables>& t, std::span<const classify::Frame> frames,
                unsigned threads, double min_s) {
  std::vector<uint64_t> done(threads, 0);
  const auto t0 = Clock::now();
  std::vector<std::thread> th;
  for (unsigned i = 0; i < threads; ++i)
    th.emplace_back([&, i] {
      classify::CpuClassifier c(t);
      const size_t per = frames.size() / threads, from = i * per, n = i + 1 == threads ? frames.size() - from : per;
      // Slices of 256 frames, so one pass over 100K rules still stops near min_s.
      const size_t step = std::min<size_t>(n, 256);
      std::vector<classify::Verdict> out(step);
      size_t at = 0;
      do {
        c.classify(frames.subspan(from + at, step), out);
        done[i] += step;
        at = at + 2 * step <= n ? at + step : 0;
      } while (since(t0) < min_s);
    });
  for (auto& x : th) x.join();
  const double s = since(t0);
  uint64_t total = 0;
  for (uint64_t d : done) total += d;
  return double(total) / s;
}

struct Workload {
  std::shared_ptr<const classify::RuleTables> tables;
  std::vector<match::Pattern> patterns;
  double compile_s = 0;
};

Workload load(uint32_t rules, uint32_t patterns) {
  Workload w;
  RuleSetSpec rs{rules, patterns, 0.3, rules + patterns};
  const auto t0 = Clock::now();
  auto pr = rules::parse_rules(make_rules(rs));
  if (!pr.problems.empty())
    throw std::runtime_error("classify bench: generated rules do not parse: " +
                             rules::format_diagnostic("generated", pr.problems.front()));
  w.tables = std::make_shared<const classify::RuleTables>(rules::compile(pr.set));
  w.compile_s = since(t0);
  std::set<std::pair<std::string, bool>> seen;
  for (const auto& r : pr.set.rules)
    for (const auto& c : r.contents)
      if (seen.insert({c.bytes, c.nocase}).second) w.patterns.push_back({c.bytes, c.nocase});
  return w;
}

}  // namespace

int run_classify(const Options& opt, std::vector<Table>& out) {
  const unsigned all = opt.threads ? opt.threads : std::max(1u, std::thread::hardware_concurrency());
  const double min_s = opt.quick ? 0.02 : std::max(0.05, opt.min_seconds / 2);
  const auto rule_counts = setting_list(opt, "rules", opt.quick ? std::vector<uint32_t>{1000}
                                                                     : std::vector<uint32_t>{1000, 10000, 100000});
  const auto pattern_counts = setting_list(opt, "patterns", opt.quick ? std::vector<uint32_t>{100}
                                                                           : std::vector<uint32_t>{100, 1000, 10000});
  const auto sizes = setting_list(opt, "sizes", opt.quick ? std::vector<uint32_t>{64} : std::vector<uint32_t>{64, 1500});
  const auto batches = setting_list(opt, "batches", opt.quick ? std::vector<uint32_t>{256, 4096}
                                                                   : std::vector<uint32_t>{256, 4096, 65536});
  const uint32_t max_batch = *std::max_element(batches.begin(), batches.end());
  // rte_acl's build (with the expansions of lists) takes seconds at 10K rules, minutes at 100K.
  const uint32_t acl_max_rules = setting_list(opt, "acl_max_rules", {1000}).front();

#ifdef GPUOFFLOAD_HAVE_CUDA
  std::string why;
  const bool gpu = classify::GpuClassifier::device_count(&why) > 0;
#else
  const bool gpu = false;
  const std::string why = "built without CUDA";
#endif
  std::string hs_why, acl_why;
  const bool have_hs = hyperscan_available(&hs_why), have_acl = rte_acl_available(&acl_why);

  Table t;
  t.title = "classify: packets/s (Gbit/s of frames) per rule set, frame size and batch";
  t.columns = {"rules / patterns / frame / batch", "GPU kernel", "GPU e2e", "CPU 1 core",
               fmt::format("CPU {} cores", all), fmt::format("Hyperscan {} cores (payload)", all),
               fmt::format("rte_acl {} cores", all), "GPU = CPU"};
  // Configurations: the given rules x patterns; by default a cross through
  // 10K rules / 1K patterns (rule counts at 1K patterns, pattern counts at
  // 10K rules), which covers the grid's axes in 5 rule sets instead of 9.
  std::vector<std::pair<uint32_t, uint32_t>> configs;
  const bool cross = !opt.quick && !has_setting(opt, "rules") && !has_setting(opt, "patterns");
  for (uint32_t rules : rule_counts)
    for (uint32_t pats : pattern_counts)
      if (!cross || pats == 1000 || rules == 10000) configs.push_back({rules, pats});
  for (auto [rules, pats] : configs) {
      Workload w = load(rules, pats);
      t.notes.push_back(fmt::format("{} rules, {} distinct patterns: parse+compile {:.2f} s, {} of rule tables",
                                    k(rules), w.patterns.size(), w.compile_s, fmt_size(w.tables->table_bytes())));
#ifdef GPUOFFLOAD_HAVE_CUDA
      std::unique_ptr<classify::GpuClassifier> g;
      if (gpu) {
        const auto t0 = Clock::now();
        g = std::make_unique<classify::GpuClassifier>(w.tables, classify::GpuClassifierOptions{opt.gpu, max_batch});
        t.notes.push_back(fmt::format("  GPU tables: ACL structure {} + rules/automata, {} on the device, built in {:.2f} s",
                                      fmt_size(g->acl_bytes()), fmt_size(g->device_bytes()), since(t0)));
      }
#endif
      for (uint32_t size : sizes) {
        TrafficSpec ts;
        ts.frames = std::max(2 * max_batch, 8192u);  // two batches in flight
        ts.frame_bytes = size;
        ts.seed = rules + pats + size;
        auto bytes = make_traffic(RuleSetSpec{rules, pats, 0.3, rules + pats}, ts);
        std::vector<classify::Frame> frames;
        uint64_t frame_bytes = 0;
        for (auto& b : bytes) {
          frames.push_back({b.data(), uint32_t(b.size())});
          frame_bytes += b.size();
        }
        const double avg = double(frame_bytes) / frames.size();
        auto cell = [&](double pps) { return fmt::format("{} ({:.1f})", fmt_rate(pps), pps * avg * 8 / 1e9); };
        // CPU figures do not depend on the batch: measured once per frame size.
        const std::span<const classify::Frame> cpu_frames(frames.data(), std::min<size_t>(frames.size(), 16384));
        const double cpu1 = cpu_rate(w.tables, cpu_frames, 1, min_s);
        const double cpun = cpu_rate(w.tables, cpu_frames, all, min_s);
        std::string hs_cell = hs_why, acl_cell = acl_why;  // "not run: ..." unless measured below
        if (have_hs && !w.patterns.empty()) {
          std::vector<uint8_t> data;
          std::vector<match::gpu::PayloadRef> refs;
          for (auto& f : cpu_frames) {
            auto p = classify::parse_frame(f.data, f.len);
            refs.push_back({uint32_t(data.size()), p.ok() ? p.payload_len : 0});
            if (p.ok()) data.insert(data.end(), f.data + p.payload_offset, f.data + p.payload_offset + p.payload_len);
          }
          BaselineResult hs = hyperscan_scan(w.patterns, data, refs, w.tables->inspect_depth, all, min_s);
          hs_cell = hs.ran ? fmt::format("{} ({:.1f} payload)", fmt_rate(hs.items_per_second()),
                                         hs.bytes_per_second() * 8 / 1e9)
                           : hs.why_not;
        } else if (have_hs) {
          hs_cell = "no patterns";
        }
        if (have_acl && rules > acl_max_rules) {
          acl_cell = fmt::format("not run: > acl_max_rules={} (its build is slow; --set acl_max_rules=N)", acl_max_rules);
        } else if (have_acl) {
          BaselineResult a = rte_acl_classify(*w.tables, cpu_frames, all, min_s);
          acl_cell = a.ran ? fmt::format("{} ({}, {} pkts skipped)", fmt_rate(a.items_per_second()),
                                         a.skipped_rules ? std::to_string(a.skipped_rules) + " rules left out" : "all rules",
                                         a.skipped_items)
                           : a.why_not;
        }
        for (uint32_t batch : batches) {
          std::vector<std::string> row{fmt::format("{} / {} / {} B / {}", k(rules), k(pats), size, batch)};
          std::string same = "-";
#ifdef GPUOFFLOAD_HAVE_CUDA
          if (g) {
            std::span<const classify::Frame> fs(frames.data(), batch);
            // Kernel only: scale the launch count to reach min_s.
            double per = g->time_kernel(fs, 3);
            int iters = int(std::clamp(min_s / std::max(per, 1e-7), 3.0, 20000.0));
            per = g->time_kernel(fs, iters);
            row.push_back(cell(batch / per));
            // End to end, double buffered over the whole frame set.
            const size_t nb = frames.size() / batch;
            std::vector<classify::Verdict> got(nb * batch);
            uint64_t done = 0;
            auto t0 = Clock::now();
            bool warm = false;  // the first pass allocates the pinned staging: untimed
            do {
              int tickets[2] = {-1, -1};
              for (size_t b = 0; b < nb; ++b) {
                int slot = b % 2;
                if (tickets[slot] >= 0)
                  g->collect(tickets[slot], std::span(got).subspan((b - 2) * batch, batch));
                tickets[slot] = g->submit(std::span<const classify::Frame>(frames).subspan(b * batch, batch));
              }
              for (size_t b = nb >= 2 ? nb - 2 : 0; b < nb; ++b)
                g->collect(tickets[b % 2], std::span(got).subspan(b * batch, batch));
              if (!warm) {
                warm = true;
                t0 = Clock::now();
                continue;
              }
              done += nb * batch;
            } while (done == 0 || since(t0) < min_s);
            row.push_back(cell(double(done) / since(t0)));
            // Agreement on the first frames (fewer for big rule sets: the CPU walks every rule).
            std::vector<classify::Verdict> want(std::min<size_t>({got.size(), 4096, 40'000'000 / rules}));
            classify::CpuClassifier(w.tables).classify(std::span(frames).subspan(0, want.size()), want);
            size_t bad = 0;
            for (size_t i = 0; i < want.size(); ++i)
              bad += want[i].rule_id != got[i].rule_id || want[i].action != got[i].action ||
                     want[i].cacheable != got[i].cacheable;
            same = bad ? fmt::format("NO ({} of {})", bad, want.size()) : fmt::format("yes ({})", want.size());
          }
#endif
          if (row.size() == 1) {
            row.push_back("not run: " + why);
            row.push_back("not run: " + why);
          }
          row.push_back(cell(cpu1));
          row.push_back(cell(cpun));
          row.push_back(hs_cell);
          row.push_back(acl_cell);
          row.push_back(same);
          // Progress on stderr, so a run cut short still shows what it measured.
          std::string line;
          for (const auto& c : row) line += (line.empty() ? "" : " | ") + c;
          fmt::print(stderr, "classify: {}\n", line);
          t.rows.push_back(std::move(row));
        }
      }
    }
  t.notes.push_back("Gbit/s = frame bytes x 8 (Hyperscan: payload bytes only, its whole job); CPU, Hyperscan and "
                    "rte_acl rates do not depend on the batch size (measured once per frame size)");
  t.notes.push_back("rte_acl: IPv4 header rules only (no contents, no negations): a lower bound on the work the "
                    "classifier does, not the same verdicts");
  out.push_back(std::move(t));
  return 0;
}

}  // namespace gpo::bench
