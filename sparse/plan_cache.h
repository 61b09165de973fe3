// A handful of values keyed by shape, least recently used evicted first: the per-token-count kernel plans of a
// packed weight (the CSR forward's cuSPARSE descriptors and preprocessed workspace). A weight sees few token
// counts (a prefill length, decode's 1, a last partial batch), so a short list beats a map. Plain C++: the
// CPU build tests the policy.
#pragma once
#include <cstddef>
#include <cstdint>
#include <list>
#include <utility>

namespace pt::sparse {

template <class Key, class Value>
class PlanCache {
 public:
  explicit PlanCache(size_t capacity) : capacity_(capacity > 0 ? capacity : 1) {}

  // The value for `key`, made by make() on a miss (the least recently used entry is dropped first when full).
  // The reference stays valid until that entry is evicted.
  template <class Make>
  Value& get(const Key& key, Make&& make) {
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (!(it->first == key)) continue;
      entries_.splice(entries_.begin(), entries_, it);  // most recent first
      return entries_.front().second;
    }
    if (entries_.size() == capacity_) entries_.pop_back();
    entries_.emplace_front(key, make());
    ++builds_;
    return entries_.front().second;
  }

  size_t size() const { return entries_.size(); }
  int64_t builds() const { return builds_; }  // misses so far

 private:
  size_t capacity_;
  int64_t builds_ = 0;
  std::list<std::pair<Key, Value>> entries_;
};

}  // namespace pt::sparse
