// A minimal test registry: TEST(name) { CHECK(...); }; main() runs them all.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace harness {

struct Case {
  const char* name;
  std::function<void()> fn;
};
std::vector<Case>& registry();
extern int failures;

inline std::string show(const std::string& s) { return "\"" + s + "\""; }
template <typename T>
std::string show(const T& v) { return std::to_string(v); }

struct Register {
  Register(const char* n, std::function<void()> f) { registry().push_back({n, std::move(f)}); }
};

}  // namespace harness

#define TEST(name)                                                   \
  static void name();                                                \
  static harness::Register name##_reg(#name, name);                  \
  static void name()

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++harness::failures;                                                         \
    }                                                                              \
  } while (0)

#define CHECK_EQ(a, b)                                                             \
  do {                                                                             \
    auto _a = (a);                                                                 \
    auto _b = (b);                                                                 \
    if (!(_a == _b)) {                                                             \
      std::fprintf(stderr, "  %s:%d: CHECK_EQ failed: %s == %s (%s vs %s)\n", __FILE__, \
                   __LINE__, #a, #b, harness::show(_a).c_str(), harness::show(_b).c_str()); \
      ++harness::failures;                                                         \
    }                                                                              \
  } while (0)
