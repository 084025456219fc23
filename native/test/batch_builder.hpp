// Builds the encoded batches Table::apply takes (the same layout src/fastpath/encode.ts
// writes), for the core's tests and the fuzzer.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "table.hpp"

namespace dmsc {

struct HopDef {
  HopDef(std::string i, uint32_t w = 100, uint32_t p = 0, std::vector<std::string> t = {})
      : id(std::move(i)), weight(w), prio(p), tags(std::move(t)) {}
  HopDef() : HopDef("") {}
  std::string id;
  uint32_t weight;
  uint32_t prio;
  std::vector<std::string> tags;
};

class BatchBuilder {
 public:
  BatchBuilder& upsert(const std::string& name, const std::vector<HopDef>& hops) {
    ops_.push_back(0);
    put_name(name);
    ops_.push_back(static_cast<uint32_t>(hops.size()));
    for (const auto& h : hops) {
      ops_.push_back(intern(h.id, ids_, id_list_));
      ops_.push_back(h.weight);
      ops_.push_back(h.prio);
      ops_.push_back(static_cast<uint32_t>(h.tags.size()));
      for (const auto& t : h.tags) ops_.push_back(intern(t, tags_, tag_list_));
    }
    ++nops_;
    return *this;
  }
  BatchBuilder& remove(const std::string& name) {
    ops_.push_back(1);
    put_name(name);
    ops_.push_back(0);
    ++nops_;
    return *this;
  }
  Status apply(Table& t, bool* changed = nullptr) {
    std::vector<uint32_t> w = words();
    bool dummy;
    return t.apply(reinterpret_cast<const uint8_t*>(bytes_.data()), bytes_.size(), w.data(),
                   w.size(), changed ? changed : &dummy);
  }
  // Stages this builder's ops as one chunk of a batch the caller commits.
  Status stage(Table& t) {
    std::vector<uint32_t> w = words();
    return t.stage(reinterpret_cast<const uint8_t*>(bytes_.data()), bytes_.size(), w.data(), w.size());
  }

 private:
  using Table_ = std::map<std::string, uint32_t>;
  std::vector<uint32_t> words() const {
    std::vector<uint32_t> w{nops_, static_cast<uint32_t>(id_list_.size()),
                            static_cast<uint32_t>(tag_list_.size())};
    for (auto& p : id_list_) { w.push_back(p.first); w.push_back(p.second); }
    for (auto& p : tag_list_) { w.push_back(p.first); w.push_back(p.second); }
    w.insert(w.end(), ops_.begin(), ops_.end());
    return w;
  }
  uint32_t put(const std::string& s) {
    uint32_t off = static_cast<uint32_t>(bytes_.size());
    bytes_ += s;
    return off;
  }
  void put_name(const std::string& name) {
    ops_.push_back(put(name));
    ops_.push_back(static_cast<uint32_t>(name.size()));
  }
  uint32_t intern(const std::string& s, Table_& seen, std::vector<std::pair<uint32_t, uint32_t>>& list) {
    auto it = seen.find(s);
    if (it != seen.end()) return it->second;
    uint32_t ref = static_cast<uint32_t>(list.size());
    list.push_back({put(s), static_cast<uint32_t>(s.size())});
    seen.emplace(s, ref);
    return ref;
  }
  std::string bytes_;
  std::vector<uint32_t> ops_;
  uint32_t nops_ = 0;
  Table_ ids_, tags_;
  std::vector<std::pair<uint32_t, uint32_t>> id_list_, tag_list_;
};

// Owner-thread lookup returning the id ("" for no route).
inline std::string lookup_id(Table& t, const std::string& name, const Query& q = {},
                             bool* failover = nullptr) {
  NameError err;
  LookupResult r = t.lookup(t.owner_slot(), true, reinterpret_cast<const uint8_t*>(name.data()),
                            name.size(), q, &err);
  if (failover) *failover = r.failover;
  if (r.nh < 0) return "";
  return t.next_hop_id(t.owner_slot(), true, static_cast<uint32_t>(r.nh));
}

inline bool set_state(Table& t, const std::string& id, int state, int loadq = -1) {
  return t.set_health(reinterpret_cast<const uint8_t*>(id.data()), id.size(), state, loadq);
}

}  // namespace dmsc
