// Shared declarations of the addon. Kept free of <torch/torch.h> and <ATen/ATen.h>:
// each .cc includes only the ATen headers it needs, so a change recompiles one file quickly.
#pragma once

#include <napi.h>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/csrc/api/include/torch/version.h>

#include <string>

#if TORCH_VERSION_MAJOR >= 2
#define ACC_TORCH2 1
#else
#define ACC_TORCH2 0
#endif

namespace acc {

// A JS handle owning one reference to an at::Tensor. Disposing (or GC) drops that
// reference; the storage is freed when autograd, views and other handles let go too.
//
// Not a Napi::ObjectWrap on purpose. ObjectWrap keeps a napi_ref it owns, and with
// NAPI_EXPERIMENTAL (finalizers run inside GC) node-addon-api cannot delete that
// reference in the finalizer: it posts the deletion to node_api_post_finalizer, which
// Node drains only from a setImmediate. A training loop that never yields to the event
// loop (synchronous steps, or async steps awaiting only resolved promises) kept ~220
// bytes of malloc per tensor handle ever created (+0.4 KB per MLP step, unbounded).
// Here napi_wrap gets no result reference, so the reference is the runtime's: it is
// deleted right after the finalizer, inside the same GC.
class TensorWrap {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  // A new JS handle for `t` (undefined tensors become JS null).
  static Napi::Value Make(Napi::Env env, at::Tensor t);
  // The tensor behind a JS handle; throws a TypeError naming `what` otherwise.
  static at::Tensor& Get(const Napi::Value& v, const char* what);
  static bool Is(const Napi::Value& v);
  // The wrap behind a JS handle (nullptr when `v` is not one).
  static TensorWrap* Unwrap(const Napi::Value& v);

  at::Tensor tensor;
  int64_t accounted = 0;

  void Attach(Napi::Env env, at::Tensor t);
  void Release(Napi::BasicEnv env);

 private:
  static napi_value Construct(napi_env env, napi_callback_info info);
  static napi_value Dispose(napi_env env, napi_callback_info info);
  static napi_value IsDisposed(napi_env env, napi_callback_info info);
  // Runs synchronously inside GC (basic finalizer), so a synchronous loop that drops
  // handles frees memory without waiting for the event loop.
  static void Finalize(Napi::node_addon_api_basic_env env, void* data, void* hint);
};

// Convert C++ exceptions from libtorch into JS errors with the short message.
[[noreturn]] void Rethrow(Napi::Env env);

template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    Rethrow(info.Env());
  }
}

// dtype names <-> ScalarType (PyTorch names: float32, int64, bool, ...).
c10::ScalarType ParseDType(Napi::Env env, const Napi::Value& v);
const char* DTypeName(c10::ScalarType t);
c10::Device ParseDevice(Napi::Env env, const Napi::Value& v);
std::string DeviceName(const c10::Device& d);
std::vector<int64_t> ParseInts(Napi::Env env, const Napi::Value& v, const char* what);
Napi::Array IntsToJs(Napi::Env env, c10::IntArrayRef v);

// Bytes counted against V8's external memory for a tensor (views count zero).
int64_t AccountedBytes(const at::Tensor& t);

// Registration of each translation unit's functions.
void InitTensor(Napi::Env env, Napi::Object exports);
void InitDispatch(Napi::Env env, Napi::Object exports);
void InitAutograd(Napi::Env env, Napi::Object exports);
void InitNN(Napi::Env env, Napi::Object exports);
void InitOptim(Napi::Env env, Napi::Object exports);
void InitRuntime(Napi::Env env, Napi::Object exports);
void InstallAllocator();
void InitAllocator(Napi::Env env, Napi::Object exports);
void InitSharding(Napi::Env env, Napi::Object exports);
void InitC10d(Napi::Env env, Napi::Object exports);

#define ACC_FN(exports, name, fn) \
  exports.Set(name, Napi::Function::New(env, ::acc::Guarded<fn>, name))

}  // namespace acc
