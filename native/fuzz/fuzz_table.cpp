// libFuzzer target over the name parser and the table's operations: every byte string is
// a program of parse / apply / raw-apply / lookup / packed-lookup / set-health steps.
// Invariants checked: a rejected batch leaves the generation unchanged; nothing crashes.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "batch_builder.hpp"

namespace {

class Input {
 public:
  Input(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  bool empty() const { return i_ >= n_; }
  uint8_t byte() { return i_ < n_ ? d_[i_++] : 0; }
  uint32_t u32() {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v = (v << 8) | byte();
    return v;
  }
  std::string bytes(size_t max) {
    size_t n = byte() % (max + 1);
    n = std::min(n, n_ - i_);
    std::string s(reinterpret_cast<const char*>(d_ + i_), n);
    i_ += n;
    return s;
  }

 private:
  const uint8_t* d_;
  size_t n_, i_ = 0;
};

const char* kComponents[] = {"capability", "ocr", "fast", "a", "\xc3\xa9", "x"};

std::string small_name(Input& in) {
  std::string s;
  int depth = in.byte() % 5;
  for (int i = 0; i < depth; ++i) s += std::string("/") + kComponents[in.byte() % 6];
  return s.empty() ? "/" : s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dmsc;
  Input in(data, size);
  Table t;
  ReaderSlot* view = t.acquire_reader();
  while (!in.empty()) {
    uint64_t gen = t.generation();
    switch (in.byte() % 6) {
      case 0: {
        std::string s = in.bytes(64);
        ParsedName pn;
        parse_name(reinterpret_cast<const uint8_t*>(s.data()), s.size(), pn);
        break;
      }
      case 1: {
        BatchBuilder b;
        int ops = in.byte() % 6;
        for (int i = 0; i < ops; ++i) {
          std::string name = (in.byte() & 7) == 0 ? in.bytes(16) : small_name(in);
          if (in.byte() & 1) {
            b.remove(name);
            continue;
          }
          std::vector<HopDef> hops(in.byte() % 5);
          for (auto& h : hops) {
            h.id = "n" + std::to_string(in.byte() % 8);
            h.weight = in.byte() % 3 == 0 ? in.u32() % 70000 : 100;
            h.prio = in.byte() % 3;
            if (in.byte() & 1) h.tags.push_back("t" + std::to_string(in.byte() % 4));
          }
          b.upsert(name, hops);
        }
        if (!b.apply(t).ok() && t.generation() != gen) std::abort();
        break;
      }
      case 2: {
        std::string bytes = in.bytes(64);
        std::vector<uint32_t> words(in.byte() % 24);
        for (auto& w : words) w = in.byte() % 4 == 0 ? in.u32() : in.byte() % 8;
        bool changed;
        Status s = t.apply(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                           words.data(), words.size(), &changed);
        if (!s.ok() && t.generation() != gen) std::abort();
        break;
      }
      case 3: {
        std::string name = (in.byte() & 3) == 0 ? in.bytes(32) : small_name(in);
        Query q;
        q.need = in.byte() & 3;
        q.has_flow = in.byte() & 1;
        q.flow = in.u32();
        NameError err;
        bool owner = in.byte() & 1;
        LookupResult r = t.lookup(owner ? t.owner_slot() : *view, owner,
                                  reinterpret_cast<const uint8_t*>(name.data()), name.size(), q, &err);
        if (r.nh >= 0) t.next_hop_id(*view, false, static_cast<uint32_t>(r.nh));
        break;
      }
      case 4:
        set_state(t, "n" + std::to_string(in.byte() % 8), in.byte() % 3, in.byte() % 2 ? -1 : in.u32() % 12000);
        break;
      case 5: {
        std::string bytes = in.bytes(48);
        size_t n = in.byte() % 6;
        std::vector<uint32_t> offsets(n + 1);
        for (auto& o : offsets) o = in.byte() % 56;
        std::vector<int32_t> out(n);
        t.lookup_packed(*view, false, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                        offsets.data(), n, out.data(), {}, nullptr);
        break;
      }
    }
  }
  t.stats(4);
  t.release_reader(view);
  return 0;
}
