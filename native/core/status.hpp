// Error codes of the core; the binding maps each to an ERR_DMSC_* code and a JS error class.
#pragma once

#include <cstdint>
#include <string>

namespace dmsc {

enum class Code : uint8_t {
  kOk = 0,
  kInvalidName,       // ERR_DMSC_INVALID_NAME
  kInvalidArgument,   // ERR_DMSC_INVALID_ARGUMENT
  kOutOfRange,        // ERR_DMSC_OUT_OF_RANGE
  kLimitExceeded,     // ERR_DMSC_LIMIT_EXCEEDED
  kDuplicateNextHop,  // ERR_DMSC_DUPLICATE_NEXT_HOP
  kInvalidOffsets,    // ERR_DMSC_INVALID_OFFSETS
  kMalformedBatch,    // ERR_DMSC_MALFORMED_BATCH
  kNoMemory,          // ERR_DMSC_NO_MEMORY
};

struct Status {
  Code code = Code::kOk;
  std::string message;
  bool ok() const { return code == Code::kOk; }
  static Status Ok() { return {}; }
  static Status Error(Code c, std::string m) { return {c, std::move(m)}; }
};

}  // namespace dmsc
