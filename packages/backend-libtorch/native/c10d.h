// Shared between c10d.cc (process groups) and ddp.cc (data parallelism): a group's
// state and the hang diagnosis every collective goes through.
//
// Hang diagnosis: each collective gets the group's next sequence number when it is
// issued. Every rank keeps its position (op, #seq, shape, issued/waiting/completed)
// and a background thread copies it to the TCPStore at most every 100 ms, so the hot
// path costs a mutex and a string, never a network round trip. When a wait fails
// (timeout or a dead peer), the failing rank reads every rank's position from the store
// and the error says which collective each rank was at.
#pragma once

#include "common.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace acc {

struct DiagHub;

// This rank's position in one group's sequence of collectives.
struct GroupDiag {
  std::mutex mu;
  std::string keyPrefix;  // "accelerate_diag/<group>/"; this rank's key appends its rank
  int rank = 0;
  int64_t seq = 0;        // collectives issued (point-to-point ops do not count)
  int64_t issued = 0;     // every op issued, to match waits with the latest position
  int64_t posId = 0;      // `issued` value of the op `pos` describes
  int64_t posSeq = 0;
  std::shared_ptr<const std::string> pos;  // "allReduce #3 [4]"
  const char* state = "issued";
  int64_t sinceMs = 0;    // wall clock (ms since the epoch) when `state` was entered
  bool dirty = false;
};

struct GroupState {
  c10::intrusive_ptr<c10d::Store> root;   // the TCPStore every subgroup prefixes
  c10::intrusive_ptr<c10d::Store> store;  // this group's (prefixed) store
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  int rank = 0, size = 1, threads = 2;
  std::chrono::milliseconds timeout{1800000};
  std::string name = "default";
  std::shared_ptr<DiagHub> hub;  // null when diagnosis is off (ACCELERATE_C10D_DIAG=0)
  std::shared_ptr<GroupDiag> diag = std::make_shared<GroupDiag>();
  std::mutex failMu;
  std::string failure;  // set when another rank reported a failed collective: later calls throw at once
};

// One issued op, for its wait.
struct Ticket {
  int64_t id = 0;   // GroupDiag::issued at issue
  int64_t seq = 0;  // the collective's sequence number (p2p: collectives before it)
  std::shared_ptr<const std::string> what;  // "allReduce #3 [4]" (shared: tickets are copied around)
  bool p2p = false;  // send/recv: their Work cannot be waited on in slices
};

// "[2, 3]"
std::string ShapeOf(const at::Tensor& t);

// Record that this rank issues `op` on `g`. Collectives take the next sequence number;
// point-to-point ops (`p2p`) keep it, since ranks legitimately issue different numbers.
Ticket Issue(GroupState& g, const std::string& op, const std::string& shape, const std::string& note = "", bool p2p = false);

// Block until `work` finished, at most the group's timeout. On failure throws
// std::runtime_error naming the op and every rank's position. Collectives are waited on
// in slices of 500 ms (sleeping on the work's completion callback, never a timed
// Work::wait, whose expiry races with completion), so a size mismatch that stopped gloo's transport (see c10d.cc), or
// that another rank reported through the store, fails the wait at once instead of after
// the timeout.
void WaitFor(GroupState& g, const c10::intrusive_ptr<c10d::Work>& work, const Ticket& t);

// Run `work` on a libuv worker thread; the promise resolves with `done(env)` (undefined
// when null) or rejects with the C++ exception's message.
Napi::Promise RunAsync(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done = nullptr);

// The state behind a JS NativeGroup object (throws a TypeError otherwise).
std::shared_ptr<GroupState> GroupStateOf(Napi::Env env, const Napi::Value& v);

// ddp.cc's exports (registered from InitC10d).
void InitDDP(Napi::Env env, Napi::Object exports);

}  // namespace acc
