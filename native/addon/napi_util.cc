#include "napi_util.h"

#include <cmath>
#include <new>
#include <sstream>

namespace vt {
namespace addon {

void throw_type(const std::string& msg) { throw ArgError(ArgError::Type, msg); }
void throw_range(const std::string& msg) { throw ArgError(ArgError::Range, msg); }

int64_t TensorArg::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

bool TensorArg::contiguous() const {
  int64_t expect = 1;
  for (int d = ndim() - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != expect) return false;
    expect *= shape[d];
  }
  return true;
}

std::string TensorArg::shape_str() const {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < shape.size(); ++i) o << (i ? ", " : "") << shape[i];
  o << "]";
  return o.str();
}

namespace {

Napi::FunctionReference& storage_ctor() {
  static Napi::FunctionReference* r = new Napi::FunctionReference();
  return *r;
}

}  // namespace

// The JS handle of a Storage. The TS Tensor layer counts the tensors sharing one handle and
// calls release() when the last is disposed. A handle nobody disposes is freed by this object's
// own GC finalizer (the destructor): no FinalizationRegistry, so nothing but V8 tracks it.
//
// Results left to the garbage collector (issue 15). V8 frees native memory only when told about
// it, and then only in a full (mark-compact) collection: attach() reports the bytes
// (AdjustExternalMemory), and V8 starts a collection per ~64 MiB of reported growth, as it does
// for its own ArrayBuffers. What a loop of undisposed results paid, measured with 1024^2 matmul
// results (4 MiB) and 16 x 1024 x 80 window-attention outputs (5 MiB per 5 ms call):
//  - fresh pages: each batch the collection freed was more than the allocator cache kept, so the
//    next batch was page-faulted in again (80-560 faults per result). Fixed in storage.cc.
//  - the collections themselves: ~9 ms of main-thread marking per collection on a 7 MB heap,
//    every 13-16 results: 4-15% of the CPU time of these loops (none when disposed).
// Blocks the allocator recycled from its cache are not reported (Storage::recycled, up to a
// budget of 192 MiB in use): they were already the process's, so taking them does not grow it,
// and V8 then collects per ~256 MiB of results instead of per 64 MiB. The cost is bounded: at
// most the budget of dead results waits beyond what V8 would let wait (a loop of 4 MiB results
// peaks at ~390 MiB of native memory instead of ~200). Once a typed-array view exists, V8 counts
// the bytes through that ArrayBuffer itself (test/tensor.test.ts checks that viewed, undisposed
// tensors are still collected), so the handle withdraws its own report rather than have V8 count
// them twice and collect twice as often.
// A collected handle never detaches its ArrayBuffer (issue 14, item 9): a typed array the user
// still holds keeps the memory alive through the buffer's own reference (keep_ below), so
// `const c = matmulSync(a, b).data` stays valid for as long as c is reachable. Only an explicit
// dispose() detaches, because then the user asked for the memory back now.
class StorageWrap : public Napi::ObjectWrap<StorageWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function c = DefineClass(env, "Storage",
                                   {InstanceMethod("release", &StorageWrap::Release),
                                    InstanceMethod("arrayBuffer", &StorageWrap::ArrayBufferView),
                                    InstanceAccessor("bytes", &StorageWrap::Bytes, nullptr),
                                    InstanceAccessor("device", &StorageWrap::Device, nullptr),
                                    InstanceAccessor("released", &StorageWrap::Released, nullptr)});
    storage_ctor() = Napi::Persistent(c);
    exports.Set("Storage", c);
  }
  explicit StorageWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StorageWrap>(info) {}
  // The GC finalizer: drops this handle's reference and its report, never detaches (see above).
  ~StorageWrap() override {
    storage_collection_seen();  // before drop: this storage's own count ends with the period
    drop(false);
  }

  void attach(Napi::Env env, StoragePtr s) {
    storage_ = std::move(s);
    env_ = env;
    // File mappings are paged in and out by the kernel, and a recycled block was already the
    // process's (the class comment says why it is not reported).
    reported_ = storage_->owner || storage_->recycled ? 0 : int64_t(storage_->bytes);
    if (storage_->device < 0 && reported_) Napi::MemoryManagement::AdjustExternalMemory(env, reported_);
  }
  const StoragePtr& storage() const { return storage_; }

 private:
  void unreport() {
    if (reported_ && storage_ && storage_->device < 0 && env_) Napi::MemoryManagement::AdjustExternalMemory(env_, -reported_);
    reported_ = 0;
  }
  // detach (explicit release only): the storage's ArrayBuffer is detached, so its typed-array
  // views become empty and the memory is freed now (once work in flight, which holds its own
  // reference, is done). Without detach (the GC finalizer, where no JS may run) the buffer keeps
  // its own reference and lives on while anything can read it.
  void drop(bool detach) {
    unreport();
    if (detach && !view_.IsEmpty()) {
      Napi::ArrayBuffer ab = view_.Value();
      if (!ab.IsDetached()) ab.Detach();
      // The detached buffer can no longer be read, so its finalizer (which runs whenever V8
      // collects it) need not keep the memory: drop that reference now. view_ still holds the
      // buffer strongly here, so keep_ is alive.
      if (keep_) keep_->reset();
    }
    keep_ = nullptr;
    storage_.reset();
    view_.Reset();
  }
  Napi::Value Release(const Napi::CallbackInfo& info) {
    drop(true);
    return info.Env().Undefined();
  }
  Napi::Value Bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), storage_ ? double(storage_->bytes) : 0.0);
  }
  Napi::Value Device(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), storage_ ? storage_->device : -1);
  }
  Napi::Value Released(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !storage_); }

  // One external ArrayBuffer per storage (V8 must not see two buffers over the same memory).
  // Its finalizer holds a reference to the storage, so views stay valid after release().
  Napi::Value ArrayBufferView(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!storage_) {
      Napi::TypeError::New(env, "tensor storage has been disposed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (storage_->device >= 0) {
      Napi::TypeError::New(env, "a CUDA tensor has no CPU view: copy it with .to('cpu') first")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!view_.IsEmpty()) return view_.Value();
    auto* keep = new StoragePtr(storage_);
    napi_value ab;
    napi_status st = napi_create_external_arraybuffer(
        env, storage_->data, storage_->bytes,
        [](napi_env, void*, void* hint) { delete static_cast<StoragePtr*>(hint); }, keep, &ab);
    if (st != napi_ok) {
      delete keep;
      std::ostringstream o;
      o << "Expected a tensor small enough for a JS ArrayBuffer view but received one of " << storage_->bytes
        << " bytes; read it in slices (tensor.slice(...).toArray())";
      Napi::RangeError::New(env, o.str()).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::ArrayBuffer buf(env, ab);
    view_ = Napi::Persistent(buf);
    keep_ = keep;
    // V8 now counts these bytes as the buffer's backing store (and stops when it is detached or
    // collected): withdraw the handle's own report so that they press on the GC once, not twice.
    unreport();
    return buf;
  }

  StoragePtr storage_;
  napi_env env_ = nullptr;
  int64_t reported_ = 0;
  Napi::Reference<Napi::ArrayBuffer> view_;
  StoragePtr* keep_ = nullptr;  // owned by the ArrayBuffer's finalizer; valid while view_ is set
};

Napi::Object wrap_storage(Napi::Env env, StoragePtr s) {
  Napi::Object o = storage_ctor().New({});
  StorageWrap::Unwrap(o)->attach(env, std::move(s));
  return o;
}

static bool is_int(double v) { return std::isfinite(v) && std::floor(v) == v; }

TensorArg tensor_arg(const Napi::Value& v, const std::string& name) {
  if (!v.IsObject()) throw_type("Expected a Tensor for " + name + " but received " + (v.IsUndefined() ? "undefined" : v.IsNull() ? "null" : "a value of another type"));
  Napi::Object o = v.As<Napi::Object>();
  Napi::Value h = o.Get("h");
  if (!h.IsObject() || !h.As<Napi::Object>().InstanceOf(storage_ctor().Value()))
    throw_type("Expected a Tensor for " + name + " but received an object that is not one");
  StorageWrap* w = StorageWrap::Unwrap(h.As<Napi::Object>());
  if (!w->storage()) throw_type("Expected a live Tensor for " + name + " but it has been disposed");
  TensorArg t;
  t.name = name;
  t.storage = w->storage();
  double dt = o.Get("dt").ToNumber().DoubleValue();
  if (!is_int(dt) || !dtype_valid(int32_t(dt))) throw_type("Invalid dtype code for " + name);
  t.dtype = DType(int32_t(dt));
  Napi::Value sh = o.Get("shape"), st = o.Get("strides");
  if (!sh.IsArray() || !st.IsArray()) throw_type("Invalid tensor descriptor for " + name);
  Napi::Array sa = sh.As<Napi::Array>(), ta = st.As<Napi::Array>();
  if (sa.Length() != ta.Length() || sa.Length() > 16) throw_type("Invalid tensor descriptor for " + name);
  for (uint32_t i = 0; i < sa.Length(); ++i) {
    double d = sa.Get(i).ToNumber().DoubleValue(), s = ta.Get(i).ToNumber().DoubleValue();
    if (!is_int(d) || d < 0 || !is_int(s)) throw_type("Invalid tensor descriptor for " + name);
    t.shape.push_back(int64_t(d));
    t.strides.push_back(int64_t(s));
  }
  double off = o.Get("off").ToNumber().DoubleValue();
  if (!is_int(off) || off < 0) throw_type("Invalid tensor descriptor for " + name);
  t.offset = int64_t(off);
  // The view must lie inside its storage: the TS layer guarantees it; check it anyway, since an
  // out-of-bounds view would read foreign memory.
  const int64_t es = int64_t(dtype_size(t.dtype));
  int64_t lo = t.offset, hi = t.offset;
  bool empty = false;
  for (int d = 0; d < t.ndim(); ++d) {
    if (t.shape[d] == 0) empty = true;
    int64_t span = (t.shape[d] - 1) * t.strides[d];
    if (span > 0) hi += span; else lo += span;
  }
  if (!empty && (lo < 0 || (hi + 1) * es > int64_t(t.storage->bytes)))
    throw_range("The view of " + name + " reaches outside its storage");
  return t;
}

void require_dtype(const TensorArg& t, std::initializer_list<DType> ok) {
  for (DType d : ok)
    if (d == t.dtype) return;
  std::string names;
  for (DType d : ok) names += (names.empty() ? "" : " or ") + std::string(dtype_name(d));
  throw_type("Expected dtype " + names + " for " + t.name + " but received " + dtype_name(t.dtype));
}

TensorArg contiguous_arg(const Napi::Value& v, const std::string& name, std::initializer_list<DType> dtypes, int ndim,
                         const char* layout) {
  TensorArg t = tensor_arg(v, name);
  require_dtype(t, dtypes);
  require_ndim(t, ndim, layout);
  require_contiguous(t);
  return t;
}

void require_contiguous(const TensorArg& t) {
  if (!t.contiguous())
    throw_type("Expected a contiguous tensor for " + t.name + " but received a strided view; call .contiguous() first");
}

void require_cpu(const TensorArg& t) {
  if (!t.on_cpu()) throw_type("Expected a CPU tensor for " + t.name + " but received a CUDA tensor");
}

void require_ndim(const TensorArg& t, int ndim, const char* layout) {
  if (t.ndim() != ndim)
    throw_range("Expected " + std::to_string(ndim) + " dimensions " + layout + " for " + t.name + " but received shape " +
                t.shape_str());
}

void throw_js(Napi::Env env, const std::exception& e) {
  if (auto* a = dynamic_cast<const ArgError*>(&e)) {
    if (a->kind == ArgError::Type)
      Napi::TypeError::New(env, a->what()).ThrowAsJavaScriptException();
    else
      Napi::RangeError::New(env, a->what()).ThrowAsJavaScriptException();
  } else if (dynamic_cast<const std::invalid_argument*>(&e)) {
    Napi::RangeError::New(env, e.what()).ThrowAsJavaScriptException();
  } else if (dynamic_cast<const std::bad_alloc*>(&e)) {
    Napi::RangeError::New(env, "Out of memory: the native allocation failed").ThrowAsJavaScriptException();
  } else {
    Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
  }
}

namespace {

class JobWorker : public Napi::AsyncWorker {
 public:
  JobWorker(Napi::Env env, std::function<void()> exec, std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env, "videothinker"), deferred_(Napi::Promise::Deferred::New(env)),
        exec_(std::move(exec)), done_(std::move(done)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      exec_();
    } catch (const ArgError& e) {
      kind_ = e.kind == ArgError::Type ? 1 : 2;
      SetError(e.what());
    } catch (const std::invalid_argument& e) {
      kind_ = 2;
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      kind_ = 2;
      SetError("Out of memory: the native allocation failed");
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("unknown native error");
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(done_(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(Napi::Error::New(env, e.what()).Value());
    }
    exec_ = nullptr;
    done_ = nullptr;
  }
  void OnError(const Napi::Error& e) override {
    Napi::Env env = Env();
    std::string msg = e.Message();
    Napi::Error err = kind_ == 1 ? Napi::TypeError::New(env, msg)
                      : kind_ == 2 ? Napi::RangeError::New(env, msg)
                                   : Napi::Error::New(env, msg);
    deferred_.Reject(err.Value());
    exec_ = nullptr;
    done_ = nullptr;
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> exec_;
  std::function<Napi::Value(Napi::Env)> done_;
  int kind_ = 0;
};

}  // namespace

Napi::Value run_job(Napi::Env env, bool async, std::function<void()> exec,
                    std::function<Napi::Value(Napi::Env)> done) {
  if (async) {
    auto* w = new JobWorker(env, std::move(exec), std::move(done));
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }
  exec();
  return done(env);
}

std::vector<InitFn>& registry() {
  static std::vector<InitFn>* r = new std::vector<InitFn>();
  return *r;
}

Napi::Function fn(Napi::Env env, const char* name, std::function<Napi::Value(const Napi::CallbackInfo&)> body) {
  return Napi::Function::New(
      env,
      [body](const Napi::CallbackInfo& info) -> Napi::Value {
        try {
          return body(info);
        } catch (const Napi::Error&) {
          throw;
        } catch (const std::exception& e) {
          throw_js(info.Env(), e);
          return info.Env().Undefined();
        }
      },
      name);
}

void init_storage_class(Napi::Env env, Napi::Object exports) { StorageWrap::Init(env, exports); }

}  // namespace addon
}  // namespace vt
