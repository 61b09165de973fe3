// Index range checks that a kernel does on the device and the host reports at its next synchronisation, so an op
// that validates ids (embedding, cross_entropy) adds no host round trip of its own. This file is the host-side
// bookkeeping, in plain C++ so the CPU build tests it; tensor/cuda/device_checks.h holds the CUDA glue.
//
// Every check launched since the last report gets a tag (0, 1, 2, ...). A kernel that meets a bad index at flat
// position p does atomicMin(word, check_key(tag, p)) on one device word that starts at kNoFailure. After any
// number of checks the word names the earliest failing check and, within it, the first bad position: what a
// host-side check right after each op would have thrown. At the next synchronisation the host reads the word
// and throws the failing check's message; the pending checks are then cleared and the tags start again at 0.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "tensor/error.h"

namespace pt::cuda {

inline constexpr int kCheckPositionBits = 40;  // positions below 2^40; the 24 bits above hold the tag
inline constexpr uint64_t kNoFailure = ~uint64_t(0);

constexpr uint64_t check_key(uint64_t tag, int64_t position) {
  return (tag << kCheckPositionBits) | uint64_t(position);
}

class DeferredIndexChecks {
 public:
  // The message of a failed check, from the first bad flat position (it reads the bad value itself).
  using Describe = std::function<std::string(int64_t position)>;
  // Tags stay below 2^24 - 1, so no key of a real failure equals kNoFailure.
  static constexpr uint64_t kMaxPending = (uint64_t(1) << (64 - kCheckPositionBits)) - 1;
  static constexpr int64_t kMaxPositions = int64_t(1) << kCheckPositionBits;

  explicit DeferredIndexChecks(uint64_t capacity = kMaxPending) : capacity_(capacity) {}

  // Registers a check over `positions` flat positions; returns the tag its kernel records failures under.
  // The caller reports (synchronises) first when full().
  uint64_t add(int64_t positions, Describe describe) {
    PT_CHECK(positions >= 0 && positions < kMaxPositions, "device index check: ", positions,
             " positions exceed the 2^", kCheckPositionBits, " a check can address");
    PT_CHECK(!full(), "device index check: ", pending_.size(), " checks pending; report them first");
    pending_.push_back(std::move(describe));
    return uint64_t(pending_.size() - 1);
  }
  bool empty() const { return pending_.empty(); }
  bool full() const { return pending_.size() >= capacity_; }
  size_t pending() const { return pending_.size(); }

  // Given the device word read after every pending check ran: clears the pending checks and returns the failed
  // check's message, or "" when none failed. A word that names no pending check is an error of its own.
  std::string take_failure(uint64_t word) {
    std::vector<Describe> checks = std::exchange(pending_, {});
    if (word == kNoFailure) return "";
    const uint64_t tag = word >> kCheckPositionBits;
    const int64_t position = int64_t(word & ((uint64_t(1) << kCheckPositionBits) - 1));
    PT_CHECK(tag < checks.size(), "device index check: the device reported check ", tag, " but only ",
             checks.size(), " were pending (a kernel wrote the check word out of turn)");
    return checks[size_t(tag)](position);
  }

 private:
  uint64_t capacity_;
  std::vector<Describe> pending_;
};

}  // namespace pt::cuda
