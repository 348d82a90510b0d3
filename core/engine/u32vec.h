/*
 * u32vec.h: the engine's list of uint32 values (slots, bucket indexes), grown through the
 * space's allocator by the one growth rule of base/vec.h. Zero-initialised is empty.
 */
#pragma once

#include "base/common.h"
#include "base/vec.h"

typedef struct sl_u32vec {
    uint32_t *v;
    uint32_t n;
    uint32_t cap;
} sl_u32vec;

/* Makes room for at least `need` elements; returns 0 or SL_ENOMEM (vector unchanged). */
static inline int sl__u32vec_reserve(sl_u32vec *vec, const sl_allocator *a, uint32_t need)
{
    if (need <= vec->cap)
        return 0;
    if ((uint64_t)vec->cap + vec->cap / 2 > UINT32_MAX)
        return SL_ENOMEM;   /* the next growth would pass what n and cap can count */
    size_t cap = vec->cap;
    void *p = vec->v;
    if (sl_grow(a, &p, &cap, need, sizeof(uint32_t)))
        return SL_ENOMEM;
    vec->v = p;
    vec->cap = (uint32_t)cap;
    return 0;
}

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

static inline void sl__u32vec_free(sl_u32vec *vec, const sl_allocator *a)
{
    sl_free(a, vec->v, sl__u32vec_bytes(vec));
    vec->v = NULL;
    vec->n = vec->cap = 0;
}
