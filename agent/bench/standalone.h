// The small standalone bench binaries (bench-match, bench-classify,
// bench-tier2): one suite without the agent, for the GPU machine, where the
// agent binary is too large to carry for one suite. Arguments: `quick`,
// `min_seconds=S`, `threads=N`; anything else goes to the suite as Options::args.
// Tables print as Markdown.
#pragma once
#include <vector>

#include "bench/bench.h"

namespace gpo::bench {

using SuiteRun = int (*)(const Options&, std::vector<Table>&);
int standalone_main(const char* tool, SuiteRun run, int argc, char** argv);

}  // namespace gpo::bench
