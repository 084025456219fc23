// The read path: snapshot entry, longest-prefix probing and next-hop selection.
// Runs on any thread holding a reader slot; takes no lock and allocates nothing.
#include <algorithm>
#include <cstring>

#include "flow_hash.hpp"
#include "table.hpp"

namespace dmsc {
namespace {

constexpr uint32_t kNone = UINT32_MAX;

// Every candidate prefix's slot at once: their misses overlap instead of queueing, as the
// probes go from the longest down.
inline void prefetch_candidates(const SlotArray* a, uint64_t depths, const ParsedName& pn) {
  for (int d = static_cast<int>(pn.ncomp); d >= 0; --d)
    if ((depths >> d) & 1) __builtin_prefetch(&a->slots[pn.hash[d] & a->mask]);
}

inline const Version* visible(const Version* v, uint64_t snap) {
  while (v && v->born > snap) v = v->next.load(std::memory_order_acquire);
  return (v && v->nhops) ? v : nullptr;
}

}  // namespace

// Announces the generation this reader will read. The announce-then-recheck on the
// generation counter pairs with the writer's publish-then-scan in reclaim(): either the
// writer sees the announcement, or the reader sees the newer generation and retries.
Table::Snapshot Table::begin_read(ReaderSlot& rs, bool owner) {
  if (owner) return {array_.load(std::memory_order_relaxed), gen_.load(std::memory_order_relaxed)};
  for (;;) {
    uint64_t g = gen_.load(std::memory_order_seq_cst);
    rs.announced.store(g, std::memory_order_seq_cst);
    if (gen_.load(std::memory_order_seq_cst) != g) continue;
    const SlotArray* a = array_.load(std::memory_order_acquire);
    if (a->valid_from > g) continue;  // an index published with a batch not yet visible
    return {a, g};
  }
}

void Table::end_read(ReaderSlot& rs, bool owner) {
  if (!owner) rs.announced.store(kIdle, std::memory_order_release);
}

// Picks a next hop of one entry, or returns -1 when none is eligible. Sets `failover`
// when a more preferred next hop of this entry was passed over because of its health.
// Each pass over the hops is a fixed sequence of selects with no branch on a hop's
// health, weight or the random draw: which hop is picked is the one thing a lookup
// cannot predict, and a branch on it missed nearly every time.
int Table::select(const Version* v, const Query& q, ReaderSlot& rs, bool& failover) const {
  const uint32_t n = v->nhops;
  const Hop* hops = v->hops();
  // A hop's priority if it may serve (a weight, the tags asked for, not down), else kNone.
  uint32_t health[kMaxNextHopsPerEntry], rank[kMaxNextHopsPerEntry];
  uint32_t best_prio = kNone, down_prio = kNone;
  for (uint32_t i = 0; i < n; ++i) {
    const Hop& h = hops[i];
    const bool usable = h.weight != 0 && (!q.need || (v->tags(i) & q.need) == q.need);
    const uint32_t hv = nhs_.health(h.nh).load(std::memory_order_relaxed);
    const bool down = health_state(hv) == kDown;
    health[i] = hv;
    rank[i] = usable && !down ? h.prio : kNone;
    best_prio = std::min(best_prio, rank[i]);
    down_prio = std::min(down_prio, usable && down ? uint32_t{h.prio} : kNone);
  }
  if (best_prio == kNone) {
    if (down_prio != kNone) failover = true;
    return -1;
  }
  bool tier_up = false;
  for (uint32_t i = 0; i < n; ++i) tier_up |= rank[i] == best_prio && health_state(health[i]) == kUp;
  if (down_prio < best_prio || (down_prio == best_prio && !tier_up)) failover = true;
  const uint32_t want = tier_up ? kUp : kDegraded;

  if (q.has_flow) {
    // Weighted rendezvous: smallest -log2(draw) / weight, compared as cross products.
    int chosen = -1;
    uint64_t best_l = 0, best_w = 1;
    for (uint32_t i = 0; i < n; ++i) {
      uint32_t hv = health[i];
      if (rank[i] != best_prio || health_state(hv) != want) continue;
      uint64_t w = static_cast<uint64_t>(hops[i].weight) * (10000 - health_loadq(hv));
      uint64_t l = neglog2_q16(flow_draw(q.flow, nhs_.idmix(hops[i].nh)));
      if (chosen < 0 || l * best_w < best_l * w) {
        chosen = static_cast<int>(i);
        best_l = l;
        best_w = w;
      }
    }
    return chosen;
  }
  // The first hop whose running total of weights passes the draw: the number of running
  // totals at or below it.
  uint64_t upto[kMaxNextHopsPerEntry];
  uint64_t total = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const bool in = rank[i] == best_prio && health_state(health[i]) == want;
    total += in ? static_cast<uint64_t>(hops[i].weight) * (10000 - health_loadq(health[i])) : 0;
    upto[i] = total;
  }
  const uint64_t r = rs.rng.below(total);
  int chosen = 0;
  for (uint32_t i = 0; i < n; ++i) chosen += upto[i] <= r;
  // Every eligible hop weighs at least 100 while health words hold what setHealth writes;
  // a word written otherwise (the words are shared memory) must not pick past the end.
  return total ? chosen : -1;
}

bool Table::resolve(const SlotArray* a, uint64_t snap, const uint8_t* name, const ParsedName& pn,
                    const Query& q, ReaderSlot& rs, LookupResult& out, int top, const Version* hint) {
  const uint64_t depths = a->depth_mask.load(std::memory_order_acquire);
  bool failover = false;
  for (int d = top; d >= 0; --d) {
    if (!((depths >> d) & 1)) continue;
    const uint32_t len = pn.end[d];
    const Version* head = d == top && hint && hint->key_len == len && same_bytes(hint->key(), name, len)
                              ? hint
                              : find_head(a, pn.hash[d], name, len);
    const Version* v = visible(head, snap);
    if (!v) continue;
    // The hit is counted per reader in a table too large for the cache: its line comes
    // in while the next hop is chosen.
    rs.prefix_hits.prefetch(v->key_id);
    int i = select(v, q, rs, failover);
    if (i < 0) continue;
    out.nh = static_cast<int32_t>(v->hops()[i].nh);
    out.key_id = v->key_id;
    out.prefix_len = len;
    out.failover = failover;
    if (failover) ReaderSlot::add(rs.failovers, 1);
    return true;
  }
  ReaderSlot::add(rs.misses, 1);
  return false;
}

LookupResult Table::lookup(ReaderSlot& rs, bool owner, const uint8_t* name, size_t len,
                           const Query& q, NameError* err) {
  LookupResult out;
  ParsedName pn;
  *err = parse_name(name, len, pn);
  if (*err != NameError::kOk) return out;
  out.ascii = pn.ascii;
  ReaderSlot::add(rs.lookups, 1);
  if (q.unsatisfiable) {
    ReaderSlot::add(rs.misses, 1);
    return out;
  }
  ReadGuard guard(*this, rs, owner);
  out.id_epoch = id_epoch.load(std::memory_order_acquire);
  const SlotArray* a = guard.snapshot().array;
  prefetch_candidates(a, a->depth_mask.load(std::memory_order_acquire), pn);
  if (resolve(a, guard.snapshot().gen, name, pn, q, rs, out, static_cast<int>(pn.ncomp), nullptr)) {
    if (&rs == &readers_[0]) {
      // Only the owner's thread commits and reads the counters, so a hit its slot holds
      // is counted before either (settle_held): exact wherever it can be seen. Known by
      // the slot, not the flag, so that no other slot can hold one.
      settle_held(rs);
      rs.held_key = out.key_id;
      rs.held_nh = static_cast<uint32_t>(out.nh);
      rs.held = true;
      rs.nh_selections.prefetch(rs.held_nh);
    } else {
      rs.prefix_hits.bump(out.key_id);
      rs.nh_selections.bump(static_cast<uint32_t>(out.nh));
    }
  }
  return out;
}

// Looks names up in groups, DPDK style: parse a group and prefetch every candidate slot,
// then prefetch the entries whose fingerprints match, then resolve, then bump counters
// whose lines were prefetched. The misses of a group overlap instead of queueing.
// Flattened: resolve() and select() inlined into the group's loop, where a call per
// name cost about as much as what it called.
__attribute__((flatten))
Status Table::lookup_packed(ReaderSlot& rs, bool owner, const uint8_t* bytes, size_t nbytes,
                            const uint32_t* offsets, size_t n, int32_t* out, const Query& q,
                            const uint32_t* flows, uint64_t* epoch) {
  for (size_t i = 0; i < n; ++i) {
    if (offsets[i] > offsets[i + 1])
      return Status::Error(Code::kInvalidOffsets, "offsets must not decrease (offsets[" +
                                                      std::to_string(i + 1) + "])");
  }
  if (offsets[n] > nbytes)
    return Status::Error(Code::kInvalidOffsets, "offsets[" + std::to_string(n) +
                                                    "] is past the end of the bytes");
  constexpr size_t kGroup = 16;
  // The caller's arrays may change under us (a SharedArrayBuffer, or `out` aliasing
  // `offsets`): each name's bounds are read once and checked again where they are used.
  uint32_t from[kGroup], to[kGroup];
  ReadGuard guard(*this, rs, owner);
  const Snapshot& s = guard.snapshot();
  if (epoch) *epoch = id_epoch.load(std::memory_order_acquire);
  const SlotArray* a = s.array;
  const uint64_t depths = a->depth_mask.load(std::memory_order_acquire);
  ParsedName pn[kGroup];
  bool ok[kGroup];
  int top[kGroup];               // the longest depth with a candidate, or -1
  const Version* hint[kGroup];   // its entry, if the fingerprint did not lie
  LookupResult res[kGroup];
  Query fq = q;
  uint64_t invalid = 0;
  for (size_t base = 0; base < n; base += kGroup) {
    const size_t m = std::min(kGroup, n - base);
    for (size_t k = 0; k < m; ++k) {
      const size_t i = base + k;
      from[k] = offsets[i];
      to[k] = offsets[i + 1];
      ok[k] = from[k] <= to[k] && to[k] <= nbytes &&
              parse_name(bytes + from[k], to[k] - from[k], pn[k]) == NameError::kOk;
      if (ok[k]) prefetch_candidates(a, depths, pn[k]);
    }
    // The longest candidate whose fingerprint matches is nearly always the answer: its
    // entry is fetched, and the shorter candidates are left to the resolve below. The
    // longer ones have no entry (an entry's name hashes as the name does), and a name with
    // no candidate at all has no route.
    for (size_t k = 0; k < m; ++k) {
      top[k] = -1;
      hint[k] = nullptr;
      if (!ok[k]) continue;
      for (int d = static_cast<int>(pn[k].ncomp); d >= 0; --d) {
        if (!((depths >> d) & 1)) continue;
        const uint64_t h = pn[k].hash[d], fp = h & ~kSlotPtrMask;
        const char* v = nullptr;
        for (uint64_t j = h & a->mask;; j = (j + 1) & a->mask) {
          uint64_t w = a->slots[j].load(std::memory_order_acquire);
          if (!w) break;
          if ((w & ~kSlotPtrMask) == fp) {
            v = reinterpret_cast<const char*>(w & kSlotPtrMask);
            break;
          }
        }
        if (!v) continue;
        // Entries start on 32 bytes (the slab's grain). One with four next hops is 91
        // bytes without tags and 123 with: up to three lines, the key in the last.
        __builtin_prefetch(v);
        __builtin_prefetch(v + 64);
        __builtin_prefetch(v + 127);
        top[k] = d;
        hint[k] = reinterpret_cast<const Version*>(v);
        break;
      }
    }
    for (size_t k = 0; k < m; ++k) {
      const size_t i = base + k;
      res[k].nh = kNoRoute;
      if (!ok[k]) {
        out[i] = kBadName;
        ++invalid;
        continue;
      }
      if (flows) {
        fq.has_flow = true;
        fq.flow = flows[i];
      }
      if (q.unsatisfiable || top[k] < 0) {
        ReaderSlot::add(rs.misses, 1);
      } else if (resolve(a, s.gen, bytes + from[k], pn[k], fq, rs, res[k], top[k], hint[k])) {
        rs.prefix_hits.prefetch(res[k].key_id);
        rs.nh_selections.prefetch(static_cast<uint32_t>(res[k].nh));
      }
      out[i] = res[k].nh;
    }
    for (size_t k = 0; k < m; ++k) {
      if (res[k].nh < 0) continue;
      rs.prefix_hits.bump(res[k].key_id);
      rs.nh_selections.bump(static_cast<uint32_t>(res[k].nh));
    }
  }
  ReaderSlot::add(rs.lookups, n - invalid);
  ReaderSlot::add(rs.invalid, invalid);
  return Status::Ok();
}

}  // namespace dmsc
