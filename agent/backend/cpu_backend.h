// The CPU backend: OpenSSL EVP on a pool of threads, one job per task.
// Serves everything when there is no GPU, and re-runs jobs a GPU failed.
#pragma once
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "backend/backend.h"

namespace gpo::backend {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(unsigned threads = 0);  // 0 = all cores
  ~CpuBackend() override;
  std::string name() const override { return "cpu"; }
  void submit(Batch& batch, Completion done) override;
  Stats stats() const override;
  // Runs jobs on the pool and returns when all are done (used for GPU retries).
  void run_jobs(std::span<Job* const> jobs);
  unsigned threads() const { return unsigned(workers_.size()) + 1; }

 private:
  struct Task {
    std::span<Job* const> jobs;
    std::atomic<size_t> next{0};
    std::atomic<size_t> left{0};
  };
  void worker();
  void dispatcher();
  void work_on(Task& t);

  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  Task* task_ = nullptr;  // the parallel task the pool works on, if any
  unsigned busy_ = 0;     // workers inside work_on(*task_)
  std::mutex run_mu_;     // one parallel task at a time
  std::deque<std::pair<Batch*, Completion>> queue_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
  std::thread dispatcher_;
  mutable std::mutex stats_mu_;
  Stats stats_;
};

}  // namespace gpo::backend
