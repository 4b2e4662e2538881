// The handoff suite pins the calling thread and a thread of its own while it
// measures; the suites after it in the same run must still get every CPU the
// program was given, and so must the threads they start.
#include <gtest/gtest.h>
#include <sched.h>

#include <thread>

#include "bench/bench.h"

namespace gpo::bench {
int run_handoff(const Options&, std::vector<Table>&);
}

TEST(BenchHandoff, GivesTheCallingThreadItsCpusBack) {
  cpu_set_t before;
  ASSERT_EQ(sched_getaffinity(0, sizeof before, &before), 0);
  if (CPU_COUNT(&before) < 2) GTEST_SKIP() << "one CPU: pinning changes nothing to check";
  gpo::bench::Options o;
  o.quick = true;
  o.args = {"samples=5", "idle_us=10"};
  std::vector<gpo::bench::Table> out;
  ASSERT_EQ(gpo::bench::run_handoff(o, out), 0);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].rows.size(), 3u);  // two CPUs or more: other CPU, same CPU, spinning
  cpu_set_t after;
  ASSERT_EQ(sched_getaffinity(0, sizeof after, &after), 0);
  EXPECT_TRUE(CPU_EQUAL(&before, &after)) << CPU_COUNT(&after) << " CPUs left of " << CPU_COUNT(&before);
  cpu_set_t child;
  std::thread([&] { sched_getaffinity(0, sizeof child, &child); }).join();
  EXPECT_TRUE(CPU_EQUAL(&before, &child)) << "a thread started after it has " << CPU_COUNT(&child) << " CPUs";
}
