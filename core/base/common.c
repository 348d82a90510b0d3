/* common.c: error names, the default allocator, the growth of every growable array, and
 * the log line (log.h). */
#include "base/common.h"
#include "base/log.h"
#include "base/vec.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

const char *sl_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case SL_EPERM: return "not permitted";
    case SL_ENOENT: return "no such entity";
    case SL_EIO: return "input/output error";
    case SL_ENOEXEC: return "scripts failed";
    case SL_ENOMEM: return "out of memory";
    case SL_EEXIST: return "entity already exists";
    case SL_EINVAL: return "invalid argument";
    case SL_ELIMIT: return "limit reached";
    case SL_ERANGE: return "position outside the map";
    default: return "unknown error";
    }
}

int sl_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

void *sl_realloc(const sl_allocator *a, void *ptr, size_t old_size, size_t new_size)
{
    if (a && a->realloc)
        return a->realloc(a->ud, ptr, old_size, new_size);
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, new_size);
}

int sl_grow(const sl_allocator *a, void **p, size_t *cap, size_t need, size_t size)
{
    assert(size > 0);
    if (need <= *cap)
        return 0;
    /* Grow by half again so that repeated appends cost amortised O(1). */
    size_t n = *cap ? *cap + *cap / 2 : 4;
    if (n < need)
        n = need;
    if (n > SIZE_MAX / size)
        return SL_ENOMEM;
    void *q = sl_realloc(a, *p, *cap * size, n * size);
    if (!q)
        return SL_ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

void sl_vec_free(sl_vec *v)
{
    free(v->p);
    *v = (sl_vec){0};
}

void sl_vlog(const char *fmt, va_list ap)
{
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ sightline: %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            line);
}

void sl_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_vlog(fmt, ap);
    va_end(ap);
}
