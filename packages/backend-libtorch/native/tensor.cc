// Tensor handles, dtype/device parsing, host <-> tensor copies and metadata.
#include "common.h"

#include <ATen/TracerMode.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/scalar_tensor.h>
#include <c10/core/ScalarType.h>

#include <cstring>

namespace acc {

static Napi::FunctionReference* g_tensor_ctor = nullptr;
static int64_t g_live_handles = 0, g_finalized = 0, g_accounted_total = 0;
// Tags a JS object as one of our tensor handles (cheap, collision-free check in Get()).
static const napi_type_tag kTensorTag = {0x6163636c74656e73ULL, 0x6f72686e646c3031ULL};

[[noreturn]] void Rethrow(Napi::Env env) {
  try {
    throw;
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::OutOfMemoryError& e) {
    Napi::Error err = Napi::Error::New(env, e.what_without_backtrace());
    err.Set("code", Napi::String::New(env, "ERR_TORCH_OUT_OF_MEMORY"));
    throw err;
  } catch (const c10::IndexError& e) {
    throw Napi::RangeError::New(env, e.what_without_backtrace());
  } catch (const c10::TypeError& e) {
    throw Napi::TypeError::New(env, e.what_without_backtrace());
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    Napi::Error err = Napi::Error::New(env, msg);
    if (msg.find("not enough memory") != std::string::npos || msg.find("out of memory") != std::string::npos) {
      err.Set("code", Napi::String::New(env, "ERR_TORCH_OUT_OF_MEMORY"));
    }
    throw err;
  } catch (const std::bad_alloc&) {
    Napi::Error err = Napi::Error::New(env, "out of memory (std::bad_alloc)");
    err.Set("code", Napi::String::New(env, "ERR_TORCH_OUT_OF_MEMORY"));
    throw err;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  } catch (...) {
    throw Napi::Error::New(env, "unknown C++ exception in libtorch");
  }
}

int64_t AccountedBytes(const at::Tensor& t) {
  if (!t.defined() || t.is_view() || !t.has_storage()) return 0;
  if (!t.device().is_cpu()) return 0;
  return static_cast<int64_t>(t.storage().nbytes());
}

void TensorWrap::Init(Napi::Env env, Napi::Object exports) {
  const napi_property_descriptor methods[] = {
      {"dispose", nullptr, &TensorWrap::Dispose, nullptr, nullptr, nullptr, napi_default_method, nullptr},
      {"isDisposed", nullptr, &TensorWrap::IsDisposed, nullptr, nullptr, nullptr, napi_default_method, nullptr},
  };
  napi_value ctor;
  NAPI_THROW_IF_FAILED_VOID(env, napi_define_class(env, "NativeTensor", NAPI_AUTO_LENGTH, &TensorWrap::Construct, nullptr, 2, methods, &ctor));
  Napi::Function fn(env, ctor);
  g_tensor_ctor = new Napi::FunctionReference(Napi::Persistent(fn));
  exports.Set("NativeTensor", fn);
}

napi_value TensorWrap::Construct(napi_env env, napi_callback_info info) {
  napi_value self;
  if (napi_get_cb_info(env, info, nullptr, nullptr, &self, nullptr) != napi_ok) return nullptr;
  auto* w = new TensorWrap();
  // No result napi_ref: the runtime owns (and deletes) the reference, see common.h.
  if (napi_wrap(env, self, w, &TensorWrap::Finalize, nullptr, nullptr) != napi_ok) {
    delete w;
    napi_throw_error(env, nullptr, "NativeTensor: napi_wrap failed");
    return nullptr;
  }
  napi_type_tag_object(env, self, &kTensorTag);
  return self;
}

void TensorWrap::Finalize(Napi::node_addon_api_basic_env env, void* data, void*) {
  auto* w = static_cast<TensorWrap*>(data);
  g_finalized++;
  w->Release(Napi::BasicEnv(env));
  delete w;
}

void TensorWrap::Attach(Napi::Env env, at::Tensor t) {
  tensor = std::move(t);
  accounted = AccountedBytes(tensor);
  g_live_handles++;
  g_accounted_total += accounted;
  if (accounted) Napi::MemoryManagement::AdjustExternalMemory(env, accounted);
}

void TensorWrap::Release(Napi::BasicEnv env) {
  if (tensor.defined()) g_live_handles--;
  g_accounted_total -= accounted;
  if (accounted) Napi::MemoryManagement::AdjustExternalMemory(env, -accounted);
  accounted = 0;
  tensor.reset();
}

// `this` of a method call as a TensorWrap (nullptr, with a JS TypeError pending, otherwise).
static TensorWrap* ThisWrap(napi_env env, napi_callback_info info) {
  napi_value self;
  if (napi_get_cb_info(env, info, nullptr, nullptr, &self, nullptr) != napi_ok) return nullptr;
  TensorWrap* w = TensorWrap::Unwrap(Napi::Value(env, self));
  if (!w) napi_throw_type_error(env, nullptr, "NativeTensor method called on another object");
  return w;
}

napi_value TensorWrap::Dispose(napi_env env, napi_callback_info info) {
  TensorWrap* w = ThisWrap(env, info);
  if (w) w->Release(Napi::BasicEnv(env));
  return nullptr;
}

napi_value TensorWrap::IsDisposed(napi_env env, napi_callback_info info) {
  TensorWrap* w = ThisWrap(env, info);
  if (!w) return nullptr;
  napi_value out;
  napi_get_boolean(env, !w->tensor.defined(), &out);
  return out;
}

Napi::Value TensorWrap::Make(Napi::Env env, at::Tensor t) {
  if (!t.defined()) return env.Null();
  Napi::Object obj = g_tensor_ctor->New({});
  Unwrap(obj)->Attach(env, std::move(t));
  return obj;
}

bool TensorWrap::Is(const Napi::Value& v) {
  if (!v.IsObject()) return false;
  bool ok = false;
  napi_check_object_type_tag(v.Env(), v, &kTensorTag, &ok);
  return ok;
}

TensorWrap* TensorWrap::Unwrap(const Napi::Value& v) {
  if (!Is(v)) return nullptr;
  void* data = nullptr;
  if (napi_unwrap(v.Env(), v, &data) != napi_ok) return nullptr;
  return static_cast<TensorWrap*>(data);
}

at::Tensor& TensorWrap::Get(const Napi::Value& v, const char* what) {
  TensorWrap* w = Unwrap(v);
  if (!w) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a Tensor");
  }
  if (!w->tensor.defined()) {
    throw Napi::Error::New(v.Env(), std::string(what) + ": the tensor was disposed (dispose() or a tidy() scope freed it); keep it with keep() or clone it before disposing");
  }
  return w->tensor;
}

// ---- dtype and device names ---------------------------------------------------

struct DTypeEntry {
  const char* name;
  c10::ScalarType type;
};
static const DTypeEntry kDTypes[] = {
    {"float32", c10::kFloat}, {"float64", c10::kDouble}, {"float16", c10::kHalf},   {"bfloat16", c10::kBFloat16},
    {"int8", c10::kChar},     {"int16", c10::kShort},    {"int32", c10::kInt},      {"int64", c10::kLong},
    {"uint8", c10::kByte},    {"bool", c10::kBool},      {"complex64", c10::kComplexFloat},
    {"complex128", c10::kComplexDouble},
    // PyTorch aliases
    {"float", c10::kFloat},   {"double", c10::kDouble},  {"half", c10::kHalf},      {"long", c10::kLong},
    {"int", c10::kInt},
};

c10::ScalarType ParseDType(Napi::Env env, const Napi::Value& v) {
  if (v.IsNumber()) return static_cast<c10::ScalarType>(v.As<Napi::Number>().Int32Value());
  std::string s = v.ToString().Utf8Value();
  for (const auto& e : kDTypes)
    if (s == e.name) return e.type;
  throw Napi::TypeError::New(env, "unknown dtype '" + s +
                                      "': use one of float32, float64, float16, bfloat16, int8, int16, int32, int64, uint8, bool");
}

const char* DTypeName(c10::ScalarType t) {
  for (const auto& e : kDTypes)
    if (e.type == t) return e.name;
  return c10::toString(t);
}

c10::Device ParseDevice(Napi::Env env, const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return c10::Device(c10::kCPU);
  return c10::Device(v.ToString().Utf8Value());
}

std::string DeviceName(const c10::Device& d) { return d.str(); }

std::vector<int64_t> ParseInts(Napi::Env env, const Napi::Value& v, const char* what) {
  std::vector<int64_t> out;
  if (v.IsNumber()) {
    out.push_back(v.As<Napi::Number>().Int64Value());
    return out;
  }
  if (!v.IsArray()) throw Napi::TypeError::New(env, std::string(what) + ": expected an array of integers");
  Napi::Array a = v.As<Napi::Array>();
  uint32_t n = a.Length();
  out.reserve(n);
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value e = a.Get(i);
    if (e.IsBigInt()) {
      bool lossless;
      out.push_back(e.As<Napi::BigInt>().Int64Value(&lossless));
    } else {
      out.push_back(e.As<Napi::Number>().Int64Value());
    }
  }
  return out;
}

Napi::Array IntsToJs(Napi::Env env, c10::IntArrayRef v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(v[i])));
  return a;
}

// ---- host <-> tensor ----------------------------------------------------------

// fromBuffer(typedArray, shape, dtype, device?) -> handle (copies the data).
static Napi::Value FromBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  auto shape = ParseInts(env, info[1], "fromBuffer shape");
  c10::ScalarType st = ParseDType(env, info[2]);
  c10::Device dev = ParseDevice(env, info[3]);
  int64_t numel = 1;
  for (auto s : shape) numel *= s;
  size_t nbytes = static_cast<size_t>(numel) * c10::elementSize(st);
  if (nbytes != ta.ByteLength()) {
    throw Napi::RangeError::New(env, "fromBuffer: the data has " + std::to_string(ta.ByteLength()) + " bytes but shape and dtype " +
                                         DTypeName(st) + " need " + std::to_string(nbytes));
  }
  // Filled by memcpy, which a tracer (jit.trace) cannot see: keep the tracer away so the
  // tensor enters a traced graph as a constant with its data, not as aten::empty.
  at::tracer::impl::NoTracerDispatchMode noTrace;
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(st));
  if (nbytes) {
    const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    std::memcpy(t.data_ptr(), src, nbytes);
  }
  if (!dev.is_cpu()) t = t.to(dev);
  return TensorWrap::Make(env, std::move(t));
}

// toBuffer(handle) -> ArrayBuffer holding a contiguous CPU copy.
static Napi::Value ToBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Tensor t = TensorWrap::Get(info[0], "toBuffer");
  t = t.detach();
  if (!t.device().is_cpu()) t = t.cpu();
  t = t.contiguous();
  size_t nbytes = t.numel() * t.element_size();
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, nbytes);
  if (nbytes) std::memcpy(ab.Data(), t.data_ptr(), nbytes);
  return ab;
}

// shareBuffer(handle) -> external ArrayBuffer over the tensor's memory (zero-copy; the
// buffer keeps the storage alive). Throws where V8's sandbox forbids external buffers.
static Napi::Value ShareBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Tensor t = TensorWrap::Get(info[0], "shareBuffer");
  if (!t.device().is_cpu() || !t.is_contiguous()) {
    throw Napi::Error::New(env, "shareBuffer: only contiguous CPU tensors can be shared; call contiguous() or use a copy");
  }
  auto* keep = new at::Tensor(t.detach());
  size_t nbytes = t.numel() * t.element_size();
  return Napi::ArrayBuffer::New(env, keep->data_ptr(), nbytes, [](Napi::Env, void*, at::Tensor* h) { delete h; }, keep);
}

static Napi::Value Shape(const Napi::CallbackInfo& info) {
  return IntsToJs(info.Env(), TensorWrap::Get(info[0], "shape").sizes());
}
static Napi::Value Strides(const Napi::CallbackInfo& info) {
  return IntsToJs(info.Env(), TensorWrap::Get(info[0], "stride").strides());
}
static Napi::Value DType(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DTypeName(TensorWrap::Get(info[0], "dtype").scalar_type()));
}
static Napi::Value DeviceOf(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DeviceName(TensorWrap::Get(info[0], "device").device()));
}
static Napi::Value Numel(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(TensorWrap::Get(info[0], "numel").numel()));
}
static Napi::Value Dim(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(TensorWrap::Get(info[0], "dim").dim()));
}
static Napi::Value IsContiguous(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), TensorWrap::Get(info[0], "isContiguous").is_contiguous());
}
static Napi::Value Item(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorWrap::Get(info[0], "item");
  c10::Scalar s = t.item();
  if (s.isBoolean()) return Napi::Boolean::New(info.Env(), s.toBool());
  if (s.isIntegral(false)) return Napi::Number::New(info.Env(), static_cast<double>(s.toLong()));
  return Napi::Number::New(info.Env(), s.toDouble());
}
// Same tensor object (TensorImpl) behind two handles?
static Napi::Value SameTensor(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), TensorWrap::Get(info[0], "same").is_same(TensorWrap::Get(info[1], "same")));
}
// A new handle to the same tensor (used to share a tensor across scopes).
static Napi::Value NewRef(const Napi::CallbackInfo& info) {
  return TensorWrap::Make(info.Env(), TensorWrap::Get(info[0], "ref"));
}
// setData(dst, src): dst now uses src's storage (as `param.data = src` in PyTorch).
static Napi::Value SetData(const Napi::CallbackInfo& info) {
  at::Tensor& dst = TensorWrap::Get(info[0], "setData");
  at::Tensor& src = TensorWrap::Get(info[1], "setData");
  TensorWrap* w = TensorWrap::Unwrap(info[0]);
  dst.set_data(src);
  int64_t now = AccountedBytes(dst);
  g_accounted_total += now - w->accounted;
  if (now != w->accounted) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), now - w->accounted);
  w->accounted = now;
  return info.Env().Undefined();
}
static Napi::Value StorageBytes(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorWrap::Get(info[0], "storageBytes");
  return Napi::Number::New(info.Env(), t.has_storage() ? static_cast<double>(t.storage().nbytes()) : 0.0);
}
static Napi::Value DTypeCode(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<int>(ParseDType(info.Env(), info[0])));
}

// handleStats() -> { live, finalized, accountedBytes }: leak checks in tests.
static Napi::Value HandleStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("live", Napi::Number::New(env, static_cast<double>(g_live_handles)));
  o.Set("finalized", Napi::Number::New(env, static_cast<double>(g_finalized)));
  o.Set("accountedBytes", Napi::Number::New(env, static_cast<double>(g_accounted_total)));
  return o;
}

void InitTensor(Napi::Env env, Napi::Object exports) {
  ACC_FN(exports, "handleStats", HandleStats);
  ACC_FN(exports, "fromBuffer", FromBuffer);
  ACC_FN(exports, "toBuffer", ToBuffer);
  ACC_FN(exports, "shareBuffer", ShareBuffer);
  ACC_FN(exports, "shape", Shape);
  ACC_FN(exports, "strides", Strides);
  ACC_FN(exports, "dtype", DType);
  ACC_FN(exports, "device", DeviceOf);
  ACC_FN(exports, "numel", Numel);
  ACC_FN(exports, "dim", Dim);
  ACC_FN(exports, "isContiguous", IsContiguous);
  ACC_FN(exports, "item", Item);
  ACC_FN(exports, "sameTensor", SameTensor);
  ACC_FN(exports, "newRef", NewRef);
  ACC_FN(exports, "setData", SetData);
  ACC_FN(exports, "storageBytes", StorageBytes);
  ACC_FN(exports, "dtypeCode", DTypeCode);
}

}  // namespace acc
