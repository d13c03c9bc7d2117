#include "util/key_ids.h"

#include <dlfcn.h>

#include <cstring>
#include <string>

#include "util/errors.h"

namespace tfs {
namespace {

using Sha256Fn = unsigned char* (*)(const unsigned char* data, size_t length, unsigned char* digest);

// OpenSSL's one-shot SHA256(), from whatever the process has loaded (Node's own OpenSSL).
Sha256Fn Sha256() {
  static const Sha256Fn fn = reinterpret_cast<Sha256Fn>(dlsym(RTLD_DEFAULT, "SHA256"));
  return fn;
}

constexpr size_t kIdBytes = 16;
constexpr size_t kDigestBytes = 32;

}  // namespace

bool KeyIdsAvailable() { return Sha256() != nullptr; }

Napi::Value KeyIds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsArray() || !info[2].IsTypedArray())
    throw CodeError(env, "ERR_INVALID_ARG_TYPE", "keyIds(prefix: Uint8Array, keys: (string | Uint8Array)[], out: Uint8Array)");
  Napi::TypedArray prefix_ta = info[0].As<Napi::TypedArray>(), out_ta = info[2].As<Napi::TypedArray>();
  if (prefix_ta.TypedArrayType() != napi_uint8_array || out_ta.TypedArrayType() != napi_uint8_array)
    throw CodeError(env, "ERR_INVALID_ARG_TYPE", "keyIds: prefix and out must be Uint8Arrays");
  Napi::Array keys = info[1].As<Napi::Array>();
  const uint32_t n = keys.Length();
  if (out_ta.ByteLength() != static_cast<size_t>(n) * kIdBytes)
    throw CodeError(env, "ERR_INVALID_ARG_VALUE", "keyIds: out must hold 16 bytes per key");
  Napi::Uint8Array prefix = prefix_ta.As<Napi::Uint8Array>();
  uint8_t* out = out_ta.As<Napi::Uint8Array>().Data();
  const Sha256Fn sha256 = Sha256();
  if (sha256 == nullptr) throw CodeError(env, "ERR_NOT_SUPPORTED", "keyIds: this process has no SHA256");

  // prefix || key, one buffer reused for every key: checked first, hashed into `out` only once
  // every key is known good, so a bad key leaves `out` as it was.
  std::string message(reinterpret_cast<const char*>(prefix.Data()), prefix.ByteLength());
  const size_t head = message.size();
  std::string digests(static_cast<size_t>(n) * kDigestBytes, '\0');
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value key = keys.Get(i);
    message.resize(head);
    if (key.IsString()) {
      size_t length = 0;
      napi_status s = napi_get_value_string_utf8(env, key, nullptr, 0, &length);
      if (s != napi_ok) throw CodeError(env, "ERR_INVALID_ARG_TYPE", "keyIds: key " + std::to_string(i) + " is not a string");
      message.resize(head + length + 1);  // room for the terminator napi writes
      napi_get_value_string_utf8(env, key, &message[head], length + 1, &length);
      message.resize(head + length);
    } else if (key.IsTypedArray() && key.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
      Napi::Uint8Array bytes = key.As<Napi::Uint8Array>();
      message.append(reinterpret_cast<const char*>(bytes.Data()), bytes.ByteLength());
    } else {
      throw CodeError(env, "ERR_INVALID_ARG_TYPE", "keyIds: key " + std::to_string(i) + " must be a string or a Uint8Array");
    }
    sha256(reinterpret_cast<const unsigned char*>(message.data()), message.size(),
           reinterpret_cast<unsigned char*>(&digests[static_cast<size_t>(i) * kDigestBytes]));
  }
  for (uint32_t i = 0; i < n; i++) memcpy(out + static_cast<size_t>(i) * kIdBytes, &digests[static_cast<size_t>(i) * kDigestBytes], kIdBytes);
  return env.Undefined();
}

}  // namespace tfs
