// `gpuoffload-agent top`: the live profile of processes doing offloadable work.
//
// Where the data comes from: a running `run` writes its spotting snapshot to
// /run/gpuoffload/spot.json every second; when that file is fresh and its
// agent is alive, top shows it. Otherwise top loads its own probes (root
// needed) for as long as it runs.
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "cli/offload_marks.h"
#include "loop/event_loop.h"
#include "spot/flags.h"
#include "spot/gain.h"
#include "spot/ops.h"
#include "spot/spotter.h"
#include "util/log.h"

namespace gpo::cli {
namespace {

struct TopArgs {
  bool once = false;
  bool json = false;
  bool own = false;
  double interval = 1.0;
  int count = 0;
  std::string snapshot = spot::kDefaultSnapshot;
  std::string profile = spot::kDefaultProfile;
  spot::SpotFlags flags;
};

// The snapshot of a live agent, or null.
nlohmann::json read_agent_snapshot(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return nullptr;
  if (::time(nullptr) - st.st_mtime > 5) return nullptr;  // the agent writes it every second
  try {
    std::ifstream f(path);
    auto j = nlohmann::json::parse(f);
    int pid = j.at("agent_pid").get<int>();
    if (pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH)) return nullptr;
    return j;
  } catch (const std::exception&) {
    return nullptr;
  }
}

// Adds "predicted_gain" to every process op.
void add_gains(nlohmann::json& snap, const spot::GainModel& gains) {
  for (auto& p : snap["processes"])
    for (auto& [name, s] : p["ops"].items()) {
      auto op = spot::op_from_name(name);
      s["predicted_gain"] = op ? gains.describe(*op, s.value("mean_len", uint64_t(0))) : "unknown op";
    }
  snap["profile"] = gains.has_profile() ? "loaded" : gains.error();
}

void render_text(const nlohmann::json& snap, const std::string& source, bool clear) {
  std::string out;
  if (clear) out += "\x1b[H\x1b[2J";
  const auto& st = snap["stats"];
  out += fmt::format("gpuoffload top ({})  events {}  dropped {}  uprobes {}  kprobes {}\n", source,
                     st.value("events", 0ull), st.value("dropped", 0ull), snap["attach"].value("uprobes", 0),
                     snap["attach"].value("kprobes", 0));
  out += fmt::format("{}\n\n", snap["attach"].value("kernel", std::string()));
  out += fmt::format("{:>8} {:<16} {:<22} {:>8} {:>11} {:>12} {:>10}  {}\n", "PID", "COMM", "OP", "CALLS", "BYTES",
                     "RATE", "MEAN", "OFFLOAD (VIA: offloaded now)");
  const auto& marks = snap.value("offloaded", nlohmann::json::object());
  auto via = [&](unsigned pid) {
    auto k = std::to_string(pid);
    return marks.contains(k) ? "VIA " + marks[k].value("via", std::string()) + "  " : std::string();
  };
  size_t rows = 0;
  for (const auto& p : snap["processes"]) {
    for (const auto& [name, s] : p["ops"].items()) {
      out += fmt::format("{:>8} {:<16} {:<22} {:>8} {:>11} {:>12} {:>10}  {}\n", p.value("pid", 0u),
                         p.value("comm", std::string()), name, s.value("calls", 0ull),
                         spot::human_bytes(s.value("bytes", 0.0)), spot::human_bytes(s.value("rate_bps", 0.0)) + "/s",
                         spot::human_bytes(s.value("mean_len", 0.0)),
                         via(p.value("pid", 0u)) + s.value("predicted_gain", std::string()));
      rows++;
    }
  }
  if (!rows) out += "  (no call over the threshold yet)\n";
  // Offloaded processes: their calls go to the agent (a slab: *), not only seen.
  std::string seen;
  for (const auto& p : snap["processes"]) seen += "," + std::to_string(p.value("pid", 0u)) + ",";
  std::string off;
  for (const auto& [pid, m] : marks.items())
    if (seen.find("," + pid + ",") == std::string::npos)
      off += fmt::format("{:>8} {:<16} via {}\n", pid, m.value("comm", std::string()), m.value("via", std::string()));
  if (!off.empty()) out += "\noffloaded processes (shim, provider or libgpuoffload; * = slab registered):\n" + off;
  out += "\nall calls, any size (in-kernel histogram, all processes):\n";
  for (const auto& [name, h] : snap["hist"].items())
    out += fmt::format("  {:<22} {:>10} calls {:>11}\n", name, h.value("calls", 0ull),
                       spot::human_bytes(h.value("bytes", 0.0)));
  std::cout << out << std::flush;
}

void top_main(const TopArgs& a) {
  auto gains = spot::GainModel::load(a.profile);
  if (a.interval <= 0 || a.interval > 3600)
    throw CLI::RuntimeError("top: --interval must be in (0, 3600] seconds", kUsage);
  auto period = std::chrono::milliseconds(int64_t(a.interval * 1000));
  bool clear = !a.once && !a.json && isatty(1);
  int shown = 0;
  auto done = [&] { return a.once || (a.count > 0 && shown >= a.count); };

  nlohmann::json agent = a.own ? nlohmann::json(nullptr) : read_agent_snapshot(a.snapshot);
  loop::EventLoop loop;
  std::unique_ptr<spot::Spotter> spotter;
  std::string source;
  if (!agent.is_null()) {
    source = fmt::format("agent pid {}", agent.value("agent_pid", 0));
    gpo::log::info("top: reading the running agent's snapshot {}", a.snapshot);
  } else {
    if (geteuid() != 0)
      throw CLI::RuntimeError("top: no running agent to read (" + a.snapshot +
                                  ") and loading probes needs root: run `sudo gpuoffload-agent top`",
                              kNoPrivilege);
    auto opts = spot::make_spot_options(a.flags);
    opts.ignore_tgid = uint32_t(getpid());
    opts.rescan = std::chrono::milliseconds(0);
    try {
      spotter = spot::Spotter::attach(opts);
    } catch (const spot::SpotError& e) {
      throw CLI::RuntimeError(e.what(), e.kind == spot::SpotError::Kind::privilege ? kNoPrivilege : kFailure);
    }
    spotter->aggregate().tick(0);
    spotter->register_with(loop, period);
    source = "own probes";
    gpo::log::info("top: spotting ready (own probes), first view in {:.1f} s", a.interval);
  }

  auto show = [&] {
    nlohmann::json snap;
    if (spotter) {
      snap = spotter->snapshot_json();
    } else {
      snap = read_agent_snapshot(a.snapshot);
      if (snap.is_null()) {
        gpo::log::warn("top: the agent stopped writing {}", a.snapshot);
        loop.stop();
        return;
      }
    }
    snap["source"] = spotter ? "own" : "agent";
    for (const auto& [pid, m] : scan_offloaded())
      snap["offloaded"][std::to_string(pid)] = {{"comm", m.comm}, {"via", m.via()}, {"shim", m.shim},
                                                {"provider", m.provider}, {"slab", m.slab}};
    add_gains(snap, gains);
    if (a.json)
      std::cout << snap.dump() << std::endl;
    else
      render_text(snap, source, clear);
    shown++;
    if (done()) loop.stop();
  };
  loop.add_timer(period, show);
  loop.run();
}

}  // namespace

void add_top(CLI::App& app) {
  auto args = std::make_shared<TopArgs>();
  auto* cmd = app.add_subcommand("top", "live view of processes doing crypto and compression work worth offloading");
  cmd->footer(
      "Shows, per process and op, the calls at or over the spotting threshold (calls, bytes, rate, mean size)\n"
      "and what offload would gain according to the calibrated profile. Reads the running agent's\n"
      "snapshot (" + std::string(spot::kDefaultSnapshot) + ") when there is one, else loads its own probes (root).\n\n"
      "Examples:\n"
      "  sudo gpuoffload-agent top\n"
      "  sudo gpuoffload-agent top --once --json --interval 5 --spot-threshold all=16K");
  cmd->add_flag("--once", args->once, "print one view after --interval seconds and exit");
  cmd->add_flag("--json", args->json, "print JSON (one object per view) instead of the table");
  cmd->add_option("--interval", args->interval, "seconds between views")->capture_default_str();
  cmd->add_option("--count", args->count, "exit after this many views (0 = until Ctrl-C)");
  cmd->add_flag("--own", args->own, "always load own probes, even when an agent runs");
  cmd->add_option("--snapshot", args->snapshot, "the running agent's snapshot file")->capture_default_str();
  cmd->add_option("--profile", args->profile, "the planner's calibrated profile")->capture_default_str();
  spot::add_spot_flags(cmd, args->flags);
  cmd->callback([args] { top_main(*args); });
}

}  // namespace gpo::cli
