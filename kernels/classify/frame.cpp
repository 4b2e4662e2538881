#include "kernels/classify/frame.h"

#include <arpa/inet.h>

#include "kernels/classify/frame_parse.h"

namespace gpo::classify {

ParsedFrame parse_frame(const uint8_t* data, uint32_t len) { return parse::frame(data, len); }

gpo_flow_key flow_key(const ParsedFrame& f) {
  gpo_flow_key k{};
  gpo_flow_key_make(&k, f.src, f.dst, htons(f.sport), htons(f.dport), f.proto);
  return k;
}

const char* to_string(ParseStatus s) {
  switch (s) {
    case ParseStatus::kOk: return "ok";
    case ParseStatus::kNotIp: return "not IP";
    case ParseStatus::kMalformed: return "malformed";
    case ParseStatus::kFragment: return "non-first fragment";
  }
  return "?";
}

}  // namespace gpo::classify
