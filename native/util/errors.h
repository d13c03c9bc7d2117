// Errors handed to JS carry `code` (an errno name such as EIO, or ERR_... for our own checks),
// and for system errors `errno` (negative, as node:fs does), `syscall` and `path`. The JS layer
// turns them into ThreeFSError.
#pragma once

#include <napi.h>
#include <uv.h>

#include <string>

namespace tfs {

inline Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& path) {
  std::string message = std::string(uv_err_name(-err)) + ": " + uv_strerror(-err) + ", " + syscall;
  if (!path.empty()) message += " '" + path + "'";
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("code", Napi::String::New(env, uv_err_name(-err)));
  e.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) e.Set("path", Napi::String::New(env, path));
  return e;
}

inline Napi::Error CodeError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

// A bad op within a batch: says which op and which file.
inline Napi::Error OpError(Napi::Env env, const char* code, size_t index, const std::string& path,
                           const std::string& message) {
  Napi::Error e = CodeError(env, code, "op " + std::to_string(index) + ": " + message);
  e.Set("index", Napi::Number::New(env, static_cast<double>(index)));
  if (!path.empty()) e.Set("path", Napi::String::New(env, path));
  return e;
}

}  // namespace tfs
