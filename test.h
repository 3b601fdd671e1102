// What every test_*.c shares: the count of failed checks and the CHECK macros.
// Each test's main ends with "if (failures) ... return 1".
#ifndef TEST_H
#define TEST_H

#include <stdio.h>

static int failures __attribute__((unused)) = 0;
static int checks_passed __attribute__((unused)) = 0;

// CHECK(cond, "what", ...): one line per check, "ok   what" or "FAIL what"
#define CHECK(cond, ...)                                   \
    do {                                                   \
        int ok_ = (cond);                                  \
        printf("%-4s ", ok_ ? "ok" : "FAIL");              \
        printf(__VA_ARGS__);                               \
        printf("\n");                                      \
        if (ok_) checks_passed++;                          \
        else failures++;                                   \
    } while (0)

// CHECK_QUIET: for checks made thousands of times, a line only for a failure,
// with the file and line of the check
#define CHECK_QUIET(cond, ...)                             \
    do {                                                   \
        if (cond) checks_passed++;                         \
        else {                                             \
            failures++;                                    \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);    \
            printf(__VA_ARGS__);                           \
            printf("\n");                                  \
        }                                                  \
    } while (0)

#endif
