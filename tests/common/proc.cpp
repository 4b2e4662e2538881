#include "common/proc.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

namespace gpo::test {

static double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

ProcResult run_proc(const std::vector<std::string>& argv, double timeout_s, const std::function<void()>& in_child) {
  ProcResult r;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return r;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    if (in_child) in_child();
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  const double deadline = now_s() + timeout_s;
  char buf[4096];
  for (;;) {
    double left = deadline - now_s();
    if (left <= 0) {
      kill(pid, SIGKILL);
      r.timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int n = poll(&p, 1, int(left * 1000) + 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    ssize_t got = read(fds[0], buf, sizeof buf);
    if (got <= 0) break;
    r.out.append(buf, size_t(got));
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!r.timed_out && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

bool is_root() { return geteuid() == 0; }

ProcResult run_with_env(const std::vector<std::string>& env, const std::vector<std::string>& argv, double timeout_s) {
  std::vector<std::string> a{"/usr/bin/env"};
  a.insert(a.end(), env.begin(), env.end());
  a.insert(a.end(), argv.begin(), argv.end());
  return run_proc(a, timeout_s);
}

}  // namespace gpo::test
