// The backend interface: how batches of jobs reach the CPU or a GPU.
//
// A Job is one independent piece of work of one op (ops.h): input and output
// spans in host memory, key/iv/aad/tag where the op has them, and a status the
// backend sets. A Batch is jobs of any ops; a backend groups them by op. A
// batch is a unit of grouping, not of parallelism: backends run several
// batches at once where they can (the CPU backend on all its threads).
// submit() is asynchronous: every job of the batch is run exactly once (on the
// GPU, or on the CPU when the GPU failed) and then done(batch) is called once,
// on a backend thread. docs/backends.md has the whole contract.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/op_table.h"

namespace gpo::backend {

enum class Status : uint8_t {
  pending = 0,
  ok = 1,
  auth_failed = 2,  // GCM decrypt: the tag did not match; out must not be used
  invalid = 3,      // the job is malformed (sizes, missing key); nothing ran
  failed = 4,       // no backend could run it (should not happen: CPU is the last resort)
};
const char* status_name(Status s);

// Where a job was computed, set by the backend that ran it (tests assert the
// GPU did the work; a CPU fallback shows here even when its batch ran on a GPU).
enum class Ran : uint8_t { not_yet = 0, cpu = 1, gpu = 2 };

struct Job {
  OpId op = OpId::sha256;
  std::span<const uint8_t> in;
  // Sizes: op_params(op) (op_table.h), checked by validate_job().
  std::span<uint8_t> out;        // cipher ops: in.size() bytes (may alias in); sha256: 32 bytes
  std::span<const uint8_t> key;  // AES: 32 bytes
  std::span<const uint8_t> iv;   // GCM: 12 bytes, CTR: 16 bytes (the initial counter block)
  std::span<const uint8_t> aad;  // GCM only
  std::array<uint8_t, 16> tag{}; // GCM encrypt: written; GCM decrypt: the expected tag
  Status status = Status::pending;
  size_t out_len = 0;            // bytes of out written, for ops whose output size varies (zstd)
  int level = 0;                 // zstd / zlib compress level
  uint32_t crc = 0;              // crc32: the crc to continue from (zlib's first argument; 0 to start)
  // The CPU backend runs the job on a private copy of in, taken by the worker
  // just before it runs (a per-worker staging buffer): for inputs in memory
  // that another process may still write (a client slab).
  bool private_input = false;
  // The CPU the submitter waits on, or -1. The CPU backend runs a job that
  // makes a run of its own there when that CPU's worker is idle: the
  // submitter's wake is then local, and its input still in that core's cache.
  int32_t cpu = -1;
  Ran ran = Ran::not_yet;        // set by the backend (cpu: the CPU backend or a GPU backend's CPU fallback)
  uint64_t cookie = 0;           // the submitter's own, never touched
};

struct Batch {
  std::vector<Job> jobs;
  // Where the batch ran, set by the backend before done(): "cpu", "cuda:0",
  // or "cpu-retry" when a GPU error sent its jobs to the CPU.
  std::string ran_on;
  // Host CPU time the backend's threads spent on the batch (thread CPU clock),
  // set before done(): the jobs themselves on the CPU, preparation, staging
  // copies and waiting on a GPU.
  uint64_t cpu_ns = 0;
  // Wall time a GPU backend spent running it (its share, by bytes, of a run
  // that took several batches together); 0 where not measured.
  uint64_t run_ns = 0;
};

using Completion = std::function<void(Batch&)>;

// Counters every backend keeps; read at any time.
struct Stats {
  uint64_t batches = 0;
  uint64_t jobs = 0;
  uint64_t bytes = 0;        // input bytes
  uint64_t gpu_errors = 0;   // CUDA errors seen (each logged once)
  uint64_t cpu_retries = 0;  // jobs re-run on the CPU after a GPU error
  uint64_t cpu_ns = 0;       // host CPU time spent (Batch::cpu_ns summed)
  uint64_t split_jobs = 0;   // CPU: long jobs cut into ranges run on several threads
  uint64_t jobs_on_waiter_cpu = 0;  // CPU: jobs run on the CPU their submitter waits on (Job::cpu)
};

// How much work a backend runs at once; more waits in its queue. A batcher
// hands work over at once while the backend has room, and lets jobs gather
// into larger batches while it has none.
struct Capacity {
  uint32_t batches = 1;           // batches in flight that it works on (or prepares) at once
  uint32_t jobs = UINT32_MAX;     // jobs in flight it runs at once (CPU: its threads)
  // Input bytes it wants waiting beyond that (a GPU backend takes what queued
  // as one run): a batcher may hand full batches over until this much waits.
  // 0: as many batches again as it runs.
  uint64_t queue_bytes = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Runs every job of batch once, then calls done(batch) once from a backend
  // thread. The batch and the memory its spans point to must stay valid until
  // then. Jobs may be submitted from any thread.
  virtual void submit(Batch& batch, Completion done) = 0;
  virtual Stats stats() const = 0;
  virtual Capacity capacity() const { return {}; }
  // Host memory that will hold many jobs (a client slab): pinned once so the
  // GPU copies it by DMA without staging; now, or in the background once the
  // GPU has moved its size through it (a client's slab: most never need it).
  // No-op on the CPU backend.
  enum class Pin { now, on_first_gpu_use };
  virtual bool register_memory(void* /*p*/, size_t /*len*/, Pin /*when*/ = Pin::now) { return true; }
  virtual void unregister_memory(void* /*p*/) {}
  // submit() and wait for done().
  void run(Batch& batch);
};

// Chooses and builds a backend. choice (--backend): "auto" (CUDA when a GPU is
// usable, else the CPU, saying so in one log line), "cuda" (fails if no GPU), "cpu".
// gpus: device ordinals to use; empty means all devices of the host.
class CpuBackend;
struct Options {
  std::string choice = "auto";
  std::vector<int> gpus;
  unsigned cpu_threads = 0;  // 0 = all cores
  // The pool a CUDA backend hands CPU work and retries to; null: a new one. The
  // planned backend passes its own, so the agent runs one pool, not two.
  std::shared_ptr<CpuBackend> cpu;
};
std::unique_ptr<Backend> make_backend(const Options& opt);

// How many CUDA devices this process can use, or -1 with why when none (no
// driver, no device, agent built without CUDA).
int cuda_device_count(std::string* why);

}  // namespace gpo::backend
