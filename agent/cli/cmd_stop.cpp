// `gpuoffload-agent stop` and `gpuoffload-agent reload`: talk to the running
// agent through its pid file (locked while it runs). stop = SIGTERM and wait:
// the agent detaches the filter on its way out. With no agent running, stop
// removes the filter a dead agent left attached (its pinned XDP links), which
// is otherwise what keeps the fail policy in force. reload = SIGHUP, then the
// outcome from the agent's status file.
#include <bpf/bpf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "bpf/xdp_filter.h"
#include "cli/commands.h"
#include "loader/xdp_loader.h"
#include "util/log.h"

namespace gpo::cli {

namespace {

using namespace std::chrono_literals;

// The pid of the agent holding the pid file's lock, or 0 when none does.
pid_t running_agent(const std::string& pid_file) {
  int fd = open(pid_file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  pid_t pid = 0;
  if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
    char buf[32] = {};
    if (pread(fd, buf, sizeof buf - 1, 0) > 0) pid = pid_t(std::atol(buf));
    if (pid <= 0) pid = -1;  // locked but unreadable: running, pid unknown
  }
  close(fd);
  return pid;
}

nlohmann::json read_json(const std::string& file) {
  std::ifstream in(file);
  nlohmann::json j;
  try {
    if (in) in >> j;
  } catch (const std::exception&) {
    j = nlohmann::json();
  }
  return j;
}

uint64_t reload_count(const std::string& status_file) {
  auto j = read_json(status_file);
  try {
    return j.at("rules").at("reloads").get<uint64_t>();
  } catch (const std::exception&) {
    return 0;
  }
}

void run_stop(const std::string& pid_file, const std::string& pin_dir_arg, double timeout_s) {
  if (!loader::have_bpf_privileges())
    throw CLI::RuntimeError("stop: needs root (or CAP_BPF and CAP_NET_ADMIN); run it with sudo", kNoPrivilege);
  pid_t pid = running_agent(pid_file);
  if (pid != 0) {
    if (pid < 0) throw CLI::RuntimeError("stop: " + pid_file + " is locked but holds no pid", kFailure);
    if (kill(pid, SIGTERM) != 0)
      throw CLI::RuntimeError("stop: cannot signal agent pid " + std::to_string(pid) + ": " + std::strerror(errno),
                              kFailure);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (running_agent(pid_file) != 0) {
      if (std::chrono::steady_clock::now() > deadline)
        throw CLI::RuntimeError("stop: agent pid " + std::to_string(pid) + " still runs after " +
                                    std::to_string(int(timeout_s)) + " s",
                                kFailure);
      std::this_thread::sleep_for(20ms);
    }
    std::printf("stopped the agent (pid %d); it detached the packet filter\n", int(pid));
    return;
  }
  // No agent: detach what a dead one left pinned.
  std::string pin_dir;
  try {
    pin_dir = loader::resolve_pin_dir(pin_dir_arg);
  } catch (const loader::XdpError& e) {
    throw CLI::RuntimeError(std::string("stop: ") + e.what(), kUsage);
  }
  int detached = 0;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(pin_dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("xdp_link_", 0) != 0) continue;
    int fd = bpf_obj_get(e.path().c_str());
    if (fd >= 0) {
      bpf_link_detach(fd);
      close(fd);
    }
    unlink(e.path().c_str());
    std::printf("detached the packet filter from %s (left attached by an agent that is gone)\n",
                name.substr(std::strlen("xdp_link_")).c_str());
    detached++;
  }
  if (!detached) std::printf("no agent running (%s) and no packet filter pinned in %s\n", pid_file.c_str(),
                             pin_dir_arg.c_str());
}

void run_reload(const std::string& pid_file, const std::string& status_file, double timeout_s) {
  pid_t pid = running_agent(pid_file);
  if (pid <= 0)
    throw CLI::RuntimeError("reload: no agent running (" + pid_file + " is not locked); start one with `run`",
                            kFailure);
  const uint64_t before = reload_count(status_file);
  if (kill(pid, SIGHUP) != 0)
    throw CLI::RuntimeError("reload: cannot signal agent pid " + std::to_string(pid) + ": " + std::strerror(errno),
                            errno == EPERM ? kNoPrivilege : kFailure);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (reload_count(status_file) <= before) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::printf("sent SIGHUP to the agent (pid %d); no result in %s after %d s\n", int(pid), status_file.c_str(),
                  int(timeout_s));
      return;
    }
    std::this_thread::sleep_for(20ms);
  }
  auto last = read_json(status_file)["rules"]["last_reload"];
  std::string msg = last.value("message", std::string("?"));
  if (!last.value("ok", false)) {
    for (auto& p : last.value("problems", nlohmann::json::array())) log::error("{}", p.get<std::string>());
    throw CLI::RuntimeError("reload: " + msg, kFailure);
  }
  std::printf("%s\n", msg.c_str());
}

}  // namespace

void add_stop(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "stop",
      "Stop the running agent (SIGTERM): it detaches the packet filter and exits. With no agent running,\n"
      "detach the filter a dead agent left attached (its pinned XDP links keep the fail policy in force).\n"
      "Example:\n"
      "  sudo gpuoffload-agent stop");
  struct Opts {
    std::string pid_file = "/run/gpuoffload/agent.pid";
    std::string pin_dir = GPO_PIN_DIR;
    double timeout_s = 15;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--pid-file", o->pid_file, "The running agent's pid file")->capture_default_str();
  cmd->add_option("--pin-dir", o->pin_dir, "Where the filter's maps and links are pinned")->capture_default_str();
  cmd->add_option("--timeout", o->timeout_s, "Seconds to wait for the agent to exit")->capture_default_str();
  cmd->callback([o] { run_stop(o->pid_file, o->pin_dir, o->timeout_s); });
}

void add_reload(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "reload",
      "Re-read the running agent's rule file (SIGHUP) and print the outcome. The new rules replace the old\n"
      "ones between two batches; cached flow verdicts they could change are invalidated. A file with\n"
      "problems is refused and the running rules stay.\n"
      "Example:\n"
      "  sudo gpuoffload-agent reload");
  struct Opts {
    std::string pid_file = "/run/gpuoffload/agent.pid";
    std::string status_file = "/run/gpuoffload/status.json";
    double timeout_s = 15;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--pid-file", o->pid_file, "The running agent's pid file")->capture_default_str();
  cmd->add_option("--status-file", o->status_file, "The running agent's status file (where the outcome shows)")
      ->capture_default_str();
  cmd->add_option("--timeout", o->timeout_s, "Seconds to wait for the outcome")->capture_default_str();
  cmd->callback([o] { run_reload(o->pid_file, o->status_file, o->timeout_s); });
}

}  // namespace gpo::cli
