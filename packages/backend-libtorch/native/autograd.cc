// Autograd: backward, gradients, requires_grad, grad mode.
#include "common.h"

#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

namespace acc {

// backward(loss, grad|null, retainGraph, createGraph)
static Napi::Value Backward(const Napi::CallbackInfo& info) {
  at::Tensor t = TensorWrap::Get(info[0], "backward");
  std::vector<at::Tensor> grads;
  if (info.Length() > 1 && TensorWrap::Is(info[1])) grads.push_back(TensorWrap::Get(info[1], "backward gradient"));
  c10::optional<bool> retain;
  if (info.Length() > 2 && info[2].IsBoolean()) retain = info[2].As<Napi::Boolean>().Value();
  bool create = info.Length() > 3 && info[3].ToBoolean().Value();
  torch::autograd::backward({t}, grads, retain, create);
  return info.Env().Undefined();
}

static Napi::Value Grad(const Napi::CallbackInfo& info) {
  return TensorWrap::Make(info.Env(), TensorWrap::Get(info[0], "grad").grad());
}

// setGrad(t, g|null)
static Napi::Value SetGrad(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorWrap::Get(info[0], "setGrad");
  if (TensorWrap::Is(info[1]))
    t.mutable_grad() = TensorWrap::Get(info[1], "setGrad");
  else
    t.mutable_grad().reset();
  return info.Env().Undefined();
}

static Napi::Value RequiresGrad(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), TensorWrap::Get(info[0], "requiresGrad").requires_grad());
}

static Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info) {
  TensorWrap::Get(info[0], "requiresGrad").set_requires_grad(info[1].ToBoolean().Value());
  return info.Env().Undefined();
}

static Napi::Value IsLeaf(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), TensorWrap::Get(info[0], "isLeaf").is_leaf());
}

static Napi::Value RetainGrad(const Napi::CallbackInfo& info) {
  TensorWrap::Get(info[0], "retainGrad").retain_grad();
  return info.Env().Undefined();
}

static Napi::Value GradFnName(const Napi::CallbackInfo& info) {
  const auto& fn = TensorWrap::Get(info[0], "gradFn").grad_fn();
  if (!fn) return info.Env().Null();
  return Napi::String::New(info.Env(), fn->name());
}

// setGradEnabled(bool) -> previous
static Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  bool prev = at::GradMode::is_enabled();
  at::GradMode::set_enabled(info[0].ToBoolean().Value());
  return Napi::Boolean::New(info.Env(), prev);
}

static Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), at::GradMode::is_enabled());
}

void InitAutograd(Napi::Env env, Napi::Object exports) {
  ACC_FN(exports, "backward", Backward);
  ACC_FN(exports, "grad", Grad);
  ACC_FN(exports, "setGrad", SetGrad);
  ACC_FN(exports, "requiresGrad", RequiresGrad);
  ACC_FN(exports, "setRequiresGrad", SetRequiresGrad);
  ACC_FN(exports, "isLeaf", IsLeaf);
  ACC_FN(exports, "retainGrad", RetainGrad);
  ACC_FN(exports, "gradFnName", GradFnName);
  ACC_FN(exports, "setGradEnabled", SetGradEnabled);
  ACC_FN(exports, "isGradEnabled", IsGradEnabled);
}

}  // namespace acc
