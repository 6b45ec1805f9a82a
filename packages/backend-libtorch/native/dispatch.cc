// Generic access to every ATen operator through the boxed dispatcher: JS looks an
// operator up once by schema name ("aten::add", "Tensor"), then calls it by index.
// Arguments are converted from JS according to the schema, so one entry point covers
// the whole operator library (autograd and autocast included, as in TorchScript).
#include "common.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/function_schema.h>
#include <ATen/core/ivalue.h>
#include <ATen/core/stack.h>
#include <ATen/ops/scalar_tensor.h>

#include <cmath>
#include <vector>

namespace acc {

enum class Kind : uint8_t {
  Tensor,
  Int,
  Float,
  Bool,
  Scalar,
  String,
  Device,
  ScalarTypeK,
  IntList,
  FloatList,
  BoolList,
  TensorList,
  OptTensorList,
  Generator,
  Other,
};

struct ArgSpec {
  Kind kind;
  bool optional;
  int64_t listN;  // fixed list length from the schema (int[2]), or -1
  c10::optional<c10::IValue> defaultValue;
  std::string name;
};

struct OpEntry {
  c10::OperatorHandle handle;
  std::vector<ArgSpec> args;
  size_t nreturns;
  std::string fullName;
};

static std::vector<OpEntry> g_ops;

static Kind KindOf(const c10::TypePtr& fake, const c10::TypePtr& real) {
  using K = c10::TypeKind;
  switch (real->kind()) {
    case K::ScalarTypeType:
    case K::LayoutType:
    case K::MemoryFormatType:
      return Kind::ScalarTypeK;
    default:
      break;
  }
  switch (fake->kind()) {
    case K::TensorType:
      return Kind::Tensor;
    case K::IntType:
      return Kind::Int;
    case K::FloatType:
      return Kind::Float;
    case K::BoolType:
      return Kind::Bool;
    case K::NumberType:
      return Kind::Scalar;
    case K::StringType:
      return Kind::String;
    case K::DeviceObjType:
      return Kind::Device;
    case K::GeneratorType:
      return Kind::Generator;
    case K::ListType: {
      auto elem = fake->castRaw<c10::ListType>()->getElementType();
      switch (elem->kind()) {
        case K::IntType:
          return Kind::IntList;
        case K::FloatType:
          return Kind::FloatList;
        case K::BoolType:
          return Kind::BoolList;
        case K::TensorType:
          return Kind::TensorList;
        case K::OptionalType:
          return Kind::OptTensorList;
        default:
          return Kind::Other;
      }
    }
    default:
      return Kind::Other;
  }
}

// opLookup(name, overload) -> { id, args: [names], returns: n }
static Napi::Value OpLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].ToString().Utf8Value();
  std::string overload = info.Length() > 1 && info[1].IsString() ? info[1].ToString().Utf8Value() : "";
  auto found = c10::Dispatcher::singleton().findSchema({name, overload});
  if (!found) {
    throw Napi::Error::New(env, "no ATen operator " + name + (overload.empty() ? "" : "." + overload) +
                                    " in this libtorch (" TORCH_VERSION ")");
  }
  OpEntry e{*found, {}, 0, name + (overload.empty() ? "" : "." + overload)};
  const c10::FunctionSchema& schema = found->schema();
  Napi::Array names = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& a : schema.arguments()) {
    c10::TypePtr fake = a.type();
    c10::TypePtr real = a.real_type();
    bool optional = false;
    if (fake->kind() == c10::TypeKind::OptionalType) {
      optional = true;
      fake = fake->castRaw<c10::OptionalType>()->getElementType();
      if (real->kind() == c10::TypeKind::OptionalType) real = real->castRaw<c10::OptionalType>()->getElementType();
    }
    ArgSpec spec{KindOf(fake, real), optional, a.N() ? static_cast<int64_t>(*a.N()) : -1, a.default_value(), a.name()};
    names.Set(i++, Napi::String::New(env, a.name()));
    e.args.push_back(std::move(spec));
  }
  e.nreturns = schema.returns().size();
  g_ops.push_back(std::move(e));
  Napi::Object out = Napi::Object::New(env);
  out.Set("id", Napi::Number::New(env, static_cast<double>(g_ops.size() - 1)));
  out.Set("args", names);
  out.Set("returns", Napi::Number::New(env, static_cast<double>(g_ops.back().nreturns)));
  out.Set("schema", Napi::String::New(env, c10::toString(schema)));
  return out;
}

static int64_t ToInt(const Napi::Value& v, const ArgSpec& a) {
  if (v.IsNumber()) return v.As<Napi::Number>().Int64Value();
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Int64Value(&lossless);
  }
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? 1 : 0;
  throw Napi::TypeError::New(v.Env(), "argument '" + a.name + "': expected an integer");
}

static at::Tensor ScalarToTensor(const Napi::Value& v) {
  // A JS number where a Tensor is expected behaves as a Python number does: a
  // "wrapped number" that does not drive type promotion.
  at::Tensor t;
  if (v.IsBoolean()) {
    t = at::scalar_tensor(v.As<Napi::Boolean>().Value(), at::TensorOptions().dtype(c10::kBool));
  } else {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9.007199254740992e15)
      t = at::scalar_tensor(static_cast<int64_t>(d), at::TensorOptions().dtype(c10::kLong));
    else
      t = at::scalar_tensor(d, at::TensorOptions().dtype(c10::kDouble));
  }
  t.unsafeGetTensorImpl()->set_wrapped_number(true);
  return t;
}

static c10::IValue ToIValue(Napi::Env env, const Napi::Value& v, const ArgSpec& a) {
  if (v.IsUndefined()) {
    if (a.defaultValue) return *a.defaultValue;
    if (a.optional) return c10::IValue();
    throw Napi::TypeError::New(env, "argument '" + a.name + "' is required");
  }
  if (v.IsNull()) {
    if (a.optional) return c10::IValue();
    throw Napi::TypeError::New(env, "argument '" + a.name + "' may not be null");
  }
  switch (a.kind) {
    case Kind::Tensor:
      if (v.IsNumber() || v.IsBoolean()) return ScalarToTensor(v);
      return TensorWrap::Get(v, a.name.c_str());
    case Kind::Int:
      return ToInt(v, a);
    case Kind::Float:
      return v.ToNumber().DoubleValue();
    case Kind::Bool:
      return v.ToBoolean().Value();
    case Kind::Scalar: {
      if (v.IsBoolean()) return c10::Scalar(v.As<Napi::Boolean>().Value());
      if (v.IsBigInt()) return c10::Scalar(ToInt(v, a));
      double d = v.ToNumber().DoubleValue();
      if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9.007199254740992e15 && !(d == 0 && std::signbit(d)))
        return c10::Scalar(static_cast<int64_t>(d));
      return c10::Scalar(d);
    }
    case Kind::String:
      return v.ToString().Utf8Value();
    case Kind::Device:
      return ParseDevice(env, v);
    case Kind::ScalarTypeK:
      if (v.IsString()) return static_cast<int64_t>(ParseDType(env, v));
      return ToInt(v, a);
    case Kind::IntList: {
      if (v.IsNumber()) {
        int64_t x = v.As<Napi::Number>().Int64Value();
        return std::vector<int64_t>(a.listN > 0 ? a.listN : 1, x);
      }
      return ParseInts(env, v, a.name.c_str());
    }
    case Kind::FloatList: {
      Napi::Array arr = v.As<Napi::Array>();
      std::vector<double> out(arr.Length());
      for (uint32_t i = 0; i < arr.Length(); i++) out[i] = arr.Get(i).ToNumber().DoubleValue();
      return out;
    }
    case Kind::BoolList: {
      Napi::Array arr = v.As<Napi::Array>();
      c10::List<bool> out;
      for (uint32_t i = 0; i < arr.Length(); i++) out.push_back(arr.Get(i).ToBoolean().Value());
      return out;
    }
    case Kind::TensorList: {
      if (!v.IsArray()) throw Napi::TypeError::New(env, "argument '" + a.name + "': expected an array of tensors");
      Napi::Array arr = v.As<Napi::Array>();
      c10::List<at::Tensor> out;
      out.reserve(arr.Length());
      for (uint32_t i = 0; i < arr.Length(); i++) out.push_back(TensorWrap::Get(arr.Get(i), a.name.c_str()));
      return out;
    }
    case Kind::OptTensorList: {
      if (!v.IsArray()) throw Napi::TypeError::New(env, "argument '" + a.name + "': expected an array of tensors or nulls");
      Napi::Array arr = v.As<Napi::Array>();
      c10::List<c10::optional<at::Tensor>> out;
      for (uint32_t i = 0; i < arr.Length(); i++) {
        Napi::Value e = arr.Get(i);
        if (e.IsNull() || e.IsUndefined())
          out.push_back(c10::nullopt);
        else
          out.push_back(TensorWrap::Get(e, a.name.c_str()));
      }
      return out;
    }
    case Kind::Generator:
      throw Napi::TypeError::New(env, "argument '" + a.name + "': explicit generators are not supported; use manualSeed()");
    case Kind::Other:
      break;
  }
  throw Napi::TypeError::New(env, "argument '" + a.name + "' has a type this binding cannot convert");
}

static Napi::Value FromIValue(Napi::Env env, const c10::IValue& v) {
  if (v.isTensor()) return TensorWrap::Make(env, v.toTensor());
  if (v.isNone()) return env.Null();
  if (v.isInt()) return Napi::Number::New(env, static_cast<double>(v.toInt()));
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isScalar()) {
    c10::Scalar s = v.toScalar();
    return Napi::Number::New(env, s.toDouble());
  }
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  if (v.isTensorList()) {
    auto l = v.toTensorList();
    Napi::Array a = Napi::Array::New(env, l.size());
    for (size_t i = 0; i < l.size(); i++) a.Set(static_cast<uint32_t>(i), TensorWrap::Make(env, l.get(i)));
    return a;
  }
  if (v.isIntList()) return IntsToJs(env, v.toIntVector());
  if (v.isTuple()) {
    const auto& elems = v.toTupleRef().elements();
    Napi::Array a = Napi::Array::New(env, elems.size());
    for (size_t i = 0; i < elems.size(); i++) a.Set(static_cast<uint32_t>(i), FromIValue(env, elems[i]));
    return a;
  }
  if (v.isList()) {
    auto l = v.toList();
    Napi::Array a = Napi::Array::New(env, l.size());
    for (size_t i = 0; i < l.size(); i++) a.Set(static_cast<uint32_t>(i), FromIValue(env, l.get(i)));
    return a;
  }
  throw Napi::Error::New(env, std::string("cannot convert a result of type ") + v.tagKind() + " to JS");
}

static OpEntry& Entry(const Napi::CallbackInfo& info, size_t i) {
  uint32_t id = info[i].As<Napi::Number>().Uint32Value();
  if (id >= g_ops.size()) throw Napi::RangeError::New(info.Env(), "unknown operator id");
  return g_ops[id];
}

static void RunOp(Napi::Env env, OpEntry& e, torch::jit::Stack& stack) {
  try {
    e.handle.callBoxed(&stack);
  } catch (const c10::Error& err) {
    // Prefix libtorch's message with the operator so the JS error says where it failed.
    Napi::Error jsErr = Napi::Error::New(env, e.fullName + ": " + err.what_without_backtrace());
    std::string msg = err.what_without_backtrace();
    if (msg.find("not enough memory") != std::string::npos || msg.find("out of memory") != std::string::npos)
      jsErr.Set("code", Napi::String::New(env, "ERR_TORCH_OUT_OF_MEMORY"));
    throw jsErr;
  }
}

// op(id, ...args): call operator `id`; returns a handle, a number, or an array for
// multiple returns.
static Napi::Value OpCall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OpEntry& e = Entry(info, 0);
  torch::jit::Stack stack;
  stack.reserve(std::max(e.args.size(), e.nreturns));
  size_t given = info.Length() - 1;
  for (size_t i = 0; i < e.args.size(); i++) {
    stack.emplace_back(ToIValue(env, i < given ? info[i + 1] : env.Undefined(), e.args[i]));
  }
  RunOp(env, e, stack);
  if (stack.size() == 1) return FromIValue(env, stack[0]);
  if (stack.empty()) return env.Undefined();
  Napi::Array out = Napi::Array::New(env, stack.size());
  for (size_t i = 0; i < stack.size(); i++) out.Set(static_cast<uint32_t>(i), FromIValue(env, stack[i]));
  return out;
}

// chain(input, steps): run several single-output operators in one crossing. Each
// step is [id, ...args]; an argument equal to the `PREV` marker takes the previous
// step's output (the first step's PREV is `input`). Used by fused Sequential forward.
static Napi::ObjectReference* g_prev = nullptr;

static Napi::Value Chain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Tensor cur = TensorWrap::Get(info[0], "chain input");
  Napi::Array steps = info[1].As<Napi::Array>();
  Napi::Object prev = g_prev->Value();
  torch::jit::Stack stack;
  for (uint32_t s = 0; s < steps.Length(); s++) {
    Napi::Array step = steps.Get(s).As<Napi::Array>();
    uint32_t id = step.Get(0u).As<Napi::Number>().Uint32Value();
    if (id >= g_ops.size()) throw Napi::RangeError::New(env, "unknown operator id");
    OpEntry& e = g_ops[id];
    stack.clear();
    uint32_t given = step.Length() - 1;
    for (size_t i = 0; i < e.args.size(); i++) {
      Napi::Value v = i < given ? step.Get(static_cast<uint32_t>(i + 1)) : env.Undefined();
      if (v.IsObject() && v.StrictEquals(prev))
        stack.emplace_back(cur);
      else
        stack.emplace_back(ToIValue(env, v, e.args[i]));
    }
    RunOp(env, e, stack);
    if (stack.empty() || !stack[0].isTensor()) throw Napi::Error::New(env, "chain: " + e.fullName + " did not return a tensor");
    cur = stack[0].toTensor();
  }
  return TensorWrap::Make(env, std::move(cur));
}

void InitDispatch(Napi::Env env, Napi::Object exports) {
  ACC_FN(exports, "opLookup", OpLookup);
  ACC_FN(exports, "op", OpCall);
  ACC_FN(exports, "chain", Chain);
  Napi::Object prev = Napi::Object::New(env);
  g_prev = new Napi::ObjectReference(Napi::Persistent(prev));
  exports.Set("PREV", prev);
}

}  // namespace acc
