// zstd stage 2: entropy coding on the GPU. Sequences and source already on the
// device (stage 1's layout, zstd_find.h) -> standard zstd frames, one per input,
// that any `zstd -d` reads. The per-block encoder is zstd_entropy_block.h, the
// same code on the CPU (cpu_encode_frame: tests, reference) and the GPU.
//
// Layout: one frame per input, its blocks (<= 128 KiB, stage 1's cut) encoded
// independently and in parallel; the frame header carries the content size;
// no checksum. The window is kWindowLog (stage 1's matches reach back at most
// kMaxOffset < 256 KiB), or the input size when smaller (single segment).
// What independence costs in ratio (per-block Huffman tables, repeat offsets
// restarted per block) is measured in docs/zstd-gpu.md.
//
// No CUDA types here: host-only code includes it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kernels/zstd/zstd_find.h"

namespace gpo::zstd::entropy {

using gpu::BlockDesc;
using gpu::Sequence;

inline constexpr uint32_t kWindowLog = 18;  // 256 KiB > gpu::kMaxOffset
static_assert((1u << kWindowLog) > gpu::kMaxOffset);

// Worst-case frame size of n input bytes.
size_t frame_bound(uint64_t n);

// CPU: the frame of one input of input_size bytes. in: the batch buffer that
// BlockDesc::src indexes; blocks: that input's blocks in order (none when
// empty); seqs: the array their seq_first indexes. window_log: the frame's
// window (matches must reach back no further). Returns the frame size, or 0
// when out (cap bytes, frame_bound is enough) is too small.
size_t cpu_encode_frame(const uint8_t* in, std::span<const BlockDesc> blocks, const Sequence* seqs,
                        uint64_t input_size, uint32_t window_log, uint8_t* out, size_t cap);

// GPU batch encoder (zstd_entropy_gpu.cu, CUDA builds only). Keeps its device
// buffers between calls (they grow as needed).
class GpuEncoder {
 public:
  GpuEncoder();
  ~GpuEncoder();
  GpuEncoder(const GpuEncoder&) = delete;
  GpuEncoder& operator=(const GpuEncoder&) = delete;

  // Encodes the frames of a batch: d_in (device) is the batch input, d_blocks
  // (device, nblocks) and d_seqs (device) stage 1's output for it, input_sizes
  // (host, one per input; the blocks of input i are those with input == i, in
  // order). in_extent: bytes of d_in that blocks index (max src + len).
  // Asynchronous on stream (a cudaStream_t): frames land in d_out(), input i
  // at d_offsets()[i] .. d_offsets()[i + 1] (device). Returns a cudaError_t
  // as int (0 = success).
  int encode(const uint8_t* d_in, uint64_t in_extent, const BlockDesc* d_blocks, uint32_t nblocks,
             const Sequence* d_seqs, uint64_t seq_slots, std::span<const uint64_t> input_sizes, void* stream);

  uint8_t* d_out() const;             // device: the frames, back to back
  const uint64_t* d_offsets() const;  // device: ninputs + 1 offsets into d_out
  size_t out_capacity() const;

  // The simple path: one thread runs enc::encode_block per block (the first
  // version; kept as a cross-check). Default: a CTA per block for literals.
  void set_one_thread_per_block(bool on);

  // Bench aid: with profiling on, last_split() gives the last encode's time
  // from its start to the end of the literals kernel, of the sequences kernel
  // (they overlap) and of the whole (milliseconds; zeros when off).
  struct Split {
    float literals_ms = 0, sequences_ms = 0, total_ms = 0;
  };
  void set_profile(bool on);
  Split last_split() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Stages 1 and 2 on the current CUDA device, host in, host out
// (zstd_runner.cpp): the inputs are copied in, stage 1 finds the
// sequences of all their blocks, GpuEncoder codes them, the frames are copied
// back. A batch goes in pieces (consecutive inputs, about piece_bytes each)
// on kSets streams, so copies in, kernels and copies out of different pieces
// overlap; the first two pieces are a quarter and a half of piece_bytes, so
// the GPU starts after a short first copy.
//
// Host memory: inputs and outputs that are pinned (cudaMallocHost, or
// registered with cudaHostRegister like the agent's client slabs) are copied
// by DMA directly, one copy per input or per run of inputs adjacent in host
// memory; pageable ones go through pinned staging, packed and unpacked by
// host_threads threads in parallel while the GPU works on other pieces. The
// host does no other work per byte.
//
// Throws std::runtime_error (a gpo::cuda::Error for CUDA errors) after
// waiting for the work already queued, so nothing of the call is still in
// flight. One thread uses a GpuCompressor at a time. (CUDA builds only.)
class GpuCompressor {
 public:
  static constexpr int kSets = 5;
  // 128 MiB: on the H100 the fastest of 16..256 MiB for 256 MiB and 1 GiB calls (docs/results/2026-11-26-zstd-gpu.md).
  static constexpr uint64_t kDefaultPieceBytes = 128ull << 20;
  explicit GpuCompressor(unsigned host_threads = 0);  // 0: all cores, at most 16
  ~GpuCompressor();
  GpuCompressor(const GpuCompressor&) = delete;
  GpuCompressor& operator=(const GpuCompressor&) = delete;

  struct Times {  // of the last call
    double total = 0;   // seconds, the whole call
    double pack = 0;    // seconds the host spent packing pageable inputs into staging
    double unpack = 0;  // seconds the host spent copying frames out of staging
    size_t pieces = 0;
    uint64_t direct_in = 0, staged_in = 0;    // input bytes copied from pinned memory / through staging
    uint64_t direct_out = 0, staged_out = 0;  // frame bytes likewise
    size_t copies_in = 0, copies_out = 0;     // cudaMemcpyAsync calls for data
    // With set_timeline(true): per piece, ms since the call began (GPU
    // events): its input copied, stage 1 done, stage 2 done (offsets back),
    // frames back; and when the host queued it and when its offsets reached it.
    struct Piece {
      uint64_t bytes = 0;
      float in = 0, find = 0, encode = 0, out = 0;
      double queued = 0, drained = 0;
    };
    std::vector<Piece> timeline;
  };
  // One frame per input into outs[i]; sizes[i] = its size, or 0 when outs[i]
  // is smaller than the frame (frame_bound(ins[i].size()) always fits).
  // outs must not overlap ins.
  void compress(std::span<const std::span<const uint8_t>> ins, std::span<const std::span<uint8_t>> outs,
                std::span<size_t> sizes);
  const Times& times() const;

  // Bytes of input per piece (default kDefaultPieceBytes; at least one input per piece).
  void set_piece_bytes(uint64_t bytes);
  // Bench aid: record the per-piece timeline in times() (timing events).
  void set_timeline(bool on);
  // Test aid: the next compress() fails with a real CUDA error (an invalid
  // copy queued on its first piece's stream) after queueing that piece.
  void inject_fault_once();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpo::zstd::entropy
