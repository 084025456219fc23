#include <algorithm>
#include <cstdio>
#include <map>
#include <string>

#include "batch_builder.hpp"
#include "harness.hpp"

using namespace dmsc;

TEST(longest_prefix_on_component_boundaries) {
  Table t;
  CHECK(BatchBuilder().upsert("/capability", {{"a"}}).upsert("/capability/ocr", {{"b"}}).apply(t).ok());
  CHECK_EQ(lookup_id(t, "/capability/ocr/fast"), std::string("b"));
  CHECK_EQ(lookup_id(t, "/capability/ocr"), std::string("b"));
  CHECK_EQ(lookup_id(t, "/capability/ocrx"), std::string("a"));
  CHECK_EQ(lookup_id(t, "/capability/oc"), std::string("a"));
  CHECK_EQ(lookup_id(t, "/other"), std::string(""));
  CHECK(BatchBuilder().upsert("/", {{"root"}}).apply(t).ok());
  CHECK_EQ(lookup_id(t, "/other"), std::string("root"));
}

// Keys are compared a word at a time with overlapping loads: every length, and a
// difference at every position of it, the first and last bytes included. The buffers
// are exactly n bytes on the heap, so that a read past either (which the sanitizer build
// reports) cannot hide in slack; a difference just past n must not count.
TEST(same_bytes_sees_a_difference_anywhere) {
  int wrong = 0;
  for (uint32_t n = 0; n <= 40; ++n) {
    auto make = [&](uint32_t size) {
      auto* p = new uint8_t[size + (size == 0)];
      for (uint32_t i = 0; i < size; ++i) p[i] = static_cast<uint8_t>('a' + i % 26);
      return p;
    };
    uint8_t* a = make(n);
    uint8_t* b = make(n);
    if (!same_bytes(a, b, n)) ++wrong;
    for (uint32_t at = 0; at < n; ++at) {
      b[at] ^= 0x20;
      if (same_bytes(a, b, n)) ++wrong;
      b[at] ^= 0x20;
    }
    uint8_t* c = make(n + 1);
    uint8_t* d = make(n + 1);
    d[n] ^= 0x20;
    if (!same_bytes(c, d, n)) ++wrong;
    for (uint8_t* p : {a, b, c, d}) delete[] p;
  }
  CHECK_EQ(wrong, 0);
}

TEST(tags_priority_and_degraded_tiers) {
  Table t;
  CHECK(BatchBuilder()
            .upsert("/c", {{"p0", 100, 0, {"gdpr"}}, {"p1", 100, 1, {}}})
            .apply(t).ok());
  int gdpr = t.tag_bit("gdpr", 4);
  CHECK_EQ(gdpr, 0);
  Query q;
  q.need = 1ULL << gdpr;
  CHECK_EQ(lookup_id(t, "/c", q), std::string("p0"));
  CHECK_EQ(lookup_id(t, "/c"), std::string("p0"));  // lowest priority value wins
  set_state(t, "p0", kDown);
  bool fo = false;
  CHECK_EQ(lookup_id(t, "/c", {}, &fo), std::string("p1"));
  CHECK(fo);
  CHECK_EQ(lookup_id(t, "/c", q), std::string(""));  // only p0 carries the tag
  set_state(t, "p0", kUp);
  // Within a tier, up beats degraded.
  CHECK(BatchBuilder().upsert("/d", {{"x"}, {"y"}}).apply(t).ok());
  set_state(t, "x", kDegraded);
  for (int i = 0; i < 50; ++i) CHECK_EQ(lookup_id(t, "/d", {}, &fo), std::string("y"));
  CHECK(!fo);
  set_state(t, "y", kDown);
  CHECK_EQ(lookup_id(t, "/d", {}, &fo), std::string("x"));
  CHECK(fo);
}

TEST(failover_to_a_shorter_prefix_and_not_for_policy) {
  Table t;
  CHECK(BatchBuilder().upsert("/a", {{"short"}}).upsert("/a/b", {{"long", 100, 0, {"t"}}}).apply(t).ok());
  bool fo = true;
  Query q;
  q.need = 1ULL << t.tag_bit("t", 1);
  CHECK_EQ(lookup_id(t, "/a/b", {}, &fo), std::string("long"));
  CHECK(!fo);
  set_state(t, "long", kDown);
  CHECK_EQ(lookup_id(t, "/a/b", {}, &fo), std::string("short"));
  CHECK(fo);
  set_state(t, "long", kUp);
  // Drained (weight 0) is not health: no failover flag.
  CHECK(BatchBuilder().upsert("/a/b", {{"long", 0}}).apply(t).ok());
  CHECK_EQ(lookup_id(t, "/a/b", {}, &fo), std::string("short"));
  CHECK(!fo);
  // A down hop a lookup could not have used is no failover either: drained, or without
  // the tags asked for. One it could have used is.
  CHECK(BatchBuilder().upsert("/e", {{"drained", 0, 0, {"t"}}, {"plain", 100, 0, {}}, {"spare", 100, 1, {"t"}}}).apply(t).ok());
  set_state(t, "drained", kDown);
  set_state(t, "plain", kDown);
  CHECK_EQ(lookup_id(t, "/e", q, &fo), std::string("spare"));
  CHECK(!fo);
  CHECK_EQ(lookup_id(t, "/e", {}, &fo), std::string("spare"));
  CHECK(fo);
}

TEST(weighted_shares_follow_effective_weight) {
  Table t;
  CHECK(BatchBuilder().upsert("/w", {{"a", 100}, {"b", 300}}).apply(t).ok());
  set_state(t, "b", -1, 5000);  // load 0.5: effective 150 vs 100
  std::map<std::string, int> n;
  for (int i = 0; i < 100000; ++i) n[lookup_id(t, "/w")]++;
  double share_a = n["a"] / 100000.0;
  CHECK(share_a > 0.38 && share_a < 0.42);
}

// The draw picks the hop whose running total of eligible weights first passes it:
// pinned draw by draw against a copy of the reader's generator, and for a draw of 0,
// which must not land on the ineligible hop before the first eligible one.
TEST(the_weighted_draw_maps_to_hops_by_running_totals) {
  Table t;
  CHECK(BatchBuilder().upsert("/x", {{"a", 100}, {"b", 100}, {"c", 300}}).apply(t).ok());
  set_state(t, "a", kDown);
  const uint64_t total = 400ULL * 10000;  // b and c, weight times (10000 - load)
  Rng& rng = t.owner_slot().rng;
  int wrong = 0;
  for (int i = 0; i < 20000; ++i) {
    Rng copy = rng;
    const uint64_t r = copy.below(total);
    if (lookup_id(t, "/x") != (r < 100ULL * 10000 ? "b" : "c")) ++wrong;
  }
  Rng zero;
  for (zero.s = 1;; ++zero.s) {
    Rng probe = zero;
    if (probe.below(total) == 0) break;
  }
  rng = zero;
  if (lookup_id(t, "/x") != "b") ++wrong;
  CHECK_EQ(wrong, 0);
}

// Health words are shared memory that handles write from JavaScript. A word no setHealth
// writes (state 3: neither up, degraded nor down) leaves no weight to draw from; the
// lookup must find no route, not pick past the entry's last hop.
TEST(a_health_word_with_no_weight_to_draw_gives_no_route) {
  Table t;
  CHECK(BatchBuilder().upsert("/z", {{"q"}}).apply(t).ok());
  const int64_t i = t.index_of(reinterpret_cast<const uint8_t*>("q"), 1);
  CHECK(i >= 0);
  t.health_chunk(static_cast<uint32_t>(i) >> NextHopRegistry::kChunkBits)[i & (NextHopRegistry::kChunkSize - 1)].store(3);
  NameError err;
  const LookupResult r = t.lookup(t.owner_slot(), true, reinterpret_cast<const uint8_t*>("/z"), 2, {}, &err);
  CHECK(err == NameError::kOk);
  CHECK_EQ(r.nh, -1);
}

TEST(flows_are_sticky_and_only_the_failed_hops_flows_move) {
  Table t;
  CHECK(BatchBuilder().upsert("/f", {{"h0"}, {"h1"}, {"h2"}, {"h3"}}).apply(t).ok());
  std::vector<std::string> before(10000);
  Query q;
  q.has_flow = true;
  for (uint32_t f = 0; f < 10000; ++f) {
    q.flow = f * 2654435761u;
    before[f] = lookup_id(t, "/f", q);
    CHECK_EQ(lookup_id(t, "/f", q), before[f]);
  }
  set_state(t, "h2", kDown);
  int moved = 0;
  for (uint32_t f = 0; f < 10000; ++f) {
    q.flow = f * 2654435761u;
    std::string now = lookup_id(t, "/f", q);
    if (before[f] == "h2") {
      CHECK(now != "h2");
      ++moved;
    } else {
      CHECK_EQ(now, before[f]);
    }
  }
  CHECK(moved > 2000 && moved < 3000);
}

TEST(invalid_batches_leave_the_table_unchanged) {
  Table t;
  CHECK(BatchBuilder().upsert("/keep", {{"k"}}).apply(t).ok());
  uint64_t gen = t.generation();
  CHECK(BatchBuilder().upsert("/new", {{"n"}}).upsert("/bad//", {{"n"}}).apply(t).code == Code::kInvalidName);
  CHECK(BatchBuilder().upsert("/new", {{"n"}, {"n"}}).apply(t).code == Code::kDuplicateNextHop);
  CHECK(BatchBuilder().upsert("/new", {{"n", 70000}}).apply(t).code == Code::kOutOfRange);
  std::vector<HopDef> many;
  for (int i = 0; i < 65; ++i) many.push_back({"h" + std::to_string(i)});
  CHECK(BatchBuilder().upsert("/new", many).apply(t).code == Code::kLimitExceeded);
  BatchBuilder tags;
  for (int i = 0; i < 65; ++i) tags.upsert("/t" + std::to_string(i), {{"x", 100, 0, {"tag" + std::to_string(i)}}});
  CHECK(tags.apply(t).code == Code::kLimitExceeded);
  CHECK_EQ(t.generation(), gen);
  CHECK_EQ(t.size(), uint64_t(1));
  CHECK_EQ(t.tag_count(), 0u);
  CHECK_EQ(lookup_id(t, "/new"), std::string(""));
  CHECK(!set_state(t, "n", kDown));
}

TEST(last_operation_on_a_name_wins_within_a_batch) {
  Table t;
  bool changed = false;
  CHECK(BatchBuilder().upsert("/x", {{"a"}}).remove("/x").upsert("/y", {{"b"}}).upsert("/y", {{"c"}}).apply(t, &changed).ok());
  CHECK(changed);
  CHECK_EQ(lookup_id(t, "/x"), std::string(""));
  CHECK_EQ(lookup_id(t, "/y"), std::string("c"));
  CHECK(!set_state(t, "a", kDown));
  uint64_t gen = t.generation();
  CHECK(BatchBuilder().remove("/absent").apply(t, &changed).ok());
  CHECK(!changed);
  CHECK_EQ(t.generation(), gen);
}

TEST(entries_under_lists_the_first_names_at_or_below_a_prefix) {
  Table t;
  CHECK(BatchBuilder()
            .upsert("/cap", {{"a"}})
            .upsert("/cap/z", {{"b"}, {"c", 7, 1}})
            .upsert("/cap/b", {{"b"}})
            .upsert("/capx", {{"a"}})
            .upsert("/cap/m/n", {{"a"}})
            .upsert("/other", {{"a"}})
            .apply(t)
            .ok());
  auto names = [](std::vector<dmsc::EntryView> v) {
    std::vector<std::string> out;
    for (auto& e : v) out.push_back(e.prefix);
    std::sort(out.begin(), out.end());
    std::string joined;
    for (auto& n : out) joined += n + " ";
    return joined;
  };
  CHECK_EQ(names(t.entries_under("/cap", 100)), std::string("/cap /cap/b /cap/m/n /cap/z "));
  CHECK_EQ(names(t.entries_under("/cap", 2)), std::string("/cap /cap/b "));
  CHECK_EQ(names(t.entries_under("/cap/z", 5)), std::string("/cap/z "));
  CHECK_EQ(names(t.entries_under("/ca", 5)), std::string(""));
  CHECK_EQ(names(t.entries_under("", 3)), std::string("/cap /cap/b /cap/m/n "));
  CHECK_EQ(t.entries_under("/cap", 0).size(), size_t{0});
  std::vector<dmsc::EntryView> z = t.entries_under("/cap/z", 1);
  CHECK_EQ(z.size(), size_t{1});
  if (z.size() == 1) {
    CHECK_EQ(z[0].hops.size(), size_t{2});
    if (z[0].hops.size() == 2) CHECK_EQ(z[0].hops[1].id + ":" + std::to_string(z[0].hops[1].weight), std::string("c:7"));
  }
}

TEST(ids_are_global_and_forgotten_with_their_last_reference) {
  Table t;
  CHECK(BatchBuilder().upsert("/a", {{"shared"}}).upsert("/b", {{"shared"}, {"other", 100, 1}}).apply(t).ok());
  CHECK(set_state(t, "shared", kDown));
  CHECK_EQ(lookup_id(t, "/a"), std::string(""));
  CHECK_EQ(lookup_id(t, "/b"), std::string("other"));
  // Replacing the entries in one batch keeps the id known, with its health.
  CHECK(BatchBuilder().remove("/a").upsert("/a", {{"shared"}}).apply(t).ok());
  CHECK_EQ(lookup_id(t, "/a"), std::string(""));
  CHECK(BatchBuilder().remove("/a").upsert("/b", {{"other"}}).apply(t).ok());
  CHECK(!set_state(t, "shared", kUp));
  CHECK(BatchBuilder().upsert("/a", {{"shared"}}).apply(t).ok());
  CHECK_EQ(lookup_id(t, "/a"), std::string("shared"));  // a new id starts up
}

// A batch numbers its ids by a 32-bit hash of their bytes: among 300,000 ids of one
// length, some share a hash, and each must still be its own next hop.
TEST(ids_that_share_a_hash_in_a_batch_stay_apart) {
  Table t;
  BatchBuilder b;
  constexpr int kIds = 300000;
  char name[32], id[16];
  for (int i = 0; i < kIds; ++i) {
    std::snprintf(name, sizeof name, "/p/%d", i);
    std::snprintf(id, sizeof id, "id-%07d", i);
    b.upsert(name, {{id}});
  }
  CHECK(b.apply(t).ok());
  int wrong = 0;
  for (int i = 0; i < kIds; ++i) {
    std::snprintf(name, sizeof name, "/p/%d", i);
    std::snprintf(id, sizeof id, "id-%07d", i);
    if (lookup_id(t, name) != id) ++wrong;
  }
  CHECK_EQ(wrong, 0);
}

// A health handle keeps an id's index while the id epoch stands still. Forgetting the id
// must move it even when a reader still holds the old index (nothing recycled yet), since
// the id may come back at another index.
TEST(forgetting_an_id_moves_the_epoch_while_a_reader_holds_its_index) {
  Table t;
  auto index_of = [&](const std::string& id) { return t.index_of(reinterpret_cast<const uint8_t*>(id.data()), id.size()); };
  CHECK(BatchBuilder().upsert("/f", {{"a"}}).apply(t).ok());
  const int64_t first = index_of("a");
  CHECK(first >= 0);
  ReaderSlot* rs = t.acquire_reader();
  rs->announced.store(t.generation());  // a view in the middle of a lookup
  const uint64_t before = t.id_epoch.load();
  CHECK(BatchBuilder().remove("/f").apply(t).ok());
  CHECK_EQ(index_of("a"), int64_t{-1});
  CHECK(t.id_epoch.load() != before);
  CHECK(BatchBuilder().upsert("/g", {{"a"}}).apply(t).ok());
  CHECK(index_of("a") >= 0 && index_of("a") != first);
  rs->announced.store(kIdle);
  t.release_reader(rs);
}

// A slot's fingerprint is 16 bits of the name's hash: two names can share one, and the
// same home slot. lookup_packed takes the first fingerprint match on the probe chain as
// its guess, and must check the name before it answers with that entry.
TEST(packed_lookups_check_the_name_behind_a_fingerprint_match) {
  // Two names with the same fingerprint and the same home slot in a 16-slot index.
  std::map<uint64_t, std::string> seen;
  std::string first, second;
  for (uint32_t i = 0; second.empty(); ++i) {
    std::string name = "/k" + std::to_string(i);
    ParsedName pn;
    CHECK(parse_name(reinterpret_cast<const uint8_t*>(name.data()), name.size(), pn) == NameError::kOk);
    const uint64_t h = pn.hash[pn.ncomp];
    const uint64_t key = (h & ~kSlotPtrMask) | (h & 15);
    auto it = seen.find(key);
    if (it == seen.end()) {
      seen.emplace(key, name);
    } else {
      first = it->second;
      second = name;
    }
  }
  Table t;
  // The first is met first on the probe chain of the second.
  CHECK(BatchBuilder().upsert(first, {{"first"}}).apply(t).ok());
  CHECK(BatchBuilder().upsert(second, {{"second"}}).apply(t).ok());
  const std::string packed = second + "/leaf" + first;
  const uint32_t offsets[] = {0, static_cast<uint32_t>(second.size() + 5), static_cast<uint32_t>(packed.size())};
  int32_t out[2] = {0, 0};
  CHECK(t.lookup_packed(t.owner_slot(), true, reinterpret_cast<const uint8_t*>(packed.data()), packed.size(), offsets, 2,
                        out, {}, nullptr).ok());
  CHECK_EQ(t.next_hop_id(t.owner_slot(), true, static_cast<uint32_t>(out[0])), std::string("second"));
  CHECK_EQ(t.next_hop_id(t.owner_slot(), true, static_cast<uint32_t>(out[1])), std::string("first"));
}

// The hits stats() reports for a prefix (0 when it reports none).
static uint64_t hits(Table& t, const std::string& prefix) {
  for (const auto& h : t.stats(1000000).prefix_hits)
    if (h.prefix == prefix) return h.hits;
  return 0;
}

// A prefix's hits count from when its name was last added: not across a remove and an
// add again, and not from another name whose key id it took over.
TEST(hits_start_at_zero_for_a_name_added_again_or_a_reused_key) {
  Table t;
  CHECK(BatchBuilder().upsert("/again", {{"a"}}).apply(t).ok());
  for (int i = 0; i < 3; ++i) lookup_id(t, "/again/x");
  CHECK_EQ(hits(t, "/again"), uint64_t{3});
  CHECK(BatchBuilder().remove("/again").apply(t).ok());
  CHECK(BatchBuilder().upsert("/again", {{"a"}}).apply(t).ok());
  CHECK_EQ(hits(t, "/again"), uint64_t{0});
  lookup_id(t, "/again");
  CHECK_EQ(hits(t, "/again"), uint64_t{1});
  // In a table of its own (baselines are kept in blocks of ids): growing the index drops
  // the tombstone of /old and frees its key id for a new name.
  Table t2;
  CHECK(BatchBuilder().upsert("/old", {{"a"}}).apply(t2).ok());
  for (int i = 0; i < 3; ++i) lookup_id(t2, "/old/x");
  CHECK(BatchBuilder().remove("/old").apply(t2).ok());
  BatchBuilder many;
  for (int i = 0; i < 40; ++i) many.upsert("/fill/" + std::to_string(i), {{"a"}});
  CHECK(many.apply(t2).ok());
  t2.stats(0);  // reclaims the tombstone
  BatchBuilder fresh;
  for (int i = 0; i < 8; ++i) fresh.upsert("/fresh/" + std::to_string(i), {{"a"}});
  CHECK(fresh.apply(t2).ok());
  for (int i = 0; i < 8; ++i) CHECK_EQ(hits(t2, "/fresh/" + std::to_string(i)), uint64_t{0});
}

// A name added again in a batch that grows the index loses its tombstone to the growth
// and takes a key id from the free list: that id's baseline must be there too, beyond
// the first block of 4,096 ids that small tables never leave.
TEST(hits_start_at_zero_for_a_name_added_again_while_the_index_grows) {
  Table t;
  BatchBuilder load;
  for (int i = 0; i < 5000; ++i) load.upsert("/a/" + std::to_string(i), {{"h"}});
  CHECK(load.apply(t).ok());
  for (int i = 0; i < 3; ++i) lookup_id(t, "/a/4500");
  CHECK(BatchBuilder().remove("/a/4500").apply(t).ok());
  BatchBuilder more;
  for (int i = 0; i < 5000; ++i) more.upsert("/b/" + std::to_string(i), {{"h"}});
  CHECK(more.apply(t).ok());  // grows, dropping the tombstone of /a/4500: its key id is free
  t.stats(0);
  BatchBuilder gone;
  for (int i = 0; i < 4000; ++i) gone.remove("/a/" + std::to_string(i));
  for (int i = 0; i < 5000; ++i) gone.remove("/b/" + std::to_string(i));
  CHECK(gone.apply(t).ok());
  t.stats(0);
  // Added again, with nothing new: the index is now sparse enough to be rebuilt.
  CHECK(BatchBuilder().upsert("/a/0", {{"h"}}).apply(t).ok());
  CHECK_EQ(hits(t, "/a/0"), uint64_t{0});
}

// The owner's last hit is counted late (at its next lookup, a commit or stats()): a
// commit that gives its key id or next-hop index to another name must count it first,
// for the name it was.
TEST(a_held_hit_is_counted_for_its_name_before_a_commit) {
  Table t;
  CHECK(BatchBuilder().upsert("/held", {{"x"}}).apply(t).ok());
  lookup_id(t, "/held");
  CHECK(BatchBuilder().remove("/held").apply(t).ok());
  CHECK(BatchBuilder().upsert("/held", {{"y"}}).apply(t).ok());
  // Added again (its hits start from zero), and x's next-hop index was free for y.
  const Stats s = t.stats(1000);
  CHECK(s.prefix_hits.empty());
  CHECK(s.nh_selections.empty());
}

TEST(churn_reclaims_memory) {
  Table t;
  CHECK(BatchBuilder().upsert("/base", {{"b"}}).apply(t).ok());
  uint64_t base = t.stats(0).used_bytes;
  for (int round = 0; round < 20; ++round) {
    BatchBuilder up, down;
    for (int i = 0; i < 2000; ++i) {
      std::string n = "/churn/" + std::to_string(round) + "/" + std::to_string(i);
      up.upsert(n, {{"id" + std::to_string(i % 50)}});
      down.remove(n);
    }
    CHECK(up.apply(t).ok());
    CHECK(down.apply(t).ok());
  }
  CHECK(BatchBuilder().upsert("/final", {{"f"}}).apply(t).ok());
  Stats s = t.stats(10);
  CHECK_EQ(s.size, uint64_t(2));
  CHECK_EQ(s.next_hops, uint64_t(2));
  CHECK(s.pending_reclaim < 64);
  CHECK(s.used_bytes < base + 4096);
  CHECK(s.memory_bytes < (4u << 20));  // the slab reuses what churn freed
}

TEST(stats_count_lookups_misses_failovers_and_hits) {
  Table t;
  CHECK(BatchBuilder().upsert("/s", {{"a"}}).upsert("/s/t", {{"b"}}).apply(t).ok());
  lookup_id(t, "/s/x");
  lookup_id(t, "/s/t");
  lookup_id(t, "/none");
  set_state(t, "b", kDown);
  lookup_id(t, "/s/t");
  Stats s = t.stats(10);
  CHECK_EQ(s.lookups, uint64_t(4));
  CHECK_EQ(s.misses, uint64_t(1));
  CHECK_EQ(s.failovers, uint64_t(1));
  CHECK_EQ(s.prefix_hits.size(), size_t(2));
  CHECK_EQ(s.prefix_hits[0].prefix, std::string("/s"));
  CHECK_EQ(s.prefix_hits[0].hits, uint64_t(2));
}
