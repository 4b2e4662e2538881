// The shim's zstd context and stream paths (agent/client/shim_zstd.cpp)
// against libzstd itself, call for call. The shim is opened with
// RTLD_LOCAL and its functions called through dlsym on its handle, so this
// process (and the in-process agent's CPU backend) still reach the real
// libzstd: the one process holds the shim, the agent and the reference.
// Each test runs with the agent component in-process (CPU backend: the agent
// compresses with the same libzstd, so frames made in one call come out
// byte-identical) and with no agent (everything stays with libzstd).
#define ZSTD_STATIC_LINKING_ONLY
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gpuoffload.h"
#include "offload/offload_fixture.h"

namespace gpo::test {
namespace {

const bool kEnv = [] {
  setenv("GPO_SHIM_MIN_BYTES", "4096", 1);
  setenv("GPO_OFFLOAD_MIN_BYTES", "1024", 1);
  setenv("GPO_TIMEOUT_MS", "10000", 1);
  return true;
}();

// The shim's entry points, by name from its own handle.
struct Shim {
  void* h = dlopen(SHIM_PATH, RTLD_NOW | RTLD_LOCAL);
  template <typename F>
  F* fn(const char* name) {
    return reinterpret_cast<F*>(h ? dlsym(h, name) : nullptr);
  }
  decltype(&ZSTD_compressStream2) stream2 = fn<decltype(ZSTD_compressStream2)>("ZSTD_compressStream2");
  decltype(&ZSTD_compressStream) stream = fn<decltype(ZSTD_compressStream)>("ZSTD_compressStream");
  decltype(&ZSTD_endStream) end = fn<decltype(ZSTD_endStream)>("ZSTD_endStream");
  decltype(&ZSTD_flushStream) flush = fn<decltype(ZSTD_flushStream)>("ZSTD_flushStream");
  decltype(&ZSTD_compress2) compress2 = fn<decltype(ZSTD_compress2)>("ZSTD_compress2");
  decltype(&ZSTD_initCStream) init = fn<decltype(ZSTD_initCStream)>("ZSTD_initCStream");
  decltype(&ZSTD_CCtx_reset) reset = fn<decltype(ZSTD_CCtx_reset)>("ZSTD_CCtx_reset");
  decltype(&ZSTD_CCtx_setParameter) set = fn<decltype(ZSTD_CCtx_setParameter)>("ZSTD_CCtx_setParameter");
  decltype(&ZSTD_CCtx_setPledgedSrcSize) pledge = fn<decltype(ZSTD_CCtx_setPledgedSrcSize)>("ZSTD_CCtx_setPledgedSrcSize");
  decltype(&ZSTD_CCtx_loadDictionary) load_dict = fn<decltype(ZSTD_CCtx_loadDictionary)>("ZSTD_CCtx_loadDictionary");
  decltype(&ZSTD_CCtx_refPrefix) ref_prefix = fn<decltype(ZSTD_CCtx_refPrefix)>("ZSTD_CCtx_refPrefix");
  decltype(&ZSTD_freeCCtx) free = fn<decltype(ZSTD_freeCCtx)>("ZSTD_freeCCtx");
};
Shim& shim() {
  static Shim s;
  return s;
}

// The same API, straight from libzstd.
Shim real_zstd() {
  Shim r;
  r.h = nullptr;
  r.stream2 = ZSTD_compressStream2;
  r.stream = ZSTD_compressStream;
  r.end = ZSTD_endStream;
  r.flush = ZSTD_flushStream;
  r.compress2 = ZSTD_compress2;
  r.init = ZSTD_initCStream;
  r.reset = ZSTD_CCtx_reset;
  r.set = ZSTD_CCtx_setParameter;
  r.pledge = ZSTD_CCtx_setPledgedSrcSize;
  r.load_dict = ZSTD_CCtx_loadDictionary;
  r.ref_prefix = ZSTD_CCtx_refPrefix;
  r.free = ZSTD_freeCCtx;
  return r;
}

// f decompressed (with dict when given), or nothing when it does not decompress.
Bytes decompress(const Bytes& f, size_t expect, const Bytes* dict = nullptr) {
  Bytes out(expect + 1);
  ZSTD_DCtx* d = ZSTD_createDCtx();
  const size_t n = ZSTD_decompress_usingDict(d, out.data(), out.size(), f.data(), f.size(),
                                             dict ? dict->data() : nullptr, dict ? dict->size() : 0);
  ZSTD_freeDCtx(d);
  if (ZSTD_isError(n)) return {};
  out.resize(n);
  return out;
}

// The frame header's fields, as ZSTD_getFrameHeader reads them.
std::string header_of(const Bytes& f) {
  ZSTD_frameHeader h{};
  if (ZSTD_getFrameHeader(&h, f.data(), f.size()) != 0) return "unreadable";
  return "content " + std::to_string(h.frameContentSize) + " window " + std::to_string(h.windowSize) + " checksum " +
         std::to_string(h.checksumFlag) + " header " + std::to_string(h.headerSize);
}

// A call pattern, run against one API (the shim's or libzstd's) on a fresh
// context; returns what came out (frames concatenated) and every return code.
struct Out {
  Bytes bytes;
  std::vector<size_t> codes;
};
using Pattern = std::function<void(Shim&, ZSTD_CCtx*, Out&)>;
Out run(Shim& api, const Pattern& p) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  Out o;
  p(api, c, o);
  api.free(c);
  return o;
}

// Feeds in through stream2 in chunks with `op`, then ends the frame with
// ZSTD_e_end calls through an output window of `window` bytes.
void stream_frame(Shim& api, ZSTD_CCtx* c, Out& o, const Bytes& in, size_t chunk, size_t window,
                  ZSTD_EndDirective mid = ZSTD_e_continue) {
  Bytes buf(window);
  size_t at = 0;
  while (at < in.size()) {
    const size_t n = std::min(chunk, in.size() - at);
    ZSTD_inBuffer i{in.data() + at, n, 0};
    while (i.pos < i.size) {
      ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
      size_t r = api.stream2(c, &ob, &i, mid);
      o.codes.push_back(ZSTD_isError(r) ? r : 0);
      o.bytes.insert(o.bytes.end(), buf.data(), buf.data() + ob.pos);
      if (ZSTD_isError(r)) return;
    }
    at += n;
  }
  for (int guard = 0; guard < 100000; ++guard) {
    ZSTD_inBuffer none{nullptr, 0, 0};
    ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
    const size_t r = api.stream2(c, &ob, &none, ZSTD_e_end);
    o.bytes.insert(o.bytes.end(), buf.data(), buf.data() + ob.pos);
    if (ZSTD_isError(r)) {
      o.codes.push_back(r);
      return;
    }
    if (r == 0) return;
  }
  ADD_FAILURE() << "frame never ended";
}

class ShimZstdTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    ASSERT_NE(shim().h, nullptr) << dlerror();
    ASSERT_NE(shim().stream2, nullptr);
    agent_ = serve_library(GetParam(), "shimz");
    gpo_get_stats(&before_);
  }
  void TearDown() override {
    gpo_set_socket(nullptr);
    agent_.reset();
  }
  uint64_t jobs() {
    gpo_client_stats s{};
    gpo_get_stats(&s);
    return s.jobs - before_.jobs;
  }
  // Expects jobs iff the agent is there and `offloadable`.
  void expect_jobs(bool offloadable, const char* what) {
    if (GetParam() && offloadable) {
      EXPECT_GT(jobs(), 0u) << what;
    } else {
      EXPECT_EQ(jobs(), 0u) << what;
    }
    gpo_get_stats(&before_);
  }
  Shim real_ = real_zstd();
  std::unique_ptr<InProcessAgent> agent_;
  gpo_client_stats before_{};
};

INSTANTIATE_TEST_SUITE_P(Path, ShimZstdTest, ::testing::Values(true, false),
                         [](const auto& i) { return i.param ? "agent" : "no_agent"; });

// ZSTD_compress2 and one-call ZSTD_e_end frames: libzstd's bytes exactly, for
// levels, checksum and content-size flags; output windows large and tiny.
TEST_P(ShimZstdTest, OneCallFramesAreLibzstdsBytes) {
  const Bytes in = text_bytes(300000, 1);
  for (int level : {-3, 1, 3, 7})
    for (int checksum : {0, 1})
      for (int csize : {1, 0}) {
        auto params = [=](Shim& api, ZSTD_CCtx* c) {
          api.set(c, ZSTD_c_compressionLevel, level);
          api.set(c, ZSTD_c_checksumFlag, checksum);
          api.set(c, ZSTD_c_contentSizeFlag, csize);
        };
        const std::string what = "level " + std::to_string(level) + " checksum " + std::to_string(checksum) +
                                 " content size " + std::to_string(csize);
        Pattern compress2 = [&](Shim& api, ZSTD_CCtx* c, Out& o) {
          params(api, c);
          o.bytes.resize(ZSTD_compressBound(in.size()));
          size_t n = api.compress2(c, o.bytes.data(), o.bytes.size(), in.data(), in.size());
          o.bytes.resize(ZSTD_isError(n) ? 0 : n);
        };
        EXPECT_EQ(run(shim(), compress2).bytes, run(real_, compress2).bytes) << "compress2 " << what;
        expect_jobs(true, "compress2");
        for (size_t window : {size_t(1) << 20, size_t(1000)}) {
          Pattern one = [&](Shim& api, ZSTD_CCtx* c, Out& o) {
            params(api, c);
            stream_frame(api, c, o, in, in.size(), window, ZSTD_e_end);
          };
          const Out a = run(shim(), one), b = run(real_, one);
          EXPECT_EQ(a.bytes, b.bytes) << "e_end in one call, window " << window << ", " << what;
          EXPECT_EQ(decompress(a.bytes, in.size()), in);
          expect_jobs(true, "one call");
        }
      }
}

// A stream fed in chunks (libarchive's ZSTD_compressStream + ZSTD_endStream,
// dpkg's ZSTD_e_continue then ZSTD_e_end): collected and offloaded whole;
// libzstd's header (no content size unless pledged, checksum when asked),
// the same content.
TEST_P(ShimZstdTest, ChunkedStreamsKeepLibzstdsHeader) {
  const Bytes in = text_bytes(700000, 2);
  for (int checksum : {0, 1})
    for (bool pledged : {false, true})
      for (size_t chunk : {size_t(10240), size_t(131072)}) {
        Pattern p = [&](Shim& api, ZSTD_CCtx* c, Out& o) {
          api.set(c, ZSTD_c_compressionLevel, 1);
          api.set(c, ZSTD_c_checksumFlag, checksum);
          if (pledged) api.pledge(c, in.size());
          stream_frame(api, c, o, in, chunk, 16384);
        };
        const Out a = run(shim(), p), b = run(real_, p);
        const std::string what = "checksum " + std::to_string(checksum) + " pledged " + std::to_string(pledged) +
                                 " chunk " + std::to_string(chunk);
        EXPECT_EQ(header_of(a.bytes), header_of(b.bytes)) << what;
        EXPECT_EQ(decompress(a.bytes, in.size()), in) << what;
        if (!GetParam()) {
          EXPECT_EQ(a.bytes, b.bytes) << what;
        }
        expect_jobs(true, what.c_str());
      }
  // The legacy calls: ZSTD_initCStream, ZSTD_compressStream, ZSTD_endStream.
  Pattern legacy = [&](Shim& api, ZSTD_CCtx* c, Out& o) {
    api.init(c, 3);
    Bytes buf(ZSTD_CStreamOutSize());
    for (size_t at = 0; at < in.size(); at += 10240) {
      ZSTD_inBuffer i{in.data() + at, std::min<size_t>(10240, in.size() - at), 0};
      while (i.pos < i.size) {
        ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
        size_t r = api.stream(c, &ob, &i);
        ASSERT_FALSE(ZSTD_isError(r));
        EXPECT_GT(r, 0u) << "ZSTD_compressStream returns an input size hint";
        o.bytes.insert(o.bytes.end(), buf.data(), buf.data() + ob.pos);
      }
    }
    for (size_t r = 1; r;) {
      ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
      r = api.end(c, &ob);
      ASSERT_FALSE(ZSTD_isError(r));
      o.bytes.insert(o.bytes.end(), buf.data(), buf.data() + ob.pos);
    }
  };
  const Out a = run(shim(), legacy), b = run(real_, legacy);
  EXPECT_EQ(header_of(a.bytes), header_of(b.bytes));
  EXPECT_EQ(decompress(a.bytes, in.size()), in);
  expect_jobs(true, "legacy stream");
}

// Several frames on one context: one frame per ZSTD_e_end, each on its own.
TEST_P(ShimZstdTest, OneFramePerEnd) {
  const Bytes a = text_bytes(200000, 3), b = random_bytes(90000, 4), small = text_bytes(100, 5);
  Pattern p = [&](Shim& api, ZSTD_CCtx* c, Out& o) {
    api.set(c, ZSTD_c_compressionLevel, 2);
    stream_frame(api, c, o, a, 50000, 70000);
    stream_frame(api, c, o, small, 100, 70000);
    stream_frame(api, c, o, b, b.size(), 70000, ZSTD_e_end);
  };
  const Out x = run(shim(), p);
  const Out y = run(real_, p);
  EXPECT_EQ(x.codes, y.codes);
  // Three frames, each decompressing to its input.
  size_t at = 0;
  for (const Bytes* in : {&a, &small, &b}) {
    const size_t n = ZSTD_findFrameCompressedSize(x.bytes.data() + at, x.bytes.size() - at);
    ASSERT_FALSE(ZSTD_isError(n));
    EXPECT_EQ(decompress(Bytes(x.bytes.begin() + at, x.bytes.begin() + at + n), in->size()), *in);
    at += n;
  }
  EXPECT_EQ(at, x.bytes.size());
  expect_jobs(true, "frames");
}

// What stays with libzstd, byte for byte and error for error: a flush
// mid-frame, a dictionary, a prefix (its frame only), a non-default
// parameter, a frame larger than one job, a wrong pledged size, and the
// parameter changes libzstd refuses mid-frame.
TEST_P(ShimZstdTest, LibzstdKeepsWhatOffloadCannotDo) {
  const Bytes in = text_bytes(300000, 6), dict = text_bytes(5000, 7);
  std::vector<std::pair<const char*, Pattern>> cases = {
      {"flush mid-frame",
       [&](Shim& api, ZSTD_CCtx* c, Out& o) {
         stream_frame(api, c, o, in, 100000, 1 << 20, ZSTD_e_flush);
       }},
      {"dictionary",
       [&](Shim& api, ZSTD_CCtx* c, Out& o) {
         api.load_dict(c, dict.data(), dict.size());
         stream_frame(api, c, o, in, in.size(), 1 << 20, ZSTD_e_end);
         Bytes f(ZSTD_compressBound(in.size()));
         const size_t n = api.compress2(c, f.data(), f.size(), in.data(), in.size());
         o.codes.push_back(n);
         if (!ZSTD_isError(n)) o.bytes.insert(o.bytes.end(), f.begin(), f.begin() + n);
       }},
      {"window log",
       [&](Shim& api, ZSTD_CCtx* c, Out& o) {
         api.set(c, ZSTD_c_windowLog, 20);
         stream_frame(api, c, o, in, 50000, 1 << 20);
       }},
      {"workers (the program parallelises itself)",
       [&](Shim& api, ZSTD_CCtx* c, Out& o) {
         api.set(c, ZSTD_c_nbWorkers, 2);
         stream_frame(api, c, o, in, in.size(), 1 << 20, ZSTD_e_end);
       }},
      {"pledged size wrong",
       [&](Shim& api, ZSTD_CCtx* c, Out& o) {
         api.pledge(c, in.size() + 1);
         stream_frame(api, c, o, in, 50000, 1 << 20);
         api.reset(c, ZSTD_reset_session_only);
         api.pledge(c, in.size() - 1);
         stream_frame(api, c, o, in, in.size(), 1 << 20, ZSTD_e_end);
       }},
      {"parameters mid-frame",
       [&](Shim& api, ZSTD_CCtx* c, Out& o) {
         Bytes buf(1 << 20);
         ZSTD_inBuffer i{in.data(), 20000, 0};
         ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
         o.codes.push_back(api.stream2(c, &ob, &i, ZSTD_e_continue));
         o.codes.push_back(api.set(c, ZSTD_c_windowLog, 21));
         o.codes.push_back(api.set(c, ZSTD_c_compressionLevel, 4));
         o.codes.push_back(api.pledge(c, 5));
         o.codes.push_back(api.reset(c, ZSTD_reset_parameters));
         o.bytes.insert(o.bytes.end(), buf.data(), buf.data() + ob.pos);
         stream_frame(api, c, o, Bytes(in.begin() + 20000, in.end()), 50000, 1 << 20);
       }},
  };
  for (auto& [name, p] : cases) {
    const Out a = run(shim(), p), b = run(real_, p);
    EXPECT_EQ(a.codes, b.codes) << name;
    if (std::string(name) == "parameters mid-frame") {
      EXPECT_EQ(decompress(a.bytes, in.size()), in) << name;
    } else {
      EXPECT_EQ(a.bytes, b.bytes) << name;
    }
    expect_jobs(std::string(name) == "parameters mid-frame", name);
  }
  // A prefix holds for one frame: that one is libzstd's, the next one offloaded.
  Pattern prefix = [&](Shim& api, ZSTD_CCtx* c, Out& o) {
    api.ref_prefix(c, dict.data(), dict.size());
    stream_frame(api, c, o, in, in.size(), 1 << 20, ZSTD_e_end);
    stream_frame(api, c, o, in, in.size(), 1 << 20, ZSTD_e_end);
  };
  EXPECT_EQ(run(shim(), prefix).bytes, run(real_, prefix).bytes);
  expect_jobs(true, "frame after a prefix");
}

// The shim keeps what it knows of a context (a dictionary, a frame it left
// to libzstd, whose pieces then go straight to libzstd) until the context is
// freed: a context created after a free, at the same address as malloc often
// gives it, starts with nothing, whether the old one's frame had ended or not.
// Its frame is offloaded with the agent there, and is libzstd's bytes.
TEST_P(ShimZstdTest, AFreedContextLeavesNothingToTheNextOne) {
  const Bytes in = text_bytes(300000, 10), dict = text_bytes(5000, 11);
  auto fresh_frame = [&](const char* after) {
    Pattern p = [&](Shim& api, ZSTD_CCtx* c, Out& o) { stream_frame(api, c, o, in, 1000, 1 << 20); };
    EXPECT_EQ(run(shim(), p).bytes, run(real_, p).bytes) << after;
    expect_jobs(true, after);
  };
  for (int round = 0; round < 3; ++round) {
    ZSTD_CCtx* a = ZSTD_createCCtx();
    shim().load_dict(a, dict.data(), dict.size());
    Out first;
    stream_frame(shim(), a, first, in, 1000, 1 << 20);  // small pieces, each after the first straight to libzstd
    EXPECT_EQ(decompress(first.bytes, in.size(), &dict), in) << "round " << round;
    expect_jobs(false, "a frame under a dictionary");
    shim().free(a);
    fresh_frame("after a context whose frame ended");

    ZSTD_CCtx* b = ZSTD_createCCtx();
    shim().load_dict(b, dict.data(), dict.size());
    Bytes buf(1 << 20);
    for (size_t at = 0; at < 100000; at += 1000) {  // half a frame, never ended
      ZSTD_inBuffer i{in.data() + at, 1000, 0};
      ZSTD_outBuffer o{buf.data(), buf.size(), 0};
      ASSERT_FALSE(ZSTD_isError(shim().stream2(b, &o, &i, ZSTD_e_continue)));
    }
    shim().free(b);
    expect_jobs(false, "half a frame under a dictionary");
    fresh_frame("after a context freed mid-frame");
  }
}

// Larger than one job (a 1 MiB slab): libzstd takes the frame over, fed the
// collected input first; the output is libzstd's.
TEST_P(ShimZstdTest, FrameLargerThanOneJob) {
  setenv("GPO_SLAB_MB", "1", 1);
  gpo_set_socket(GetParam() ? agent_->socket().c_str() : ("/nonexistent/gpo-" + std::to_string(getpid())).c_str());
  const Bytes in = text_bytes(3 << 20, 8);
  Pattern p = [&](Shim& api, ZSTD_CCtx* c, Out& o) { stream_frame(api, c, o, in, 65536, 20000); };
  const Out a = run(shim(), p), b = run(real_, p);
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_EQ(jobs(), 0u);
  unsetenv("GPO_SLAB_MB");
}

// An agent that refuses this process's slab (its uid's quota is smaller):
// the stream goes to libzstd as it comes, never collected into a frame that
// would then be compressed here in one piece, after the fact.
TEST_P(ShimZstdTest, ARefusedProcessStreamsInLibzstd) {
  if (!GetParam()) GTEST_SKIP() << "needs the agent";
  ipc::ServerOptions o = agent_options("shimz-refused");
  o.uid_max_slab_bytes = 1 << 20;  // under the 64 MiB slab the library asks for
  InProcessAgent refusing(o);
  gpo_set_socket(o.socket_path.c_str());
  const Bytes in = text_bytes(3 << 20, 9);
  Pattern p = [&](Shim& api, ZSTD_CCtx* c, Out& o) { stream_frame(api, c, o, in, 65536, 20000); };
  const Out a = run(shim(), p), b = run(real_, p);
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_EQ(jobs(), 0u) << "the frame was collected and computed in the process";
  EXPECT_GE(refusing.server().stats().registrations_refused, 1u);
  gpo_set_socket(agent_->socket().c_str());
}

}  // namespace
}  // namespace gpo::test
