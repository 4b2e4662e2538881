// Rule files from anywhere: parse_rules() must report problems, never crash, hang or
// allocate without bound, and what parsed must compile.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "rules/compiler.h"
#include "rules/parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  gpo::rules::ParseResult r = gpo::rules::parse_rules(text);
  for (const auto& d : r.problems)
    if (d.line == 0) std::abort();  // every problem points at a line
  if (!r.set.rules.empty()) {
    try {
      (void)gpo::rules::compile(r.set);
    } catch (const std::runtime_error&) {
      // A documented refusal (e.g. a size cap) is an answer, not a crash.
    }
  }
  return 0;
}
