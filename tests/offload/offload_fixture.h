// The fixture of the libgpuoffload op tests, parameterized by the path: true,
// through the real agent component in-process (CPU backend, socket doorbell);
// false, with no agent (the library's own CPU fallback). TearDown checks the
// accounting of both sides: every job completed exactly once, by that path.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "gpuoffload.h"
#include "offload/offload_env.h"

namespace gpo::test {

// Points libgpuoffload at a new in-process agent (returned), or, without
// with_agent, at a socket that cannot exist: the library's own CPU fallback.
inline std::unique_ptr<InProcessAgent> serve_library(bool with_agent, const char* socket_tag) {
  if (!with_agent) {
    gpo_set_socket(("/nonexistent/gpo-" + std::to_string(getpid())).c_str());
    return nullptr;
  }
  auto agent = std::make_unique<InProcessAgent>(agent_options(socket_tag));
  gpo_set_socket(agent->socket().c_str());
  return agent;
}

class OffloadPathTest : public ::testing::TestWithParam<bool> {
 protected:
  // socket_tag: names the agent's socket (unique per test); expect_jobs: the
  // test must have submitted at least one job.
  OffloadPathTest(const char* socket_tag, bool expect_jobs) : tag_(socket_tag), expect_jobs_(expect_jobs) {}

  void SetUp() override {
    setenv("GPO_TIMEOUT_MS", "5000", 1);
    agent_ = serve_library(GetParam(), tag_);
    gpo_get_stats(&before_);
  }
  void TearDown() override {
    gpo_client_stats after{};
    gpo_get_stats(&after);
    const uint64_t jobs = after.jobs - before_.jobs;
    if (expect_jobs_) {
      EXPECT_GT(jobs, 0u);
    }
    EXPECT_EQ(after.by_agent - before_.by_agent + after.local - before_.local, jobs) << "a job completed twice or never";
    if (GetParam()) {
      // Only jobs the agent itself answered "invalid" (corrupt zstd input, a
      // bad level) are recomputed here, to return the library's exact error;
      // in a burst test, also those whose doorbell found the socket full.
      const uint64_t no_room = bursts_ ? after.local_no_room - before_.local_no_room : 0;
      EXPECT_EQ(after.local - before_.local, after.local_rejected - before_.local_rejected + no_room)
          << "jobs fell back to the CPU with the agent up";
      EXPECT_LE(no_room, jobs / 2) << "most of a burst's jobs should reach the agent";
      EXPECT_EQ(agent_->server().stats().jobs_done, jobs - no_room);
    } else {
      EXPECT_EQ(after.local_no_agent - before_.local_no_agent, jobs);
    }
    gpo_set_socket(nullptr);
    agent_.reset();
  }

  std::unique_ptr<InProcessAgent> agent_;
  gpo_client_stats before_{};
  // The test submits faster than the agent drains its socket: a doorbell that
  // finds the socket full is taken back and computed here (local_no_room),
  // as the library does with any agent that falls behind.
  bool bursts_ = false;

 private:
  const char* tag_;
  bool expect_jobs_;
};

}  // namespace gpo::test
