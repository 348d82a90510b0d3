/*
 * common.h: the error convention and the pluggable allocator, shared by every layer of
 * Sightline. Nothing here knows about spaces, sockets or scripts.
 *
 * Every function outside the protocol edge that can fail returns 0 for success or one of
 * the negative SL_E* codes below (errno negated, as libuv does); where a caller needs more
 * than the code, the function also fills a message buffer (`char *err, size_t errlen`).
 * The protocol's string error codes ("no_space", "limit", ...) exist only where a frame is
 * written for a client: core/server/request.c (requests), session.c (hello) and
 * core/net/net.c (framing).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Error codes are negative, as in libuv; 0 means success. */
#define SL_EPERM    (-1)    /* the caller may not do this (another client's entity) */
#define SL_ENOENT   (-2)    /* the entity id (or named object) is unknown */
#define SL_ENOEXEC  (-8)    /* scripts failed to load or to run */
#define SL_ENOMEM   (-12)   /* an allocation failed; nothing was changed */
#define SL_EEXIST   (-17)   /* the entity id (or name) is already present */
#define SL_EINVAL   (-22)   /* an argument is malformed (NaN, out of range, bad kind) */
#define SL_ELIMIT   (-28)   /* a configured limit is reached (ENOSPC) */
#define SL_ERANGE   (-34)   /* a position lies outside the space's map */
#define SL_EIO      (-5)    /* a file or socket operation failed (the message says which) */

/* Returns a static, human readable name for an SL_E* code (never NULL). */
const char *sl_strerror(int err);

/* The error convention's one-liner: writes the reason (printf-style) to err, returns code. */
int sl_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * The allocator every container of a space uses. realloc(ud, p, old, new) must behave like
 * realloc(3) when new > 0 and like free(3) when new == 0 (returning NULL). A NULL allocator
 * pointer anywhere in the API means the C library's realloc/free.
 */
typedef struct sl_allocator {
    void *(*realloc)(void *ud, void *ptr, size_t old_size, size_t new_size);
    void *ud;
} sl_allocator;

/* Allocates, grows or (new_size 0) frees through an optional allocator; NULL on failure. */
void *sl_realloc(const sl_allocator *a, void *ptr, size_t old_size, size_t new_size);
static inline void sl_free(const sl_allocator *a, void *ptr, size_t size)
{
    if (ptr)
        sl_realloc(a, ptr, size, 0);
}
