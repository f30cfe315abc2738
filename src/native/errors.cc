#include "errors.h"

#include <uv.h>

#include "addon.h"

namespace ipcwire {

ErrorInfo ErrorInfo::System(int errnum, const char* syscall, std::string address) {
  ErrorInfo e;
  e.type = Type::kSystem;
  e.errnum = errnum;
  e.syscall = syscall;
  e.address = std::move(address);
  return e;
}

ErrorInfo ErrorInfo::Ipc(const char* code, std::string message) {
  ErrorInfo e;
  e.type = Type::kIpc;
  e.code = code;
  e.message = std::move(message);
  return e;
}

ErrorInfo EndOfStream(size_t held) {
  if (held == 0) return ErrorInfo();
  return ErrorInfo::Ipc(codes::kTruncated, "The connection closed in the middle of a frame (" +
                                               std::to_string(held) + " bytes of it received)")
      .With("received", static_cast<double>(held));
}

namespace {

// Node words system errors two ways: uvException (listen, bind: "<syscall> <CODE>: <description> <path>")
// and exceptionWithHostPort / errnoException (connect, read, write: "<syscall> <CODE> <address>").
bool Described(const std::string& syscall) {
  return syscall == "listen" || syscall == "bind" || syscall == "chmod" || syscall == "socket" ||
         syscall == "open";
}

napi_value MakeSystem(napi_env env, const ErrorInfo& info) {
  int uv_code = uv_translate_sys_error(info.errnum);
  std::string code = uv_err_name(uv_code);
  std::string message = info.syscall + " " + code;
  if (Described(info.syscall)) message += std::string(": ") + uv_strerror(uv_code);
  if (!info.address.empty()) message += " " + info.address;

  napi_value msg, err, v;
  if (napi_create_string_utf8(env, message.c_str(), message.size(), &msg) != napi_ok) return nullptr;
  if (napi_create_error(env, nullptr, msg, &err) != napi_ok) return nullptr;
  if (napi_create_string_utf8(env, code.c_str(), code.size(), &v) == napi_ok)
    napi_set_named_property(env, err, "code", v);
  if (napi_create_int32(env, uv_code, &v) == napi_ok) napi_set_named_property(env, err, "errno", v);
  if (napi_create_string_utf8(env, info.syscall.c_str(), info.syscall.size(), &v) == napi_ok)
    napi_set_named_property(env, err, "syscall", v);
  if (!info.address.empty() &&
      napi_create_string_utf8(env, info.address.c_str(), info.address.size(), &v) == napi_ok)
    napi_set_named_property(env, err, "address", v);
  for (const auto& kv : info.numbers) {
    if (napi_create_double(env, kv.second, &v) == napi_ok) napi_set_named_property(env, err, kv.first.c_str(), v);
  }
  return err;
}

napi_value MakeIpcFallback(napi_env env, const ErrorInfo& info, napi_value props) {
  napi_value msg, code, err;
  if (napi_create_string_utf8(env, info.message.c_str(), info.message.size(), &msg) != napi_ok) return nullptr;
  if (napi_create_string_utf8(env, info.code.c_str(), info.code.size(), &code) != napi_ok) return nullptr;
  if (napi_create_error(env, code, msg, &err) != napi_ok) return nullptr;
  // napi_create_error sets .code; copy the extra properties too.
  napi_value keys;
  uint32_t n = 0;
  if (props != nullptr && napi_get_property_names(env, props, &keys) == napi_ok &&
      napi_get_array_length(env, keys, &n) == napi_ok) {
    for (uint32_t i = 0; i < n; i++) {
      napi_value k, v;
      if (napi_get_element(env, keys, i, &k) == napi_ok && napi_get_property(env, props, k, &v) == napi_ok)
        napi_set_property(env, err, k, v);
    }
  }
  return err;
}

napi_value MakeIpc(napi_env env, const ErrorInfo& info) {
  napi_value props = nullptr, v;
  if (napi_create_object(env, &props) != napi_ok) props = nullptr;
  if (props != nullptr) {
    if (!info.address.empty() &&
        napi_create_string_utf8(env, info.address.c_str(), info.address.size(), &v) == napi_ok)
      napi_set_named_property(env, props, "address", v);
    for (const auto& kv : info.numbers) {
      if (napi_create_double(env, kv.second, &v) == napi_ok) napi_set_named_property(env, props, kv.first.c_str(), v);
    }
  }
  Addon* addon = Addon::Get(Napi::Env(env));
  if (addon != nullptr && !addon->error_factory.IsEmpty() && !addon->tearing_down()) {
    napi_value argv[3], result, global;
    napi_get_global(env, &global);
    if (napi_create_string_utf8(env, info.code.c_str(), info.code.size(), &argv[0]) == napi_ok &&
        napi_create_string_utf8(env, info.message.c_str(), info.message.size(), &argv[1]) == napi_ok) {
      argv[2] = props;
      if (props == nullptr) napi_get_undefined(env, &argv[2]);
      napi_status s = napi_call_function(env, global, addon->error_factory.Value(), 3, argv, &result);
      if (s == napi_ok) return result;
      // A throwing factory must not hide the error being reported: drop its exception and fall back.
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (pending) {
        napi_value ignored;
        napi_get_and_clear_last_exception(env, &ignored);
      }
    }
  }
  return MakeIpcFallback(env, info, props);
}

}  // namespace

Napi::Value MakeError(Napi::Env env, const ErrorInfo& info) {
  napi_value err = nullptr;
  switch (info.type) {
    case ErrorInfo::Type::kSystem:
      err = MakeSystem(env, info);
      break;
    case ErrorInfo::Type::kIpc:
      err = MakeIpc(env, info);
      break;
    case ErrorInfo::Type::kNone:
      return env.Null();
  }
  if (err == nullptr) return Napi::Value();
  return Napi::Value(env, err);
}

void ThrowError(Napi::Env env, const ErrorInfo& info) {
  Napi::Value err = MakeError(env, info);
  if (err.IsEmpty()) throw Napi::Error();  // nothing can be thrown into a terminating environment
  throw Napi::Error(env, err);
}

}  // namespace ipcwire
