"""The ``cuda-emu`` source: the kernels' CUDA C compiled for the CPU.

:func:`emu_source` returns one C++ translation unit: :data:`CUDA_EMU_HEADER` (which
defines what ``nvcc`` would provide: ``__global__``, ``dim3``, the thread-local
``threadIdx``/``blockIdx``/``blockDim``/``gridDim``, atomics as plain read-modify-writes,
the bit-cast intrinsics, the math names through ``<cmath>``), then the very text
:func:`~isozyme.compiler.gpu.cuda_printer.print_cuda` prints, then for each kernel a
trampoline::

    extern "C" void iz_emu_<name>(unsigned gx, unsigned gy, unsigned gz,
                                  unsigned bx, unsigned by, unsigned bz, void** params)

that unpacks the parameters (``*(T*)params[i]``, as ``cuLaunchKernel`` reads them) and
runs every block in a shuffled order, and inside a block the threads in order.  The
order is a permutation drawn from ``ISOZYME_EMU_SEED`` (read at each launch; a fixed
seed by default) and the launch's number, so each launch of a process gets a different
order and a kernel whose result depends on the block order shows it.
``iz_emu_reset()`` sets the launch number back to 0 (reproducible orders in tests).

``iz_emu_launch`` has ``cuLaunchKernel``'s signature and calls the trampoline it is
given.  Compile with ``g++ -O2 -shared -fPIC -x c++ -std=c++17``.

Compiled with :data:`RACECHECK_FLAG` (``-DIZ_EMU_RACECHECK``; the runtime adds it when
``ISOZYME_EMU_RACECHECK=1``), the header defines ``IZ_LOAD``/``IZ_STORE`` (the
kernels' plain accesses to shared memory) to record, per launch and per address, which
thread stored and loaded it: a plain store to an address another thread of the launch
stored or loaded, or a load of an address another thread stored, is a data race;
``iz_emu_launch`` then returns :data:`DATA_RACE_STATUS` and ``int
iz_emu_race_report(char* out, int size)`` copies the first race's message (and forgets
it; 0 when there is none). Atomics and per-thread arrays are not checked.
"""

from __future__ import annotations

import os

from xdsl.dialects import builtin, gpu

from isozyme.compiler.gpu.cuda_printer import translate

#: Environment variable holding the seed of the block order.
SEED_ENV = "ISOZYME_EMU_SEED"

#: The command line that compiles :func:`emu_source` (output and input appended).
GXX_FLAGS = ("-O2", "-shared", "-fPIC", "-x", "c++", "-std=c++17")

#: Environment variable turning the race checker on (``1``); the runtime reads it when
#: it builds a kernels' library and then adds :data:`RACECHECK_FLAG` to ``GXX_FLAGS``.
RACECHECK_ENV = "ISOZYME_EMU_RACECHECK"

#: The define that compiles the race checker into the emulation.
RACECHECK_FLAG = "-DIZ_EMU_RACECHECK"

#: What ``iz_emu_launch`` returns after a launch with a data race (not a ``CUresult``);
#: ``iz_emu_race_report`` then gives the message.
DATA_RACE_STATUS = 31438


def racecheck_enabled() -> bool:
    """Whether :data:`RACECHECK_ENV` asks for the race checker (``1``/``true``/``yes``)."""
    return os.environ.get(RACECHECK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


CUDA_EMU_HEADER = r"""// cuda-emu: what nvcc provides to the kernels, for a host C++ compiler.
#define IZ_EMU_DATA_RACE """ + str(DATA_RACE_STATUS) + r"""
#include <stdint.h>
#include <math.h>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <atomic>
#include <random>
#include <vector>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct dim3 { unsigned x, y, z; };
static thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

// Bit casts (CUDA intrinsics).
static inline long long __double_as_longlong(double x) { long long r; std::memcpy(&r, &x, 8); return r; }
static inline double __longlong_as_double(long long x) { double r; std::memcpy(&r, &x, 8); return r; }
static inline unsigned __float_as_uint(float x) { unsigned r; std::memcpy(&r, &x, 4); return r; }
static inline float __uint_as_float(unsigned x) { float r; std::memcpy(&r, &x, 4); return r; }
static inline int __float_as_int(float x) { int r; std::memcpy(&r, &x, 4); return r; }
static inline float __int_as_float(int x) { float r; std::memcpy(&r, &x, 4); return r; }

// Bit counting, defined at 0 as CUDA's.
static inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }

// Atomics: the threads of a launch run one after the other, so a plain
// read-modify-write is atomic.
static inline double atomicAdd(double* p, double v) { double o = *p; *p = o + v; return o; }
static inline float atomicAdd(float* p, float v) { float o = *p; *p = o + v; return o; }
static inline int atomicAdd(int* p, int v) {
  int o = *p; *p = (int)((unsigned)o + (unsigned)v); return o; }
static inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  unsigned long long o = *p; *p = o + v; return o; }
static inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long c,
                                           unsigned long long v) {
  unsigned long long o = *p; if (o == c) *p = v; return o; }
static inline unsigned atomicCAS(unsigned* p, unsigned c, unsigned v) {
  unsigned o = *p; if (o == c) *p = v; return o; }

// The race checker (compiled with -DIZ_EMU_RACECHECK): the kernels' loads and stores
// of shared memory (IZ_LOAD/IZ_STORE) record, per launch and per address, the thread
// that last stored it and up to two threads that loaded it; a plain store to an address
// another thread stored or loaded in this launch, or a load of an address another
// thread stored, is a data race. Atomics are not recorded (they may collide). The
// state is the launching host thread's.
#ifdef IZ_EMU_RACECHECK
#include <cstdio>
#include <unordered_map>
struct iz_race_cell { long long writer, reader1, reader2; };  // threads; -1: none
static thread_local std::unordered_map<uintptr_t, iz_race_cell> iz_race_cells;
static thread_local long long iz_race_thread = 0;      // the running thread, linear
static thread_local long long iz_race_block_threads = 1;
static thread_local const char* iz_race_kernel = "";
static thread_local bool iz_race_in_launch = false;     // a race in this launch
static thread_local char iz_race_message[1024];         // the first race not yet read

static void iz_race_found(const char* did, int64_t index, long long other,
                          const char* other_did) {
  iz_race_in_launch = true;
  if (iz_race_message[0]) return;  // the first race is the one reported
  long long t = iz_race_thread, n = iz_race_block_threads;
  std::snprintf(iz_race_message, sizeof iz_race_message,
                "data race in kernel %s: thread %lld of block %lld %s the element at "
                "offset %lld of a kernel argument, which thread %lld of block %lld %s "
                "in the same launch", iz_race_kernel, t % n, t / n, did, (long long)index,
                other % n, other / n, other_did);
}

static inline iz_race_cell& iz_race_cell_of(const void* p) {
  return iz_race_cells.try_emplace((uintptr_t)p, iz_race_cell{-1, -1, -1}).first->second;
}

template <typename T> static inline T* iz_race_load(T* aligned, int64_t index) {
  T* p = aligned + index;
  iz_race_cell& c = iz_race_cell_of(p);
  long long t = iz_race_thread;
  if (c.writer >= 0 && c.writer != t) iz_race_found("loads", index, c.writer, "stored");
  if (c.reader1 < 0) c.reader1 = t;
  else if (c.reader1 != t && c.reader2 < 0) c.reader2 = t;
  return p;
}

template <typename T> static inline T* iz_race_store(T* aligned, int64_t index) {
  T* p = aligned + index;
  iz_race_cell& c = iz_race_cell_of(p);
  long long t = iz_race_thread;
  long long reader = c.reader1 >= 0 && c.reader1 != t ? c.reader1 : c.reader2;
  if (c.writer >= 0 && c.writer != t) iz_race_found("stores to", index, c.writer, "stored");
  else if (reader >= 0) iz_race_found("stores to", index, reader, "loaded");
  c.writer = t;
  return p;
}

#define IZ_LOAD(aligned, index) (*iz_race_load((aligned), (int64_t)(index)))
#define IZ_STORE(aligned, index, value) (*iz_race_store((aligned), (int64_t)(index)) = (value))

static void iz_race_begin(const char* kernel, long long block_threads) {
  iz_race_cells.clear();
  iz_race_kernel = kernel;
  iz_race_block_threads = block_threads;
  iz_race_in_launch = false;
}
static int iz_race_end(void) {
  iz_race_cells.clear();
  return iz_race_in_launch ? IZ_EMU_DATA_RACE : 0;
}
extern "C" int iz_emu_racecheck(void) { return 1; }
extern "C" int iz_emu_race_report(char* out, int size) {
  if (!iz_race_message[0]) return 0;
  std::snprintf(out, (size_t)size, "%s", iz_race_message);
  iz_race_message[0] = 0;
  return 1;
}
#define IZ_RACE_THREAD(t) (iz_race_thread = (t))
#else
static void iz_race_begin(const char*, long long) {}
static int iz_race_end(void) { return 0; }
extern "C" int iz_emu_racecheck(void) { return 0; }
extern "C" int iz_emu_race_report(char*, int) { return 0; }
#define IZ_RACE_THREAD(t) ((void)0)
#endif

// The launch loop: blocks in a shuffled order, the threads of a block in order.
static std::atomic<unsigned long long> iz_emu_launches{0};
static thread_local int iz_emu_status = 0;  // the last launch's (a data race)

extern "C" void iz_emu_reset(void) { iz_emu_launches = 0; }

template <typename F>
static void iz_emu_run(const char* name, unsigned gx, unsigned gy, unsigned gz,
                       unsigned bx, unsigned by, unsigned bz, F&& kernel) {
  const char* env = std::getenv("ISOZYME_EMU_SEED");
  unsigned long long seed = env ? std::strtoull(env, nullptr, 10) : 20240611ULL;
  unsigned long long launch = iz_emu_launches++;
  std::seed_seq seq{(unsigned)seed, (unsigned)(seed >> 32), (unsigned)launch,
                    (unsigned)(launch >> 32)};
  std::mt19937_64 rng(seq);
  std::vector<unsigned long long> order((unsigned long long)gx * gy * gz);
  for (unsigned long long i = 0; i < order.size(); ++i) order[i] = i;
  for (unsigned long long i = order.size(); i > 1; --i) {  // Fisher-Yates
    unsigned long long j = rng() % i;
    std::swap(order[i - 1], order[j]);
  }
  gridDim = dim3{gx, gy, gz};
  blockDim = dim3{bx, by, bz};
  long long block_threads = (long long)bx * by * bz;
  iz_race_begin(name, block_threads);
  for (unsigned long long b : order) {
    blockIdx = dim3{(unsigned)(b % gx), (unsigned)((b / gx) % gy), (unsigned)(b / gx / gy)};
    for (unsigned z = 0; z < bz; ++z)
      for (unsigned y = 0; y < by; ++y)
        for (unsigned x = 0; x < bx; ++x) {
          threadIdx = dim3{x, y, z};
          IZ_RACE_THREAD((long long)b * block_threads + ((long long)z * by + y) * bx + x);
          kernel();
        }
  }
  iz_emu_status = iz_race_end();
}

typedef void (*iz_emu_trampoline)(unsigned, unsigned, unsigned, unsigned, unsigned,
                                  unsigned, void**);

// cuLaunchKernel's signature; f is the address of an iz_emu_<kernel> trampoline.
extern "C" int iz_emu_launch(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                             unsigned by, unsigned bz, unsigned shmem, void* stream,
                             void** params, void** extra) {
  (void)shmem; (void)stream; (void)extra;
  iz_emu_status = 0;
  ((iz_emu_trampoline)f)(gx, gy, gz, bx, by, bz, params);
  return iz_emu_status;
}
"""


def trampoline(name: str, param_types: list[str]) -> str:
    """``iz_emu_<name>``: unpack the parameters and run the grid."""
    unpack = "".join(f"  {t} a{i} = *({t}*)params[{i}];\n"
                     for i, t in enumerate(param_types))
    args = ", ".join(f"a{i}" for i in range(len(param_types)))
    return (f'extern "C" void iz_emu_{name}(unsigned gx, unsigned gy, unsigned gz, '
            f"unsigned bx, unsigned by, unsigned bz, void** params) {{\n"
            f"{unpack}"
            f'  iz_emu_run("{name}", gx, gy, gz, bx, by, bz, [&] {{ {name}({args}); }});\n}}\n')


def emu_source(module: builtin.ModuleOp | gpu.ModuleOp) -> str:
    """The C++ translation unit of the ``cuda-emu`` target for the kernels of
    ``module``: header, the CUDA C of :func:`print_cuda`, one trampoline per kernel."""
    unit = translate(module)
    parts = [CUDA_EMU_HEADER, unit.text]
    parts += [trampoline(k.name, k.param_types) for k in unit.kernels]
    return "\n".join(parts)
