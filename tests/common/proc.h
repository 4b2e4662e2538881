// Running the real agent binary from tests: argv in, exit code and output out,
// with a hard timeout so no test can hang CI.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace gpo::test {

struct ProcResult {
  int exit_code = -1;   // -1 when killed by a signal or the timeout
  bool timed_out = false;
  std::string out;      // stdout and stderr, interleaved
};

// Runs argv[0] with argv (no shell), waits at most timeout_s seconds, then
// SIGKILLs. in_child runs in the child just before the exec (environment,
// credentials); it may _exit.
ProcResult run_proc(const std::vector<std::string>& argv, double timeout_s = 30.0,
                    const std::function<void()>& in_child = {});

// run_proc with VAR=value settings added to the environment, through env(1)
// (nothing but exec runs in the child).
ProcResult run_with_env(const std::vector<std::string>& env, const std::vector<std::string>& argv,
                        double timeout_s = 30.0);

bool is_root();

}  // namespace gpo::test
