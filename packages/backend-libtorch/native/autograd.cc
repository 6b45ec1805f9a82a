// Autograd: backward, gradients, requires_grad, grad mode.
#include "common.h"

#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace acc {

// ---- gradient-ready hooks (post-accumulate-grad) ----------------------------------------
//
// addGradReadyHook(param, fn) runs fn() after backward accumulated param's gradient into
// param.grad: once per backward and parameter, since a leaf's AccumulateGrad node runs once,
// after the gradients of all its uses were summed. libtorch >= 2.1 has a native slot for
// this (the tensor's post-accumulate-grad hooks, torch's register_post_accumulate_grad_hook);
// 1.13 has not, so the hook is a post hook on the parameter's AccumulateGrad node (as c10d's
// reducer does), whose node is kept alive by the registration.
//
// Threads: CPU backward runs its nodes on the calling thread, i.e. the JS thread, and fn is
// called right there, in order. A hook that fires on another thread (the autograd engine's
// device threads, for CUDA) is queued and the queue is run on the JS thread after the
// engine finished, before backward() returns. An exception thrown by fn stops backward;
// backward() then throws an Error saying so, with the hook's error as `cause`.

namespace {

std::thread::id g_jsThread;

struct ReadyEntry {
  Napi::FunctionReference fn;
  std::atomic<bool> removed{false};
};

std::mutex g_queueMu;
std::vector<std::shared_ptr<ReadyEntry>> g_queue;  // fired off the JS thread, run after backward
std::unique_ptr<Napi::Reference<Napi::Value>> g_hookError;  // the JS error of the hook that stopped backward

void CallOnJs(const std::shared_ptr<ReadyEntry>& e) {
  if (e->removed.load() || e->fn.IsEmpty()) return;
  Napi::Env env = e->fn.Env();
  Napi::HandleScope scope(env);
  try {
    e->fn.Call({});
  } catch (const Napi::Error& err) {
    g_hookError = std::make_unique<Napi::Reference<Napi::Value>>(Napi::Reference<Napi::Value>::New(err.Value(), 1));
    throw std::runtime_error("a gradient-ready hook threw: " + err.Message());
  }
}

void Fire(const std::shared_ptr<ReadyEntry>& e) {
  if (e->removed.load()) return;
  if (std::this_thread::get_id() == g_jsThread) {
    CallOnJs(e);
  } else {
    std::lock_guard<std::mutex> l(g_queueMu);
    g_queue.push_back(e);
  }
}

void RunQueued() {
  std::vector<std::shared_ptr<ReadyEntry>> q;
  {
    std::lock_guard<std::mutex> l(g_queueMu);
    q.swap(g_queue);
  }
  for (auto& e : q) CallOnJs(e);
}

#if ACC_TORCH2
// One per parameter in its post-accumulate-grad slot; runs our entries in registration order.
struct ReadyHooks : torch::autograd::PostAccumulateGradHook {
  std::unique_ptr<torch::autograd::PostAccumulateGradHook> previous;  // a hook someone else set first
  std::vector<std::shared_ptr<ReadyEntry>> entries;
  void operator()(const torch::autograd::Variable& tensor) override {
    if (previous) (*previous)(tensor);
    entries.erase(std::remove_if(entries.begin(), entries.end(), [](const std::shared_ptr<ReadyEntry>& e) { return e->removed.load(); }), entries.end());
    auto now = entries;  // a hook may add or remove hooks
    for (auto& e : now) Fire(e);
  }
};
#else
struct ReadyPostHook : torch::autograd::FunctionPostHook {
  explicit ReadyPostHook(std::shared_ptr<ReadyEntry> e) : entry(std::move(e)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs, const torch::autograd::variable_list& /*inputs*/) override {
    Fire(entry);
    return outputs;
  }
  std::shared_ptr<ReadyEntry> entry;
};
#endif

struct Registration {
  std::shared_ptr<ReadyEntry> entry;
#if !ACC_TORCH2
  std::shared_ptr<torch::autograd::Node> acc;  // the AccumulateGrad node (the parameter only holds it weakly)
  uintptr_t key = 0;
#endif
};
std::unordered_map<uint64_t, Registration> g_registrations;  // JS thread only
uint64_t g_nextRegistration = 1;
// Inside backward the engine iterates the node's post hooks: a hook removed then (by
// itself, or another hook) is detached once backward returned.
int g_backwardDepth = 0;
std::vector<Registration> g_detachLater;

void Detach(Registration& r) {
#if !ACC_TORCH2
  if (g_backwardDepth > 0) {
    g_detachLater.push_back(std::move(r));
    return;
  }
  r.acc->del_post_hook(r.key);
#else
  (void)r;
#endif
}

void DetachDeferred() {
  if (g_backwardDepth > 0) return;
  auto later = std::move(g_detachLater);
  g_detachLater.clear();
  for (auto& r : later) Detach(r);
}

}  // namespace

// addGradReadyHook(param, fn) -> remove(): fn() runs after param.grad was accumulated.
static Napi::Value AddGradReadyHook(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Tensor p = TensorWrap::Get(info[0], "addGradientReadyHook");
  if (!info[1].IsFunction()) throw Napi::TypeError::New(env, "addGradientReadyHook: expected a function");
  if (!p.requires_grad() || !p.is_leaf())
    throw Napi::TypeError::New(env, "addGradientReadyHook: the tensor must be a leaf that requires grad (a parameter); its gradient is never accumulated otherwise");
  Registration reg;
  reg.entry = std::make_shared<ReadyEntry>();
  reg.entry->fn = Napi::Persistent(info[1].As<Napi::Function>());
#if ACC_TORCH2
  auto& slot = torch::autograd::impl::post_acc_grad_hooks(p);
  auto* ours = dynamic_cast<ReadyHooks*>(slot.get());
  if (!ours) {
    auto fresh = std::make_unique<ReadyHooks>();
    fresh->previous = std::move(slot);
    ours = fresh.get();
    torch::autograd::impl::set_post_acc_grad_hooks(p, std::move(fresh));
  }
  ours->entries.push_back(reg.entry);
#else
  reg.acc = torch::autograd::impl::grad_accumulator(p);
  TORCH_CHECK(reg.acc, "addGradientReadyHook: the parameter has no gradient accumulator");
  reg.key = reg.acc->add_post_hook(std::make_unique<ReadyPostHook>(reg.entry));
#endif
  uint64_t id = g_nextRegistration++;
  g_registrations.emplace(id, std::move(reg));
  return Napi::Function::New(env, [id](const Napi::CallbackInfo& ci) -> Napi::Value {
    auto it = g_registrations.find(id);
    if (it == g_registrations.end()) return ci.Env().Undefined();
    Registration& r = it->second;
    r.entry->removed.store(true);
    r.entry->fn.Reset();
    Detach(r);
    g_registrations.erase(it);
    return ci.Env().Undefined();
  }, "remove");
}

// backward(loss, grad|null, retainGraph, createGraph)
static Napi::Value Backward(const Napi::CallbackInfo& info) {
  at::Tensor t = TensorWrap::Get(info[0], "backward");
  std::vector<at::Tensor> grads;
  if (info.Length() > 1 && TensorWrap::Is(info[1])) grads.push_back(TensorWrap::Get(info[1], "backward gradient"));
  c10::optional<bool> retain;
  if (info.Length() > 2 && info[2].IsBoolean()) retain = info[2].As<Napi::Boolean>().Value();
  bool create = info.Length() > 3 && info[3].ToBoolean().Value();
  g_hookError.reset();
  struct Depth {
    Depth() { g_backwardDepth++; }
    ~Depth() {
      g_backwardDepth--;
      DetachDeferred();
    }
  };
  try {
    Depth depth;
    torch::autograd::backward({t}, grads, retain, create);
    RunQueued();  // hooks that fired on the engine's device threads
  } catch (...) {
    {
      std::lock_guard<std::mutex> l(g_queueMu);
      g_queue.clear();
    }
    if (g_hookError) {
      Napi::Env env = info.Env();
      auto cause = std::move(g_hookError);
      Napi::Value orig = cause->Value();
      std::string msg = orig.IsObject() && orig.As<Napi::Object>().Get("message").IsString() ? orig.As<Napi::Object>().Get("message").As<Napi::String>().Utf8Value() : orig.ToString().Utf8Value();
      Napi::Error e = Napi::Error::New(env, "backward: a gradient-ready hook threw, so backward stopped (gradients may be partly accumulated): " + msg);
      e.Set("cause", orig);
      throw e;
    }
    throw;
  }
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
  g_jsThread = std::this_thread::get_id();
  ACC_FN(exports, "addGradReadyHook", AddGradReadyHook);
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
