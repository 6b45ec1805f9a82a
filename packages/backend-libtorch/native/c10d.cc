// c10d over gloo: a TCPStore rendezvous and a ProcessGroupGloo. Blocking steps
// (creating the group, Work::wait, store gets) run on libuv worker threads and
// resolve promises; collectives are issued on the JS thread so every rank issues
// them in program order. Every collective goes through the hang diagnosis of c10d.h.
//
// Only ProcessGroupGloo's out-of-line API is used: no gloo class is constructed here
// (the gloo headers may differ from the ones libtorch was built with; see the notes).
#include "c10d.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/amax.h>
#include <ATen/ops/amin.h>
#include <ATen/ops/prod.h>
#include <ATen/ops/sum.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <sstream>
#include <thread>
#include <type_traits>
#include <vector>

namespace acc {

// ---- hang diagnosis -------------------------------------------------------------------

// Set at process exit: the reporter thread must not touch libtorch while statics die.
static std::atomic<bool> g_exiting{false};

// Copies positions to the store from a background thread. It has its own TCPStore
// client: 1.13's TCPStore is not safe to share between threads.
struct DiagHub {
  c10::intrusive_ptr<c10d::Store> client;
  std::mutex storeMu;  // taken before a GroupDiag's mutex, never after
  std::mutex mu;
  std::vector<std::weak_ptr<GroupDiag>> groups;
  int globalRank = 0;
  bool broken = false;  // the store stopped answering: stop writing

  void Add(const std::shared_ptr<GroupDiag>& d) {
    std::lock_guard<std::mutex> l(mu);
    groups.push_back(d);
  }

  // Write `d`'s position if it changed since the last write.
  void Flush(GroupDiag& d) {
    std::lock_guard<std::mutex> s(storeMu);
    if (broken) return;
    std::string key, value;
    {
      std::lock_guard<std::mutex> l(d.mu);
      if (!d.dirty) return;
      d.dirty = false;
      key = d.keyPrefix + std::to_string(d.rank);
      value = std::to_string(d.posSeq) + "|" + d.state + "|" + std::to_string(d.sinceMs) + "|" + (d.pos ? *d.pos : std::string());
    }
    try {
      client->set(key, std::vector<uint8_t>(value.begin(), value.end()));
    } catch (...) {
      broken = true;
    }
  }

  void FlushAll() {
    std::vector<std::shared_ptr<GroupDiag>> live;
    {
      std::lock_guard<std::mutex> l(mu);
      std::vector<std::weak_ptr<GroupDiag>> keep;
      for (auto& w : groups)
        if (auto d = w.lock()) {
          keep.push_back(w);
          live.push_back(d);
        }
      groups.swap(keep);
    }
    for (auto& d : live) Flush(*d);
  }

  // Reporter thread: holds only a weak reference, so it ends once no group uses the hub.
  static void Start(const std::shared_ptr<DiagHub>& hub, std::chrono::milliseconds interval) {
    static std::once_flag once;
    std::call_once(once, []() { std::atexit([]() { g_exiting = true; }); });
    std::weak_ptr<DiagHub> weak = hub;
    std::thread([weak, interval]() {
      for (;;) {
        std::this_thread::sleep_for(interval);
        if (g_exiting) return;
        auto h = weak.lock();
        if (!h) return;
        h->FlushAll();
      }
    }).detach();
  }
};

// ---- gloo transport failures ------------------------------------------------------
//
// gloo checks the size of every incoming message on its transport thread (one per gloo
// device) and throws gloo::EnforceNotMet there when a peer sends more bytes than the
// receiving tensor holds, i.e. when ranks call a collective with different sizes. Nothing
// catches it on that thread, so the process used to abort. We install a terminate handler
// that recognises this case on a thread other than the JS thread: it records the message,
// keeps every process group alive forever (their destructors would wait for the stopped
// thread) and parks the thread. Waits notice the record within a slice (500 ms) and throw
// a JS error naming the op, its sequence number and where every rank is; the group is
// unusable afterwards (every later call throws at once).
//
// Why not check sizes before each collective: that needs the other ranks' sizes, i.e. an
// extra round trip (a collective or a store read) per call, which would cost a hot path such
// as DDP's bucket all-reduces about as much as the small collectives themselves. The
// handler costs nothing until a mismatch happens. Mismatches that gloo does not detect
// (a peer sends fewer bytes, e.g. a broadcast into a larger tensor) are caught for
// broadcast and allGather by their shape headers (below); debug mode
// (ACCELERATE_DEBUG_MODE) checks every collective in core.

static std::mutex g_failMu;
static std::string g_transportError;           // gloo's message; empty while none happened
static std::atomic<bool> g_transportFailed{false};
static std::mutex g_registryMu;
static std::vector<std::weak_ptr<GroupState>> g_groups;  // every group of this process
static std::thread::id g_jsThread;
static std::terminate_handler g_previousTerminate = nullptr;

static void RegisterGroup(const std::shared_ptr<GroupState>& st) {
  std::lock_guard<std::mutex> l(g_registryMu);
  g_groups.erase(std::remove_if(g_groups.begin(), g_groups.end(), [](const std::weak_ptr<GroupState>& w) { return w.expired(); }), g_groups.end());
  g_groups.push_back(st);
}

static std::string TransportError() {
  if (!g_transportFailed.load()) return std::string();
  std::lock_guard<std::mutex> l(g_failMu);
  return g_transportError;
}

[[noreturn]] static void OnTerminate() {
  std::string what;
  if (std::exception_ptr ep = std::current_exception()) {
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
  }
  bool gloo = what.find("enforce fail") != std::string::npos && what.find("gloo/") != std::string::npos;
  if (!gloo || std::this_thread::get_id() == g_jsThread) {
    if (g_previousTerminate) g_previousTerminate();
    std::abort();
  }
  {
    std::lock_guard<std::mutex> l(g_failMu);
    if (g_transportError.empty()) g_transportError = what;
  }
  {
    // Never destroyed: ~ProcessGroupGloo would join this parked thread.
    static auto* leaked = new std::vector<c10::intrusive_ptr<c10d::ProcessGroupGloo>>();
    std::lock_guard<std::mutex> l(g_registryMu);
    for (auto& w : g_groups)
      if (auto st = w.lock())
        if (st->pg) leaked->push_back(st->pg);
  }
  g_transportFailed = true;
  for (;;) std::this_thread::sleep_for(std::chrono::hours(24));
}

// "a peer sent 8 bytes where this rank's tensor holds 4" from gloo's "… <= op.nbytes. 8 vs 4".
static std::string ExplainTransportError(const std::string& what) {
  std::string out = "gloo rejected a message from a peer";
  size_t vs = what.find(" vs ");
  size_t dot = what.rfind(". ", vs);
  if (vs != std::string::npos && dot != std::string::npos && what.find("nbytes") != std::string::npos) {
    std::string got = what.substr(dot + 2, vs - dot - 2);
    std::string room = what.substr(vs + 4);
    while (!room.empty() && (room.back() == '\n' || room.back() == ' ')) room.pop_back();
    out = "a peer sent " + got + " bytes where this rank's buffer holds " + room;
  }
  return out + ": the ranks called this collective with different sizes (gloo: " + what +
         "). The process group cannot be used any more; every rank must pass tensors of the same shape and dtype";
}

static int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string ShapeOf(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); i++) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

Ticket Issue(GroupState& g, const std::string& op, const std::string& shape, const std::string& note, bool p2p) {
  if (g_transportFailed.load())
    throw std::runtime_error(op + " " + shape + " on rank " + std::to_string(g.rank) + ": the process group is unusable since an earlier collective failed: " +
                             ExplainTransportError(TransportError()) + ".");
  {
    std::lock_guard<std::mutex> l(g.failMu);
    if (!g.failure.empty())
      throw std::runtime_error(op + " " + shape + " on rank " + std::to_string(g.rank) + ": the process group is unusable since an earlier collective failed: " + g.failure + ".");
  }
  GroupDiag& d = *g.diag;
  std::lock_guard<std::mutex> l(d.mu);
  if (!p2p) d.seq++;
  Ticket t;
  t.id = ++d.issued;
  t.seq = d.seq;
  t.p2p = p2p;
  std::string what;
  what.reserve(op.size() + shape.size() + note.size() + 32);
  what += op;
  if (p2p) {
    what += " ";
    what += shape;
    what += " (after collective #" + std::to_string(d.seq) + ")";
  } else {
    what += " #" + std::to_string(d.seq) + " ";
    what += shape;
  }
  if (!note.empty()) what += " (" + note + ")";
  t.what = std::make_shared<const std::string>(std::move(what));
  if (g.hub) {
    d.posId = t.id;
    d.posSeq = t.seq;
    d.pos = t.what;
    d.state = "issued";
    d.sinceMs = NowMs();
    d.dirty = true;
  }
  return t;
}

static void MarkState(GroupState& g, const Ticket& t, const char* state) {
  if (!g.hub) return;
  GroupDiag& d = *g.diag;
  std::lock_guard<std::mutex> l(d.mu);
  if (d.posId != t.id) return;  // a later op is this rank's position now
  d.state = state;
  d.sinceMs = NowMs();
  d.dirty = true;
}

static std::string RankList(const std::vector<int>& ranks) {
  std::string s = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); i++) s += (i ? "," : "") + std::to_string(ranks[i]);
  return s;
}

// The failure message: what failed here, and where every rank of the group is.
static std::string Diagnose(GroupState& g, const Ticket& t, const std::string& cause, bool timedOut) {
  std::ostringstream m;
  m << *t.what << " on rank " << g.rank << " of group '" << g.name << "' ";
  if (timedOut)
    m << "did not complete within " << g.timeout.count() << " ms (the timeout: InitProcessGroupKwargs timeoutSeconds, or accelerate launch --timeout / ACCELERATE_PROCESS_GROUP_TIMEOUT; " << cause << ").";
  else
    m << "failed (" << cause << ").";
  if (!g.hub) {
    m << " Rank positions are unavailable: hang diagnosis is off (ACCELERATE_C10D_DIAG=0).";
    return m.str();
  }
  g.hub->Flush(*g.diag);  // this rank's "waiting" may not have been written yet

  struct Rec {
    bool known = false;
    int64_t seq = 0;
    int64_t sinceMs = 0;
    std::string state, pos;
  };
  std::vector<Rec> recs(g.size);
  std::string storeError;
  {
    std::lock_guard<std::mutex> s(g.hub->storeMu);
    try {
      for (int r = 0; r < g.size; r++) {
        std::string key = g.diag->keyPrefix + std::to_string(r);
        if (!g.hub->client->check({key})) continue;
        auto raw = g.hub->client->get(key);
        std::string v(raw.begin(), raw.end());
        // "<seq>|<state>|<since ms>|<position>"
        size_t a = v.find('|'), b = a == std::string::npos ? a : v.find('|', a + 1), c = b == std::string::npos ? b : v.find('|', b + 1);
        if (c == std::string::npos) continue;
        recs[r].known = true;
        recs[r].seq = std::stoll(v.substr(0, a));
        recs[r].state = v.substr(a + 1, b - a - 1);
        recs[r].sinceMs = std::stoll(v.substr(b + 1, c - b - 1));
        recs[r].pos = v.substr(c + 1);
      }
    } catch (const std::exception& e) {
      storeError = e.what();
    }
  }
  if (!storeError.empty()) {
    m << " Rank positions are unavailable: the store did not answer (" << storeError << "); rank 0 hosts it and may have exited.";
    return m.str();
  }

  // Ranks grouped by position (sequence number, then op and shape), lowest first; ranks at
  // the same collective share a group whatever their state (completed, waiting, ...).
  std::map<std::pair<int64_t, std::string>, std::vector<int>> byPos;
  std::vector<int> unknown;
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  for (int r = 0; r < g.size; r++) {
    if (!recs[r].known) {
      unknown.push_back(r);
      continue;
    }
    byPos[{recs[r].seq, recs[r].pos}].push_back(r);
    lo = std::min(lo, recs[r].seq);
    hi = std::max(hi, recs[r].seq);
  }
  auto states = [&](const std::vector<int>& ranks) {
    bool same = true;
    for (int r : ranks) same = same && recs[r].state == recs[ranks[0]].state;
    if (same) return "(" + recs[ranks[0]].state + ")";
    std::string s = "(";
    for (size_t i = 0; i < ranks.size(); i++) s += (i ? ", " : "") + std::string("rank ") + std::to_string(ranks[i]) + " " + recs[ranks[i]].state;
    return s + ")";
  };
  m << " Where each rank is: ";
  bool first = true;
  for (auto& [k, ranks] : byPos) {
    m << (first ? "" : "; ") << RankList(ranks) << (first ? (ranks.size() == 1 ? " is at " : " are at ") : " at ") << k.second << " " << states(ranks);
    first = false;
  }
  if (!unknown.empty()) m << (first ? "" : "; ") << RankList(unknown) << " recorded no position (no collective issued on this group yet, or the store was unreachable)";
  m << ".";
  int64_t now = NowMs();
  auto ago = [&](int r) {
    std::ostringstream o;
    o.setf(std::ios::fixed);
    o.precision(1);
    o << std::max<int64_t>(0, now - recs[r].sinceMs) / 1000.0 << " s ago";
    return o.str();
  };
  if (!byPos.empty() && lo < hi) {
    // Behind is not wrong: a rank still computing, or one that skipped a collective, looks
    // the same from here. Say where each late rank is and since when.
    std::vector<int> ahead, behind;
    for (int r = 0; r < g.size; r++)
      if (recs[r].known) (recs[r].seq < hi ? behind : ahead).push_back(r);
    for (int r : behind)
      m << " Rank " << r << " is late: still at collective #" << recs[r].seq << " (" << recs[r].pos << ", " << recs[r].state << "), last seen "
        << ago(r) << ", while " << RankList(ahead) << (ahead.size() == 1 ? " is" : " are") << " at #" << hi << ".";
    if (timedOut)
      m << " Look on " << (behind.size() == 1 ? "that rank" : "those ranks")
        << " for a long computation, a collective skipped there (a condition that differs between ranks), or an exception; if it is only slow, raise the timeout.";
    else
      m << " A connection failed meanwhile: " << (behind.size() == 1 ? "it" : "they") << " most likely exited or crashed; see "
        << (behind.size() == 1 ? "its" : "their") << " output.";
  } else if (byPos.size() > 1) {
    m << " The ranks issued different collectives at #" << hi << ": every rank must issue the same collectives (op and shape) in the same order.";
  } else if (byPos.size() == 1 && unknown.empty()) {
    m << " Every rank issued this same collective, so the ranks agree on the order of collectives; "
      << (timedOut ? "the data did not arrive in time (a slow or broken connection between the machines, or a rank stopped inside the collective)."
                   : "a rank or its connection failed inside it.");
  }
  return m.str();
}

// The error another rank of `g` published for its failed collective, or "".
static std::string PeerError(GroupState& g) {
  if (!g.hub) return std::string();
  std::lock_guard<std::mutex> s(g.hub->storeMu);
  try {
    std::string key = g.diag->keyPrefix + "error";
    if (!g.hub->client->check({key})) return std::string();
    auto raw = g.hub->client->get(key);
    return std::string(raw.begin(), raw.end());
  } catch (...) {
    return std::string();
  }
}

static void PublishError(GroupState& g, const std::string& message) {
  if (!g.hub) return;
  std::lock_guard<std::mutex> s(g.hub->storeMu);
  try {
    std::string key = g.diag->keyPrefix + "error";
    std::string v = "rank " + std::to_string(g.rank) + ": " + message;
    g.hub->client->set(key, std::vector<uint8_t>(v.begin(), v.end()));
  } catch (...) {
  }
}

// Set from a collective's future callback: lets a wait sleep in slices without calling
// Work::wait(timeout). A timed Work::wait that expires throws "Operation timed out!" (and
// 1.13 builds a backtrace for it), so a work finishing during that throw looked timed out.
struct DoneSignal {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
};

static std::string CauseOf(std::exception_ptr ep) {
  try {
    std::rethrow_exception(ep);
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    std::string s = e.what();
    return s.empty() ? "unknown error" : s;
  } catch (...) {
    return "unknown error";
  }
}

// Between slices: a transport failure recorded by OnTerminate, or a failure another rank
// published, ends the wait at once. Throws; returns when nothing happened.
static void CheckBetweenSlices(GroupState& g, const Ticket& t, int slice) {
  std::string transport = TransportError();
  if (!transport.empty()) {
    std::string explained = ExplainTransportError(transport);
    PublishError(g, explained);
    // Let the other ranks' reporter threads write where they are before reading it.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    throw std::runtime_error(Diagnose(g, t, explained, false));
  }
  if (slice % 2 == 1) {
    std::string peer = PeerError(g);
    if (!peer.empty()) {
      {
        std::lock_guard<std::mutex> l(g.failMu);
        g.failure = peer;
      }
      throw std::runtime_error(Diagnose(g, t, "another rank's collective failed: " + peer, false));
    }
  }
}

void WaitFor(GroupState& g, const c10::intrusive_ptr<c10d::Work>& work, const Ticket& t) {
  MarkState(g, t, "waiting");
  auto deadline = std::chrono::steady_clock::now() + g.timeout;
  constexpr std::chrono::milliseconds kSlice{500};
  std::string cause;
  bool expired = false;

  std::shared_ptr<DoneSignal> done;
  if (!t.p2p) {
    // send/recv Work has no future, and a timed wait on it fails for good (gloo signals the
    // timeout to the whole context): those get one wait for the full timeout below.
    try {
      auto sig = std::make_shared<DoneSignal>();
      work->getFuture()->addCallback([sig](c10::ivalue::Future&) {
        {
          std::lock_guard<std::mutex> l(sig->mu);
          sig->done = true;
        }
        sig->cv.notify_all();
      });
      done = sig;
    } catch (...) {
      done.reset();
    }
  }

  if (done) {
    for (int slice = 0;; slice++) {
      bool finished;
      {
        std::unique_lock<std::mutex> l(done->mu);
        auto until = std::min(deadline, std::chrono::steady_clock::now() + kSlice);
        finished = done->cv.wait_until(l, until, [&] { return done->done; });
      }
      if (finished || work->isCompleted()) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        expired = true;
        break;
      }
      CheckBetweenSlices(g, t, slice);
    }
    if (!expired) {
      // Finished: an untimed wait returns at once, or rethrows the collective's own error.
      try {
        work->wait();
      } catch (...) {
        cause = CauseOf(std::current_exception());
      }
    }
  } else {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    try {
      work->wait(std::max(left, std::chrono::milliseconds(1)));
    } catch (...) {
      cause = CauseOf(std::current_exception());
    }
  }
  if (expired) {
    throw std::runtime_error(Diagnose(g, t, "the collective had not finished when the timeout ran out", true));
  }
  if (cause.empty()) {
    MarkState(g, t, "completed");
    return;
  }
  bool timedOut = cause.find("imed out") != std::string::npos || cause.find("imeout") != std::string::npos;
  throw std::runtime_error(Diagnose(g, t, cause, timedOut));
}

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

Napi::Promise RunAsync(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done) {
  return Run(env, std::move(work), std::move(done));
}

// ---- which address this rank's gloo device listens on ---------------------------------
//
// Every rank listens on one address and publishes it through the store; the others
// connect to it. torch.distributed picks it as: GLOO_SOCKET_IFNAME's interface(s); else
// the address this machine's hostname resolves to, if a socket can bind it; else
// loopback. We follow that, with two differences, both for addresses torch would pick
// that cannot work:
// - when the master address is loopback, every rank is on this machine: loopback;
// - on several machines, a hostname that resolves only to loopback (Debian's
//   127.0.1.1) or to an address this machine does not have is skipped for the local
//   address the kernel routes toward the master, which the others can reach if they
//   can reach the master.

namespace {

using Device = std::decay_t<decltype(c10d::ProcessGroupGloo::createDeviceForHostname(std::string()))>;

struct Resolved {
  std::string text;  // numeric address
  bool loopback = false;
  bool bindable = false;
};

bool IsLoopback(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) return (ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->sa_family == AF_INET6) return IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr);
  return false;
}

std::string NumericHost(const sockaddr* sa, socklen_t len) {
  char buf[NI_MAXHOST];
  if (getnameinfo(sa, len, buf, sizeof(buf), nullptr, 0, NI_NUMERICHOST) != 0) return std::string();
  return buf;
}

bool CanBind(const sockaddr* sa, socklen_t len) {
  int fd = socket(sa->sa_family, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_storage copy{};
  std::memcpy(&copy, sa, len);
  if (copy.ss_family == AF_INET) reinterpret_cast<sockaddr_in*>(&copy)->sin_port = 0;
  if (copy.ss_family == AF_INET6) reinterpret_cast<sockaddr_in6*>(&copy)->sin6_port = 0;
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&copy), len) == 0;
  close(fd);
  return ok;
}

std::vector<Resolved> Resolve(const std::string& host) {
  std::vector<Resolved> out;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0) return out;
  for (addrinfo* a = res; a; a = a->ai_next) {
    Resolved r;
    r.text = NumericHost(a->ai_addr, a->ai_addrlen);
    r.loopback = IsLoopback(a->ai_addr);
    r.bindable = CanBind(a->ai_addr, a->ai_addrlen);
    if (!r.text.empty()) out.push_back(r);
  }
  freeaddrinfo(res);
  return out;
}

// The local address the kernel would use to reach `host` (a UDP "connect" sends nothing).
std::string RouteSourceToward(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), "9", &hints, &res) != 0) return std::string();
  std::string out;
  for (addrinfo* a = res; a && out.empty(); a = a->ai_next) {
    int fd = socket(a->ai_family, SOCK_DGRAM, 0);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      sockaddr_storage local{};
      socklen_t len = sizeof(local);
      if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) out = NumericHost(reinterpret_cast<sockaddr*>(&local), len);
    }
    close(fd);
  }
  freeaddrinfo(res);
  return out;
}

std::vector<std::string> InterfaceNames() {
  std::vector<std::string> names;
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) != 0) return names;
  for (ifaddrs* i = ifs; i; i = i->ifa_next)
    if (i->ifa_name && std::find(names.begin(), names.end(), i->ifa_name) == names.end()) names.push_back(i->ifa_name);
  freeifaddrs(ifs);
  return names;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); i++) s += (i ? ", " : "") + v[i];
  return s;
}

}  // namespace

// True when `host` names this machine's loopback (every rank then runs here).
static bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  auto addrs = Resolve(host);
  if (addrs.empty()) return false;
  for (auto& a : addrs)
    if (!a.loopback) return false;
  return true;
}

// The gloo devices of this rank, and how they were chosen (for errors).
static std::vector<Device> ChooseDevices(const std::string& master, std::string* how) {
  std::vector<Device> devices;
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifname && *ifname) {
    auto have = InterfaceNames();
    std::string list = ifname;
    size_t start = 0;
    while (start <= list.size()) {
      size_t comma = list.find(',', start);
      std::string name = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      start = comma == std::string::npos ? list.size() + 1 : comma + 1;
      if (name.empty()) continue;
      if (std::find(have.begin(), have.end(), name) == have.end())
        throw std::runtime_error("GLOO_SOCKET_IFNAME=" + list + ": this machine has no network interface '" + name + "' (it has: " + Join(have) +
                                 "). Set GLOO_SOCKET_IFNAME to the interface that reaches the other machines (comma-separated for several), or unset it.");
      devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
    }
    *how = "interface " + list + " (GLOO_SOCKET_IFNAME)";
    return devices;
  }
  if (IsLoopbackHost(master)) {
    devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(master));
    *how = "loopback address " + master + " (the master address is loopback: every rank is on this machine)";
    return devices;
  }
  char name[256] = {0};
  std::string hostname = gethostname(name, sizeof(name) - 1) == 0 ? std::string(name) : std::string();
  std::string hostnameNote;
  if (!hostname.empty()) {
    auto addrs = Resolve(hostname);
    for (auto& a : addrs)
      if (a.bindable && !a.loopback) {
        devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
        *how = "this machine's hostname '" + hostname + "' (" + a.text + ")";
        return devices;
      }
    if (addrs.empty())
      hostnameNote = "hostname '" + hostname + "' does not resolve";
    else
      hostnameNote = "hostname '" + hostname + "' resolves to " + addrs[0].text + (addrs[0].loopback ? ", a loopback address" : ", not an address of this machine");
  }
  std::string route = RouteSourceToward(master);
  if (!route.empty()) {
    devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(route));
    *how = "address " + route + ", this machine's route toward the master address " + master + (hostnameNote.empty() ? "" : " (" + hostnameNote + ")");
    return devices;
  }
  devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  *how = "loopback 127.0.0.1: no route toward the master address " + master + " was found" + (hostnameNote.empty() ? "" : " and " + hostnameNote);
  return devices;
}

// ---- rank 0's store socket ------------------------------------------------------------

// torch >= 2.2 lets the store take over a socket we bound (masterListenFd); 1.13 always
// listens on every interface.
template <typename O, typename = void>
struct HasListenFd : std::false_type {};
template <typename O>
struct HasListenFd<O, std::void_t<decltype(std::declval<O&>().masterListenFd)>> : std::true_type {};

// When every rank is on this machine, rank 0's store listens on loopback only, so other
// machines on the network cannot reach it. Returns false when this libtorch cannot.
template <typename O>
static bool ListenOnLoopbackOnly(O& o, const std::string& host) {
  if constexpr (HasListenFd<O>::value) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    std::string port = std::to_string(o.port);
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || !res) return false;
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    bool ok = fd >= 0;
    if (ok) {
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      ok = bind(fd, res->ai_addr, res->ai_addrlen) == 0 && listen(fd, 2048) == 0;
    }
    freeaddrinfo(res);
    if (!ok) {
      std::string why = std::strerror(errno);
      if (fd >= 0) close(fd);
      throw std::runtime_error("rank 0 could not listen on " + host + ":" + port + " for the rendezvous store: " + why +
                               ". Pass a free --main_process_port (or 0 to pick one).");
    }
    o.masterListenFd = fd;
    return true;
  } else {
    (void)o;
    (void)host;
    return false;
  }
}

// ---- shape headers ----------------------------------------------------------------------
//
// gloo only checks that a message fits the receiving buffer, so a broadcast into a larger
// tensor, or an allGather of equal byte counts in different shapes, gives wrong data
// without an error. Broadcast and allGather therefore send a 64-byte header (dtype and
// shape) as a second collective issued right before the data's. Both run at once on
// gloo's two threads, so no round trip is added to the wait, and the data is not copied
// (packing header and data in one message cost a copy: 20 -> 60 ms for a 40 MB
// broadcast). DDP's buckets do not go through here (they match by construction).

constexpr int64_t kHeaderBytes = 64;

// The JS API's dtype names (float32, int64, ...), libtorch's for the rest.
static std::string DtypeName(c10::ScalarType t) {
  switch (t) {
    case c10::ScalarType::Float: return "float32";
    case c10::ScalarType::Double: return "float64";
    case c10::ScalarType::Half: return "float16";
    case c10::ScalarType::BFloat16: return "bfloat16";
    case c10::ScalarType::Long: return "int64";
    case c10::ScalarType::Int: return "int32";
    case c10::ScalarType::Short: return "int16";
    case c10::ScalarType::Char: return "int8";
    case c10::ScalarType::Byte: return "uint8";
    case c10::ScalarType::Bool: return "bool";
    default: return c10::toString(t);
  }
}

struct ShapeHeader {
  int64_t w[8] = {0};  // magic, dtype, ndim, numel, dims 0..3 (dim 3 folds the rest beyond 4)
  bool operator==(const ShapeHeader& o) const { return std::equal(std::begin(w), std::end(w), std::begin(o.w)); }
  std::string Describe() const {
    std::string s = "shape [";
    int64_t n = std::min<int64_t>(w[2], 4);
    for (int64_t i = 0; i < n; i++) s += (i ? ", " : "") + (i == 3 && w[2] > 4 ? std::string("...") : std::to_string(w[4 + i]));
    s += "]";
    if (w[2] > 4) s += " (" + std::to_string(w[2]) + " dims, " + std::to_string(w[3]) + " elements)";
    return s + " " + DtypeName(static_cast<c10::ScalarType>(w[1]));
  }
};

static ShapeHeader HeaderOf(const at::Tensor& t) {
  ShapeHeader h;
  h.w[0] = 0x4143435348415045LL;  // "ACCSHAPE"
  h.w[1] = static_cast<int64_t>(t.scalar_type());
  h.w[2] = t.dim();
  h.w[3] = t.numel();
  for (int64_t i = 0; i < t.dim(); i++) {
    if (i < 3) h.w[4 + i] = t.size(i);
    else h.w[7] = h.w[7] * 1000003 + t.size(i);
  }
  return h;
}

static at::Tensor HeaderTensor(const at::Tensor& t) {
  at::Tensor buf = at::empty({kHeaderBytes}, at::kByte);
  ShapeHeader h = HeaderOf(t);
  std::memcpy(buf.data_ptr<uint8_t>(), h.w, kHeaderBytes);
  return buf;
}

static ShapeHeader ReadHeader(const at::Tensor& buf) {
  ShapeHeader h;
  std::memcpy(h.w, buf.data_ptr<uint8_t>(), kHeaderBytes);
  return h;
}

// ---- Work ---------------------------------------------------------------------------

// What a work's wait() and waitSync() share: its finisher (`after`) runs once, and its
// outcome (success or the error message) is kept, so a second wait, or a waitSync racing
// a pending wait(), neither runs the finisher twice (an average divided twice) nor waits
// out a timeout again.
struct Finisher {
  std::mutex mu;
  bool ran = false;
  std::string error;  // empty: succeeded
};

class WorkWrap : public Napi::ObjectWrap<WorkWrap> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeWork",
                       {InstanceMethod<&WorkWrap::Wait>("wait"), InstanceMethod<&WorkWrap::WaitSync>("waitSync"),
                        InstanceMethod<&WorkWrap::IsCompleted>("isCompleted")});
  }
  explicit WorkWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<WorkWrap>(info) {}

  // `after` runs once the collective succeeded, on the waiting thread (shape checks,
  // unpacking, local reductions of emulated collectives). A null `work` is a collective
  // that moves nothing (zero elements): it completes at once.
  static Napi::Value Make(Napi::Env env, c10::intrusive_ptr<c10d::Work> work, std::vector<at::Tensor> keep, bool gatherOutputs,
                          std::shared_ptr<GroupState> st, Ticket ticket, std::function<void(const Ticket&)> after = nullptr) {
    Napi::Object o = ctor->New({});
    WorkWrap* w = Unwrap(o);
    w->p_->work = std::move(work);
    w->p_->keep = std::move(keep);
    w->p_->after = std::move(after);
    w->gather_ = gatherOutputs;
    w->st_ = std::move(st);
    w->ticket_ = std::move(ticket);
    return o;
  }

 private:
  // What the work holds until it finished. Dropped once the finisher ran (except for the
  // list allgather, whose outputs are the result): a loop of waitSync calls that never
  // turns the event loop (hooks inside one backward) does not wait for GC to free the
  // tensors and temporaries of every finished collective.
  struct Payload {
    c10::intrusive_ptr<c10d::Work> work;
    std::vector<at::Tensor> keep;  // inputs/outputs alive until the collective ends
    std::function<void(const Ticket&)> after;
    void Release() {
      work.reset();
      keep.clear();
      after = nullptr;
    }
  };
  std::shared_ptr<Payload> p_ = std::make_shared<Payload>();
  bool gather_ = false;
  std::shared_ptr<GroupState> st_;
  Ticket ticket_;
  std::shared_ptr<Finisher> fin_ = std::make_shared<Finisher>();

  // Wait for the collective (with the hang diagnosis), run the finisher once; throws
  // std::runtime_error with the message wait() rejects with. Any thread.
  static void Complete(const c10::intrusive_ptr<c10d::Work>& work, GroupState& st, const Ticket& t, const std::function<void(const Ticket&)>& after,
                       Finisher& fin) {
    {
      std::lock_guard<std::mutex> l(fin.mu);
      if (fin.ran) {
        if (!fin.error.empty()) throw std::runtime_error(fin.error);
        return;
      }
    }
    std::string error;
    try {
      if (work)
        WaitFor(st, work, t);
      else
        MarkState(st, t, "completed");
    } catch (...) {
      error = CauseOf(std::current_exception());
    }
    std::lock_guard<std::mutex> l(fin.mu);
    if (!fin.ran) {
      fin.ran = true;
      if (error.empty() && after) {
        try {
          at::NoGradGuard noGrad;  // finishers write into outputs that may be leaves requiring grad
          after(t);
        } catch (...) {
          error = CauseOf(std::current_exception());
        }
      }
      fin.error = error;
    }
    if (!fin.error.empty()) throw std::runtime_error(fin.error);
  }

  // keep = {input, one output per rank, ...buffers kept alive for the transfer}
  static Napi::Value Result(Napi::Env env, const std::vector<at::Tensor>& outs, bool gather, int size) {
    if (!gather) return env.Undefined();
    auto n = static_cast<uint32_t>(size);
    Napi::Array a = Napi::Array::New(env, n);
    for (uint32_t i = 0; i < n; i++) a.Set(i, TensorWrap::Make(env, outs[i + 1]));
    return a;
  }

  // wait() -> Promise<undefined | handle[]> (allgather: one tensor per rank)
  Napi::Value Wait(const Napi::CallbackInfo& info) {
    auto p = p_;
    auto work = p->work;
    auto after = p->after;
    bool gather = gather_;
    auto st = st_;
    auto ticket = ticket_;
    auto fin = fin_;
    return Run(
        info.Env(), [work, st, ticket, after, fin]() { Complete(work, *st, ticket, after, *fin); },
        [p, gather, st](Napi::Env env) -> Napi::Value {
          Napi::Value r = Result(env, p->keep, gather, st->size);
          if (!gather) p->Release();
          return r;
        });
  }

  // waitSync() -> undefined | handle[]: wait() without the worker thread and the promise,
  // blocking the JS thread (for hooks that need the data before they return, e.g. inside
  // backward). Nothing it waits for needs the JS thread: gloo's threads finish the work,
  // the diagnosis reporter thread has its own store client, and rank 0's store server
  // runs on its own thread. Throws the error wait() would reject with.
  Napi::Value WaitSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    try {
      Complete(p_->work, *st_, ticket_, p_->after, *fin_);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    Napi::Value r = Result(env, p_->keep, gather_, st_->size);
    if (!gather_) p_->Release();
    return r;
  }
  Napi::Value IsCompleted(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), !p_->work || p_->work->isCompleted());
  }
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
                        InstanceMethod<&GroupWrap::Sequence>("sequence"), InstanceMethod<&GroupWrap::Destroy>("destroy"),
                        InstanceMethod<&GroupWrap::AllGatherInto>("allGatherInto"), InstanceMethod<&GroupWrap::ReduceScatterInto>("reduceScatterInto")});
  }
  explicit GroupWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GroupWrap>(info) {}

  using State = GroupState;

  static Napi::Value Make(Napi::Env env, std::shared_ptr<State> st) {
    Napi::Object o = ctor->New({});
    Unwrap(o)->st_ = std::move(st);
    return o;
  }

  // `host` is the master address: it decides which address this rank listens on.
  static std::shared_ptr<State> Connect(std::shared_ptr<State> st, const std::string& host) {
    auto opts = c10d::ProcessGroupGloo::Options::create(st->timeout);
    std::string how;
    opts->devices = ChooseDevices(host, &how);
    opts->threads = st->threads;
    try {
      st->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(st->store, st->rank, st->size, opts);
    } catch (const std::exception& e) {
      std::string cause = e.what();
      if (auto* ce = dynamic_cast<const c10::Error*>(&e)) cause = ce->what_without_backtrace();
      throw std::runtime_error("rank " + std::to_string(st->rank) + " of group '" + st->name + "' could not connect to the other ranks (gloo listens on " + how +
                               " here; timeout " + std::to_string(st->timeout.count()) + " ms): " + cause +
                               ". Every rank must reach every other rank's address: if a machine has several networks, set GLOO_SOCKET_IFNAME to the interface "
                               "that reaches the others (as torch.distributed), and check that no firewall blocks the ports.");
    }
    st->diag->keyPrefix = "accelerate_diag/" + st->name + "/";
    st->diag->rank = st->rank;
    if (st->hub) st->hub->Add(st->diag);
    RegisterGroup(st);
    return st;
  }

  std::shared_ptr<State> st_;

 private:
  State& S(Napi::Env env) {
    if (!st_ || !st_->pg) throw Napi::Error::New(env, "process group was destroyed");
    return *st_;
  }

  static c10d::ReduceOp Op(Napi::Env env, const Napi::Value& v) {
    std::string s = v.IsUndefined() ? "sum" : v.ToString().Utf8Value();
    if (s == "sum") return c10d::ReduceOp::SUM;
    if (s == "product") return c10d::ReduceOp::PRODUCT;
    if (s == "min") return c10d::ReduceOp::MIN;
    if (s == "max") return c10d::ReduceOp::MAX;
    throw Napi::TypeError::New(env, "reduce op '" + s + "' is not supported by gloo here (sum, product, min, max)");
  }

  // Runs `issue` (which starts the collective) and wraps its Work; libtorch errors become JS errors.
  template <typename F>
  Napi::Value Start(Napi::Env env, const std::string& op, const std::string& shape, bool p2p, std::vector<at::Tensor> keep, bool gather, F issue,
                    std::function<void(const Ticket&)> after = nullptr, const std::string& note = "") {
    State& s = S(env);
    try {
      Ticket t = Issue(s, op, shape, note, p2p);
      return WorkWrap::Make(env, issue(*s.pg), std::move(keep), gather, st_, std::move(t), std::move(after));
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      Rethrow(env);
    }
  }

  // allReduce(t, op, label?) — `label` names the op in diagnostics (reduceScatter is emulated with it).
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    std::vector<at::Tensor> t{TensorWrap::Get(info[0], "allReduce")};
    c10d::AllreduceOptions o;
    o.reduceOp = Op(info.Env(), info[1]);
    std::string label = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "allReduce";
    return Start(info.Env(), label, ShapeOf(t[0]), false, t, false, [&](c10d::ProcessGroupGloo& pg) { return pg.allreduce(t, o); });
  }
  // The root's shape header goes out as its own 64-byte broadcast, issued just before the
  // data: the two run side by side on gloo's threads, and the data is never copied. A
  // receiver compares the root's header with its own tensor once both finished.
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    at::Tensor t = TensorWrap::Get(info[0], "broadcast");
    int root = info[1].As<Napi::Number>().Int32Value();
    State& s = S(info.Env());
    c10d::BroadcastOptions o;
    o.rootRank = root;
    std::vector<at::Tensor> hdr{HeaderTensor(t)};
    std::vector<at::Tensor> data{t};
    int rank = s.rank;
    std::string group = s.name;
    auto hdrWork = std::make_shared<c10::intrusive_ptr<c10d::Work>>();
    return Start(
        info.Env(), "broadcast", ShapeOf(t), false, {t, hdr[0]}, false,
        [&](c10d::ProcessGroupGloo& pg) {
          *hdrWork = pg.broadcast(hdr, o);
          return pg.broadcast(data, o);
        },
        [t, hdr, hdrWork, root, rank, group](const Ticket& tk) {
          (*hdrWork)->wait();  // the data arrived, so the header (issued first) has or will at once
          if (rank == root) return;
          ShapeHeader got = ReadHeader(hdr[0]), mine = HeaderOf(t);
          if (!(got == mine))
            throw std::runtime_error(*tk.what + " on rank " + std::to_string(rank) + " of group '" + group + "': the root (rank " + std::to_string(root) +
                                     ") broadcast a tensor of " + got.Describe() + ", but this rank passed " + mine.Describe() +
                                     ", which now holds partial data. Every rank must pass a tensor of the root's shape and dtype to broadcast (e.g. zeros of " +
                                     got.Describe() + " on the receivers).");
        });
  }
  // Every rank's shape header is gathered by its own small allgather next to the data's;
  // the outputs are returned only when all ranks passed the same shape and dtype.
  Napi::Value AllGather(const Napi::CallbackInfo& info) {
    at::Tensor in = TensorWrap::Get(info[0], "allGather");
    State& s = S(info.Env());
    std::vector<at::Tensor> inputs{in};
    std::vector<std::vector<at::Tensor>> outputs(1);
    std::vector<at::Tensor> hdrIn{HeaderTensor(in)};
    std::vector<std::vector<at::Tensor>> hdrOut(1);
    for (int r = 0; r < s.size; r++) {
      outputs[0].push_back(at::empty_like(in));
      hdrOut[0].push_back(at::empty_like(hdrIn[0]));
    }
    std::vector<at::Tensor> keep{in};
    keep.insert(keep.end(), outputs[0].begin(), outputs[0].end());
    keep.insert(keep.end(), hdrOut[0].begin(), hdrOut[0].end());
    keep.push_back(hdrIn[0]);
    int rank = s.rank;
    std::string group = s.name;
    auto hdrs = hdrOut[0];
    auto mine = HeaderOf(in);
    auto hdrWork = std::make_shared<c10::intrusive_ptr<c10d::Work>>();
    return Start(
        info.Env(), "allGather", ShapeOf(in), false, keep, true,
        [&](c10d::ProcessGroupGloo& pg) {
          *hdrWork = pg.allgather(hdrOut, hdrIn);
          return pg.allgather(outputs, inputs);
        },
        [hdrs, hdrWork, mine, rank, group](const Ticket& tk) {
          (*hdrWork)->wait();
          std::vector<ShapeHeader> hs;
          bool same = true;
          for (auto& h : hdrs) {
            hs.push_back(ReadHeader(h));
            same = same && hs.back() == mine;
          }
          if (!same) {
            std::string list;
            for (size_t r = 0; r < hs.size(); r++) list += (r ? ", " : "") + std::string("rank ") + std::to_string(r) + " " + hs[r].Describe();
            throw std::runtime_error(*tk.what + " on rank " + std::to_string(rank) + " of group '" + group + "': the ranks passed different shapes or dtypes (" + list +
                                     "). allGather needs the same shape and dtype on every rank: reshape, or pad to a common shape first.");
          }
        });
  }
  // ---- flat-tensor collectives (all_gather_into_tensor, reduce_scatter_tensor) --------
  //
  // libtorch 2.x's gloo has both (_allgather_base, _reduce_scatter_base). 1.13's has
  // neither (they throw), so there they are built from what it has, moving the same
  // bytes as the real thing:
  // - allGatherInto: the list allgather, its outputs being views of the output tensor
  //   (1.13's gloo gathers into a flat buffer of its own and copies it into them).
  // - reduceScatterInto: an alltoall of the input (chunk j to rank j) into a temporary,
  //   then a local reduction of the `size` received chunks into the output.
  // avg is sum then a division by the group size on the waiting thread (gloo has no AVG).
  // gloo 1.13 moves only float32/64, float16 and 8/32/64-bit integers: bfloat16, int16 and
  // bool travel as float16 / uint8 bit patterns; 1.13 reduces float16 and bfloat16
  // chunks in float32 and rounds once.

  // A flat, detached alias: gloo and the finishers write through it outside autograd.
  static at::Tensor Flat(const at::Tensor& t) { return t.detach().view({-1}); }

  // The same bytes as a dtype this build's gloo moves (pure data movement only).
  static at::Tensor Wire(const at::Tensor& t) {
#if ACC_TORCH2
    return t;
#else
    switch (t.scalar_type()) {
      case c10::ScalarType::BFloat16:
      case c10::ScalarType::Short:
        return t.view(c10::ScalarType::Half);
      case c10::ScalarType::Bool:
        return t.view(c10::ScalarType::Byte);
      default:
        return t;
    }
#endif
  }

  // `big` must hold `size` times `small`'s elements, in the same dtype, both contiguous.
  static void CheckInto(Napi::Env env, const std::string& op, const at::Tensor& out, const at::Tensor& in, const at::Tensor& big, const at::Tensor& small,
                        int size) {
    if (out.scalar_type() != in.scalar_type())
      throw Napi::TypeError::New(env, op + ": output is " + DtypeName(out.scalar_type()) + " but input is " + DtypeName(in.scalar_type()) +
                                          ": both must have the same dtype");
    if (!out.is_contiguous() || !in.is_contiguous()) throw Napi::TypeError::New(env, op + ": output and input must be contiguous: call .contiguous() first");
    if (!out.device().is_cpu() || !in.device().is_cpu()) throw Napi::TypeError::New(env, op + ": gloo needs CPU tensors");
    if (big.numel() != small.numel() * size) {
      bool gather = &big == &out;
      throw Napi::RangeError::New(env, op + ": " + (gather ? "output" : "input") + " has " + std::to_string(big.numel()) + " elements " + ShapeOf(big) + ", but " +
                                           (gather ? "input" : "output") + " has " + std::to_string(small.numel()) + " " + ShapeOf(small) + " and the group has " +
                                           std::to_string(size) + " ranks: the " + (gather ? "output" : "input") + " needs " + std::to_string(size) + " × " +
                                           std::to_string(small.numel()) + " = " + std::to_string(small.numel() * size) + " elements");
    }
  }

  // allGatherInto(output, input) — rank r's input lands at output[r*n, (r+1)*n).
  Napi::Value AllGatherInto(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    at::Tensor out = TensorWrap::Get(info[0], "allGatherInto output");
    at::Tensor in = TensorWrap::Get(info[1], "allGatherInto input");
    State& s = S(env);
    CheckInto(env, "allGatherInto", out, in, out, in, s.size);
    at::Tensor o = Wire(Flat(out)), i = Wire(Flat(in));
    int64_t n = i.numel();
    [[maybe_unused]] int size = s.size;  // 1.13's list allgather only
    std::string shape = ShapeOf(in) + " " + DtypeName(in.scalar_type());
    const char* note = ACC_TORCH2 ? "" : "allgather into views";
    return Start(
        env, "allGatherInto", shape, false, {out, in, o, i}, false,
        [&](c10d::ProcessGroupGloo& pg) -> c10::intrusive_ptr<c10d::Work> {
          if (n == 0) return c10::intrusive_ptr<c10d::Work>();
#if ACC_TORCH2
          return pg._allgather_base(o, i);
#else
          std::vector<std::vector<at::Tensor>> outs(1);
          for (int r = 0; r < size; r++) outs[0].push_back(o.narrow(0, r * n, n));
          std::vector<at::Tensor> ins{i};
          return pg.allgather(outs, ins);
#endif
        },
        nullptr, note);
  }

  // reduceScatterInto(output, input, op) — rank r gets chunk r of the reduction of every rank's input.
  Napi::Value ReduceScatterInto(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    at::Tensor out = TensorWrap::Get(info[0], "reduceScatterInto output");
    at::Tensor in = TensorWrap::Get(info[1], "reduceScatterInto input");
    std::string opName = info.Length() > 2 && !info[2].IsUndefined() ? info[2].ToString().Utf8Value() : "sum";
    bool avg = opName == "avg";
    c10d::ReduceOp op = avg ? c10d::ReduceOp(c10d::ReduceOp::SUM) : Op(env, info[2]);
    State& s = S(env);
    CheckInto(env, "reduceScatterInto", out, in, in, out, s.size);
    if (avg && !at::isFloatingType(out.scalar_type()))
      throw Napi::TypeError::New(env, std::string("reduceScatterInto: avg needs a floating-point dtype, got ") + DtypeName(out.scalar_type()) + " (use sum and divide)");
    at::Tensor o = Flat(out), i = Flat(in);
    int64_t n = o.numel();
    int size = s.size;
    std::string shape = ShapeOf(in) + " " + DtypeName(in.scalar_type());
    std::string note = std::string(avg ? "avg" : opName) + (ACC_TORCH2 ? "" : ", alltoall+sum");
    std::vector<at::Tensor> keep{out, in, o, i};
#if ACC_TORCH2
    std::function<void(const Ticket&)> after;
    if (avg) after = [o, size](const Ticket&) { o.div_(size); };
    return Start(
        env, "reduceScatterInto", shape, false, keep, false,
        [&](c10d::ProcessGroupGloo& pg) -> c10::intrusive_ptr<c10d::Work> {
          if (n == 0) return c10::intrusive_ptr<c10d::Work>();
          c10d::ReduceScatterOptions ro;
          ro.reduceOp = op;
          return pg._reduce_scatter_base(o, i, ro);
        },
        after, note);
#else
    // Row j of `recv` is rank j's chunk for this rank.
    at::Tensor recv = at::empty_like(i);
    keep.push_back(recv);
    auto kind = op.op_;
    std::function<void(const Ticket&)> after = [o, recv, n, size, kind, avg](const Ticket&) {
      at::Tensor rows = recv.view({size, n});
      c10::ScalarType dt = o.scalar_type();
      bool low = dt == c10::ScalarType::Half || dt == c10::ScalarType::BFloat16;
      if (low) rows = rows.to(c10::ScalarType::Float);
      at::Tensor acc = low ? at::empty({n}, rows.options()) : o;
      switch (kind) {
        case c10d::ReduceOp::SUM: at::sum_out(acc, rows, {0}); break;
        case c10d::ReduceOp::MAX: at::amax_out(acc, rows, {0}); break;
        case c10d::ReduceOp::MIN: at::amin_out(acc, rows, {0}); break;
        case c10d::ReduceOp::PRODUCT: at::prod_out(acc, rows, 0); break;
        default: throw std::runtime_error("reduceScatterInto: unsupported reduce op");
      }
      if (avg) acc.div_(size);
      if (low) o.copy_(acc);
    };
    return Start(
        env, "reduceScatterInto", shape, false, keep, false,
        [&](c10d::ProcessGroupGloo& pg) -> c10::intrusive_ptr<c10d::Work> {
          if (n == 0) return c10::intrusive_ptr<c10d::Work>();
          at::Tensor wireOut = Wire(recv), wireIn = Wire(i);
          std::vector<int64_t> counts;
          return pg.alltoall_base(wireOut, wireIn, counts, counts);
        },
        after, note);
#endif
  }

  Napi::Value Send(const Napi::CallbackInfo& info) {
    std::vector<at::Tensor> t{TensorWrap::Get(info[0], "send")};
    int dst = info[1].As<Napi::Number>().Int32Value(), tag = info[2].As<Napi::Number>().Int32Value();
    return Start(info.Env(), "send to " + std::to_string(dst) + " tag " + std::to_string(tag), ShapeOf(t[0]), true, t, false,
                 [&](c10d::ProcessGroupGloo& pg) { return pg.send(t, dst, tag); });
  }
  Napi::Value Recv(const Napi::CallbackInfo& info) {
    std::vector<at::Tensor> t{TensorWrap::Get(info[0], "recv")};
    int src = info[1].As<Napi::Number>().Int32Value(), tag = info[2].As<Napi::Number>().Int32Value();
    return Start(info.Env(), "recv from " + std::to_string(src) + " tag " + std::to_string(tag), ShapeOf(t[0]), true, t, false,
                 [&](c10d::ProcessGroupGloo& pg) { return pg.recv(t, src, tag); });
  }
  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    return Start(info.Env(), "barrier", "[]", false, {}, false, [&](c10d::ProcessGroupGloo& pg) { return pg.barrier(); });
  }

  // sequence() -> collectives issued on this group so far
  Napi::Value Sequence(const Napi::CallbackInfo& info) {
    State& s = S(info.Env());
    std::lock_guard<std::mutex> l(s.diag->mu);
    return Napi::Number::New(info.Env(), static_cast<double>(s.diag->seq));
  }

  // newGroup(ranks[], name, host) -> Promise<group | null>; `name` must be unique per
  // creation and equal on every rank (the JS side derives it from a creation counter).
  Napi::Value NewGroup(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto ranks = ParseInts(env, info[0], "newGroup ranks");
    std::string name = info[1].ToString().Utf8Value();
    std::string host = info[2].ToString().Utf8Value();
    State& s = S(env);
    int me = -1;
    for (size_t i = 0; i < ranks.size(); i++)
      if (ranks[i] == s.rank) me = static_cast<int>(i);
    if (me < 0) {
      auto d = Napi::Promise::Deferred::New(env);
      d.Resolve(env.Null());
      return d.Promise();
    }
    auto sub = std::make_shared<State>();
    sub->root = s.root;
    sub->store = c10::make_intrusive<c10d::PrefixStore>("accelerate_group_" + name + "/", s.root);
    sub->rank = me;
    sub->size = static_cast<int>(ranks.size());
    sub->threads = s.threads;
    sub->timeout = s.timeout;
    sub->name = name;
    sub->hub = s.hub;
    return Run(
        env, [sub, host]() { Connect(sub, host); }, [sub](Napi::Env e) { return Make(e, sub); });
  }

  Napi::Value StoreSet(const Napi::CallbackInfo& info) {
    auto store = S(info.Env()).store;
    std::string key = info[0].ToString().Utf8Value();
    Napi::Uint8Array a = info[1].As<Napi::Uint8Array>();
    std::vector<uint8_t> value(a.Data(), a.Data() + a.ElementLength());
    return Run(info.Env(), [store, key, value]() { store->set(key, value); });
  }
  Napi::Value StoreGet(const Napi::CallbackInfo& info) {
    auto store = S(info.Env()).store;
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
    auto store = S(info.Env()).store;
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

std::shared_ptr<GroupState> GroupStateOf(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(GroupWrap::ctor->Value())) throw Napi::TypeError::New(env, "expected a native process group");
  auto st = GroupWrap::Unwrap(v.As<Napi::Object>())->st_;
  if (!st || !st->pg) throw Napi::Error::New(env, "process group was destroyed");
  return st;
}

// initGroup(host, port, rank, world, timeoutMs, threads, agentStorePrefix) -> Promise<group>
// agentStorePrefix (a string): torchrun's agent already hosts the TCPStore at host:port
// (TORCHELASTIC_USE_AGENT_STORE), so every rank is a client and works under that prefix.
static Napi::Value InitGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string host = info[0].ToString().Utf8Value();
  auto port = static_cast<std::uint16_t>(info[1].As<Napi::Number>().Uint32Value());
  auto st = std::make_shared<GroupWrap::State>();
  st->rank = info[2].As<Napi::Number>().Int32Value();
  st->size = info[3].As<Napi::Number>().Int32Value();
  st->timeout = std::chrono::milliseconds(info[4].As<Napi::Number>().Int64Value());
  st->threads = info[5].IsNumber() ? info[5].As<Napi::Number>().Int32Value() : 2;
  const char* diagEnv = std::getenv("ACCELERATE_C10D_DIAG");
  bool diag = !(diagEnv && std::string(diagEnv) == "0");
  bool agentStore = info.Length() > 6 && info[6].IsString();
  std::string agentPrefix = agentStore ? info[6].ToString().Utf8Value() : std::string();
  return Run(
      env,
      [st, host, port, diag, agentStore, agentPrefix]() {
        c10d::TCPStoreOptions o;
        o.port = port;
        o.isServer = !agentStore && st->rank == 0;
        o.numWorkers = static_cast<std::size_t>(st->size);
        o.waitWorkers = !agentStore;
        o.timeout = st->timeout;
        if (o.isServer && IsLoopbackHost(host)) ListenOnLoopbackOnly(o, host);
        c10::intrusive_ptr<c10d::TCPStore> tcp;
        try {
          tcp = c10::make_intrusive<c10d::TCPStore>(host, o);
        } catch (const std::exception& e) {
          std::string cause = e.what();
          if (auto* ce = dynamic_cast<const c10::Error*>(&e)) cause = ce->what_without_backtrace();
          std::string where = host + ":" + std::to_string(port);
          if (o.isServer) {
            // torch 2.x: "... waiting for clients. 1/2 clients joined." (1.13 does not throw here)
            std::string who = "some ranks";
            size_t slash = cause.find(" clients joined");
            if (slash != std::string::npos) {
              size_t sp = cause.rfind(' ', slash - 1);
              std::string frac = cause.substr(sp + 1, slash - sp - 1);
              size_t sl = frac.find('/');
              if (sl != std::string::npos) {
                try {
                  int joined = std::stoi(frac.substr(0, sl)), total = std::stoi(frac.substr(sl + 1));
                  who = std::to_string(total - joined) + " of " + std::to_string(total) + " ranks";
                } catch (...) {
                }
              }
            }
            throw std::runtime_error("rank 0: " + who + " never reached the rendezvous store at " + where + " (hosted by rank 0) within " + std::to_string(st->timeout.count()) +
                                     " ms (" + cause + "). Check that every other machine was started with --main_process_ip " + host + " --main_process_port " +
                                     std::to_string(port) + ", that " + host + " is reachable from there (the link is up, no firewall blocks the port), and look at their output.");
          }
          throw std::runtime_error("rank " + std::to_string(st->rank) + " could not reach the rendezvous store at " + where + " (the master address, hosted by rank 0 on machine_rank 0) within " +
                                   std::to_string(st->timeout.count()) + " ms (" + cause + "). Check that machine_rank 0 is started and that " + where +
                                   " is its address as this machine sees it (--main_process_ip, --main_process_port) and reachable from here (no firewall, the link is up).");
        }
        if (agentStore)
          st->root = c10::make_intrusive<c10d::PrefixStore>(agentPrefix, tcp);
        else
          st->root = tcp;
        st->store = c10::make_intrusive<c10d::PrefixStore>("accelerate_default/", st->root);
        if (diag) {
          // A second client connection for the reporter thread; diagnosis is best effort.
          try {
            c10d::TCPStoreOptions c;
            c.port = port;
            c.isServer = false;
            c.waitWorkers = false;
            c.timeout = st->timeout;
            auto hub = std::make_shared<DiagHub>();
            hub->client = c10::make_intrusive<c10d::TCPStore>(host, c);
            hub->globalRank = st->rank;
            st->hub = hub;
            DiagHub::Start(hub, std::chrono::milliseconds(100));
          } catch (...) {
            st->hub.reset();
          }
        }
        // Every rank marks its arrival, so a failed connect can say which ranks never
        // reached the store (1.13's rank 0 stops waiting for them without an error).
        std::string arrived = "accelerate_arrived/";
        try {
          std::string me = std::to_string(st->rank);
          st->root->set(arrived + me, std::vector<uint8_t>(me.begin(), me.end()));
        } catch (...) {
        }
        try {
          GroupWrap::Connect(st, host);
        } catch (const std::exception& e) {
          std::vector<int> missing;
          try {
            for (int r = 0; r < st->size; r++)
              if (!st->root->check({arrived + std::to_string(r)})) missing.push_back(r);
          } catch (...) {
          }
          if (missing.empty()) throw;
          std::string who = RankList(missing);
          throw std::runtime_error("rank " + std::to_string(st->rank) + ": " + who + " never reached the rendezvous store at " + host + ":" + std::to_string(port) +
                                   " (hosted by rank 0) within " + std::to_string(st->timeout.count()) + " ms. Check that " +
                                   (missing.size() == 1 ? "its machine was" : "their machines were") + " started with --main_process_ip " + host +
                                   " --main_process_port " + std::to_string(port) + ", that " + host +
                                   " is reachable from there (the link is up, no firewall blocks the port), and look at " + (missing.size() == 1 ? "its" : "their") +
                                   " output. (" + e.what() + ")");
        }
      },
      [st](Napi::Env e) { return GroupWrap::Make(e, st); });
}

// OMP_NUM_THREADS as a positive integer, or 0 when unset or invalid.
static int OmpThreadsFromEnv() {
  const char* v = std::getenv("OMP_NUM_THREADS");
  if (!v || !*v) return 0;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  return end && *end == '\0' && n > 0 && n < 4096 ? static_cast<int>(n) : 0;
}

// The launcher divides the cores among local ranks through OMP_NUM_THREADS; apply it to
// libtorch's intra-op pool (OpenMP, and MKL in 2.x wheels) and its inter-op pool at load,
// before any parallel work, whatever threading backend libtorch was built with.
static void ApplyThreadEnv() {
  int n = OmpThreadsFromEnv();
  if (n == 0) return;
  try {
    at::set_num_threads(n);
  } catch (...) {
  }
  try {
    at::set_num_interop_threads(n);  // throws if the pool already started: keep its size then
  } catch (...) {
  }
}

// threadSettings() -> { intraOp, interOp, ompNumThreads }
static Napi::Value ThreadSettings(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  int omp = OmpThreadsFromEnv();
  o.Set("intraOp", Napi::Number::New(env, at::get_num_threads()));
  o.Set("interOp", Napi::Number::New(env, at::get_num_interop_threads()));
  o.Set("ompNumThreads", omp > 0 ? Napi::Value(Napi::Number::New(env, omp)) : env.Null());
  return o;
}

void InitC10d(Napi::Env env, Napi::Object exports) {
  g_jsThread = std::this_thread::get_id();
  static std::once_flag threadsOnce;
  std::call_once(threadsOnce, ApplyThreadEnv);
  ACC_FN(exports, "threadSettings", ThreadSettings);
  static std::once_flag once;
  std::call_once(once, []() { g_previousTerminate = std::set_terminate(OnTerminate); });
  Napi::Function w = WorkWrap::Define(env);
  WorkWrap::ctor = new Napi::FunctionReference(Napi::Persistent(w));
  Napi::Function g = GroupWrap::Define(env);
  GroupWrap::ctor = new Napi::FunctionReference(Napi::Persistent(g));
  ACC_FN(exports, "initGroup", InitGroup);
  Napi::Object impl = Napi::Object::New(env);
  // What implements each flat collective in this build (ProcessGroup.implementations).
  impl.Set("allGatherInto", ACC_TORCH2 ? "native" : "allgather-into-views");
  impl.Set("reduceScatterInto", ACC_TORCH2 ? "native" : "alltoall+sum");
  exports.Set("c10dImplementations", impl);
  InitDDP(env, exports);
}

}  // namespace acc
