// Ethernet frames from the wire: parse_frame() must never read past the frame, and what it
// reports must lie inside it.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "kernels/classify/frame.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65535) return 0;
  // An exact-size heap copy: ASan sees any read past the end.
  std::unique_ptr<uint8_t[]> frame(new uint8_t[size ? size : 1]);
  if (size) std::memcpy(frame.get(), data, size);
  const uint32_t len = uint32_t(size);
  gpo::classify::ParsedFrame f = gpo::classify::parse_frame(frame.get(), len);
  if (!f.ok()) return 0;
  if (f.ip_version != 4 && f.ip_version != 6) std::abort();
  if (!(f.l3_offset < f.l4_offset && f.l4_offset <= f.payload_offset)) std::abort();
  if (f.payload_offset > len || f.payload_len > len - f.payload_offset) std::abort();
  (void)gpo::classify::flow_key(f);
  return 0;
}
