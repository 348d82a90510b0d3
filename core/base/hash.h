/*
 * hash.h: FNV-1a 64, the one string hash of Sightline (hash tables of the script host and
 * the etcd mirror, and the schema hash of space definitions).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* FNV-1a's 64-bit offset basis and prime. */
#define SL_FNV1A64_BASIS 14695981039346656037ULL
#define SL_FNV1A64_PRIME 1099511628211ULL

/* Hashes n bytes, continuing from h (start with SL_FNV1A64_BASIS). */
static inline uint64_t sl_fnv1a64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * SL_FNV1A64_PRIME;
    return h;
}
