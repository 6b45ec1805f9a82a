// c10d over gloo: a TCPStore rendezvous and a ProcessGroupGloo. Blocking steps
// (creating the group, Work::wait, store gets) run on libuv worker threads and
// resolve promises; collectives are issued on the JS thread so every rank issues
// them in program order.
//
// Only ProcessGroupGloo's out-of-line API is used: no gloo class is constructed here
// (the gloo headers may differ from the ones libtorch was built with; see the notes).
#include "common.h"

#include <ATen/ops/empty_like.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <functional>

namespace acc {

// A promise settled from a libuv worker thread.
class Task : public Napi::AsyncWorker {
 public:
  Task(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env, "accelerate:c10d"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), done_(std::move(done)) {}
  void Execute() override {
    try {
      work_();
    } catch (const c10::Error& e) {
      SetError(e.what_without_backtrace());
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("unknown C++ exception in c10d");
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(done_ ? done_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  Napi::Promise Promise() { return deferred_.Promise(); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
};

static Napi::Promise Run(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done = nullptr) {
  auto* t = new Task(env, std::move(work), std::move(done));
  Napi::Promise p = t->Promise();
  t->Queue();
  return p;
}

// ---- Work ---------------------------------------------------------------------------

class WorkWrap : public Napi::ObjectWrap<WorkWrap> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeWork", {InstanceMethod<&WorkWrap::Wait>("wait"), InstanceMethod<&WorkWrap::IsCompleted>("isCompleted")});
  }
  explicit WorkWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<WorkWrap>(info) {}

  static Napi::Value Make(Napi::Env env, c10::intrusive_ptr<c10d::Work> work, std::vector<at::Tensor> keep, bool gatherOutputs) {
    Napi::Object o = ctor->New({});
    WorkWrap* w = Unwrap(o);
    w->work_ = std::move(work);
    w->keep_ = std::move(keep);
    w->gather_ = gatherOutputs;
    return o;
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  std::vector<at::Tensor> keep_;  // inputs/outputs alive until the collective ends
  bool gather_ = false;

  // wait() -> Promise<undefined | handle[]> (allgather: one tensor per rank)
  Napi::Value Wait(const Napi::CallbackInfo& info) {
    auto work = work_;
    auto outs = keep_;
    bool gather = gather_;
    return Run(
        info.Env(), [work]() { work->wait(); },
        [outs, gather](Napi::Env env) -> Napi::Value {
          if (!gather) return env.Undefined();
          Napi::Array a = Napi::Array::New(env, outs.size() - 1);
          for (size_t i = 1; i < outs.size(); i++) a.Set(static_cast<uint32_t>(i - 1), TensorWrap::Make(env, outs[i]));
          return a;
        });
  }
  Napi::Value IsCompleted(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), work_ && work_->isCompleted()); }
};
Napi::FunctionReference* WorkWrap::ctor = nullptr;

// ---- Group --------------------------------------------------------------------------

class GroupWrap : public Napi::ObjectWrap<GroupWrap> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeGroup",
                       {InstanceMethod<&GroupWrap::AllReduce>("allReduce"), InstanceMethod<&GroupWrap::Broadcast>("broadcast"),
                        InstanceMethod<&GroupWrap::AllGather>("allGather"), InstanceMethod<&GroupWrap::Send>("send"),
                        InstanceMethod<&GroupWrap::Recv>("recv"), InstanceMethod<&GroupWrap::Barrier>("barrier"),
                        InstanceMethod<&GroupWrap::NewGroup>("newGroup"), InstanceMethod<&GroupWrap::StoreSet>("storeSet"),
                        InstanceMethod<&GroupWrap::StoreGet>("storeGet"), InstanceMethod<&GroupWrap::StoreAdd>("storeAdd"),
                        InstanceMethod<&GroupWrap::Destroy>("destroy")});
  }
  explicit GroupWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GroupWrap>(info) {}

  struct State {
    c10::intrusive_ptr<c10d::Store> root;   // the TCPStore every subgroup prefixes
    c10::intrusive_ptr<c10d::Store> store;  // this group's (prefixed) store
    c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
    int rank = 0, size = 1, threads = 2;
    std::chrono::milliseconds timeout{1800000};
  };

  static Napi::Value Make(Napi::Env env, std::shared_ptr<State> st) {
    Napi::Object o = ctor->New({});
    Unwrap(o)->st_ = std::move(st);
    return o;
  }

  static std::shared_ptr<State> Connect(std::shared_ptr<State> st, const std::string& host) {
    auto opts = c10d::ProcessGroupGloo::Options::create(st->timeout);
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host));
    opts->threads = st->threads;
    st->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(st->store, st->rank, st->size, opts);
    return st;
  }

 private:
  std::shared_ptr<State> st_;
  std::string host_;

  c10d::ProcessGroupGloo& PG(Napi::Env env) {
    if (!st_ || !st_->pg) throw Napi::Error::New(env, "process group was destroyed");
    return *st_->pg;
  }

  static c10d::ReduceOp Op(Napi::Env env, const Napi::Value& v) {
    std::string s = v.IsUndefined() ? "sum" : v.ToString().Utf8Value();
    if (s == "sum") return c10d::ReduceOp::SUM;
    if (s == "product") return c10d::ReduceOp::PRODUCT;
    if (s == "min") return c10d::ReduceOp::MIN;
    if (s == "max") return c10d::ReduceOp::MAX;
    throw Napi::TypeError::New(env, "reduce op '" + s + "' is not supported by gloo here (sum, product, min, max)");
  }

  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    std::vector<at::Tensor> t{TensorWrap::Get(info[0], "allReduce")};
    c10d::AllreduceOptions o;
    o.reduceOp = Op(info.Env(), info[1]);
    try {
      return WorkWrap::Make(info.Env(), PG(info.Env()).allreduce(t, o), t, false);
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      Rethrow(info.Env());
    }
  }
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    std::vector<at::Tensor> t{TensorWrap::Get(info[0], "broadcast")};
    c10d::BroadcastOptions o;
    o.rootRank = info[1].As<Napi::Number>().Int64Value();
    try {
      return WorkWrap::Make(info.Env(), PG(info.Env()).broadcast(t, o), t, false);
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      Rethrow(info.Env());
    }
  }
  Napi::Value AllGather(const Napi::CallbackInfo& info) {
    at::Tensor in = TensorWrap::Get(info[0], "allGather");
    std::vector<at::Tensor> inputs{in};
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int r = 0; r < st_->size; r++) outputs[0].push_back(at::empty_like(in));
    try {
      auto work = PG(info.Env()).allgather(outputs, inputs);
      std::vector<at::Tensor> keep{in};
      keep.insert(keep.end(), outputs[0].begin(), outputs[0].end());
      return WorkWrap::Make(info.Env(), work, keep, true);
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      Rethrow(info.Env());
    }
  }
  Napi::Value Send(const Napi::CallbackInfo& info) {
    std::vector<at::Tensor> t{TensorWrap::Get(info[0], "send")};
    try {
      return WorkWrap::Make(info.Env(), PG(info.Env()).send(t, info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value()), t, false);
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      Rethrow(info.Env());
    }
  }
  Napi::Value Recv(const Napi::CallbackInfo& info) {
    std::vector<at::Tensor> t{TensorWrap::Get(info[0], "recv")};
    try {
      return WorkWrap::Make(info.Env(), PG(info.Env()).recv(t, info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value()), t, false);
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      Rethrow(info.Env());
    }
  }
  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    try {
      return WorkWrap::Make(info.Env(), PG(info.Env()).barrier(), {}, false);
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      Rethrow(info.Env());
    }
  }

  // newGroup(ranks[], name, host) -> Promise<group | null>; `name` must be unique per
  // creation and equal on every rank (the JS side derives it from a creation counter).
  Napi::Value NewGroup(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto ranks = ParseInts(env, info[0], "newGroup ranks");
    std::string name = info[1].ToString().Utf8Value();
    std::string host = info[2].ToString().Utf8Value();
    int me = -1;
    for (size_t i = 0; i < ranks.size(); i++)
      if (ranks[i] == st_->rank) me = static_cast<int>(i);
    if (me < 0) {
      auto d = Napi::Promise::Deferred::New(env);
      d.Resolve(env.Null());
      return d.Promise();
    }
    auto sub = std::make_shared<State>();
    sub->root = st_->root;
    sub->store = c10::make_intrusive<c10d::PrefixStore>("accelerate_group_" + name + "/", st_->root);
    sub->rank = me;
    sub->size = static_cast<int>(ranks.size());
    sub->threads = st_->threads;
    sub->timeout = st_->timeout;
    return Run(
        env, [sub, host]() { Connect(sub, host); }, [sub](Napi::Env e) { return Make(e, sub); });
  }

  Napi::Value StoreSet(const Napi::CallbackInfo& info) {
    auto store = st_->store;
    std::string key = info[0].ToString().Utf8Value();
    Napi::Uint8Array a = info[1].As<Napi::Uint8Array>();
    std::vector<uint8_t> value(a.Data(), a.Data() + a.ElementLength());
    return Run(info.Env(), [store, key, value]() { store->set(key, value); });
  }
  Napi::Value StoreGet(const Napi::CallbackInfo& info) {
    auto store = st_->store;
    std::string key = info[0].ToString().Utf8Value();
    auto out = std::make_shared<std::vector<uint8_t>>();
    return Run(
        info.Env(), [store, key, out]() { *out = store->get(key); },
        [out](Napi::Env env) -> Napi::Value {
          Napi::Uint8Array a = Napi::Uint8Array::New(env, out->size());
          std::copy(out->begin(), out->end(), a.Data());
          return a;
        });
  }
  Napi::Value StoreAdd(const Napi::CallbackInfo& info) {
    auto store = st_->store;
    std::string key = info[0].ToString().Utf8Value();
    int64_t delta = info[1].As<Napi::Number>().Int64Value();
    auto out = std::make_shared<int64_t>(0);
    return Run(
        info.Env(), [store, key, delta, out]() { *out = store->add(key, delta); },
        [out](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(*out)); });
  }
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    st_.reset();
    return info.Env().Undefined();
  }
};
Napi::FunctionReference* GroupWrap::ctor = nullptr;

// initGroup(host, port, rank, world, timeoutMs, threads) -> Promise<group>
static Napi::Value InitGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string host = info[0].ToString().Utf8Value();
  auto port = static_cast<std::uint16_t>(info[1].As<Napi::Number>().Uint32Value());
  auto st = std::make_shared<GroupWrap::State>();
  st->rank = info[2].As<Napi::Number>().Int32Value();
  st->size = info[3].As<Napi::Number>().Int32Value();
  st->timeout = std::chrono::milliseconds(info[4].As<Napi::Number>().Int64Value());
  st->threads = info[5].IsNumber() ? info[5].As<Napi::Number>().Int32Value() : 2;
  return Run(
      env,
      [st, host, port]() {
        c10d::TCPStoreOptions o;
        o.port = port;
        o.isServer = st->rank == 0;
        o.numWorkers = static_cast<std::size_t>(st->size);
        o.timeout = st->timeout;
        st->root = c10::make_intrusive<c10d::TCPStore>(host, o);
        st->store = c10::make_intrusive<c10d::PrefixStore>("accelerate_default/", st->root);
        GroupWrap::Connect(st, host);
      },
      [st](Napi::Env e) { return GroupWrap::Make(e, st); });
}

void InitC10d(Napi::Env env, Napi::Object exports) {
  Napi::Function w = WorkWrap::Define(env);
  WorkWrap::ctor = new Napi::FunctionReference(Napi::Persistent(w));
  Napi::Function g = GroupWrap::Define(env);
  GroupWrap::ctor = new Napi::FunctionReference(Napi::Persistent(g));
  ACC_FN(exports, "initGroup", InitGroup);
}

}  // namespace acc
