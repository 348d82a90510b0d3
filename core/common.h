/*
 * common.h: error codes, the pluggable allocator and small growable vectors shared by every
 * core module. Nothing here knows about spaces or indexes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Error codes are negative, as in libuv; 0 means success. */
#define SL_EINVAL   (-22)   /* an argument is malformed (NaN, out of range, bad kind) */
#define SL_ENOMEM   (-12)   /* an allocation failed; nothing was changed */
#define SL_EEXIST   (-17)   /* the entity id is already present */
#define SL_ENOENT   (-2)    /* the entity id is unknown */
#define SL_ERANGE   (-34)   /* a position lies outside the space's map */

/* Returns a static, human readable name for an SL_E* code (never NULL). */
const char *sl_strerror(int err);

/*
 * The allocator every container of a space uses. realloc(ud, p, old, new) must behave like
 * realloc(3) when new > 0 and like free(3) when new == 0 (returning NULL). A NULL allocator
 * pointer anywhere in the API means the C library's realloc/free.
 */
typedef struct sl_allocator {
    void *(*realloc)(void *ud, void *ptr, size_t old_size, size_t new_size);
    void *ud;
} sl_allocator;

/* Internal helpers: allocate, grow and free through an optional allocator. */
void *sl__realloc(const sl_allocator *a, void *ptr, size_t old_size, size_t new_size);
static inline void sl__free(const sl_allocator *a, void *ptr, size_t size)
{
    if (ptr)
        sl__realloc(a, ptr, size, 0);
}

/* A growable array of uint32 values; zero-initialised is an empty vector. */
typedef struct sl_u32vec {
    uint32_t *v;
    uint32_t n;
    uint32_t cap;
} sl_u32vec;

/* Makes room for at least `need` elements; returns 0 or SL_ENOMEM (vector unchanged). */
int sl__u32vec_reserve(sl_u32vec *vec, const sl_allocator *a, uint32_t need);
void sl__u32vec_free(sl_u32vec *vec, const sl_allocator *a);

/* Appends one value; returns 0 or SL_ENOMEM. */
static inline int sl__u32vec_push(sl_u32vec *vec, const sl_allocator *a, uint32_t x)
{
    if (vec->n == vec->cap) {
        int rc = sl__u32vec_reserve(vec, a, vec->n + 1);
        if (rc)
            return rc;
    }
    vec->v[vec->n++] = x;
    return 0;
}

/* Bytes held by a vector's buffer. */
static inline size_t sl__u32vec_bytes(const sl_u32vec *vec)
{
    return (size_t)vec->cap * sizeof(uint32_t);
}
