// The shim's zstd contexts and streams (docs/shim.md, "zstd streams"):
// ZSTD_compress2, ZSTD_compressStream2 and its wrappers (ZSTD_compressStream,
// ZSTD_flushStream, ZSTD_endStream, ZSTD_compressStream2_simpleArgs), with
// the bookkeeping that keeps libzstd's semantics: one frame per ZSTD_e_end,
// the header libzstd would write (content size only when it knows the size,
// the checksum when asked), dictionaries, prefixes, sequence producers and
// non-default parameters left to libzstd.
//
// A frame is offloaded whole: the agent compresses one input into one frame.
// So a stream is collected until ZSTD_e_end (libzstd may also hold input
// back and write nothing; a caller must loop until the frame is flushed)
// and sent as one job. It goes back to libzstd, fed the collected bytes
// first, when the frame grows past what one job holds, when the caller
// flushes mid-frame (ZSTD_e_flush promises output now), or when the frame
// ends below the offload size. A frame given whole in one ZSTD_e_end call
// goes straight out without a copy.
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "gpuoffload.h"
#include "shim.h"
#include "zstd_frame.h"

namespace {

using namespace gpo::shim;

enum class Mode { idle, collect, feed, drain, pass };

struct Stream {
  Mode mode = Mode::idle;
  std::vector<uint8_t> buf;  // collect: the frame's input so far; feed: input libzstd has yet to see; drain: the frame
  size_t pos = 0;            // feed, drain: how far into buf
  bool dict = false;         // a dictionary or sequence producer: libzstd's
  bool prefix = false;       // ZSTD_CCtx_refPrefix: for the next frame only
  unsigned long long pledged = ZSTD_CONTENTSIZE_UNKNOWN;
  // The frame in progress, for gpo_account when it ends.
  int path = GPO_PATH_CPU_SMALL;
  uint64_t calls = 0, bytes = 0;
  unsigned long long ns = 0;  // time in the offload job (collecting is the caller's time)
};

std::mutex g_mu;
std::unordered_map<ZSTD_CCtx*, Stream> g_streams;
// Bumped (under g_mu) whenever an entry goes: a thread's cached entry is good
// only while the count it saw is current.
std::atomic<uint64_t> g_erased{0};

// The entry this thread used last: a stream fed in small pieces makes a call
// per piece, and the map's lock would cost each as much as libzstd's own
// buffering does (and serialise threads that each stream on a context).
struct LastStream {
  ZSTD_CCtx* c = nullptr;
  Stream* s = nullptr;
  uint64_t erased = 0;
};
thread_local LastStream t_last;

// The context's state (created on first use). The map only changes under
// g_mu; an entry is used by the one thread that uses its context (libzstd's
// own rule), so the pointer stays valid until that thread frees or resets it
// (its values do not move when the map grows).
Stream* lookup(ZSTD_CCtx* c, bool create) {
  LastStream& last = t_last;
  if (last.c == c && last.erased == g_erased.load(std::memory_order_acquire)) return last.s;
  std::lock_guard lk(g_mu);
  Stream* s = nullptr;
  if (create) {
    s = &g_streams[c];
  } else {
    auto it = g_streams.find(c);
    if (it == g_streams.end()) return nullptr;
    s = &it->second;
  }
  last = {c, s, g_erased.load(std::memory_order_relaxed)};
  return s;
}
Stream& stream(ZSTD_CCtx* c) { return *lookup(c, true); }
Stream* find(ZSTD_CCtx* c) { return lookup(c, false); }
void forget(ZSTD_CCtx* c) {
  front_end_pass();
  std::lock_guard lk(g_mu);
  if (g_streams.erase(c)) g_erased.fetch_add(1, std::memory_order_release);
}

size_t zstd_error(ZSTD_ErrorCode e) { return size_t(0) - size_t(e); }

template <typename F>
struct Real {
  std::atomic<F> slot{nullptr};
  const char* name;
  explicit Real(const char* n) : name(n) {}
  F operator*() { return real(slot, name); }
};

Real<size_t (*)(ZSTD_CCtx*, ZSTD_outBuffer*, ZSTD_inBuffer*, ZSTD_EndDirective)> r_stream2("ZSTD_compressStream2");
Real<size_t (*)(ZSTD_CCtx*, ZSTD_outBuffer*, ZSTD_inBuffer*)> r_stream("ZSTD_compressStream");
Real<size_t (*)(ZSTD_CCtx*, ZSTD_outBuffer*)> r_flush("ZSTD_flushStream");
Real<size_t (*)(ZSTD_CCtx*, ZSTD_outBuffer*)> r_end("ZSTD_endStream");
Real<size_t (*)(ZSTD_CCtx*, void*, size_t, size_t*, const void*, size_t, size_t*, ZSTD_EndDirective)> r_simple(
    "ZSTD_compressStream2_simpleArgs");
Real<size_t (*)(ZSTD_CCtx*, void*, size_t, const void*, size_t)> r_compress2("ZSTD_compress2");
Real<size_t (*)(ZSTD_CCtx*, ZSTD_ResetDirective)> r_reset("ZSTD_CCtx_reset");
Real<size_t (*)(ZSTD_CCtx*)> r_free("ZSTD_freeCCtx");
Real<size_t (*)(ZSTD_CStream*)> r_free_stream("ZSTD_freeCStream");
Real<size_t (*)(ZSTD_CCtx*, ZSTD_cParameter, int)> r_set("ZSTD_CCtx_setParameter");
Real<size_t (*)(ZSTD_CCtx*, unsigned long long)> r_pledge("ZSTD_CCtx_setPledgedSrcSize");
Real<size_t (*)(ZSTD_CCtx*, const void*, size_t)> r_load("ZSTD_CCtx_loadDictionary");
Real<size_t (*)(ZSTD_CCtx*, const void*, size_t)> r_load_ref("ZSTD_CCtx_loadDictionary_byReference");
Real<size_t (*)(ZSTD_CCtx*, const void*, size_t, ZSTD_dictLoadMethod_e, ZSTD_dictContentType_e)> r_load_adv(
    "ZSTD_CCtx_loadDictionary_advanced");
Real<size_t (*)(ZSTD_CCtx*, const ZSTD_CDict*)> r_ref_cdict("ZSTD_CCtx_refCDict");
Real<size_t (*)(ZSTD_CCtx*, const void*, size_t)> r_ref_prefix("ZSTD_CCtx_refPrefix");
Real<size_t (*)(ZSTD_CCtx*, const void*, size_t, ZSTD_dictContentType_e)> r_ref_prefix_adv(
    "ZSTD_CCtx_refPrefix_advanced");
Real<size_t (*)(ZSTD_CStream*, int)> r_init("ZSTD_initCStream");
Real<size_t (*)(ZSTD_CStream*, int, unsigned long long)> r_init_size("ZSTD_initCStream_srcSize");
Real<size_t (*)(ZSTD_CStream*, const void*, size_t, int)> r_init_dict("ZSTD_initCStream_usingDict");
Real<size_t (*)(ZSTD_CStream*, const ZSTD_CDict*)> r_init_cdict("ZSTD_initCStream_usingCDict");
Real<size_t (*)(ZSTD_CStream*, const ZSTD_CDict*, ZSTD_frameParameters, unsigned long long)> r_init_cdict_adv(
    "ZSTD_initCStream_usingCDict_advanced");
Real<size_t (*)(ZSTD_CStream*, const void*, size_t, ZSTD_parameters, unsigned long long)> r_init_adv(
    "ZSTD_initCStream_advanced");
Real<size_t (*)(ZSTD_CStream*, unsigned long long)> r_reset_stream("ZSTD_resetCStream");
Real<void (*)(ZSTD_CCtx*, void*, ZSTD_sequenceProducer_F*)> r_seqprod("ZSTD_registerSequenceProducer");

// --- when a frame may be offloaded --------------------------------------------------

struct Params {
  int level = 0;
  bool checksum = false;
  bool content_size = true;
};

// Parameters the offloaded frame reproduces (level, checksum, content size),
// or false when any other one differs from libzstd's default (its frame
// would then be another frame than ZSTD_compress() makes at that level).
bool offloadable_params(ZSTD_CCtx* c, Params* p) {
  auto get = [c](ZSTD_cParameter k) {
    int v = 0;
    return ZSTD_isError(ZSTD_CCtx_getParameter(c, k, &v)) ? 0 : v;  // unknown to this libzstd: never set
  };
  p->level = get(ZSTD_c_compressionLevel);
  p->checksum = get(ZSTD_c_checksumFlag) != 0;
  p->content_size = get(ZSTD_c_contentSizeFlag) != 0;
  static const ZSTD_cParameter kDefaultOnly[] = {
      ZSTD_c_windowLog, ZSTD_c_hashLog, ZSTD_c_chainLog, ZSTD_c_searchLog, ZSTD_c_minMatch, ZSTD_c_targetLength,
      ZSTD_c_strategy, ZSTD_c_ldmHashLog, ZSTD_c_ldmMinMatch, ZSTD_c_ldmBucketSizeLog, ZSTD_c_ldmHashRateLog,
      ZSTD_c_targetCBlockSize, ZSTD_c_rsyncable, ZSTD_c_format, ZSTD_c_forceMaxWindow, ZSTD_c_literalCompressionMode,
      ZSTD_c_stableInBuffer, ZSTD_c_stableOutBuffer, ZSTD_c_useBlockSplitter, ZSTD_c_useRowMatchFinder};
  for (ZSTD_cParameter k : kDefaultOnly)
    if (get(k) != 0) return false;
  // A program that asked for workers already spreads the frame over its cores while
  // the data streams in; one collected job, started after the last byte, only loses.
  if (get(ZSTD_c_nbWorkers) != 0) return false;
  const int ldm = get(ZSTD_c_enableLongDistanceMatching);
  return ldm == 0 || ldm == int(ZSTD_ps_disable);
}

// How a frame of n bytes would go: GPO_PATH_OFFLOAD or why not. complete:
// n is the whole frame (else more may come: only the upper bound applies).
// The lower bound is the shim's (GPO_SHIM_MIN_BYTES), as for one-shot calls.
int route(ZSTD_CCtx* c, const Stream& s, size_t n, bool complete, Params* p) {
  if (s.dict || s.prefix || !offloadable_params(c, p)) return GPO_PATH_CPU_PARAMS;
  size_t lo = 0, hi = 0;
  gpo_offload_range(GPO_ZSTD_COMPRESS, &lo, &hi);
  if (lo == SIZE_MAX) return gpo_offload_reason(GPO_ZSTD_COMPRESS);
  if (n > hi) return GPO_PATH_CPU_TOO_LARGE;
  if (complete && n < threshold()) return GPO_PATH_CPU_SMALL;
  if (complete && n < lo) return GPO_PATH_CPU_SMALL;
  // libzstd checks a pledged size against the frame (srcSize_wrong): its call.
  if (complete && s.pledged != ZSTD_CONTENTSIZE_UNKNOWN && s.pledged != n) return GPO_PATH_CPU_PARAMS;
  return GPO_PATH_OFFLOAD;
}

void end_frame(Stream& s) {
  front_end_pass();
  if (s.calls) gpo_account(GPO_ZSTD_COMPRESS, s.path, s.calls, s.bytes, s.path == GPO_PATH_OFFLOAD ? s.ns : 0);
  s.calls = s.bytes = s.ns = 0;
  s.mode = Mode::idle;
  s.pos = 0;
  s.prefix = false;
  s.pledged = ZSTD_CONTENTSIZE_UNKNOWN;
  if (s.buf.capacity() > (size_t(1) << 20)) std::vector<uint8_t>().swap(s.buf);
  s.buf.clear();
}

// One whole frame of src[0, n) into dst (cap bytes), with libzstd's header.
// 0: not done (the caller lets libzstd do it).
size_t offload_frame(uint8_t* dst, size_t cap, const uint8_t* src, size_t n, const Params& p, bool size_known) {
  size_t out = 0;
  if (gpo_zstd_compress(dst, cap, src, n, p.level, &out) != GPO_OK) return 0;
  gpo::zstd_frame::Want w;
  w.size_known = size_known;
  w.content_size = p.content_size;
  w.checksum = p.checksum;
  w.level = p.level;
  return gpo::zstd_frame::rewrite(dst, out, cap, src, n, w);
}

// --- the stream's states ---------------------------------------------------------------

size_t drain(Stream& s, ZSTD_outBuffer* out) {
  const size_t k = std::min(s.buf.size() - s.pos, out->size - out->pos);
  std::memcpy(static_cast<uint8_t*>(out->dst) + out->pos, s.buf.data() + s.pos, k);
  out->pos += k;
  s.pos += k;
  const size_t left = s.buf.size() - s.pos;
  if (!left) end_frame(s);
  return left;
}

// Hands the collected bytes to libzstd (ZSTD_e_continue), then the caller's
// call itself once they are all in. The frame is libzstd's from here on.
size_t feed(ZSTD_CCtx* c, Stream& s, ZSTD_outBuffer* out, ZSTD_inBuffer* in, ZSTD_EndDirective op) {
  while (s.pos < s.buf.size()) {
    ZSTD_inBuffer b{s.buf.data(), s.buf.size(), s.pos};
    const size_t r = (*r_stream2)(c, out, &b, ZSTD_e_continue);
    s.pos = b.pos;
    if (ZSTD_isError(r)) {
      s.mode = Mode::pass;
      return r;
    }
    if (s.pos < s.buf.size() && out->pos == out->size) return std::max<size_t>(r, 1);  // more to come
  }
  s.buf.clear();
  s.pos = 0;
  s.mode = Mode::pass;
  const size_t before = in->pos;
  const size_t r = (*r_stream2)(c, out, in, op);
  s.bytes += in->pos - before;
  if (op == ZSTD_e_end && r == 0) end_frame(s);
  return r;
}

// Gives up collecting: libzstd gets the frame (fed first what was collected).
size_t give_up(ZSTD_CCtx* c, Stream& s, int why, ZSTD_outBuffer* out, ZSTD_inBuffer* in, ZSTD_EndDirective op) {
  s.path = why;
  s.mode = Mode::feed;
  s.pos = 0;
  return feed(c, s, out, in, op);
}

size_t compress_stream2(ZSTD_CCtx* c, ZSTD_outBuffer* out, ZSTD_inBuffer* in, ZSTD_EndDirective op) {
  Stream& s = stream(c);
  const size_t avail = in->size - in->pos;
  switch (s.mode) {
    case Mode::pass: {
      front_pass(c);  // before the call: a frame it ends is forgotten again
      s.calls++;
      const size_t before = in->pos;
      const size_t r = (*r_stream2)(c, out, in, op);
      s.bytes += in->pos - before;
      if (op == ZSTD_e_end && r == 0) end_frame(s);
      return r;
    }
    case Mode::drain:
      return drain(s, out);
    case Mode::feed:
      s.calls++;
      return feed(c, s, out, in, op);
    case Mode::idle:
      if (avail == 0 && op != ZSTD_e_end) return (*r_stream2)(c, out, in, op);  // no frame yet
      s.calls = s.bytes = s.ns = 0;
      if (op == ZSTD_e_end) {
        // The whole frame in one call: libzstd knows its size, and so do we.
        Params p;
        s.calls = 1;
        int why = route(c, s, avail, true, &p);
        const auto* src = static_cast<const uint8_t*>(in->src) + in->pos;
        if (why == GPO_PATH_OFFLOAD) {
          const auto t0 = now_ns();
          const size_t bound = ZSTD_compressBound(avail) + 32;
          size_t n = 0;
          if (out->size - out->pos >= bound) {  // straight into the caller's buffer
            n = offload_frame(static_cast<uint8_t*>(out->dst) + out->pos, out->size - out->pos, src, avail, p, true);
            if (n) {
              out->pos += n;
              in->pos = in->size;
              s.path = GPO_PATH_OFFLOAD;
              s.bytes = avail;
              s.ns = now_ns() - t0;
              end_frame(s);
              return 0;
            }
          } else {
            s.buf.resize(bound);
            n = offload_frame(s.buf.data(), bound, src, avail, p, true);
            if (n) {
              s.buf.resize(n);
              in->pos = in->size;
              s.path = GPO_PATH_OFFLOAD;
              s.bytes = avail;
              s.ns = now_ns() - t0;
              s.mode = Mode::drain;
              s.pos = 0;
              return drain(s, out);
            }
            s.buf.clear();
          }
          why = GPO_PATH_CPU_PARAMS;  // the library refused: libzstd does it
        }
        s.path = why;
        s.mode = Mode::pass;
        const size_t before = in->pos;
        const size_t r = (*r_stream2)(c, out, in, op);
        s.bytes += in->pos - before;
        if (r == 0) end_frame(s);
        return r;
      }
      // Collecting commits the frame to one job: only with a slab the agent took.
      if (Params probe; route(c, s, avail, false, &probe) == GPO_PATH_OFFLOAD && !gpo_offload_ready()) {
        s.calls++;
        return give_up(c, s, GPO_PATH_CPU_NO_AGENT, out, in, op);
      }
      s.mode = Mode::collect;
      s.path = GPO_PATH_OFFLOAD;
      [[fallthrough]];
    case Mode::collect: {
      s.calls++;
      Params p;
      const int why = route(c, s, s.buf.size() + avail, false, &p);
      if (why != GPO_PATH_OFFLOAD) return give_up(c, s, why, out, in, op);
      if (op == ZSTD_e_flush) return give_up(c, s, GPO_PATH_CPU_STREAM, out, in, op);  // output promised now
      const auto* src = static_cast<const uint8_t*>(in->src) + in->pos;
      s.buf.insert(s.buf.end(), src, src + avail);
      s.bytes += avail;
      in->pos = in->size;
      if (op == ZSTD_e_continue) return 0;  // nothing written, nothing waiting to be flushed
      // ZSTD_e_end: the frame is all here.
      ZSTD_inBuffer none{nullptr, 0, 0};
      const int end_why = route(c, s, s.buf.size(), true, &p);
      if (end_why != GPO_PATH_OFFLOAD) return give_up(c, s, end_why, out, &none, op);
      const auto t0 = now_ns();
      std::vector<uint8_t> frame(ZSTD_compressBound(s.buf.size()) + 32);
      const size_t n = offload_frame(frame.data(), frame.size(), s.buf.data(), s.buf.size(), p,
                                     s.pledged != ZSTD_CONTENTSIZE_UNKNOWN);
      s.ns = now_ns() - t0;
      if (!n) return give_up(c, s, GPO_PATH_CPU_PARAMS, out, &none, op);
      frame.resize(n);
      s.buf.swap(frame);
      s.mode = Mode::drain;
      s.pos = 0;
      return drain(s, out);
    }
  }
  return (*r_stream2)(c, out, in, op);
}

}  // namespace

extern "C" {

#define GPO_EXPORT __attribute__((visibility("default")))

// The wrappers below call this, not the exported name: they must reach the
// shim's logic wherever the shim sits in the symbol search order.
static size_t stream2_entry(ZSTD_CCtx* c, ZSTD_outBuffer* out, ZSTD_inBuffer* in, ZSTD_EndDirective op) {
  if (t_inside || !c || !out || !in || in->pos > in->size || out->pos > out->size) return (*r_stream2)(c, out, in, op);
  Guard g;
  return compress_stream2(c, out, in, op);
}

GPO_EXPORT size_t ZSTD_compressStream2(ZSTD_CCtx* c, ZSTD_outBuffer* out, ZSTD_inBuffer* in, ZSTD_EndDirective op) {
  return stream2_entry(c, out, in, op);
}

GPO_EXPORT size_t ZSTD_compressStream2_simpleArgs(ZSTD_CCtx* c, void* dst, size_t cap, size_t* dst_pos,
                                                  const void* src, size_t size, size_t* src_pos, ZSTD_EndDirective op) {
  if (t_inside || !c || !dst_pos || !src_pos) return (*r_simple)(c, dst, cap, dst_pos, src, size, src_pos, op);
  ZSTD_outBuffer o{dst, cap, *dst_pos};
  ZSTD_inBuffer i{src, size, *src_pos};
  const size_t r = stream2_entry(c, &o, &i, op);
  *dst_pos = o.pos;
  *src_pos = i.pos;
  return r;
}

// The legacy wrappers: the same as ZSTD_compressStream2, and the same answers.
GPO_EXPORT size_t ZSTD_compressStream(ZSTD_CStream* c, ZSTD_outBuffer* out, ZSTD_inBuffer* in) {
  if (t_inside || !c || !out || !in || in->pos > in->size || out->pos > out->size) return (*r_stream)(c, out, in);
  Guard g;
  Stream* s = find(c);
  if (s && s->mode == Mode::pass) {  // libzstd's frame: its own answer (a hint of the input it wants next)
    front_pass(c);
    s->calls++;
    const size_t before = in->pos;
    const size_t r = (*r_stream)(c, out, in);
    s->bytes += in->pos - before;
    return r;
  }
  const size_t r = compress_stream2(c, out, in, ZSTD_e_continue);
  return ZSTD_isError(r) ? r : ZSTD_CStreamInSize();
}

GPO_EXPORT size_t ZSTD_flushStream(ZSTD_CStream* c, ZSTD_outBuffer* out) {
  if (t_inside || !c || !out) return (*r_flush)(c, out);
  ZSTD_inBuffer none{nullptr, 0, 0};
  return stream2_entry(c, out, &none, ZSTD_e_flush);
}

GPO_EXPORT size_t ZSTD_endStream(ZSTD_CStream* c, ZSTD_outBuffer* out) {
  if (t_inside || !c || !out) return (*r_end)(c, out);
  ZSTD_inBuffer none{nullptr, 0, 0};
  return stream2_entry(c, out, &none, ZSTD_e_end);
}

// One frame from one buffer, with the context's parameters; the session is
// reset first, as libzstd does.
GPO_EXPORT size_t ZSTD_compress2(ZSTD_CCtx* c, void* dst, size_t cap, const void* src, size_t n) {
  if (t_inside || !c) return (*r_compress2)(c, dst, cap, src, n);
  Guard g;
  (*r_reset)(c, ZSTD_reset_session_only);
  Stream& s = stream(c);
  const bool prefix = s.prefix;
  end_frame(s);
  s.prefix = prefix;
  Params p;
  int why = route(c, s, n, true, &p);
  if (why == GPO_PATH_OFFLOAD && dst && src) {
    const auto t0 = now_ns();
    const size_t out = offload_frame(static_cast<uint8_t*>(dst), cap, static_cast<const uint8_t*>(src), n, p, true);
    if (out) {
      gpo_account(GPO_ZSTD_COMPRESS, GPO_PATH_OFFLOAD, 1, n, now_ns() - t0);
      return out;
    }
    why = GPO_PATH_CPU_PARAMS;  // does not fit cap, or refused: libzstd's own answer
  }
  gpo_account(GPO_ZSTD_COMPRESS, why, 1, n, 0);
  s.prefix = false;
  return (*r_compress2)(c, dst, cap, src, n);
}

// --- bookkeeping: what libzstd is told, the shim remembers ----------------------------

GPO_EXPORT size_t ZSTD_CCtx_reset(ZSTD_CCtx* c, ZSTD_ResetDirective how) {
  Stream* s = c ? find(c) : nullptr;
  const bool mid_frame = s && s->mode != Mode::idle && s->mode != Mode::pass;
  // Parameters change only between frames: libzstd refuses mid-frame (it has
  // seen input; a collected frame's input is still ours alone).
  if (how == ZSTD_reset_parameters && mid_frame) return zstd_error(ZSTD_error_stage_wrong);
  const size_t r = (*r_reset)(c, how);
  if (s && !ZSTD_isError(r)) {
    if (how != ZSTD_reset_parameters) end_frame(*s);
    if (how != ZSTD_reset_session_only) s->dict = s->prefix = false;
  }
  return r;
}

GPO_EXPORT size_t ZSTD_freeCCtx(ZSTD_CCtx* c) {
  if (c) forget(c);
  return (*r_free)(c);
}

GPO_EXPORT size_t ZSTD_freeCStream(ZSTD_CStream* c) {
  if (c) forget(c);
  return (*r_free_stream)(c);
}

GPO_EXPORT size_t ZSTD_CCtx_setParameter(ZSTD_CCtx* c, ZSTD_cParameter k, int v) {
  Stream* s = c ? find(c) : nullptr;
  if (s && s->mode != Mode::idle && s->mode != Mode::pass) {
    // Mid-frame libzstd takes only the parameters it may update between blocks.
    switch (k) {
      case ZSTD_c_compressionLevel: case ZSTD_c_hashLog: case ZSTD_c_chainLog: case ZSTD_c_searchLog:
      case ZSTD_c_minMatch: case ZSTD_c_targetLength: case ZSTD_c_strategy:
        break;
      default:
        return zstd_error(ZSTD_error_stage_wrong);
    }
  }
  return (*r_set)(c, k, v);
}

GPO_EXPORT size_t ZSTD_CCtx_setPledgedSrcSize(ZSTD_CCtx* c, unsigned long long n) {
  Stream* s = c ? find(c) : nullptr;
  if (s && s->mode != Mode::idle && s->mode != Mode::pass) return zstd_error(ZSTD_error_stage_wrong);
  const size_t r = (*r_pledge)(c, n);
  if (c && !ZSTD_isError(r)) stream(c).pledged = n;
  return r;
}

// Dictionaries, prefixes and sequence producers: frames that use them are
// libzstd's (the agent has none of them).
size_t with_dict(ZSTD_CCtx* c, size_t r, bool on) {
  if (c && !ZSTD_isError(r)) stream(c).dict = on;
  return r;
}

GPO_EXPORT size_t ZSTD_CCtx_loadDictionary(ZSTD_CCtx* c, const void* d, size_t n) {
  return with_dict(c, (*r_load)(c, d, n), d && n);
}
GPO_EXPORT size_t ZSTD_CCtx_loadDictionary_byReference(ZSTD_CCtx* c, const void* d, size_t n) {
  return with_dict(c, (*r_load_ref)(c, d, n), d && n);
}
GPO_EXPORT size_t ZSTD_CCtx_loadDictionary_advanced(ZSTD_CCtx* c, const void* d, size_t n, ZSTD_dictLoadMethod_e m,
                                                    ZSTD_dictContentType_e t) {
  return with_dict(c, (*r_load_adv)(c, d, n, m, t), d && n);
}
GPO_EXPORT size_t ZSTD_CCtx_refCDict(ZSTD_CCtx* c, const ZSTD_CDict* d) {
  return with_dict(c, (*r_ref_cdict)(c, d), d != nullptr);
}
GPO_EXPORT size_t ZSTD_CCtx_refPrefix(ZSTD_CCtx* c, const void* p, size_t n) {
  const size_t r = (*r_ref_prefix)(c, p, n);
  if (c && !ZSTD_isError(r)) stream(c).prefix = p && n;
  return r;
}
GPO_EXPORT size_t ZSTD_CCtx_refPrefix_advanced(ZSTD_CCtx* c, const void* p, size_t n, ZSTD_dictContentType_e t) {
  const size_t r = (*r_ref_prefix_adv)(c, p, n, t);
  if (c && !ZSTD_isError(r)) stream(c).prefix = p && n;
  return r;
}
GPO_EXPORT void ZSTD_registerSequenceProducer(ZSTD_CCtx* c, void* state, ZSTD_sequenceProducer_F* f) {
  (*r_seqprod)(c, state, f);
  if (c) stream(c).dict = f != nullptr;
}

// The init functions: a session reset plus parameters (and a dictionary).
size_t after_init(ZSTD_CStream* c, size_t r, bool dict, unsigned long long pledged) {
  if (!c || ZSTD_isError(r)) return r;
  Stream& s = stream(c);
  end_frame(s);
  s.dict = dict;
  s.pledged = pledged;
  return r;
}

GPO_EXPORT size_t ZSTD_initCStream(ZSTD_CStream* c, int level) {
  Guard g;
  return after_init(c, (*r_init)(c, level), false, ZSTD_CONTENTSIZE_UNKNOWN);
}
GPO_EXPORT size_t ZSTD_initCStream_srcSize(ZSTD_CStream* c, int level, unsigned long long n) {
  Guard g;
  // "0" means unknown here, for compatibility with older programs (zstd.h).
  return after_init(c, (*r_init_size)(c, level, n), false, n ? n : ZSTD_CONTENTSIZE_UNKNOWN);
}
GPO_EXPORT size_t ZSTD_initCStream_usingDict(ZSTD_CStream* c, const void* d, size_t n, int level) {
  Guard g;
  return after_init(c, (*r_init_dict)(c, d, n, level), d && n, ZSTD_CONTENTSIZE_UNKNOWN);
}
GPO_EXPORT size_t ZSTD_initCStream_usingCDict(ZSTD_CStream* c, const ZSTD_CDict* d) {
  Guard g;
  return after_init(c, (*r_init_cdict)(c, d), d != nullptr, ZSTD_CONTENTSIZE_UNKNOWN);
}
GPO_EXPORT size_t ZSTD_initCStream_usingCDict_advanced(ZSTD_CStream* c, const ZSTD_CDict* d, ZSTD_frameParameters f,
                                                       unsigned long long n) {
  Guard g;
  return after_init(c, (*r_init_cdict_adv)(c, d, f, n), true, n);  // legacy: left to libzstd
}
GPO_EXPORT size_t ZSTD_initCStream_advanced(ZSTD_CStream* c, const void* d, size_t n, ZSTD_parameters p,
                                            unsigned long long size) {
  Guard g;
  return after_init(c, (*r_init_adv)(c, d, n, p, size), true, size);  // legacy: left to libzstd
}
GPO_EXPORT size_t ZSTD_resetCStream(ZSTD_CStream* c, unsigned long long n) {
  Guard g;
  return after_init(c, (*r_reset_stream)(c, n), find(c) && find(c)->dict, n ? n : ZSTD_CONTENTSIZE_UNKNOWN);
}

}  // extern "C"
