// Module entry point: registers every translation unit's functions.
#include "common.h"

namespace acc {

void InitJit(Napi::Env env, Napi::Object exports);  // jit.cc (TorchScript)

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallAllocator();
  TensorWrap::Init(env, exports);
  InitTensor(env, exports);
  InitDispatch(env, exports);
  InitAutograd(env, exports);
  InitNN(env, exports);
  InitOptim(env, exports);
  InitRuntime(env, exports);
  InitAllocator(env, exports);
  InitSharding(env, exports);
  InitC10d(env, exports);
  InitJit(env, exports);
  exports.Set("torchVersion", Napi::String::New(env, TORCH_VERSION));
  return exports;
}

}  // namespace acc

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return acc::Init(env, exports); }

NODE_API_MODULE(torch_native, InitAddon)
