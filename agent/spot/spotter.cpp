#include "spot/spotter.h"

#include <bpf/libbpf.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "loop/event_loop.h"
#include "util/log.h"

namespace gpo::spot {
namespace {

uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

// libbpf's own messages (e.g. "failed to find symbol") are debug detail: the
// spotter reports each failure in one line of its own.
int libbpf_to_debug(enum libbpf_print_level lvl, const char* fmt, va_list ap) {
  if (gpo::log::level() < gpo::log::Level::debug || lvl == LIBBPF_DEBUG) return 0;
  char buf[512];
  vsnprintf(buf, sizeof buf, fmt, ap);
  std::string s(buf);
  while (!s.empty() && s.back() == '\n') s.pop_back();
  gpo::log::debug("libbpf: {}", s);
  return 0;
}

bool process_gone(uint32_t tgid) { return kill(pid_t(tgid), 0) != 0 && errno == ESRCH; }

// The library files of one family that a process maps, reached through its root.
std::vector<Library> libraries_of(uint32_t tgid, LibKind kind) {
  std::vector<Library> out;
  std::string base = "/proc/" + std::to_string(tgid);
  std::ifstream maps(base + "/maps");
  std::set<std::string> paths;
  for (std::string line; std::getline(maps, line);)
    if (auto p = maps_line_path(line))
      if (classify_library(*p) == kind) paths.insert(*p);
  std::set<std::pair<dev_t, ino_t>> seen;
  for (const auto& p : paths) {
    std::string path = base + "/root" + p;
    struct stat st {};
    if (stat(path.c_str(), &st) != 0 || !seen.insert({st.st_dev, st.st_ino}).second) continue;
    out.push_back({kind, path, "pid " + std::to_string(tgid), st.st_dev, st.st_ino});
  }
  return out;
}

}  // namespace

std::string_view mode_name(Mode m) {
  switch (m) {
    case Mode::off: return "off";
    case Mode::sample: return "sample";
    case Mode::probe: return "probe";
  }
  return "?";
}

std::optional<Mode> mode_from_name(std::string_view s) {
  for (Mode m : {Mode::off, Mode::sample, Mode::probe})
    if (mode_name(m) == s) return m;
  return std::nullopt;
}

nlohmann::json AttachReport::to_json() const {
  return {{"mode", mode},
          {"uprobes", uprobes},
          {"kprobes", kprobes},
          {"kprobes_available", kprobes_available},
          {"uprobe_multi", uprobe_multi},
          {"kernel", kernel_note},
          {"sampler", sampler},
          {"attached", attached},
          {"skipped", skipped}};
}

std::unique_ptr<Spotter> Spotter::attach(const SpotOptions& opts) {
  libbpf_set_print(libbpf_to_debug);
  std::unique_ptr<Spotter> s(new Spotter());
  s->opts_ = opts;
  s->report_.mode = std::string(mode_name(opts.mode));
  s->report_.kprobes_available = kprobes_available();
  if (opts.mode == Mode::off) {
    s->report_.kernel_note = "spotting off";
    return s;
  }
  bool sample = opts.mode == Mode::sample;

  ProbeSetOptions po;
  po.thresholds = opts.thresholds;
  po.ignore_tgid = opts.ignore_tgid;
  po.watch_only = sample;
  po.kernel = opts.kernel;
  po.pin_dir = opts.pin_dir;
  s->probes_ = ProbeSet::load(po);
  s->report_.uprobe_multi = s->probes_->multi();
  s->probes_->on_event([raw = s.get()](const gpo_spot_event& e) { raw->on_ring_event(e); });

  if (sample) {
    SamplerOptions so;
    so.ignore_tgid = opts.ignore_tgid;
    so.freq_hz = opts.sample_hz;
    so.kernel = opts.kernel;
    s->sampler_ = Sampler::start(so);
    s->policy_ = std::make_unique<WindowPolicy>(opts.windows, opts.sample_hz);
  }

  for (const auto& lib : discover_libraries(opts.libraries)) s->add_library(lib);

  auto& r = s->report_;
  if (!opts.kernel) {
    r.kernel_note = "kernel: crypto/zstd spotting off (not requested)";
  } else if (!r.kprobes_available) {
    // No crypto or zstd tracepoint exists in mainline kernels, so there is no
    // tracepoint or raw tracepoint to fall back to for these entry points.
    r.kernel_note =
        "kprobes: unavailable on this kernel (CONFIG_KPROBES off?); kernel crypto/zstd spotting disabled "
        "(no crypto or zstd tracepoint exists to fall back to); user-space uprobes unaffected";
  } else if (!sample) {
    auto a = s->probes_->attach_kprobes({}, r.attached, r.skipped);
    r.kprobes = a->probes();
    s->always_.push_back(std::move(a));
    r.kernel_note = fmt::format("kprobes: available; {} of {} kernel crypto/zstd entry points attached", r.kprobes,
                                kprobe_specs().size());
  } else {
    r.kernel_note = "kprobes: available; attached only while a process hot in kernel crypto/zstd is measured";
  }
  if (sample) {
    r.kernel_note += "; " + s->sampler_->kernel_note();
    r.sampler = fmt::format("{} at {} Hz on {} CPUs, {} library files", s->sampler_->event(), s->sampler_->freq_hz(),
                            s->sampler_->cpus(), s->sampler_->libraries());
    gpo::log::info("spot: sample mode: {}; probes only while a hot process is measured", r.sampler);
  } else {
    if (r.uprobes == 0)
      gpo::log::warn("spot: no libcrypto, libzstd or zlib entry point could be attached; user-space spotting is idle");
    gpo::log::info("spot: probe mode: {} uprobes ({}) and {} kprobes; {} skipped", r.uprobes,
                   r.uprobe_multi ? "uprobe_multi links" : "one link each", r.kprobes, r.skipped.size());
  }
  for (const auto& a : r.attached) gpo::log::debug("spot: attached {}", a);
  for (const auto& a : r.skipped) gpo::log::info("spot: skipped {}", a);
  gpo::log::info("{}", r.kernel_note);
  return s;
}

void Spotter::add_library(const Library& lib) {
  files_.push_back({lib.dev, lib.ino});
  if (opts_.mode == Mode::probe) {
    auto a = probes_->attach_library(lib, {}, 0, report_.attached, report_.skipped);
    gpo::log::info("spot: {} {} ({}): {} uprobes", lib_kind_name(lib.kind), lib.path, lib.source, a->probes());
    report_.uprobes += a->probes();
    always_.push_back(std::move(a));
  } else if (sampler_) {
    std::string err;
    if (!sampler_->add_library(lib, err)) report_.skipped.push_back("sample " + err);
  }
}

int Spotter::rescan() {
  if (opts_.mode == Mode::off) return 0;
  int added = 0;
  for (const auto& lib : discover_libraries(opts_.libraries)) {
    if (std::find(files_.begin(), files_.end(), std::make_pair(lib.dev, lib.ino)) != files_.end()) continue;
    add_library(lib);
    added++;
  }
  if (sampler_) report_.sampler = fmt::format("{} at {} Hz on {} CPUs, {} library files", sampler_->event(),
                                              sampler_->freq_hz(), sampler_->cpus(), sampler_->libraries());
  return added;
}

Spotter::~Spotter() {
  std::vector<uint32_t> open;
  for (const auto& [tgid, w] : windows_) open.push_back(tgid);
  for (uint32_t t : open) close_window(t, "stop");
  always_.clear();
  sampler_.reset();
  probes_.reset();
}

void Spotter::on_ring_event(const gpo_spot_event& e) {
  if (e.flags & GPO_SPOT_F_WINDOW_FULL) {
    to_close_.push_back({e.tgid, "calls"});
    return;
  }
  agg_.add(e);
  if (on_event_) on_event_(e);
}

void Spotter::after_consume() {
  auto pending = std::move(to_close_);
  to_close_.clear();
  for (const auto& [tgid, why] : pending)
    if (windows_.count(tgid)) close_window(tgid, why);
}

bool Spotter::open_window(uint32_t tgid, uint32_t sample_op, std::string& err) {
  if (!probes_ || opts_.mode != Mode::sample) {
    err = "windows exist in sample mode only";
    return false;
  }
  if (windows_.count(tgid)) {
    err = "already measured";
    return false;
  }
  auto ops = probe_ops_of(sample_op);
  if (ops.empty()) {
    err = fmt::format("nothing probes {}", sample_op_name(sample_op));
    return false;
  }
  Window w{sample_op, mono_ns(), {}, 0};
  // Watched before attached: the first calls count.
  probes_->watch(tgid, opts_.windows.max_calls);
  std::vector<std::string> attached, skipped;
  if (sample_op_is_kernel(sample_op)) {
    auto a = probes_->attach_kprobes(ops, attached, skipped);
    w.probes += a->probes();
    w.attachments.push_back(std::move(a));
  } else {
    for (const auto& lib : libraries_of(tgid, *sample_op_lib(sample_op))) {
      auto a = probes_->attach_library(lib, ops, pid_t(tgid), attached, skipped);
      w.probes += a->probes();
      w.attachments.push_back(std::move(a));
    }
  }
  for (const auto& s : skipped) gpo::log::debug("spot: window pid {}: skipped {}", tgid, s);
  if (w.probes == 0) {
    probes_->unwatch(tgid);
    err = skipped.empty() ? (process_gone(tgid) ? "process gone" : "maps no library of the op")
                          : skipped.front();
    return false;
  }
  for (const auto& a : attached) gpo::log::debug("spot: window pid {}: attached {}", tgid, a);
  const auto* p = agg_.process(tgid);
  gpo::log::info("spot: measuring pid {} ({}) in {}: {} probes, up to {} calls or {} ms", tgid,
                 p ? p->comm : std::string("?"), sample_op_name(sample_op), w.probes, opts_.windows.max_calls,
                 opts_.windows.max_duration.count());
  WindowInfo info;
  info.open = true;
  info.sample_op = sample_op;
  info.started_ns = w.started_ns;
  info.probes = w.probes;
  agg_.set_window(tgid, info, w.started_ns);
  if (sample_op_is_kernel(sample_op)) report_.kprobes += w.probes;
  else report_.uprobes += w.probes;
  windows_.emplace(tgid, std::move(w));
  windows_opened_++;
  return true;
}

void Spotter::close_window(uint32_t tgid, const std::string& why) {
  auto it = windows_.find(tgid);
  if (it == windows_.end()) return;
  Window w = std::move(it->second);
  windows_.erase(it);
  auto t0 = std::chrono::steady_clock::now();
  w.attachments.clear();  // detach first: the process stops trapping
  auto detach = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  uint64_t calls = probes_->unwatch(tgid);
  uint64_t now = mono_ns();
  if (policy_) policy_->measured({tgid, w.sample_op}, now);
  if (sample_op_is_kernel(w.sample_op)) report_.kprobes -= w.probes;
  else report_.uprobes -= w.probes;
  WindowInfo info;
  info.sample_op = w.sample_op;
  info.started_ns = w.started_ns;
  info.ended_ns = now;
  info.calls = calls;
  info.probes = w.probes;
  info.ended_by = why;
  agg_.set_window(tgid, info, now);
  // The sizes it learned stay in the aggregate (the kernel histogram is read below).
  for (const auto& [key, h] : probes_->read_process_hist())
    if (key.first == tgid) agg_.set_sizes(tgid, key.second, h, "window", now);
  gpo::log::info("spot: measured pid {} in {}: {} calls in {} ms (ended by {}), detached in {} ms", tgid,
                 sample_op_name(w.sample_op), calls, (now - w.started_ns) / 1000000, why, detach.count());
}

int Spotter::probes_attached() const { return report_.uprobes + report_.kprobes; }

void Spotter::update_windows(uint64_t now) {
  auto max_ns = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(opts_.windows.max_duration).count());
  std::vector<std::pair<uint32_t, std::string>> ending;
  for (const auto& [tgid, w] : windows_) {
    if (process_gone(tgid)) ending.push_back({tgid, "exit"});
    else if (now - w.started_ns >= max_ns) ending.push_back({tgid, "time"});
  }
  for (const auto& [tgid, why] : ending) close_window(tgid, why);
  if (!opts_.auto_windows) return;
  std::vector<uint32_t> busy;
  for (const auto& [tgid, w] : windows_) busy.push_back(tgid);
  for (const auto& k : policy_->to_open(now, int(windows_.size()), busy)) {
    std::string err;
    if (!open_window(k.first, k.second, err)) {
      policy_->measured(k, now);  // do not retry every tick
      WindowInfo info;
      info.sample_op = k.second;
      info.started_ns = info.ended_ns = now;
      info.ended_by = "not measured: " + err;
      agg_.set_window(k.first, info, now);
      gpo::log::info("spot: cannot measure pid {} in {}: {}", k.first, sample_op_name(k.second), err);
    }
  }
}

void Spotter::tick() {
  if (!probes_) return;
  probes_->consume();
  after_consume();
  uint64_t now = mono_ns();
  if (sampler_) {
    sampler_->learn_aliases();
    auto counts = sampler_->read();
    std::vector<uint32_t> gone;
    std::map<SampleKey, uint64_t> live;
    for (const auto& [k, n] : counts.ops) {
      if (process_gone(k.first)) {
        if (gone.empty() || gone.back() != k.first) gone.push_back(k.first);
        continue;
      }
      live[k] = n;
    }
    policy_->observe(live, now);
    for (const auto& [k, n] : live) {
      auto pit = counts.procs.find(k.first);
      agg_.set_sampled(k.first, pit != counts.procs.end() ? pit->second.second : std::string(), k.second,
                       {n, policy_->cpu_last(k), policy_->cpu_period(k)}, now);
    }
    for (uint32_t t : gone) {
      // Its last figures stay in the aggregate until it ages out.
      sampler_->forget_process(t);
      if (const auto* p = agg_.process(t)) {
        auto sampled = p->sampled;
        for (const auto& [op, s] : sampled) agg_.set_sampled(t, "", op, {s.samples, 0, 0}, now);
      }
    }
    update_windows(now);
  }
  std::set<uint32_t> dead;
  for (const auto& [key, h] : probes_->read_process_hist()) {
    if (opts_.mode == Mode::sample && !windows_.count(key.first)) continue;  // set when its window closed
    agg_.set_sizes(key.first, key.second, h, opts_.mode == Mode::probe ? "probe" : "window", now);
    if (opts_.mode == Mode::probe && process_gone(key.first)) dead.insert(key.first);
  }
  for (uint32_t t : dead) probes_->forget_process(t);
  agg_.tick(now, 300ull * 1000000000ull);
}

int Spotter::poll(int timeout_ms) {
  if (!probes_) return 0;
  int n = probes_->poll(timeout_ms);
  after_consume();
  return n;
}

int Spotter::ring_fd() const { return probes_ ? probes_->ring_fd() : -1; }

void Spotter::register_with(loop::EventLoop& loop, std::chrono::milliseconds tick_period) {
  if (!probes_) return;
  loop.add_fd(probes_->ring_fd(), [this] {
    probes_->consume();
    after_consume();
  });
  loop.add_timer(tick_period, [this] {
    tick();
    if (!opts_.snapshot_path.empty()) {
      try {
        write_snapshot(opts_.snapshot_path, snapshot_json());
      } catch (const std::exception& e) {
        gpo::log::warn("spot: {}", e.what());
      }
    }
  });
  if (opts_.rescan.count() > 0)
    loop.add_timer(opts_.rescan, [this] {
      if (int n = rescan()) gpo::log::info("spot: rescan found {} new library file(s)", n);
    });
}

std::array<gpo_spot_hist, kOps> Spotter::read_hist() const {
  return probes_ ? probes_->read_hist() : std::array<gpo_spot_hist, kOps>{};
}

gpo_spot_stats Spotter::read_stats() const { return probes_ ? probes_->read_stats() : gpo_spot_stats{}; }

std::vector<ProbeSet::ProgStats> Spotter::prog_stats() const {
  return probes_ ? probes_->prog_stats() : std::vector<ProbeSet::ProgStats>{};
}

nlohmann::json hist_to_json(const std::array<gpo_spot_hist, kOps>& h) {
  auto out = nlohmann::json::object();
  for (uint32_t op = 0; op < kOps; op++) {
    if (!h[op].calls) continue;
    auto slots = nlohmann::json::object();
    for (uint32_t k = 0; k < GPO_SPOT_HIST_SLOTS; k++)
      if (h[op].slots[k]) slots[std::to_string(1ull << k)] = h[op].slots[k];
    out[std::string(op_name(op))] = {{"calls", h[op].calls}, {"bytes", h[op].bytes}, {"size_log2_hist", slots}};
  }
  return out;
}

nlohmann::json Spotter::snapshot_json() const {
  auto st = read_stats();
  auto thresholds = nlohmann::json::object();
  for (uint32_t op = 0; op < kOps; op++) thresholds[std::string(op_name(op))] = opts_.thresholds[op];
  nlohmann::json stats = {{"events", st.events}, {"dropped", st.dropped}, {"nested", st.nested},
                          {"windows_opened", windows_opened_}, {"windows_open", windows_.size()}};
  if (sampler_) {
    auto ss = sampler_->read_stats();
    stats["samples"] = {{"total", ss.samples}, {"idle", ss.idle},     {"kernel", ss.kernel}, {"in_lib", ss.in_lib},
                        {"direct", ss.direct}, {"stack", ss.stack},   {"no_vma", ss.no_vma}};
  }
  auto attach = report_.to_json();
  nlohmann::json windows = nullptr;
  if (opts_.mode == Mode::sample)
    windows = {{"hot_cpu", opts_.windows.hot_cpu},
               {"max_calls", opts_.windows.max_calls},
               {"max_duration_ms", opts_.windows.max_duration.count()},
               {"cooldown_s", opts_.windows.cooldown.count()},
               {"sample_hz", opts_.sample_hz}};
  return {{"agent_pid", getpid()},
          {"time", ::time(nullptr)},
          {"mode", std::string(mode_name(opts_.mode))},
          {"attach", attach},
          {"stats", stats},
          {"windows", windows},
          {"thresholds", thresholds},
          {"hist", hist_to_json(read_hist())},
          {"processes", agg_.to_json()}};
}

void Spotter::write_snapshot(const std::string& path, const nlohmann::json& j) {
  std::filesystem::path p(path);
  std::error_code ec;
  std::filesystem::create_directories(p.parent_path(), ec);
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    if (!f) throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
    f << j.dump() << "\n";
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
}

}  // namespace gpo::spot
