// Readers on other threads against a writer applying batches: consistency and reclamation.
// Run under ASan in the sanitizer build, where a use after free fails the test.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "batch_builder.hpp"
#include "harness.hpp"

using namespace dmsc;

TEST(readers_never_observe_a_mix_of_two_batches) {
  Table t;
  constexpr int kGroup = 64;
  auto batch = [&](int round) {
    BatchBuilder b;
    std::string id = "gen-" + std::to_string(round);
    for (int i = 0; i < kGroup; ++i) b.upsert("/group/" + std::to_string(i), {{id}});
    // Churn outside the group, to keep the index growing and reclaiming.
    b.upsert("/noise/" + std::to_string(round), {{"noise"}});
    if (round > 8) b.remove("/noise/" + std::to_string(round - 8));
    return b;
  };
  CHECK(batch(0).apply(t).ok());

  std::string packed;
  std::vector<uint32_t> offsets{0};
  for (int i = 0; i < kGroup; ++i) {
    packed += "/group/" + std::to_string(i) + "/x";
    offsets.push_back(static_cast<uint32_t>(packed.size()));
  }
  std::atomic<bool> stop{false};
  std::atomic<int> mixed{0}, views{0};
  auto reader = [&]() {
    ReaderSlot* rs = t.acquire_reader();
    std::vector<int32_t> out(kGroup);
    while (!stop.load()) {
      Status s = t.lookup_packed(*rs, false, reinterpret_cast<const uint8_t*>(packed.data()),
                                 packed.size(), offsets.data(), kGroup, out.data(), {}, nullptr);
      if (!s.ok()) { mixed++; break; }
      std::string first = t.next_hop_id(*rs, false, static_cast<uint32_t>(out[0]));
      for (int i = 1; i < kGroup; ++i)
        if (out[i] != out[0]) mixed++;
      views++;
      (void)first;
    }
    t.release_reader(rs);
  };
  std::thread r1(reader), r2(reader);
  for (int round = 1; round < 3000; ++round) CHECK(batch(round).apply(t).ok());
  stop = true;
  r1.join();
  r2.join();
  CHECK_EQ(mixed.load(), 0);
  CHECK(views.load() > 0);
  CHECK(t.stats(0).pending_reclaim < 64);
}

TEST(set_health_is_seen_by_readers) {
  Table t;
  CHECK(BatchBuilder().upsert("/h", {{"a"}, {"b", 100, 1}}).apply(t).ok());
  ReaderSlot* rs = t.acquire_reader();
  std::string name = "/h";
  NameError err;
  auto id = [&]() {
    LookupResult r = t.lookup(*rs, false, reinterpret_cast<const uint8_t*>(name.data()), name.size(), {}, &err);
    return t.next_hop_id(*rs, false, static_cast<uint32_t>(r.nh));
  };
  std::string before, after;
  std::thread th([&]() { before = id(); });
  th.join();
  set_state(t, "a", kDown);
  std::thread th2([&]() { after = id(); });
  th2.join();
  CHECK_EQ(before, std::string("a"));
  CHECK_EQ(after, std::string("b"));
  t.release_reader(rs);
}

// A view reading ids while the owner recycles them: under ASan a blob freed too early is
// a reported use after free.
TEST(ids_read_by_a_view_survive_recycling) {
  Table t;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0}, foreign{0};
  std::thread reader([&]() {
    ReaderSlot* rs = t.acquire_reader();
    while (!stop.load()) {
      for (uint32_t i = 0; i < 16; ++i) {
        std::string id = t.next_hop_id(*rs, false, i);
        if (!id.empty() && id.rfind("churn-", 0) != 0) foreign++;  // never anything else
        reads++;
      }
    }
    t.release_reader(rs);
  });
  for (int round = 0; round < 4000; ++round) {
    BatchBuilder up;
    for (int k = 0; k < 4; ++k) up.upsert("/c/" + std::to_string(k), {{"churn-" + std::to_string(round * 4 + k)}});
    CHECK(up.apply(t).ok());
  }
  stop = true;
  reader.join();
  CHECK(reads.load() > 0);
  CHECK_EQ(foreign.load(), uint64_t(0));
  CHECK(t.stats(0).next_hops == 4);
}
