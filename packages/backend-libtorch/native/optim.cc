// Optimizers whose step over every parameter is one native call (per-op crossings
// from JS cost ~25% of an MLP step), plus gradient utilities (clip, unscale, checks).
// The update rules follow torch.optim's single-tensor ("foreach=False") algorithms of
// the libtorch version built against (what Python uses on CPU, where torch.optim has
// no foreach/fused default), so losses match Python step for step.
#include "common.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/core/grad_mode.h>

#include <cmath>

namespace acc {

enum class OptKind { SGD = 0, Adam = 1, AdamW = 2 };

// Per-group hyper-parameters are passed on every step as a Float64Array so that
// schedulers and user edits of paramGroups in JS take effect without extra calls.
enum HyperIndex { kLr, kA, kB, kEps, kWeightDecay, kNesterov, kMaximize, kAmsgrad, kDampening, kHyperCount };

struct ParamState {
  int64_t step = 0;
  at::Tensor buf[3];  // SGD: momentum_buffer; Adam(W): exp_avg, exp_avg_sq, max_exp_avg_sq
};

class OptimWrap : public Napi::ObjectWrap<OptimWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeOptimizer",
                       {InstanceMethod<&OptimWrap::AddGroup>("addGroup"), InstanceMethod<&OptimWrap::Step>("step"),
                        InstanceMethod<&OptimWrap::ZeroGrad>("zeroGrad"), InstanceMethod<&OptimWrap::GetState>("getState"),
                        InstanceMethod<&OptimWrap::SetState>("setState"), InstanceMethod<&OptimWrap::MoveState>("moveState"),
                        InstanceMethod<&OptimWrap::HasState>("hasState"), InstanceMethod<&OptimWrap::ReplaceGroups>("replaceGroups")});
  }

  explicit OptimWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<OptimWrap>(info) {
    std::string k = info[0].ToString().Utf8Value();
    if (k == "sgd")
      kind_ = OptKind::SGD;
    else if (k == "adam")
      kind_ = OptKind::Adam;
    else if (k == "adamw")
      kind_ = OptKind::AdamW;
    else
      throw Napi::TypeError::New(info.Env(), "unknown optimizer kind '" + k + "' (sgd, adam, adamw)");
  }

 private:
  OptKind kind_;
  std::vector<std::vector<at::Tensor>> groups_;
  std::vector<std::vector<ParamState>> state_;

  Napi::Value AddGroup(const Napi::CallbackInfo& info) {
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<at::Tensor> params;
    for (uint32_t i = 0; i < arr.Length(); i++) params.push_back(TensorWrap::Get(arr.Get(i), "optimizer parameter"));
    state_.emplace_back(params.size());
    groups_.push_back(std::move(params));
    return info.Env().Undefined();
  }

  Napi::Value Step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    try {
      Napi::Float64Array hyper = info[0].As<Napi::Float64Array>();
      if (hyper.ElementLength() != groups_.size() * kHyperCount)
        throw Napi::RangeError::New(env, "optimizer step: hyper-parameter array has the wrong length");
      at::NoGradGuard no_grad;
      for (size_t g = 0; g < groups_.size(); g++) {
        const double* h = hyper.Data() + g * kHyperCount;
        for (size_t i = 0; i < groups_[g].size(); i++) {
          at::Tensor& p = groups_[g][i];
          if (!p.grad().defined()) continue;
          if (kind_ == OptKind::SGD)
            SgdStep(p, state_[g][i], h);
          else
            AdamStep(p, state_[g][i], h, kind_ == OptKind::AdamW);
        }
      }
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      Rethrow(env);
    }
    return env.Undefined();
  }

  static void SgdStep(at::Tensor& p, ParamState& st, const double* h) {
    const double lr = h[kLr], momentum = h[kA], dampening = h[kDampening], wd = h[kWeightDecay];
    at::Tensor d_p = h[kMaximize] != 0 ? -p.grad() : p.grad();
    if (wd != 0) d_p = d_p.add(p, wd);
    if (momentum != 0) {
      at::Tensor& buf = st.buf[0];
      if (!buf.defined())
        buf = d_p.clone().detach();
      else
        buf.mul_(momentum).add_(d_p, 1 - dampening);
      d_p = h[kNesterov] != 0 ? d_p.add(buf, momentum) : buf;
    }
    st.step += 1;
    p.add_(d_p, -lr);
  }

  static void AdamStep(at::Tensor& p, ParamState& st, const double* h, bool decoupled) {
    const double lr = h[kLr], beta1 = h[kA], beta2 = h[kB], eps = h[kEps], wd = h[kWeightDecay];
    at::Tensor grad = h[kMaximize] != 0 ? -p.grad() : p.grad();
    if (!st.buf[0].defined()) {
      st.buf[0] = at::zeros_like(p, at::MemoryFormat::Preserve);
      st.buf[1] = at::zeros_like(p, at::MemoryFormat::Preserve);
      if (h[kAmsgrad] != 0) st.buf[2] = at::zeros_like(p, at::MemoryFormat::Preserve);
    }
    st.step += 1;
    if (decoupled) {
#if ACC_TORCH2
      if (wd != 0) p.mul_(1 - lr * wd);
#else
      p.mul_(1 - lr * wd);
#endif
    } else if (wd != 0) {
      grad = grad.add(p, wd);
    }
    at::Tensor& exp_avg = st.buf[0];
    at::Tensor& exp_avg_sq = st.buf[1];
#if ACC_TORCH2
    // torch.optim 2.x: one lerp kernel instead of mul_ + add_ (and its rounding).
    exp_avg.lerp_(grad, 1 - beta1);
#else
    exp_avg.mul_(beta1).add_(grad, 1 - beta1);
#endif
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
    const double step = static_cast<double>(st.step);
    const double bias_correction1 = 1 - std::pow(beta1, step);
    const double bias_correction2 = 1 - std::pow(beta2, step);
    const double step_size = lr / bias_correction1;
    const double bias_correction2_sqrt = std::sqrt(bias_correction2);
    at::Tensor denom;
    if (h[kAmsgrad] != 0) {
      if (!st.buf[2].defined()) st.buf[2] = at::zeros_like(p, at::MemoryFormat::Preserve);
      at::maximum_out(st.buf[2], st.buf[2], exp_avg_sq);
      denom = (st.buf[2].sqrt() / bias_correction2_sqrt).add_(eps);
    } else {
      denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps);
    }
    p.addcdiv_(exp_avg, denom, -step_size);
  }

  // hasState() -> true once any parameter has a step count or a state buffer.
  Napi::Value HasState(const Napi::CallbackInfo& info) {
    for (auto& group : state_)
      for (auto& st : group)
        if (st.step > 0 || st.buf[0].defined() || st.buf[1].defined() || st.buf[2].defined()) return Napi::Boolean::New(info.Env(), true);
    return Napi::Boolean::New(info.Env(), false);
  }

  // replaceGroups([[param...]...]): the groups' tensors replaced (same group count and
  // sizes); only while there is no state (it is kept per parameter position).
  Napi::Value ReplaceGroups(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array arr = info[0].As<Napi::Array>();
    if (arr.Length() != groups_.size()) throw Napi::RangeError::New(env, "replaceGroups: expected one array per parameter group");
    if (HasState(info).As<Napi::Boolean>().Value()) throw Napi::Error::New(env, "replaceGroups: the optimizer already has state");
    std::vector<std::vector<at::Tensor>> groups;
    for (uint32_t g = 0; g < arr.Length(); g++) {
      Napi::Array ps = arr.Get(g).As<Napi::Array>();
      if (ps.Length() != groups_[g].size()) throw Napi::RangeError::New(env, "replaceGroups: group sizes must stay the same");
      std::vector<at::Tensor> params;
      for (uint32_t i = 0; i < ps.Length(); i++) params.push_back(TensorWrap::Get(ps.Get(i), "optimizer parameter"));
      groups.push_back(std::move(params));
    }
    groups_ = std::move(groups);
    for (size_t g = 0; g < groups_.size(); g++) state_[g] = std::vector<ParamState>(groups_[g].size());
    return env.Undefined();
  }

  // zeroGrad(setToNone)
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    bool setToNone = info[0].ToBoolean().Value();
    try {
      for (auto& group : groups_)
        for (auto& p : group) {
          if (!p.grad().defined()) continue;
          if (setToNone) {
            p.mutable_grad().reset();
          } else {
            at::Tensor& g = p.mutable_grad();
            if (g.grad_fn())
              g = g.detach();
            else
              g.requires_grad_(false);
            g.zero_();
          }
        }
    } catch (...) {
      Rethrow(info.Env());
    }
    return info.Env().Undefined();
  }

  // getState(group, index) -> { step, buffers: [h|null, h|null, h|null] }
  Napi::Value GetState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ParamState& st = At(info);
    Napi::Object out = Napi::Object::New(env);
    out.Set("step", Napi::Number::New(env, static_cast<double>(st.step)));
    Napi::Array bufs = Napi::Array::New(env, 3);
    for (uint32_t k = 0; k < 3; k++) bufs.Set(k, TensorWrap::Make(env, st.buf[k]));
    out.Set("buffers", bufs);
    return out;
  }

  // setState(group, index, step, [h|null x3]) — copies the tensors (to the param's device/dtype)
  Napi::Value SetState(const Napi::CallbackInfo& info) {
    ParamState& st = At(info);
    const at::Tensor& p = groups_[info[0].As<Napi::Number>().Uint32Value()][info[1].As<Napi::Number>().Uint32Value()];
    st.step = info[2].As<Napi::Number>().Int64Value();
    Napi::Array bufs = info[3].As<Napi::Array>();
    try {
      for (uint32_t k = 0; k < 3; k++) {
        Napi::Value v = bufs.Get(k);
        if (TensorWrap::Is(v))
          st.buf[k] = TensorWrap::Get(v, "optimizer state").detach().to(p.device(), p.scalar_type(), false, true);
        else
          st.buf[k].reset();
      }
    } catch (...) {
      Rethrow(info.Env());
    }
    return info.Env().Undefined();
  }

  // moveState(device): move every state buffer next to its parameter (after model.to()).
  Napi::Value MoveState(const Napi::CallbackInfo& info) {
    try {
      for (size_t g = 0; g < groups_.size(); g++)
        for (size_t i = 0; i < groups_[g].size(); i++)
          for (auto& b : state_[g][i].buf)
            if (b.defined()) b = b.to(groups_[g][i].device());
    } catch (...) {
      Rethrow(info.Env());
    }
    return info.Env().Undefined();
  }

  ParamState& At(const Napi::CallbackInfo& info) {
    uint32_t g = info[0].As<Napi::Number>().Uint32Value();
    uint32_t i = info[1].As<Napi::Number>().Uint32Value();
    if (g >= state_.size() || i >= state_[g].size()) throw Napi::RangeError::New(info.Env(), "optimizer state index out of range");
    return state_[g][i];
  }
};

static std::vector<at::Tensor> TensorsOf(const Napi::Value& v, const char* what) {
  Napi::Array arr = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) out.push_back(TensorWrap::Get(arr.Get(i), what));
  return out;
}

// clipGradNorm(params[], maxNorm, normType) -> total norm (before clipping), as
// torch.nn.utils.clip_grad_norm_.
static Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
  auto params = TensorsOf(info[0], "clipGradNorm");
  double maxNorm = info[1].ToNumber().DoubleValue();
  double normType = info.Length() > 2 ? info[2].ToNumber().DoubleValue() : 2.0;
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad().detach());
  if (grads.empty()) return Napi::Number::New(info.Env(), 0.0);
  at::Tensor total;
  if (std::isinf(normType)) {
    std::vector<at::Tensor> norms;
    for (auto& g : grads) norms.push_back(g.abs().max());
    total = norms.size() == 1 ? norms[0] : at::stack(norms).max();
  } else {
    std::vector<at::Tensor> norms;
    for (auto& g : grads) norms.push_back(at::linalg_vector_norm(g, normType));
    total = at::linalg_vector_norm(at::stack(norms), normType);
  }
  at::Tensor coef = (maxNorm / (total + 1e-6)).clamp_max(1.0);
  for (auto& g : grads) g.mul_(coef.to(g.device()));
  return Napi::Number::New(info.Env(), total.item<double>());
}

// clipGradValue(params[], clip)
static Napi::Value ClipGradValue(const Napi::CallbackInfo& info) {
  auto params = TensorsOf(info[0], "clipGradValue");
  double c = info[1].ToNumber().DoubleValue();
  at::NoGradGuard no_grad;
  for (auto& p : params)
    if (p.grad().defined()) p.grad().clamp_(-c, c);
  return info.Env().Undefined();
}

// scaleGrads(params[], factor) -> true when every gradient is finite (checked after scaling)
static Napi::Value ScaleGrads(const Napi::CallbackInfo& info) {
  auto params = TensorsOf(info[0], "scaleGrads");
  double f = info[1].ToNumber().DoubleValue();
  at::NoGradGuard no_grad;
  bool finite = true;
  for (auto& p : params) {
    if (!p.grad().defined()) continue;
    if (f != 1.0) p.grad().mul_(f);
    if (finite && !p.grad().isfinite().all().item<bool>()) finite = false;
  }
  return Napi::Boolean::New(info.Env(), finite);
}

void InitOptim(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = OptimWrap::Define(env);
  exports.Set("NativeOptimizer", ctor);
  ACC_FN(exports, "clipGradNorm", ClipGradNorm);
  ACC_FN(exports, "clipGradValue", ClipGradValue);
  ACC_FN(exports, "scaleGrads", ScaleGrads);
}

}  // namespace acc
