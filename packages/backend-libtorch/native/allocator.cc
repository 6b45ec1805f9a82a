// The CPU allocator: keeps glibc's heap reusable, and caches freed blocks of the
// sizes a training loop asks for again and again.
//
// Reuse. libtorch's default allocator uses posix_memalign(64). glibc serves memalign
// with a chunk slightly larger than asked, so the hole a freed tensor leaves is too
// small for the next identical request. With Python's prompt refcounting the hole is
// usually the heap top and gets merged; here tensors are freed in batches by V8's GC,
// holes sit between small live blocks, and RSS grows without bound (measured: +1 MiB
// per 1 MiB tensor, 8.5 GB after 8000 steps). Over-allocating with plain malloc and
// aligning by hand makes equal-sized requests fit equal-sized holes.
//
// Caching. Activations, gradients and optimizer temporaries of 32 KiB and more are
// freed and allocated again at the same sizes every step. glibc hands such blocks back
// to the kernel (munmap, heap trimming), and every new one then costs a page fault per
// 4 KiB on first touch: ~2000 faults per step of the MLP benchmark, a third of its CPU
// time. Freed blocks of those sizes are kept in per-size free lists (bounded by
// ACCELERATE_TORCH_CPU_CACHE_MB, default 256; 0 disables caching), so a steady loop
// allocates without syscalls or faults — what PyTorch's CUDA caching allocator does.
// emptyCache() returns the cached blocks to malloc.
#include "common.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <malloc.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace acc {

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define ACC_ALLOC_CONST
#else
#define ACC_ALLOC_CONST const
#endif

static constexpr size_t kAlign = 64;
// malloc returns 16-byte aligned blocks; the data pointer is the first 64-byte aligned
// address at least 16 bytes in, so a 16-byte header always fits in front of it.
static constexpr size_t kHeader = 16;
static constexpr size_t kCacheMin = 32 * 1024;  // smaller blocks stay in malloc's bins
static constexpr size_t kPage = 4096;

// Header in the 16 bytes before the data pointer: the block's capacity (rounded size)
// at data-16, the distance from malloc's pointer in the byte at data-1. The deleter
// works from the data pointer alone (libtorch's raw_allocate needs that).
static inline size_t& CapacityOf(uint8_t* data) { return *reinterpret_cast<size_t*>(data - kHeader); }
static inline uint8_t* BaseOf(uint8_t* data) { return data - data[-1]; }

static size_t Rounded(size_t n) { return n >= kCacheMin ? (n + kPage - 1) & ~(kPage - 1) : n; }

static uint8_t* RawAllocate(size_t capacity) {
  void* base = std::malloc(capacity + kAlign);
  if (!base) return nullptr;
  auto addr = reinterpret_cast<uintptr_t>(base);
  uintptr_t aligned = (addr + kHeader + kAlign - 1) & ~(kAlign - 1);  // 16..64 bytes past base
  auto* data = reinterpret_cast<uint8_t*>(aligned);
  data[-1] = static_cast<uint8_t>(aligned - addr);
  CapacityOf(data) = capacity;
  return data;
}

// Free lists of blocks by capacity. Blocks are freed from any thread (autograd,
// collectives), so every access holds the mutex (uncontended: tens of ns).
struct BlockCache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<uint8_t*>> free;
  size_t cachedBytes = 0;
  size_t limit = 256ull << 20;
  uint64_t hits = 0, misses = 0;

  uint8_t* Take(size_t capacity) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = free.find(capacity);
    if (it == free.end() || it->second.empty()) {
      misses++;
      return nullptr;
    }
    uint8_t* d = it->second.back();
    it->second.pop_back();
    cachedBytes -= capacity;
    hits++;
    return d;
  }

  // Keep `data` for reuse; false when it should go back to malloc instead.
  bool Put(uint8_t* data, size_t capacity) {
    if (capacity > limit) return false;
    std::vector<uint8_t*> evicted;
    {
      std::lock_guard<std::mutex> lock(mu);
      // Over the limit: drop everything cached (a changed workload's sizes replace the
      // old ones) rather than refuse the newest block.
      if (cachedBytes + capacity > limit) evicted = DrainLocked();
      free[capacity].push_back(data);
      cachedBytes += capacity;
    }
    for (uint8_t* d : evicted) std::free(BaseOf(d));
    return true;
  }

  std::vector<uint8_t*> DrainLocked() {
    std::vector<uint8_t*> out;
    for (auto& [cap, list] : free) out.insert(out.end(), list.begin(), list.end());
    free.clear();
    cachedBytes = 0;
    return out;
  }

  void Empty() {
    std::vector<uint8_t*> evicted;
    {
      std::lock_guard<std::mutex> lock(mu);
      evicted = DrainLocked();
    }
    for (uint8_t* d : evicted) std::free(BaseOf(d));
  }
};

// Never destroyed: tensors may still be freed during static destruction at exit.
static BlockCache* g_cache = new BlockCache();
static bool g_caching = true;
static bool g_installed = false;

// Bytes held by live storages (block capacities: the request, rounded up to 4 KiB from
// 32 KiB on), their peak, and an optional limit (0: none). Atomics: storages are
// allocated and freed on any thread (autograd, collectives), and a mutex here would
// serialise every allocation.
static std::atomic<int64_t> g_inUse{0};
static std::atomic<int64_t> g_peak{0};
static std::atomic<int64_t> g_limit{0};

static void RaisePeak(int64_t now) {
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

static std::string MiB(int64_t bytes) { return std::to_string(static_cast<double>(bytes) / (1024.0 * 1024.0)) + " MiB"; }

static void CachingFree(void* ptr) {
  if (!ptr) return;
  auto* data = static_cast<uint8_t*>(ptr);
  size_t capacity = CapacityOf(data);
  g_inUse.fetch_sub(static_cast<int64_t>(capacity), std::memory_order_relaxed);
  if (g_caching && capacity >= kCacheMin && g_cache->Put(data, capacity)) return;
  std::free(BaseOf(data));
}

class ReusingCPUAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) ACC_ALLOC_CONST override {
    if (n == 0) return {nullptr, nullptr, &CachingFree, c10::Device(c10::DeviceType::CPU)};
    size_t capacity = Rounded(n);
    const int64_t cap = static_cast<int64_t>(capacity);
    const int64_t now = g_inUse.fetch_add(cap, std::memory_order_relaxed) + cap;
    const int64_t limit = g_limit.load(std::memory_order_relaxed);
    if (limit > 0 && now > limit) {
      g_inUse.fetch_sub(cap, std::memory_order_relaxed);
      // "out of memory" in the message: memory.isOutOfMemoryError and Rethrow's code rely on it.
      TORCH_CHECK_WITH(OutOfMemoryError, false, "CPU out of memory: tried to allocate ", n, " bytes with ", now - cap,
                       " bytes allocated and a memory limit of ", limit, " bytes (", MiB(limit),
                       "). Raise or remove the limit: memory.setLimit('cpu', bytes | undefined), or the environment variable "
                       "ACCELERATE_TORCH_CPU_MEMORY_LIMIT_MB.");
    }
    RaisePeak(now);
    uint8_t* data = g_caching && capacity >= kCacheMin ? g_cache->Take(capacity) : nullptr;
    if (!data) data = RawAllocate(capacity);
    if (!data && g_caching) {
      // Out of memory: give the cached blocks back and try once more.
      g_cache->Empty();
      data = RawAllocate(capacity);
    }
    if (!data) {
      g_inUse.fetch_sub(cap, std::memory_order_relaxed);
      TORCH_CHECK_WITH(OutOfMemoryError, false, "DefaultCPUAllocator: not enough memory: you tried to allocate ", n, " bytes.");
    }
    return {data, data, &CachingFree, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &CachingFree; }
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }
#endif
};

static ReusingCPUAllocator g_allocator;

void InstallAllocator() {
  if (const char* mb = std::getenv("ACCELERATE_TORCH_CPU_MEMORY_LIMIT_MB")) {
    char* end = nullptr;
    double v = std::strtod(mb, &end);
    if (end != mb && v > 0) g_limit.store(static_cast<int64_t>(v * 1024 * 1024));
  }
  // ACCELERATE_TORCH_DEFAULT_ALLOCATOR=1 keeps libtorch's own allocator (for comparisons).
  const char* keep = std::getenv("ACCELERATE_TORCH_DEFAULT_ALLOCATOR");
  if (keep && std::strcmp(keep, "1") == 0) {
    g_caching = false;
    return;
  }
  if (const char* mb = std::getenv("ACCELERATE_TORCH_CPU_CACHE_MB")) {
    char* end = nullptr;
    double v = std::strtod(mb, &end);
    if (end != mb && v >= 0) g_cache->limit = static_cast<size_t>(v * 1024 * 1024);
  }
  g_caching = g_cache->limit > 0;
  c10::SetCPUAllocator(&g_allocator, /*priority=*/10);
  g_installed = true;
}

// emptyCache(): return every cached block to malloc.
static Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  g_cache->Empty();
  return info.Env().Undefined();
}

// allocatorStats() -> { cachedBytes, limitBytes, hits, misses }
static Napi::Value AllocatorStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  std::lock_guard<std::mutex> lock(g_cache->mu);
  o.Set("cachedBytes", Napi::Number::New(env, static_cast<double>(g_cache->cachedBytes)));
  o.Set("limitBytes", Napi::Number::New(env, static_cast<double>(g_caching ? g_cache->limit : 0)));
  o.Set("hits", Napi::Number::New(env, static_cast<double>(g_cache->hits)));
  o.Set("misses", Napi::Number::New(env, static_cast<double>(g_cache->misses)));
  return o;
}

// mallocStats() -> glibc's mallinfo2() over every arena: heap bytes from sbrk and
// mmap, bytes in use and free inside the heap. Tells a leak (inUse grows) from
// fragmentation (free grows) in soak runs.
static Napi::Value MallocStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 m = mallinfo2();
  o.Set("arenaBytes", Napi::Number::New(env, static_cast<double>(m.arena)));
  o.Set("mmapBytes", Napi::Number::New(env, static_cast<double>(m.hblkhd)));
  o.Set("inUseBytes", Napi::Number::New(env, static_cast<double>(m.uordblks)));
  o.Set("freeBytes", Napi::Number::New(env, static_cast<double>(m.fordblks)));
  o.Set("releasableBytes", Napi::Number::New(env, static_cast<double>(m.keepcost)));
#endif
  return o;
}

// cpuMemory() -> { counted, allocated, peakAllocated, limit }: bytes held by live CPU
// storages that this allocator gave out (counted: false under
// ACCELERATE_TORCH_DEFAULT_ALLOCATOR=1, where libtorch's own allocator counts nothing).
static Napi::Value CpuMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("counted", Napi::Boolean::New(env, g_installed));
  o.Set("allocated", Napi::Number::New(env, static_cast<double>(g_inUse.load())));
  o.Set("peakAllocated", Napi::Number::New(env, static_cast<double>(g_peak.load())));
  int64_t limit = g_limit.load();
  o.Set("limit", limit > 0 ? Napi::Value(Napi::Number::New(env, static_cast<double>(limit))) : env.Undefined());
  return o;
}

// resetCpuPeak(): the peak starts again from what is allocated now.
static Napi::Value ResetCpuPeak(const Napi::CallbackInfo& info) {
  g_peak.store(g_inUse.load());
  return info.Env().Undefined();
}

// setCpuMemoryLimit(bytes | undefined): allocations past `bytes` in use throw "CPU out of memory".
static Napi::Value SetCpuMemoryLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() == 0 || info[0].IsUndefined() || info[0].IsNull()) {
    g_limit.store(0);
    return env.Undefined();
  }
  double v = info[0].ToNumber().DoubleValue();
  if (!(v > 0) || !std::isfinite(v)) throw Napi::RangeError::New(env, "setLimit: the limit must be a positive number of bytes (undefined removes it)");
  if (!g_installed)
    throw Napi::Error::New(env, "setLimit: the CPU memory limit needs this package's allocator, which ACCELERATE_TORCH_DEFAULT_ALLOCATOR=1 turned off");
  g_limit.store(static_cast<int64_t>(v));
  return env.Undefined();
}

void InitAllocator(Napi::Env env, Napi::Object exports) {
  ACC_FN(exports, "cpuMemory", CpuMemory);
  ACC_FN(exports, "resetCpuPeak", ResetCpuPeak);
  ACC_FN(exports, "setCpuMemoryLimit", SetCpuMemoryLimit);
  ACC_FN(exports, "mallocStats", MallocStats);
  ACC_FN(exports, "emptyCache", EmptyCache);
  ACC_FN(exports, "allocatorStats", AllocatorStats);
}

}  // namespace acc
