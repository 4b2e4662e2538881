// zstd jobs as the agent runs them for a client (backend::run_on_cpu): a decompress of
// arbitrary bytes into a client-sized buffer must fail cleanly or agree with libzstd; a
// compress must round-trip.
#include <zstd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend/ops.h"

using gpo::backend::Job;
using gpo::backend::OpId;
using gpo::backend::Status;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const uint8_t mode = data[0];
  const size_t cap = (size_t(data[1]) << 8 | data[2]) * 16;  // up to 1 MiB of output
  std::vector<uint8_t> in(data + 3, data + size);
  if (mode & 1) {
    std::vector<uint8_t> out(cap), ref(cap);
    Job j;
    j.op = OpId::zstd_decompress;
    j.in = in;
    j.out = out;
    Status s = gpo::backend::run_on_cpu(j);
    size_t r = ZSTD_decompress(ref.data(), ref.size(), in.data(), in.size());
    if (ZSTD_isError(r)) {
      if (s == Status::ok) std::abort();  // the job accepted what libzstd refuses
    } else {
      if (s != Status::ok || j.out_len != r || (r && std::memcmp(out.data(), ref.data(), r) != 0)) std::abort();
    }
  } else {
    const int level = int(mode >> 1) % 23 - 3;  // -3 .. 19
    std::vector<uint8_t> frame(ZSTD_compressBound(in.size())), back(in.size() + 1);
    Job j;
    j.op = OpId::zstd_compress;
    j.in = in;
    j.out = frame;
    j.level = level;
    if (gpo::backend::run_on_cpu(j) != Status::ok || j.out_len > frame.size()) std::abort();
    size_t r = ZSTD_decompress(back.data(), back.size(), frame.data(), j.out_len);
    if (ZSTD_isError(r) || r != in.size() || (r && std::memcmp(back.data(), in.data(), r) != 0)) std::abort();
  }
  return 0;
}
