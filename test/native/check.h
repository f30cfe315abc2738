// The few lines every native test program shares: CHECK inside a `bool Test()` function, Run() to print one
// line per test (`ok   <area>-<name>` / `FAIL <area>-<name>: why`), Summary() for the closing count line.
#ifndef IPCWIRE_TEST_NATIVE_CHECK_H_
#define IPCWIRE_TEST_NATIVE_CHECK_H_

#include <cstdio>
#include <functional>
#include <string>

namespace native_test {

inline int g_passed = 0, g_failed = 0;
inline std::string g_why;

#define CHECK(cond)                                                                      \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      native_test::g_why = std::string(#cond) + " at line " + std::to_string(__LINE__); \
      return false;                                                                      \
    }                                                                                    \
  } while (0)

inline void Run(const char* area, const char* name, const std::function<bool()>& fn) {
  g_why.clear();
  if (fn()) {
    g_passed++;
    printf("ok   %s-%s\n", area, name);
  } else {
    g_failed++;
    printf("FAIL %s-%s: %s\n", area, name, g_why.c_str());
  }
}

// Prints "<program>: N passed, N failed" and returns the exit code.
inline int Summary(const char* program) {
  printf("%s: %d passed, %d failed\n", program, g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}

}  // namespace native_test

#endif  // IPCWIRE_TEST_NATIVE_CHECK_H_
