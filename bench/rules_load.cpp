// Suite "rules-load": how long a public-sized rule set takes to load and how
// much memory it holds, for ET-shaped corpora (bench/rules_corpus.h) of 10K
// and 50K rules: parse (variables, coverage), compile (tables, Aho-Corasick
// automata), the ACL structure the GPU classifier walks, and with a GPU the
// upload to the device. Memory: the compiled tables and the ACL structure as
// counted by their owners, and the process' peak RSS growth over the load
// (VmHWM, reset before each size).
//
// A second table classifies traffic aimed at the loaded rules (each rule's
// matching packet and a near miss, bench/rules_corpus.h): the CPU classifier
// on one core next to the GPU classifier end to end (host frames in, verdicts
// out, batches of 4096), and whether every GPU verdict equalled the CPU's.
//
// Settings (--set k=v): rules=10000,50000
#include <fmt/format.h>

#include <fstream>
#include <memory>
#include <string>

#include "bench/bench.h"
#include "bench/rules_corpus.h"
#include "kernels/classify/acl.h"
#include "kernels/classify/classify_cpu.h"
#include "rules/compiler.h"
#include "rules/parser.h"
#ifdef GPUOFFLOAD_HAVE_CUDA
#include "kernels/classify/classify_runner.h"
#endif

namespace gpo::bench {
namespace {

using Clock = std::chrono::steady_clock;

// kB from /proc/self/status.
size_t status_kb(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(f, line))
    if (line.compare(0, n, field) == 0) return std::stoul(line.substr(n + 1));
  return 0;
}

void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

// --set rules=10000,50000: rule counts of the generated files.
std::vector<uint32_t> sizes(const Options& opt) {
  return setting_list(opt, "rules", opt.quick ? std::vector<uint32_t>{10000} : std::vector<uint32_t>{10000, 50000});
}

std::string mib(size_t bytes) { return fmt::format("{:.1f}", double(bytes) / (1 << 20)); }

}  // namespace

int run_rules_load(const Options& opt, std::vector<Table>& out) {
  Table t;
  t.title = "Loading ET-shaped rule sets: seconds and MiB";
  t.columns = {"rules in file", "loaded", "parse s", "compile s", "ACL build s", "GPU upload s", "tables MiB",
               "ACL MiB", "peak RSS +MiB"};
  for (uint32_t n : sizes(opt)) {
    const Corpus corpus = make_et_corpus(n, 1);
    rules::ParseOptions po;
    po.vars.push_back({"HOME_NET", kCorpusHomeNet, "bench"});
    reset_peak_rss();
    const size_t rss0 = status_kb("VmRSS:");
    auto t0 = Clock::now();
    rules::ParseResult pr = rules::parse_rules(corpus.text, po);
    const double parse_s = seconds_since(t0);
    t0 = Clock::now();
    auto tables = std::make_shared<const classify::RuleTables>(rules::compile(pr.set));
    const double compile_s = seconds_since(t0);
    t0 = Clock::now();
    classify::acl::Index idx = classify::acl::build(*tables);
    const double acl_s = seconds_since(t0);
    std::string gpu_s = "-";
#ifdef GPUOFFLOAD_HAVE_CUDA
    std::string why;
    if (classify::GpuClassifier::device_count(&why) > opt.gpu) {
      t0 = Clock::now();
      classify::GpuClassifier g(tables, {opt.gpu, 1024});
      gpu_s = fmt::format("{:.2f}", seconds_since(t0));
    }
#endif
    const size_t peak = status_kb("VmHWM:");
    t.rows.push_back({std::to_string(n), std::to_string(pr.set.rules.size()), fmt::format("{:.2f}", parse_s),
                      fmt::format("{:.2f}", compile_s), fmt::format("{:.2f}", acl_s), gpu_s,
                      mib(tables->table_bytes()), mib(idx.bytes()),
                      peak > rss0 ? mib((peak - rss0) * 1024) : std::string("0")});
  }
  t.notes.push_back("corpus: bench/rules_corpus.h (the ET Open mix of docs/rule-compiler.md), HOME_NET " +
                    std::string(kCorpusHomeNet) + "; about a quarter of the rules are enforceable, the rest skipped");
  t.notes.push_back("ACL build: the structure both classifiers walk (built again by the GPU classifier's upload)");
  out.push_back(std::move(t));

  Table c;
  c.title = "Classifying traffic aimed at the ET-shaped sets: frames/s";
  c.columns = {"rules in file", "frames", "CPU 1 core", "GPU end to end", "GPU == CPU", "matched a rule"};
  for (uint32_t n : sizes(opt)) {
    const Corpus corpus = make_et_corpus(n, 1);
    rules::ParseOptions po;
    po.vars.push_back({"HOME_NET", kCorpusHomeNet, "bench"});
    auto tables = std::make_shared<const classify::RuleTables>(rules::compile(rules::parse_rules(corpus.text, po).set));
    const auto raw = corpus_frames(corpus, opt.quick ? 16384 : 65536, 2);
    std::vector<classify::Frame> frames;
    for (const auto& f : raw) frames.push_back({f.bytes.data(), uint32_t(f.bytes.size()), f.flow});
    classify::CpuClassifier cpu(tables);
    std::vector<classify::Verdict> want(frames.size());
    const double cpu_s = time_per_call(opt.min_seconds, [&] { cpu.classify(frames, want); });
    size_t matched = 0;
    for (const auto& v : want) matched += v.rule_id != 0;
    std::string gpu_rate = "-", same = "-";
#ifdef GPUOFFLOAD_HAVE_CUDA
    std::string why;
    if (classify::GpuClassifier::device_count(&why) > opt.gpu) {
      classify::GpuClassifier g(tables, {opt.gpu, 4096});
      std::vector<classify::Verdict> got(frames.size());
      const double gpu_s = time_per_call(opt.min_seconds, [&] { g.classify(frames, got); });
      size_t bad = 0;
      for (size_t i = 0; i < got.size(); ++i)
        bad += got[i].rule_id != want[i].rule_id || got[i].action != want[i].action || got[i].cacheable != want[i].cacheable;
      gpu_rate = fmt_rate(double(frames.size()) / gpu_s);
      same = bad ? fmt::format("NO ({} differ)", bad) : std::string("yes");
    }
#endif
    c.rows.push_back({std::to_string(n), std::to_string(frames.size()), fmt_rate(double(frames.size()) / cpu_s),
                      gpu_rate, same, fmt::format("{:.0f}%", 100.0 * double(matched) / double(frames.size()))});
  }
  c.notes.push_back("frames: per loadable rule its matching packet and a near miss (one payload byte changed), IPv4");
  out.push_back(std::move(c));
  return 0;
}

}  // namespace gpo::bench
