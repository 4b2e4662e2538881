// The header of an offloaded zstd frame, rewritten to say what libzstd's own
// frame for the same call would say (docs/shim.md, "zstd streams"): the
// agent compresses one whole input with ZSTD_compress() at a level, which
// always writes the content size and never a checksum; a stream whose size
// libzstd does not know gets no content size, and a context with
// ZSTD_c_checksumFlag gets the XXH64 checksum.
#pragma once
#include <cstddef>
#include <cstdint>

namespace gpo::zstd_frame {

struct Want {
  bool size_known = true;    // libzstd knows the size (one call, or pledged): its window fits the size
  bool content_size = true;  // ZSTD_c_contentSizeFlag: the size is written (when known)
  bool checksum = false;     // ZSTD_c_checksumFlag
  int level = 3;             // for the window libzstd would declare
};

// f[0, n) holds one frame of content[0, len); cap bytes are writable at f.
// Returns the new frame size, or 0 when the frame is not one frame of a
// known shape or the result does not fit cap (the caller then lets libzstd
// do the call).
size_t rewrite(uint8_t* f, size_t n, size_t cap, const uint8_t* content, size_t len, const Want& w);

// libzstd's frame header for these parameters (ZSTD_writeFrameHeader's rules,
// no dictionary): written to out (at least 18 bytes), its size returned.
size_t header(uint8_t* out, uint64_t len, const Want& w);

}  // namespace gpo::zstd_frame
