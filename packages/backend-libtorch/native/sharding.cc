// Flat parameter buffers for sharded strategies (FSDP, ZeRO): views into a 1-D buffer,
// copies that autograd does not see, and storage that can be released and given back
// in place (the buffer, its views and the parameters pointed at them keep their
// identity, so autograd's saved tensors see the memory given back).
#include "common.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/zeros.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/StorageImpl.h>

#include <string>

namespace acc {

static int64_t ShapeNumel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

// Bytes `t`'s elements reach into its storage (0 for an empty tensor).
static size_t NeededBytes(const at::Tensor& t) {
  if (t.numel() == 0) return 0;
  int64_t last = t.storage_offset();
  for (int64_t d = 0; d < t.dim(); d++) last += (t.size(d) - 1) * t.stride(d);
  return static_cast<size_t>(last + 1) * t.element_size();
}

// Throws a clear error when `t`'s storage was released with freeStorage (reading or
// writing it would touch memory that is gone).
static void CheckLive(const at::Tensor& t, const char* what) {
  if (t.numel() == 0) return;
  TORCH_CHECK(t.has_storage() && t.storage().nbytes() >= NeededBytes(t), what,
              ": the tensor's storage was released (sharding.freeStorage); call sharding.allocateStorage on its flat buffer first");
}

static const at::Tensor& Flat(const Napi::Value& v, const char* what) {
  const at::Tensor& t = TensorWrap::Get(v, what);
  TORCH_CHECK(t.dim() == 1 && t.is_contiguous(), what, ": expected a contiguous 1-D flat buffer, got a tensor of shape ", t.sizes());
  return t;
}

// shardView(flat, offset, shape) -> a view of flat[offset : offset + prod(shape)] shaped `shape`.
static Napi::Value ShardView(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& flat = Flat(info[0], "sharding.view");
  int64_t offset = info[1].As<Napi::Number>().Int64Value();
  auto shape = ParseInts(env, info[2], "sharding.view shape");
  int64_t n = ShapeNumel(shape);
  if (offset < 0 || n < 0 || offset + n > flat.numel()) {
    throw Napi::RangeError::New(env, "sharding.view: elements [" + std::to_string(offset) + ", " + std::to_string(offset + n) +
                                         ") are outside the flat buffer of " + std::to_string(flat.numel()) + " elements");
  }
  // Through narrow + view the result shares flat's storage and version counter and is an
  // autograd view of it (gradients flow to flat when flat requires grad).
  return TensorWrap::Make(env, flat.narrow(0, offset, n).view(shape));
}

// shardFlatten(t) -> a new contiguous 1-D copy of t's elements (no autograd history).
static Napi::Value ShardFlatten(const Napi::CallbackInfo& info) {
  const at::Tensor& t = TensorWrap::Get(info[0], "sharding.flatten");
  CheckLive(t, "sharding.flatten");
  at::NoGradGuard no_grad;
  return TensorWrap::Make(info.Env(), t.detach().reshape({-1}).clone(at::MemoryFormat::Contiguous));
}

// shardCopy(dst, src): dst's elements = src's (any shapes of the same numel; dtype converted).
static Napi::Value ShardCopy(const Napi::CallbackInfo& info) {
  at::Tensor dst = TensorWrap::Get(info[0], "sharding.copy destination");
  const at::Tensor& src = TensorWrap::Get(info[1], "sharding.copy source");
  TORCH_CHECK(dst.numel() == src.numel(), "sharding.copy: the destination has ", dst.numel(), " elements, the source ", src.numel());
  if (dst.numel() == 0) return info.Env().Undefined();
  CheckLive(dst, "sharding.copy destination");
  CheckLive(src, "sharding.copy source");
  at::NoGradGuard no_grad;
  dst.detach().copy_(src.detach().reshape(dst.sizes()));
  return info.Env().Undefined();
}

// shardAdd(dst, src): dst += src in place.
static Napi::Value ShardAdd(const Napi::CallbackInfo& info) {
  at::Tensor dst = TensorWrap::Get(info[0], "sharding.addInPlace destination");
  const at::Tensor& src = TensorWrap::Get(info[1], "sharding.addInPlace source");
  TORCH_CHECK(dst.numel() == src.numel(), "sharding.addInPlace: the destination has ", dst.numel(), " elements, the source ", src.numel());
  if (dst.numel() == 0) return info.Env().Undefined();
  CheckLive(dst, "sharding.addInPlace destination");
  CheckLive(src, "sharding.addInPlace source");
  at::NoGradGuard no_grad;
  dst.detach().add_(src.detach().reshape(dst.sizes()));
  return info.Env().Undefined();
}

// shardZero(t)
static Napi::Value ShardZero(const Napi::CallbackInfo& info) {
  at::Tensor t = TensorWrap::Get(info[0], "sharding.zero");
  if (t.numel() == 0) return info.Env().Undefined();
  CheckLive(t, "sharding.zero");
  at::NoGradGuard no_grad;
  t.detach().zero_();
  return info.Env().Undefined();
}

// The flat buffer's StorageImpl, checked to be wholly the buffer's: releasing a storage
// other tensors also use for other elements would pull memory from under them.
static c10::StorageImpl* WholeStorage(const at::Tensor& flat, const char* what) {
  TORCH_CHECK(flat.has_storage(), what, ": the tensor has no storage");
  TORCH_CHECK(flat.storage_offset() == 0, what, ": the flat buffer must start its storage (storage offset ", flat.storage_offset(),
              "); allocate flat buffers with their own storage (e.g. sharding.flatten or an empty tensor), not as views");
  return flat.storage().unsafeGetStorageImpl();
}

static size_t FullBytes(const at::Tensor& flat) { return static_cast<size_t>(flat.numel()) * flat.element_size(); }

// freeStorage(flat): the storage's memory goes back to the allocator; nbytes becomes 0.
static Napi::Value FreeStorage(const Napi::CallbackInfo& info) {
  const at::Tensor& flat = Flat(info[0], "sharding.freeStorage");
  c10::StorageImpl* impl = WholeStorage(flat, "sharding.freeStorage");
  size_t nbytes = impl->nbytes();
  if (nbytes == 0) return info.Env().Undefined();  // already free (or empty)
  TORCH_CHECK(nbytes == FullBytes(flat), "sharding.freeStorage: the storage holds ", nbytes, " bytes but the flat buffer covers ", FullBytes(flat),
              "; only a buffer that is its whole storage can be released");
  impl->set_data_ptr_noswap(c10::DataPtr(nullptr, flat.device()));
  impl->set_nbytes(0);
  return info.Env().Undefined();
}

// allocateStorage(flat): memory for every element again (contents unspecified), in the
// same StorageImpl, so views made before freeStorage see it.
static Napi::Value AllocateStorage(const Napi::CallbackInfo& info) {
  const at::Tensor& flat = Flat(info[0], "sharding.allocateStorage");
  c10::StorageImpl* impl = WholeStorage(flat, "sharding.allocateStorage");
  size_t want = FullBytes(flat);
  if (impl->nbytes() >= want) return info.Env().Undefined();  // has its memory
  TORCH_CHECK(impl->nbytes() == 0, "sharding.allocateStorage: the storage holds ", impl->nbytes(), " of ", want, " bytes (not released by freeStorage)");
  c10::Allocator* alloc = impl->allocator();
  if (!alloc) alloc = c10::GetAllocator(flat.device().type());
  TORCH_CHECK(alloc, "sharding.allocateStorage: no allocator for device ", flat.device());
  impl->set_data_ptr_noswap(alloc->allocate(want));
  impl->set_nbytes(want);
  return info.Env().Undefined();
}

// hasStorage(flat): false between freeStorage and allocateStorage (an empty buffer always has its).
static Napi::Value HasStorage(const Napi::CallbackInfo& info) {
  const at::Tensor& flat = TensorWrap::Get(info[0], "sharding.hasStorage");
  bool has = flat.numel() == 0 || (flat.has_storage() && flat.storage().nbytes() >= NeededBytes(flat));
  return Napi::Boolean::New(info.Env(), has);
}

// leafView(t, requiresGrad): t.detach().requires_grad_(requiresGrad).
static Napi::Value LeafView(const Napi::CallbackInfo& info) {
  const at::Tensor& t = TensorWrap::Get(info[0], "sharding.leafView");
  at::Tensor out = t.detach();
  bool rg = info[1].ToBoolean().Value();
  if (rg) TORCH_CHECK(out.is_floating_point() || out.is_complex(), "sharding.leafView: only floating-point tensors can require grad, got ", out.scalar_type());
  out.set_requires_grad(rg);
  return TensorWrap::Make(info.Env(), std::move(out));
}

void InitSharding(Napi::Env env, Napi::Object exports) {
  ACC_FN(exports, "shardView", ShardView);
  ACC_FN(exports, "shardFlatten", ShardFlatten);
  ACC_FN(exports, "shardCopy", ShardCopy);
  ACC_FN(exports, "shardAdd", ShardAdd);
  ACC_FN(exports, "shardZero", ShardZero);
  ACC_FN(exports, "freeStorage", FreeStorage);
  ACC_FN(exports, "allocateStorage", AllocateStorage);
  ACC_FN(exports, "hasStorage", HasStorage);
  ACC_FN(exports, "leafView", LeafView);
}

}  // namespace acc
