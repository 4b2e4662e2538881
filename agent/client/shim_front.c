// libgpuoffload-shim.so, the library users preload: the front of the shim.
//
// It is loaded into every process of a session, most of which never make a
// call worth offloading, so it holds nothing but the interposed entry points:
// C, no C++ runtime, no libzstd, zlib or libcrypto of its own (the program's
// are found with dlsym(RTLD_NEXT) when it calls them). The shim's logic, the
// client library and their runtimes live in libgpuoffload-shim-core.so, next
// to this file, opened the first time a call needs it:
//
//   - a one-shot call (SHA256, ZSTD_compress, ZSTD_compressCCtx,
//     ZSTD_compress2, compress, compress2, crc32, crc32_z) at or over the
//     threshold, or any such call while the process accounts its calls for
//     `gpuoffload-agent exec` (GPO_STATS_DIR set);
//   - a zstd call whose state the shim must follow (pledged sizes,
//     dictionaries, prefixes, streams): from then on every frame of the
//     process is the core's to route, as if it had always been loaded.
//
// Calls that only drop state the core never saw (ZSTD_CCtx_reset,
// ZSTD_freeCCtx, ZSTD_freeCStream) and ZSTD_CCtx_setParameter (the core
// reads parameters back from libzstd) go straight to libzstd until then.
// Once the core is loaded every call goes to it. docs/shim.md.
#define _GNU_SOURCE
#define ZSTD_STATIC_LINKING_ONLY
#define ZSTD_DISABLE_DEPRECATE_WARNINGS  // the legacy init calls are interposed as they are
#include <dlfcn.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#define EXPORT __attribute__((visibility("default")))

// OpenSSL's one-shot digest, declared here: the front includes no OpenSSL
// header and links no libcrypto.
unsigned char* SHA256(const unsigned char* d, size_t n, unsigned char* md);

static const char kCoreName[] = "libgpuoffload-shim-core.so";

// --- what the program's own libraries define ----------------------------------------

// The library that defines an interposed name: zstd's, zlib's or OpenSSL's.
static const char* home_library(const char* name) {
  if (!strncmp(name, "ZSTD_", 5)) return "libzstd.so.1";
  if (!strcmp(name, "SHA256")) return "libcrypto.so.3";
  return "libz.so.1";
}

// The next definition of name after this library: the program's libzstd,
// zlib or libcrypto. When no later object of the global scope has it (a
// program that loaded the library RTLD_LOCAL: Python's extension modules,
// plugins; or the front itself opened RTLD_LOCAL), from the library that
// defines it, opened by its soname (the program's copy when it has one). The
// core resolves the real functions through this too (gpo_shim_core_attach).
static void* next_definition(const char* name) {
  void* f = dlsym(RTLD_NEXT, name);
  if (!f) {
    void* h = dlopen(home_library(name), RTLD_NOW | RTLD_LOCAL);
    if (h) f = dlsym(h, name);
  }
  return f;
}

// GPO_SHIM_MIN_BYTES (default 64 KiB): one-shot calls below it are not
// offered. secure_getenv: a set-user-ID program (the shim in
// /etc/ld.so.preload) keeps the default. Read once; the checks every call
// makes are inlined loads (a program may make millions of tiny calls).
static _Atomic size_t g_min_bytes = SIZE_MAX;  // SIZE_MAX: not read yet
static atomic_int g_accounting = -1;           // -1: not read yet

static __attribute__((noinline, cold)) size_t read_min_bytes(void) {
  size_t t = (size_t)64 << 10;
  const char* v = secure_getenv("GPO_SHIM_MIN_BYTES");
  if (v && *v) {
    char* end = NULL;
    unsigned long long x = strtoull(v, &end, 10);
    if (end && !*end && x < SIZE_MAX) t = (size_t)x;
  }
  atomic_store_explicit(&g_min_bytes, t, memory_order_relaxed);
  return t;
}

static size_t min_bytes(void) {
  const size_t t = atomic_load_explicit(&g_min_bytes, memory_order_relaxed);
  return __builtin_expect(t != SIZE_MAX, 1) ? t : read_min_bytes();
}

static __attribute__((noinline, cold)) bool read_accounting(void) {
  const char* d = secure_getenv("GPO_STATS_DIR");
  const int a = d && *d;
  atomic_store_explicit(&g_accounting, a, memory_order_relaxed);
  return a;
}

// True when the process accounts every call for `gpuoffload-agent exec`: the
// core counts small calls too, so it is wanted at the first call of any size.
static inline bool accounting(void) {
  const int a = atomic_load_explicit(&g_accounting, memory_order_relaxed);
  return __builtin_expect(a >= 0, 1) ? a : read_accounting();
}

static inline bool wanted(size_t n) { return n >= min_bytes() || accounting(); }

// --- frames the core leaves to libzstd ---------------------------------------------------

// A stream whose frame the core handed to libzstd (too small to offload, or
// a dictionary, a flush, parameters the agent does not reproduce) needs the
// core again only at the frame's end: until then its calls go straight to
// libzstd. The core notes such a context for the thread that feeds it, and
// any frame's end or any context's free makes every thread forget its note
// (one counter: a note is good while the counter is what it was). A stream
// fed in small pieces would otherwise pay the core's bookkeeping per piece.
static _Atomic uint64_t g_pass_epoch;
struct pass_note {
  void* ctx;
  uint64_t epoch;
};
static _Thread_local struct pass_note t_pass;

static void core_pass(void* c) {
  t_pass.ctx = c;
  t_pass.epoch = atomic_load_explicit(&g_pass_epoch, memory_order_acquire);
}

static void core_end_pass(void) { atomic_fetch_add_explicit(&g_pass_epoch, 1, memory_order_acq_rel); }

// Counting every call (exec) needs the core's view of each.
static inline bool passing(const void* c) {
  return c && t_pass.ctx == c && t_pass.epoch == atomic_load_explicit(&g_pass_epoch, memory_order_acquire) &&
         !accounting();
}

// --- the core --------------------------------------------------------------------------

static _Atomic(void*) g_core;      // its handle once open and attached
static atomic_bool g_core_failed;  // it could not be opened: every call stays with the program's libraries
static _Thread_local bool t_opening;  // this thread is inside dlopen of the core

// No lock: threads that race here open the same file, which dlopen hands
// back as the same handle, and attach it with the same two pointers (no lock
// also means none a fork could leave held in the child).
static void* open_core(void) {
  // A call made by the core's own initialisation on this thread goes to the
  // real function.
  if (t_opening || atomic_load_explicit(&g_core_failed, memory_order_relaxed)) return NULL;
  Dl_info self = {0};
  char path[PATH_MAX];
  const char* slash = NULL;
  void* h = NULL;
  if (dladdr((void*)&next_definition, &self) && self.dli_fname) slash = strrchr(self.dli_fname, '/');
  if (slash && (size_t)(slash - self.dli_fname) + sizeof kCoreName + 1 <= sizeof path) {
    snprintf(path, sizeof path, "%.*s/%s", (int)(slash - self.dli_fname), self.dli_fname, kCoreName);
    t_opening = true;
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    t_opening = false;
  }
  // The core gets what only the front can give it: the program's own
  // definitions, the threshold, and the notes of streams left to libzstd.
  void (*attach)(void* (*)(const char*), size_t (*)(void), void (*)(void*), void (*)(void)) = NULL;
  if (h) *(void**)&attach = dlsym(h, "gpo_shim_core_attach");
  if (attach) {
    attach(next_definition, min_bytes, core_pass, core_end_pass);
    atomic_store_explicit(&g_core, h, memory_order_release);
    return h;
  }
  const char* why = h ? "it has no gpo_shim_core_attach" : dlerror();
  if (!atomic_exchange(&g_core_failed, true))
    fprintf(stderr, "gpuoffload shim: cannot open %s next to %s (%s); calls stay with the program's libraries\n",
            kCoreName, self.dli_fname ? self.dli_fname : "the shim", why ? why : "not found");
  return NULL;
}

// One interposed function: its definition in the core and the next one.
struct fn {
  const char* name;
  _Atomic(void*) core, next;
};

static __attribute__((noinline, cold)) void* find_next(struct fn* f) {
  void* p = next_definition(f->name);
  atomic_store_explicit(&f->next, p, memory_order_release);
  return p;
}

static inline void* next_of(struct fn* f) {
  void* p = atomic_load_explicit(&f->next, memory_order_acquire);
  return __builtin_expect(p != NULL, 1) ? p : find_next(f);
}

// Where this call goes: the core when it is open or want opens it, else the
// program's own definition.
static void* route(struct fn* f, bool want) {
  void* h = atomic_load_explicit(&g_core, memory_order_acquire);
  if (!h && want) h = open_core();
  if (!h) return next_of(f);
  void* p = atomic_load_explicit(&f->core, memory_order_acquire);
  if (!p) {
    p = dlsym(h, f->name);  // the handle's own object first: the core's definition
    if (!p) return next_of(f);
    atomic_store_explicit(&f->core, p, memory_order_release);
  }
  return p;
}

#define FN(name) static struct fn f_##name = {#name}
#define CALL(name, want) ((__typeof__(&name))route(&f_##name, (want)))
// A one-shot call that holds no state: one the core would not offer (below
// the threshold, nothing counted) goes to the program's library even while
// the core is open, without entering it.
#define ONE_SHOT(name, want) ((__typeof__(&name))((want) ? route(&f_##name, true) : next_of(&f_##name)))
// A stream call mid-frame on a context the core left to libzstd (passing()).
#define PASSING(name) ((__typeof__(&name))next_of(&f_##name))

// --- leaving by _exit -----------------------------------------------------------------

// A process that leaves by _exit() (a forked worker: Python's multiprocessing
// ends its children so) runs no destructor, and libgpuoffload writes its
// counts for `gpuoffload-agent exec` in one. So libgpuoffload, when a process
// loads it, hands the front its writer (which does nothing unless the process
// counts, and nothing in a vfork child), and _exit calls it first; it hands
// over NULL when it is unloaded. The next _exit (glibc's, or a preloaded
// tool's) is looked up at the hand-over, not at exit: a forked child must not
// need the dynamic loader's lock.
static void (*_Atomic g_exit_flush)(void);
static void (*_Atomic g_next_exit)(int);

EXPORT void gpo_shim_front_on_exit(void (*flush)(void)) {
  if (flush && !atomic_load_explicit(&g_next_exit, memory_order_acquire)) {
    void (*next)(int) = NULL;
    *(void**)&next = dlsym(RTLD_NEXT, "_exit");
    atomic_store_explicit(&g_next_exit, next, memory_order_release);
  }
  atomic_store_explicit(&g_exit_flush, flush, memory_order_release);
}

static _Noreturn void leave(int status) {
  void (*flush)(void) = atomic_load_explicit(&g_exit_flush, memory_order_acquire);
  if (flush) flush();
  void (*next)(int) = atomic_load_explicit(&g_next_exit, memory_order_acquire);
  if (next) next(status);
  for (;;) syscall(SYS_exit_group, status);  // what glibc's _exit does
}

EXPORT _Noreturn void _exit(int status) { leave(status); }
EXPORT _Noreturn void _Exit(int status) { leave(status); }

// --- one-shot calls --------------------------------------------------------------------

FN(SHA256);
EXPORT unsigned char* SHA256(const unsigned char* d, size_t n, unsigned char* md) {
  return ONE_SHOT(SHA256, wanted(md ? n : 0))(d, n, md);
}

FN(ZSTD_compress);
EXPORT size_t ZSTD_compress(void* dst, size_t cap, const void* src, size_t n, int level) {
  return ONE_SHOT(ZSTD_compress, wanted(n))(dst, cap, src, n, level);
}

FN(ZSTD_compressCCtx);
EXPORT size_t ZSTD_compressCCtx(ZSTD_CCtx* c, void* dst, size_t cap, const void* src, size_t n, int level) {
  return CALL(ZSTD_compressCCtx, wanted(n))(c, dst, cap, src, n, level);
}

// Stateless while the core is closed: no prefix or dictionary can have been
// set (those calls open it).
FN(ZSTD_compress2);
EXPORT size_t ZSTD_compress2(ZSTD_CCtx* c, void* dst, size_t cap, const void* src, size_t n) {
  return CALL(ZSTD_compress2, wanted(n))(c, dst, cap, src, n);
}

FN(compress2);
EXPORT int compress2(Bytef* dest, uLongf* dest_len, const Bytef* src, uLong n, int level) {
  return ONE_SHOT(compress2, wanted(n))(dest, dest_len, src, n, level);
}

FN(compress);
EXPORT int compress(Bytef* dest, uLongf* dest_len, const Bytef* src, uLong n) {
  return ONE_SHOT(compress, wanted(n))(dest, dest_len, src, n);
}

// A crc32 of a few bytes costs less than the jump on to zlib's: programs
// make such calls by the million (a 1-byte call is 3 ns; interposing it
// doubled that), so the front folds them itself, byte by byte with zlib's
// own table, as zlib does below 47 bytes. The table comes from the
// program's zlib (get_crc_table: its first 256 entries are the byte table in
// every zlib); without it every call goes on to zlib.
enum { kInlineCrcBytes = 16 };
static const z_crc_t* _Atomic g_crc_table;  // NULL: not looked up yet
static const z_crc_t kNoTable[1];            // looked up, none: calls go on to zlib

static __attribute__((noinline, cold)) const z_crc_t* find_crc_table(void) {
  const z_crc_t* (*get)(void) = NULL;
  *(void**)&get = next_definition("get_crc_table");
  const z_crc_t* t = get ? get() : NULL;
  if (!t) t = kNoTable;
  atomic_store_explicit(&g_crc_table, t, memory_order_release);
  return t;
}

static inline const z_crc_t* crc_table(void) {
  const z_crc_t* t = atomic_load_explicit(&g_crc_table, memory_order_acquire);
  return __builtin_expect(t != NULL, 1) ? t : find_crc_table();
}

// True (and *out set) when the front computed crc32(crc, buf, n) itself.
static inline bool crc_inline(uLong crc, const Bytef* buf, size_t n, uLong* out) {
  if (n > kInlineCrcBytes || !buf || accounting()) return false;
  const z_crc_t* t = crc_table();
  if (t == kNoTable) return false;
  uint32_t c = (uint32_t)crc ^ 0xffffffffu;
  while (n--) c = (uint32_t)t[(c ^ *buf++) & 0xff] ^ (c >> 8);
  *out = (uLong)(c ^ 0xffffffffu);
  return true;
}

FN(crc32);
EXPORT uLong crc32(uLong crc, const Bytef* buf, uInt n) {
  uLong r;
  if (crc_inline(crc, buf, n, &r)) return r;
  return ONE_SHOT(crc32, buf && wanted(n))(crc, buf, n);
}

FN(crc32_z);
EXPORT uLong crc32_z(uLong crc, const Bytef* buf, z_size_t n) {
  uLong r;
  if (crc_inline(crc, buf, n, &r)) return r;
  return ONE_SHOT(crc32_z, buf && wanted(n))(crc, buf, n);
}

// --- zstd contexts and streams ---------------------------------------------------------

// Nothing for the core to forget or check while it is closed.
FN(ZSTD_CCtx_reset);
EXPORT size_t ZSTD_CCtx_reset(ZSTD_CCtx* c, ZSTD_ResetDirective how) { return CALL(ZSTD_CCtx_reset, false)(c, how); }

FN(ZSTD_freeCCtx);
EXPORT size_t ZSTD_freeCCtx(ZSTD_CCtx* c) { return CALL(ZSTD_freeCCtx, false)(c); }

FN(ZSTD_freeCStream);
EXPORT size_t ZSTD_freeCStream(ZSTD_CStream* c) { return CALL(ZSTD_freeCStream, false)(c); }

FN(ZSTD_CCtx_setParameter);
EXPORT size_t ZSTD_CCtx_setParameter(ZSTD_CCtx* c, ZSTD_cParameter k, int v) {
  return CALL(ZSTD_CCtx_setParameter, false)(c, k, v);
}

// State the core follows: it is opened here.
FN(ZSTD_CCtx_setPledgedSrcSize);
EXPORT size_t ZSTD_CCtx_setPledgedSrcSize(ZSTD_CCtx* c, unsigned long long n) {
  return CALL(ZSTD_CCtx_setPledgedSrcSize, true)(c, n);
}

FN(ZSTD_CCtx_loadDictionary);
EXPORT size_t ZSTD_CCtx_loadDictionary(ZSTD_CCtx* c, const void* d, size_t n) {
  return CALL(ZSTD_CCtx_loadDictionary, true)(c, d, n);
}

FN(ZSTD_CCtx_loadDictionary_byReference);
EXPORT size_t ZSTD_CCtx_loadDictionary_byReference(ZSTD_CCtx* c, const void* d, size_t n) {
  return CALL(ZSTD_CCtx_loadDictionary_byReference, true)(c, d, n);
}

FN(ZSTD_CCtx_loadDictionary_advanced);
EXPORT size_t ZSTD_CCtx_loadDictionary_advanced(ZSTD_CCtx* c, const void* d, size_t n, ZSTD_dictLoadMethod_e m,
                                                ZSTD_dictContentType_e t) {
  return CALL(ZSTD_CCtx_loadDictionary_advanced, true)(c, d, n, m, t);
}

FN(ZSTD_CCtx_refCDict);
EXPORT size_t ZSTD_CCtx_refCDict(ZSTD_CCtx* c, const ZSTD_CDict* d) { return CALL(ZSTD_CCtx_refCDict, true)(c, d); }

FN(ZSTD_CCtx_refPrefix);
EXPORT size_t ZSTD_CCtx_refPrefix(ZSTD_CCtx* c, const void* p, size_t n) {
  return CALL(ZSTD_CCtx_refPrefix, true)(c, p, n);
}

FN(ZSTD_CCtx_refPrefix_advanced);
EXPORT size_t ZSTD_CCtx_refPrefix_advanced(ZSTD_CCtx* c, const void* p, size_t n, ZSTD_dictContentType_e t) {
  return CALL(ZSTD_CCtx_refPrefix_advanced, true)(c, p, n, t);
}

FN(ZSTD_registerSequenceProducer);
EXPORT void ZSTD_registerSequenceProducer(ZSTD_CCtx* c, void* state, ZSTD_sequenceProducer_F* f) {
  CALL(ZSTD_registerSequenceProducer, true)(c, state, f);
}

FN(ZSTD_initCStream);
EXPORT size_t ZSTD_initCStream(ZSTD_CStream* c, int level) { return CALL(ZSTD_initCStream, true)(c, level); }

FN(ZSTD_initCStream_srcSize);
EXPORT size_t ZSTD_initCStream_srcSize(ZSTD_CStream* c, int level, unsigned long long n) {
  return CALL(ZSTD_initCStream_srcSize, true)(c, level, n);
}

FN(ZSTD_initCStream_usingDict);
EXPORT size_t ZSTD_initCStream_usingDict(ZSTD_CStream* c, const void* d, size_t n, int level) {
  return CALL(ZSTD_initCStream_usingDict, true)(c, d, n, level);
}

FN(ZSTD_initCStream_usingCDict);
EXPORT size_t ZSTD_initCStream_usingCDict(ZSTD_CStream* c, const ZSTD_CDict* d) {
  return CALL(ZSTD_initCStream_usingCDict, true)(c, d);
}

FN(ZSTD_initCStream_usingCDict_advanced);
EXPORT size_t ZSTD_initCStream_usingCDict_advanced(ZSTD_CStream* c, const ZSTD_CDict* d, ZSTD_frameParameters f,
                                                   unsigned long long n) {
  return CALL(ZSTD_initCStream_usingCDict_advanced, true)(c, d, f, n);
}

FN(ZSTD_initCStream_advanced);
EXPORT size_t ZSTD_initCStream_advanced(ZSTD_CStream* c, const void* d, size_t n, ZSTD_parameters p,
                                        unsigned long long size) {
  return CALL(ZSTD_initCStream_advanced, true)(c, d, n, p, size);
}

FN(ZSTD_resetCStream);
EXPORT size_t ZSTD_resetCStream(ZSTD_CStream* c, unsigned long long n) { return CALL(ZSTD_resetCStream, true)(c, n); }

FN(ZSTD_compressStream2);
EXPORT size_t ZSTD_compressStream2(ZSTD_CCtx* c, ZSTD_outBuffer* out, ZSTD_inBuffer* in, ZSTD_EndDirective op) {
  if (op != ZSTD_e_end && passing(c)) return PASSING(ZSTD_compressStream2)(c, out, in, op);
  return CALL(ZSTD_compressStream2, true)(c, out, in, op);
}

FN(ZSTD_compressStream2_simpleArgs);
EXPORT size_t ZSTD_compressStream2_simpleArgs(ZSTD_CCtx* c, void* dst, size_t cap, size_t* dst_pos, const void* src,
                                              size_t size, size_t* src_pos, ZSTD_EndDirective op) {
  if (op != ZSTD_e_end && passing(c))
    return PASSING(ZSTD_compressStream2_simpleArgs)(c, dst, cap, dst_pos, src, size, src_pos, op);
  return CALL(ZSTD_compressStream2_simpleArgs, true)(c, dst, cap, dst_pos, src, size, src_pos, op);
}

FN(ZSTD_compressStream);
EXPORT size_t ZSTD_compressStream(ZSTD_CStream* c, ZSTD_outBuffer* out, ZSTD_inBuffer* in) {
  if (passing(c)) return PASSING(ZSTD_compressStream)(c, out, in);
  return CALL(ZSTD_compressStream, true)(c, out, in);
}

FN(ZSTD_flushStream);
EXPORT size_t ZSTD_flushStream(ZSTD_CStream* c, ZSTD_outBuffer* out) {
  if (passing(c)) return PASSING(ZSTD_flushStream)(c, out);
  return CALL(ZSTD_flushStream, true)(c, out);
}

FN(ZSTD_endStream);
EXPORT size_t ZSTD_endStream(ZSTD_CStream* c, ZSTD_outBuffer* out) { return CALL(ZSTD_endStream, true)(c, out); }
