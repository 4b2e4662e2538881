// The planner on synthetic profiles (no GPU needed: the planner only predicts),
// and the profile file: round trip, version, another machine.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "backend/ops.h"
#include "backend/cpu_backend.h"
#include "planner/calibrate.h"
#include "planner/planned_backend.h"
#include "planner/planner.h"
#include "planner/profile.h"

using namespace gpo::planner;

namespace {

// A CPU of 10 GB/s with 2 us per batch, a GPU of 40 GB/s end to end with
// 30 us launch + sync and 100 ns per job: the GPU wins on big batches only.
Point model_point(uint64_t size, uint64_t batch) {
  const double bytes = double(size) * double(batch);
  return {size, batch, 2000 + bytes / 1.0, 2000 + bytes / 10.0, 30000 + bytes / 40.0 + 100.0 * double(batch)};
}

Profile synthetic() {
  Profile p;
  p.machine = {"Synthetic GPU", 13000, "Synthetic CPU", 16};
  p.created = "2026-11-25T00:00:00Z";
  p.cpu_threads = 16;
  for (const char* op : {"sha256", "aes-256-ctr"}) {
    auto& o = p.ops[op];
    o.gpu_kernel = true;
    for (uint64_t s : {256, 4096, 65536, 1 << 20})
      for (uint64_t b : {1, 16, 256}) o.points.push_back(model_point(s, b));
  }
  return p;
}

Planner planner_with(std::optional<Profile> p, bool gpu = true) {
  PlannerOptions o;
  o.gpu_usable = gpu;
  o.cpu_threads = 16;
  return Planner(std::move(p), "no profile at /nonexistent", o);
}

std::string tmp_path() {
  char path[] = "/tmp/gpo-planner-XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  return path;
}

}  // namespace

TEST(Interpolate, ExactInBetweenAndBeyond) {
  std::vector<Point> pts{{1000, 1, -1, 100, -1}, {1000, 10, -1, 400, -1}, {2000, 1, -1, 300, -1},
                         {2000, 10, -1, 1200, -1}};
  EXPECT_DOUBLE_EQ(*interpolate(pts, Field::cpu, 1000, 10), 400);
  EXPECT_DOUBLE_EQ(*interpolate(pts, Field::cpu, 1000, 4), 200);      // linear in batch
  EXPECT_DOUBLE_EQ(*interpolate(pts, Field::cpu, 1500, 1), 200);      // linear in size
  EXPECT_DOUBLE_EQ(*interpolate(pts, Field::cpu, 1000, 20), 800);     // beyond: last per-job time
  EXPECT_DOUBLE_EQ(*interpolate(pts, Field::cpu, 4000, 10), 2400);    // beyond: last throughput
  EXPECT_DOUBLE_EQ(*interpolate(pts, Field::cpu, 10, 1), 100);        // below: the smallest size's time
  EXPECT_FALSE(interpolate(pts, Field::gpu, 1000, 1).has_value());    // no GPU figures
}

TEST(Planner, SmallJobsStayOnTheCpu) {
  auto pl = planner_with(synthetic());
  for (uint64_t size : {256, 4096})
    for (uint64_t batch : {1, 16}) {
      auto d = pl.plan("sha256", size, batch);
      EXPECT_EQ(d.where, Where::cpu) << size << " x" << batch << ": " << d.reason;
      EXPECT_EQ(d.source, "profile");
      EXPECT_LT(d.cpu_cost_ns, d.gpu_cost_ns);
    }
}

TEST(Planner, LargeBatchesGoToTheGpu) {
  auto pl = planner_with(synthetic());
  auto d = pl.plan("sha256", 1 << 20, 256);
  EXPECT_EQ(d.where, Where::gpu) << d.reason;
  EXPECT_EQ(d.reason, "GPU sooner");
  // The predictions are the profile's figures at a measured point.
  EXPECT_DOUBLE_EQ(d.cpu_cost_ns, model_point(1 << 20, 256).cpu_ns);
  EXPECT_DOUBLE_EQ(d.gpu_cost_ns, model_point(1 << 20, 256).gpu_ns);
  // Between measured points too (interpolated): 256 KiB x 128.
  EXPECT_EQ(pl.plan("aes-256-ctr", 256 << 10, 128).where, Where::gpu);
}

TEST(Planner, GpuBacklogSendsWorkToTheCpu) {
  auto pl = planner_with(synthetic());
  const auto alone = pl.plan("sha256", 1 << 20, 256);
  ASSERT_EQ(alone.where, Where::gpu);
  pl.set_backlog_ns(Where::gpu, alone.cpu_cost_ns);  // a queue as long as the CPU would take
  auto d = pl.plan("sha256", 1 << 20, 256);
  EXPECT_EQ(d.where, Where::cpu);
  EXPECT_EQ(d.reason, "GPU backlog");
  EXPECT_DOUBLE_EQ(d.gpu_wait_ns, alone.cpu_cost_ns);
  // The queue drains: back to the GPU.
  pl.set_backlog_ns(Where::gpu, 0);
  EXPECT_EQ(pl.plan("sha256", 1 << 20, 256).where, Where::gpu);
}

TEST(Planner, DispatchedBatchesQueueUntilFinished) {
  auto pl = planner_with(synthetic());
  auto t1 = pl.dispatched("sha256", Where::gpu, 1 << 20, 256);
  EXPECT_GT(pl.backlog_ns(Where::gpu), 0);
  // Enough GPU batches in flight: the next one is planned onto the CPU.
  std::vector<Planner::Ticket> more;
  while (pl.plan("sha256", 1 << 20, 256).where == Where::gpu && more.size() < 100)
    more.push_back(pl.dispatched("sha256", Where::gpu, 1 << 20, 256));
  EXPECT_LT(more.size(), 100u);
  EXPECT_EQ(pl.plan("sha256", 1 << 20, 256).reason, "GPU backlog");
  pl.finished(t1, t1.predicted_ns);
  for (auto& t : more) pl.finished(t, t.predicted_ns);
  EXPECT_NEAR(pl.backlog_ns(Where::gpu), 0, 1e-6);
  auto j = pl.to_json();
  EXPECT_EQ(j["ops"]["sha256"]["gpu_batches"].get<uint64_t>(), 1 + more.size());
  EXPECT_EQ(j["ops"]["sha256"]["gpu_jobs"].get<uint64_t>(), 256 * (1 + more.size()));
}

TEST(Planner, MemcpyStaysOnTheCpuWhenTheProfileSaysSo) {
  if (!gpo::backend::find_op("memcpy")) GTEST_SKIP() << "no memcpy op in this build's registry";
  Profile p = synthetic();
  auto& m = p.ops["memcpy"];
  m.gpu_kernel = true;
  // memcpy: 20 GB/s on the CPU; the GPU pays two PCIe crossings (about 12 GB/s end to end).
  for (uint64_t s : {4096, 1 << 20, 16 << 20})
    for (uint64_t b : {1, 16, 64}) {
      const double bytes = double(s) * double(b);
      m.points.push_back({s, b, 500 + bytes / 10.0, 500 + bytes / 20.0, 20000 + bytes / 12.0});
    }
  auto pl = planner_with(p);
  for (uint64_t s : {4096, 1 << 20, 16 << 20, 64 << 20})
    for (uint64_t b : {1, 64, 1024}) {
      auto d = pl.plan("memcpy", s, b);
      EXPECT_EQ(d.where, Where::cpu) << s << " x" << b;
      EXPECT_EQ(d.reason, "CPU sooner");
    }
}

TEST(Planner, OnlineRefinementMovesAWrongPrediction) {
  auto pl = planner_with(synthetic());
  ASSERT_EQ(pl.plan("sha256", 1 << 20, 256).where, Where::gpu);
  // The GPU turns out 10x slower than the profile says (another tenant, a slower link).
  int flipped_after = -1;
  for (int i = 0; i < 20 && flipped_after < 0; ++i) {
    auto t = pl.dispatched("sha256", Where::gpu, 1 << 20, 256);
    pl.finished(t, 10 * model_point(1 << 20, 256).gpu_ns);
    if (pl.plan("sha256", 1 << 20, 256).where == Where::cpu) flipped_after = i + 1;
  }
  EXPECT_GT(flipped_after, 0) << "never moved to the CPU";
  EXPECT_NEAR(pl.correction("sha256", Where::gpu, 1 << 20), 10.0, 1e-9);
  // Other sizes keep the profile's figures (the correction is per size bucket).
  EXPECT_DOUBLE_EQ(pl.correction("sha256", Where::gpu, 4096), 1.0);
  // Observations agreeing with the profile bring it back, step by step (EWMA).
  double before = pl.correction("sha256", Where::gpu, 1 << 20);
  auto t = pl.dispatched("sha256", Where::gpu, 1 << 20, 256);
  pl.finished(t, model_point(1 << 20, 256).gpu_ns);
  double after = pl.correction("sha256", Where::gpu, 1 << 20);
  EXPECT_LT(after, before);
  EXPECT_GT(after, 1.0);
}

TEST(Planner, NoProfileUsesConservativeDefaultsAndSaysSo) {
  auto pl = planner_with(std::nullopt);
  EXPECT_FALSE(pl.has_profile());
  EXPECT_NE(pl.status_line().find("planner: no profile (defaults), run calibrate"), std::string::npos);
  auto small = pl.plan("sha256", 4096, 4096);  // 16 MiB of small jobs: still the CPU
  EXPECT_EQ(small.where, Where::cpu);
  EXPECT_EQ(small.source, "defaults (no profile)");
  EXPECT_NE(small.reason.find("defaults"), std::string::npos);
  EXPECT_EQ(pl.plan("sha256", 1 << 20, 4).where, Where::cpu);    // big jobs, small batch
  EXPECT_EQ(pl.plan("sha256", 1 << 20, 64).where, Where::gpu);   // 64 MiB of 1 MiB jobs
}

TEST(Planner, WithoutAGpuOrAGpuKernelEverythingRunsOnTheCpu) {
  auto pl = planner_with(synthetic(), /*gpu=*/false);
  auto d = pl.plan("sha256", 1 << 20, 256);
  EXPECT_EQ(d.where, Where::cpu);
  EXPECT_EQ(d.reason, "no GPU");
  EXPECT_LT(d.gpu_cost_ns, 0);
  auto pl2 = planner_with(synthetic());
  for (const auto& op : gpo::backend::ops())
    if (!op.gpu) {
      auto d2 = pl2.plan(op.name, 1 << 20, 256);
      EXPECT_EQ(d2.where, Where::cpu) << op.name;
      EXPECT_EQ(d2.reason, "no GPU kernel") << op.name;
    }
  EXPECT_EQ(pl2.plan("no-such-op", 1, 1).reason, "unknown op");
}

TEST(Profile, JsonRoundTrip) {
  Profile p = synthetic();
  p.classify.points.push_back({512, 256, 9000, 2000, -1});
  p.classify_rules = 12;
  p.notes = {"a note"};
  p.quick = true;
  const std::string path = tmp_path();
  save_profile(p, path);
  auto l = load_profile(path, p.machine);
  unlink(path.c_str());
  ASSERT_TRUE(l.profile) << l.why;
  const Profile& q = *l.profile;
  EXPECT_EQ(q.machine, p.machine);
  EXPECT_EQ(q.created, p.created);
  EXPECT_TRUE(q.quick);
  EXPECT_EQ(q.notes, p.notes);
  EXPECT_EQ(q.classify_rules, 12u);
  ASSERT_EQ(q.classify.points.size(), 1u);
  EXPECT_LT(q.classify.points[0].gpu_ns, 0);  // not measured stays not measured
  ASSERT_EQ(q.ops.size(), p.ops.size());
  for (const auto& [name, op] : p.ops) {
    const auto& o = q.ops.at(name);
    ASSERT_EQ(o.points.size(), op.points.size());
    for (size_t i = 0; i < o.points.size(); ++i) {
      EXPECT_EQ(o.points[i].size, op.points[i].size);
      EXPECT_EQ(o.points[i].batch, op.points[i].batch);
      EXPECT_DOUBLE_EQ(o.points[i].cpu_ns, op.points[i].cpu_ns);
      EXPECT_DOUBLE_EQ(o.points[i].cpu1_ns, op.points[i].cpu1_ns);
      EXPECT_DOUBLE_EQ(o.points[i].gpu_ns, op.points[i].gpu_ns);
    }
  }
}

TEST(Profile, VersionMismatchIsReportedAndIgnored) {
  auto j = synthetic().to_json();
  j["version"] = kProfileVersion + 1;
  const std::string path = tmp_path();
  std::ofstream(path) << j.dump();
  auto l = load_profile(path, std::nullopt);
  unlink(path.c_str());
  EXPECT_FALSE(l.profile);
  EXPECT_NE(l.why.find("version"), std::string::npos) << l.why;
  EXPECT_NE(l.why.find("run calibrate"), std::string::npos) << l.why;
}

TEST(Profile, AnotherMachinesProfileIsReportedAndIgnored) {
  Profile p = synthetic();
  const std::string path = tmp_path();
  save_profile(p, path);
  for (auto change : {+[](MachineKey& k) { k.gpu = "Other GPU"; }, +[](MachineKey& k) { k.driver = 12000; },
                      +[](MachineKey& k) { k.cpu = "Other CPU"; }, +[](MachineKey& k) { k.cores = 2; }}) {
    MachineKey here = p.machine;
    change(here);
    auto l = load_profile(path, here);
    EXPECT_FALSE(l.profile);
    EXPECT_NE(l.why.find("another machine"), std::string::npos) << l.why;
  }
  EXPECT_TRUE(load_profile(path, p.machine).profile);
  unlink(path.c_str());
}

TEST(Profile, MissingOrMalformedFiles) {
  auto l = load_profile("/nonexistent/profile.json", std::nullopt);
  EXPECT_FALSE(l.profile);
  EXPECT_EQ(l.why, "no profile at /nonexistent/profile.json");
  const std::string path = tmp_path();
  std::ofstream(path) << R"({"ops": {"aes-256-gcm": []}})";  // not this format
  l = load_profile(path, std::nullopt);
  EXPECT_FALSE(l.profile);
  EXPECT_NE(l.why.find("not a gpuoffload profile"), std::string::npos) << l.why;
  std::ofstream(path) << R"({"format": "gpuoffload-profile", "version": 1, "machine": {}})";
  l = load_profile(path, std::nullopt);
  EXPECT_NE(l.why.find("malformed"), std::string::npos) << l.why;
  std::ofstream(path) << "{ not json";
  l = load_profile(path, std::nullopt);
  EXPECT_FALSE(l.profile);
  unlink(path.c_str());
}

TEST(Planner, CpuQueueIsSharedByItsThreads) {
  auto pl = planner_with(synthetic());
  // 16 jobs of 64 KiB: 16 x 67.5 us of thread time, 106.9 us on the pool (model_point).
  const auto idle = pl.plan("sha256", 65536, 16);
  EXPECT_DOUBLE_EQ(idle.cpu_cost_ns, model_point(65536, 16).cpu_ns);
  EXPECT_DOUBLE_EQ(idle.cpu_work_ns, model_point(65536, 16).cpu1_ns);
  EXPECT_DOUBLE_EQ(idle.cpu_wait_ns, 0);  // the pool alone is slower than its share of the work
  // A queue of 1 ms on all threads: done when the threads got through it and this batch's work.
  pl.set_backlog_ns(Where::cpu, 1e6);
  const auto busy = pl.plan("sha256", 65536, 16);
  EXPECT_DOUBLE_EQ(busy.cpu_done_ns(), 1e6 + model_point(65536, 16).cpu1_ns / 16);
  // Dispatching a CPU batch queues its work shared by the threads, and finishing takes it off.
  pl.set_backlog_ns(Where::cpu, 0);
  auto t = pl.dispatched("sha256", Where::cpu, 65536, 16);
  EXPECT_DOUBLE_EQ(pl.backlog_ns(Where::cpu), model_point(65536, 16).cpu1_ns / 16);
  pl.finished(t, 2 * model_point(65536, 16).cpu1_ns);  // the batch took twice the thread time predicted
  EXPECT_NEAR(pl.backlog_ns(Where::cpu), 0, 1e-6);
  EXPECT_NEAR(pl.correction("sha256", Where::cpu, 65536), 2.0, 1e-9);
}

TEST(Planner, ObjectiveCpuTakesTheGpuWhileItIsNotMuchLater) {
  Profile p = synthetic();
  auto& o = p.ops["aes-256-ctr"];
  o.points.clear();
  // The GPU 10% later than all CPU threads, at every size: time keeps the CPU, cpu (25%) takes the GPU.
  for (uint64_t s : {4096, 1 << 20})
    for (uint64_t b : {1, 64}) {
      const double cpu = 1000 + double(s * b) / 10.0;
      o.points.push_back({s, b, cpu * 16, cpu, cpu * 1.1});
    }
  PlannerOptions po;
  po.gpu_usable = true;
  po.cpu_threads = 16;
  Planner time_pl(p, "", po);
  EXPECT_EQ(time_pl.plan("aes-256-ctr", 1 << 20, 64).where, Where::cpu);
  po.objective = Objective::cpu;
  Planner cpu_pl(p, "", po);
  auto d = cpu_pl.plan("aes-256-ctr", 1 << 20, 64);
  EXPECT_EQ(d.where, Where::gpu);
  EXPECT_NE(d.reason.find("frees the CPU"), std::string::npos) << d.reason;
  EXPECT_NE(cpu_pl.status_line().find("objective cpu"), std::string::npos) << cpu_pl.status_line();
  // Beyond the slack (a GPU queue): the CPU.
  cpu_pl.set_backlog_ns(Where::gpu, d.cpu_done_ns());
  EXPECT_EQ(cpu_pl.plan("aes-256-ctr", 1 << 20, 64).where, Where::cpu);
  po.slack = 0.05;
  Planner tight(p, "", po);
  EXPECT_EQ(tight.plan("aes-256-ctr", 1 << 20, 64).where, Where::cpu);
  EXPECT_EQ(parse_objective("cpu"), Objective::cpu);
  EXPECT_FALSE(parse_objective("fast").has_value());
}

TEST(Planner, ClientsOffloadOnlyJobsTheGpuWinsAloneAndFromEveryCore) {
  // model_point, one job: the CPU 1 GB/s on one thread; the GPU 30 us + 40 GB/s,
  // plus the round trip and the slab copies. The GPU wins one job alone from 1 MiB.
  auto pl = planner_with(synthetic());
  EXPECT_EQ(pl.offload_min_bytes("sha256"), uint64_t(1) << 20);
  PlannerOptions po;
  po.gpu_usable = true;
  po.cpu_threads = 16;
  po.objective = Objective::cpu;
  po.slack = 1.0;  // twice as long is fine: from 64 KiB
  Planner cpu_pl(synthetic(), "", po);
  EXPECT_EQ(cpu_pl.offload_min_bytes("sha256"), 65536u);
  // No GPU, no GPU kernel, an op the GPU never wins, no profile.
  EXPECT_EQ(planner_with(synthetic(), false).offload_min_bytes("sha256"), kNever);
  for (const auto& op : gpo::backend::ops()) {
    if (!op.gpu) {
      EXPECT_EQ(pl.offload_min_bytes(op.name), kNever) << op.name;
    }
  }
  Profile p = synthetic();
  for (auto& pt : p.ops["aes-256-ctr"].points) pt.gpu_ns = pt.cpu1_ns * 2;
  EXPECT_EQ(planner_with(p).offload_min_bytes("aes-256-ctr"), kNever);
  // No profile: no measurement says the GPU beats the client's thread (a
  // lone zstd stream sent on the defaults ran at 0.58x of the program alone).
  EXPECT_EQ(planner_with(std::nullopt).offload_min_bytes("sha256"), kNever);
  // Alone the GPU wins from 1 MiB, but a batch of one job per core takes it
  // longer than each core its own: clients keep 1 MiB jobs, send 16 MiB ones.
  Profile shared = synthetic();
  for (auto& pt : shared.ops["sha256"].points)
    if (pt.batch == 16) pt.gpu_ns = pt.cpu1_ns / 16 * 1.25;  // 16 jobs: 1.25x one job on one core
  for (uint64_t b : {1, 16}) shared.ops["sha256"].points.push_back(model_point(16 << 20, b));
  shared.ops["sha256"].points.back().gpu_ns = model_point(16 << 20, 1).cpu1_ns / 2;
  EXPECT_EQ(planner_with(shared).offload_min_bytes("sha256"), uint64_t(16) << 20);
  EXPECT_EQ(planner_with(std::nullopt).offload_min_bytes("zstd-compress"), kNever);
}

TEST(Planner, CountsTheCpuSecondsTheGpuSaved) {
  auto pl = planner_with(synthetic());
  auto g = pl.dispatched("sha256", Where::gpu, 1 << 20, 256);
  EXPECT_DOUBLE_EQ(g.cpu_work_ns, model_point(1 << 20, 256).cpu1_ns);
  pl.finished(g, model_point(1 << 20, 256).gpu_ns, 5e6);  // 5 ms of host CPU on the GPU's side
  auto c = pl.dispatched("sha256", Where::cpu, 4096, 16);
  pl.finished(c, model_point(4096, 16).cpu1_ns, 7e4);
  const auto s = pl.cpu_seconds();
  EXPECT_DOUBLE_EQ(s.moved, model_point(1 << 20, 256).cpu1_ns / 1e9);
  EXPECT_DOUBLE_EQ(s.gpu_host, 5e-3);
  EXPECT_DOUBLE_EQ(s.saved(), s.moved - 5e-3);
  EXPECT_DOUBLE_EQ(s.cpu_backend, 7e-5);
  EXPECT_DOUBLE_EQ(pl.to_json()["cpu_seconds"]["saved"].get<double>(), s.saved());
}

TEST(PlannedBackend, RunsEveryJobAndCountsWhereBatchesWent) {
  PlannerOptions o;
  o.gpu_usable = false;
  o.cpu_threads = 2;
  auto pl = std::make_shared<Planner>(std::nullopt, "no profile at /nonexistent", o);
  PlannedBackend be(std::make_shared<gpo::backend::CpuBackend>(2), nullptr, pl);
  std::vector<std::vector<uint8_t>> in(8), out(8);
  gpo::backend::Batch b;
  for (size_t i = 0; i < in.size(); ++i) {
    in[i].assign(1000 + i, uint8_t(i));
    out[i].assign(32, 0);
    gpo::backend::Job j;
    j.op = gpo::backend::OpId::sha256;
    j.in = in[i];
    j.out = out[i];
    b.jobs.push_back(j);
  }
  be.run(b);
  for (size_t i = 0; i < in.size(); ++i) {
    ASSERT_EQ(b.jobs[i].status, gpo::backend::Status::ok);
    gpo::backend::Job ref = b.jobs[i];
    std::vector<uint8_t> digest(32);
    ref.out = digest;
    gpo::backend::run_on_cpu(ref);
    EXPECT_EQ(digest, out[i]) << i;
  }
  auto j = pl->to_json();
  EXPECT_EQ(j["ops"]["sha256"]["cpu_batches"], 1);
  EXPECT_EQ(j["ops"]["sha256"]["cpu_jobs"], 8);
  EXPECT_EQ(j["ops"]["sha256"]["gpu_batches"], 0);
  EXPECT_EQ(be.stats().jobs, 8u);
  EXPECT_NEAR(pl->backlog_ns(Where::cpu), 0, 1e-6);  // finished: off the queue
  EXPECT_GT(pl->cpu_seconds().cpu_backend, 0);         // the CPU time the batch took, measured
}

// The offload service's event loop submits: nothing may run on its thread.
TEST(PlannedBackend, NothingRunsOnTheSubmittingThread) {
  PlannerOptions o;
  o.cpu_threads = 2;
  auto pl = std::make_shared<Planner>(std::nullopt, "none", o);
  PlannedBackend be(std::make_shared<gpo::backend::CpuBackend>(2), nullptr, pl);
  std::vector<uint8_t> in(64, 1), out(32);
  gpo::backend::Batch b;
  b.jobs.resize(1);
  b.jobs[0].op = gpo::backend::OpId::sha256;
  b.jobs[0].in = in;
  b.jobs[0].out = out;
  std::thread::id ran;
  be.run(b);  // warm
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  be.submit(b, [&](gpo::backend::Batch&) {
    std::lock_guard lk(mu);
    ran = std::this_thread::get_id();
    done = true;
    cv.notify_all();
  });
  std::unique_lock lk(mu);
  cv.wait(lk, [&] { return done; });
  EXPECT_NE(ran, std::this_thread::get_id());
  EXPECT_EQ(b.jobs[0].status, gpo::backend::Status::ok);
}

// ---- The GPU gate: monotonic thresholds, the round trip, doubt -------------

namespace {

// A 16-thread host: one thread 6 GB/s + 0.3 us per job; the pool a 5 us
// wake-up + the work over min(16, jobs) threads; the GPU 15 us round trip +
// 200 GB/s + 20 ns per job (a GPU that wins large batches of small jobs).
Point gcm_point(uint64_t size, uint64_t batch) {
  const double work = double(batch) * (300 + double(size) / 6.0);
  return {size, batch, work, 5000 + work / double(std::min<uint64_t>(16, batch)),
          15000 + double(size * batch) / 200.0 + 20.0 * double(batch)};
}

Profile gcm_profile(bool noisy) {
  Profile p;
  p.machine = {"Synthetic GPU", 13000, "Synthetic CPU", 16};
  p.created = "2026-12-06T00:00:00Z";
  p.cpu_threads = 16;
  auto& o = p.ops["aes-256-gcm-encrypt"];
  o.gpu_kernel = true;
  for (uint64_t s : {256, 4096, 65536, 1 << 20})
    for (uint64_t b : {1, 4, 16, 64, 256, 1024, 4096}) {
      if (s * b > (uint64_t{256} << 20)) continue;
      Point pt = gcm_point(s, b);
      // One pass of calibrate on a busy host: the CPU pool's small batches
      // caught a slow wake-up, and one GPU cell came out low.
      if (noisy && s == 256 && b == 256) pt.cpu_ns *= 8, pt.gpu_ns *= 0.5;
      if (noisy && s == 4096 && b == 64) pt.cpu_ns = 284000;
      o.points.push_back(pt);
    }
  return p;
}

}  // namespace

TEST(GpuGate, ThresholdPerSizeMinimisesTheLossAndIsMonotonic) {
  // GPU wins at 16 and 64 jobs, loses at 4 (noise) and 256, wins from 1024:
  // one threshold, 1024 (the loss of the noisy win at 16..64 is smaller than
  // giving 256 to the GPU).
  std::vector<Point> pts;
  const uint64_t batches[] = {1, 4, 16, 64, 256, 1024, 4096};
  const double ratio[] = {0.2, 1.3, 1.05, 1.02, 0.5, 2.0, 3.0};  // CPU time / GPU time
  for (size_t i = 0; i < 7; ++i) pts.push_back({4096, batches[i], 1e6, 1e5, 1e5 / ratio[i]});
  auto g = gpu_gate(pts, 1.0);
  ASSERT_EQ(g.by_size.size(), 1u);
  EXPECT_EQ(g.by_size[0].min_batch, 1024u);
  // Doubt 10%: the 1.05 and 1.02 wins are no wins; still 1024.
  EXPECT_EQ(gpu_gate(pts, 1.1).by_size[0].min_batch, 1024u);
  // The GPU everywhere slower: never. Everywhere faster: from the first point.
  for (auto& p : pts) p.gpu_ns = p.cpu_ns * 2;
  EXPECT_EQ(gpu_gate(pts, 1.0).min_batch(4096), kNever);
  for (auto& p : pts) p.gpu_ns = p.cpu_ns / 2;
  EXPECT_EQ(gpu_gate(pts, 1.0).min_batch(4096), 1u);
  // A tie keeps the CPU.
  for (auto& p : pts) p.gpu_ns = p.cpu_ns;
  EXPECT_EQ(gpu_gate(pts, 1.0).min_batch(4096), kNever);
}

TEST(GpuGate, BetweenMeasuredSizesTheStricterThreshold) {
  GpuGate g;
  g.by_size = {{4096, 64}, {65536, 16}, {1 << 20, kNever}};
  EXPECT_EQ(g.min_batch(100), 64u);            // below: the smallest size's
  EXPECT_EQ(g.min_batch(4096), 64u);
  EXPECT_EQ(g.min_batch(16384), 64u);          // between 64 and 16: the larger
  EXPECT_EQ(g.min_batch(65536), 16u);
  EXPECT_EQ(g.min_batch(256 << 10), kNever);   // between 16 and never: never
  EXPECT_EQ(g.min_batch(64 << 20), kNever);    // beyond: the largest size's
}

TEST(Planner, NoisyCalibrationDoesNotFlipTheCrossover) {
  // The model without noise: per size, the GPU from some job count on.
  for (bool noisy : {false, true}) {
    auto pl = planner_with(gcm_profile(noisy));
    for (uint64_t s : {256, 4096, 65536, 1 << 20}) {
      bool gpu_seen = false;
      for (uint64_t b : {1, 4, 16, 64, 256, 1024, 4096}) {
        if (s * b > (uint64_t{256} << 20)) continue;
        auto d = pl.plan("aes-256-gcm-encrypt", s, b);
        if (gpu_seen) {
          EXPECT_EQ(d.where, Where::gpu) << "noisy " << noisy << ": " << s << " x" << b << " back to the CPU: "
                                         << d.reason;
        }
        gpu_seen |= d.where == Where::gpu;
        // Where the truth says the CPU, no noise moves it to the GPU.
        const Point t = gcm_point(s, b);
        if (effective_cpu_ns(t) < t.gpu_ns * 1.1) {
          EXPECT_EQ(d.where, Where::cpu) << "noisy " << noisy << ": " << s << " x" << b << ": " << d.reason;
        }
      }
    }
    // The cells the noise touched stay on the CPU.
    EXPECT_EQ(pl.plan("aes-256-gcm-encrypt", 256, 256).where, Where::cpu) << noisy;
    EXPECT_EQ(pl.plan("aes-256-gcm-encrypt", 4096, 64).where, Where::cpu) << noisy;
  }
}

TEST(Planner, TheGpuRoundTripIsNotPaidForLessCpuTime) {
  // 64 AES-GCM jobs of 256 B, as calibrated on the H100 host (docs/results of
  // 2026-12-06): 19 us of thread time, 284 us on the pool (a slow wake-up),
  // 133 us on the GPU. One core does the batch in 19 us: the CPU.
  Profile p = gcm_profile(false);
  for (auto& pt : p.ops["aes-256-gcm-encrypt"].points)
    if (pt.size == 256 && pt.batch == 64) pt.cpu1_ns = 19000, pt.cpu_ns = 284000, pt.gpu_ns = 133000;
  auto pl = planner_with(p);
  auto d = pl.plan("aes-256-gcm-encrypt", 256, 64);
  EXPECT_EQ(d.where, Where::cpu) << d.reason;
  EXPECT_LE(d.cpu_cost_ns, 19000);  // the pool is never taken slower than one thread doing it all
  // A GPU figure below the op's round trip (a lucky measurement: 5 us where
  // every small batch took 15) cannot move a batch that the CPU finishes
  // within the round trip (12 us on the one worker a batch of 16 KiB gets).
  for (auto& pt : p.ops["aes-256-gcm-encrypt"].points)
    if (pt.size == 256 && pt.batch == 64) pt.cpu1_ns = 12000, pt.cpu_ns = 12000, pt.gpu_ns = 5000;
  auto pl2 = planner_with(p);
  auto d2 = pl2.plan("aes-256-gcm-encrypt", 256, 64);
  EXPECT_EQ(d2.where, Where::cpu) << d2.reason;
  EXPECT_NE(d2.reason.find("round trip"), std::string::npos) << d2.reason;
}

TEST(Planner, ACpuBacklogNeverSendsWhatTheGpuLosesToTheGpu) {
  // zstd-like: the GPU 3x slower than the pool at every measured point.
  Profile p = synthetic();
  auto& o = p.ops["aes-256-ctr"];
  o.points.clear();
  for (uint64_t s : {4096, 65536})
    for (uint64_t b : {16, 256, 4096}) {
      const double work = double(s * b) / 0.4;
      o.points.push_back({s, b, work, work / 16, 3 * work / 16});
    }
  auto pl = planner_with(p);
  pl.set_backlog_ns(Where::cpu, 1e9);  // a second of work queued on every core
  auto d = pl.plan("aes-256-ctr", 4096, 4096);
  EXPECT_EQ(d.where, Where::cpu) << d.reason;
  EXPECT_NE(d.reason.find("loses at this job size"), std::string::npos) << d.reason;
  // Where the GPU wins alone, a CPU backlog does move batches (CPU backlog).
  auto d2 = pl.plan("sha256", 1 << 20, 256);
  EXPECT_EQ(d2.where, Where::gpu) << d2.reason;
}

TEST(Planner, DoubtKeepsTheCpuWhenTheGpuIsBarelySooner) {
  Profile p = synthetic();
  auto& o = p.ops["aes-256-ctr"];
  o.points.clear();
  for (uint64_t s : {4096, 1 << 20})
    for (uint64_t b : {1, 64}) {
      const double cpu = 1000 + double(s * b) / 10.0;
      o.points.push_back({s, b, cpu * 16, cpu, cpu * 0.95});  // the GPU 5% sooner
    }
  EXPECT_EQ(planner_with(p).plan("aes-256-ctr", 1 << 20, 64).where, Where::cpu);
  PlannerOptions po;
  po.gpu_usable = true;
  po.cpu_threads = 16;
  po.doubt = 0;
  EXPECT_EQ(Planner(p, "", po).plan("aes-256-ctr", 1 << 20, 64).where, Where::gpu);
}

// The mixed workload of `bench planner`, replayed on the planner: 4 batches of
// each op interleaved and planned at once, then run again with the online
// correction fed as the backends report (the GPU's batches of one run sharing
// its wall time by bytes, as the CUDA backend groups them). The makespan by
// the true costs must stay within 5% of the better of CPU-only and GPU-only.
TEST(Planner, MixedWorkloadReplayIsNeverSlowerThanTheBetterBackend) {
  struct Truth {
    const char* op;
    double cpu_gbps, gpu_gbps;  // one core; the GPU end to end
  };
  const Truth ops[] = {{"aes-256-gcm-encrypt", 6, 25}, {"aes-256-ctr", 4, 25}, {"sha256", 1.2, 40},
                       {"crc32", 1, 24},              {"memcpy", 10, 12},     {"zstd-compress", 0.4, 1.2}};
  const unsigned T = 16;
  auto truth = [&](const Truth& t, uint64_t s, uint64_t b) {
    const double work = double(b) * (300 + double(s) / t.cpu_gbps);
    return Point{s, b, work, 20000 + work / double(std::min<uint64_t>(T, b)),
                 15000 + double(s * b) / t.gpu_gbps + 20.0 * double(b)};
  };
  Profile p;
  p.machine = {"Synthetic GPU", 13000, "Synthetic CPU", T};
  p.cpu_threads = T;
  std::vector<const Truth*> present;
  for (const auto& t : ops) {
    if (!gpo::backend::find_op(t.op) || !gpo::backend::find_op(t.op)->gpu) continue;
    present.push_back(&t);
    auto& o = p.ops[t.op];
    o.gpu_kernel = true;
    uint64_t k = 0;
    for (uint64_t s : {256, 4096, 65536, 1 << 20, 16 << 20})
      for (uint64_t b : {1, 4, 16, 64, 256, 1024, 4096}) {
        if (s * b > (uint64_t{256} << 20)) continue;
        Point pt = truth(t, s, b);
        // One calibration pass: every third small-batch cell of the GPU off by half either way.
        if (b <= 1024 && ++k % 3 == 0) pt.gpu_ns *= (k % 2) ? 0.5 : 1.5;
        o.points.push_back(pt);
      }
  }
  ASSERT_GE(present.size(), 3u);
  auto pl = planner_with(p);
  for (uint64_t s : {4096, 65536, 1 << 20, 4 << 20, 16 << 20}) {
    const uint64_t n = std::clamp<uint64_t>((uint64_t{16} << 20) / s, 1, 4096);
    double cpu_only = 0, gpu_only = 0;
    for (const auto* t : present) {
      const Point x = truth(*t, s, n);
      cpu_only += 4 * x.cpu1_ns / T;
      gpu_only += 4 * x.gpu_ns;
    }
    for (int run = 0; run < 4; ++run) {  // a warm-up and three runs, as the bench does
      double cpu_work = 0, gpu_time = 0;
      std::vector<std::pair<Planner::Ticket, const Truth*>> tickets;
      for (int k = 0; k < 4; ++k)
        for (const auto* t : present) {
          auto d = pl.plan(t->op, s, n);
          tickets.push_back({pl.dispatched(t->op, d.where, s, n), t});
          const Point x = truth(*t, s, n);
          (d.where == Where::gpu ? gpu_time : cpu_work) += d.where == Where::gpu ? x.gpu_ns : x.cpu1_ns;
        }
      const double gpu_bytes = double(s * n) * double(std::count_if(tickets.begin(), tickets.end(), [](auto& e) {
                                 return e.first.where == Where::gpu;
                               }));
      for (auto& [tk, t] : tickets)
        pl.finished(tk, tk.where == Where::cpu ? truth(*t, s, n).cpu1_ns : gpu_time * double(s * n) / gpu_bytes);
      const double planned = std::max(cpu_work / T, gpu_time), best = std::min(cpu_only, gpu_only);
      EXPECT_LE(planned, best * 1.05) << "jobs of " << s << " B x" << n << ", run " << run << ": planned "
                                      << planned / 1e6 << " ms, CPU only " << cpu_only / 1e6 << " ms, GPU only "
                                      << gpu_only / 1e6 << " ms";
    }
  }
}

// The crossover table printed by calibrate on the H100 host on 2026-11-25
// (docs/results/2026-11-25-planner.md; the profile itself was not kept): per
// batch size the smallest job size from which the GPU won, one measurement
// per cell. Rebuilt as points (a win: the GPU 1.3x sooner; a loss: 2x later),
// the planner's gate must be monotonic in jobs at every size, and the cells
// the table's notes call noise (memcpy: a win at x256 and x1024 between
// losses at x64 and x4096) must not open the GPU.
TEST(GpuGate, TheH100CrossoverTableOf2026_11_25) {
  const std::vector<uint64_t> batches{1, 4, 16, 64, 256, 1024, 4096};
  const std::vector<uint64_t> sizes{256, 4096, 65536, 1 << 20, 16 << 20};
  const uint64_t N = kNever;
  const std::map<std::string, std::vector<uint64_t>> table{
      {"aes-256-ctr", {1 << 20, 1 << 20, 65536, 256, 256, 256, 256}},
      {"aes-256-gcm-encrypt", {65536, 16 << 20, N, 256, 256, 256, 256}},
      {"sha256", {N, 16 << 20, 4096, 256, 256, 256, 256}},
      {"memcpy", {16 << 20, 1 << 20, 16 << 20, N, 4096, 256, N}},
      {"zstd-compress", {16 << 20, N, N, N, 256, 4096, N}},
  };
  for (const auto& [op, cells] : table) {
    std::vector<Point> pts;
    for (uint64_t s : sizes)
      for (size_t i = 0; i < batches.size(); ++i) {
        const uint64_t b = batches[i];
        if (s * b > (uint64_t{256} << 20)) continue;
        const double cpu = 1000.0 * double(b) * (1 + double(s) / 1000.0);
        pts.push_back({s, b, cpu * 16, cpu, s >= cells[i] ? cpu / 1.3 : cpu * 2});
      }
    const GpuGate g = gpu_gate(pts, 1.1);
    ASSERT_EQ(g.by_size.size(), sizes.size()) << op;
    for (const auto& t : g.by_size) {
      // Monotonic by construction: every measured batch from the threshold on is GPU, every one below CPU.
      SCOPED_TRACE(op + " at " + std::to_string(t.size) + " B");
      for (uint64_t b : batches) {
        if (t.size * b > (uint64_t{256} << 20)) continue;
        PlannerOptions po;
        po.gpu_usable = true;
        po.cpu_threads = 16;
        Profile p;
        p.ops[op].gpu_kernel = true;
        p.ops[op].points = pts;
        if (!gpo::backend::find_op(op) || !gpo::backend::find_op(op)->gpu) continue;
        const auto d = Planner(p, "", po).plan(op, t.size, b);
        EXPECT_EQ(d.where == Where::gpu, b >= t.min_batch) << "x" << b << ": " << d.reason;
      }
    }
    if (op == "memcpy") {
      // 256 B and 4 KiB: wins at x256 / x1024 only, between losses: never.
      EXPECT_EQ(g.min_batch(256), kNever);
      EXPECT_EQ(g.min_batch(4096), kNever);
    }
    if (op == "sha256") {
      EXPECT_EQ(g.min_batch(65536), 16u);  // 4 KiB from x16, so 64 KiB too
    }
  }
}

// A size measured only in small batches (16 MiB: batch bytes are capped) keeps
// its threshold in the larger columns: the table says what the planner does,
// and its columns never go back from a size to "never".
TEST(Planner, CrossoverColumnsFollowEachSizesThreshold) {
  Profile p;
  p.cpu_threads = 16;
  auto& o = p.ops["sha256"];
  o.gpu_kernel = true;
  // 4 KiB: the GPU loses at every batch. 16 MiB (measured up to 16 jobs, as
  // batch bytes are capped): the GPU loses one job, wins 16.
  for (uint64_t b : {1, 16, 256}) o.points.push_back({4096, b, 4096.0 * b, 1000.0 + 4096.0 * b / 16, 1e6});
  o.points.push_back({16 << 20, 1, 16e6, 16e6, 20e6});
  o.points.push_back({16 << 20, 16, 256e6, 20e6, 10e6});
  const Crossover c = crossover(p);
  ASSERT_EQ(c.rows.size(), 1u);
  const auto row = c.rows.begin();
  ASSERT_EQ(row->cells.size(), c.batches.size());
  std::map<uint64_t, std::string> cell;
  for (size_t i = 0; i < c.batches.size(); ++i) cell[c.batches[i]] = row->cells[i];
  EXPECT_EQ(cell[1], "never");
  EXPECT_EQ(cell[16], "16 MiB");
  EXPECT_EQ(cell[256], "16 MiB") << "256 jobs of 16 MiB were not measured; the planner sends them to the GPU";
  auto bytes = [](const std::string& s) -> uint64_t {
    if (s == "never" || s == "-") return UINT64_MAX;
    const uint64_t n = std::stoull(s);
    return s.find("MiB") != std::string::npos ? n << 20 : s.find("KiB") != std::string::npos ? n << 10 : n;
  };
  for (size_t i = 1; i < row->cells.size(); ++i)
    EXPECT_LE(bytes(row->cells[i]), bytes(row->cells[i - 1])) << "column " << c.batches[i] << " after "
                                                             << c.batches[i - 1];
}
