// GF(2^128) in GCM's bit order (SP 800-38D 6.3): what the provider needs to
// join GHASH pieces computed in different places (docs/provider.md).
#pragma once
#include <cstdint>

namespace gpo::provider::gf128 {

// A field element as GCM writes it: hi = bytes 0..7, lo = bytes 8..15, big-endian.
struct U128 {
  uint64_t hi = 0, lo = 0;
};
inline U128 operator^(U128 a, U128 b) { return {a.hi ^ b.hi, a.lo ^ b.lo}; }
inline bool operator==(U128 a, U128 b) { return a.hi == b.hi && a.lo == b.lo; }

U128 load(const uint8_t p[16]);
void store(U128 v, uint8_t p[16]);

// x * y: carry-less multiply (PCLMULQDQ) where the CPU has it, else the
// bit-serial algorithm of SP 800-38D (Algorithm 1).
U128 mul(U128 x, U128 y);
U128 mul_bitwise(U128 x, U128 y);

// GCM's length block: 64-bit big-endian bit counts of the AAD and the text.
inline U128 length_block(uint64_t aad_bytes, uint64_t text_bytes) { return {aad_bytes * 8, text_bytes * 8}; }

// H^n for n < 2^32 from H^(2^i), i < 32, computed once per key.
class Powers {
 public:
  void reset(U128 h);
  U128 pow(uint64_t n) const;

 private:
  U128 p2_[32];
};

}  // namespace gpo::provider::gf128
