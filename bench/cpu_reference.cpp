#include "bench/cpu_reference.h"

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <unistd.h>
#include <zstd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "backend/cpu_backend.h"
#include "backend/ops.h"

namespace gpo::bench {
namespace {

using backend::Job;
using backend::OpId;
using Clock = std::chrono::steady_clock;

// Runs body(thread) on n threads at once until min_seconds have passed;
// body returns the bytes it did per call. Returns bytes per second in all.
template <typename Body>
double threaded_loop(unsigned n, double min_seconds, Body body) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bytes{0};
  std::atomic<unsigned> ready{0};
  std::vector<std::thread> ts;
  Clock::time_point t0;
  for (unsigned t = 0; t < n; ++t)
    ts.emplace_back([&, t] {
      auto call = body(t);  // per-thread setup (context, buffer), then calls
      call();               // warm
      ready++;
      while (ready.load() < n) std::this_thread::yield();
      uint64_t mine = 0;
      while (!stop.load(std::memory_order_relaxed)) mine += call();
      bytes += mine;
    });
  while (ready.load() < n) std::this_thread::yield();
  t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(min_seconds));
  stop = true;
  for (auto& t : ts) t.join();
  return double(bytes.load()) / seconds_since(t0);
}

struct EvpCtx {
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  ~EvpCtx() { EVP_CIPHER_CTX_free(c); }
};

// One thread of OpenSSL's loop (Loop): the cipher set up once, then per call
// EVP_EncryptUpdate over one buffer in place (speed: no IV, no tag); GCM
// aead: a new IV, 13 bytes of AAD, the update and the final; GCM message:
// that and the tag read back; CTR message: a new IV and the update.
// SHA-256: init, update, final per call. zstd: ZSTD_compressCCtx per call,
// a context per thread.
std::function<uint64_t()> speed_call(OpId op, size_t size, Loop loop, unsigned seed) {
  auto buf = std::make_shared<std::vector<uint8_t>>(size + 64);
  fill_random(buf->data(), buf->size(), seed + 1);
  if (op == OpId::sha256) {
    // The digest fetched once and a context per thread: EVP_Digest with
    // EVP_sha256() fetches it implicitly and takes a reference per call, and
    // N threads of one process then queue on the provider store's lock and
    // the shared reference count (`openssl speed -multi` runs processes).
    static EVP_MD* const sha = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    auto ctx = std::shared_ptr<EVP_MD_CTX>(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    return [buf, ctx, size] {
      uint8_t md[32];
      unsigned n = 0;
      EVP_DigestInit_ex2(ctx.get(), sha, nullptr);
      EVP_DigestUpdate(ctx.get(), buf->data(), size);
      EVP_DigestFinal_ex(ctx.get(), md, &n);
      return uint64_t(size);
    };
  }
  if (op == OpId::zstd_compress) {
    // Text-like input: about what a file system image holds.
    for (size_t i = 0; i < size; ++i) (*buf)[i] = uint8_t("squash block zstd level one\n"[(i * 7 + (i >> 9)) % 28]);
    auto out = std::make_shared<std::vector<uint8_t>>(ZSTD_compressBound(size));
    auto cctx = std::shared_ptr<ZSTD_CCtx>(ZSTD_createCCtx(), ZSTD_freeCCtx);
    return [buf, out, cctx, size] {
      ZSTD_compressCCtx(cctx.get(), out->data(), out->size(), buf->data(), size, 1);
      return uint64_t(size);
    };
  }
  auto ctx = std::make_shared<EvpCtx>();
  uint8_t key[32], iv[16] = {};
  fill_random(key, sizeof key, seed + 7);
  const EVP_CIPHER* c = op == OpId::aes256_ctr ? EVP_aes_256_ctr() : EVP_aes_256_gcm();
  EVP_EncryptInit_ex(ctx->c, c, nullptr, key, iv);
  if (loop == Loop::speed || op == OpId::aes256_ctr) {
    const bool new_iv = loop == Loop::message;  // CTR's message
    return [buf, ctx, size, new_iv] {
      int outl = 0;
      if (new_iv) {
        uint8_t iv16[16] = {};
        EVP_CipherInit_ex(ctx->c, nullptr, nullptr, nullptr, iv16, -1);
      }
      EVP_EncryptUpdate(ctx->c, buf->data(), &outl, buf->data(), int(size));
      return uint64_t(size);
    };
  }
  const bool tag = loop == Loop::message;
  return [buf, ctx, size, tag] {
    static const uint8_t aad[13] = {0xcc};
    uint8_t iv12[12] = {};
    int outl = 0;
    EVP_CipherInit_ex(ctx->c, nullptr, nullptr, nullptr, iv12, -1);
    EVP_EncryptUpdate(ctx->c, nullptr, &outl, aad, sizeof aad);
    EVP_EncryptUpdate(ctx->c, buf->data(), &outl, buf->data(), int(size));
    EVP_EncryptFinal_ex(ctx->c, buf->data() + size, &outl);
    if (tag) {  // the cheapest way EVP has to read it (what a job does)
      uint8_t t[16];
      OSSL_PARAM p[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, t, sizeof t), OSSL_PARAM_END};
      EVP_CIPHER_CTX_get_params(ctx->c, p);
    }
    return uint64_t(size);
  };
}

// `openssl speed -mr -elapsed -evp NAME -bytes size -seconds 1 [-multi n]`:
// its bytes per second, or nullopt when the CLI is not there or says nothing.
std::optional<double> openssl_cli(const std::string& bin, const std::string& evp, size_t size, unsigned n) {
  std::string cmd = fmt::format("{} speed -mr -elapsed -evp {} -bytes {} -seconds 1{} 2>/dev/null", bin, evp, size,
                                n > 1 ? fmt::format(" -multi {}", n) : "");
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return std::nullopt;
  char line[512];
  std::optional<double> v;
  while (fgets(line, sizeof line, p)) {
    // "+F:<idx>:<name>:<bytes/s>": with -multi the last one is the sum of the processes.
    if (std::strncmp(line, "+F:", 3) != 0) continue;
    const char* last = std::strrchr(line, ':');
    if (last) v = std::strtod(last + 1, nullptr);
  }
  pclose(p);
  return v && *v > 0 ? v : std::nullopt;
}

}  // namespace

double openssl_loop(OpId op, size_t size, unsigned threads, double min_seconds, Loop loop) {
  return threaded_loop(threads, min_seconds, [&](unsigned k) { return speed_call(op, size, loop, k); });
}

// Each set its own memory, so no two batches in flight share a byte. The
// snapshot is what the offload service does with client jobs (the worker
// copies the input before the library reads it). CPU time per byte comes from
// the thread CPU clocks, which other load on the machine disturbs far less
// than wall time.
double backend_in_flight(backend::CpuBackend& be, OpId op, size_t size, size_t jobs_per_set, int sets,
                         double min_seconds, int* failed, bool snapshot, double* cpu_ns_per_byte) {
  const size_t set_bytes = size * jobs_per_set;
  std::vector<uint8_t> mem(set_bytes * size_t(sets) + 64), digests(32 * jobs_per_set * size_t(sets));
  fill_random(mem.data(), mem.size(), 5);
  if (op == OpId::zstd_compress)
    for (size_t i = 0; i < mem.size(); ++i) mem[i] = uint8_t("squash block zstd level one\n"[(i * 7 + (i >> 9)) % 28]);
  uint8_t key[32];
  fill_random(key, sizeof key, 3);
  std::vector<uint8_t> ivs(16 * jobs_per_set * size_t(sets));  // a new IV per job
  fill_random(ivs.data(), ivs.size(), 4);
  const size_t zout = ZSTD_compressBound(size);
  std::vector<uint8_t> zmem(op == OpId::zstd_compress ? zout * jobs_per_set * size_t(sets) : 0);
  std::vector<backend::Batch> batches(static_cast<size_t>(sets));
  for (int s = 0; s < sets; ++s) {
    auto& b = batches[size_t(s)];
    b.jobs.resize(jobs_per_set);
    for (size_t i = 0; i < jobs_per_set; ++i) {
      Job& j = b.jobs[i];
      const size_t k = size_t(s) * jobs_per_set + i;
      j.op = op;
      j.private_input = snapshot;
      j.in = {mem.data() + k * size, size};
      if (op == OpId::sha256) {
        j.out = {digests.data() + 32 * k, 32};
      } else if (op == OpId::zstd_compress) {
        j.out = {zmem.data() + k * zout, zout};
        j.level = 1;
      } else {
        j.out = {mem.data() + k * size, size};  // in place, as a slab job may be
        j.key = {key, 32};
        j.iv = {ivs.data() + 16 * k, size_t(op == OpId::aes256_ctr ? 16 : 12)};
      }
    }
  }
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  uint64_t bytes = 0;
  bool stop = false;
  std::function<void(backend::Batch&)> resubmit;
  resubmit = [&](backend::Batch& b) {
    std::lock_guard lk(mu);
    for (auto& j : b.jobs)
      if (j.status != backend::Status::ok) *failed = 1;
    bytes += set_bytes;
    if (stop) {
      --in_flight;
      cv.notify_all();
      return;
    }
    for (auto& j : b.jobs) j.status = backend::Status::pending;
    be.submit(b, resubmit);
  };
  // Warm: every set once.
  for (auto& b : batches) be.run(b);
  for (auto& b : batches) b.cpu_ns = 0;
  const auto t0 = Clock::now();
  {
    std::lock_guard lk(mu);
    in_flight = sets;
  }
  for (auto& b : batches) be.submit(b, resubmit);
  std::this_thread::sleep_for(std::chrono::duration<double>(min_seconds));
  std::unique_lock lk(mu);
  stop = true;
  cv.wait(lk, [&] { return in_flight == 0; });
  const double rate = double(bytes) / seconds_since(t0);
  if (cpu_ns_per_byte) {
    uint64_t ns = 0;
    for (const auto& b : batches) ns += b.cpu_ns;
    *cpu_ns_per_byte = bytes ? double(ns) / double(bytes) : 0;
  }
  return rate;
}

namespace {

// The CPU backend on one batch of fresh memory (out of cache), and a stream
// copy of the same bytes on as many threads: the memory-bound ceiling
// (a cipher reads its input and writes its output once, as the copy does).
double backend_out_of_cache(backend::CpuBackend& be, OpId op, size_t size, size_t total, int* failed) {
  const size_t n = total / size;
  std::vector<uint8_t> in(n * size), out(op == OpId::zstd_compress ? n * ZSTD_compressBound(size)
                                         : op == OpId::sha256      ? 32 * n
                                                                   : n * size);
  fill_random(in.data(), in.size(), 11);
  std::memset(out.data(), 0, out.size());  // first touch outside the timing
  uint8_t key[32];
  fill_random(key, sizeof key, 12);
  std::vector<uint8_t> ivs(16 * n);
  fill_random(ivs.data(), ivs.size(), 14);
  backend::Batch b;
  b.jobs.resize(n);
  const size_t ob = out.size() / n;
  for (size_t i = 0; i < n; ++i) {
    Job& j = b.jobs[i];
    j.op = op;
    j.in = {in.data() + i * size, size};
    j.out = {out.data() + i * ob, ob};
    j.level = 1;
    if (op != OpId::sha256 && op != OpId::zstd_compress) {
      j.key = {key, 32};
      j.iv = {ivs.data() + 16 * i, size_t(op == OpId::aes256_ctr ? 16 : 12)};
    }
  }
  std::vector<double> t;
  for (int r = 0; r < 3; ++r) {
    for (auto& j : b.jobs) j.status = backend::Status::pending;
    const auto t0 = Clock::now();
    be.run(b);
    t.push_back(seconds_since(t0));
    for (auto& j : b.jobs)
      if (j.status != backend::Status::ok) *failed = 1;
  }
  return double(n * size) / median(t);
}

double stream_copy(unsigned threads, size_t total) {
  std::vector<uint8_t> a(total), b(total);
  fill_random(a.data(), a.size(), 13);
  std::memset(b.data(), 0, b.size());
  std::vector<double> t;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = Clock::now();
    std::vector<std::thread> ts;
    const size_t per = (total / threads + 4095) / 4096 * 4096;
    for (unsigned k = 0; k < threads; ++k)
      ts.emplace_back([&, k] {
        const size_t lo = std::min(total, k * per), hi = std::min(total, lo + per);
        if (hi > lo) std::memcpy(b.data() + lo, a.data() + lo, hi - lo);
      });
    for (auto& th : ts) th.join();
    t.push_back(seconds_since(t0));
  }
  return double(total) / median(t);
}

}  // namespace

int cpu_reference(const Options& opt, std::vector<Table>& out) {
  const unsigned threads = opt.threads ? opt.threads : 1;
  const bool quick = opt.quick;
  // The openssl CLI: on by default in full runs when it is installed (--set openssl-cli=0|1|PATH).
  std::string cli = setting(opt, "openssl-cli", quick ? "0" : "1");
  if (cli == "1") cli = access("/usr/bin/openssl", X_OK) == 0 ? "/usr/bin/openssl" : "";
  if (cli == "0") cli.clear();
  const size_t out_total = quick ? (size_t{32} << 20) : (size_t{256} << 20);
  struct Row {
    OpId op;
    size_t size;
    const char* evp;  // openssl speed's name, or null
  };
  std::vector<Row> rows;
  const std::vector<size_t> sizes = quick ? std::vector<size_t>{4096, 1 << 20}
                                          : std::vector<size_t>{4096, 65536, 1 << 20};
  for (size_t s : sizes) rows.push_back({OpId::aes256_gcm_encrypt, s, "aes-256-gcm"});
  if (!quick)
    for (size_t s : sizes) rows.push_back({OpId::aes256_ctr, s, "aes-256-ctr"});
  for (size_t s : sizes) rows.push_back({OpId::sha256, s, "sha256"});
  rows.push_back({OpId::zstd_compress, 1 << 20, nullptr});

  backend::CpuBackend one(1), all(threads);
  const double copy = stream_copy(threads, out_total);
  Table t;
  t.title = fmt::format("CPU reference against the machine, GB/s of input: the CPU backend (batches in flight, in "
                        "cache) and the loop of `openssl speed`, 1 thread and {} threads",
                        threads);
  t.columns = {"op, job size",
               "backend 1 thr",
               "speed loop 1 core",
               fmt::format("backend {} thr", threads),
               fmt::format("speed loop {} thr", threads),
               fmt::format("per-message loop {} thr", threads),
               fmt::format("backend / per-message loop {} thr", threads),
               "GCM -aead loop 1 / N",
               "openssl CLI 1 / N",
               fmt::format("out of cache: backend {} thr", threads),
               fmt::format("stream copy {} thr", threads),
               "backend 1 thr, input snapshot"};
  const int rounds = std::max(1, std::stoi(setting(opt, "rounds", quick ? "1" : "3")));
  int failed = 0;
  for (const auto& r : rows) {
    const auto* info = backend::find_op(r.op);
    // In cache: 3 batches in flight, each of at least one job per thread and 4 MiB (4 KiB jobs: 1024 per batch).
    const size_t per_set = std::max<size_t>(threads, (size_t{4} << 20) / r.size);
    const bool gcm = r.op == OpId::aes256_gcm_encrypt;
    const double secs = opt.min_seconds;
    std::vector<std::function<double()>> ways = {
        [&] { return backend_in_flight(one, r.op, r.size, std::max<size_t>(1, (size_t{4} << 20) / r.size), 3, secs,
                                       &failed); },
        [&] { return backend_in_flight(all, r.op, r.size, per_set, 3, secs, &failed); },
        [&] { return openssl_loop(r.op, r.size, 1, secs, Loop::speed); },
        [&] { return openssl_loop(r.op, r.size, threads, secs, Loop::speed); }};
    // A cipher's job is a message (its IV, GCM's tag): its fair loop makes
    // one per call; the others' speed loop (way 3) already does.
    const bool cipher = gcm || r.op == OpId::aes256_ctr;
    const size_t msg = cipher ? ways.size() : 3, aead1 = msg + 1;
    if (cipher) ways.push_back([&] { return openssl_loop(r.op, r.size, threads, secs, Loop::message); });
    if (gcm) {
      ways.push_back([&] { return openssl_loop(r.op, r.size, 1, secs, Loop::aead); });
      ways.push_back([&] { return openssl_loop(r.op, r.size, threads, secs, Loop::aead); });
    }
    const auto got = interleaved(rounds, ways);
    const double b1 = median(got[0]), bn = median(got[1]), s1 = median(got[2]), sn = median(got[3]);
    const std::string message = cipher ? fmt_gbps(median(got[msg])) : "=";
    const std::string ratio = fmt_ratio_spread(round_ratios(got[1], got[msg]));
    std::string aead = "-";
    if (gcm) aead = fmt::format("{} / {}", fmt_gbps(median(got[aead1])), fmt_gbps(median(got[aead1 + 1])));
    std::string cli_cell = r.evp ? "-" : "n/a";
    if (r.evp && !cli.empty()) {
      auto c1 = openssl_cli(cli, r.evp, r.size, 1), cn = openssl_cli(cli, r.evp, r.size, threads);
      cli_cell = fmt::format("{} / {}", c1 ? fmt_gbps(*c1) : "?", cn ? fmt_gbps(*cn) : "?");
    }
    const double ooc = r.size * 4 <= out_total ? backend_out_of_cache(all, r.op, r.size, out_total, &failed) : 0;
    // Paired, alternating runs on one worker (median of 5 each); the cost in
    // its CPU time per byte, which the machine's other load disturbs least.
    std::string snap_cell = "in place";
    if (info->input_snapshot) {
      std::vector<double> snap_runs, plain_cpu, snap_cpu;
      const size_t per_one = std::max<size_t>(1, (size_t{4} << 20) / r.size);
      for (int k = 0; k < 5; ++k) {
        double c = 0;
        backend_in_flight(one, r.op, r.size, per_one, 3, opt.min_seconds, &failed, false, &c);
        plain_cpu.push_back(c);
        snap_runs.push_back(backend_in_flight(one, r.op, r.size, per_one, 3, opt.min_seconds, &failed, true, &c));
        snap_cpu.push_back(c);
      }
      const double cost = median(snap_cpu) / median(plain_cpu) - 1;
      snap_cell = fmt::format("{} ({:+.0f}% CPU)", fmt_gbps(median(snap_runs)), 100 * cost);
    }
    t.rows.push_back({fmt::format("{} {}", info->name, fmt_size(r.size)), fmt_gbps(b1), fmt_gbps(s1), fmt_gbps(bn),
                      fmt_gbps(sn), message, ratio, aead, cli_cell,
                      ooc > 0 ? fmt_gbps(ooc) : "-", fmt_gbps(copy),
                      snap_cell});
  }
  t.notes.push_back(
      "backend: the CPU backend's own jobs (one key, a new IV per job, in place) in 3 batches kept in flight as the "
      "offload service keeps them, each of 4 MiB or one job per thread, whichever is more (in L2/L3)");
  t.notes.push_back("speed loop: what `openssl speed -evp` runs, replicated in this process (one buffer per thread, "
                    "EVP_EncryptUpdate in place with no IV or tag per call; SHA-256: init, update, final per call on a context of the thread; zstd: "
                    "ZSTD_compressCCtx at level 1 per call, a context per thread, text-like input)");
  t.notes.push_back("per-message loop: the speed loop making each call the message a job is, which `openssl speed` "
                    "does not and a job must: GCM -aead's loop reading each tag back (EVP_CIPHER_CTX_get_params), "
                    "CTR a new IV per call; '=': the speed loop already makes one (SHA-256, zstd)");
  t.notes.push_back("backend and loops: " + rounds_note(rounds) +
                    (rounds == 1 ? "" : fmt::format("; backend / per-message loop: {}", ratio_note)));
  t.notes.push_back("GCM -aead loop: `openssl speed -aead`'s loop (a new IV, 13 bytes of AAD, update and final per "
                    "message, no tag read)");
  t.notes.push_back(cli.empty() ? std::string("openssl CLI: not run (--set openssl-cli=1 or =PATH runs `openssl speed "
                                              "-mr -elapsed -evp NAME -bytes N -seconds 1 [-multi T]`)")
                                : fmt::format("openssl CLI: `{} speed -mr -elapsed -evp NAME -bytes N -seconds 1 "
                                              "[-multi {}]` in this run",
                                              cli, threads));
  t.notes.push_back(fmt::format("out of cache: one batch of {} of fresh memory on {} threads (median of 3), next to "
                                "memcpy of the same {} split over {} threads: the memory-bound figure",
                                fmt_size(out_total), threads, fmt_size(out_total), threads));
  t.notes.push_back("input snapshot: the backend column's batches as the offload service hands over client jobs of "
                    "an op that needs one (zstd: the worker copies the input to its staging buffer before the library "
                    "reads it, so a client cannot change it mid-job); in brackets its cost: the workers' CPU time per "
                    "byte against the same batches without (one worker, medians of 5 runs each, alternating). Ciphers, "
                    "SHA-256 and CRC read the slab in place (docs/security.md)");
  if (failed) t.notes.push_back("A JOB FAILED: figures are not valid");
  out.push_back(std::move(t));
  return failed;
}

}  // namespace gpo::bench
