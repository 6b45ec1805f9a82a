// Data parallelism (PyTorch's DistributedDataParallel reducer, reduced to what CPU
// training needs): gradients are averaged across the ranks of a gloo group in buckets,
// launched while backward still runs.
//
// - A post hook on every parameter's AccumulateGrad node marks the parameter ready.
//   A bucket whose parameters are all ready is flattened (cat), divided by the world
//   size and all-reduced asynchronously; buckets launch strictly in index order so
//   every rank issues the same collectives in the same order.
// - The first hook of a backward queues a callback on the autograd engine; it runs
//   when backward ends, launches what is left (parameters without gradient: zeros,
//   with findUnusedParameters), waits for every bucket and copies the averages back
//   into the gradients. backward() therefore returns with synchronised gradients.
// - Hooks act only after prepareForBackward(), which the JS forward wrapper calls
//   when grad mode is on and sync is enabled (DDP's no_sync skips it), so using the
//   unwrapped module, or no_sync, only accumulates locally.
// - Join (torch's Join context with DDP's join hook), for ranks with different numbers of
//   batches: while join is on, every forward all-reduces a status vector (one slot per
//   rank: 0 joined, 1 active, 2 active and about to synchronise). A rank that ran out of
//   inputs loops on JoinShadow: it all-reduces a zero status, and when some active rank
//   synchronises it broadcasts buffers with them and all-reduces zero buckets, so the
//   active ranks' collectives always find a partner. Gradients are divided by the initial
//   world size, or by the number of active ranks. At the end the model of the last rank to
//   join (the one that trained longest) is broadcast to all.
// All waits go through c10d.h's diagnosis, so a hang names every rank's position.
#include "c10d.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

// c10d::Reducer for the bench comparison (DdpCreateC10d below). Debian's libtorch-dev ships
// reducer.hpp without the distributed-autograd header it includes, so this is compiled only
// where that header is found (bench builds put a stub on CPLUS_INCLUDE_PATH).
#if !ACC_TORCH2 && __has_include(<torch/csrc/distributed/autograd/context/context.h>)
#define ACC_C10D_REDUCER 1
#include <torch/csrc/distributed/c10d/reducer.hpp>
#else
#define ACC_C10D_REDUCER 0
#endif

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <utility>

namespace acc {

namespace {

using AccPtr = decltype(torch::autograd::impl::grad_accumulator(std::declval<const at::Tensor&>()));

struct Bucket {
  std::vector<size_t> members;   // parameter indices
  std::vector<int64_t> offsets;  // of each member in `flat`
  int64_t numel = 0;             // gradient elements; used-flags follow them
  int64_t bytes = 0;
  size_t pending = 0;            // members not ready yet in this backward
  at::Tensor flat, wire;         // persistent: gradients (+ used-flags); `wire` is what travels (maybe fp16)
  std::vector<at::Tensor> views; // of each member in `flat`, shaped as the parameter
  std::vector<char> copyBack;    // member's grad is not its view: copy the average into it
  c10::intrusive_ptr<c10d::Work> work;
  Ticket ticket;
  bool launched = false;
};

class Reducer : public std::enable_shared_from_this<Reducer> {
 public:
  std::shared_ptr<GroupState> g;
  std::vector<at::Tensor> params, buffers;
  std::vector<std::string> names;
  std::vector<AccPtr> accs;  // keeps each AccumulateGrad (and its hook) alive across graphs
  std::vector<Bucket> buckets;
  std::vector<size_t> bucketOf;
  std::vector<char> ready;
  size_t next = 0;  // first bucket not launched
  bool armed = false, queued = false, findUnused = false;
  // gradient_as_bucket_view: after the first synchronised backward, param.grad IS its view
  // in the bucket, so AccumulateGrad adds into the bucket and nothing is copied back.
  bool asView = true;
  c10::ScalarType wireType = c10::ScalarType::Undefined;  // commHook fp16/bf16
  std::recursive_mutex mu;
  // join
  bool divideByInitial = true;
  int64_t divisor = 0;  // of the buckets (set from each forward's status under join); 0 = world size
  at::Tensor joinStatus;  // the pending status all-reduce of this rank's last forward
  c10::intrusive_ptr<c10d::Work> joinWork;
  Ticket joinTicket;
  int64_t shadowed = 0;  // backward passes matched with zeros after this rank joined
  // statistics
  int64_t reductions = 0, bucketsLaunchedEarly = 0;
  double waitMs = 0;

  void Build(int64_t capBytes, int64_t firstCapBytes) {
    // Reverse registration order approximates the order backward produces gradients.
    bucketOf.assign(params.size(), 0);
    std::vector<Bucket> open;  // one open bucket per dtype
    std::vector<c10::ScalarType> openType;
    auto cap = [&]() { return buckets.empty() ? firstCapBytes : capBytes; };
    for (size_t k = params.size(); k-- > 0;) {
      const at::Tensor& p = params[k];
      int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
      size_t slot = 0;
      while (slot < openType.size() && openType[slot] != p.scalar_type()) slot++;
      if (slot == openType.size()) {
        open.emplace_back();
        openType.push_back(p.scalar_type());
      }
      Bucket& b = open[slot];
      b.members.push_back(k);
      b.offsets.push_back(b.numel);
      b.numel += p.numel();
      b.bytes += bytes;
      if (b.bytes >= cap()) {
        buckets.push_back(std::move(b));
        open[slot] = Bucket();
      }
    }
    for (auto& b : open)
      if (!b.members.empty()) buckets.push_back(std::move(b));
    for (size_t bi = 0; bi < buckets.size(); bi++) {
      Bucket& b = buckets[bi];
      for (size_t k : b.members) bucketOf[k] = bi;
      int64_t n = b.numel + (findUnused ? static_cast<int64_t>(b.members.size()) : 0);
      b.flat = at::zeros({n}, params[b.members[0]].options().requires_grad(false));
      for (size_t j = 0; j < b.members.size(); j++) {
        const at::Tensor& p = params[b.members[j]];
        b.views.push_back(b.flat.narrow(0, b.offsets[j], p.numel()).view(p.sizes()));
      }
      b.copyBack.assign(b.members.size(), 0);
    }
    ready.assign(params.size(), 0);
    Reset();
  }

  void InstallHooks();

  void Reset() {
    std::fill(ready.begin(), ready.end(), 0);
    for (auto& b : buckets) {
      b.pending = b.members.size();
      if (b.wire.defined() && !b.wire.is_same(b.flat)) b.wire = at::Tensor();
      b.work.reset();
      b.launched = false;
    }
    next = 0;
    armed = false;
    queued = false;
  }

  void PrepareForBackward() {
    std::lock_guard<std::recursive_mutex> l(mu);
    // A backward that failed half-way leaves state behind: start clean.
    if (queued || next > 0) Reset();
    armed = true;
  }

  void MarkReady(size_t i) {
    std::lock_guard<std::recursive_mutex> l(mu);
    if (!armed || ready[i]) return;
    if (!queued) {
      std::weak_ptr<Reducer> w = weak_from_this();
      torch::autograd::Engine::get_default_engine().queue_callback([w]() {
        if (auto r = w.lock()) r->Finalize();
      });
      queued = true;
    }
    ready[i] = 1;
    if (--buckets[bucketOf[i]].pending == 0) {
      while (next < buckets.size() && buckets[next].pending == 0) {
        Launch(next++);
        bucketsLaunchedEarly++;
      }
    }
  }

  static bool IsView(const at::Tensor& grad, const at::Tensor& view) {
    return grad.defined() && grad.data_ptr() == view.data_ptr() && grad.sizes() == view.sizes() && grad.strides() == view.strides();
  }

  // Fill the bucket with the gradients divided by the world size (in place for a gradient
  // that already is its view) and start the all-reduce.
  void Launch(size_t bi) {
    Bucket& b = buckets[bi];
    at::NoGradGuard ng;
    ResolveJoinStatus();
    // Averaged while copied in (one pass, as torch's reducer: multiply by 1 / world size).
    at::Tensor scale = at::scalar_tensor(1.0 / static_cast<double>(divisor > 0 ? divisor : g->size), at::TensorOptions().dtype(at::kDouble));
    scale.unsafeGetTensorImpl()->set_wrapped_number(true);
    for (size_t j = 0; j < b.members.size(); j++) {
      size_t k = b.members[j];
      at::Tensor& grad = params[k].mutable_grad();
      at::Tensor& view = b.views[j];
      b.copyBack[j] = 0;
      if (!grad.defined()) {
        view.zero_();
      } else if (IsView(grad, view)) {
        view.mul_(scale);
      } else {
        TORCH_CHECK(!grad.is_sparse(), "DDP: parameter '", names[k], "' has a sparse gradient; sparse gradients are not supported");
        at::mul_out(view, grad, scale);
        // A gradient with a graph of its own (create_graph) keeps its tensor.
        if (asView && !grad.requires_grad() && grad.strides() == view.strides())
          grad = view;
        else
          b.copyBack[j] = 1;
      }
    }
    if (findUnused) {
      // One flag per member, reduced with the gradients: > 0 afterwards = used on some rank.
      at::Tensor flags = at::empty({static_cast<int64_t>(b.members.size())}, at::TensorOptions().dtype(at::kFloat));
      float* f = flags.data_ptr<float>();
      for (size_t j = 0; j < b.members.size(); j++) {
        size_t k = b.members[j];
        f[j] = ready[k] || params[k].grad().defined() ? 1.0f : 0.0f;
      }
      b.flat.narrow(0, b.numel, static_cast<int64_t>(b.members.size())).copy_(flags).mul_(scale);
    }
    b.wire = wireType == c10::ScalarType::Undefined ? b.flat : b.flat.to(wireType);
    b.ticket = Issue(*g, "allReduce", ShapeOf(b.wire), "DDP gradient bucket " + std::to_string(bi) + " of " + std::to_string(buckets.size()));
    std::vector<at::Tensor> v{b.wire};
    b.work = g->pg->allreduce(v);
    b.launched = true;
  }

  void Finalize() {
    std::lock_guard<std::recursive_mutex> l(mu);
    struct Guard {
      Reducer* r;
      ~Guard() { r->Reset(); }
    } guard{this};
    std::vector<std::string> missing;
    for (size_t bi = next; bi < buckets.size(); bi++)
      for (size_t k : buckets[bi].members)
        if (!ready[k]) missing.push_back(names[k]);
    // Launch what is left even when it is an error, so the other ranks do not hang.
    while (next < buckets.size()) Launch(next++);
    auto t0 = std::chrono::steady_clock::now();
    for (auto& b : buckets) WaitFor(*g, b.work, b.ticket);
    waitMs += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    at::NoGradGuard ng;
    for (auto& b : buckets) {
      if (!b.wire.is_same(b.flat)) b.flat.copy_(b.wire);
      const float* used = nullptr;
      at::Tensor usedT;
      if (findUnused) {
        usedT = b.flat.narrow(0, b.numel, static_cast<int64_t>(b.members.size())).to(c10::ScalarType::Float).contiguous();
        used = usedT.data_ptr<float>();
      }
      for (size_t j = 0; j < b.members.size(); j++) {
        at::Tensor& grad = params[b.members[j]].mutable_grad();
        if (grad.defined()) {
          if (b.copyBack[j]) grad.copy_(b.views[j]);
        } else if (!findUnused || used[j] > 0) {
          // unused here, used elsewhere: take the average
          if (asView)
            grad = b.views[j];
          else
            grad = b.views[j].clone();
        }
      }
    }
    reductions++;
    if (!missing.empty() && !findUnused) {
      std::string list;
      for (size_t i = 0; i < missing.size() && i < 20; i++) list += (i ? ", " : "") + missing[i];
      if (missing.size() > 20) list += ", ... (" + std::to_string(missing.size()) + " in all)";
      throw std::runtime_error("DDP: parameters [" + list + "] received no gradient in this backward on rank " + std::to_string(g->rank) +
                               " (they took no part in computing the loss). Their buckets were reduced with zeros so the ranks stay in step, "
                               "but this usually means part of the model is skipped. If that is intended, wrap with findUnusedParameters: true "
                               "(DistributedDataParallelKwargs({ findUnusedParameters: true })); or freeze them (requiresGrad false) before prepare.");
    }
  }

  // Broadcast tensors from rank `src` in place, flattened per dtype in chunks of ~256 MB.
  void BroadcastFrom(int src, const std::vector<at::Tensor>& ts, const std::string& note) {
    at::NoGradGuard ng;
    constexpr int64_t kChunk = 256ll << 20;
    std::vector<char> done(ts.size(), 0);
    for (size_t s = 0; s < ts.size(); s++) {
      if (done[s]) continue;
      c10::ScalarType type = ts[s].scalar_type();
      std::vector<size_t> group;
      int64_t bytes = 0;
      for (size_t k = s; k < ts.size(); k++) {
        if (done[k] || ts[k].scalar_type() != type) continue;
        group.push_back(k);
        done[k] = 1;
        bytes += ts[k].numel() * static_cast<int64_t>(ts[k].element_size());
        if (bytes >= kChunk) break;
      }
      std::vector<at::Tensor> parts;
      for (size_t k : group) parts.push_back(ts[k].reshape({-1}));
      at::Tensor flat = at::cat(parts);
      Ticket t = Issue(*g, "broadcast", ShapeOf(flat), note);
      std::vector<at::Tensor> v{flat};
      c10d::BroadcastOptions o;
      o.rootRank = src;
      WaitFor(*g, g->pg->broadcast(v, o), t);
      if (g->rank == src) continue;
      int64_t off = 0;
      for (size_t k : group) {
        at::Tensor dst = ts[k];
        dst.copy_(flat.narrow(0, off, dst.numel()).view(dst.sizes()));
        off += dst.numel();
      }
    }
  }

  // ---- join ----

  // Wait for the status all-reduce of the last forward (if any) and return it: one slot per
  // rank, 0 joined, 1 active, 2 active and synchronising. Sets the divisor of the buckets.
  at::Tensor ResolveJoinStatus() {
    if (!joinWork) return at::Tensor();
    auto work = std::move(joinWork);
    joinWork.reset();
    WaitFor(*g, work, joinTicket);
    at::Tensor st = joinStatus;
    joinStatus = at::Tensor();
    int64_t active = 0;
    const int32_t* v = st.data_ptr<int32_t>();
    for (int r = 0; r < g->size; r++) active += v[r] > 0;
    divisor = divideByInitial || active == 0 ? g->size : active;
    return st;
  }

  static int LowestActive(const at::Tensor& st) {
    const int32_t* v = st.data_ptr<int32_t>();
    for (int64_t r = 0; r < st.numel(); r++)
      if (v[r] > 0) return static_cast<int>(r);
    return 0;
  }

  at::Tensor IssueStatus(int32_t mine, const std::string& note) {
    at::Tensor st = at::zeros({g->size}, at::TensorOptions().dtype(at::kInt));
    st.data_ptr<int32_t>()[g->rank] = mine;
    joinTicket = Issue(*g, "allReduce", ShapeOf(st), note);
    std::vector<at::Tensor> v{st};
    joinWork = g->pg->allreduce(v);
    joinStatus = st;
    return st;
  }

  // An active rank's forward while join is on: tell the joined ranks whether a synchronised
  // backward follows; broadcast buffers from the lowest active rank when it does.
  void JoinNotify(bool sync, bool syncBuffers) {
    ResolveJoinStatus();  // a forward without backward (eval, no_sync) left its status behind
    IssueStatus(sync ? 2 : 1, "join: which ranks are still active");
    if (sync && syncBuffers && !buffers.empty()) {
      at::Tensor st = ResolveJoinStatus();
      BroadcastFrom(LowestActive(st), buffers, "DDP: buffers of the lowest active rank before forward (join)");
    }
  }

  // One iteration of a rank that ran out of inputs. Returns false once every rank joined.
  bool JoinShadow(bool syncBuffers) {
    ResolveJoinStatus();
    IssueStatus(0, "join: this rank ran out of inputs");
    at::Tensor st = ResolveJoinStatus();
    const int32_t* v = st.data_ptr<int32_t>();
    bool anyActive = false, anySync = false;
    for (int r = 0; r < g->size; r++) {
      anyActive = anyActive || v[r] > 0;
      anySync = anySync || v[r] > 1;
    }
    if (!anyActive) return false;
    if (!anySync) return true;
    if (syncBuffers && !buffers.empty()) BroadcastFrom(LowestActive(st), buffers, "DDP: buffers of the lowest active rank before forward (join)");
    // The active ranks' bucket all-reduces, matched with zeros (gradients and used-flags).
    at::NoGradGuard ng;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    std::vector<Ticket> tickets;
    std::vector<at::Tensor> keep;
    for (size_t bi = 0; bi < buckets.size(); bi++) {
      const Bucket& b = buckets[bi];
      int64_t n = b.numel + (findUnused ? static_cast<int64_t>(b.members.size()) : 0);
      at::TensorOptions o = params[b.members[0]].options();
      if (wireType != c10::ScalarType::Undefined) o = o.dtype(wireType);
      at::Tensor z = at::zeros({n}, o);
      tickets.push_back(Issue(*g, "allReduce", ShapeOf(z), "DDP gradient bucket " + std::to_string(bi) + " of " + std::to_string(buckets.size()) + ", zeros of a joined rank"));
      std::vector<at::Tensor> v{z};
      works.push_back(g->pg->allreduce(v));
      keep.push_back(z);
    }
    for (size_t i = 0; i < works.size(); i++) WaitFor(*g, works[i], tickets[i]);
    shadowed++;
    return true;
  }

  // After every rank joined: copy the model of the last rank to join (the highest such rank)
  // to all, since joined ranks stopped updating theirs.
  void JoinFinal(bool lastJoiner) {
    ResolveJoinStatus();
    at::Tensor who = at::full({1}, lastJoiner ? g->rank : -1, at::TensorOptions().dtype(at::kInt));
    Ticket t = Issue(*g, "allReduce", "[1]", "join: which rank joined last");
    std::vector<at::Tensor> v{who};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::MAX;
    WaitFor(*g, g->pg->allreduce(v, o), t);
    int src = who.data_ptr<int32_t>()[0];
    if (src < 0) src = 0;
    std::vector<at::Tensor> all(params);
    all.insert(all.end(), buffers.begin(), buffers.end());
    BroadcastFrom(src, all, "DDP: the model of rank " + std::to_string(src) + ", which joined last");
  }

  // Rank 0's model signature (count, elements, shape hash) checked on every rank first, so a
  // different model on some rank is an error instead of a mismatched broadcast.
  void CheckSameModel() {
    int64_t n = 0, h = 0;
    for (size_t k = 0; k < params.size(); k++) {
      n += params[k].numel();
      for (int64_t d = 0; d < params[k].dim(); d++) h = (h * 1000003 + params[k].size(d) + 7 * static_cast<int64_t>(k)) % 2147483647;
      h = (h * 31 + static_cast<int64_t>(params[k].scalar_type())) % 2147483647;
    }
    at::Tensor mine = at::empty({3}, at::TensorOptions().dtype(at::kLong));
    mine.data_ptr<int64_t>()[0] = static_cast<int64_t>(params.size());
    mine.data_ptr<int64_t>()[1] = n;
    mine.data_ptr<int64_t>()[2] = h;
    at::Tensor theirs = mine.clone();
    Ticket t = Issue(*g, "broadcast", "[3]", "DDP model check");
    std::vector<at::Tensor> v{theirs};
    c10d::BroadcastOptions o;
    o.rootRank = 0;
    WaitFor(*g, g->pg->broadcast(v, o), t);
    auto a = mine.data_ptr<int64_t>();
    auto b = theirs.data_ptr<int64_t>();
    if (a[0] != b[0] || a[1] != b[1] || a[2] != b[2])
      throw std::runtime_error("DDP: the model on rank " + std::to_string(g->rank) + " has " + std::to_string(a[0]) + " trainable parameters (" +
                               std::to_string(a[1]) + " elements) but rank 0's has " + std::to_string(b[0]) + " (" + std::to_string(b[1]) +
                               " elements)" + (a[0] == b[0] && a[1] == b[1] ? " with different shapes or dtypes" : "") +
                               ": every rank must build the same model before prepare.");
  }
};

struct ReadyHook : torch::autograd::FunctionPostHook {
  ReadyHook(std::weak_ptr<Reducer> r, size_t i) : reducer(std::move(r)), index(i) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs, const torch::autograd::variable_list& /*inputs*/) override {
    if (auto r = reducer.lock()) r->MarkReady(index);
    return outputs;
  }
  std::weak_ptr<Reducer> reducer;
  size_t index;
};

void Reducer::InstallHooks() {
  for (size_t k = 0; k < params.size(); k++) {
    TORCH_CHECK(params[k].requires_grad() && params[k].is_leaf(), "DDP: parameter '", names[k], "' is not a leaf tensor that requires grad");
    auto acc = torch::autograd::impl::grad_accumulator(params[k]);
    TORCH_CHECK(acc, "DDP: parameter '", names[k], "' has no gradient accumulator");
    acc->add_post_hook(std::make_unique<ReadyHook>(weak_from_this(), k));
    accs.push_back(std::move(acc));
  }
}

}  // namespace

// ---- JS object ------------------------------------------------------------------------

class ReducerWrap : public Napi::ObjectWrap<ReducerWrap> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeReducer",
                       {InstanceMethod<&ReducerWrap::BroadcastState>("broadcastState"),
                        InstanceMethod<&ReducerWrap::Prepare>("prepareForBackward"),
                        InstanceMethod<&ReducerWrap::SyncBuffers>("syncBuffers"), InstanceMethod<&ReducerWrap::Buckets>("buckets"),
                        InstanceMethod<&ReducerWrap::Stats>("stats"), InstanceMethod<&ReducerWrap::SetJoin>("setJoin"),
                        InstanceMethod<&ReducerWrap::JoinNotify>("joinNotify"), InstanceMethod<&ReducerWrap::JoinShadow>("joinShadow"),
                        InstanceMethod<&ReducerWrap::JoinFinal>("joinFinal")});
  }
  explicit ReducerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ReducerWrap>(info) {}
  std::shared_ptr<Reducer> r;

 private:
  template <typename F>
  Napi::Value Guard(Napi::Env env, F f) {
    try {
      return f();
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      Rethrow(env);
    }
  }
  // broadcastState(): check the model matches rank 0's, then copy rank 0's parameters and buffers.
  Napi::Value BroadcastState(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() {
      std::lock_guard<std::recursive_mutex> l(r->mu);
      r->CheckSameModel();
      std::vector<at::Tensor> all(r->params);
      all.insert(all.end(), r->buffers.begin(), r->buffers.end());
      r->BroadcastFrom(0, all, "DDP: rank 0's parameters and buffers");
      return info.Env().Undefined();
    });
  }
  Napi::Value Prepare(const Napi::CallbackInfo& info) {
    r->PrepareForBackward();
    return info.Env().Undefined();
  }
  Napi::Value SyncBuffers(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() {
      std::lock_guard<std::recursive_mutex> l(r->mu);
      if (!r->buffers.empty()) r->BroadcastFrom(0, r->buffers, "DDP: rank 0's buffers before forward");
      return info.Env().Undefined();
    });
  }
  // buckets() -> parameter indices per bucket, in launch order
  Napi::Value Buckets(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env, r->buckets.size());
    for (size_t b = 0; b < r->buckets.size(); b++) {
      Napi::Array m = Napi::Array::New(env, r->buckets[b].members.size());
      for (size_t j = 0; j < r->buckets[b].members.size(); j++) m.Set(static_cast<uint32_t>(j), Napi::Number::New(env, static_cast<double>(r->buckets[b].members[j])));
      out.Set(static_cast<uint32_t>(b), m);
    }
    return out;
  }
  // setJoin(enabled, divideByInitialWorldSize): entering or leaving a join.
  Napi::Value SetJoin(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() {
      std::lock_guard<std::recursive_mutex> l(r->mu);
      r->ResolveJoinStatus();
      r->divideByInitial = info[1].ToBoolean().Value();
      r->divisor = 0;
      return info.Env().Undefined();
    });
  }
  // joinNotify(sync, syncBuffers): an active rank's forward under join.
  Napi::Value JoinNotify(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() {
      std::lock_guard<std::recursive_mutex> l(r->mu);
      r->JoinNotify(info[0].ToBoolean().Value(), info[1].ToBoolean().Value());
      return info.Env().Undefined();
    });
  }
  // joinShadow(syncBuffers) -> Promise<boolean>: false once every rank joined. Waits on a worker thread.
  Napi::Value JoinShadow(const Napi::CallbackInfo& info) {
    auto red = r;
    bool syncBuffers = info[0].ToBoolean().Value();
    auto more = std::make_shared<bool>(false);
    return RunAsync(
        info.Env(),
        [red, syncBuffers, more]() {
          std::lock_guard<std::recursive_mutex> l(red->mu);
          *more = red->JoinShadow(syncBuffers);
        },
        [more](Napi::Env env) -> Napi::Value { return Napi::Boolean::New(env, *more); });
  }
  // joinFinal(lastJoiner): broadcast the model of the last rank to join.
  Napi::Value JoinFinal(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() {
      std::lock_guard<std::recursive_mutex> l(r->mu);
      r->JoinFinal(info[0].ToBoolean().Value());
      return info.Env().Undefined();
    });
  }
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("reductions", Napi::Number::New(env, static_cast<double>(r->reductions)));
    o.Set("bucketsLaunchedDuringBackward", Napi::Number::New(env, static_cast<double>(r->bucketsLaunchedEarly)));
    o.Set("commWaitMs", Napi::Number::New(env, r->waitMs));
    o.Set("joinShadowedBackwards", Napi::Number::New(env, static_cast<double>(r->shadowed)));
    return o;
  }
};
Napi::FunctionReference* ReducerWrap::ctor = nullptr;

static std::vector<at::Tensor> Tensors(const Napi::Value& v, const char* what) {
  Napi::Array a = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(TensorWrap::Get(a.Get(i), what));
  return out;
}

// ddpCreate(group, params[], names[], buffers[], capBytes, firstCapBytes, findUnused, wireDtype|null, gradientAsBucketView) -> reducer
static Napi::Value DdpCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto r = std::make_shared<Reducer>();
  r->g = GroupStateOf(env, info[0]);
  r->params = Tensors(info[1], "DDP parameters");
  Napi::Array names = info[2].As<Napi::Array>();
  for (uint32_t i = 0; i < names.Length(); i++) r->names.push_back(names.Get(i).ToString().Utf8Value());
  r->buffers = Tensors(info[3], "DDP buffers");
  int64_t cap = info[4].As<Napi::Number>().Int64Value();
  int64_t first = info[5].As<Napi::Number>().Int64Value();
  r->findUnused = info[6].ToBoolean().Value();
  if (info[7].IsString()) r->wireType = ParseDType(env, info[7]);
  if (info.Length() > 8) r->asView = info[8].ToBoolean().Value();
  if (r->params.size() != r->names.size()) throw Napi::TypeError::New(env, "ddpCreate: one name per parameter");
  r->Build(cap, first);
  r->InstallHooks();
  Napi::Object o = ReducerWrap::ctor->New({});
  ReducerWrap::Unwrap(o)->r = std::move(r);
  return o;
}

#if ACC_C10D_REDUCER
// For bench/ddp.ts only (MODE=c10d): libtorch's own c10d::Reducer (what Python's
// DistributedDataParallel runs) over our gloo group, to measure it against Reducer above.
// ddpCreateC10d(group, params[], capBytes, firstCapBytes, gradientAsBucketView) -> { prepareForBackward() }
// No hang diagnosis, join, buffers or unused-parameter detection: not a user path.
static Napi::Value DdpCreateC10d(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto g = GroupStateOf(env, info[0]);
  std::vector<at::Tensor> params = Tensors(info[1], "DDP parameters");
  size_t cap = static_cast<size_t>(info[2].As<Napi::Number>().Int64Value());
  size_t first = static_cast<size_t>(info[3].As<Napi::Number>().Int64Value());
  bool asView = info[4].ToBoolean().Value();
  std::vector<bool> sparse(params.size(), false);
  auto assigned = c10d::compute_bucket_assignment_by_size(params, {first, cap}, sparse);
  auto indices = std::get<0>(assigned);
  auto limits = std::get<1>(assigned);
  // As torch.nn.parallel.DistributedDataParallel: the last parameters' bucket first.
  std::reverse(indices.begin(), indices.end());
  std::reverse(limits.begin(), limits.end());
  std::unordered_map<size_t, std::string> names;
  auto red = std::make_shared<c10d::Reducer>(params, indices, limits, c10::intrusive_ptr<c10d::ProcessGroup>(g->pg), sparse, static_cast<int64_t>(cap), false, asView, names,
                                             static_cast<int64_t>(first));
  Napi::Object o = Napi::Object::New(env);
  o.Set("prepareForBackward", Napi::Function::New(env, [red](const Napi::CallbackInfo& ci) -> Napi::Value {
          red->prepare_for_forward();
          red->prepare_for_backward({});
          return ci.Env().Undefined();
        }));
  o.Set("buckets", Napi::Number::New(env, static_cast<double>(indices.size())));
  return o;
}
#endif

void InitDDP(Napi::Env env, Napi::Object exports) {
#if ACC_C10D_REDUCER
  ACC_FN(exports, "ddpCreateC10d", DdpCreateC10d);
#endif
  Napi::Function c = ReducerWrap::Define(env);
  ReducerWrap::ctor = new Napi::FunctionReference(Napi::Persistent(c));
  ACC_FN(exports, "ddpCreate", DdpCreate);
}

}  // namespace acc
