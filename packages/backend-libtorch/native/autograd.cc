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
#include <string>
#include <type_traits>
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

// Set by the environment's cleanup hook. Hooks (and the JS functions they hold) may
// outlive the JS environment: a parameter in a static structure, or this file's
// registries, are destroyed by exit handlers after Node tore the environment down,
// where deleting a JS reference crashes. Once set, references are abandoned instead.
bool g_envGone = false;

/** A JS function held by native hook state; safe to destroy after the environment is gone. */
struct JsFunction {
  Napi::FunctionReference ref;
  JsFunction() = default;
  explicit JsFunction(Napi::FunctionReference r) : ref(std::move(r)) {}
  JsFunction& operator=(Napi::FunctionReference r) {
    ref = std::move(r);
    return *this;
  }
  ~JsFunction() {
    if (g_envGone) ref.SuppressDestruct();
  }
  bool IsEmpty() const { return ref.IsEmpty(); }
  Napi::Env Env() const { return ref.Env(); }
  Napi::Value Call(const std::initializer_list<napi_value>& args) const { return ref.Call(args); }
  Napi::Value Call(const std::vector<napi_value>& args) const { return ref.Call(args); }
  void Reset() { ref.Reset(); }
};

struct ReadyEntry {
  JsFunction fn;
  std::atomic<bool> removed{false};
};

std::mutex g_queueMu;
std::vector<std::shared_ptr<ReadyEntry>> g_queue;  // fired off the JS thread, run after backward
std::unique_ptr<Napi::Reference<Napi::Value>> g_hookError;  // the JS error of the hook that stopped backward
std::string g_hookKind = "a gradient-ready hook";  // what threw it, for backward's message

// Keeps `err` as the error that stopped backward and returns the C++ exception that
// unwinds the engine (backward() then throws `err` as the cause).
std::runtime_error StopBackward(const Napi::Error& err, const char* kind) {
  g_hookError = std::make_unique<Napi::Reference<Napi::Value>>(Napi::Reference<Napi::Value>::New(err.Value(), 1));
  g_hookKind = kind;
  return std::runtime_error(std::string(kind) + " threw: " + err.Message());
}

void CallOnJs(const std::shared_ptr<ReadyEntry>& e) {
  if (e->removed.load() || e->fn.IsEmpty()) return;
  Napi::Env env = e->fn.Env();
  Napi::HandleScope scope(env);
  try {
    e->fn.Call({});
  } catch (const Napi::Error& err) {
    throw StopBackward(err, "a gradient-ready hook");
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
// Callbacks queued with queueBackwardCallback: run when the outermost backward() finished.
std::vector<std::shared_ptr<JsFunction>> g_finalCallbacks;

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

// backward(loss, grad|null, retainGraph, createGraph), or backward([t...], [grad|null...], ...)
// (torch.autograd.backward over several roots).
static Napi::Value Backward(const Napi::CallbackInfo& info) {
  std::vector<at::Tensor> roots;
  std::vector<at::Tensor> grads;
  if (info[0].IsArray()) {
    Napi::Array ts = info[0].As<Napi::Array>();
    Napi::Array gs = info.Length() > 1 && info[1].IsArray() ? info[1].As<Napi::Array>() : Napi::Array::New(info.Env());
    for (uint32_t i = 0; i < ts.Length(); i++) {
      roots.push_back(TensorWrap::Get(ts.Get(i), "backward"));
      at::Tensor g;
      if (i < gs.Length() && TensorWrap::Is(gs.Get(i))) g = TensorWrap::Get(gs.Get(i), "backward gradient");
      grads.push_back(g);
    }
    if (roots.empty()) return info.Env().Undefined();
  } else {
    roots.push_back(TensorWrap::Get(info[0], "backward"));
    if (info.Length() > 1 && TensorWrap::Is(info[1])) grads.push_back(TensorWrap::Get(info[1], "backward gradient"));
  }
  c10::optional<bool> retain;
  if (info.Length() > 2 && info[2].IsBoolean()) retain = info[2].As<Napi::Boolean>().Value();
  bool create = info.Length() > 3 && info[3].ToBoolean().Value();
  const bool outermost = g_backwardDepth == 0;
  if (outermost) {
    g_hookError.reset();
    g_finalCallbacks.clear();
  }
  struct Depth {
    Depth() { g_backwardDepth++; }
    ~Depth() {
      g_backwardDepth--;
      DetachDeferred();
    }
  };
  try {
    {
      Depth depth;
      torch::autograd::backward(roots, grads, retain, create);
      RunQueued();  // hooks that fired on the engine's device threads
    }
    // Callbacks queued during this backward (also from nested ones, e.g. checkpoint
    // recomputation): once each, in order; a callback may queue more.
    if (outermost) {
      struct Later {
        ~Later() { g_backwardDepth--; }
      };
      g_backwardDepth++;  // queueBackwardCallback stays valid inside a callback
      Later later;
      for (size_t i = 0; i < g_finalCallbacks.size(); i++) {
        auto cb = g_finalCallbacks[i];
        Napi::HandleScope scope(info.Env());
        try {
          cb->Call({});
        } catch (const Napi::Error& err) {
          throw StopBackward(err, "a backward callback");
        }
      }
      g_finalCallbacks.clear();
    }
  } catch (...) {
    {
      std::lock_guard<std::mutex> l(g_queueMu);
      g_queue.clear();
    }
    if (outermost) g_finalCallbacks.clear();
    if (g_hookError) {
      Napi::Env env = info.Env();
      auto cause = std::move(g_hookError);
      Napi::Value orig = cause->Value();
      std::string msg = orig.IsObject() && orig.As<Napi::Object>().Get("message").IsString() ? orig.As<Napi::Object>().Get("message").As<Napi::String>().Utf8Value() : orig.ToString().Utf8Value();
      Napi::Error e = Napi::Error::New(env, "backward: " + g_hookKind + " threw, so backward stopped (gradients may be partly accumulated): " + msg);
      e.Set("cause", orig);
      throw e;
    }
    throw;
  }
  return info.Env().Undefined();
}

// ---- tensor gradient hooks, backward callbacks, checkpointing ---------------------------

namespace {

void RequireJsThread(const char* what) {
  TORCH_CHECK(std::this_thread::get_id() == g_jsThread, what,
              " runs JavaScript, so it needs the backward that reaches it to run on the JS thread (CPU backward); this one ran on an autograd device thread");
}

struct TensorHookEntry {
  JsFunction fn;
  bool removed = false;
};

struct TensorHookReg {
  explicit TensorHookReg(const at::Tensor& t) : tensor(t.getIntrusivePtr()) {}
  std::shared_ptr<TensorHookEntry> entry;
  c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> tensor;  // weak: the registration keeps no graph alive
  unsigned pos = 0;
};

}  // namespace

// addTensorGradHook(t, fn) -> remove() | undefined: fn() when t's gradient was computed,
// before the backward of the operation that produced t (Tensor.register_hook). The hook
// (and fn) live as long as t's autograd history, or until remove().
static Napi::Value AddTensorGradHook(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Tensor t = TensorWrap::Get(info[0], "addTensorGradHook");
  if (!info[1].IsFunction()) throw Napi::TypeError::New(env, "addTensorGradHook: expected a function");
  if (!t.requires_grad()) return env.Undefined();
  auto reg = std::make_shared<TensorHookReg>(t);
  reg->entry = std::make_shared<TensorHookEntry>();
  reg->entry->fn = Napi::Persistent(info[1].As<Napi::Function>());
  std::shared_ptr<TensorHookEntry> entry = reg->entry;
  reg->pos = t.register_hook([entry](const at::TensorBase& /*grad*/) {
    if (entry->removed || entry->fn.IsEmpty()) return;
    RequireJsThread("a tensor gradient hook");
    Napi::HandleScope scope(entry->fn.Env());
    try {
      entry->fn.Call({});
    } catch (const Napi::Error& err) {
      throw StopBackward(err, "a tensor gradient hook");
    }
  });
  return Napi::Function::New(env, [reg](const Napi::CallbackInfo& ci) -> Napi::Value {
    if (reg->entry->removed) return ci.Env().Undefined();
    reg->entry->removed = true;
    reg->entry->fn.Reset();  // the hook (if it still runs) finds nothing to call
    auto impl = reg->tensor.lock();
    if (impl) {
      try {
        at::Tensor(std::move(impl)).remove_hook(reg->pos);
      } catch (...) {
      }
    }
    return ci.Env().Undefined();
  }, "remove");
}

// queueBackwardCallback(fn): fn() once when the running (outermost) backward finished,
// before backward() returns.
static Napi::Value QueueBackwardCallback(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "queueBackwardCallback: expected a function");
  if (g_backwardDepth == 0) {
    throw Napi::Error::New(env, "queueBackwardCallback: no backward is running. Queue backward callbacks from a hook that runs during backward "
                                "(sharding.addTensorGradHook, models.addGradientReadyHook)");
  }
  g_finalCallbacks.push_back(std::make_shared<JsFunction>(Napi::Persistent(info[0].As<Napi::Function>())));
  return env.Undefined();
}

namespace {

// Graph nodes are held by std::shared_ptr up to libtorch 2.9ish (1.13 with deleteNode, which
// frees deep graphs iteratively) and by c10::intrusive_ptr in newer releases: follow Edge.
template <typename N>
auto MakeNode() {
  using Ref = decltype(torch::autograd::Edge::function);
  if constexpr (std::is_same_v<Ref, std::shared_ptr<torch::autograd::Node>>) {
#if ACC_TORCH2
    return std::make_shared<N>();
#else
    return std::shared_ptr<N>(new N(), torch::autograd::deleteNode);
#endif
  } else {
    return c10::make_intrusive<N>();
  }
}

// The backward of a checkpointed forward: calls JS with the output gradients and the
// saved inputs; JS recomputes the forward with grad enabled, runs a nested backward and
// returns the inputs' gradients.
struct CheckpointNode : torch::autograd::Node {
  std::shared_ptr<JsFunction> fn;
  std::vector<at::Tensor> inputs;  // detached; requires_grad as the originals
  std::vector<uint32_t> versions;
  bool released = false;

  std::string name() const override { return "CheckpointBackward"; }

  void release_variables() override {
    inputs.clear();
    released = true;
  }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    RequireJsThread("checkpointed forward recomputation");
    TORCH_CHECK(!released, "checkpoint: backward ran a second time through a checkpointed module; pass retainGraph to the first backward");
    for (size_t i = 0; i < inputs.size(); i++) {
      TORCH_CHECK(inputs[i]._version() == versions[i], "checkpoint: input ", i,
                  " of a checkpointed forward was modified in place after the forward; it is needed to recompute the forward in backward");
    }
    Napi::Env env = fn->Env();
    Napi::HandleScope scope(env);
    Napi::Array g = Napi::Array::New(env, grads.size());
    for (uint32_t i = 0; i < grads.size(); i++) g.Set(i, TensorWrap::Make(env, grads[i]));
    Napi::Array xs = Napi::Array::New(env, inputs.size());
    for (uint32_t i = 0; i < inputs.size(); i++) {
      at::Tensor x = inputs[i].detach();
      x.set_requires_grad(inputs[i].requires_grad());
      xs.Set(i, TensorWrap::Make(env, std::move(x)));
    }
    // The handles given to JS are ours: their references drop as soon as JS returned.
    auto releaseAll = [&](const Napi::Array& a) {
      for (uint32_t i = 0; i < a.Length(); i++)
        if (TensorWrap* w = TensorWrap::Unwrap(a.Get(i))) w->Release(Napi::BasicEnv(static_cast<napi_env>(env)));
    };
    Napi::Value out;
    try {
      out = fn->Call({g, xs});
    } catch (const Napi::Error& err) {
      releaseAll(g);
      releaseAll(xs);
      throw StopBackward(err, "checkpoint recomputation");
    }
    releaseAll(g);
    releaseAll(xs);
    torch::autograd::variable_list result(num_outputs());
    if (out.IsArray()) {
      Napi::Array a = out.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length() && i < result.size(); i++) {
        TensorWrap* w = TensorWrap::Unwrap(a.Get(i));
        if (!w || !w->tensor.defined()) continue;
        result[i] = w->tensor;
        w->Release(Napi::BasicEnv(static_cast<napi_env>(env)));
      }
    }
    return result;
  }
};

}  // namespace

// checkpointAttach(inputs[], outputs[], backwardFn) -> new output handles: outputs of a
// forward run without grad, attached to one CheckpointNode whose next edges are the
// inputs'. backwardFn(grads[], inputs[]) -> input grads[] (handles or null).
static Napi::Value CheckpointAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array in = info[0].As<Napi::Array>();
  Napi::Array outs = info[1].As<Napi::Array>();
  if (!info[2].IsFunction()) throw Napi::TypeError::New(env, "checkpointAttach: expected a function");
  std::vector<at::Tensor> inputs;
  for (uint32_t i = 0; i < in.Length(); i++) inputs.push_back(TensorWrap::Get(in.Get(i), "checkpoint input"));
  auto node = MakeNode<CheckpointNode>();
  node->set_next_edges(torch::autograd::collect_next_edges(inputs));
  for (auto& x : inputs) {
    at::Tensor d = x.detach();
    d.set_requires_grad(x.requires_grad());
    node->versions.push_back(x._version());
    node->inputs.push_back(std::move(d));
  }
  node->fn = std::make_shared<JsFunction>(Napi::Persistent(info[2].As<Napi::Function>()));
  Napi::Array result = Napi::Array::New(env, outs.Length());
  for (uint32_t i = 0; i < outs.Length(); i++) {
    at::Tensor o = TensorWrap::Get(outs.Get(i), "checkpoint output").detach();
    if (o.is_floating_point() || o.is_complex()) torch::autograd::create_gradient_edge(o, node);
    result.Set(i, TensorWrap::Make(env, std::move(o)));
  }
  return result;
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
  // Release what hooks hold while the environment still exists (see g_envGone).
  env.AddCleanupHook([]() {
    for (auto& [id, r] : g_registrations) {
      r.entry->removed = true;
      r.entry->fn.Reset();
    }
    g_finalCallbacks.clear();
    g_envGone = true;
  });
  ACC_FN(exports, "addGradReadyHook", AddGradReadyHook);
  ACC_FN(exports, "backward", Backward);
  ACC_FN(exports, "addTensorGradHook", AddTensorGradHook);
  ACC_FN(exports, "queueBackwardCallback", QueueBackwardCallback);
  ACC_FN(exports, "checkpointAttach", CheckpointAttach);
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
