/* The host tests' one assertion: CHECK(condition, printf-style message) reports a failure with
 * its line and counts it in `failures`; a test binary exits non-zero when any failed. */
#ifndef SPARCL_TEST_CHECK_H_
#define SPARCL_TEST_CHECK_H_

#include <stdio.h>

static int failures = 0;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
      ++failures;                                          \
    }                                                      \
  } while (0)

#endif /* SPARCL_TEST_CHECK_H_ */
