// AES-256-CTR and AES-256-GCM: the one header the agent, the CPU reference,
// the CUDA kernels and the tests share.
//
// Host side (always built): Job, the job of one op, and cpu_run(), the
// reference through OpenSSL EVP that every GPU result is compared against.
// Device side (gpu:: namespace, built only with CUDA): a batch of jobs whose
// buffers already live in device memory, run in three stream-ordered steps so
// that a backend can pipeline copies of one piece with compute of another.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace gpo::aes {

inline constexpr size_t kKeyBytes = 32;    // AES-256 only
inline constexpr size_t kBlockBytes = 16;
inline constexpr size_t kGcmIvBytes = 12;  // the 96-bit IV of GCM (J0 = IV || 1)
inline constexpr size_t kCtrIvBytes = 16;  // the full initial counter block of CTR
inline constexpr size_t kTagBytes = 16;

enum class Mode : uint8_t { ctr = 0, gcm = 1 };
enum class Dir : uint8_t { encrypt = 0, decrypt = 1 };

enum class Result : uint8_t { ok = 0, auth_failed = 1, invalid = 2 };

// One independent message. CTR ignores aad and tag; CTR encrypt == decrypt.
// GCM encrypt writes tag; GCM decrypt checks tag and fails the job on mismatch
// (out is then zeroed: no unauthenticated plaintext is left to misuse).
struct Job {
  Mode mode = Mode::gcm;
  Dir dir = Dir::encrypt;
  const uint8_t* key = nullptr;  // kKeyBytes
  const uint8_t* iv = nullptr;   // kGcmIvBytes (GCM) or kCtrIvBytes (CTR)
  std::span<const uint8_t> aad;
  std::span<const uint8_t> in;
  uint8_t* out = nullptr;        // in.size() bytes; may equal in.data()
  uint8_t* tag = nullptr;        // kTagBytes: written (encrypt) or read (decrypt)
};

// OpenSSL EVP reference (AES-NI where the CPU has it). Thread-safe. Each
// thread keeps its contexts and reuses the key schedule while the key repeats.
Result cpu_run(const Job& job);

// CTR: the counter block `blocks` blocks after iv (128-bit big-endian
// addition, as OpenSSL's CTR mode counts), so that bytes [16 k, ...) of a job
// are the same job started at counter ctr_add(iv, k): a long job splits.
void ctr_add(const uint8_t iv[kCtrIvBytes], uint64_t blocks, uint8_t out[kCtrIvBytes]);

namespace gpu {

// A job whose buffers are device addresses. 16-byte aligned in/out take the
// fast path (128-bit loads); any alignment is correct.
struct DevJob {
  uint64_t in = 0;    // device address
  uint64_t out = 0;   // device address
  uint64_t len = 0;
  uint64_t aad = 0;   // device address (GCM)
  uint32_t aad_len = 0;
  uint8_t mode = 0;   // Mode
  uint8_t dir = 0;    // Dir
  uint8_t pad_[2] = {};
  uint32_t first_seg = 0;  // filled by plan()
  uint32_t nseg = 0;       // filled by plan()
  uint8_t key[kKeyBytes] = {};
  uint8_t iv[kCtrIvBytes] = {};  // GCM uses the first 12 bytes
  uint8_t tag[kTagBytes] = {};   // GCM decrypt: the expected tag
};

// A segment is the work of one warp: kSegBlocks consecutive 16-byte blocks
// of one job's GHASH input (AAD, data, length block), 32 lanes x 32 steps.
inline constexpr uint32_t kSegBlocks = 1024;

// Segments of one job (0 for an empty CTR job).
uint32_t segments_of(const DevJob& job);
// Fills first_seg/nseg of every job and returns seg_job (segment -> job index).
std::vector<uint32_t> plan(std::span<DevJob> jobs);

// The first and one-past-last byte of job j's input that segment range
// [seg_lo, seg_hi) reads and writes (so a backend copies only that part).
struct ByteRange { uint64_t lo = 0, hi = 0; };
ByteRange segment_bytes(const DevJob& job, uint32_t seg_lo, uint32_t seg_hi);

// Device memory a batch needs besides its data: job table, per-job state and
// GHASH tables, per-segment powers of H, tags and results.
struct Workspace {
  DevJob* jobs = nullptr;      // device copy of the job table
  uint32_t* seg_job = nullptr; // device copy of plan()'s result
  void* state = nullptr;       // per job: round keys, H, powers of H, GHASH accumulator
  void* htab = nullptr;        // per job: 4-bit tables of H^32 (8 KiB)
  void* segpow = nullptr;      // per segment: H^(kSegBlocks * segments after it)
  uint8_t* tags = nullptr;     // per job: kTagBytes (the computed tag)
  uint8_t* results = nullptr;  // per job: Result
  uint32_t njobs = 0, nsegs = 0;
};
size_t workspace_bytes(uint32_t njobs, uint32_t nsegs);
// Carves a Workspace out of one device allocation of workspace_bytes().
Workspace carve(void* base, uint32_t njobs, uint32_t nsegs);

// Stream-ordered steps; the job table and seg_job entries they read must
// already be on the device. A backend may run them per piece of a batch.
// setup: key schedule, H, E(J0), GHASH tables of jobs [job_lo, job_hi), then
//   the powers of H for segments [seg_lo, seg_hi) (their jobs set up before).
// segments: CTR keystream, XOR, GHASH partials for segments [lo, hi).
// finalize: tags and results of jobs [job_lo, job_hi), after all their segments ran.
// Each returns the launch error (cudaError_t as int; 0 = success).
int enqueue_setup(const Workspace& ws, uint32_t job_lo, uint32_t job_hi, uint32_t seg_lo, uint32_t seg_hi, void* stream);
int enqueue_segments(const Workspace& ws, uint32_t seg_lo, uint32_t seg_hi, void* stream);
int enqueue_finalize(const Workspace& ws, uint32_t job_lo, uint32_t job_hi, void* stream);
// The whole batch: setup, segments, finalize.
inline int enqueue_all(const Workspace& ws, void* stream) {
  int e = enqueue_setup(ws, 0, ws.njobs, 0, ws.nsegs, stream);
  if (!e) e = enqueue_segments(ws, 0, ws.nsegs, stream);
  if (!e) e = enqueue_finalize(ws, 0, ws.njobs, stream);
  return e;
}

}  // namespace gpu
}  // namespace gpo::aes
