// TorchScript: load a module saved by Python's torch.jit.save, call its methods, and
// expose its parameters and buffers as ordinary tensor handles (the same TensorImpls
// the script module uses, so autograd and in-place optimizer steps reach it).
#include "common.h"

#include <ATen/core/ivalue.h>
#include <ATen/core/jit_type.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/serialization/import.h>

#include <cctype>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

namespace acc {

namespace {

std::string TypeName(const c10::TypePtr& t) { return t->annotation_str(); }

[[noreturn]] void ArgError(Napi::Env env, const std::string& where, const c10::TypePtr& want, const char* got) {
  throw Napi::TypeError::New(env, where + ": expected " + TypeName(want) + ", got " + got);
}

const char* JsKind(const Napi::Value& v) {
  if (v.IsNull()) return "null";
  if (v.IsUndefined()) return "undefined";
  if (v.IsNumber()) return "a number";
  if (v.IsBoolean()) return "a boolean";
  if (v.IsString()) return "a string";
  if (v.IsArray()) return "an array";
  if (TensorWrap::Is(v)) return "a Tensor";
  return "an object";
}

// JS value -> IValue, directed by the TorchScript type the method's schema declares.
c10::IValue ToIValue(Napi::Env env, const Napi::Value& v, const c10::TypePtr& type, const std::string& where) {
  switch (type->kind()) {
    case c10::TypeKind::OptionalType:
      if (v.IsNull() || v.IsUndefined()) return c10::IValue();
      return ToIValue(env, v, type->containedType(0), where);
    case c10::TypeKind::NoneType:
      if (v.IsNull() || v.IsUndefined()) return c10::IValue();
      ArgError(env, where, type, JsKind(v));
    case c10::TypeKind::TensorType:
      if (!TensorWrap::Is(v)) ArgError(env, where, type, JsKind(v));
      return TensorWrap::Get(v, where.c_str());
    case c10::TypeKind::IntType: {
      if (!v.IsNumber()) ArgError(env, where, type, JsKind(v));
      double d = v.As<Napi::Number>().DoubleValue();
      if (std::trunc(d) != d) throw Napi::TypeError::New(env, where + ": expected int, got " + std::to_string(d));
      return static_cast<int64_t>(d);
    }
    case c10::TypeKind::FloatType:
      if (!v.IsNumber()) ArgError(env, where, type, JsKind(v));
      return v.As<Napi::Number>().DoubleValue();
    case c10::TypeKind::NumberType: {
      if (!v.IsNumber()) ArgError(env, where, type, JsKind(v));
      double d = v.As<Napi::Number>().DoubleValue();
      if (std::trunc(d) == d && std::fabs(d) < 9007199254740992.0) return static_cast<int64_t>(d);
      return d;
    }
    case c10::TypeKind::BoolType:
      if (!v.IsBoolean()) ArgError(env, where, type, JsKind(v));
      return v.As<Napi::Boolean>().Value();
    case c10::TypeKind::StringType:
      if (!v.IsString()) ArgError(env, where, type, JsKind(v));
      return v.As<Napi::String>().Utf8Value();
    case c10::TypeKind::ListType: {
      if (!v.IsArray()) ArgError(env, where, type, JsKind(v));
      auto arr = v.As<Napi::Array>();
      const c10::TypePtr elem = type->containedType(0);
      c10::impl::GenericList list(elem);
      for (uint32_t i = 0; i < arr.Length(); i++) list.push_back(ToIValue(env, arr.Get(i), elem, where + "[" + std::to_string(i) + "]"));
      return list;
    }
    case c10::TypeKind::TupleType: {
      if (!v.IsArray()) ArgError(env, where, type, JsKind(v));
      auto arr = v.As<Napi::Array>();
      const auto elems = type->containedTypes();
      if (arr.Length() != elems.size()) {
        throw Napi::TypeError::New(env, where + ": expected a tuple of " + std::to_string(elems.size()) + " elements, got " + std::to_string(arr.Length()));
      }
      std::vector<c10::IValue> items;
      for (uint32_t i = 0; i < arr.Length(); i++) items.push_back(ToIValue(env, arr.Get(i), elems[i], where + "[" + std::to_string(i) + "]"));
      return c10::ivalue::Tuple::create(std::move(items));
    }
    case c10::TypeKind::DictType: {
      const c10::TypePtr key = type->containedType(0);
      const c10::TypePtr val = type->containedType(1);
      if (key->kind() != c10::TypeKind::StringType) throw Napi::TypeError::New(env, where + ": only Dict[str, T] arguments can be passed from JS, not " + TypeName(type));
      if (!v.IsObject() || v.IsArray() || TensorWrap::Is(v)) ArgError(env, where, type, JsKind(v));
      auto obj = v.As<Napi::Object>();
      c10::impl::GenericDict dict(key, val);
      auto names = obj.GetPropertyNames();
      for (uint32_t i = 0; i < names.Length(); i++) {
        std::string k = names.Get(i).As<Napi::String>().Utf8Value();
        dict.insert(k, ToIValue(env, obj.Get(k), val, where + "." + k));
      }
      return dict;
    }
    default:
      break;
  }
  // Any / unannotated: infer from the JS value.
  if (v.IsNull() || v.IsUndefined()) return c10::IValue();
  if (TensorWrap::Is(v)) return TensorWrap::Get(v, where.c_str());
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value();
  if (v.IsString()) return v.As<Napi::String>().Utf8Value();
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::trunc(d) == d && std::fabs(d) < 9007199254740992.0) return static_cast<int64_t>(d);
    return d;
  }
  throw Napi::TypeError::New(env, where + ": cannot pass " + JsKind(v) + " as " + TypeName(type));
}

Napi::Value FromIValue(Napi::Env env, const c10::IValue& v) {
  if (v.isNone()) return env.Null();
  if (v.isTensor()) return TensorWrap::Make(env, v.toTensor());
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isInt()) return Napi::Number::New(env, static_cast<double>(v.toInt()));
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  if (v.isTuple()) {
    const auto& elems = v.toTupleRef().elements();
    auto a = Napi::Array::New(env, elems.size());
    for (size_t i = 0; i < elems.size(); i++) a.Set(static_cast<uint32_t>(i), FromIValue(env, elems[i]));
    return a;
  }
  if (v.isList()) {
    auto l = v.toListRef();
    auto a = Napi::Array::New(env, l.size());
    for (size_t i = 0; i < l.size(); i++) a.Set(static_cast<uint32_t>(i), FromIValue(env, l[i]));
    return a;
  }
  if (v.isGenericDict()) {
    auto o = Napi::Object::New(env);
    for (const auto& entry : v.toGenericDict()) {
      const c10::IValue& k = entry.key();
      std::string key = k.isString() ? k.toStringRef() : k.isInt() ? std::to_string(k.toInt()) : "";
      if (key.empty() && !k.isString()) throw Napi::TypeError::New(env, "TorchScript result: dict keys must be str or int to become a JS object");
      o.Set(key, FromIValue(env, entry.value()));
    }
    return o;
  }
  throw Napi::TypeError::New(env, std::string("TorchScript result of type ") + v.tagKind() + " cannot be converted to JS");
}

}  // namespace

// A loaded torch::jit::Module.
class ScriptModuleWrap : public Napi::ObjectWrap<ScriptModuleWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "NativeScriptModule",
                                      {
                                          InstanceMethod<&ScriptModuleWrap::Run>("run"),
                                          InstanceMethod<&ScriptModuleWrap::Schema>("schema"),
                                          InstanceMethod<&ScriptModuleWrap::MethodNames>("methodNames"),
                                          InstanceMethod<&ScriptModuleWrap::NamedParameters>("namedParameters"),
                                          InstanceMethod<&ScriptModuleWrap::NamedBuffers>("namedBuffers"),
                                          InstanceMethod<&ScriptModuleWrap::Train>("train"),
                                          InstanceMethod<&ScriptModuleWrap::IsTraining>("isTraining"),
                                          InstanceMethod<&ScriptModuleWrap::Save>("save"),
                                      });
    exports.Set("NativeScriptModule", ctor);
    ctor_ = new Napi::FunctionReference(Napi::Persistent(ctor));
  }

  // A JS NativeScriptModule over a module built in C++ (jitTrace).
  static Napi::Value FromModule(Napi::Env env, torch::jit::Module m) {
    auto ext = Napi::External<torch::jit::Module>::New(env, new torch::jit::Module(std::move(m)), [](Napi::Env, torch::jit::Module* p) { delete p; });
    return ctor_->New({ext});
  }

  // new NativeScriptModule(path, device?)
  explicit ScriptModuleWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ScriptModuleWrap>(info) {
    Napi::Env env = info.Env();
    if (info[0].IsExternal()) {
      module_ = *info[0].As<Napi::External<torch::jit::Module>>().Data();
      return;
    }
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "jit.load: path must be a string");
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    try {
      if (info.Length() > 1 && info[1].IsString()) module_ = torch::jit::load(path, ParseDevice(env, info[1]));
      else module_ = torch::jit::load(path);
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      Rethrow(env);
    }
  }

 private:
  static Napi::FunctionReference* ctor_;
  torch::jit::Module module_;

  template <typename F>
  Napi::Value Guard(const Napi::CallbackInfo& info, F&& f) {
    try {
      return f();
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      Rethrow(info.Env());
    }
  }

  const torch::jit::Method MethodOf(Napi::Env env, const std::string& name) {
    auto m = module_.find_method(name);
    if (!m) throw Napi::Error::New(env, "TorchScript module has no method '" + name + "'");
    return *m;
  }

  // run(name, args[]): call a method; arguments are converted by its schema.
  Napi::Value Run(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      const std::string name = info[0].As<Napi::String>().Utf8Value();
      auto method = MethodOf(env, name);
      const auto& schema = method.function().getSchema();
      const auto& formals = schema.arguments();  // formals[0] is self
      auto args = info[1].As<Napi::Array>();
      if (args.Length() + 1 > formals.size()) {
        throw Napi::TypeError::New(env, name + "() takes " + std::to_string(formals.size() - 1) + " argument(s) but " + std::to_string(args.Length()) + " were given");
      }
      std::vector<c10::IValue> stack;
      stack.reserve(args.Length());
      for (uint32_t i = 0; i < args.Length(); i++) {
        const auto& f = formals[i + 1];
        stack.push_back(ToIValue(env, args.Get(i), f.type(), name + "(): argument '" + f.name() + "'"));
      }
      // Missing trailing arguments take the schema's defaults.
      return FromIValue(env, method(std::move(stack)));
    });
  }

  // schema(name): the TorchScript signature, e.g. "forward(__torch__.Net self, Tensor x) -> Tensor".
  Napi::Value Schema(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      std::ostringstream s;
      s << MethodOf(info.Env(), info[0].As<Napi::String>().Utf8Value()).function().getSchema();
      return Napi::String::New(info.Env(), s.str());
    });
  }

  Napi::Value MethodNames(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      auto methods = module_.get_methods();
      auto a = Napi::Array::New(info.Env(), methods.size());
      for (size_t i = 0; i < methods.size(); i++) a.Set(static_cast<uint32_t>(i), Napi::String::New(info.Env(), methods[i].name()));
      return a;
    });
  }

  template <typename List>
  static Napi::Value NamedList(Napi::Env env, const List& list) {
    auto a = Napi::Array::New(env);
    uint32_t i = 0;
    for (const auto& item : list) {
      auto pair = Napi::Array::New(env, 2);
      pair.Set(0u, Napi::String::New(env, item.name));
      pair.Set(1u, TensorWrap::Make(env, item.value));
      a.Set(i++, pair);
    }
    return a;
  }

  // namedParameters(): [[dotted name, handle]] of the module's own tensors (not copies).
  Napi::Value NamedParameters(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value { return NamedList(info.Env(), module_.named_parameters(/*recurse=*/true)); });
  }
  Napi::Value NamedBuffers(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value { return NamedList(info.Env(), module_.named_buffers(/*recurse=*/true)); });
  }

  Napi::Value Train(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      module_.train(info[0].ToBoolean().Value());
      return info.Env().Undefined();
    });
  }
  Napi::Value IsTraining(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value { return Napi::Boolean::New(info.Env(), module_.is_training()); });
  }

  // save(path): torch.jit.save, so Python (or this addon) can load the trained module.
  Napi::Value Save(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      module_.save(info[0].As<Napi::String>().Utf8Value());
      return info.Env().Undefined();
    });
  }
};

Napi::FunctionReference* ScriptModuleWrap::ctor_ = nullptr;

namespace {

// A TorchScript identifier from a JS class name ("MyNet$1" -> "MyNet_1").
std::string Identifier(std::string s) {
  for (auto& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') c = '_';
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) s = "Module_" + s;
  return s;
}

// spec = { className, training, params: [[name, handle]], buffers: [[name, handle]],
// children: [[name, spec]] } -> a torch::jit::Module whose attributes ARE those tensors.
torch::jit::Module BuildModule(Napi::Env env, const Napi::Object& spec, const std::shared_ptr<torch::jit::CompilationUnit>& cu) {
  const std::string cls = Identifier(spec.Get("className").ToString().Utf8Value());
  torch::jit::Module m(c10::QualifiedName("__torch__." + cls), cu, /*shouldMangle=*/true);
  m.register_attribute("training", c10::BoolType::get(), spec.Get("training").ToBoolean().Value());
  auto params = spec.Get("params").As<Napi::Array>();
  for (uint32_t i = 0; i < params.Length(); i++) {
    auto pair = params.Get(i).As<Napi::Array>();
    const std::string name = pair.Get(0u).ToString().Utf8Value();
    m.register_parameter(name, TensorWrap::Get(pair.Get(1u), name.c_str()), /*is_buffer=*/false);
  }
  auto buffers = spec.Get("buffers").As<Napi::Array>();
  for (uint32_t i = 0; i < buffers.Length(); i++) {
    auto pair = buffers.Get(i).As<Napi::Array>();
    const std::string name = pair.Get(0u).ToString().Utf8Value();
    m.register_buffer(name, TensorWrap::Get(pair.Get(1u), name.c_str()));
  }
  auto children = spec.Get("children").As<Napi::Array>();
  for (uint32_t i = 0; i < children.Length(); i++) {
    auto pair = children.Get(i).As<Napi::Array>();
    m.register_module(pair.Get(0u).ToString().Utf8Value(), BuildModule(env, pair.Get(1u).As<Napi::Object>(), cu));
  }
  return m;
}

// jitTrace(spec, inputs[], fn, argNames[]) -> NativeScriptModule. `fn(handles[])` runs
// the JS forward synchronously while libtorch's tracer records every dispatched op; the
// graph becomes `forward` of the module built from `spec`, as torch.jit.trace_module does
// (tracer::trace inlines, fixes up scopes and normalizes ops; then create_function + addMethod).
Napi::Value JitTrace(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  torch::jit::Module self = BuildModule(env, info[0].As<Napi::Object>(), cu);
  auto jsInputs = info[1].As<Napi::Array>();
  torch::jit::Stack inputs;
  for (uint32_t i = 0; i < jsInputs.Length(); i++) inputs.emplace_back(TensorWrap::Get(jsInputs.Get(i), "trace input"));
  Napi::Function fn = info[2].As<Napi::Function>();
  std::vector<std::string> argNames;
  if (info.Length() > 3 && info[3].IsArray()) {
    auto names = info[3].As<Napi::Array>();
    for (uint32_t i = 0; i < names.Length(); i++) argNames.push_back(names.Get(i).ToString().Utf8Value());
  }
  auto traced = [&](torch::jit::Stack in) -> torch::jit::Stack {
    if (!torch::jit::tracer::isTracing()) throw Napi::Error::New(env, "jit.trace: the tracer is not active");
    auto args = Napi::Array::New(env, in.size());
    for (size_t i = 0; i < in.size(); i++) args.Set(static_cast<uint32_t>(i), TensorWrap::Make(env, in[i].toTensor()));
    Napi::Value out = fn.Call({args});
    if (out.IsArray()) {
      auto arr = out.As<Napi::Array>();
      std::vector<c10::IValue> items;
      for (uint32_t i = 0; i < arr.Length(); i++) items.emplace_back(TensorWrap::Get(arr.Get(i), "trace output"));
      return {c10::ivalue::Tuple::create(std::move(items))};
    }
    return {TensorWrap::Get(out, "trace output")};
  };
  auto result = torch::jit::tracer::trace(
      std::move(inputs), traced, [](const at::Tensor&) { return std::string(); }, /*strict=*/true, /*force_outplace=*/false, &self, argNames);
  auto graph = result.first->graph;
  auto method = cu->create_function(c10::QualifiedName(*self.type()->name(), "forward"), graph);
  self.type()->addMethod(method);
  return ScriptModuleWrap::FromModule(env, std::move(self));
}

}  // namespace

void InitJit(Napi::Env env, Napi::Object exports) {
  ScriptModuleWrap::Init(env, exports);
  ACC_FN(exports, "jitTrace", JitTrace);
}

}  // namespace acc
