// A generated corpus in the shape of ET Open (bench/rules_corpus.h):
// `rules check`'s coverage reports exactly what the generator skipped and
// why, the loadable rules compile, and traffic aimed at them gets the
// reference's verdicts from the CPU classifier (tests/gpu does CPU vs GPU).
#include <gtest/gtest.h>

#include <chrono>
#include <map>

#include "bench/rules_corpus.h"
#include "kernels/classify/classify_cpu.h"
#include "rules/compiler.h"
#include "rules/parser.h"
#include "unit/rules_corpus_traffic.h"
#include "unit/rules_frames.h"
#include "unit/rules_reference.h"

using namespace gpo;

TEST(RulesCorpus, CoverageMatchesWhatTheGeneratorSkipped) {
  const auto corpus = bench::make_et_corpus(5000, 1);
  auto r = rules::parse_rules(corpus.text, test::corpus_parse_options());
  const rules::Coverage cov = rules::coverage(r);
  uint32_t loadable = 0;
  std::map<std::string, uint32_t> want;
  for (auto& cr : corpus.rules) {
    loadable += cr.loadable;
    if (!cr.loadable) ++want[cr.reason];
  }
  EXPECT_EQ(cov.rules, 5000u);
  EXPECT_EQ(cov.loaded, loadable);
  EXPECT_EQ(cov.unsupported, 5000u - loadable);
  EXPECT_EQ(cov.invalid, 0u);
  for (auto& d : r.problems)
    if (d.kind != rules::Diagnostic::kUnsupported) ADD_FAILURE() << rules::format_diagnostic("corpus", d);
  std::map<std::string, uint32_t> got(cov.reasons.begin(), cov.reasons.end());
  for (auto& [reason, n] : want) EXPECT_EQ(got[reason], n) << reason;
  // About a quarter loads, as in a public set where most rules inspect app-layer buffers.
  EXPECT_GT(loadable, 1000u);
  EXPECT_LT(loadable, 1700u);
  std::printf("corpus: %s\n", rules::coverage_line(cov, 8).c_str());
}

TEST(RulesCorpus, TrafficAimedAtTheRulesGetsTheReferenceVerdicts) {
  const auto corpus = bench::make_et_corpus(5000, 2);
  auto r = rules::parse_rules(corpus.text, test::corpus_parse_options());
  auto tables = std::make_shared<classify::RuleTables>(rules::compile(r.set));
  classify::CpuClassifier cls(tables);
  const auto specs = test::corpus_traffic(corpus, 3);
  size_t checked = 0, matched = 0, cached = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (const auto& f : specs) {
    if (std::chrono::steady_clock::now() > deadline) break;
    auto bytes = test::build_frame(f);
    classify::Verdict got = cls.classify_one({bytes.data(), uint32_t(bytes.size()), f.flow});
    classify::Verdict want = test::reference(r.set, f, classify::kDefaultInspectDepth);
    ASSERT_EQ(got.rule_id, want.rule_id) << "payload '" << f.payload << "'";
    ASSERT_EQ(got.action, want.action);
    ASSERT_EQ(got.cacheable, want.cacheable) << "sid " << got.rule_id;
    ++checked;
    matched += got.rule_id != 0;
    cached += got.cacheable;
  }
  EXPECT_GT(checked, 2000u);
  EXPECT_GT(matched, checked / 3);  // aimed traffic hits rules; the misses are near misses
  EXPECT_LT(matched, checked);
  std::printf("corpus traffic: %zu frames, %zu matched a rule, %zu cacheable\n", checked, matched, cached);
}
