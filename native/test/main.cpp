#include <cstdio>

#include "harness.hpp"

namespace harness {
std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}
int failures = 0;
}  // namespace harness

int main() {
  int passed = 0, failed = 0;
  for (auto& c : harness::registry()) {
    int before = harness::failures;
    c.fn();
    bool ok = harness::failures == before;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", c.name);
    (ok ? passed : failed)++;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
