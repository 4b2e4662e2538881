#include "planner/calibrate.h"
#include "planner/planner.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <set>
#include <chrono>
#include <cstring>
#include <ctime>
#include <memory>
#include <stdexcept>
#include <thread>

#include "backend/cpu_backend.h"
#include "backend/ops.h"
#include "kernels/classify/classify_cpu.h"
#include "rules/compiler.h"
#ifdef GPUOFFLOAD_HAVE_CUDA
#include "backend/cuda_backend.h"
#include "kernels/classify/classify_runner.h"
#endif

namespace gpo::planner {
namespace {

using backend::Job;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? -1 : v[v.size() / 2];
}

std::string size_str(uint64_t b) {
  if (b >= (uint64_t{1} << 20) && b % (uint64_t{1} << 20) == 0) return fmt::format("{} MiB", b >> 20);
  if (b >= 1024 && b % 1024 == 0) return fmt::format("{} KiB", b >> 10);
  return fmt::format("{} B", b);
}

// Input that compresses about 3:1 (words from a small vocabulary), so that
// the compressors do representative work; the ciphers do not care.
void fill_text(uint8_t* p, size_t n) {
  static const char* words[] = {"the ",   "packet ", "offload ", "kernel ", "batch ", "agent ", "stream ", "GPU ",
                                "cipher ", "frame ", "queue ",   "slab ",   "ring ",  "probe ", "map ",    "rule "};
  uint64_t x = 0x9e3779b97f4a7c15ull;
  size_t i = 0;
  while (i < n) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const char* w = (x & 7) == 0 ? nullptr : words[(x >> 8) & 15];
    if (!w) {  // a random byte now and then
      p[i++] = uint8_t(x >> 24);
      continue;
    }
    for (; *w && i < n; ++w) p[i++] = uint8_t(*w);
  }
}

struct Grid {
  std::vector<uint64_t> sizes, batches;
  uint64_t cap;            // largest batch in bytes
  double min_seconds;      // measured time per point and backend
  int max_reps;
  double op_budget_s;      // per op; larger points are skipped past it (noted)
};

Grid grid_for(bool quick) {
  if (quick) return {{256, 4096, 65536}, {1, 16, 64}, uint64_t{1} << 20, 0.002, 2, 1.0};
  // Up to 15 repetitions within min_seconds: a small batch takes tens of
  // microseconds, where one slow wake-up decides a median of three.
  return {{256, 4096, 65536, 1 << 20, 16 << 20}, {1, 4, 16, 64, 256, 1024, 4096}, uint64_t{256} << 20, 0.02, 15, 4.0};
}

using Shape = JobShape;

class Calibrator {
 public:
  explicit Calibrator(const CalibrateOptions& o) : opt_(o), g_(grid_for(o.quick)) {
    threads_ = o.threads ? o.threads : std::max(1u, std::thread::hardware_concurrency());
    const size_t max_batch = *std::max_element(g_.batches.begin(), g_.batches.end());
    in_.resize(g_.cap);
    out_.resize(g_.cap + g_.cap / 8 + 4096 * max_batch);
    fill_text(in_.data(), in_.size());
    auto km = job_key_material();
    keys_.assign(km.begin(), km.end());
    cpu_ = std::make_shared<backend::CpuBackend>(threads_);
  }

  Profile run();

 private:
  std::vector<Job> make_jobs(const backend::OpInfo& op, const Shape& sh, uint64_t size, uint64_t count,
                             std::vector<uint8_t>& staging);
  double time_backend(backend::Backend& be, std::vector<Job>& jobs);
  double time_one_thread(std::vector<Job>& jobs);
  void measure_op(const backend::OpInfo& op, Profile& p);
  void measure_classify(Profile& p);
  void progress(const std::string& what);

  CalibrateOptions opt_;
  Grid g_;
  unsigned threads_;
  std::vector<uint8_t> in_, out_, keys_;
  std::shared_ptr<backend::CpuBackend> cpu_;
  std::unique_ptr<backend::Backend> gpu_;
  size_t units_total_ = 0, units_done_ = 0;
  Clock::time_point start_ = Clock::now();
};

void Calibrator::progress(const std::string& what) {
  if (!opt_.progress) return;
  const int width = 30;
  const double f = units_total_ ? double(units_done_) / double(units_total_) : 0;
  const int fill = int(f * width);
  std::string bar(size_t(fill), '#');
  bar += std::string(size_t(width - fill), '.');
  if (isatty(STDERR_FILENO))
    fmt::print(stderr, "\rcalibrate [{}] {:3.0f}% {:5.1f}s {:<40.40}", bar, f * 100, seconds_since(start_), what);
  else
    fmt::print(stderr, "calibrate [{}] {:3.0f}% {:5.1f}s {}\n", bar, f * 100, seconds_since(start_), what);
  std::fflush(stderr);
}

// Jobs over the shared buffers. Decompressors ("X-decompress") get the frames
// of their compressor ("X-compress") as input, made here on the CPU.
std::vector<Job> Calibrator::make_jobs(const backend::OpInfo& op, const Shape& sh, uint64_t size, uint64_t count,
                                       std::vector<uint8_t>& staging) {
  std::vector<Job> jobs(count);
  const std::string name(op.name);
  const auto pos = name.find("decompress");
  const backend::OpInfo* producer =
      pos == std::string::npos ? nullptr : backend::find_op(name.substr(0, pos) + name.substr(pos + 2));
  uint64_t in_off = 0, out_off = 0;
  for (uint64_t i = 0; i < count; ++i) {
    Job& j = jobs[i];
    j.op = op.id;
    j.level = 3;
    j.key = {keys_.data(), sh.key};
    j.iv = {keys_.data() + 32, sh.iv};
    if (producer) {
      // Compress a slice of the text into staging, then use the frame as input.
      Job c;
      c.op = producer->id;
      c.level = 3;
      c.in = {in_.data() + (i * size) % (in_.size() - size + 1), size};
      std::vector<uint8_t> frame(size + size / 8 + 4096);
      c.out = frame;
      if (backend::run_on_cpu(c) != backend::Status::ok) return {};
      if (staging.size() < in_off + c.out_len) staging.resize(std::max<size_t>(in_off + c.out_len, staging.size() * 2));
      std::memcpy(staging.data() + in_off, frame.data(), c.out_len);
      j.in = {staging.data() + in_off, c.out_len};  // re-pointed below once staging stops growing
      in_off += c.out_len;
      j.cookie = c.out_len;
    } else {
      j.in = {in_.data() + in_off, size};
      in_off += size;
    }
    const size_t o = sh.out_bytes(size);
    j.out = {out_.data() + out_off, o};
    out_off += o;
  }
  if (producer) {
    uint64_t off = 0;
    for (auto& j : jobs) {
      j.in = {staging.data() + off, size_t(j.cookie)};
      off += j.cookie;
    }
  }
  return jobs;
}

double Calibrator::time_backend(backend::Backend& be, std::vector<Job>& jobs) {
  backend::Batch b;
  b.jobs = jobs;
  auto t0 = Clock::now();
  be.run(b);  // warm-up (first touch, kernel load); kept when it alone is long
  double first = seconds_since(t0);
  if (first > g_.min_seconds * 3) return first * 1e9;
  std::vector<double> t;
  auto begin = Clock::now();
  for (int r = 0; r < g_.max_reps && (r == 0 || seconds_since(begin) < g_.min_seconds); ++r) {
    for (auto& j : b.jobs) j.status = backend::Status::pending;
    auto s = Clock::now();
    be.run(b);
    t.push_back(seconds_since(s));
  }
  return median(t) * 1e9;
}

// One thread: jobs run one after another on this thread; a prefix when the
// batch is long, scaled to the whole batch (the cost is linear in jobs).
double Calibrator::time_one_thread(std::vector<Job>& jobs) {
  {
    Job w = jobs.front();  // warm-up: first call, caches
    backend::run_on_cpu(w);
  }
  size_t n = 0;
  auto t0 = Clock::now();
  while (n == 0 || (n < 1000000 && seconds_since(t0) < g_.min_seconds)) {
    Job c = jobs[n++ % jobs.size()];
    backend::run_on_cpu(c);
  }
  return seconds_since(t0) * 1e9 * double(jobs.size()) / double(n);
}

void Calibrator::measure_op(const backend::OpInfo& op, Profile& p) {
  OpProfile& out = p.ops[std::string(op.name)];
  out.gpu_kernel = op.gpu;
  auto shape = probe_job_shape(op);
  if (!shape) {
    p.notes.push_back(fmt::format("{}: no job shape this calibrator knows is accepted; not measured", op.name));
    return;
  }
  if (!isatty(STDERR_FILENO)) progress(std::string(op.name));  // a line per op in logs
  const auto t_op = Clock::now();
  bool cut = false;
  std::vector<uint8_t> staging;
  for (uint64_t size : g_.sizes)
    for (uint64_t batch : g_.batches) {
      if (size * batch > g_.cap) continue;
      const bool use_gpu = gpu_ && op.gpu;
      units_done_ += 3;
      if (cut) continue;
      const double budget = op.gpu ? g_.op_budget_s : g_.op_budget_s / 2;
      if (seconds_since(t_op) > budget) {
        cut = true;
        p.notes.push_back(fmt::format("{}: stopped at {} x{} after {:.0f} s (per-op budget); larger points are "
                                      "extrapolated",
                                      op.name, size_str(size), batch, budget));
        continue;
      }
      if (isatty(STDERR_FILENO)) progress(fmt::format("{} {} x{}", op.name, size_str(size), batch));
      auto jobs = make_jobs(op, *shape, size, batch, staging);
      if (jobs.empty()) continue;
      Point pt;
      uint64_t bytes = 0;
      for (auto& j : jobs) bytes += j.in.size();
      pt.size = std::max<uint64_t>(1, bytes / batch);  // decompressors: the frame size
      pt.batch = batch;
      pt.cpu1_ns = time_one_thread(jobs);
      pt.cpu_ns = time_backend(*cpu_, jobs);
      if (use_gpu) pt.gpu_ns = time_backend(*gpu_, jobs);
      out.points.push_back(pt);
    }
}

// Synthetic IPv4/TCP frames of one size, payload of text (the content rules scan it).
std::vector<uint8_t> make_frames(uint32_t frame_len, uint32_t count) {
  std::vector<uint8_t> buf(size_t(frame_len) * count);
  for (uint32_t i = 0; i < count; ++i) {
    uint8_t* f = buf.data() + size_t(i) * frame_len;
    fill_text(f, frame_len);
    const uint8_t eth[14] = {0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00};
    std::memcpy(f, eth, 14);
    uint8_t* ip = f + 14;
    const uint16_t tot = uint16_t(frame_len - 14);
    const uint8_t iph[20] = {0x45, 0, uint8_t(tot >> 8), uint8_t(tot), 0, 1, 0x40, 0, 64, 6, 0, 0,
                             198,  18, 0, uint8_t(1 + i % 200), 198, 19, 0, uint8_t(1 + i % 100)};
    std::memcpy(ip, iph, 20);
    uint8_t* tcp = ip + 20;
    const uint16_t sport = uint16_t(1024 + i % 50000), dport = (i % 4 == 0) ? 80 : (i % 4 == 1) ? 443 : 22 + i % 3;
    const uint8_t th[20] = {uint8_t(sport >> 8), uint8_t(sport), uint8_t(dport >> 8), uint8_t(dport), 0, 0, 0, 1,
                            0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0};
    std::memcpy(tcp, th, 20);
  }
  return buf;
}

void Calibrator::measure_classify(Profile& p) {
  auto tables = std::make_shared<const classify::RuleTables>(rules::load_rules(opt_.rules));
  p.classify_rules = tables->rules.size();
  std::unique_ptr<classify::Classifier> gpu;
#ifdef GPUOFFLOAD_HAVE_CUDA
  if (gpu_) {
    try {
      classify::GpuClassifierOptions go;
      go.device = opt_.gpu;
      gpu = std::make_unique<classify::GpuClassifier>(tables, go);
    } catch (const std::exception& e) {
      p.notes.push_back(std::string("classify: GPU classifier failed: ") + e.what());
    }
  }
#endif
  p.classify.gpu_kernel = gpu != nullptr;
  p.notes.push_back(fmt::format("classify: {} rules ({}); {}", p.classify_rules,
                                opt_.rules.empty() ? "built-in default.rules" : opt_.rules,
                                gpu ? "GPU classifier end to end (synchronous classify())" : "CPU classifier only"));
  const std::vector<uint32_t> lens = opt_.quick ? std::vector<uint32_t>{64, 1500} : std::vector<uint32_t>{64, 512, 1500};
  const std::vector<uint32_t> counts = opt_.quick ? std::vector<uint32_t>{64} : std::vector<uint32_t>{64, 256, 1024, 8192};
  if (!isatty(STDERR_FILENO)) progress("classify");
  std::vector<std::unique_ptr<classify::CpuClassifier>> cls;
  for (unsigned t = 0; t < threads_; ++t) cls.push_back(std::make_unique<classify::CpuClassifier>(tables));
  for (uint32_t len : lens)
    for (uint32_t n : counts) {
      units_done_ += 3;
      if (isatty(STDERR_FILENO)) progress(fmt::format("classify {} B x{}", len, n));
      auto buf = make_frames(len, n);
      std::vector<classify::Frame> frames(n);
      for (uint32_t i = 0; i < n; ++i) frames[i] = {buf.data() + size_t(i) * len, len};
      std::vector<classify::Verdict> v(n);
      auto timed = [&](auto&& f) {
        f();
        std::vector<double> t;
        auto begin = Clock::now();
        for (int r = 0; r < g_.max_reps && (r == 0 || seconds_since(begin) < g_.min_seconds); ++r) {
          auto s = Clock::now();
          f();
          t.push_back(seconds_since(s));
        }
        return median(t) * 1e9;
      };
      Point pt;
      pt.size = len;
      pt.batch = n;
      pt.cpu1_ns = timed([&] { cls[0]->classify(frames, v); });
      // All threads: the batch split in slices, one classifier per thread (thread start included).
      pt.cpu_ns = timed([&] {
        const unsigned nt = std::min<unsigned>(threads_, n);
        std::vector<std::thread> ts;
        const uint32_t per = (n + nt - 1) / nt;
        for (unsigned t = 0; t < nt; ++t) {
          const uint32_t lo = t * per, hi = std::min(n, lo + per);
          if (lo >= hi) break;
          ts.emplace_back([&, t, lo, hi] {
            cls[t]->classify(std::span(frames).subspan(lo, hi - lo), std::span(v).subspan(lo, hi - lo));
          });
        }
        for (auto& th : ts) th.join();
      });
      if (gpu) pt.gpu_ns = timed([&] { gpu->classify(frames, v); });
      p.classify.points.push_back(pt);
    }
}

Profile Calibrator::run() {
  Profile p;
  p.machine = this_machine(opt_.gpu);
  p.quick = opt_.quick;
  p.cpu_threads = threads_;
  {
    char buf[32];
    std::time_t now = std::time(nullptr);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    p.created = buf;
  }
  std::string why;
  const int ngpu = backend::cuda_device_count(&why);
  if (opt_.use_gpu && ngpu > 0) {
#ifdef GPUOFFLOAD_HAVE_CUDA
    if (opt_.gpu < 0 || opt_.gpu >= ngpu)
      throw std::runtime_error(fmt::format("--gpu {}: this host has GPUs 0..{}", opt_.gpu, ngpu - 1));
    auto cuda = std::make_unique<backend::CudaBackend>(opt_.gpu, cpu_);
    // Pinned once, as client slabs are: end-to-end figures are DMA copies, not staging.
    cuda->register_memory(in_.data(), in_.size());
    cuda->register_memory(out_.data(), out_.size());
    gpu_ = std::move(cuda);
#endif
  } else {
    p.notes.push_back(opt_.use_gpu ? "GPU not measured: " + why : "GPU not measured: --cpu-only");
    if (p.machine.gpu == "none" || !opt_.use_gpu) p.machine.gpu = "none", p.machine.driver = 0;
  }
  auto want = [&](std::string_view name) {
    return opt_.only.empty() || std::find(opt_.only.begin(), opt_.only.end(), name) != opt_.only.end();
  };
  // Work units for the progress bar: one per point and backend.
  for (const auto& op : backend::ops())
    if (want(op.name))
      for (uint64_t s : g_.sizes)
        for (uint64_t b : g_.batches)
          if (s * b <= g_.cap) units_total_ += 3;
  if (want("classify")) units_total_ += 3 * (opt_.quick ? 2 : 12);
  for (const auto& op : backend::ops())
    if (want(op.name)) measure_op(op, p);
  if (want("classify")) measure_classify(p);
  units_done_ = units_total_;
  progress("done");
  if (opt_.progress && isatty(STDERR_FILENO)) fmt::print(stderr, "\n");
  p.notes.push_back(fmt::format("sizes {}..{}, batches {}..{}, batch bytes <= {}; *_ns = whole batch, median",
                                size_str(g_.sizes.front()), size_str(g_.sizes.back()), g_.batches.front(),
                                g_.batches.back(), size_str(g_.cap)));
#ifdef GPUOFFLOAD_HAVE_CUDA
  if (gpu_) {
    gpu_->unregister_memory(in_.data());
    gpu_->unregister_memory(out_.data());
  }
#endif
  return p;
}

}  // namespace

std::span<const uint8_t> job_key_material() {
  static const auto km = [] {
    std::array<uint8_t, 64> k{};
    for (size_t i = 0; i < k.size(); ++i) k[i] = uint8_t(i * 37 + 11);
    return k;
  }();
  return km;
}

std::optional<JobShape> probe_job_shape(const backend::OpInfo& op) {
  const backend::OpParams params = backend::op_params(op.id);
  const JobShape shape{params.key_bytes, params.iv_bytes, params.out == backend::OpParams::Out::bounded,
                       params.out == backend::OpParams::Out::fixed ? params.fixed_bytes : 0};
  std::vector<uint8_t> in(4096), out(4096 + 4096 / 8 + 4096);
  fill_text(in.data(), in.size());
  // Decompressors: a frame of the matching compressor ("X-decompress" <- "X-compress").
  const std::string name(op.name);
  const auto pos = name.find("decompress");
  if (pos != std::string::npos) {
    const auto* producer = backend::find_op(name.substr(0, pos) + name.substr(pos + 2));
    if (!producer) return std::nullopt;
    Job c;
    c.op = producer->id;
    c.level = 3;
    c.in = in;
    c.out = out;
    if (backend::run_on_cpu(c) != backend::Status::ok) return std::nullopt;
    in.assign(out.begin(), out.begin() + long(c.out_len));
  }
  auto km = job_key_material();
  Job j;
  j.op = op.id;
  j.level = 3;
  j.key = km.subspan(0, shape.key);
  j.iv = km.subspan(32, shape.iv);
  j.in = in;
  std::vector<uint8_t> o(pos != std::string::npos ? 4096 + 4096 / 8 + 4096 : shape.out_bytes(in.size()));
  j.out = o;
  const auto st = backend::run_on_cpu(j);
  if (st == backend::Status::ok || st == backend::Status::auth_failed) return shape;
  return std::nullopt;
}

Profile calibrate(const CalibrateOptions& opt) {
  Calibrator c(opt);
  return c.run();
}

Crossover crossover(const Profile& p) {
  Crossover c;
  std::set<uint64_t> batches;
  for (const auto& [name, op] : p.ops)
    for (const auto& pt : op.points) batches.insert(pt.batch);
  for (const auto& pt : p.classify.points) batches.insert(pt.batch);
  c.batches.assign(batches.begin(), batches.end());
  std::vector<std::pair<std::string, const OpProfile*>> all;
  for (const auto& [name, op] : p.ops) all.push_back({name, &op});
  if (!p.classify.points.empty()) all.push_back({"classify (frame bytes)", &p.classify});
  for (const auto& [name, opp] : all) {
    const OpProfile& op = *opp;
    Crossover::Row r;
    r.op = name;
    double best = 0;
    const Point* best_pt = nullptr;
    // The cells are the planner's gate (gpu_gate(), objective time): per job
    // size a threshold in jobs, so a column never flips back and forth on one
    // noisy measurement; the best ratio is the raw measurement.
    const GpuGate gate = gpu_gate(op.points, 1.0 + PlannerOptions{}.doubt);
    for (const auto& pt : op.points)
      if (pt.gpu_ns > 0) {
        const double s = effective_cpu_ns(pt) / pt.gpu_ns;
        if (s > best) best = s, best_pt = &pt;
      }
    // Each column from the per-size thresholds, measured at that batch or not
    // (a batch of large jobs beyond the calibrated bytes takes the threshold
    // its size has): what the planner does, so that a column never reads
    // "never" only because its large sizes were not measured.
    for (uint64_t b : c.batches) {
      std::string cell = best_pt ? "never" : "-";
      uint64_t lo = 0, hi = 0;
      bool upto = false;  // taken at some size, not at a larger one
      for (const auto& t : gate.by_size) {
        if (b >= t.min_batch) {
          if (!lo) lo = t.size;
          if (!upto) hi = t.size;
        } else if (lo) {
          upto = true;
        }
      }
      if (lo) cell = upto ? size_str(lo) + ".." + size_str(hi) : size_str(lo);
      r.cells.push_back(cell);
    }
    if (!op.gpu_kernel)
      r.best = "no GPU kernel";
    else if (!best_pt)
      r.best = "GPU not measured";
    else
      r.best = fmt::format("{:.2f}x at {} x{}", best, size_str(best_pt->size), best_pt->batch);
    c.rows.push_back(std::move(r));
  }
  return c;
}

std::string format_crossover(const Crossover& c) {
  std::vector<std::string> head{"op"};
  for (uint64_t b : c.batches) head.push_back(fmt::format("batch {}", b));
  head.push_back("best CPU/GPU time");
  std::vector<std::vector<std::string>> rows{head};
  for (const auto& r : c.rows) {
    std::vector<std::string> row{r.op};
    row.insert(row.end(), r.cells.begin(), r.cells.end());
    row.push_back(r.best);
    rows.push_back(row);
  }
  std::vector<size_t> w(head.size(), 0);
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size(); ++i) w[i] = std::max(w[i], row[i].size());
  std::string s =
      "Crossover: smallest job size from which the planner lets the GPU (end to end) take a batch of that many jobs\n"
      "(\"A..B\": only from A to B). Per job size one threshold in jobs, the one that loses least over the measured\n"
      "points against the better backend, GPU times counted 10% longer (in doubt, the CPU); CPU = the CPU backend,\n"
      "all threads or one, whichever measured faster\n";
  for (size_t k = 0; k < rows.size(); ++k) {
    s += " ";
    for (size_t i = 0; i < rows[k].size(); ++i)
      s += i == 0 ? fmt::format(" {:<{}}", rows[k][i], w[i]) : fmt::format("  {:>{}}", rows[k][i], w[i]);
    s += "\n";
  }
  return s;
}

}  // namespace gpo::planner
