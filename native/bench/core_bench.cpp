// The table's core timed alone, without Node: how much of a lookup is the CPU's own work
// (a table small enough for L2) and how much is memory (a large one), and how much of it
// is parsing the name. Run by `npm run bench -- core`, which builds it with the addon's
// optimisation level; prints one JSON object per table size.
//   core_bench [prefixes...]      (default: 1000 1000000)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "batch_builder.hpp"
#include "table.hpp"

using namespace dmsc;

namespace {

// The shape of bench/workload.mjs: 3-5 components, 4 next hops of 10,000 ids; names are a
// prefix plus 0-2 components, uniform over the prefixes.
const char* kTop[] = {"capability", "skill", "service", "tool"};
const char* kDomains[] = {"ocr", "asr", "tts", "translate", "vision", "nlp", "payments", "search",
                          "security", "data", "code", "audio", "video", "maps", "chem", "legal"};

struct Rng {
  uint64_t s;
  uint64_t operator()(uint64_t n) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s % n;
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double ns_per(size_t count, F&& run) {
  run();  // warm-up
  std::vector<double> trials;
  for (int t = 0; t < 5; ++t) {
    auto t0 = std::chrono::steady_clock::now();
    run();
    trials.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / count);
  }
  return median(trials);
}

void bench(size_t n) {
  Rng r{0x9E3779B97F4A7C15ULL ^ n};
  Table t;
  std::vector<std::string> prefixes;
  prefixes.reserve(n);
  for (size_t base = 0; base < n; base += 10000) {
    BatchBuilder b;
    for (size_t i = base; i < std::min(n, base + 10000); ++i) {
      std::string p = std::string("/") + kTop[i & 3] + "/" + kDomains[(i >> 2) & 15] + "/s" + std::to_string(i);
      for (uint64_t k = r(3); k > 0; --k) p += "/v" + std::to_string(r(100));
      std::vector<HopDef> hops;
      for (uint32_t h = 0; h < 4; ++h) hops.emplace_back("agent-" + std::to_string((i * 7 + h * 1237) % 10000), 50 + r(100));
      b.upsert(p, hops);
      prefixes.push_back(p);
    }
    if (!b.apply(t).ok()) {
      std::fprintf(stderr, "core_bench: loading the table failed\n");
      std::exit(1);
    }
  }
  constexpr size_t kQueries = 1 << 20, kBatch = 256;
  std::string packed;
  std::vector<uint32_t> offsets;
  for (size_t q = 0; q < kQueries; ++q) {
    offsets.push_back(static_cast<uint32_t>(packed.size()));
    std::string name = prefixes[r(n)];
    for (uint64_t k = r(3); k > 0; --k) name += "/q" + std::to_string(r(10));
    packed += name;
  }
  offsets.push_back(static_cast<uint32_t>(packed.size()));
  const auto* bytes = reinterpret_cast<const uint8_t*>(packed.data());
  uint64_t sink = 0;
  // The owner's slot, as ForwardingTable's own lookups use (views announce their
  // generation on every call; the owner has no need to).
  ReaderSlot& rs = t.owner_slot();
  const double parse = ns_per(kQueries, [&] {
    ParsedName pn;
    for (size_t q = 0; q < kQueries; ++q) {
      parse_name(bytes + offsets[q], offsets[q + 1] - offsets[q], pn);
      sink += pn.hash[pn.ncomp];
    }
  });
  std::vector<int32_t> out(kBatch);
  std::vector<uint32_t> batch(kBatch + 1);
  const double packed_ns = ns_per(kQueries, [&] {
    for (size_t q = 0; q + kBatch <= kQueries; q += kBatch) {
      std::copy(offsets.begin() + q, offsets.begin() + q + kBatch + 1, batch.begin());
      t.lookup_packed(rs, true, bytes, packed.size(), batch.data(), kBatch, out.data(), {}, nullptr);
      sink += static_cast<uint64_t>(out[0]);
    }
  });
  const double single = ns_per(kQueries, [&] {
    NameError err;
    for (size_t q = 0; q < kQueries; ++q)
      sink += static_cast<uint64_t>(t.lookup(rs, true, bytes + offsets[q], offsets[q + 1] - offsets[q], {}, &err).nh);
  });
  std::printf("{\"prefixes\":%zu,\"parseNs\":%.1f,\"lookupPackedNs\":%.1f,\"lookupNs\":%.1f,\"sink\":%llu}\n", n, parse,
              packed_ns, single, static_cast<unsigned long long>(sink & 1));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<size_t> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(std::strtoull(argv[i], nullptr, 10));
  if (sizes.empty()) sizes = {1000, 1000000};
  for (size_t n : sizes) {
    if (n == 0) {
      std::fprintf(stderr, "usage: core_bench [prefixes...]\n");
      return 2;
    }
    bench(n);
  }
  return 0;
}
