// Process-wide runtime: seeds and RNG state, threads, autocast, memory queries.
#include "common.h"

#include <ATen/detail/CUDAHooksInterface.h>

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/empty.h>

#include <cstring>
#include <mutex>

namespace acc {

static Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  double s = info[0].ToNumber().DoubleValue();
  at::manual_seed(static_cast<uint64_t>(s));
  return info.Env().Undefined();
}

// getRngState() -> Uint8Array (CPU generator state, as torch.get_rng_state()).
static Napi::Value GetRngState(const Napi::CallbackInfo& info) {
  auto gen = at::globalContext().defaultGenerator(c10::DeviceType::CPU);
  at::Tensor st;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    st = gen.get_state();
  }
  Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), st.numel());
  std::memcpy(out.Data(), st.data_ptr(), st.numel());
  return out;
}

static Napi::Value SetRngState(const Napi::CallbackInfo& info) {
  Napi::Uint8Array in = info[0].As<Napi::Uint8Array>();
  at::Tensor st = at::empty({static_cast<int64_t>(in.ElementLength())}, at::TensorOptions().dtype(c10::kByte));
  std::memcpy(st.data_ptr(), in.Data(), in.ElementLength());
  auto gen = at::globalContext().defaultGenerator(c10::DeviceType::CPU);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(st);
  return info.Env().Undefined();
}

static Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  at::set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

static Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

// CPU autocast state. libtorch 2.4 moved to per-device calls and warns (once per
// process, on stderr) when the CPU-specific ones are used.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
static bool CpuAutocastEnabled() { return at::autocast::is_autocast_enabled(at::kCPU); }
static at::ScalarType CpuAutocastDtype() { return at::autocast::get_autocast_dtype(at::kCPU); }
static void SetCpuAutocastDtype(at::ScalarType t) { at::autocast::set_autocast_dtype(at::kCPU, t); }
static void SetCpuAutocastEnabled(bool on) { at::autocast::set_autocast_enabled(at::kCPU, on); }
#else
static bool CpuAutocastEnabled() { return at::autocast::is_cpu_enabled(); }
static at::ScalarType CpuAutocastDtype() { return at::autocast::get_autocast_cpu_dtype(); }
static void SetCpuAutocastDtype(at::ScalarType t) { at::autocast::set_autocast_cpu_dtype(t); }
static void SetCpuAutocastEnabled(bool on) { at::autocast::set_cpu_enabled(on); }
#endif

// setAutocast(enabled, dtype) -> previous { enabled, dtype } ; CPU autocast.
static Napi::Value SetAutocast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object prev = Napi::Object::New(env);
  prev.Set("enabled", Napi::Boolean::New(env, CpuAutocastEnabled()));
  prev.Set("dtype", Napi::String::New(env, DTypeName(CpuAutocastDtype())));
  bool enable = info[0].ToBoolean().Value();
  if (info.Length() > 1 && !info[1].IsUndefined()) SetCpuAutocastDtype(ParseDType(env, info[1]));
  SetCpuAutocastEnabled(enable);
  return prev;
}

// Enter/leave an autocast region: the cast cache is cleared when the outermost exits.
static Napi::Value AutocastEnter(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::autocast::increment_nesting());
}
static Napi::Value AutocastExit(const Napi::CallbackInfo& info) {
  int n = at::autocast::decrement_nesting();
  if (n == 0) at::autocast::clear_cache();
  return Napi::Number::New(info.Env(), n);
}

static Napi::Value CudaAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), at::globalContext().hasCUDA());
}

// Through the CUDA hooks: 0 in a CPU build, the visible GPUs in a CUDA one (no CUDA headers needed here).
static Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  int n = at::globalContext().hasCUDA() ? at::detail::getCUDAHooks().getNumGPUs() : 0;
  return Napi::Number::New(info.Env(), n);
}

static Napi::Value ParallelInfo(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), at::get_parallel_info());
}

void InitRuntime(Napi::Env env, Napi::Object exports) {
  ACC_FN(exports, "manualSeed", ManualSeed);
  ACC_FN(exports, "getRngState", GetRngState);
  ACC_FN(exports, "setRngState", SetRngState);
  ACC_FN(exports, "setNumThreads", SetNumThreads);
  ACC_FN(exports, "getNumThreads", GetNumThreads);
  ACC_FN(exports, "setAutocast", SetAutocast);
  ACC_FN(exports, "autocastEnter", AutocastEnter);
  ACC_FN(exports, "autocastExit", AutocastExit);
  ACC_FN(exports, "cudaAvailable", CudaAvailable);
  ACC_FN(exports, "cudaDeviceCount", CudaDeviceCount);
  ACC_FN(exports, "parallelInfo", ParallelInfo);
}

}  // namespace acc
