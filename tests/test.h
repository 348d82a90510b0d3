/*
 * test.h: a small libuv-style test harness. Each test is `TEST_IMPL(name)` returning 0; the
 * runner executes one test per process (ctest registers one add_test per TEST_ENTRY), and a
 * failed ASSERT prints where and aborts.
 */
#pragma once

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_IMPL(name) int run_test_##name(void); int run_test_##name(void)

#define ASSERT(expr)                                                                 \
    do {                                                                             \
        if (!(expr)) {                                                               \
            fprintf(stderr, "Assertion failed in %s on line %d: %s\n", __FILE__,     \
                    __LINE__, #expr);                                                \
            fflush(stderr);                                                          \
            abort();                                                                 \
        }                                                                            \
    } while (0)

#define ASSERT_OP(a, op, b, type, fmt)                                               \
    do {                                                                             \
        type a_ = (type)(a), b_ = (type)(b);                                         \
        if (!(a_ op b_)) {                                                           \
            fprintf(stderr, "Assertion failed in %s on line %d: %s %s %s "           \
                    "(" fmt " vs " fmt ")\n", __FILE__, __LINE__, #a, #op, #b, a_, b_); \
            fflush(stderr);                                                          \
            abort();                                                                 \
        }                                                                            \
    } while (0)

#define ASSERT_EQ(a, b) ASSERT_OP(a, ==, b, int64_t, "%" PRId64)
#define ASSERT_NE(a, b) ASSERT_OP(a, !=, b, int64_t, "%" PRId64)
#define ASSERT_LE(a, b) ASSERT_OP(a, <=, b, int64_t, "%" PRId64)
#define ASSERT_U64_EQ(a, b) ASSERT_OP(a, ==, b, uint64_t, "%" PRIu64)

/* Two strings are equal (both printed when not). */
#define ASSERT_STR_EQ(a, b)                                                          \
    do {                                                                             \
        const char *a_ = (a), *b_ = (b);                                             \
        if (strcmp(a_, b_)) {                                                        \
            fprintf(stderr, "Assertion failed in %s on line %d: %s == %s\n"          \
                    "--- got:\n%s\n--- wanted:\n%s\n", __FILE__, __LINE__, #a, #b,   \
                    a_, b_);                                                         \
            fflush(stderr);                                                          \
            abort();                                                                 \
        }                                                                            \
    } while (0)
