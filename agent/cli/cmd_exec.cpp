// `gpuoffload-agent exec -- CMD ARGS`: runs an unmodified program with the
// shim preloaded (LD_PRELOAD) and the OpenSSL provider configured
// (OPENSSL_CONF), passes its exit status through, and prints at exit what
// was offloaded, like `perf stat` (docs/exec.md).
//
// Where the numbers come from: every process of the run writes its own
// accounting (libgpuoffload's gpo_account / gpo_stats_write) into a private
// folder at exit (GPO_STATS_DIR); the agent's status file, read before and
// after, says which backend served and how its planner split the jobs; one
// core's CPU time for the offloaded bytes is measured here at the end, with
// the same CPU code the agent's CPU backend runs.
#include <openssl/conf.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "backend/ops.h"
#include "cli/commands.h"
#include "cli/exec_target.h"
#include "client/stats_file.h"
#include "gpuoffload.h"

extern char** environ;

namespace gpo::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct ExecOptions {
  bool no_shim = false, no_provider = false, quiet = false;
  std::string shim, provider, socket, output, stats_json;
  std::string status_file = "/run/gpuoffload/status.json";
  uint64_t min_bytes = 0;
  int zstd_level = 3;
  int agent_wait_ms = 1500;
  bool estimate = true;
};

// --- where the shim and the provider are --------------------------------------------

std::string self_dir() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.parent_path().string();
}

std::string first_existing(const std::vector<std::string>& candidates) {
  for (const auto& c : candidates)
    if (!c.empty() && access(c.c_str(), R_OK) == 0) return fs::absolute(c).lexically_normal().string();
  return "";
}

std::string find_shim(const ExecOptions& o) {
  if (!o.shim.empty()) return o.shim;
  const char* e = getenv("GPO_SHIM_PATH");
  return first_existing({e ? e : "", self_dir() + "/../lib/libgpuoffload-shim.so", GPO_INSTALL_LIBDIR "/libgpuoffload-shim.so"});
}

std::string find_provider(const ExecOptions& o) {
  if (!o.provider.empty()) return o.provider;
  const char* e = getenv("GPO_PROVIDER_PATH");
  return first_existing({e ? e : "", self_dir() + "/../lib/ossl-modules/gpuoffload.so",
                         GPO_OPENSSL_MODULESDIR "/gpuoffload.so"});
}

// --- the OpenSSL configuration ---------------------------------------------------------

// Where the run's folder goes (the OpenSSL configuration, the reports): in
// memory where the system has /dev/shm, since making and removing it on a
// disk file system (journal, discards) cost each command about 0.3 ms; else
// $TMPDIR, else /tmp.
std::string run_folder_base() {
  if (access("/dev/shm", W_OK | X_OK) == 0) return "/dev/shm";
  const char* t = std::getenv("TMPDIR");
  return t && *t ? t : "/tmp";
}

// The configuration the program would have read, plus the provider: the
// existing file is included, its init section gets our providers (default
// and gpuoffload, both active) and a preference for gpuoffload's algorithms.
std::string openssl_conf(const std::string& provider) {
  char* def = CONF_get1_default_config_file();
  std::string base = def ? def : "";
  OPENSSL_free(def);
  std::string init = "gpuoffload_init";
  std::ostringstream c;
  c << "# Written by gpuoffload-agent exec: the provider on top of " << (base.empty() ? "nothing" : base) << "\n";
  if (!base.empty() && access(base.c_str(), R_OK) == 0) {
    // Its init section, if any, is where ours must go (the last value of a key wins).
    std::ifstream f(base);
    std::regex key(R"(^\s*openssl_conf\s*=\s*([A-Za-z0-9_.]+))");
    std::smatch m;
    for (std::string line; std::getline(f, line);) {
      if (!line.empty() && line[0] == '[') break;  // only the default section names it
      if (std::regex_search(line, m, key)) init = m[1];
    }
    c << ".include " << base << "\n";
  }
  c << "openssl_conf = " << init << "\n\n[" << init << "]\nproviders = gpuoffload_providers\n"
    << "alg_section = gpuoffload_algorithms\n\n[gpuoffload_providers]\ndefault = gpuoffload_default\n"
    << "gpuoffload = gpuoffload_module\n\n[gpuoffload_default]\nactivate = 1\n\n[gpuoffload_module]\nmodule = "
    << provider << "\nactivate = 1\n\n[gpuoffload_algorithms]\ndefault_properties = ?provider=gpuoffload\n";
  return c.str();
}

// --- accounting ------------------------------------------------------------------------

struct PathCount {
  uint64_t calls = 0, bytes = 0, ns = 0;
};
struct OpCount {
  PathCount path[GPO_PATH_COUNT];
  uint64_t calls() const {
    uint64_t n = 0;
    for (const auto& p : path) n += p.calls;
    return n;
  }
  uint64_t bytes() const {
    uint64_t n = 0;
    for (const auto& p : path) n += p.bytes;
    return n;
  }
};

struct Collected {
  std::map<std::string, OpCount> ops;
  std::map<std::string, uint64_t> client;  // gpo_client_stats fields, summed
  int processes = 0, active = 0;  // that reported; of them, with calls through the shim or provider
  int unreported = 0;             // of the active, known by their counts file only (killed: no job counts)
  std::vector<std::string> programs;       // argv0 of processes that made calls
};

int path_index(const std::string& p) {
  for (int i = 0; i < GPO_PATH_COUNT; ++i)
    if (p == gpo_path_name(i)) return i;
  return -1;
}

void add_program(Collected& c, const std::string& argv0) {
  const std::string a = fs::path(argv0).filename().string();
  if (std::find(c.programs.begin(), c.programs.end(), a) == c.programs.end()) c.programs.push_back(a);
}

// A counts file (client/stats_file.h) of a process that left no report (it
// was killed, or replaced by exec): its tallies into c. A file that is not
// one is passed over.
void collect_counts_file(const fs::path& p, Collected& c) {
  namespace cl = gpo::client;
  std::ifstream f(p, std::ios::binary);
  std::vector<char> buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  cl::CountsHeader h;
  if (buf.size() < cl::kCountsHeaderBytes) return;
  std::memcpy(&h, buf.data(), sizeof h);
  if (h.magic != cl::kCountsMagic || h.version != cl::kCountsVersion || h.ops != cl::kCountOps ||
      h.paths != GPO_PATH_COUNT || buf.size() < cl::kCountsHeaderBytes + uint64_t(h.blocks) * sizeof(cl::CountsBlock))
    return;
  bool any = false;
  for (uint32_t b = 0; b < h.blocks; ++b) {
    cl::CountsBlock blk;
    std::memcpy(&blk, buf.data() + cl::kCountsHeaderBytes + b * sizeof blk, sizeof blk);
    for (int op = 1; op < cl::kCountOps; ++op)
      for (int path = 0; path < GPO_PATH_COUNT; ++path) {
        if (!blk[op][path][0]) continue;
        auto& pc = c.ops[std::string(gpo::backend::op_name(gpo::backend::OpId(op)))].path[path];
        pc.calls += blk[op][path][0];
        pc.bytes += blk[op][path][1];
        pc.ns += blk[op][path][2];
        any = true;
      }
  }
  if (any) {  // a process that counted nothing (a forked child that went on to exec) is no process here
    c.processes++;
    c.active++;
    c.unreported++;
    add_program(c, std::string(h.argv0, strnlen(h.argv0, sizeof h.argv0)));
  }
}

Collected collect(const fs::path& dir) {
  Collected c;
  std::error_code ec;
  std::set<std::string> reported;  // counts files a report replaces
  std::vector<fs::path> counts;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".counts") counts.push_back(e.path());
    if (e.path().extension() != ".json") continue;
    std::ifstream f(e.path());
    auto j = nlohmann::json::parse(f, nullptr, false);
    if (j.is_discarded()) continue;
    c.processes++;
    if (j.contains("counts_file")) reported.insert(j.value("counts_file", ""));
    bool any = false;
    const auto ops = j.value("ops", nlohmann::json::array());
    for (const auto& op : ops) {
      const int p = path_index(op.value("path", ""));
      if (p < 0) continue;
      auto& pc = c.ops[op.value("op", "?")].path[p];
      pc.calls += op.value("calls", uint64_t(0));
      pc.bytes += op.value("bytes", uint64_t(0));
      pc.ns += op.value("ns", uint64_t(0));
      any = true;
    }
    const auto client = j.value("client", nlohmann::json::object());
    for (const auto& [k, v] : client.items())
      if (v.is_number_unsigned()) c.client[k] += v.get<uint64_t>();
    if (any) {
      c.active++;
      add_program(c, j.value("argv0", ""));
    }
  }
  for (const auto& p : counts)
    if (!reported.count(p.filename().string())) collect_counts_file(p, c);
  return c;
}

// --- the agent's view ------------------------------------------------------------------

struct AgentView {
  bool present = false;
  std::string backend;
  uint64_t jobs_done = 0;
  std::map<std::string, std::pair<uint64_t, uint64_t>> planner;  // op -> (cpu jobs, gpu jobs)
};

AgentView read_agent(const std::string& file) {
  AgentView v;
  std::ifstream f(file);
  if (!f) return v;
  auto j = nlohmann::json::parse(f, nullptr, false);
  if (j.is_discarded() || !j.contains("offload")) return v;
  const auto& o = j["offload"];
  if (!o.value("enabled", false)) return v;
  v.present = true;
  v.backend = o.value("backend", "");
  v.jobs_done = o.value("jobs_done", uint64_t(0));
  if (o.contains("planner") && o["planner"].contains("ops"))
    for (const auto& [op, c] : o["planner"]["ops"].items())
      v.planner[op] = {c.value("cpu_jobs", uint64_t(0)), c.value("gpu_jobs", uint64_t(0))};
  return v;
}

// Waits (bounded) until the agent rewrote its status file after `since`.
AgentView read_agent_after(const std::string& file, fs::file_time_type since, int wait_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
  std::error_code ec;
  while (Clock::now() < deadline) {
    auto t = fs::last_write_time(file, ec);
    if (ec) return {};
    if (t > since) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return read_agent(file);
}

// --- one core's time for the offloaded bytes -----------------------------------------------

// Nanoseconds per byte of op on one core of this machine, measured now on a
// job of `size` bytes (the mean offloaded call) with the CPU backend's code.
double cpu_ns_per_byte(const std::string& name, uint64_t size, int zstd_level) {
  const backend::OpInfo* op = backend::find_op(name);
  if (!op || size == 0) return 0;
  size = std::min<uint64_t>(size, 16u << 20);
  std::vector<uint8_t> in(size), out(size + size / 64 + (1u << 16)), key(32, 7), iv(16, 9);
  static const char* words[] = {"offload ", "program ", "stream ", "block ", "agent ", "frame ", "\n"};
  uint32_t x = 12345;
  for (size_t i = 0; i < in.size();) {  // text-like: zstd and zlib speeds depend on the data
    x = x * 1103515245 + 12345;
    for (const char* w = words[(x >> 16) % 7]; *w && i < in.size(); ++w) in[i++] = uint8_t(*w);
  }
  backend::Job j;
  j.op = op->id;
  j.in = in;
  j.out = out;
  j.level = op->id == backend::OpId::zlib_compress ? 6 : zstd_level;
  const backend::OpParams params = backend::op_params(op->id);
  j.key = std::span<const uint8_t>(key.data(), params.key_bytes);
  j.iv = std::span<const uint8_t>(iv.data(), params.iv_bytes);
  if (const auto n = backend::fixed_out_bytes(op->id, in.size())) j.out = std::span<uint8_t>(out.data(), *n);
  const auto t0 = Clock::now();
  int reps = 0;
  do {
    j.status = backend::Status::pending;
    backend::run_on_cpu(j);
    ++reps;
  } while (Clock::now() - t0 < std::chrono::milliseconds(30) && reps < 1000);
  const double ns = double(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
  return ns / reps / double(size);
}

// --- the summary -------------------------------------------------------------------------

std::string secs(double s) {
  char b[32];
  std::snprintf(b, sizeof b, s < 0.1 ? "%.2f ms" : "%.3f s", s < 0.1 ? s * 1e3 : s);
  return b;
}

std::string bytes_str(double b) {
  const char* unit[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) b /= 1000, ++u;
  char s[32];
  std::snprintf(s, sizeof s, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
  return s;
}

const char* why_text(int path) {
  switch (path) {
    case GPO_PATH_CPU_SMALL: return "under the offload size";
    case GPO_PATH_CPU_STREAM: return "sequential stream";
    case GPO_PATH_CPU_PARAMS: return "parameters offload does not do";
    case GPO_PATH_CPU_NO_AGENT: return "no agent";
    case GPO_PATH_CPU_TOO_LARGE: return "larger than one job";
    case GPO_PATH_CPU_PLAN: return "the plan: the GPU would not win";
  }
  return "";
}

struct Run {
  std::vector<std::string> argv;
  ExecTarget target;
  int status = 0;
  double wall = 0, user = 0, sys = 0;
  bool shim = false, provider = false;
};

nlohmann::json summarize(const Run& r, const Collected& c, const AgentView& before, const AgentView& after,
                         const ExecOptions& o) {
  nlohmann::json j;
  std::string cmd;
  for (const auto& a : r.argv) cmd += (cmd.empty() ? "" : " ") + a;
  j["command"] = cmd;
  j["exit_code"] = WIFEXITED(r.status) ? WEXITSTATUS(r.status) : 128 + WTERMSIG(r.status);
  if (WIFSIGNALED(r.status)) j["signal"] = WTERMSIG(r.status);
  j["wall_s"] = r.wall;
  j["user_s"] = r.user;
  j["sys_s"] = r.sys;
  j["shim"] = r.shim;
  j["provider"] = r.provider;
  j["processes"] = c.processes;
  j["processes_with_calls"] = c.active;
  j["processes_without_report"] = c.unreported;
  j["ops"] = nlohmann::json::object();
  double offload_s = 0, cpu_est_s = 0;
  bool estimated = false;
  for (const auto& [name, oc] : c.ops) {
    nlohmann::json x{{"calls", oc.calls()}, {"bytes", oc.bytes()}};
    for (int p = 0; p < GPO_PATH_COUNT; ++p)
      if (oc.path[p].calls)
        x["paths"][gpo_path_name(p)] = {{"calls", oc.path[p].calls}, {"bytes", oc.path[p].bytes}, {"ns", oc.path[p].ns}};
    const PathCount& off = oc.path[GPO_PATH_OFFLOAD];
    if (off.calls) {
      offload_s += double(off.ns) / 1e9;
      x["offload_s"] = double(off.ns) / 1e9;
      if (o.estimate) {
        const double npb = cpu_ns_per_byte(name, off.bytes / off.calls, o.zstd_level);
        if (npb > 0) {
          x["cpu_estimate_s"] = npb * double(off.bytes) / 1e9;
          cpu_est_s += npb * double(off.bytes) / 1e9;
          estimated = true;
        }
      }
    }
    j["ops"][name] = x;
  }
  j["offloaded_calls_s"] = offload_s;
  if (estimated) j["cpu_estimate_s"] = cpu_est_s;
  j["client"] = c.client;
  j["agent"] = {{"present", after.present}, {"backend", after.backend}};
  if (after.present && before.present) {
    j["agent"]["jobs_done"] = after.jobs_done - before.jobs_done;
    for (const auto& [op, cg] : after.planner) {
      auto b = before.planner.count(op) ? before.planner.at(op) : std::pair<uint64_t, uint64_t>{0, 0};
      if (cg.first - b.first || cg.second - b.second)
        j["agent"]["planner"][op] = {{"cpu_jobs", cg.first - b.first}, {"gpu_jobs", cg.second - b.second}};
    }
  }
  return j;
}

void print_summary(FILE* out, const nlohmann::json& j, const Run& r, const Collected& c) {
  std::fprintf(out, "\n Offload summary for '%s'", j["command"].get<std::string>().c_str());
  if (j.contains("signal"))
    std::fprintf(out, " (killed by signal %d):\n\n", j["signal"].get<int>());
  else
    std::fprintf(out, " (exit status %d):\n\n", j["exit_code"].get<int>());
  if (c.ops.empty()) {
    std::fprintf(out, "   no call of libcrypto (through the provider), libzstd or zlib was seen");
    if (!r.target.needed.empty() && !links_offloadable_library(r.target.needed))
      std::fprintf(out, ":\n   %s links none of libcrypto, libzstd, libz dynamically (its own copies may be "
                        "compiled in, or it loads them later with dlopen)",
                   fs::path(r.target.interpreter.empty() ? r.target.path : r.target.interpreter).filename().c_str());
    std::fprintf(out, "\n");
  } else {
    std::fprintf(out, "   %-22s %10s %10s  %10s %10s  %s\n", "op", "calls", "bytes", "offloaded", "bytes",
                 "on the CPU (calls: why)");
    for (const auto& [name, x] : j["ops"].items()) {
      const auto p = x.value("paths", nlohmann::json::object());
      const auto off = p.value("offload", nlohmann::json::object());
      std::string why;
      for (const auto& [pname, pc] : p.items()) {
        if (pname == "offload") continue;
        const int pi = path_index(pname);
        why += (why.empty() ? "" : ", ") + std::to_string(pc["calls"].get<uint64_t>()) + ": " + why_text(pi);
      }
      std::fprintf(out, "   %-22s %10llu %10s  %10llu %10s  %s\n", name.c_str(),
                   (unsigned long long)x["calls"].get<uint64_t>(), bytes_str(double(x["bytes"].get<uint64_t>())).c_str(),
                   (unsigned long long)off.value("calls", uint64_t(0)),
                   bytes_str(double(off.value("bytes", uint64_t(0)))).c_str(), why.c_str());
    }
  }
  const auto& cl = j["client"];
  auto g = [&](const char* k) { return (unsigned long long)(cl.contains(k) ? cl[k].get<uint64_t>() : 0); };
  if (g("jobs")) {
    std::fprintf(out,
                 "\n   libgpuoffload jobs: %llu, done by the agent %llu, in the process %llu (no agent %llu, "
                 "timeout %llu, agent gone %llu, refused %llu, no room in the slab %llu)\n",
                 g("jobs"), g("by_agent"), g("local"), g("local_no_agent"), g("local_timeout"), g("local_agent_gone"),
                 g("local_rejected"), g("local_no_room"));
  }
  const auto& a = j["agent"];
  if (!a["present"].get<bool>()) {
    std::fprintf(out, "   agent: not running (no fresh status); offloaded calls ran in the program's own process\n");
  } else {
    std::fprintf(out, "   agent: %s backend", a["backend"].get<std::string>().c_str());
    if (a.contains("jobs_done")) {
      std::fprintf(out, "; %llu jobs done during the run", (unsigned long long)a["jobs_done"].get<uint64_t>());
      if (a.contains("planner"))
        for (const auto& [op, pc] : a["planner"].items())
          std::fprintf(out, "; %s: %llu on the GPU, %llu on its CPU", op.c_str(),
                       (unsigned long long)pc["gpu_jobs"].get<uint64_t>(),
                       (unsigned long long)pc["cpu_jobs"].get<uint64_t>());
      std::fprintf(out, " (agent-wide: other clients count too)");
    }
    std::fprintf(out, "\n");
  }
  if (j["offloaded_calls_s"].get<double>() > 0) {
    const double off = j["offloaded_calls_s"].get<double>();
    std::fprintf(out, "   offloaded calls took %s", secs(off).c_str());
    if (j.contains("cpu_estimate_s")) {
      const double est = j["cpu_estimate_s"].get<double>();
      std::fprintf(out, "; one core here does the same bytes in about %s (measured now) -> %s %s", secs(est).c_str(),
                   est >= off ? "saved" : "lost", secs(std::fabs(est - off)).c_str());
    }
    std::fprintf(out, " (summed over threads)\n");
  }
  // Processes that made no call write no report (docs/exec.md): they are not counted.
  std::fprintf(out, "   processes that made calls: %d", j["processes"].get<int>());
  if (c.unreported)  // killed: their calls are counted, their libgpuoffload jobs are not
    std::fprintf(out, " (%d ended without a report: calls counted, jobs not)", c.unreported);
  std::fprintf(out, "    wall %.3f s    user %.3f s    sys %.3f s\n\n", r.wall, r.user, r.sys);
}

// --- running the program ------------------------------------------------------------------

int run_exec(ExecOptions& o, std::vector<std::string> argv) {
  if (!argv.empty() && argv[0] == "--") argv.erase(argv.begin());
  if (argv.empty()) throw CLI::RuntimeError("exec: no command given (gpuoffload-agent exec -- CMD ARGS)", kUsage);
  Run r;
  r.argv = argv;
  r.target = inspect_target(argv[0]);
  if (!r.target.refusal.empty())
    throw CLI::RuntimeError("exec: " + r.target.refusal, r.target.refusal_code);

  const std::string shim = o.no_shim ? "" : find_shim(o);
  const std::string provider = o.no_provider ? "" : find_provider(o);
  if (!o.no_shim && shim.empty())
    throw CLI::RuntimeError("exec: libgpuoffload-shim.so not found (next to the agent in ../lib, in " GPO_INSTALL_LIBDIR
                            "); give --shim PATH or --no-shim",
                            125);
  if (!o.no_provider && provider.empty())
    throw CLI::RuntimeError("exec: the OpenSSL provider gpuoffload.so not found (../lib/ossl-modules next to the agent, "
                            "or " GPO_OPENSSL_MODULESDIR "); give --provider PATH or --no-provider",
                            125);
  r.shim = !shim.empty();
  r.provider = !provider.empty();

  std::string tmpl = run_folder_base() + "/gpuoffload-exec.XXXXXX";
  if (!mkdtemp(tmpl.data())) throw CLI::RuntimeError(std::string("exec: mkdtemp: ") + std::strerror(errno), 125);
  const fs::path dir = tmpl, stats = dir / "stats";
  fs::create_directory(stats);
  chmod(stats.c_str(), 0777);  // children that switch user still report
  struct Cleanup {
    fs::path d;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  } cleanup{dir};

  // The child's environment: ours, with the shim, the provider and the stats folder.
  std::map<std::string, std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string s = *e;
    auto eq = s.find('=');
    if (eq != std::string::npos) env[s.substr(0, eq)] = s.substr(eq + 1);
  }
  if (r.shim) env["LD_PRELOAD"] = shim + (env.count("LD_PRELOAD") ? ":" + env["LD_PRELOAD"] : "");
#ifdef GPO_SANITIZER_PRELOAD
  // A sanitizer build's shim and provider need the sanitizer runtime, which a program
  // built elsewhere lacks: preloaded first; that program's own leaks are not ours.
  env["LD_PRELOAD"] = std::string(GPO_SANITIZER_PRELOAD) + (env.count("LD_PRELOAD") ? ":" + env["LD_PRELOAD"] : "");
  if (!env.count("ASAN_OPTIONS")) env["ASAN_OPTIONS"] = "detect_leaks=0";
#endif
  if (r.provider) {
    const fs::path conf = dir / "openssl.cnf";
    std::ofstream(conf) << openssl_conf(provider);
    env["OPENSSL_CONF"] = conf.string();
  }
  env["GPO_STATS_DIR"] = stats.string();
  if (!o.socket.empty()) env["GPO_SOCKET"] = o.socket;
  if (o.min_bytes) {
    env["GPO_OFFLOAD_MIN_BYTES"] = std::to_string(o.min_bytes);
    env["GPO_SHIM_MIN_BYTES"] = std::to_string(o.min_bytes);
  }
  std::vector<std::string> env_s;
  for (const auto& [k, v] : env) env_s.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_s) envp.push_back(s.data());
  envp.push_back(nullptr);
  for (auto& s : argv) args.push_back(s.data());
  args.push_back(nullptr);

  const AgentView before = read_agent(o.status_file);
  // Like system(): the terminal's SIGINT and SIGQUIT are the program's.
  struct sigaction ign{}, old_int{}, old_quit{};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGINT, &ign, &old_int);
  sigaction(SIGQUIT, &ign, &old_quit);
  const auto t0 = Clock::now();
  const pid_t pid = fork();
  if (pid < 0) throw CLI::RuntimeError(std::string("exec: fork: ") + std::strerror(errno), 125);
  if (pid == 0) {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGQUIT, &old_quit, nullptr);
    execve(r.target.path.c_str(), args.data(), envp.data());
    std::fprintf(stderr, "gpuoffload-agent exec: %s: %s\n", r.target.path.c_str(), std::strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
  }
  struct rusage ru{};
  while (wait4(pid, &r.status, 0, &ru) < 0 && errno == EINTR) {
  }
  r.wall = std::chrono::duration<double>(Clock::now() - t0).count();
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGQUIT, &old_quit, nullptr);
  r.user = double(ru.ru_utime.tv_sec) + double(ru.ru_utime.tv_usec) / 1e6;
  r.sys = double(ru.ru_stime.tv_sec) + double(ru.ru_stime.tv_usec) / 1e6;

  // The agent rewrites its status every interval: wait (bounded) for one
  // written after the program ended, so that its last jobs are counted.
  const AgentView after = before.present ? read_agent_after(o.status_file, fs::file_time_type::clock::now(),
                                                            o.agent_wait_ms)
                                         : read_agent(o.status_file);
  const Collected c = collect(stats);
  const nlohmann::json j = summarize(r, c, before, after, o);
  if (!o.stats_json.empty()) std::ofstream(o.stats_json) << j.dump(2) << "\n";
  if (!o.quiet) {
    FILE* out = o.output.empty() ? stderr : std::fopen(o.output.c_str(), "w");
    if (out) {
      print_summary(out, j, r, c);
      if (out != stderr) std::fclose(out);
    }
  }
  return j["exit_code"].get<int>();
}

}  // namespace

void add_exec(CLI::App& app) {
  auto o = std::make_shared<ExecOptions>();
  auto* cmd = app.add_subcommand(
      "exec",
      "run an unmodified program with offload in place (the shim and the OpenSSL provider) and print what was "
      "offloaded at its exit");
  cmd->footer(
      "Runs CMD with LD_PRELOAD=libgpuoffload-shim.so (one-shot and streaming zstd, SHA256(), zlib compress2/crc32)\n"
      "and OPENSSL_CONF naming the gpuoffload provider (AES-256-GCM/CTR, SHA-256 through EVP), on top of the\n"
      "configuration CMD would read anyway. Each process of the run reports at its exit; the summary (on stderr)\n"
      "gives calls and bytes per op, how many were offloaded and why the others stayed on the CPU, what the agent\n"
      "did with the jobs, and the time offloaded calls took next to one core's time for the same bytes.\n"
      "The exit status is CMD's (128+N when a signal N killed it); 126: CMD cannot be offloaded (static or\n"
      "set-user-ID binary: the dynamic loader preloads nothing there), 127: not found, 125: exec itself failed.\n\n"
      "Examples:\n"
      "  gpuoffload-agent exec -- openssl speed -evp aes-256-gcm -bytes 16777216\n"
      "  gpuoffload-agent exec -- tar --zstd -cf /tmp/src.tar.zst /usr/src   (tar runs zstd: see docs)\n"
      "  gpuoffload-agent exec --stats-json run.json -- mksquashfs dir out.sqfs -comp zstd\n"
      "  gpuoffload-agent exec --min-bytes 16384 -- python3 encrypt.py");
  // Everything from CMD on is CMD's, options included (`--` before it is optional).
  auto argv = std::make_shared<std::vector<std::string>>();
  cmd->add_option("command", *argv, "CMD [ARGS...]")->required()->expected(1, -1);
  cmd->positionals_at_end();
  cmd->allow_extras();  // the `--` itself
  cmd->fallthrough(false);
  cmd->add_flag("--no-shim", o->no_shim, "Do not preload the shim (provider only)");
  cmd->add_flag("--no-provider", o->no_provider, "Do not configure the OpenSSL provider (shim only)");
  cmd->add_option("--shim", o->shim, "The shim library (default: ../lib next to the agent, then the install dir)");
  cmd->add_option("--provider", o->provider, "The provider module (default: ../lib/ossl-modules next to the agent, then OpenSSL's modules dir)");
  cmd->add_option("--socket", o->socket, "The agent's offload socket (GPO_SOCKET for the program)");
  cmd->add_option("--min-bytes", o->min_bytes, "Smallest call offloaded (GPO_OFFLOAD_MIN_BYTES and GPO_SHIM_MIN_BYTES)");
  cmd->add_option("--status-file", o->status_file, "The agent's status file, read before and after the run")->capture_default_str();
  cmd->add_option("--agent-wait-ms", o->agent_wait_ms, "How long to wait at the end for the agent's next status")->capture_default_str();
  cmd->add_option("--zstd-level", o->zstd_level, "Level for the CPU-time estimate of zstd calls")->capture_default_str();
  cmd->add_flag("!--no-estimate", o->estimate, "Skip measuring one core's time for the offloaded bytes");
  cmd->add_option("--stats-json", o->stats_json, "Also write the summary as JSON to this file");
  cmd->add_option("-o,--output", o->output, "Write the summary to this file instead of stderr");
  cmd->add_flag("-q,--quiet", o->quiet, "No summary (the exit status and --stats-json only)");
  cmd->callback([o, argv] {
    const int rc = run_exec(*o, *argv);
    if (rc != 0) throw CLI::RuntimeError("", rc);
  });
}

}  // namespace gpo::cli
