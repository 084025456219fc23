// Batches staged in many chunks, whose chunks after the first are decoded on a thread of
// the batch's own: all or nothing, whichever chunk fails, and safe to drop at any point.
#include <string>
#include <vector>

#include "batch_builder.hpp"
#include "harness.hpp"

using namespace dmsc;

namespace {

// Chunk c of a batch: names /c<c>/p<i>, ids shared across chunks.
BatchBuilder chunk(int c, int ops = 200) {
  BatchBuilder b;
  for (int i = 0; i < ops; ++i)
    b.upsert("/c" + std::to_string(c) + "/p" + std::to_string(i),
             {{"id" + std::to_string(i % 17)}, {"id" + std::to_string((i + 5) % 17), 50, 1, {"gdpr"}}});
  return b;
}

// Stages chunks 0..n-1, with `bad` (if any) spoiled; the first error stage() or commit() gives.
Status stage_all(Table& t, int n, int bad, bool* committed) {
  *committed = false;
  for (int c = 0; c < n; ++c) {
    BatchBuilder b = chunk(c);
    if (c == bad) b.upsert("/bad//name", {{"x"}});
    if (Status s = b.stage(t); !s.ok()) return s;
  }
  bool changed = false;
  Status s = t.commit(&changed);
  *committed = s.ok();
  return s;
}

}  // namespace

TEST(a_batch_of_many_chunks_commits_them_all_as_one_generation) {
  Table t;
  bool committed = false;
  const uint64_t gen = t.generation();
  CHECK(stage_all(t, 40, -1, &committed).ok());
  CHECK(committed);
  CHECK_EQ(t.generation(), gen + 1);
  CHECK_EQ(t.size(), uint64_t(40 * 200));
  CHECK_EQ(lookup_id(t, "/c39/p199/x").empty(), false);
  CHECK_EQ(lookup_id(t, "/c0/p0").empty(), false);
  // Within the batch the last op on a name wins, across chunks too.
  CHECK(BatchBuilder().upsert("/c1/p1", {{"first"}}).stage(t).ok());
  CHECK(BatchBuilder().upsert("/x", {{"y"}}).stage(t).ok());
  CHECK(BatchBuilder().upsert("/c1/p1", {{"last"}}).stage(t).ok());
  bool changed = false;
  CHECK(t.commit(&changed).ok());
  CHECK_EQ(lookup_id(t, "/c1/p1"), std::string("last"));
}

TEST(a_bad_chunk_anywhere_fails_the_batch_and_changes_nothing) {
  for (int bad : {0, 1, 2, 17, 39}) {
    Table t;
    CHECK(BatchBuilder().upsert("/keep", {{"k"}}).apply(t).ok());
    const uint64_t gen = t.generation();
    bool committed = true;
    Status s = stage_all(t, 40, bad, &committed);
    CHECK(s.code == Code::kInvalidName);
    CHECK(!committed);
    CHECK_EQ(t.generation(), gen);
    CHECK_EQ(t.size(), uint64_t(1));
    CHECK_EQ(lookup_id(t, "/c0/p0"), std::string(""));
    // A failed batch leaves nothing staged: the next one starts clean.
    bool changed = false;
    CHECK(t.commit(&changed).ok());
    CHECK(!changed);
    CHECK(stage_all(t, 3, -1, &committed).ok());
    CHECK_EQ(t.size(), uint64_t(1 + 3 * 200));
  }
}

TEST(a_background_chunk_s_error_stops_the_producer_before_commit) {
  Table t;
  CHECK(chunk(0).stage(t).ok());
  BatchBuilder bad = chunk(1);
  bad.upsert("/bad//name", {{"x"}});
  Status s = bad.stage(t);  // queued for the decoder thread: its error comes later
  // The queue holds four chunks: a producer that goes on staging waits for room, which
  // the failed decoder never makes, and is given the error instead.
  for (int c = 2; c < 12 && s.ok(); ++c) s = chunk(c).stage(t);
  CHECK(s.code == Code::kInvalidName);
  CHECK_EQ(t.size(), uint64_t(0));
  bool changed = true;
  CHECK(t.commit(&changed).ok());  // nothing is left staged
  CHECK(!changed);
}

TEST(a_batch_dropped_or_left_staged_stops_its_decoder) {
  {
    Table t;
    for (int c = 0; c < 20; ++c) CHECK(chunk(c).stage(t).ok());
    t.discard();
    bool changed = false;
    CHECK(t.commit(&changed).ok());
    CHECK(!changed);
    CHECK_EQ(t.size(), uint64_t(0));
    CHECK(chunk(0).apply(t).ok());  // apply() discards whatever was staged, then stages
    CHECK_EQ(t.size(), uint64_t(200));
  }
  {
    Table t;  // destroyed with chunks still waiting for the decoder
    for (int c = 0; c < 20; ++c) CHECK(chunk(c, 2000).stage(t).ok());
  }
}
