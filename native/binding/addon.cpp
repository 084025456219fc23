// N-API glue for the native forwarding table. Argument checks and error messages meant
// for users live in src/fastpath/*.ts; this file converts types, re-checks what would be
// unsafe to trust (buffer bounds), and throws errors built by the JS error factory so
// that every error carries its ERR_DMSC_* code and class.
#include <napi.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "relay.hpp"
#include "table.hpp"

namespace {

using dmsc::Code;
using dmsc::Table;

// The one process-wide piece: shared tables by token id, for workers to attach through.
class ShareRegistry {
 public:
  static ShareRegistry& get() {
    static ShareRegistry r;
    return r;
  }
  uint64_t add(const std::shared_ptr<Table>& t) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = tables_.begin(); it != tables_.end();)
      it = it->second.expired() ? tables_.erase(it) : std::next(it);
    uint64_t id = ++next_;
    tables_.emplace(id, t);
    return id;
  }
  std::shared_ptr<Table> find(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tables_.find(id);
    return it == tables_.end() ? nullptr : it->second.lock();
  }

 private:
  std::mutex mu_;
  std::unordered_map<uint64_t, std::weak_ptr<Table>> tables_;
  uint64_t next_ = 0;
};

class TableWrap;
class RelayWrap;

// Per-environment state (main thread or one worker): the class constructor, the error
// factory, and the live wrappers whose reader slots must be released at teardown.
struct EnvState {
  Napi::FunctionReference ctor;
  Napi::FunctionReference error_factory;
  std::unordered_set<TableWrap*> live;
  std::unordered_set<RelayWrap*> relays;  // their threads are stopped at teardown
  ~EnvState();
};

const char* code_name(Code c) {
  switch (c) {
    case Code::kOk: return "ERR_DMSC_OK";
    case Code::kInvalidName: return "ERR_DMSC_INVALID_NAME";
    case Code::kInvalidArgument: return "ERR_DMSC_INVALID_ARGUMENT";
    case Code::kOutOfRange: return "ERR_DMSC_OUT_OF_RANGE";
    case Code::kLimitExceeded: return "ERR_DMSC_LIMIT_EXCEEDED";
    case Code::kDuplicateNextHop: return "ERR_DMSC_DUPLICATE_NEXT_HOP";
    case Code::kInvalidOffsets: return "ERR_DMSC_INVALID_OFFSETS";
    case Code::kMalformedBatch: return "ERR_DMSC_MALFORMED_BATCH";
    case Code::kNoMemory: return "ERR_DMSC_NO_MEMORY";
  }
  return "ERR_DMSC_INTERNAL";
}

[[noreturn]] void throw_code(Napi::Env env, const char* code, const std::string& msg) {
  EnvState* st = env.GetInstanceData<EnvState>();
  if (st && !st->error_factory.IsEmpty()) {
    Napi::Value e = st->error_factory.Call({Napi::String::New(env, code), Napi::String::New(env, msg)});
    throw Napi::Error(env, e);
  }
  Napi::Error err = Napi::Error::New(env, msg);
  err.Set("code", Napi::String::New(env, code));
  throw err;
}

// A typed array argument of exactly the expected element type: node-addon-api's As<>
// does not check it, and a Uint8Array read as Int32Array would overrun its buffer.
template <typename T>
Napi::TypedArrayOf<T> typed(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type type,
                            const char* what) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw_code(info.Env(), "ERR_DMSC_INVALID_ARGUMENT", std::string(what) + " has the wrong type");
  return v.As<Napi::TypedArrayOf<T>>();
}

uint32_t u32(Napi::Env env, napi_value v, const char* what) {
  uint32_t out = 0;
  if (napi_get_value_uint32(env, v, &out) != napi_ok)
    throw_code(env, "ERR_DMSC_INVALID_ARGUMENT", std::string(what) + " must be a number");
  return out;
}

uint32_t u32(const Napi::CallbackInfo& info, size_t i, const char* what) { return u32(info.Env(), info[i], what); }

// Runs a method body, turning C++ exceptions into typed JS errors (an uncaught one would
// end the process).
template <typename F>
Napi::Value guarded(Napi::Env env, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw_code(env, "ERR_DMSC_NO_MEMORY", "out of memory");
  } catch (const std::exception& e) {
    throw_code(env, "ERR_DMSC_INTERNAL", e.what());
  }
}

constexpr napi_type_tag kTableTag = {0x6a1c3f0d5b2e4a71ULL, 0x9d04c8e2f1a35b66ULL};

class TableWrap : public Napi::ObjectWrap<TableWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeTable", {
      InstanceMethod<&TableWrap::Stage>("stage"),
      InstanceMethod<&TableWrap::Commit>("commit"),
      InstanceMethod<&TableWrap::Discard>("discard"),
      InstanceMethod<&TableWrap::LookupPacked>("lookupPacked"),
      InstanceMethod<&TableWrap::LookupFunction>("lookupFunction"),
      InstanceMethod<&TableWrap::SetHealth>("setHealth"),
      InstanceMethod<&TableWrap::IndexOf>("indexOf"),
      InstanceMethod<&TableWrap::HealthWords>("healthWords"),
      InstanceMethod<&TableWrap::EpochWords>("epochWords"),
      InstanceMethod<&TableWrap::TagBit>("tagBit"),
      InstanceMethod<&TableWrap::TagCount>("tagCount"),
      InstanceMethod<&TableWrap::NextHopId>("nextHopId"),
      InstanceMethod<&TableWrap::Stats>("stats"),
      InstanceMethod<&TableWrap::Entries>("entries"),
      InstanceMethod<&TableWrap::EntriesUnder>("entriesUnder"),
      InstanceMethod<&TableWrap::Size>("size"),
      InstanceMethod<&TableWrap::Generation>("generation"),
      InstanceMethod<&TableWrap::ReadersBehind>("readersBehind"),
      InstanceMethod<&TableWrap::Share>("share"),
      InstanceMethod<&TableWrap::Close>("close"),
    });
  }

  // new NativeTable() owns a new table; new NativeTable(tokenId) attaches a read view.
  explicit TableWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TableWrap>(info) {
    Napi::Env env = info.Env();
    info.This().As<Napi::Object>().TypeTag(&kTableTag);
    if (info.Length() == 0 || info[0].IsUndefined()) {
      table_ = std::make_shared<Table>();
      slot_ = &table_->owner_slot();
      owner_ = true;
    } else {
      if (!info[0].IsNumber()) throw_code(env, "ERR_DMSC_INVALID_TOKEN", "token id must be a number");
      table_ = ShareRegistry::get().find(static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()));
      if (!table_ || table_->closed.load(std::memory_order_acquire))
        throw_code(env, "ERR_DMSC_CLOSED", "the shared table no longer exists or was closed");
      slot_ = table_->acquire_reader();
      if (!slot_) {
        table_.reset();
        throw_code(env, "ERR_DMSC_LIMIT_EXCEEDED", "a table accepts at most 63 attached views");
      }
    }
    state_ = env.GetInstanceData<EnvState>();
    state_->live.insert(this);
  }

  ~TableWrap() override {
    if (state_) state_->live.erase(this);
    Release();
  }

  // Frees this wrapper's hold on the table; the table goes when its last holder does.
  void Release() {
    if (!table_) return;
    if (owner_) table_->closed.store(true, std::memory_order_release);
    else table_->release_reader(slot_);
    table_.reset();
    slot_ = nullptr;
  }
  void Detach() { state_ = nullptr; Release(); }

 private:
  Table& live(Napi::Env env) {
    if (!table_ || table_->closed.load(std::memory_order_acquire))
      throw_code(env, "ERR_DMSC_CLOSED", "the forwarding table is closed");
    return *table_;
  }
  Table& writable(Napi::Env env) {
    Table& t = live(env);
    if (!owner_) throw_code(env, "ERR_DMSC_READ_ONLY", "an attached view is read-only");
    return t;
  }

  // needLo, needHi, flags, flow: the query both lookups take after their names.
  static dmsc::Query query(Napi::Env env, const napi_value* args) {
    dmsc::Query q;
    uint32_t lo = u32(env, args[0], "needLo");
    uint32_t hi = u32(env, args[1], "needHi");
    uint32_t flags = u32(env, args[2], "flags");
    q.need = (static_cast<uint64_t>(hi) << 32) | lo;
    q.unsatisfiable = flags & 1;
    q.has_flow = flags & 2;
    if (q.has_flow) q.flow = u32(env, args[3], "flow");
    return q;
  }
  static dmsc::Query query(const Napi::CallbackInfo& info, size_t at) {
    const napi_value args[] = {info[at], info[at + 1], info[at + 2], info[at + 3]};
    return query(info.Env(), args);
  }

  // stage(bytes, words): stages one chunk of a batch; a bad chunk discards the batch (its
  // error may come from a later stage() or from commit(): see batch.cpp).
  Napi::Value Stage(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return DoStage(info); });
  }
  Napi::Value DoStage(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Table& t = writable(env);
    auto bytes = typed<uint8_t>(info, 0, napi_uint8_array, "bytes");
    auto words = typed<uint32_t>(info, 1, napi_uint32_array, "words");
    dmsc::Status s = t.stage(bytes.Data(), bytes.ElementLength(), words.Data(), words.ElementLength());
    if (!s.ok()) throw_code(env, code_name(s.code), s.message);
    return env.Undefined();
  }

  // commit() -> generation: applies everything staged as one batch.
  Napi::Value Commit(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return DoCommit(info); });
  }
  Napi::Value DoCommit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Table& t = writable(env);
    bool changed = false;
    dmsc::Status s = t.commit(&changed);
    if (!s.ok()) throw_code(env, code_name(s.code), s.message);
    return Napi::Number::New(env, static_cast<double>(t.generation()));
  }

  Napi::Value Discard(const Napi::CallbackInfo& info) {
    if (table_ && owner_) table_->discard();
    return info.Env().Undefined();
  }

  // lookupFunction() -> lookup(name[, needLo, needHi, flags, flow]) as a plain function
  // bound to this table, returning -1, or the result packed in one number (exact below
  // 2^53): next-hop index (24 bits), failover (1), the matched prefix's UTF-16 length
  // (11), then the low 17 bits of the id epoch of the read section.
  // A method of an ObjectWrap unwraps its receiver on every call (a private-symbol lookup
  // on the object), and node-addon-api's CallbackInfo costs as much again: together a
  // fifth of a lookup that hits the cache. The function holds the wrapper alive (a
  // strong reference, let go when the function is collected): it may be kept longer.
  struct Bound {
    TableWrap* wrap;
    napi_ref hold;
  };
  Napi::Value LookupFunction(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    auto* bound = new Bound{this, nullptr};
    napi_value fn;
    if (napi_create_reference(env, info.This(), 1, &bound->hold) != napi_ok ||
        napi_create_function(env, "lookup", NAPI_AUTO_LENGTH, RawLookup, bound, &fn) != napi_ok ||
        napi_add_finalizer(env, fn, bound, [](napi_env e, void* data, void*) {
          auto* b = static_cast<Bound*>(data);
          napi_delete_reference(e, b->hold);
          delete b;
        }, nullptr, nullptr) != napi_ok) {
      if (bound->hold) napi_delete_reference(env, bound->hold);
      delete bound;
      throw_code(env, "ERR_DMSC_INTERNAL", "could not make the lookup function");
    }
    return Napi::Value(env, fn);
  }

  static napi_value RawLookup(napi_env env, napi_callback_info cb) {
    size_t argc = 5;
    napi_value argv[5];
    void* data = nullptr;
    if (napi_get_cb_info(env, cb, &argc, argv, nullptr, &data) != napi_ok) return nullptr;
    // No node-addon-api wrapper around a raw callback: its typed errors are thrown here.
    try {
      return guarded(Napi::Env(env), [&] {
        return Napi::Value(env, static_cast<Bound*>(data)->wrap->DoLookup(Napi::Env(env), argc, argv));
      });
    } catch (const Napi::Error& e) {
      e.ThrowAsJavaScriptException();
      return nullptr;
    }
  }

  napi_value DoLookup(Napi::Env env, size_t argc, const napi_value* argv) {
    Table& t = live(env);
    char buf[4 * dmsc::kMaxNameBytes + 4];
    size_t len = 0;
    // Refuses a non-string itself (napi_string_expected): no separate type check.
    if (argc < 1 || napi_get_value_string_utf8(env, argv[0], buf, sizeof(buf), &len) != napi_ok)
      throw_code(env, "ERR_DMSC_INVALID_NAME", "name must be a string");
    // The name alone, or with the query (arguments not given are undefined, and refused).
    const dmsc::Query q = argc > 1 ? query(env, argv + 1) : dmsc::Query{};
    dmsc::NameError err;
    const auto* name = reinterpret_cast<const uint8_t*>(buf);
    dmsc::LookupResult r = t.lookup(*slot_, owner_, name, len, q, &err);
    if (err != dmsc::NameError::kOk)
      throw_code(env, "ERR_DMSC_INVALID_NAME", std::string("invalid name: ") + dmsc::name_error_message(err));
    double packed = -1;
    if (r.nh >= 0)
      packed = static_cast<double>(r.nh) + (r.failover ? 16777216.0 : 0.0) +
               static_cast<double>(r.ascii ? r.prefix_len : dmsc::utf16_length(name, r.prefix_len)) * 33554432.0 +
               static_cast<double>(r.id_epoch & 0x1FFFF) * 68719476736.0;
    napi_value out;
    napi_create_double(env, packed, &out);
    return out;
  }

  // lookupPacked(bytes, offsets, n, out, needLo, needHi, flags, flows?) -> id epoch (17 bits)
  Napi::Value LookupPacked(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Table& t = live(env);
    auto bytes = typed<uint8_t>(info, 0, napi_uint8_array, "bytes");
    auto offsets = typed<uint32_t>(info, 1, napi_uint32_array, "offsets");
    size_t n = u32(info, 2, "n");
    auto out = typed<int32_t>(info, 3, napi_int32_array, "out");
    dmsc::Query q = query(info, 4);
    q.has_flow = false;
    const uint32_t* flows = nullptr;
    if (info.Length() > 7 && !info[7].IsUndefined()) {
      auto f = typed<uint32_t>(info, 7, napi_uint32_array, "flows");
      if (f.ElementLength() < n) throw_code(env, "ERR_DMSC_OUT_OF_RANGE", "flows is shorter than the batch");
      flows = f.Data();
    }
    if (offsets.ElementLength() < n + 1)
      throw_code(env, "ERR_DMSC_INVALID_OFFSETS", "offsets must hold n + 1 entries");
    if (out.ElementLength() < n) throw_code(env, "ERR_DMSC_OUT_OF_RANGE", "out is shorter than the batch");
    uint64_t epoch = 0;
    dmsc::Status s = t.lookup_packed(*slot_, owner_, bytes.Data(), bytes.ElementLength(), offsets.Data(), n,
                                     out.Data(), q, flows, &epoch);
    if (!s.ok()) throw_code(env, code_name(s.code), s.message);
    return Napi::Number::New(env, static_cast<double>(epoch & 0x1FFFF));
  }

  // setHealth(id, state (-1 keep), loadq (-1 keep)) -> boolean
  Napi::Value SetHealth(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Table& t = writable(env);
    if (!info[0].IsString()) throw_code(env, "ERR_DMSC_INVALID_ARGUMENT", "id must be a string");
    std::string id = info[0].As<Napi::String>().Utf8Value();
    int state = static_cast<int>(u32(info, 1, "state"));
    int loadq = static_cast<int>(u32(info, 2, "loadQ"));
    if (info[1].As<Napi::Number>().Int32Value() < 0) state = -1;
    if (info[2].As<Napi::Number>().Int32Value() < 0) loadq = -1;
    if (state > 2) throw_code(env, "ERR_DMSC_OUT_OF_RANGE", "state must be 0, 1 or 2");
    bool ok = t.set_health(reinterpret_cast<const uint8_t*>(id.data()), id.size(), state, loadq);
    return Napi::Boolean::New(env, ok);
  }

  // indexOf(id) -> the next-hop index an entry references id by, or -1.
  Napi::Value IndexOf(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Table& t = writable(env);
    if (!info[0].IsString()) throw_code(env, "ERR_DMSC_INVALID_ARGUMENT", "id must be a string");
    std::string id = info[0].As<Napi::String>().Utf8Value();
    return Napi::Number::New(env, static_cast<double>(t.index_of(reinterpret_cast<const uint8_t*>(id.data()), id.size())));
  }

  // Memory of the table's own that JavaScript writes with Atomics: the buffer keeps the
  // table alive until it is collected, so no write lands in freed memory after close().
  // The caller makes one buffer per region and keeps it (V8 must not see one region twice).
  Napi::Value Shared(Napi::Env env, void* data, size_t bytes) {
    auto* hold = new std::shared_ptr<Table>(table_);
    return Napi::ArrayBuffer::New(env, data, bytes, [](Napi::Env, void*, std::shared_ptr<Table>* h) { delete h; }, hold);
  }

  // healthWords(chunk) -> ArrayBuffer over the health words of next hops
  // [chunk, chunk + 1) * 4096 (see registry.hpp for a word's bits), or undefined.
  Napi::Value HealthWords(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Table& t = writable(env);
    std::atomic<uint32_t>* words = t.health_chunk(u32(info, 0, "chunk"));
    if (!words) return env.Undefined();
    static_assert(sizeof(std::atomic<uint32_t>) == 4 && std::atomic<uint32_t>::is_always_lock_free);
    return Shared(env, words, dmsc::NextHopRegistry::kChunkSize * sizeof(uint32_t));
  }

  // epochWords() -> ArrayBuffer over the 64-bit id epoch (its low word first).
  Napi::Value EpochWords(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Table& t = writable(env);
    static_assert(sizeof(std::atomic<uint64_t>) == 8 && std::atomic<uint64_t>::is_always_lock_free);
    return Shared(env, &t.id_epoch, sizeof(uint64_t));
  }

  Napi::Value TagBit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw_code(env, "ERR_DMSC_INVALID_ARGUMENT", "tag must be a string");
    std::string tag = info[0].As<Napi::String>().Utf8Value();
    return Napi::Number::New(env, live(env).tag_bit(tag.data(), tag.size()));
  }

  Napi::Value TagCount(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Napi::Number::New(env, live(env).tag_count());
  }

  Napi::Value NextHopId(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Table& t = live(env);
    // nextHopId(index, epoch17 or -1): empty when the index was recycled since that epoch.
    uint32_t index = u32(info, 0, "index");
    std::string id = t.next_hop_id(*slot_, owner_, index);
    if (info.Length() > 1 && info[1].IsNumber() && info[1].As<Napi::Number>().Int64Value() >= 0 &&
        (t.id_epoch.load(std::memory_order_acquire) & 0x1FFFF) != info[1].As<Napi::Number>().Uint32Value())
      id.clear();
    if (id.empty()) return env.Undefined();
    return Napi::String::New(env, id);
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return DoStats(info); });
  }
  Napi::Value DoStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Table& t = writable(env);
    dmsc::Stats s = t.stats(u32(info, 0, "top"));
    Napi::Object o = Napi::Object::New(env);
    auto num = [&](const char* k, uint64_t v) { o.Set(k, Napi::Number::New(env, static_cast<double>(v))); };
    num("lookups", s.lookups);
    num("misses", s.misses);
    num("failovers", s.failovers);
    num("invalid", s.invalid);
    num("size", s.size);
    num("generation", s.generation);
    num("nextHops", s.next_hops);
    num("tags", s.tags);
    num("memoryBytes", s.memory_bytes);
    num("usedBytes", s.used_bytes);
    num("counterBytes", s.counter_bytes);
    num("pendingReclaim", s.pending_reclaim);
    num("readers", s.readers);
    Napi::Array hits = Napi::Array::New(env, s.prefix_hits.size());
    for (size_t i = 0; i < s.prefix_hits.size(); ++i) {
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(0u, Napi::String::New(env, s.prefix_hits[i].prefix));
      pair.Set(1u, Napi::Number::New(env, static_cast<double>(s.prefix_hits[i].hits)));
      hits.Set(i, pair);
    }
    o.Set("prefixHits", hits);
    Napi::Array sel = Napi::Array::New(env, s.nh_selections.size());
    for (size_t i = 0; i < s.nh_selections.size(); ++i) {
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(0u, Napi::String::New(env, s.nh_selections[i].id));
      pair.Set(1u, Napi::Number::New(env, static_cast<double>(s.nh_selections[i].selections)));
      sel.Set(i, pair);
    }
    o.Set("nextHopSelections", sel);
    return o;
  }

  // entries() -> [[prefix, [[id, weight, priority, [tags], state, loadQ], ...]], ...]
  Napi::Value Entries(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return DoEntries(info); });
  }
  Napi::Value DoEntries(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return ToArray(env, writable(env).entries());
  }

  // entriesUnder(under, limit): entries() of the first `limit` names in byte order that
  // are equal to `under` or below it ('' for all), in no order.
  Napi::Value EntriesUnder(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return DoEntriesUnder(info); });
  }
  Napi::Value DoEntriesUnder(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Table& t = writable(env);
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
      Napi::TypeError::New(env, "entriesUnder(under, limit)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    double limit = info[1].As<Napi::Number>().DoubleValue();
    if (!(limit >= 0)) limit = 0;
    return ToArray(env, t.entries_under(info[0].As<Napi::String>().Utf8Value(), limit > 1e9 ? static_cast<size_t>(1e9) : static_cast<size_t>(limit)));
  }

  static Napi::Array ToArray(Napi::Env env, const std::vector<dmsc::EntryView>& list) {
    Napi::Array out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      const dmsc::EntryView& e = list[i];
      Napi::Array hops = Napi::Array::New(env, e.hops.size());
      for (size_t h = 0; h < e.hops.size(); ++h) {
        const dmsc::HopView& hv = e.hops[h];
        Napi::Array tags = Napi::Array::New(env, hv.tags.size());
        for (size_t k = 0; k < hv.tags.size(); ++k) tags.Set(k, Napi::String::New(env, hv.tags[k]));
        Napi::Array hop = Napi::Array::New(env, 6);
        hop.Set(0u, Napi::String::New(env, hv.id));
        hop.Set(1u, Napi::Number::New(env, hv.weight));
        hop.Set(2u, Napi::Number::New(env, hv.prio));
        hop.Set(3u, tags);
        hop.Set(4u, Napi::Number::New(env, hv.state));
        hop.Set(5u, Napi::Number::New(env, hv.loadq));
        hops.Set(h, hop);
      }
      Napi::Array entry = Napi::Array::New(env, 2);
      entry.Set(0u, Napi::String::New(env, e.prefix));
      entry.Set(1u, hops);
      out.Set(i, entry);
    }
    return out;
  }

  Napi::Value Size(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Table& t = live(env);
    return Napi::Number::New(env, static_cast<double>(t.size()));
  }

  Napi::Value Generation(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Napi::Number::New(env, static_cast<double>(live(env).generation()));
  }

  Napi::Value ReadersBehind(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) {
      Napi::TypeError::New(env, "readersBehind(generation)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    double g = info[0].As<Napi::Number>().DoubleValue();
    return Napi::Number::New(env, live(env).readers_behind(g <= 0 ? 0 : static_cast<uint64_t>(g)));
  }

  Napi::Value Share(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    writable(env);
    return Napi::Number::New(env, static_cast<double>(ShareRegistry::get().add(table_)));
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  std::shared_ptr<Table> table_;
  dmsc::ReaderSlot* slot_ = nullptr;
  bool owner_ = false;
  EnvState* state_ = nullptr;
};


Napi::Value Noop(const Napi::CallbackInfo& info) { return info.Env().Undefined(); }

// The floor of lookup(string): the call plus the UTF-8 copy of the name.
Napi::Value NoopString(const Napi::CallbackInfo& info) {
  char buf[4 * dmsc::kMaxNameBytes + 4];
  size_t len = 0;
  napi_get_value_string_utf8(info.Env(), info[0], buf, sizeof(buf), &len);
  return Napi::Number::New(info.Env(), static_cast<double>(len));
}

// pointerChase(bytes, steps, seed) -> ns per step of i = a[i] over a random cycle through
// the cache lines of `bytes` of memory mapped as the table maps its own (huge pages
// where the kernel gives them): the latency one dependent miss costs the table, which a
// chase in a JavaScript ArrayBuffer (small pages, a TLB miss on top) overstates.
Napi::Value PointerChase(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double bytes = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
  const double steps = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0;
  const uint64_t seed = info[2].IsNumber() ? static_cast<uint64_t>(info[2].As<Napi::Number>().Int64Value()) : 1;
  if (!(bytes >= 4096 && bytes <= 16.0 * (1ULL << 30)) || !(steps >= 1 && steps <= 1e9))
    throw_code(env, "ERR_DMSC_OUT_OF_RANGE", "pointerChase(bytes 4 KiB..16 GiB, steps 1..1e9, seed)");
  const size_t lines = static_cast<size_t>(bytes) / 64;
  auto* mem = static_cast<uint64_t*>(dmsc::alloc_zeroed_huge(lines * 64));
  if (!mem) throw_code(env, "ERR_DMSC_NO_MEMORY", "no memory for the chase");
  // Sattolo's shuffle: one cycle through every line, in an order no prefetcher guesses.
  std::vector<uint32_t> order(lines);
  for (size_t i = 0; i < lines; ++i) order[i] = static_cast<uint32_t>(i);
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (size_t i = lines - 1; i > 0; --i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::swap(order[i], order[x % i]);
  }
  for (size_t i = 0; i < lines; ++i) mem[order[i] * 8] = order[(i + 1) % lines] * 8;
  uint64_t at = 0;
  const auto n = static_cast<uint64_t>(steps);
  for (uint64_t k = 0; k < std::min<uint64_t>(n, lines); ++k) at = mem[at];  // warm the TLB and caches
  auto t0 = std::chrono::steady_clock::now();
  for (uint64_t k = 0; k < n; ++k) at = mem[at];
  const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / static_cast<double>(n);
  asm volatile("" : : "r"(at) : "memory");  // the chain's end is used: the loop stays
  dmsc::free_huge(mem, lines * 64);
  return Napi::Number::New(env, ns);
}

// Bytes the process holds through malloc (glibc), or -1 where that cannot be asked: the
// benchmark's measure of native memory, free of the JS heap's and the allocator's noise.
Napi::Value NativeHeapBytes(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 m = mallinfo2();
  return Napi::Number::New(info.Env(), static_cast<double>(m.uordblks + m.hblkhd));
#else
  return Napi::Number::New(info.Env(), -1);
#endif
}

Napi::Value SetErrorFactory(const Napi::CallbackInfo& info) {
  EnvState* st = info.Env().GetInstanceData<EnvState>();
  st->error_factory = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Value IsTable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), info[0].IsObject() && info[0].As<Napi::Object>().CheckTypeTag(&kTableTag));
}


// The native relay (native/core/relay.hpp): the data plane's listener on its own thread,
// over a table shared by token id.
class RelayWrap : public Napi::ObjectWrap<RelayWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeRelay", {
      InstanceMethod<&RelayWrap::Start>("start"),
      InstanceMethod<&RelayWrap::Stop>("stop"),
      InstanceMethod<&RelayWrap::Learn>("learn"),
      InstanceMethod<&RelayWrap::Endpoint>("endpoint"),
      InstanceMethod<&RelayWrap::Forget>("forget"),
      InstanceMethod<&RelayWrap::DropEndpoint>("dropEndpoint"),
      InstanceMethod<&RelayWrap::Clear>("clear"),
      InstanceMethod<&RelayWrap::TakeDown>("takeDown"),
      InstanceMethod<&RelayWrap::Counters>("counters"),
    });
  }

  // new NativeRelay(shareId, { host, port, fallbackPort, self, attempts, connectTimeoutMs,
  //   headersTimeoutMs, bodyTimeoutMs, clientIdleMs, replayBytes, cacheMs })
  explicit RelayWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RelayWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber() || !info[1].IsObject()) throw_code(env, "ERR_DMSC_INVALID_ARGUMENT", "new NativeRelay(shareId, options)");
    auto table = ShareRegistry::get().find(static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()));
    if (!table || table->closed.load(std::memory_order_acquire)) throw_code(env, "ERR_DMSC_CLOSED", "the shared table is closed");
    Napi::Object o = info[1].As<Napi::Object>();
    dmsc::RelayConfig c;
    auto str = [&](const char* k, std::string& out) {
      Napi::Value v = o.Get(k);
      if (v.IsString()) out = v.As<Napi::String>().Utf8Value();
    };
    auto num = [&](const char* k, uint32_t& out, uint32_t max) {
      Napi::Value v = o.Get(k);
      if (v.IsUndefined()) return;
      if (!v.IsNumber() || v.As<Napi::Number>().DoubleValue() < 0 || v.As<Napi::Number>().DoubleValue() > max)
        throw_code(env, "ERR_DMSC_OUT_OF_RANGE", std::string(k) + " is out of range");
      out = v.As<Napi::Number>().Uint32Value();
    };
    str("host", c.host);
    str("self", c.self);
    str("fromToken", c.from_token);
    uint32_t port = 0, fallback = 0;
    num("port", port, 65535);
    num("fallbackPort", fallback, 65535);
    c.port = static_cast<uint16_t>(port);
    c.fallback_port = static_cast<uint16_t>(fallback);
    num("attempts", c.attempts, 16);
    num("connectTimeoutMs", c.connect_timeout_ms, 86400000);
    num("headersTimeoutMs", c.headers_timeout_ms, 86400000);
    num("bodyTimeoutMs", c.body_timeout_ms, 86400000);
    num("clientIdleMs", c.client_idle_ms, 86400000);
    num("replayBytes", c.replay_bytes, 64 * 1024 * 1024);
    num("cacheMs", c.cache_ms, 86400000);
    relay_ = std::make_unique<dmsc::Relay>(std::move(table), std::move(c));
    state_ = env.GetInstanceData<EnvState>();
    state_->relays.insert(this);
  }
  ~RelayWrap() override {
    if (state_) state_->relays.erase(this);
    Halt();
  }
  // Stops the loop and joins its thread (at stop(), finalization or teardown).
  void Halt() {
    if (relay_) relay_->stop();
    relay_.reset();
  }

 private:
  dmsc::Relay& live(Napi::Env env) {
    if (!relay_) throw_code(env, "ERR_DMSC_CLOSED", "the relay is stopped");
    return *relay_;
  }
  static std::string arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
    if (!info[i].IsString()) throw_code(info.Env(), "ERR_DMSC_INVALID_ARGUMENT", std::string(what) + " must be a string");
    return info[i].As<Napi::String>().Utf8Value();
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    uint16_t port = 0;
    dmsc::Status s = live(info.Env()).start(&port);
    if (!s.ok()) throw_code(info.Env(), code_name(s.code), s.message);
    return Napi::Number::New(info.Env(), port);
  }
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Halt();
    return info.Env().Undefined();
  }
  // learn(token, aic, expiresAtMs, capability)
  Napi::Value Learn(const Napi::CallbackInfo& info) {
    dmsc::Relay& r = live(info.Env());
    if (!info[2].IsNumber()) throw_code(info.Env(), "ERR_DMSC_INVALID_ARGUMENT", "expiresAt must be a number");
    r.learn(arg(info, 0, "token"), arg(info, 1, "aic"), info[2].As<Napi::Number>().Int64Value(), arg(info, 3, "capability"));
    return info.Env().Undefined();
  }
  // endpoint(aic, ip, port, base, search)
  Napi::Value Endpoint(const Napi::CallbackInfo& info) {
    dmsc::Relay& r = live(info.Env());
    uint32_t port = u32(info, 2, "port");
    if (port == 0 || port > 65535) throw_code(info.Env(), "ERR_DMSC_OUT_OF_RANGE", "port is out of range");
    r.endpoint(arg(info, 0, "aic"), arg(info, 1, "ip"), static_cast<uint16_t>(port), arg(info, 3, "base"), arg(info, 4, "search"));
    return info.Env().Undefined();
  }
  Napi::Value Forget(const Napi::CallbackInfo& info) {
    live(info.Env()).forget(arg(info, 0, "aic"));
    return info.Env().Undefined();
  }
  Napi::Value DropEndpoint(const Napi::CallbackInfo& info) {
    live(info.Env()).drop_endpoint(arg(info, 0, "aic"));
    return info.Env().Undefined();
  }
  Napi::Value Clear(const Napi::CallbackInfo& info) {
    live(info.Env()).clear();
    return info.Env().Undefined();
  }
  Napi::Value TakeDown(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<std::string> down = live(env).take_down();
    Napi::Array out = Napi::Array::New(env, down.size());
    for (size_t i = 0; i < down.size(); ++i) out.Set(static_cast<uint32_t>(i), Napi::String::New(env, down[i]));
    return out;
  }
  Napi::Value Counters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const dmsc::RelayCounters& c = live(env).counters();
    Napi::Object o = Napi::Object::New(env);
    auto put = [&](const char* k, const std::atomic<uint64_t>& v) { o.Set(k, Napi::Number::New(env, static_cast<double>(v.load(std::memory_order_relaxed)))); };
    put("requests", c.requests);
    put("served", c.served);
    put("handed", c.handed);
    put("tunnels", c.tunnels);
    put("forwarded", c.forwarded);
    put("retries", c.retries);
    put("markedDown", c.marked_down);
    put("failed", c.failed);
    return o;
  }

  std::unique_ptr<dmsc::Relay> relay_;
  EnvState* state_ = nullptr;
};

EnvState::~EnvState() {
  for (TableWrap* w : live) w->Detach();
  for (RelayWrap* r : relays) r->Halt();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* st = new EnvState();
  env.SetInstanceData<EnvState>(st);
  Napi::Function ctor = TableWrap::Define(env);
  st->ctor = Napi::Persistent(ctor);
  exports.Set("NativeTable", ctor);
  exports.Set("NativeRelay", RelayWrap::Define(env));
  exports.Set("noop", Napi::Function::New(env, Noop, "noop"));
  exports.Set("noopString", Napi::Function::New(env, NoopString, "noopString"));
  exports.Set("pointerChase", Napi::Function::New(env, PointerChase, "pointerChase"));
  exports.Set("nativeHeapBytes", Napi::Function::New(env, NativeHeapBytes, "nativeHeapBytes"));
  exports.Set("setErrorFactory", Napi::Function::New(env, SetErrorFactory, "setErrorFactory"));
  exports.Set("isTable", Napi::Function::New(env, IsTable, "isTable"));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace

NODE_API_MODULE(dmsc_fastpath, Init)
