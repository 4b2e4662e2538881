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
#include <set>
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

// Adds "predicted_gain" to every process op (large calls, measured sizes, sampled ops).
void add_gains(nlohmann::json& snap, const spot::GainModel& gains) {
  for (auto& p : snap["processes"]) {
    for (const char* part : {"ops", "sizes"}) {
      if (!p.contains(part)) continue;
      for (auto& [name, s] : p[part].items()) {
        auto op = spot::op_from_name(name);
        s["predicted_gain"] = op ? gains.describe(*op, s.value("mean_len", uint64_t(0))) : "unknown op";
      }
    }
    if (!p.contains("cpu")) continue;
    // A sampled op: the gain at the mean size its window measured, if any.
    for (auto& [name, c] : p["cpu"].items()) {
      auto sop = spot::sample_op_from_name(name);
      if (!sop) continue;
      uint64_t calls = 0, bytes = 0;
      uint32_t first = 0;
      bool any = false;
      for (uint32_t op : spot::probe_ops_of(*sop)) {
        auto key = std::string(spot::op_name(op));
        if (!p["sizes"].contains(key)) continue;
        if (!any) first = op;
        any = true;
        calls += p["sizes"][key].value("calls", 0ull);
        bytes += p["sizes"][key].value("bytes", 0ull);
      }
      if (calls) {
        c["mean_len"] = bytes / calls;
        c["predicted_gain"] = gains.describe(first, bytes / calls);
      } else {
        c["predicted_gain"] = spot::probe_ops_of(*sop).empty() ? "not measurable" : "not measured yet";
      }
    }
  }
  snap["profile"] = gains.has_profile() ? "loaded" : gains.error();
}

std::string pct(double share) { return fmt::format("{:.1f}%", share * 100); }

void render_text(const nlohmann::json& snap, const std::string& source, bool clear) {
  std::string out;
  if (clear) out += "\x1b[H\x1b[2J";
  const auto& st = snap["stats"];
  const auto& at = snap["attach"];
  out += fmt::format("gpuoffload top ({}, {} mode)  probes attached {}  events {}  dropped {}", source,
                     snap.value("mode", std::string("probe")), at.value("uprobes", 0) + at.value("kprobes", 0),
                     st.value("events", 0ull), st.value("dropped", 0ull));
  if (snap.value("mode", std::string()) == "sample")
    out += fmt::format("  windows {} opened, {} open\n{}", st.value("windows_opened", 0ull),
                       st.value("windows_open", 0ull), at.value("sampler", std::string()));
  out += fmt::format("\n{}\n\n", at.value("kernel", std::string()));
  out += fmt::format("{:>8} {:<16} {:<7} {:<19} {:>7} {:>9} {:>10} {:>12}  {}\n", "PID", "COMM", "MODE", "OP", "CPU",
                     "CALLS", "MEAN", "RATE", "OFFLOAD");
  // Processes whose calls can reach the agent (shim, provider, libgpuoffload), not only seen.
  const auto& marks = snap.value("offloaded", nlohmann::json::object());
  size_t rows = 0;
  auto row = [&](const nlohmann::json& p, const std::string& mode, const std::string& op, const std::string& cpu,
                 const std::string& calls, const std::string& mean, const std::string& rate, std::string gain) {
    if (p.contains("offloaded_by") && p["offloaded_by"].is_string())
      gain += " [offloaded by " + p["offloaded_by"].get<std::string>() + "]";
    if (auto k = std::to_string(p.value("pid", 0u)); marks.contains(k))
      gain = "VIA " + marks[k].value("via", std::string()) + "  " + gain;
    out += fmt::format("{:>8} {:<16} {:<7} {:<19} {:>7} {:>9} {:>10} {:>12}  {}\n", p.value("pid", 0u),
                       p.value("comm", std::string()), mode, op, cpu, calls, mean, rate, gain);
    rows++;
  };
  for (const auto& p : snap["processes"]) {
    if (p.contains("cpu"))
      for (const auto& [name, c] : p["cpu"].items()) {
        if (c.value("cpu_period", 0.0) <= 0 && c.value("cpu", 0.0) <= 0) continue;
        row(p, "sample", name, pct(c.value("cpu_period", 0.0)), "-",
            c.contains("mean_len") ? spot::human_bytes(c.value("mean_len", 0.0)) : "-", "-",
            c.value("predicted_gain", std::string()));
      }
    std::string from = p.value("sizes_from", std::string("probe"));
    if (p.contains("window") && p["window"].is_object() && p["window"].value("open", false)) from = "window*";
    std::set<std::string> shown;
    if (p.contains("sizes"))
      for (const auto& [name, s] : p["sizes"].items()) {
        double rate = p["ops"].contains(name) ? p["ops"][name].value("rate_bps", 0.0) : 0.0;
        row(p, from, name, "-", std::to_string(s.value("calls", 0ull)), spot::human_bytes(s.value("mean_len", 0.0)),
            rate > 0 ? spot::human_bytes(rate) + "/s" : "-", s.value("predicted_gain", std::string()));
        shown.insert(name);
      }
    for (const auto& [name, s] : p["ops"].items()) {
      if (shown.count(name)) continue;
      row(p, from, name, "-", std::to_string(s.value("calls", 0ull)), spot::human_bytes(s.value("mean_len", 0.0)),
          spot::human_bytes(s.value("rate_bps", 0.0)) + "/s", s.value("predicted_gain", std::string()));
    }
  }
  if (!rows) out += "  (nothing spotted yet)\n";
  std::string off;
  for (const auto& [pid, m] : marks.items())
    off += fmt::format("{:>8} {:<16} via {}\n", pid, m.value("comm", std::string()), m.value("via", std::string()));
  if (!off.empty()) out += "\noffloaded processes (shim, provider or libgpuoffload; * = slab registered):\n" + off;
  out += "\nMODE: sample = CPU share from sampling; window = sizes measured by a probe window (* = open now);\n"
         "probe = every call probed. MEAN of a sample row: what its last window measured.\n";
  if (!snap["hist"].empty()) {
    out += "\nall probed calls, any size (in-kernel histogram, all processes):\n";
    for (const auto& [name, h] : snap["hist"].items())
      out += fmt::format("  {:<22} {:>10} calls {:>11}\n", name, h.value("calls", 0ull),
                         spot::human_bytes(h.value("bytes", 0.0)));
  }
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
    if (opts.mode == spot::Mode::off) throw CLI::RuntimeError("top: --spot-mode off leaves nothing to show", kUsage);
    opts.ignore_tgid = uint32_t(getpid());
    opts.rescan = std::chrono::milliseconds(0);
    try {
      spotter = spot::Spotter::attach(opts);
    } catch (const spot::SpotError& e) {
      throw CLI::RuntimeError(e.what(), e.kind == spot::SpotError::Kind::privilege ? kNoPrivilege : kFailure);
    }
    spotter->aggregate().tick(0);
    spotter->register_with(loop, std::min(period, std::chrono::milliseconds(1000)));
    source = "own";
    gpo::log::info("top: spotting ready ({} mode), first view in {:.1f} s", spot::mode_name(spotter->mode()),
                   a.interval);
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
      "Shows, per process and op, the share of a CPU it spends there (sample mode: CPU sampling, no\n"
      "per-call cost), the call sizes measured while it was probed (a short window in sample mode, all\n"
      "the time in probe mode), and what offload would gain according to the calibrated profile. The\n"
      "MODE column says where each row comes from. Reads the running agent's snapshot\n"
      "(" + std::string(spot::kDefaultSnapshot) + ") when there is one, else spots on its own (root).\n\n"
      "Examples:\n"
      "  sudo gpuoffload-agent top\n"
      "  sudo gpuoffload-agent top --own --spot-mode probe --once --json --interval 5 --spot-threshold all=16K");
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
