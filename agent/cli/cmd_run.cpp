// `gpuoffload-agent run`: the daemon. Composes the data paths on one event
// loop: the packet filter (XDP + AF_XDP, with --xdp), spotting (hook below,
// being built) and later the client path.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <csignal>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "afxdp/packet_path.h"
#include "afxdp/rule_snapshot.h"
#include "backend/backend.h"
#include "cli/commands.h"
#include "cli/rules_options.h"
#include "cli/run_offload.h"
#include "kernels/classify/classify_cpu.h"
#ifdef GPUOFFLOAD_HAVE_CUDA
#include "kernels/classify/classify_runner.h"
#endif
#include "loader/xdp_loader.h"
#include "loop/event_loop.h"
#include "rules/compiler.h"
#include "rules/default_rules.h"
#include "rules/parser.h"
#include "spot/flags.h"
#include "spot/spotter.h"
#include "util/log.h"

namespace gpo::cli {

namespace {

constexpr uint32_t kMaxBatch = 4096;         // --batch-size upper bound
constexpr uint32_t kGpuDefaultBatch = 1024;  // --batch-size when the GPU classifier runs and none is given


struct RunOptions {
  std::string xdp;  // IFACE or IFACE,PEER
  std::string rules_file;
  std::string backend = "auto";
  std::vector<int> gpus;
  std::string fail_policy = "open";
  std::string overload_policy = "auto";
  std::string workers = "auto";
  std::string unparsed_policy = "drop";
  std::string non_ip = "pass";
  std::string fragments = "reassemble";
  std::string xdp_mode = "auto";
  std::string xsk_mode = "auto";
  uint32_t batch_size = 64;
  uint32_t batch_window_us = 100;
  uint32_t gpu_min_batch = 256;
  uint64_t stream_depth = 1u << 20;
  std::string stream_depth_policy = "keep";
  uint64_t stream_memcap = 64u << 20;
  uint32_t inspect_packets = 0;
  uint32_t max_flows = 65536;
  uint64_t frag_memcap = 16u << 20;
  uint32_t frag_timeout_s = 30;
  uint32_t tcp_timeout_s = 600, udp_timeout_s = 300, other_timeout_s = 60, tcp_closed_timeout_s = 10;
  uint32_t agent_timeout_ms = 5000;
  std::string pin_dir = GPO_PIN_DIR;
  std::string pid_file = "/run/gpuoffload/agent.pid";
  std::string status_file = "/run/gpuoffload/status.json";
  uint32_t status_interval_ms = 1000;
  bool no_spot = false;
  spot::SpotFlags spot;
  OffloadRunOptions offload;  // --no-offload, --offload-*
  bool print_config = false;
  std::string config_file;
  RulesOptions rules;  // --var, --suricata-yaml, --strict (cli/rules_options.h)
};

// --config FILE: TOML or INI, keys = the long option names (optionally under
// [run]). Values on the command line win over the file. (CLI11 2.1 reads
// config files only for the top-level app, so the run subcommand does it here.)
void apply_config_file(CLI::App* cmd, const std::string& path) {
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_file(path);
  } catch (const CLI::Error& e) {
    throw CLI::RuntimeError("--config " + path + ": " + e.what(), kUsage);
  }
  for (auto& it : items) {
    if (it.name == "++" || it.name == "--") continue;  // section markers
    if (it.parents.size() == 1 && it.parents[0] == "vars") continue;  // rule variables: read_config_vars()
    if (!(it.parents.empty() || (it.parents.size() == 1 && it.parents[0] == "run")))
      throw CLI::RuntimeError("--config " + path + ": unknown section for key " + it.fullname(), kUsage);
    CLI::Option* opt = cmd->get_option_no_throw("--" + it.name);
    if (!opt || !opt->get_configurable())
      throw CLI::RuntimeError("--config " + path + ": unknown key '" + it.name +
                                  "' (keys are run's long option names; see run --print-config)",
                              kUsage);
    if (opt->count() > 0) continue;
    try {
      opt->add_result(it.inputs);
      opt->run_callback();
    } catch (const CLI::Error& e) {
      throw CLI::RuntimeError("--config " + path + ": " + it.name + ": " + e.what(), kUsage);
    }
  }
}

std::vector<std::string> split_ifaces(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// --workers: a number, or auto = one per rx queue of the interfaces (the
// fewer of the two ports'), at most the online cores less one (the main
// loop's), at least one. PacketPath lowers it to the queues it finds.
uint32_t workers_for(const std::string& opt, const std::vector<std::string>& ifaces) {
  if (opt != "auto") return uint32_t(std::stoul(opt));
  uint32_t queues = GPO_MAX_QUEUES;
  for (auto& i : ifaces) queues = std::min(queues, afxdp::rx_queue_count(i));
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  return std::max<uint32_t>(1, std::min<uint32_t>(queues, cpus > 1 ? uint32_t(cpus - 1) : 1u));
}

int exit_for(loader::XdpError::Kind k) {
  switch (k) {
    case loader::XdpError::Kind::usage: return kUsage;
    case loader::XdpError::Kind::privilege: return kNoPrivilege;
    case loader::XdpError::Kind::unsupported: return kUnsupported;
    default: return kFailure;
  }
}

// Rules from --rules, else the embedded default set. Rules the filter cannot
// enforce are skipped, each logged with its reason, then the coverage. An
// invalid rule or a file problem (a mistake to fix) refuses the file, and so
// does any problem with --strict. `status` gets the counts. Run at start and
// on every reload (the config's [vars] are read again then).
struct LoadedRules {
  std::shared_ptr<const afxdp::RuleSnapshot> snapshot;
  nlohmann::json status;
};

LoadedRules load_rules(const RunOptions& o, std::vector<std::string>* problems = nullptr) {
  const std::string& path = o.rules_file;
  const rules::ParseOptions po = make_parse_options(o.rules, read_config_vars(o.config_file));
  rules::ParseResult pr;
  std::string name = path.empty() ? rules::kDefaultRulesName : path;
  try {
    pr = path.empty() ? rules::parse_rules(rules::default_rules_text(), po) : rules::parse_rules_file(path, po);
  } catch (const std::exception& e) {
    throw CLI::RuntimeError("rules: " + std::string(e.what()), kUsage);
  }
  for (auto& n : pr.var_notes) log::info("rules: variable {}", n);
  for (auto& d : pr.problems) {
    if (d.kind == rules::Diagnostic::kUnsupported) log::warn("{} (rule skipped)", rules::format_diagnostic(name, d));
    else log::error("{}", rules::format_diagnostic(name, d));
    if (problems && (o.rules.strict || d.kind != rules::Diagnostic::kUnsupported))
      problems->push_back(rules::format_diagnostic(name, d));
  }
  const rules::Coverage cov = rules::coverage(pr);
  const size_t mistakes = cov.invalid + cov.file_problems;
  if ((o.rules.strict && !pr.ok()) || mistakes > 0)
    throw CLI::RuntimeError(
        "rules: " + std::to_string(o.rules.strict ? pr.problems.size() : mistakes) + " problem(s) in " + name +
            (o.rules.strict ? " (listed above; --strict refuses every one)" : " (listed above)") +
            "; fix them or check with `gpuoffload-agent rules check " + (path.empty() ? std::string("FILE") : path) + "`",
        kFailure);
  LoadedRules out;
  const std::string default_name = gpo_action_name(pr.set.default_action);
  out.snapshot = afxdp::make_rule_snapshot(name, std::move(pr.set));
  if (!pr.ok()) log::warn("rules: {}: {}", name, rules::coverage_line(cov));
  nlohmann::json reasons = nlohmann::json::array();
  for (size_t i = 0; i < cov.reasons.size() && i < 10; ++i)
    reasons.push_back({{"reason", cov.reasons[i].first}, {"rules", cov.reasons[i].second}});
  out.status = {{"file", name},
                {"rules", cov.rules},
                {"loaded", cov.loaded},
                {"skipped_unsupported", cov.unsupported},
                {"skipped_invalid", cov.invalid},
                {"file_problems", cov.file_problems},
                {"top_reasons", reasons},
                {"default", default_name},
                {"summary", rules::coverage_line(cov)}};
  return out;
}

// The pid file, locked while the agent runs: `stop` and `reload` find the
// agent through it, and a second agent with the same file is refused.
int lock_pid_file(const std::string& path) {
  if (path.empty()) return -1;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw CLI::RuntimeError("--pid-file " + path + ": " + std::strerror(errno), kFailure);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    throw CLI::RuntimeError("another agent (pid " + std::string(n > 0 ? buf : "?") + ") holds " + path +
                                "; stop it (`gpuoffload-agent stop`) or give this one its own --pid-file",
                            kUsage);
  }
  std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) != ssize_t(pid.size()))
    log::warn("--pid-file {}: cannot write the pid: {}", path, std::strerror(errno));
  return fd;
}

void write_status(const std::string& file, const nlohmann::json& j) {
  if (file.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(file).parent_path(), ec);
  std::string tmp = file + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return;
    out << j.dump(2) << '\n';
  }
  std::filesystem::rename(tmp, file, ec);
}

// What `run` sets up, in this order, and tears down in reverse: the rules and
// classifiers, the loop, the packet filter, spotting, the offload service.
// Each step is one method; run() below calls them in turn.
class Daemon {
 public:
  Daemon(const RunOptions& o, CLI::App* cmd) : o_(o), cmd_(cmd), backend_(o.backend), batch_size_(o.batch_size) {}

  // Options that need no privilege to check, the rules and the classifiers.
  void open();
  // --xdp: the XDP program, the pid file and the AF_XDP packet path.
  void start_packet_filter();
  // Spotting (docs/spotting.md) on the same loop, unless --no-spot.
  void start_spotting();
  // Offload service (libgpuoffload clients, the shim): on unless --no-offload.
  void start_offload() { offload_.start(o_.offload, backend_, o_.gpus, loop_); }
  // Reloads on SIGHUP, writes the status file, runs the loop until a stop;
  // returns the signal that stopped it (0: stop()).
  int serve();
  // Stops the services, logs what the packet path did, detaches the filter.
  void shutdown(int sig);

 private:
  std::unique_ptr<classify::AsyncClassifier> make_gpu_classifier(
      const std::shared_ptr<const classify::RuleTables>& tables);
  void reload();
  nlohmann::json status() const;

  const RunOptions& o_;
  CLI::App* cmd_;
  std::string backend_;
  std::vector<std::string> ifaces_;
  std::shared_ptr<const afxdp::RuleSnapshot> rules_;
  nlohmann::json rules_status_;
  std::unique_ptr<classify::CpuClassifier> classifier_;
  std::unique_ptr<classify::AsyncClassifier> gpu_classifier_;
  uint32_t batch_size_;  // raised when the GPU classifier runs (open())
  std::string classifier_what_ = "cpu";
  loop::EventLoop loop_;
  std::unique_ptr<loader::XdpFilter> xdp_;
  std::unique_ptr<afxdp::PacketPath> path_;
  std::string pin_dir_;
  int pid_fd_ = -1;
  std::unique_ptr<spot::Spotter> spotter_;
  OffloadService offload_;
  nlohmann::json reload_json_ = {{"count", 0}};
  uint64_t reloads_ = 0;
};

void Daemon::open() {
  // --backend picks the offload path's backend (backend::make_backend: CUDA
  // when usable under auto) and whether the packet path may classify batches
  // on the GPU (GpuClassifier, batches of >= --gpu-min-batch frames).
  for (int g : o_.gpus)
    if (g < 0) throw CLI::RuntimeError("--gpu " + std::to_string(g) + ": GPU ordinals start at 0", kUsage);
  if (backend_ == "cuda") {
    std::string why;
    if (backend::cuda_device_count(&why) <= 0)
      throw CLI::RuntimeError("backend cuda: no usable GPU: " + why + "; use --backend cpu or auto", kUnsupported);
  }

  if (!o_.xdp.empty()) {
    ifaces_ = split_ifaces(o_.xdp);
    if (ifaces_.size() > 2)
      throw CLI::RuntimeError("--xdp takes IFACE or IFACE,PEER, got " + o_.xdp, kUsage);
    for (auto& i : ifaces_)
      if (i.empty()) throw CLI::RuntimeError("--xdp: empty interface name in '" + o_.xdp + "'", kUsage);
    if (ifaces_.size() == 2 && ifaces_[0] == ifaces_[1])
      throw CLI::RuntimeError("--xdp IFACE,PEER: the two ports must differ", kUsage);
  }

  // Rules before privileges: a typo in the rules file should not need root to find.
  LoadedRules loaded = load_rules(o_);
  rules_ = loaded.snapshot;
  rules_status_ = loaded.status;
  classifier_ = std::make_unique<classify::CpuClassifier>(rules_->tables);
  if (ifaces_.empty()) {
    classifier_what_ = "cpu (no packet filter)";
  } else if (backend_ == "cpu") {
    classifier_what_ = "cpu (--backend cpu)";
  } else {
#ifdef GPUOFFLOAD_HAVE_CUDA
    // Under load batches grow to --batch-size; only those reach the GPU. A
    // default of 64 would keep every batch below --gpu-min-batch, so with a
    // GPU and no explicit --batch-size batches may grow to 1024: light
    // traffic still runs in small CPU batches, heavy traffic goes to the GPU.
    // (Not 4096: the UMEM holds batch x 6 frames per socket, 24 MiB at 1024.)
    std::string why;
    if (cmd_->count("--batch-size") == 0 &&
        classify::GpuClassifier::device_count(&why) > (o_.gpus.empty() ? 0 : o_.gpus.front()))
      batch_size_ = kGpuDefaultBatch;
#endif
    gpu_classifier_ = make_gpu_classifier(rules_->tables);
  }
  log::info("packet classifier: {}", classifier_what_);
}

// The GPU classifier for a rule set (again on every reload); null when there
// is none to use, with the reason in classifier_what_.
std::unique_ptr<classify::AsyncClassifier> Daemon::make_gpu_classifier(
    const std::shared_ptr<const classify::RuleTables>& tables) {
#ifdef GPUOFFLOAD_HAVE_CUDA
  std::string why;
  const int dev = o_.gpus.empty() ? 0 : o_.gpus.front();
  if (classify::GpuClassifier::device_count(&why) > dev) {
    try {
      auto g = std::make_unique<classify::GpuClassifier>(
          tables, classify::GpuClassifierOptions{dev, std::max<uint32_t>(batch_size_, 1)});
      classifier_what_ = fmt::format("gpu {} for batches of >= {} frames, cpu below", dev, o_.gpu_min_batch);
      if (batch_size_ < o_.gpu_min_batch)
        classifier_what_ += fmt::format(" (--batch-size {} < --gpu-min-batch {}: every batch stays on the cpu)",
                                        batch_size_, o_.gpu_min_batch);
      return g;
    } catch (const std::exception& e) {
      if (backend_ == "cuda") throw CLI::RuntimeError(std::string("packet classifier: ") + e.what(), kFailure);
      classifier_what_ = std::string("cpu (GPU classifier failed: ") + e.what() + ")";
    }
  } else {
    classifier_what_ = "cpu (no usable GPU " + std::to_string(dev) + ": " + why + ")";
  }
#else
  (void)tables;
  classifier_what_ = "cpu (built without CUDA)";
#endif
  return nullptr;
}

void Daemon::start_packet_filter() {
  pin_dir_ = o_.pin_dir;
  if (ifaces_.empty()) {
    log::info("packet filter: off (no --xdp IFACE[,PEER])");
    return;
  }
  if (!loader::have_bpf_privileges())
    throw CLI::RuntimeError("run --xdp needs root (or CAP_BPF and CAP_NET_ADMIN): try sudo gpuoffload-agent run",
                            kNoPrivilege);
  pid_fd_ = lock_pid_file(o_.pid_file);
  loader::XdpOptions xo;
  xo.ifaces = ifaces_;
  xo.fail_policy = o_.fail_policy == "closed" ? GPO_ACT_DROP : GPO_ACT_PASS;
  // Misses beyond what the agent takes: the fail policy's answer unless told otherwise.
  const std::string overload = o_.overload_policy == "auto" ? (o_.fail_policy == "closed" ? "drop" : "pass")
                                                             : o_.overload_policy;
  xo.overload_policy = overload == "drop" ? GPO_OVERLOAD_DROP : GPO_OVERLOAD_PASS;
  xo.unparsed_policy = o_.unparsed_policy == "drop" ? GPO_ACT_DROP : GPO_ACT_PASS;
  xo.non_ip_policy = o_.non_ip == "drop" ? GPO_ACT_DROP : GPO_ACT_PASS;
  xo.frag_policy = o_.fragments == "drop" ? GPO_FRAG_DROP : GPO_FRAG_REASSEMBLE;
  xo.agent_timeout_ms = o_.agent_timeout_ms;
  xo.tcp_timeout_s = o_.tcp_timeout_s;
  xo.udp_timeout_s = o_.udp_timeout_s;
  xo.other_timeout_s = o_.other_timeout_s;
  xo.tcp_closed_timeout_s = o_.tcp_closed_timeout_s;
  xo.mode = o_.xdp_mode == "native"    ? loader::XdpOptions::Mode::native
            : o_.xdp_mode == "generic" ? loader::XdpOptions::Mode::generic
                                       : loader::XdpOptions::Mode::auto_;
  try {
    if (!pin_dir_.empty()) pin_dir_ = loader::resolve_pin_dir(pin_dir_);
    xo.pin_dir = pin_dir_;
    xdp_ = loader::XdpFilter::attach(xo);
  } catch (const loader::XdpError& e) {
    throw CLI::RuntimeError(e.what(), exit_for(e.kind));
  }
  log::info("attached: {}", xdp_->describe());
  log::info("rules: {}", rules_->what);

  afxdp::PacketPathConfig pc;
  pc.batch_size = batch_size_;
  pc.batch_window_us = o_.batch_window_us;
  pc.gpu_min_batch = o_.gpu_min_batch;
  pc.inspect.depth = o_.stream_depth;
  pc.inspect.depth_policy = o_.stream_depth_policy == "drop" ? afxdp::DepthPolicy::drop : afxdp::DepthPolicy::keep;
  pc.inspect.memcap = o_.stream_memcap;
  pc.inspect.inspect_packets = o_.inspect_packets;
  auto idle = [](uint32_t s, uint64_t fallback) { return s ? uint64_t(s) * 1000000000ull : fallback; };
  // The agent's flow table forgets a flow when the flow cache would (the same timeouts).
  pc.flows.max_flows = o_.max_flows;
  pc.flows.tcp_idle_ns = idle(o_.tcp_timeout_s, pc.flows.tcp_idle_ns);
  pc.flows.udp_idle_ns = idle(o_.udp_timeout_s, pc.flows.udp_idle_ns);
  pc.flows.other_idle_ns = idle(o_.other_timeout_s, pc.flows.other_idle_ns);
  pc.reassembly.memcap = o_.frag_memcap;
  pc.reassembly.timeout_ns = uint64_t(o_.frag_timeout_s) * 1000000000ull;
  // Beat several times per timeout, so one late tick does not look like death.
  if (o_.agent_timeout_ms) pc.housekeeping_ms = std::clamp<uint32_t>(o_.agent_timeout_ms / 5, 10, 250);
  pc.bind_mode = o_.xsk_mode == "zero-copy" ? afxdp::BindMode::zero_copy
                 : o_.xsk_mode == "copy"    ? afxdp::BindMode::copy
                                            : afxdp::BindMode::auto_;
  pc.workers = workers_for(o_.workers, ifaces_);
  path_ = std::make_unique<afxdp::PacketPath>(*xdp_, rules_, *classifier_, pc);
  if (gpu_classifier_) path_->set_gpu_classifier(gpu_classifier_.get());
  // Workers past the first get classifiers of their own, all on the same GPU.
  path_->set_classifier_makers(
      [](const afxdp::RuleSnapshot& r) { return std::make_unique<classify::CpuClassifier>(r.tables); },
      [this](const afxdp::RuleSnapshot& r) { return make_gpu_classifier(r.tables); });
  try {
    path_->start(loop_);
  } catch (const std::exception& e) {
    // Nothing was served: a filter this run attached goes again; one adopted
    // from an agent that died stays (its fail policy still protects).
    bool adopted = false;
    for (const auto& a : xdp_->attached()) adopted |= a.adopted;
    if (!adopted) xdp_->detach();
    throw CLI::RuntimeError(std::string("packet path: ") + e.what(), kFailure);
  }
  log::info("packet filter ready: {} AF_XDP socket(s), {} worker(s), batch {} frames / {} us, {} mode, fail-{}, "
            "overload: {}",
            path_->socket_count(), path_->worker_count(), pc.batch_size, pc.batch_window_us,
            xdp_->inline_mode() ? "inline" : "host", o_.fail_policy, overload);
}

void Daemon::start_spotting() {
  if (o_.no_spot || o_.spot.mode == "off") {
    log::info("spotting: off ({})", o_.no_spot ? "--no-spot" : "--spot-mode off");
    return;
  }
  auto so = spot::make_spot_options(o_.spot);
  so.ignore_tgid = uint32_t(getpid());       // the CPU backend's own libcrypto calls
  so.pin_dir = pin_dir_;
  so.snapshot_path = spot::kDefaultSnapshot;  // what `top` reads (docs/spotting.md)
  try {
    spotter_ = spot::Spotter::attach(so);
    spotter_->register_with(loop_);
  } catch (const spot::SpotError& e) {
    log::warn("spotting: off: {}", e.what());  // it only observes: the rest runs without it
  }
}

nlohmann::json Daemon::status() const {
  nlohmann::json j;
  j["pid"] = getpid();
  j["classifier"] = classifier_what_;
  j["rules"] = {{"what", rules_->what}, {"reloads", reloads_}, {"last_reload", reload_json_}};
  j["rule_set"] = rules_status_;
  j["spotting"] = spotter_ ? std::string(spot::mode_name(spotter_->mode())) : std::string("off");
  j["offload"] = offload_.to_json();
  j["event_loop_errors"] = loop_.callback_errors();
  if (path_) j["packet_filter"] = path_->to_json();
  return j;
}

// SIGHUP (`gpuoffload-agent reload`): the rule file again, swapped in
// atomically; a file with problems leaves the running rules in place.
void Daemon::reload() {
  reloads_++;
  LoadedRules next_rules;
  std::vector<std::string> problems;  // what refused the file, for `reload` to print
  log::info("SIGHUP: reloading the rules from {}", rules_->name);
  try {
    next_rules = load_rules(o_, &problems);  // logs each problem
  } catch (const std::exception& e) {
    std::string msg = fmt::format("reload failed: {}; the previous rules stay in force", e.what());
    log::error("{}", msg);
    reload_json_ = {{"ok", false}, {"message", msg}, {"problems", problems}};
  }
  auto next = next_rules.snapshot;
  if (!next) {
    // reload_json_ says why; nothing changes
  } else if (!path_) {
    rules_ = next;
    rules_status_ = next_rules.status;
    reload_json_ = {{"ok", true}, {"message", "rules reloaded: " + next->what + " (no packet filter)"}};
  } else {
    auto next_cpu = std::make_unique<classify::CpuClassifier>(next->tables);
    std::unique_ptr<classify::AsyncClassifier> next_gpu;
    if (gpu_classifier_) next_gpu = make_gpu_classifier(next->tables);
    auto r = path_->reload(next, *next_cpu, next_gpu.get());
    // The path uses the new classifiers now; the old ones can go.
    classifier_ = std::move(next_cpu);
    gpu_classifier_ = std::move(next_gpu);
    rules_ = next;
    rules_status_ = next_rules.status;
    std::string msg = fmt::format("rules reloaded: {}; {} cached flow verdicts invalidated, {} kept", next->what,
                                  r.invalidated, r.kept);
    log::info("{}", msg);
    reload_json_ = {{"ok", true}, {"message", msg}, {"invalidated", r.invalidated}, {"kept", r.kept}};
  }
  write_status(o_.status_file, status());
}

int Daemon::serve() {
  loop_.on_hangup([this] { reload(); });
  loop_.add_timer(std::chrono::milliseconds(o_.status_interval_ms), [this] { write_status(o_.status_file, status()); });
  write_status(o_.status_file, status());
  log::info("running (pid {}); status in {}; SIGINT/SIGTERM stops, SIGHUP reloads the rules", getpid(),
            o_.status_file);
  return loop_.run();
}

void Daemon::shutdown(int sig) {
  offload_.stop(loop_);
  if (path_) path_->stop(loop_);
  write_status(o_.status_file, status());
  const char* by = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "stop()";
  if (path_) {
    const auto c = path_->counters();
    log::info("stopped by {}: {} packets to the agent, {} passed, {} dropped, {} flow verdicts cached, {} batches",
              by, c.rx, c.passed, c.dropped, c.cache_installs, c.batches);
  } else {
    log::info("stopped by {}", by);
  }
  path_.reset();
  // A clean stop is the one way the filter leaves the interfaces (a crash
  // leaves it attached, with its fail policy). The pinned maps, and with them
  // the flow cache, stay.
  if (xdp_) xdp_->detach();
  xdp_.reset();
  if (pid_fd_ >= 0) {
    unlink(o_.pid_file.c_str());
    close(pid_fd_);
  }
}

void run(const RunOptions& o, CLI::App* cmd) {
  if (o.print_config) {
    std::fputs(cmd->config_to_str(true, true).c_str(), stdout);
    return;
  }
  // Before the first thread (CUDA runtime, backends, GPU classifier): SIGTERM
  // and SIGINT must reach the loop's signalfd, not a worker thread.
  loop::EventLoop::block_stop_signals();
  Daemon daemon(o, cmd);
  daemon.open();
  daemon.start_packet_filter();
  daemon.start_spotting();
  daemon.start_offload();
  daemon.shutdown(daemon.serve());
}

}  // namespace

void add_run(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "run",
      "Run the agent: the packet filter on --xdp interfaces (XDP + AF_XDP), spotting, and the offload service.");
  cmd->footer(
      "Examples:\n"
      "  sudo gpuoffload-agent run --xdp eth1 --rules /etc/gpuoffload/rules.rules\n"
      "  sudo gpuoffload-agent run --xdp eth1,eth2 --fail-policy closed   # inline: bridge eth1 <-> eth2\n"
      "  sudo gpuoffload-agent run --xdp eth1 --rules emerging.rules --var HOME_NET=[10.0.0.0/8]\n"
      "  sudo gpuoffload-agent reload   # re-read the rules (SIGHUP); `stop` stops and detaches\n"
      "  gpuoffload-agent run --print-config > agent.toml   # then: run --config agent.toml\n"
      "Every option can also be set in the --config file (TOML or INI, same names without --); rule\n"
      "variables go in its [vars] table: HOME_NET = \"[10.0.0.0/8]\".");
  auto o = std::make_shared<RunOptions>();
  cmd->add_option("--config", o->config_file, "Read options from this TOML/INI file (keys = long option names)")
      ->check(CLI::ExistingFile)
      ->configurable(false);
  cmd->add_option("--xdp", o->xdp, "Filter on IFACE (host mode) or bridge IFACE,PEER (inline mode)");
  // "" (as --print-config writes it) means the embedded default rules.
  cmd->add_option("--rules", o->rules_file, "Rules file (default: the embedded default rules)")
      ->check(CLI::Validator(
          [](std::string& s) { return s.empty() ? std::string() : CLI::ExistingFile(s); }, "FILE"));
  // No range check: --print-config writes an empty `gpu=` that must read back.
  cmd->add_option("--gpu", o->gpus, "GPU ordinal for the offload backend; repeat for several (default: all)");
  cmd->add_option("--backend", o->backend, "Offload backend: auto (CUDA when a GPU is usable), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--fail-policy", o->fail_policy,
                  "New flows while the agent is gone (no socket, or no heartbeat for --agent-timeout-ms): "
                  "open = pass, closed = drop")
      ->check(CLI::IsMember({"open", "closed"}))
      ->capture_default_str();
  cmd->add_option("--overload-policy", o->overload_policy,
                  "Misses that arrive while the agent's socket for their queue is full (more new flows than the "
                  "agent decides): pass = uninspected (inline: to the peer port), drop; counted as overload_pass / "
                  "overload_drop, with a warning in the log. auto = the fail policy's answer (open: pass)")
      ->check(CLI::IsMember({"auto", "pass", "drop"}))
      ->capture_default_str();
  cmd->add_option("--workers", o->workers,
                  "Threads on the miss path, each serving its share of the rx queues with its own AF_XDP sockets "
                  "and classifiers (auto: one per rx queue, at most one per core beyond the first)")
      ->check(CLI::IsMember({"auto"}) | CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--unparsed-policy", o->unparsed_policy,
                  "Malformed IP packets, first fragments too short for their L4 header, IPv6 header chains "
                  "longer than 6, three VLAN tags")
      ->check(CLI::IsMember({"pass", "drop"}))
      ->capture_default_str();
  cmd->add_option("--non-ip", o->non_ip,
                  "Frames that are not IPv4/IPv6 (ARP, LLDP, ...): pass (inline: forwarded to the peer port) or drop")
      ->check(CLI::IsMember({"pass", "drop"}))
      ->capture_default_str();
  cmd->add_option("--fragments", o->fragments,
                  "IP fragments: reassemble (the agent reassembles, the rules decide the datagram) or drop")
      ->check(CLI::IsMember({"reassemble", "drop"}))
      ->capture_default_str();
  cmd->add_option("--frag-memcap", o->frag_memcap, "Bytes of fragments held for reassembly (e.g. 16MiB)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  cmd->add_option("--frag-timeout-s", o->frag_timeout_s, "An incomplete datagram is dropped after this long")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd->add_option("--stream-depth", o->stream_depth,
                  "Bytes of each TCP direction (of each flow, other protocols) the content rules inspect "
                  "(e.g. 1MiB); then --stream-depth-policy")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  cmd->add_option("--stream-depth-policy", o->stream_depth_policy,
                  "Past the depth: keep = cache the verdict the flow has then, drop = cache drop")
      ->check(CLI::IsMember({"keep", "drop"}))
      ->capture_default_str();
  cmd->add_option("--stream-memcap", o->stream_memcap,
                  "Stream bytes held over all flows under inspection (a flow that gets none reaches its depth)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  cmd->add_option("--max-flows", o->max_flows,
                  "Flows the agent follows at once (direction, handshake, streams under inspection); when full, "
                  "the least recently seen flow not under inspection is forgotten first")
      ->check(CLI::Range(1u, 1u << 24))
      ->capture_default_str();
  cmd->add_option("--tcp-timeout-s", o->tcp_timeout_s, "Idle timeout of a TCP flow's cached verdict (0: never)")
      ->capture_default_str();
  cmd->add_option("--tcp-closed-timeout-s", o->tcp_closed_timeout_s,
                  "Same, once the flow saw RST or FIN both ways (a new SYN always starts a new flow)")
      ->capture_default_str();
  cmd->add_option("--udp-timeout-s", o->udp_timeout_s, "Idle timeout of a UDP flow's cached verdict (0: never)")
      ->capture_default_str();
  cmd->add_option("--other-timeout-s", o->other_timeout_s,
                  "Idle timeout of other protocols' (ICMP, ...) cached verdicts (0: never)")
      ->capture_default_str();
  cmd->add_option("--agent-timeout-ms", o->agent_timeout_ms,
                  "XDP counts the agent as gone (fail policy) when its heartbeat is older (0: only when its "
                  "sockets are gone)")
      ->capture_default_str();
  cmd->add_option("--xdp-mode", o->xdp_mode, "XDP attach mode: native (driver), generic (skb), auto")
      ->check(CLI::IsMember({"auto", "native", "generic"}))
      ->capture_default_str();
  cmd->add_option("--xsk-mode", o->xsk_mode, "AF_XDP bind mode: zero-copy, copy, auto (zero-copy then copy)")
      ->check(CLI::IsMember({"auto", "zero-copy", "copy"}))
      ->capture_default_str();
  cmd->add_option("--batch-size", o->batch_size,
                  "Classify at most this many packets at once (with the GPU classifier and no --batch-size: 1024)")
      ->check(CLI::Range(uint32_t{1}, kMaxBatch))
      ->capture_default_str();
  cmd->add_option("--batch-window-us", o->batch_window_us,
                  "Wait at most this long for a batch to fill (0 = classify what is there)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd->add_option("--gpu-min-batch", o->gpu_min_batch,
                  "With a GPU (--backend auto|cuda): batches of at least this many packets are classified on it")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--inspect-packets", o->inspect_packets,
                  "Also end a flow's inspection after this many packets (0: only --stream-depth bounds it)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd->add_option("--pin-dir", o->pin_dir, "bpffs directory for the pinned maps and XDP links")->capture_default_str();
  cmd->add_option("--pid-file", o->pid_file, "Locked while the agent runs; `stop` and `reload` use it ('' = none)")
      ->capture_default_str();
  cmd->add_option("--status-file", o->status_file, "JSON status written every --status-interval-ms ('' = none)")
      ->capture_default_str();
  cmd->add_option("--status-interval-ms", o->status_interval_ms, "How often the status file is rewritten")
      ->check(CLI::Range(10, 3600000))
      ->capture_default_str();
  add_rules_options(cmd, o->rules);
  add_run_options(*cmd, o->offload);
  cmd->add_flag("--no-spot", o->no_spot, "Do not start spotting (same as --spot-mode off)");
  spot::add_spot_flags(cmd, o->spot);
  cmd->add_flag("--print-config", o->print_config, "Print the effective configuration (TOML) and exit")
      ->configurable(false);
  cmd->callback([o, cmd] {
    if (!o->config_file.empty()) apply_config_file(cmd, o->config_file);
    run(*o, cmd);
  });
}

}  // namespace gpo::cli
