// The CPU backend: OpenSSL, libzstd and zlib on a pool of worker threads.
// Serves everything when there is no GPU, and re-runs jobs a GPU failed.
//
// Every submitted batch becomes a run: its jobs grouped into chunks of about
// the same work (many small jobs per chunk, one large job alone, a long
// splittable job cut into ranges), queued FIFO. Idle workers take chunks of
// the oldest run; several runs are worked on at once, so a batch of one job
// keeps one worker busy and the others take the next batches. A submit wakes
// at most as many sleeping workers as its run has chunks (never one per job);
// a worker that finishes a chunk takes the next without sleeping. The worker
// that finishes a run's last chunk joins split jobs and calls done().
//
// A run's chunks are dealt out in contiguous slots, one per worker: worker w
// takes the chunks of slot w first (an atomic counter, no lock), then steals
// from the other slots. So a worker runs the same part of every batch of the
// same shape, whose bytes its own caches may still hold (on 16 threads,
// chunks moving from core to core cost a quarter of small-job throughput),
// and the queue's lock is taken once per run a worker joins, not per chunk.
//
// With as many workers as the process may use CPUs (the default), worker w is
// pinned to the w-th of those CPUs. A run of one chunk whose job names the CPU
// its submitter waits on (Job::cpu: a client asleep until its job is done)
// wakes that CPU's worker when it sleeps: the worker runs where the client's
// input was just written, and the client's wake at the end is local instead
// of a wake of a vCPU that sat idle for the whole job.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "backend/backend.h"

namespace gpo::backend {

class CpuBackend final : public Backend {
 public:
  // threads: 0 = all cores. chunk: the bytes of input a chunk carries; 0 =
  // about total / (2 x threads) of each batch, within the bounds below.
  explicit CpuBackend(unsigned threads = 0, uint64_t chunk = 0);
  ~CpuBackend() override;                     // runs what is queued, then joins
  std::string name() const override { return "cpu"; }
  void submit(Batch& batch, Completion done) override;
  Stats stats() const override;
  Capacity capacity() const override { return {threads(), threads()}; }
  // Runs jobs on the pool, the calling thread helping, and returns when all
  // are done (GPU retries, jobs a GPU backend hands to the CPU) with the CPU
  // time they took on all threads. Not counted in stats(): the caller counts.
  uint64_t run_jobs(std::span<Job* const> jobs);
  // Runs jobs on the pool without waiting; done(cpu_ns) is called once, on a
  // pool thread (at once when jobs is empty). Not counted in stats() either.
  void start_jobs(std::vector<Job*> jobs, std::function<void(uint64_t cpu_ns)> done);
  unsigned threads() const { return unsigned(workers_.size()); }
  unsigned asleep() const;  // workers asleep now, waiting for work

  // Chunking: a chunk carries about total / (2 x threads) bytes of input,
  // within these bounds; a splittable job longer than two chunks is cut.
  static constexpr uint64_t kMinChunkBytes = 64 << 10;
  static constexpr uint64_t kMaxChunkBytes = 4 << 20;
  // The chunk a batch of `total` input bytes is cut into.
  uint64_t chunk_bytes(uint64_t total) const;

 private:
  struct Run;
  Run* make_run(std::vector<Job*> jobs) const;
  void enqueue(Run* r);
  // A chunk of r, slot `slot`'s first, then any other's; false when all are taken.
  static bool claim(Run& r, unsigned slot, size_t* chunk);
  void dequeue(Run* r);          // r leaves the queue (all its chunks are taken)
  static void release(Run* r);   // drops one reference; the last deletes r
  // cpu: the worker's pinned CPU, or -1 (jobs whose Job::cpu it is are counted).
  void run_chunk(Run& r, size_t chunk, int32_t cpu, uint64_t* clock = nullptr);
  void finish(Run* r);
  void worker(unsigned index);

  // Takes up to `chunks` workers out of sleepers_ (a run's CPU's worker
  // first, if asleep), with mu_ held; the caller notifies them after
  // unlocking.
  void pick_sleepers(size_t chunks, int32_t cpu, std::vector<unsigned>* wake);

  struct Seat {  // a worker's own wait, so that a submit can wake a chosen one
    std::condition_variable cv;
    bool asleep = false;  // in sleepers_; cleared (under mu_) by whoever wakes it
  };
  mutable std::mutex mu_;
  std::deque<Run*> queue_;       // runs with chunks not yet taken, oldest first
  std::unique_ptr<Seat[]> seats_;
  std::deque<unsigned> sleepers_;  // asleep, the first asleep first
  bool stop_ = false;
  std::vector<int32_t> cpu_of_worker_;   // pinned: worker w's CPU; empty: not pinned
  std::vector<int32_t> worker_of_cpu_;   // pinned: CPU c's worker, or -1
  uint64_t chunk_ = 0;  // fixed chunk, or 0
  std::vector<std::thread> workers_;
  mutable std::mutex stats_mu_;
  Stats stats_;
};

}  // namespace gpo::backend
