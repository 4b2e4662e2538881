#include "spot/spotter.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "loop/event_loop.h"
#include "spot.skel.h"
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

std::string errstr(int err) { return std::strerror(err < 0 ? -err : err); }

template <typename T>
bool read_percpu(int fd, uint32_t key, std::vector<T>& per_cpu) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return false;
  per_cpu.assign(size_t(ncpu), T{});
  static_assert(sizeof(T) % 8 == 0, "per-CPU values are 8-byte aligned");
  return bpf_map_lookup_elem(fd, &key, per_cpu.data()) == 0;
}

std::array<gpo_spot_hist, kOps> sum_hist(int fd) {
  std::array<gpo_spot_hist, kOps> out{};
  std::vector<gpo_spot_hist> cpus;
  for (uint32_t op = 0; op < kOps; op++) {
    if (!read_percpu(fd, op, cpus)) continue;
    for (const auto& c : cpus) {
      out[op].calls += c.calls;
      out[op].bytes += c.bytes;
      for (int k = 0; k < GPO_SPOT_HIST_SLOTS; k++) out[op].slots[k] += c.slots[k];
    }
  }
  return out;
}

}  // namespace

bool kprobes_available() {
  for (const char* p : {"/sys/bus/event_source/devices/kprobe/type", "/sys/kernel/tracing/kprobe_events",
                        "/sys/kernel/debug/tracing/kprobe_events"})
    if (access(p, F_OK) == 0) return true;
  return false;
}

nlohmann::json AttachReport::to_json() const {
  return {{"uprobes", uprobes},       {"kprobes", kprobes},         {"kprobes_available", kprobes_available},
          {"kernel", kernel_note},    {"attached", attached},       {"skipped", skipped}};
}

std::unique_ptr<Spotter> Spotter::attach(const SpotOptions& opts) {
  libbpf_set_print(libbpf_to_debug);
  std::unique_ptr<Spotter> s(new Spotter());
  s->opts_ = opts;
  s->skel_ = spot__open();
  if (!s->skel_) throw SpotError(SpotError::Kind::failure, "spot: cannot open the BPF object: " + errstr(errno));

  s->report_.kprobes_available = kprobes_available();
  bool want_kernel = opts.kernel && s->report_.kprobes_available;
  for (const auto& k : kprobe_specs())
    bpf_program__set_autoload(bpf_object__find_program_by_name(s->skel_->obj, k.program), want_kernel);

  if (int err = spot__load(s->skel_); err) {
    if (err == -EPERM || err == -EACCES)
      throw SpotError(SpotError::Kind::privilege,
                      "spot: loading the BPF programs was refused (" + errstr(err) +
                          "): run as root (CAP_BPF and CAP_PERFMON)");
    throw SpotError(SpotError::Kind::failure, "spot: loading the BPF programs failed: " + errstr(err) +
                                                  " (rerun with --log-level debug for the verifier log)");
  }

  gpo_spot_config cfg{};
  for (int op = 0; op < kOps; op++) cfg.threshold[op] = opts.thresholds[op];
  cfg.ignore_tgid = opts.ignore_tgid;
  uint32_t zero = 0;
  if (bpf_map__update_elem(s->skel_->maps.spot_cfg, &zero, sizeof zero, &cfg, sizeof cfg, 0) != 0)
    throw SpotError(SpotError::Kind::failure, "spot: writing spot_cfg failed: " + errstr(errno));

  if (!opts.pin_dir.empty()) s->pin();

  s->rb_ = ring_buffer__new(bpf_map__fd(s->skel_->maps.spot_events), &Spotter::handle_event, s.get(), nullptr);
  if (!s->rb_) throw SpotError(SpotError::Kind::failure, "spot: cannot open the ring buffer: " + errstr(errno));

  for (const auto& lib : discover_libraries(opts.libraries)) s->attach_library(lib);
  if (s->report_.uprobes == 0)
    gpo::log::warn("spot: no libcrypto, libzstd or zlib entry point could be attached; user-space spotting is idle");
  s->attach_kernel();

  gpo::log::info("spot: attached {} uprobes and {} kprobes; {} skipped", s->report_.uprobes, s->report_.kprobes,
                 s->report_.skipped.size());
  for (const auto& a : s->report_.attached) gpo::log::debug("spot: attached {}", a);
  for (const auto& a : s->report_.skipped) gpo::log::info("spot: skipped {}", a);
  gpo::log::info("{}", s->report_.kernel_note);
  return s;
}

void Spotter::attach_library(const Library& lib) {
  attached_files_.push_back({lib.dev, lib.ino});
  int ok = 0;
  for (const auto& spec : uprobe_specs()) {
    if (spec.lib != lib.kind) continue;
    auto* prog = bpf_object__find_program_by_name(skel_->obj, spec.program);
    LIBBPF_OPTS(bpf_uprobe_opts, uo, .retprobe = false, .func_name = spec.symbol);
    // pid -1: every process, now and later, that maps this file.
    bpf_link* link = bpf_program__attach_uprobe_opts(prog, -1, lib.path.c_str(), 0, &uo);
    std::string what = fmt::format("uprobe {} {}:{}", lib_kind_name(lib.kind), lib.path, spec.symbol);
    if (!link) {
      int err = errno;
      report_.skipped.push_back(what + (err == ENOENT ? ": symbol not found" : ": " + errstr(err)));
      continue;
    }
    links_.push_back(link);
    report_.attached.push_back(what);
    report_.uprobes++;
    ok++;
  }
  gpo::log::info("spot: {} {} ({}): {} uprobes", lib_kind_name(lib.kind), lib.path, lib.source, ok);
}

void Spotter::attach_kernel() {
  if (!opts_.kernel) {
    report_.kernel_note = "kernel: crypto/zstd spotting off (not requested)";
    return;
  }
  if (!report_.kprobes_available) {
    // No crypto or zstd tracepoint exists in mainline kernels, so there is no
    // tracepoint or raw tracepoint to fall back to for these entry points.
    report_.kernel_note =
        "kprobes: unavailable on this kernel (CONFIG_KPROBES off?); kernel crypto/zstd spotting disabled "
        "(no crypto or zstd tracepoint exists to fall back to); user-space uprobes unaffected";
    return;
  }
  std::vector<std::string> missing;
  for (const auto& k : kprobe_specs()) {
    auto* prog = bpf_object__find_program_by_name(skel_->obj, k.program);
    bpf_link* link = bpf_program__attach(prog);
    std::string what = fmt::format("kprobe {}", k.function);
    if (!link) {
      int err = errno;
      report_.skipped.push_back(what + ": " + errstr(err));
      missing.push_back(k.function);
      continue;
    }
    links_.push_back(link);
    report_.attached.push_back(what);
    report_.kprobes++;
  }
  report_.kernel_note = fmt::format("kprobes: available; {} of {} kernel crypto/zstd entry points attached",
                                    report_.kprobes, kprobe_specs().size());
  if (!missing.empty()) {
    std::string m;
    for (const auto& f : missing) m += (m.empty() ? "" : ", ") + f;
    report_.kernel_note += " (not attached: " + m + ")";
  }
}

int Spotter::rescan() {
  int added = 0;
  for (const auto& lib : discover_libraries(opts_.libraries)) {
    if (std::find(attached_files_.begin(), attached_files_.end(), std::make_pair(lib.dev, lib.ino)) !=
        attached_files_.end())
      continue;
    attach_library(lib);
    added++;
  }
  return added;
}

void Spotter::pin() {
  std::error_code ec;
  std::filesystem::create_directories(opts_.pin_dir, ec);
  struct { bpf_map* map; const char* name; } maps[] = {
      {skel_->maps.spot_events, "spot_events"},
      {skel_->maps.spot_hist, "spot_hist"},
      {skel_->maps.spot_cfg, "spot_cfg"},
      {skel_->maps.spot_stats, "spot_stats"},
  };
  for (auto& m : maps) {
    std::string path = opts_.pin_dir + "/" + m.name;
    // A previous agent that died without cleaning up leaves its pins: ours replace them.
    unlink(path.c_str());
    if (bpf_map__pin(m.map, path.c_str()) != 0) {
      gpo::log::warn("spot: cannot pin {} at {}: {}; bpftool will not see it", m.name, path, errstr(errno));
      continue;
    }
    pinned_.push_back(path);
  }
}

Spotter::~Spotter() {
  if (rb_) ring_buffer__free(rb_);
  for (auto* l : links_) bpf_link__destroy(l);
  for (const auto& p : pinned_) unlink(p.c_str());
  if (skel_) spot__destroy(skel_);
}

int Spotter::handle_event(void* ctx, void* data, size_t size) {
  if (size < sizeof(gpo_spot_event)) return 0;
  auto* self = static_cast<Spotter*>(ctx);
  gpo_spot_event e;
  std::memcpy(&e, data, sizeof e);
  self->agg_.add(e);
  if (self->on_event_) self->on_event_(e);
  return 0;
}

int Spotter::poll(int timeout_ms) { return ring_buffer__poll(rb_, timeout_ms); }
int Spotter::ring_fd() const { return ring_buffer__epoll_fd(rb_); }

void Spotter::register_with(loop::EventLoop& loop, std::chrono::milliseconds tick) {
  loop.add_fd(ring_buffer__epoll_fd(rb_), [this] { ring_buffer__consume(rb_); });
  loop.add_timer(tick, [this] {
    ring_buffer__consume(rb_);
    agg_.tick(mono_ns(), 300ull * 1000000000ull);
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
      if (int n = rescan()) gpo::log::info("spot: rescan attached {} new library file(s)", n);
    });
}

std::array<gpo_spot_hist, kOps> Spotter::read_hist() const { return sum_hist(bpf_map__fd(skel_->maps.spot_hist)); }

gpo_spot_stats Spotter::read_stats() const {
  gpo_spot_stats total{};
  std::vector<gpo_spot_stats> cpus;
  if (read_percpu(bpf_map__fd(skel_->maps.spot_stats), 0, cpus))
    for (const auto& c : cpus) {
      total.events += c.events;
      total.dropped += c.dropped;
      total.nested += c.nested;
    }
  return total;
}

std::vector<Spotter::ProgStats> Spotter::prog_stats() const {
  std::vector<ProgStats> out;
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    int fd = bpf_program__fd(prog);
    if (fd < 0) continue;
    bpf_prog_info info{};
    uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) continue;
    out.push_back({bpf_program__name(prog), info.run_cnt, info.run_time_ns});
  }
  return out;
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

bool read_pinned_hist(const std::string& pin_dir, std::array<gpo_spot_hist, kOps>& out) {
  int fd = bpf_obj_get((pin_dir + "/spot_hist").c_str());
  if (fd < 0) return false;
  out = sum_hist(fd);
  close(fd);
  return true;
}

nlohmann::json Spotter::snapshot_json() const {
  auto st = read_stats();
  auto thresholds = nlohmann::json::object();
  for (uint32_t op = 0; op < kOps; op++) thresholds[std::string(op_name(op))] = opts_.thresholds[op];
  return {{"agent_pid", getpid()},
          {"time", ::time(nullptr)},
          {"attach", report_.to_json()},
          {"stats", {{"events", st.events}, {"dropped", st.dropped}, {"nested", st.nested}}},
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
    if (!f) throw std::runtime_error("cannot write " + tmp + ": " + errstr(errno));
    f << j.dump() << "\n";
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " + errstr(errno));
}

}  // namespace gpo::spot
