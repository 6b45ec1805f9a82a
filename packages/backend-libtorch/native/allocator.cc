// A CPU allocator that keeps glibc's heap reusable when tensors are freed in batches.
//
// libtorch's default allocator uses posix_memalign(64). glibc serves memalign with a
// chunk slightly larger than asked, so the hole a freed tensor leaves is too small for
// the next identical request. With Python's prompt refcounting the hole is usually the
// heap top and gets merged; here tensors are freed in batches by V8's GC, holes sit
// between small live blocks, and RSS grows without bound (measured: +1 MiB per 1 MiB
// tensor, 8.5 GB after 8000 steps). Over-allocating with plain malloc and aligning by
// hand makes equal-sized requests fit equal-sized holes.
#include "common.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <cstdlib>
#include <cstring>

namespace acc {

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define ACC_ALLOC_CONST
#else
#define ACC_ALLOC_CONST const
#endif

static constexpr size_t kAlign = 64;

// The byte just before the aligned pointer holds its distance from malloc's block, so
// the deleter works from the data pointer alone (libtorch's raw_allocate needs that).
static void AlignedFree(void* data) {
  if (!data) return;
  auto* p = static_cast<uint8_t*>(data);
  std::free(p - p[-1]);
}

class ReusingCPUAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) ACC_ALLOC_CONST override {
    if (n == 0) return {nullptr, nullptr, &AlignedFree, c10::Device(c10::DeviceType::CPU)};
    void* base = std::malloc(n + kAlign);
    if (!base) {
      TORCH_CHECK_WITH(OutOfMemoryError, false, "DefaultCPUAllocator: not enough memory: you tried to allocate ", n, " bytes.");
    }
    auto addr = reinterpret_cast<uintptr_t>(base);
    uintptr_t aligned = (addr + kAlign) & ~(kAlign - 1);  // 1..64 bytes past base
    auto* data = reinterpret_cast<uint8_t*>(aligned);
    data[-1] = static_cast<uint8_t>(aligned - addr);
    return {data, data, &AlignedFree, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &AlignedFree; }
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }
#endif
};

static ReusingCPUAllocator g_allocator;

void InstallAllocator() {
  // ACCELERATE_TORCH_DEFAULT_ALLOCATOR=1 keeps libtorch's own allocator (for comparisons).
  const char* keep = std::getenv("ACCELERATE_TORCH_DEFAULT_ALLOCATOR");
  if (keep && std::strcmp(keep, "1") == 0) return;
  c10::SetCPUAllocator(&g_allocator, /*priority=*/10);
}

}  // namespace acc
