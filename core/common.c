/* common.c: error names, the default allocator and the uint32 vector. */
#include "common.h"

#include <stdlib.h>

const char *sl_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case SL_EINVAL: return "invalid argument";
    case SL_ENOMEM: return "out of memory";
    case SL_EEXIST: return "entity already exists";
    case SL_ENOENT: return "no such entity";
    case SL_ERANGE: return "position outside the map";
    default: return "unknown error";
    }
}

void *sl__realloc(const sl_allocator *a, void *ptr, size_t old_size, size_t new_size)
{
    if (a && a->realloc)
        return a->realloc(a->ud, ptr, old_size, new_size);
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, new_size);
}

int sl__u32vec_reserve(sl_u32vec *vec, const sl_allocator *a, uint32_t need)
{
    if (need <= vec->cap)
        return 0;
    /* Grow by half again so that repeated pushes cost amortised O(1). */
    uint64_t cap = vec->cap ? vec->cap + vec->cap / 2 : 4;
    if (cap < need)
        cap = need;
    if (cap > UINT32_MAX)
        return SL_ENOMEM;
    uint32_t *v = sl__realloc(a, vec->v, sizeof(uint32_t) * (size_t)vec->cap,
                              sizeof(uint32_t) * (size_t)cap);
    if (!v)
        return SL_ENOMEM;
    vec->v = v;
    vec->cap = (uint32_t)cap;
    return 0;
}

void sl__u32vec_free(sl_u32vec *vec, const sl_allocator *a)
{
    sl__free(a, vec->v, sl__u32vec_bytes(vec));
    vec->v = NULL;
    vec->n = vec->cap = 0;
}
