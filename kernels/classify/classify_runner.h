// The GPU classifier: Classifier over the same compiled RuleTables as the CPU
// classifier, with the same verdicts (rule id, action, cacheable) on every
// frame. One CUDA thread per frame parses it (frame_parse.h), finds the
// header-matching rules in file order through the ACL structure (acl.h) and,
// only when one of them has contents, scans the payload's first
// inspect_depth bytes with the rules' Aho-Corasick automata (decide.h).
//
// Batches go through one of kSlots buffer sets (pinned staging, device
// buffers, a stream), so a caller can submit batch N and receive batch N+1
// while the GPU works (double buffering). A frame whose payload holds more
// distinct patterns than the kernel tracks (kMaxHits) is classified again on
// the CPU when the batch is collected, so verdicts stay exact.
//
// Not thread-safe: one owner thread (the packet path's event loop).
#pragma once
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernels/classify/classify.h"
#include "kernels/classify/tables.h"

namespace gpo::classify {

struct GpuClassifierOptions {
  int device = 0;
  uint32_t max_batch = 65536;  // frames per submit
};

class GpuClassifier final : public AsyncClassifier {
 public:
  static constexpr int kSlots = 2;
  static constexpr uint32_t kMaxHits = 32;  // distinct patterns tracked per payload on the GPU

  // Number of usable CUDA devices; 0 with *why set when none.
  static int device_count(std::string* why);

  // Copies the tables (and the ACL structure built from them) to the device.
  // Throws std::runtime_error when CUDA fails.
  GpuClassifier(std::shared_ptr<const RuleTables> tables, GpuClassifierOptions opt = {});
  ~GpuClassifier() override;
  GpuClassifier(const GpuClassifier&) = delete;
  GpuClassifier& operator=(const GpuClassifier&) = delete;

  std::string_view name() const override { return "gpu"; }
  // Synchronous: submit, then collect.
  void classify(std::span<const Frame> frames, std::span<Verdict> out) override;

  // Asynchronous use. submit() copies the frames into pinned staging and
  // queues copy-in, kernel and copy-out; it returns a ticket, or -1 when all
  // kSlots are in flight. The frames must stay valid until collect().
  int submit(std::span<const Frame> frames) override;
  bool ready(int ticket) const override;  // the GPU is done with it (never blocks)
  // Waits for the batch if needed and writes its verdicts; frees the slot.
  void collect(int ticket, std::span<Verdict> out) override;
  // An eventfd that becomes readable whenever a submitted batch completes
  // (the counter is the number of completions), for an event loop.
  int completion_fd() const override;
  int in_flight() const override;
  uint32_t max_batch() const override;

  // Benchmark helper: uploads the frames once, then times `iters` kernel
  // launches alone (no copies). Returns seconds per launch.
  double time_kernel(std::span<const Frame> frames, int iters);

  // Frames the kernel could not decide and the CPU classified again (too many
  // distinct patterns, or a content position search over its budget).
  uint64_t cpu_retries() const;

  size_t device_bytes() const;  // rule tables + ACL structure on the device
  size_t acl_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpo::classify
