#include "backend/cpu_backend.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>

#include "backend/ops.h"
#include "util/cpus.h"

namespace gpo::backend {

void Backend::run(Batch& batch) {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  submit(batch, [&](Batch&) {
    std::lock_guard lk(mu);
    done = true;
    cv.notify_all();
  });
  std::unique_lock lk(mu);
  cv.wait(lk, [&] { return done; });
}

namespace {

uint64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

// A worker's staging buffer for private inputs: kept between jobs up to
// kKeepStagingBytes, so that one huge job does not pin its size in every
// worker for good.
constexpr size_t kKeepStagingBytes = 16 << 20;

struct Staging {
  std::vector<uint8_t> buf;
  std::span<const uint8_t> copy(std::span<const uint8_t> a, std::span<const uint8_t> b, std::span<const uint8_t>* b_copy) {
    if (buf.size() < a.size() + b.size()) buf.resize(a.size() + b.size());
    if (!a.empty()) std::memcpy(buf.data(), a.data(), a.size());
    if (!b.empty()) std::memcpy(buf.data() + a.size(), b.data(), b.size());
    if (b_copy) *b_copy = {buf.data() + a.size(), b.size()};
    return {buf.data(), a.size()};
  }
  void trim() {
    if (buf.capacity() > kKeepStagingBytes) std::vector<uint8_t>().swap(buf);
  }
};

Staging& staging() {
  thread_local Staging s;
  return s;
}

// Runs one whole job; a private_input job on a copy of its input and AAD in
// this worker's staging buffer (the job's own spans are left as they were):
// the library then reads bytes nobody else can change while it runs.
void run_job(Job& j) {
  j.ran = Ran::cpu;
  if (!j.private_input || (j.in.empty() && j.aad.empty())) {
    run_on_cpu(j);
    return;
  }
  Staging& st = staging();
  Job c = j;
  c.in = st.copy(j.in, j.aad, &c.aad);
  run_on_cpu(c);
  j.status = c.status;
  j.out_len = c.out_len;
  j.tag = c.tag;
  st.trim();
}

Status run_range(const OpInfo& op, Job& j, uint64_t lo, uint64_t hi, uint64_t* part) {
  std::span<const uint8_t> bytes = j.in.subspan(lo, hi - lo);
  if (!j.private_input) return op.cpu_range(j, lo, bytes, part);
  Staging& st = staging();
  const Status s = op.cpu_range(j, lo, st.copy(bytes, {}, nullptr), part);
  st.trim();
  return s;
}

}  // namespace

// One submitted batch (or run_jobs call). Chunk k is either whole jobs
// [first, last) or input bytes [lo, hi) of jobs[first] (part >= 0: its index
// in parts). Slot s deals chunks [slots[s].next, slots[s].end) out; left
// counts chunks not finished. References: one until finish(), one per worker
// (or run_jobs caller) inside the run; the last release deletes it. queued is
// guarded by the backend's mutex, and a worker takes its reference under it,
// so no worker can enter a run that has left the queue.
struct CpuBackend::Run {
  struct Chunk {
    uint32_t first = 0, last = 0;
    int32_t part = -1;
    uint64_t lo = 0, hi = 0;
  };
  struct Split {
    uint32_t job;
    uint32_t first_part, nparts;
  };
  std::vector<Job*> jobs;
  std::vector<Chunk> chunks;
  std::vector<Split> splits;
  std::vector<uint64_t> parts, part_end;
  std::vector<Status> part_status;
  struct alignas(64) Slot {  // a line each: the owner's counter is not the stealers' cache miss
    std::atomic<uint32_t> next{0};
    uint32_t end = 0;
  };
  std::unique_ptr<Slot[]> slots;
  unsigned nslots = 0;
  bool queued = false;
  std::atomic<uint32_t> refs{1};
  std::atomic<size_t> left{0};
  std::atomic<uint64_t> cpu_ns{0};
  std::atomic<uint64_t> on_waiter_cpu{0};  // jobs a worker ran on their Job::cpu
  uint64_t bytes = 0;
  Batch* batch = nullptr;  // submit(): completed through done, then deleted
  Completion done;
  std::function<void(uint64_t)> on_done;  // start_jobs(): completed through on_done, then deleted
  // run_jobs(): the caller's wait.
  std::mutex* wait_mu = nullptr;
  std::condition_variable* wait_cv = nullptr;
  bool finished = false;
};

CpuBackend::CpuBackend(unsigned threads, uint64_t chunk) : chunk_(chunk) {
  const std::vector<int32_t> cpus = util::allowed_cpus();
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  // One worker per CPU the process may use: each pinned to its own, so that a
  // job can run where its submitter waits. Fewer or more workers than those
  // CPUs (a restricted mask): the scheduler places them.
  if (!cpus.empty() && threads == cpus.size()) {
    cpu_of_worker_ = cpus;
    worker_of_cpu_.assign(size_t(cpus.back()) + 1, -1);
    for (unsigned i = 0; i < threads; ++i) worker_of_cpu_[size_t(cpus[i])] = int32_t(i);
  }
  seats_ = std::make_unique<Seat[]>(threads);
  for (unsigned i = 0; i < threads; ++i) workers_.emplace_back([this, i] { worker(i); });
}

CpuBackend::~CpuBackend() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
    for (unsigned w : sleepers_) seats_[w].asleep = false;
    sleepers_.clear();
  }
  for (unsigned i = 0; i < threads(); ++i) seats_[i].cv.notify_one();
  for (auto& t : workers_) t.join();
}

uint64_t CpuBackend::chunk_bytes(uint64_t total) const {
  if (chunk_) return chunk_;
  return std::clamp<uint64_t>(total / (2 * uint64_t(threads())), kMinChunkBytes, kMaxChunkBytes);
}

CpuBackend::Run* CpuBackend::make_run(std::vector<Job*> jobs) const {
  auto* r = new Run;
  r->jobs = std::move(jobs);
  const size_t n = r->jobs.size();
  // A job of no bytes still costs a call: count it as a few hundred bytes.
  auto weight = [](const Job& j) { return std::max<uint64_t>(j.in.size(), 256); };
  uint64_t total = 0;
  for (const Job* j : r->jobs) {
    total += weight(*j);
    r->bytes += j->in.size();
  }
  const uint64_t chunk = chunk_bytes(total);
  uint64_t acc = 0;
  uint32_t open = 0;  // first job of the chunk being grouped
  auto close_group = [&](uint32_t end) {
    if (end > open) r->chunks.push_back({open, end, -1, 0, 0});
    open = end;
    acc = 0;
  };
  for (uint32_t i = 0; i < n; ++i) {
    Job& j = *r->jobs[i];
    const OpInfo* op = find_op(j.op);
    const uint64_t len = j.in.size();
    if (op && op->cpu_range && len > 2 * chunk && validate_job(j) == Status::ok) {
      // A long splittable job: ranges of about one chunk, on split_align boundaries.
      close_group(i);
      const uint64_t align = std::max<size_t>(op->split_align, 1);
      const uint64_t step = std::max<uint64_t>(chunk / align, 1) * align;
      Run::Split s{i, uint32_t(r->parts.size()), 0};
      for (uint64_t lo = 0; lo < len; lo += step) {
        const uint64_t hi = len - lo <= step + step / 2 ? len : lo + step;  // no sliver at the end
        r->chunks.push_back({i, i + 1, int32_t(r->parts.size()), lo, hi});
        r->parts.push_back(0);
        r->part_end.push_back(hi);
        r->part_status.push_back(Status::pending);
        ++s.nparts;
        if (hi == len) break;
      }
      r->splits.push_back(s);
      open = i + 1;
      continue;
    }
    if (weight(j) >= chunk) {  // a large job: a chunk of its own
      close_group(i);
      close_group(i + 1);
      continue;
    }
    acc += weight(j);
    if (acc >= chunk) close_group(i + 1);
  }
  close_group(uint32_t(n));
  r->left = r->chunks.size();
  // Contiguous slots of chunks, as even as they divide.
  const size_t nc = r->chunks.size();
  r->nslots = unsigned(std::max<size_t>(1, std::min<size_t>(threads(), nc)));
  r->slots = std::make_unique<Run::Slot[]>(r->nslots);
  for (unsigned k = 0; k < r->nslots; ++k) {
    r->slots[k].next = uint32_t(nc * k / r->nslots);
    r->slots[k].end = uint32_t(nc * (k + 1) / r->nslots);
  }
  return r;
}

void CpuBackend::pick_sleepers(size_t chunks, int32_t cpu, std::vector<unsigned>* wake) {
  auto take = [&](std::deque<unsigned>::iterator it) {
    seats_[*it].asleep = false;
    wake->push_back(*it);
    sleepers_.erase(it);
  };
  if (cpu >= 0 && size_t(cpu) < worker_of_cpu_.size() && worker_of_cpu_[size_t(cpu)] >= 0 && chunks > 0) {
    const unsigned w = unsigned(worker_of_cpu_[size_t(cpu)]);
    if (seats_[w].asleep) {
      take(std::find(sleepers_.begin(), sleepers_.end(), w));
      --chunks;
    }
  }
  while (chunks-- > 0 && !sleepers_.empty()) take(sleepers_.begin());
}

void CpuBackend::enqueue(Run* r) {
  std::vector<unsigned> wake;
  {
    std::lock_guard lk(mu_);
    queue_.push_back(r);
    r->queued = true;
    // A run of one chunk: the CPU its (first) job's submitter waits on.
    pick_sleepers(r->chunks.size(), r->chunks.size() == 1 ? r->jobs[r->chunks[0].first]->cpu : -1, &wake);
  }
  // Each woken worker's asleep was cleared under the lock: notified after
  // it, it cannot miss the wake.
  for (unsigned w : wake) seats_[w].cv.notify_one();
}

bool CpuBackend::claim(Run& r, unsigned slot, size_t* chunk) {
  for (unsigned i = 0; i < r.nslots; ++i) {
    Run::Slot& s = r.slots[(slot + i) % r.nslots];
    // A look first: an exhausted slot costs a read, not a write to a shared line.
    if (s.next.load(std::memory_order_relaxed) >= s.end) continue;
    const uint32_t k = s.next.fetch_add(1, std::memory_order_relaxed);
    if (k < s.end) {
      *chunk = k;
      return true;
    }
  }
  return false;
}

void CpuBackend::dequeue(Run* r) {
  std::lock_guard lk(mu_);
  if (!r->queued) return;
  r->queued = false;
  queue_.erase(std::find(queue_.begin(), queue_.end(), r));
}

void CpuBackend::release(Run* r) {
  if (r->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete r;
}

void CpuBackend::run_chunk(Run& r, size_t k, int32_t cpu, uint64_t* clock) {
  // The thread CPU clock is a system call (a few hundred ns on a VM, against
  // 10-20 us of a chunk): a worker going from chunk to chunk reads it once
  // per chunk, the end of one being the start of the next (clock).
  const uint64_t t0 = clock ? *clock : thread_cpu_ns();
  const Run::Chunk& c = r.chunks[k];
  if (c.part >= 0) {
    Job& j = *r.jobs[c.first];
    r.part_status[size_t(c.part)] = run_range(*find_op(j.op), j, c.lo, c.hi, &r.parts[size_t(c.part)]);
  } else {
    for (uint32_t i = c.first; i < c.last; ++i) {
      run_job(*r.jobs[i]);
      if (cpu >= 0 && r.jobs[i]->cpu == cpu) r.on_waiter_cpu.fetch_add(1, std::memory_order_relaxed);
    }
  }
  const uint64_t t1 = thread_cpu_ns();
  r.cpu_ns += t1 - t0;
  if (clock) *clock = t1;
}

void CpuBackend::finish(Run* r) {
  for (const auto& s : r->splits) {
    Job& j = *r->jobs[s.job];
    j.ran = Ran::cpu;
    j.status = Status::ok;
    for (uint32_t p = s.first_part; p < s.first_part + s.nparts; ++p)
      if (r->part_status[p] != Status::ok) j.status = r->part_status[p];
    const OpInfo* op = find_op(j.op);
    if (j.status == Status::ok && op->join)
      op->join(j, std::span(r->parts).subspan(s.first_part, s.nparts),
               std::span(r->part_end).subspan(s.first_part, s.nparts));
  }
  if (r->on_done) {  // start_jobs(): counted by the backend that called it
    auto f = std::move(r->on_done);
    const uint64_t ns = r->cpu_ns;
    release(r);
    f(ns);
    return;
  }
  if (!r->batch) {  // run_jobs(): counted by the backend that called it
    {
      std::lock_guard lk(*r->wait_mu);
      r->finished = true;
      r->wait_cv->notify_all();  // under the lock: the caller's mutex and cv go once it sees finished
    }
    release(r);  // the caller holds its own reference until it has read the run
    return;
  }
  {
    std::lock_guard lk(stats_mu_);
    stats_.batches++;
    stats_.jobs += r->jobs.size();
    stats_.bytes += r->bytes;
    stats_.cpu_ns += r->cpu_ns;
    stats_.split_jobs += r->splits.size();
    stats_.jobs_on_waiter_cpu += r->on_waiter_cpu;
  }
  Batch& b = *r->batch;
  b.ran_on = "cpu";
  b.cpu_ns += r->cpu_ns;
  Completion done = std::move(r->done);
  release(r);
  done(b);
}

void CpuBackend::worker(unsigned index) {
  // Named for `top -H` and `ps -L`: gpo-cpu/N.
  char name[16];
  std::snprintf(name, sizeof name, "gpo-cpu/%u", index);
  pthread_setname_np(pthread_self(), name);
  const int32_t cpu = cpu_of_worker_.empty() ? -1 : cpu_of_worker_[index];
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);  // a failure only loses locality
  }
  Seat& seat = seats_[index];
  uint64_t clock = 0;
  bool fresh = false;  // clock is the end of this worker's last chunk, nothing run since
  for (;;) {
    Run* r = nullptr;
    {
      std::unique_lock lk(mu_);
      while (!stop_ && queue_.empty()) {
        fresh = false;
        seat.asleep = true;
        sleepers_.push_back(index);
        seat.cv.wait(lk, [&] { return !seat.asleep; });
      }
      if (queue_.empty()) return;  // stop_ and drained
      r = queue_.front();
      r->refs.fetch_add(1, std::memory_order_relaxed);
    }
    size_t k = 0;
    while (claim(*r, index, &k)) {
      if (!fresh) clock = thread_cpu_ns();
      run_chunk(*r, k, cpu, &clock);
      fresh = true;
      if (r->left.fetch_sub(1) == 1) {
        finish(r);  // the completion's work is not the next chunk's
        fresh = false;
      }
    }
    dequeue(r);  // all taken: the next worker looks at the next run
    release(r);
  }
}

void CpuBackend::submit(Batch& batch, Completion done) {
  std::vector<Job*> jobs;
  jobs.reserve(batch.jobs.size());
  for (auto& j : batch.jobs) jobs.push_back(&j);
  Run* r = make_run(std::move(jobs));
  r->batch = &batch;
  r->done = std::move(done);
  if (r->chunks.empty()) {  // an empty batch: done at once
    finish(r);
    return;
  }
  enqueue(r);
}

uint64_t CpuBackend::run_jobs(std::span<Job* const> jobs) {
  if (jobs.empty()) return 0;
  Run* r = make_run(std::vector<Job*>(jobs.begin(), jobs.end()));
  std::mutex mu;
  std::condition_variable cv;
  r->wait_mu = &mu;
  r->wait_cv = &cv;
  r->refs.fetch_add(1);  // the caller's, kept until it has read the run
  if (r->chunks.size() > 1) enqueue(r);
  // The caller works on its own run too (from the last slot, the workers
  // start at theirs): one chunk needs no worker at all.
  size_t k;
  while (claim(*r, r->nslots - 1, &k)) {
    run_chunk(*r, k, -1);
    if (r->left.fetch_sub(1) == 1) finish(r);
  }
  dequeue(r);
  {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return r->finished; });
  }
  const uint64_t ns = r->cpu_ns;
  release(r);
  return ns;
}

void CpuBackend::start_jobs(std::vector<Job*> jobs, std::function<void(uint64_t)> done) {
  if (jobs.empty()) {
    done(0);
    return;
  }
  Run* r = make_run(std::move(jobs));
  r->on_done = std::move(done);
  enqueue(r);
}

unsigned CpuBackend::asleep() const {
  std::lock_guard lk(mu_);
  return unsigned(sleepers_.size());
}

Stats CpuBackend::stats() const {
  std::lock_guard lk(stats_mu_);
  return stats_;
}

}  // namespace gpo::backend
