// nn helpers that need more than one operator call; layers themselves go through
// the dispatcher (dispatch.cc) and chain() for fused Sequential forwards.
#include "common.h"

#include <ATen/core/grad_mode.h>

namespace acc {

// initUniform(t, low, high) / initNormal(t, mean, std): in-place, without autograd
// recording (as torch.nn.init under no_grad).
static Napi::Value InitUniform(const Napi::CallbackInfo& info) {
  at::NoGradGuard g;
  TensorWrap::Get(info[0], "uniform_").uniform_(info[1].ToNumber().DoubleValue(), info[2].ToNumber().DoubleValue());
  return info.Env().Undefined();
}
static Napi::Value InitNormal(const Napi::CallbackInfo& info) {
  at::NoGradGuard g;
  TensorWrap::Get(info[0], "normal_").normal_(info[1].ToNumber().DoubleValue(), info[2].ToNumber().DoubleValue());
  return info.Env().Undefined();
}
static Napi::Value InitFill(const Napi::CallbackInfo& info) {
  at::NoGradGuard g;
  TensorWrap::Get(info[0], "fill_").fill_(info[1].ToNumber().DoubleValue());
  return info.Env().Undefined();
}
// copyNoGrad(dst, src): dst.copy_(src) outside autograd (loadStateDict, init from data).
static Napi::Value CopyNoGrad(const Napi::CallbackInfo& info) {
  at::NoGradGuard g;
  TensorWrap::Get(info[0], "copy_").copy_(TensorWrap::Get(info[1], "copy_"));
  return info.Env().Undefined();
}

void InitNN(Napi::Env env, Napi::Object exports) {
  ACC_FN(exports, "initUniform", InitUniform);
  ACC_FN(exports, "initNormal", InitNormal);
  ACC_FN(exports, "initFill", InitFill);
  ACC_FN(exports, "copyNoGrad", CopyNoGrad);
}

}  // namespace acc
