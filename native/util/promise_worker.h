// Runs a blocking system call on libuv's pool (never on the JS thread) and settles a promise.
#pragma once

#include <napi.h>

#include <functional>
#include <string>

#include "util/errors.h"

namespace tfs {

class PromiseWorker final : public Napi::AsyncWorker {
 public:
  using Work = std::function<int()>;  // runs on the pool; returns 0 or an errno
  // The same, for work of several calls: it names the one that failed.
  using NamedWork = std::function<int(const char** syscall)>;
  using Done = std::function<Napi::Value(Napi::Env)>;  // runs on the JS thread after success

  static Napi::Promise Run(Napi::Env env, const char* syscall, std::string path, Work work, Done done) {
    return Run(env, syscall, std::move(path), NamedWork([work = std::move(work)](const char**) { return work(); }),
               std::move(done));
  }
  static Napi::Promise Run(Napi::Env env, const char* syscall, std::string path, NamedWork work, Done done) {
    auto* worker = new PromiseWorker(env, syscall, std::move(path), std::move(work), std::move(done));
    Napi::Promise promise = worker->deferred_.Promise();
    worker->Queue();
    return promise;
  }

 private:
  PromiseWorker(Napi::Env env, const char* syscall, std::string path, NamedWork work, Done done)
      : Napi::AsyncWorker(env, "3fs-client"),
        deferred_(Napi::Promise::Deferred::New(env)),
        syscall_(syscall),
        path_(std::move(path)),
        work_(std::move(work)),
        done_(std::move(done)) {}

  void Execute() override { err_ = work_(&syscall_); }
  void OnOK() override {
    if (err_ != 0) {
      deferred_.Reject(ErrnoError(Env(), err_, syscall_, path_).Value());
      return;
    }
    Napi::Value value = done_ ? done_(Env()) : Env().Undefined();
    if (Env().IsExceptionPending())
      deferred_.Reject(Env().GetAndClearPendingException().Value());
    else
      deferred_.Resolve(value);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  Napi::Promise::Deferred deferred_;
  const char* syscall_;
  std::string path_;
  NamedWork work_;
  Done done_;
  int err_ = 0;
};

}  // namespace tfs
