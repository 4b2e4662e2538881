#include "backend/cpu_backend.h"

#include "backend/ops.h"

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

CpuBackend::CpuBackend(unsigned threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 1; i < threads; ++i) workers_.emplace_back([this] { worker(); });
  dispatcher_ = std::thread([this] { dispatcher(); });
}

CpuBackend::~CpuBackend() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  dispatcher_.join();
  for (auto& t : workers_) t.join();
}

void CpuBackend::work_on(Task& t) {
  for (;;) {
    size_t i = t.next.fetch_add(1);
    if (i >= t.jobs.size()) return;
    run_on_cpu(*t.jobs[i]);
    if (t.left.fetch_sub(1) == 1) {
      std::lock_guard lk(mu_);
      done_cv_.notify_all();
    }
  }
}

void CpuBackend::worker() {
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return stop_ || (task_ && task_->next.load() < task_->jobs.size()); });
    if (stop_) return;
    Task* t = task_;
    ++busy_;  // run_jobs() keeps the task alive until no worker holds it
    lk.unlock();
    work_on(*t);
    lk.lock();
    if (--busy_ == 0) done_cv_.notify_all();
  }
}

void CpuBackend::run_jobs(std::span<Job* const> jobs) {
  if (jobs.empty()) return;
  std::lock_guard one(run_mu_);
  Task t;
  t.jobs = jobs;
  t.left = jobs.size();
  {
    std::lock_guard lk(mu_);
    task_ = &t;
  }
  cv_.notify_all();
  work_on(t);
  std::unique_lock lk(mu_);
  done_cv_.wait(lk, [&] { return t.left.load() == 0 && busy_ == 0; });
  task_ = nullptr;
}

void CpuBackend::dispatcher() {
  for (;;) {
    std::pair<Batch*, Completion> item;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ and drained
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    Batch& b = *item.first;
    std::vector<Job*> jobs;
    jobs.reserve(b.jobs.size());
    uint64_t bytes = 0;
    for (auto& j : b.jobs) {
      jobs.push_back(&j);
      bytes += j.in.size();
    }
    run_jobs(jobs);
    b.ran_on = "cpu";
    {
      std::lock_guard lk(stats_mu_);
      stats_.batches++;
      stats_.jobs += jobs.size();
      stats_.bytes += bytes;
    }
    item.second(b);
  }
}

void CpuBackend::submit(Batch& batch, Completion done) {
  {
    std::lock_guard lk(mu_);
    queue_.emplace_back(&batch, std::move(done));
  }
  cv_.notify_all();
}

Stats CpuBackend::stats() const {
  std::lock_guard lk(stats_mu_);
  return stats_;
}

}  // namespace gpo::backend
