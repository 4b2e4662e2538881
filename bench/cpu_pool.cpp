// Suite "cpu-pool": where a small job loses time on the CPU backend's pool of N
// threads. The same jobs (one key, a new IV per job, in place over the same
// working set as `bench crypto`'s reference: 3 sets of 4 MiB) run five ways on
// N threads, so that each step from the ideal to the pool shows its own cost:
//   OpenSSL      the loop `openssl speed` runs on one buffer per thread
//                (GCM: `-aead`'s, a message per call, as a job is), and
//                the same loop making each call the whole message a job
//                must (GCM: the tag read back; CTR: a new IV per call);
//   own job      each thread one job over its own buffer, again and again:
//                the job path (EVP per message) with the data in L1/L2;
//   own slice    each thread the jobs of its own slice of the working set, in
//                turn: the data stays in the thread's own caches;
//   shared       chunks of the pool's size claimed from one atomic counter by
//                every thread: the data moves between cores as in the pool,
//                with no queue, lock or wake-up;
//   pool         the CPU backend, 3 batches kept in flight (the reference).
// Every way runs once per round, in rotating order, over several rounds: the
// host's speed drifts more within a minute than the gaps measured here.
// --set threads=8,16 (thread counts), --set chunk=BYTES (the pool's chunk),
// --set rounds=N (5; 1 with --quick).
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "backend/ops.h"
#include "bench/cpu_reference.h"

namespace gpo::bench {
namespace {

using backend::Job;
using backend::OpId;
using Clock = std::chrono::steady_clock;

constexpr size_t kSetBytes = size_t{4} << 20;
constexpr int kSets = 3;

struct Workload {
  OpId op;
  size_t size;
  std::vector<uint8_t> mem, digests, ivs;
  uint8_t key[32];
  size_t per_set;
  std::vector<Job> jobs;  // over mem, kSets * per_set of them

  // A set: 4 MiB, or one job per thread if that is more (as bench crypto's reference).
  Workload(OpId o, size_t s, unsigned threads) : op(o), size(s), per_set(std::max<size_t>(threads, kSetBytes / s)) {
    const size_t n = kSets * per_set;
    mem.resize(n * size);
    digests.resize(32 * n);
    ivs.resize(16 * n);
    fill_random(mem.data(), mem.size(), 5);
    fill_random(key, sizeof key, 3);
    fill_random(ivs.data(), ivs.size(), 4);
    jobs.resize(n);
    for (size_t i = 0; i < n; ++i) jobs[i] = job(i, {mem.data() + i * size, size});
  }
  Job job(size_t i, std::span<uint8_t> bytes) {
    Job j;
    j.op = op;
    j.in = bytes;
    if (op == OpId::sha256) {
      j.out = {digests.data() + 32 * i, 32};
    } else {
      j.out = bytes;
      j.key = {key, 32};
      j.iv = {ivs.data() + 16 * i, size_t(op == OpId::aes256_ctr ? 16 : 12)};
    }
    return j;
  }
};

// Runs body(thread, &stop) on n threads started together for min_seconds;
// body returns the bytes it did. Bytes per second in all.
template <typename Body>
double on_threads(unsigned n, double min_seconds, Body body) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bytes{0};
  std::atomic<unsigned> ready{0};
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < n; ++t)
    ts.emplace_back([&, t] {
      ready++;
      while (ready.load() < n) std::this_thread::yield();
      bytes += body(t, stop);
    });
  while (ready.load() < n) std::this_thread::yield();
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(min_seconds));
  stop = true;
  for (auto& t : ts) t.join();
  return double(bytes.load()) / seconds_since(t0);
}

bool run(Job& j, int* failed) {
  j.status = backend::Status::pending;
  if (backend::run_on_cpu(j) != backend::Status::ok) *failed = 1;
  return true;
}

double own_job(Workload& w, unsigned n, double secs, int* failed) {
  return on_threads(n, secs, [&](unsigned t, std::atomic<bool>& stop) {
    std::vector<uint8_t> buf(w.size);
    fill_random(buf.data(), buf.size(), t + 1);
    Job j = w.job(t % w.jobs.size(), buf);
    uint64_t done = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      run(j, failed);
      done += w.size;
    }
    return done;
  });
}

double own_slice(Workload& w, unsigned n, double secs, int* failed) {
  return on_threads(n, secs, [&](unsigned t, std::atomic<bool>& stop) {
    const size_t per = std::max<size_t>(1, w.jobs.size() / n), lo = std::min(w.jobs.size() - 1, t * per);
    const size_t hi = std::min(w.jobs.size(), lo + per);
    uint64_t done = 0;
    for (size_t i = lo; !stop.load(std::memory_order_relaxed); i = i + 1 < hi ? i + 1 : lo) {
      run(w.jobs[i], failed);
      done += w.size;
    }
    return done;
  });
}

double shared_counter(Workload& w, unsigned n, uint64_t chunk_bytes, double secs, int* failed) {
  const size_t per_chunk = std::max<size_t>(1, chunk_bytes / w.size);
  const size_t chunks = (w.jobs.size() + per_chunk - 1) / per_chunk;
  std::atomic<uint64_t> next{0};
  return on_threads(n, secs, [&](unsigned, std::atomic<bool>& stop) {
    uint64_t done = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const size_t c = next.fetch_add(1, std::memory_order_relaxed) % chunks;
      for (size_t i = c * per_chunk; i < std::min(w.jobs.size(), (c + 1) * per_chunk); ++i) {
        run(w.jobs[i], failed);
        done += w.size;
      }
    }
    return done;
  });
}

}  // namespace

int run_cpu_pool(const Options& opt, std::vector<Table>& out) {
  const unsigned all = opt.threads ? opt.threads : std::max(1u, std::thread::hardware_concurrency());
  const auto counts = setting_list(opt, "threads", {std::max(1u, all / 2), all});
  const uint64_t chunk_set = std::stoull(setting(opt, "chunk", "0"));
  const int rounds = std::max(1, std::stoi(setting(opt, "rounds", opt.quick ? "1" : "5")));
  struct Shape {
    OpId op;
    size_t size;
  };
  const std::vector<Shape> shapes =
      opt.quick ? std::vector<Shape>{{OpId::aes256_gcm_encrypt, 4096}}
                : std::vector<Shape>{{OpId::aes256_gcm_encrypt, 4096},  {OpId::aes256_gcm_encrypt, 65536},
                                     {OpId::aes256_gcm_encrypt, 1 << 20}, {OpId::aes256_ctr, 4096},
                                     {OpId::sha256, 4096}};
  Table t;
  t.title = "The CPU pool against per-thread loops over the same jobs, GB/s of input";
  t.columns = {"op, job", "threads", "OpenSSL loop", "per message", "own job", "own slice", "shared counter",
               "pool", "pool / own slice", "pool / OpenSSL", "pool / per message", "pool chunk"};
  int failed = 0;
  for (const auto& s : shapes) {
    Workload w(s.op, s.size, *std::max_element(counts.begin(), counts.end()));
    for (uint32_t n : counts) {
      backend::CpuBackend pool(n, chunk_set);
      // The pool's chunk for these batches: what make_run picks (or --set chunk).
      const uint64_t chunk = pool.chunk_bytes(w.per_set * s.size);
      const double secs = opt.min_seconds;
      const bool gcm = s.op == OpId::aes256_gcm_encrypt, cipher = gcm || s.op == OpId::aes256_ctr;
      std::vector<std::function<double()>> ways = {
          [&] { return openssl_loop(s.op, s.size, n, secs, gcm ? Loop::aead : Loop::speed); },
          [&] { return own_job(w, n, secs, &failed); }, [&] { return own_slice(w, n, secs, &failed); },
          [&] { return shared_counter(w, n, chunk, secs, &failed); },
          [&] { return backend_in_flight(pool, s.op, s.size, w.per_set, kSets, secs, &failed); }};
      // A cipher's message (its IV, and GCM's tag): the others' loop (way 0) already makes one per call.
      const size_t msg = cipher ? ways.size() : 0;
      if (cipher) ways.push_back([&] { return openssl_loop(s.op, s.size, n, secs, Loop::message); });
      const auto got = interleaved(rounds, ways);
      const auto &o = got[0], &d = got[4], &m = got[msg];
      t.rows.push_back({fmt::format("{} {}", backend::find_op(s.op)->name, fmt_size(s.size)), std::to_string(n),
                        fmt_gbps(median(o)), cipher ? fmt_gbps(median(m)) : "=", fmt_gbps(median(got[1])),
                        fmt_gbps(median(got[2])), fmt_gbps(median(got[3])), fmt_gbps(median(d)),
                        fmt::format("{:.0f}%", 100 * median(round_ratios(d, got[2]))),
                        fmt_ratio_spread(round_ratios(d, o)), fmt_ratio_spread(round_ratios(d, m)),
                        fmt_size(chunk)});
    }
  }
  t.notes.push_back(fmt::format("working set: {} sets of {} (or one job per thread) in place, as bench crypto's "
                                "reference",
                                kSets, fmt_size(kSetBytes)));
  t.notes.push_back("OpenSSL loop: `openssl speed`'s loop replicated in this process, one buffer per thread: for "
                    "GCM `-aead`'s (a new IV, 13 bytes of AAD, update and final per message, as a job), for the "
                    "others `-evp`'s (bench crypto's speed loop); per message: the same loop making each call the "
                    "message a job is (GCM: reading its tag as well, with EVP_CIPHER_CTX_get_params; CTR: a new IV "
                    "per call), which `openssl speed` does not and a job must; '=': the loop already does");
  t.notes.push_back(fmt::format("each figure: {}{}", rounds_note(rounds), rounds == 1 ? "" : "; the ratios: ") +
                    (rounds == 1 ? "" : ratio_note));
  t.notes.push_back("own job: one buffer per thread (in its caches); own slice: each thread its part of the working "
                    "set; shared counter: the pool's chunks claimed from one atomic counter (data moves between "
                    "cores, no queue); pool: the CPU backend with 3 batches in flight");
  if (failed) t.notes.push_back("A JOB FAILED: figures are not valid");
  out.push_back(std::move(t));
  return failed;
}

}  // namespace gpo::bench
