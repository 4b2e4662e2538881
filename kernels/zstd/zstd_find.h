// zstd on the GPU, stage 1: batch match finding. The device layout of the
// finder's output is the contract with stage 2 (GPU entropy coding) and with
// the sequence producer glue (zstd_sequence_producer.cpp) that hands the sequences to libzstd.
//
// A batch is many inputs laid out in one device buffer. Each input is cut into
// blocks of at most kBlockBytes (zstd's ZSTD_BLOCKSIZE_MAX, the size libzstd
// uses for its blocks, so libzstd's block i of an input is our block i). One
// CTA finds the sequences of one block; all blocks of the batch run in one
// launch. An empty input has no block.
//
// Per block, the finder writes seq_count sequences at [seq_first, seq_first +
// seq_count) of the sequence array and the count of literals after the last
// match (trailing_literals). Sum over the block of lit_len + match_len, plus
// trailing_literals, equals len.
//
// Offsets are plain backward distances in bytes (no repeat codes: libzstd, or
// stage 2, turns them into repcodes). A match may reach back into the up to
// kHistoryBytes before its block in the same input (never into another input):
// 1 <= offset <= kMaxOffset. libzstd's window at any level >= 1 covers that
// (window >= 512 KiB for inputs > 256 KiB, >= the input size below).
//
// d_in must stay readable 8 bytes past the end of the last input (the kernel
// reads aligned 4-byte words).
//
// This header has no CUDA types, so host-only code (tests, glue) includes it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace gpo::zstd::gpu {

inline constexpr uint32_t kBlockBytes = 128 * 1024;   // = ZSTD_BLOCKSIZE_MAX
inline constexpr uint32_t kHistoryBytes = 128 * 1024; // how far before its block a match may start
inline constexpr uint32_t kMaxOffset = kBlockBytes + kHistoryBytes - 1;
inline constexpr uint32_t kMinMatch = 4;              // every match_len >= 4 (zstd's minimum is 3)

// One sequence: lit_len literals, then match_len bytes copied from offset
// bytes back. match_len >= kMinMatch, 1 <= offset <= kMaxOffset.
struct Sequence {
  uint32_t lit_len;
  uint32_t match_len;
  uint32_t offset;
};
static_assert(sizeof(Sequence) == 12);

// One block, in input order (the blocks of input 0, then of input 1, ...).
struct BlockDesc {
  uint64_t src;                // byte offset of the block in the batch's device input buffer
  uint32_t len;                // 1..kBlockBytes
  uint32_t input;              // index of its input in the batch
  uint32_t pos;                // offset of the block in its input (its input starts at src - pos)
  uint32_t seq_first;          // first slot of its sequences in the sequence array (set by plan_blocks)
  uint32_t seq_count;          // written by the finder
  uint32_t trailing_literals;  // written by the finder
};
static_assert(sizeof(BlockDesc) == 32);

// Slots reserved per block: every sequence covers >= kMinMatch bytes of match.
inline uint32_t seq_capacity(uint32_t len) { return len / kMinMatch + 1; }

// Appends the blocks of inputs whose sizes and device offsets are given
// (offsets[i]: where input i starts in the device buffer) and returns the
// total sequence slots they need (seq_first set, seq_first + capacity fits).
uint64_t plan_blocks(std::span<const uint64_t> sizes, std::span<const uint64_t> offsets,
                     std::vector<BlockDesc>& blocks);

// Finds the sequences of blocks[0, nblocks) (device pointers) in d_in, writing
// d_seqs and each block's seq_count and trailing_literals. Asynchronous on
// stream (a cudaStream_t). A block's whole slot range [seq_first, seq_first +
// seq_capacity(len)) is its scratch during the launch (so it must be the
// range plan_blocks gave); past seq_count it holds garbage afterwards.
// Returns the launch error (cudaError_t as int; 0 = success).
// Defined in zstd_find_gpu.cu (CUDA builds only).
int enqueue_find(const uint8_t* d_in, BlockDesc* d_blocks, uint32_t nblocks, Sequence* d_seqs, void* stream);

// Copies the sequences of blocks[0, nblocks) from their slots (d_slots) to a
// dense array (d_dense), blocks in any order: dense_first[i] is block i's
// first, *d_total counts them (zero it first). For copying sequences back to
// the host without the empty slots. Returns the launch error.
int enqueue_compact(const BlockDesc* d_blocks, uint32_t nblocks, const Sequence* d_slots, Sequence* d_dense,
                    uint32_t* d_dense_first, unsigned long long* d_total, void* stream);

// A CPU match finder with the same output format and limits (tests, and a
// reference for the glue): in is the batch's input buffer as laid out for the
// device (BlockDesc::src indexes it); fills seqs at each block's seq_first.
// The GPU's parse step for step: the same sequences (the GPU test checks).
void cpu_find(std::span<const uint8_t> in, std::span<BlockDesc> blocks, std::span<Sequence> seqs);

// The glue to libzstd (zstd_sequence_producer.cpp, host only, any sequence source):
// compresses one input into a standard zstd frame with ZSTD_compress2 at level,
// libzstd's sequence producer handing it, block by block, the sequences found
// beforehand. blocks: that input's blocks in order (matched by pos and len to
// the block libzstd asks for); seqs: the array their seq_first indexes. A block
// libzstd cuts differently, or sequences that do not fit its window, go to
// libzstd's own match finder (counted in *fallbacks when not null).
// Returns the frame size, or 0 with *error set (out too small).
size_t compress_with_sequences(std::span<const uint8_t> in, std::span<const BlockDesc> blocks,
                               const Sequence* seqs, std::span<uint8_t> out, int level, bool* error,
                               unsigned* fallbacks = nullptr);

// Stage 1 end to end on the current CUDA device (zstd_find_runner.cpp, CUDA
// builds only): copies a batch of inputs in, finds the sequences of all their
// blocks in one launch, copies them back, then CPU threads compress each input
// with libzstd through compress_with_sequences. Throws std::runtime_error on a
// CUDA error. One thread uses a Pipeline at a time.
class Pipeline {
 public:
  explicit Pipeline(unsigned cpu_threads = 0);  // entropy threads; 0 = all cores
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Of the last call, in seconds: GPU times (events) summed over its pieces,
  // CPU entropy coding as wall time. compress() cuts a batch into pieces so
  // the GPU finds piece k + 1 while the CPU codes piece k.
  struct Times {
    double copy_in = 0, find = 0, copy_out = 0, entropy = 0;
  };
  // Host copies of the finder's output: blocks of all inputs in order, their
  // seq_first re-pointed into seqs.
  struct Found {
    std::vector<BlockDesc> blocks;
    std::vector<Sequence> seqs;
  };
  void find(std::span<const std::span<const uint8_t>> ins, Found& out);
  // find() then one frame per input at levels[i] (or levels[0] for all when
  // it has one): sizes[i] = frame size, or 0 when outs[i] is too small.
  // fallbacks (optional): blocks libzstd matched itself.
  void compress(std::span<const std::span<const uint8_t>> ins, std::span<const std::span<uint8_t>> outs,
                std::span<const int> levels, std::span<size_t> sizes, unsigned* fallbacks = nullptr);
  const Times& times() const { return times_; }

 private:
  struct Impl;
  Impl* impl_;
  Times times_;
};

}  // namespace gpo::zstd::gpu
