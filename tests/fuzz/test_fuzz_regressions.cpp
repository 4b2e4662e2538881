// The rule files that once crashed or blew up the parser, through the real
// `gpuoffload-agent rules check`: each is refused with a line that says why,
// at once, in bounded memory. (The corpus replay runs them through the parser
// in-process too; this is what a user sees.)
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cctype>
#include <chrono>
#include <ostream>
#include <string>

#include "common/proc.h"

namespace {

struct Regression {
  const char* file;     // in corpus/rules/
  const char* message;  // the reason rules check must print
  const char* was;      // what it did before
};

constexpr Regression kRules[] = {
    {"regress-nested-brackets.rules", "nest more than 32 levels deep", "SIGSEGV (a recursion per '[')"},
    {"regress-nested-variables.rules", "expand to more than 4194304 entries",
     "165 MB and 1 s from 2.5 KB (every use expanded anew)"},
};

void PrintTo(const Regression& r, std::ostream* os) { *os << r.file; }

// The agent under test is built like this test: AddressSanitizer's shadow
// memory and quarantine about triple its peak RSS.
#if defined(__SANITIZE_ADDRESS__)
constexpr long kRssScale = 3;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr long kRssScale = 3;
#else
constexpr long kRssScale = 1;
#endif
#else
constexpr long kRssScale = 1;
#endif

class RulesRegression : public ::testing::TestWithParam<Regression> {};

TEST_P(RulesRegression, RefusedFastWithAReasonInBoundedMemory) {
  const Regression& r = GetParam();
  const auto t0 = std::chrono::steady_clock::now();
  auto p = gpo::test::run_proc({AGENT_BIN, "rules", "check", std::string(CORPUS_DIR) + "/" + r.file}, 60);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(p.timed_out) << r.file << " (before: " << r.was << ")";
  EXPECT_EQ(p.exit_code, 1) << p.out.substr(0, 2000);
  EXPECT_NE(p.out.find(r.message), std::string::npos) << p.out.substr(0, 2000);
  rusage ru{};
  getrusage(RUSAGE_CHILDREN, &ru);  // this test's only child (ctest runs each case alone)
  std::printf("%s: %.2f s, peak %ld MB (before: %s)\n", r.file, s, ru.ru_maxrss / 1024, r.was);
  EXPECT_LT(s, 10.0) << "a bound, not a benchmark";
  EXPECT_LT(ru.ru_maxrss, kRssScale * (150l << 10)) << "peak RSS in KB: the expansion cap is 4M entries (about 80 MB)";
}

INSTANTIATE_TEST_SUITE_P(Corpus, RulesRegression, ::testing::ValuesIn(kRules), [](const auto& i) {
  std::string n = i.param.file;
  std::string out;
  for (char c : n.substr(0, n.find('.'))) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
});

}  // namespace
