/*
 * rows.h: the small tables of the cluster side (nodes, owner keys, waiting spaces, move
 * intents, drains): a vector of fixed-size rows, each starting with its NUL-terminated name
 * (at most 64 bytes), found by a linear scan (they hold nodes and spaces, never entities).
 */
#pragma once

#include "base/vec.h"

#include <string.h>

/* The row named name (n bytes), or NULL. */
static inline void *sl__row_find(const sl_vec *v, size_t size, const char *name, size_t n)
{
    for (size_t i = 0; i < v->n; i++) {
        const char *s = (const char *)v->p + i * size;
        if (strlen(s) == n && !memcmp(s, name, n))
            return (char *)v->p + i * size;
    }
    return NULL;
}

/* The row for name, found or added (zeroed, named); NULL on OOM or a name over 64 bytes. */
static inline void *sl__row_get(sl_vec *v, size_t size, const char *name, size_t n)
{
    void *r = sl__row_find(v, size, name, n);
    if (r || n > 64)
        return r;
    r = sl_vec_push(v, size);
    if (r) {
        memset(r, 0, size);
        memcpy(r, name, n);
    }
    return r;
}

/* Removes a row (the last one takes its place). */
static inline void sl__row_drop(sl_vec *v, size_t size, void *row)
{
    char *last = (char *)v->p + (v->n - 1) * size;
    if ((char *)row != last)
        memcpy(row, last, size);
    v->n--;
}
