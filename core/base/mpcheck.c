/* mpcheck.c: see mpcheck.h. */
#include "base/mpcheck.h"

#include <stdint.h>

bool sl_msgpack_check(const void *bytes, size_t len, unsigned max_depth, bool *too_deep)
{
    const unsigned char *p = bytes;
    size_t i = 0, pending = 1;
    size_t left[SL_MSGPACK_MAX_DEPTH + 1] = {1};   /* values still to read at each open level */
    unsigned depth = 0;
    while (pending) {
        if (i >= len)
            return false;
        while (left[depth] == 0)
            depth--;                    /* (pending > 0: some open level has values left) */
        left[depth]--;
        pending--;
        unsigned b = p[i++];
        size_t skip = 0, items = 0, lenbytes = 0;
        bool container = false;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixints, nil, booleans: the byte itself */
        } else if (b >= 0x80 && b <= 0x8f) {
            items = 2 * (b & 0x0f);
            container = true;
        } else if (b >= 0x90 && b <= 0x9f) {
            items = b & 0x0f;
            container = true;
        } else if (b >= 0xa0 && b <= 0xbf) {
            skip = b & 0x1f;
        } else {
            switch (b) {
            case 0xc4: case 0xd9: lenbytes = 1; break;          /* bin8, str8 */
            case 0xc5: case 0xda: lenbytes = 2; break;          /* bin16, str16 */
            case 0xc6: case 0xdb: lenbytes = 4; break;          /* bin32, str32 */
            case 0xc7: lenbytes = 1; skip = 1; break;           /* ext8: len, type */
            case 0xc8: lenbytes = 2; skip = 1; break;
            case 0xc9: lenbytes = 4; skip = 1; break;
            case 0xca: skip = 4; break;                         /* float32 */
            case 0xcb: skip = 8; break;                         /* float64 */
            case 0xcc: case 0xd0: skip = 1; break;              /* (u)int8..64 */
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xce: case 0xd2: skip = 4; break;
            case 0xcf: case 0xd3: skip = 8; break;
            case 0xd4: skip = 2; break;                         /* fixext1..16 */
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xdc: case 0xde: lenbytes = 2; container = true; break;
            case 0xdd: case 0xdf: lenbytes = 4; container = true; break;
            default: return false;                              /* 0xc1: never used */
            }
        }
        if (lenbytes) {
            if (len - i < lenbytes)
                return false;
            size_t n = 0;
            for (size_t k = 0; k < lenbytes; k++)
                n = n << 8 | p[i + k];
            i += lenbytes;
            if (container)              /* array16/32 or map16/32 */
                items = (b == 0xde || b == 0xdf) ? 2 * n : n;
            else
                skip += n;
        }
        if (len - i < skip)
            return false;
        i += skip;
        if (items > len - i || pending + items > len - i)
            return false;
        if (container && depth + 1 > max_depth) {
            *too_deep = true;
            return false;
        }
        pending += items;
        if (items)
            left[++depth] = items;
    }
    return i == len;
}
