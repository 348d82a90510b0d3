/*
 * The server against clients that try to hurt it or each other (see README "Permissions and
 * limits" and proto/PROTOCOL.md): each test shows one defect's fix, and fails where the
 * defect is back.
 */
#include "test.h"

#include "fixtures/server_fixture.h"

#include <string.h>

/* ---- session tokens ----------------------------------------------------------------------- */

/* splitmix64's output function and its inverse: what an attacker would use on a token made
 * from a splitmix64 stream. */
static uint64_t unshift(uint64_t y, int s)
{
    uint64_t x = y;
    for (int i = 0; i < 64 / s + 1; i++)
        x = y ^ (x >> s);
    return x;
}

static uint64_t inverse_mod64(uint64_t a)
{
    uint64_t x = a;             /* Newton: each step doubles the correct low bits */
    for (int i = 0; i < 6; i++)
        x *= 2 - a * x;
    return x;
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t unmix(uint64_t z)
{
    z = unshift(z, 31) * inverse_mod64(0x94D049BB133111EBULL);
    z = unshift(z, 27) * inverse_mod64(0xBF58476D1CE4E5B9ULL);
    return unshift(z, 30);
}

/* The token the next session would get if tokens were two outputs of a splitmix64 stream
 * (in either order: C leaves the order of a call's arguments open), from one token. */
static void predict_next(const char *token, char *next)
{
    const uint64_t gamma = 0x9E3779B97F4A7C15ULL;
    char half[17];
    memcpy(half, token, 16);
    half[16] = '\0';
    uint64_t first = strtoull(half, NULL, 16);
    memcpy(half, token + 16, 16);
    uint64_t second = strtoull(half, NULL, 16);
    uint64_t state = unmix(first);
    ASSERT_U64_EQ(mix(state), first);
    /* The stream's step from the first half to the second: +gamma, or -gamma when the
     * halves were written backwards. The next token's first half is two steps of the
     * stream on either way. */
    uint64_t step = mix(state - gamma) == second ? -gamma : gamma;
    snprintf(next, 33, "%016llx%016llx", (unsigned long long)mix(state + 2 * gamma),
             (unsigned long long)mix(state + 2 * gamma + step));
}

/* A client's token tells nothing about the next client's: 128 random bits each. */
TEST_IMPL(server_tokens_unpredictable)
{
    srv s;
    srv_start(&s, NULL);
    sl_client *a = connect_to(&s);
    char token[33], predicted[33];
    snprintf(token, sizeof token, "%s", sl_client_session(a));
    ASSERT_EQ(strlen(token), 32);
    ASSERT_EQ(strspn(token, "0123456789abcdef"), 32);
    predict_next(token, predicted);
    sl_client *b = connect_to(&s);
    ASSERT(strcmp(sl_client_session(b), token) != 0);
    ASSERT(strcmp(sl_client_session(b), predicted) != 0);
    /* The victim's token taken from a prediction would have resumed its session. */
    sl_client *thief;
    char err[256];
    ASSERT_EQ(sl_client_connect(&thief, "127.0.0.1", s.port, NULL, predicted, err, sizeof err),
              SL_EIO);
    ASSERT(strstr(err, "no_session") != NULL);
    sl_client_close(a);
    sl_client_close(b);
    srv_stop(&s, true);
    return 0;
}
