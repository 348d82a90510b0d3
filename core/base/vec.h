/*
 * vec.h: the one growable array of Sightline. Every buffer that grows (a session's events,
 * the protocol's output frames, gRPC's byte streams, the script host's emit arena, the
 * engine's uint32 lists) grows through sl_grow, by half again each time, so amortised
 * appends cost O(1) and a failed growth leaves the buffer as it was.
 *
 * sl_vec holds items of one size that the caller passes to each call (1 for bytes). It
 * uses the C library's allocator; zero-initialised is an empty vector.
 */
#pragma once

#include "base/common.h"

#include <string.h>

/*
 * Makes room for at least `need` items of `size` bytes in the array *p of *cap items, through
 * allocator a (NULL: the C library). Returns 0, or SL_ENOMEM with *p and *cap unchanged.
 */
int sl_grow(const sl_allocator *a, void **p, size_t *cap, size_t need, size_t size);

typedef struct sl_vec {
    void *p;
    size_t n, cap;          /* items held, items room */
} sl_vec;

/* Appends k uninitialised items; returns the first, or NULL on OOM (vector unchanged). With
 * k == 0 it returns where the next item would go (the array exists afterwards). */
static inline void *sl_vec_extend(sl_vec *v, size_t size, size_t k)
{
    if (k > SIZE_MAX - v->n)
        return NULL;
    if ((v->n + k > v->cap || !v->p) && sl_grow(NULL, &v->p, &v->cap, v->n + k ? v->n + k : 1,
                                                 size))
        return NULL;
    v->n += k;
    return (char *)v->p + (v->n - k) * size;
}

/* Appends one uninitialised item; returns it, or NULL on OOM. */
static inline void *sl_vec_push(sl_vec *v, size_t size)
{
    return sl_vec_extend(v, size, 1);
}

/* Appends k items copied from src; returns the index of the first, or SIZE_MAX on OOM. */
static inline size_t sl_vec_append(sl_vec *v, const void *src, size_t size, size_t k)
{
    void *dst = sl_vec_extend(v, size, k);
    if (!dst)
        return SIZE_MAX;
    if (k)
        memcpy(dst, src, k * size);
    return v->n - k;
}

/* Frees the items; the vector is empty and usable again. */
void sl_vec_free(sl_vec *v);
