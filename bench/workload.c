/* workload.c: W1 and W2 generators (see workload.h). */
#include "workload.h"

#include "engine/space.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool wl_init(workload *w, wl_kind kind, uint32_t n, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    w->kind = kind;
    w->n = n;
    w->width = w->height = 4096;
    w->radius = 50;
    sl_rng_seed(&w->rng, seed);
    w->x = malloc(n * sizeof(float));
    w->y = malloc(n * sizeof(float));
    w->perm = malloc(n * sizeof(uint32_t));
    w->moves = malloc((n / 5 + 1) * sizeof(wl_move));
    if (!w->x || !w->y || !w->perm || !w->moves) {
        wl_free(w);
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        w->perm[i] = i;
        if (kind == WL_W2 && sl_rng_below(&w->rng, 10) < 8) {
            w->x[i] = 1536 + sl_rng_float(&w->rng) * 1024;
            w->y[i] = 1536 + sl_rng_float(&w->rng) * 1024;
        } else {
            w->x[i] = sl_rng_float(&w->rng) * w->width;
            w->y[i] = sl_rng_float(&w->rng) * w->height;
        }
    }
    return true;
}

void wl_next_tick(workload *w)
{
    uint32_t k = w->n / 5;
    /* A partial Fisher-Yates shuffle: the first k of perm become a uniform random choice. */
    for (uint32_t i = 0; i < k; i++) {
        uint32_t j = i + sl_rng_below(&w->rng, w->n - i);
        uint32_t t = w->perm[i];
        w->perm[i] = w->perm[j];
        w->perm[j] = t;
    }
    for (uint32_t i = 0; i < k; i++) {
        uint32_t e = w->perm[i];
        float dx = (sl_rng_float(&w->rng) * 2 - 1) * 5;
        float dy = (sl_rng_float(&w->rng) * 2 - 1) * 5;
        w->x[e] = sl_clamp_to_map(w->x[e] + dx, w->width);
        w->y[e] = sl_clamp_to_map(w->y[e] + dy, w->height);
        w->moves[i] = (wl_move){e + 1, w->x[e], w->y[e], 0};
    }
    w->nmoves = k;
}

void wl_free(workload *w)
{
    free(w->x);
    free(w->y);
    free(w->perm);
    free(w->moves);
    memset(w, 0, sizeof *w);
}

const char *wl_name(wl_kind kind)
{
    return kind == WL_W1 ? "W1" : "W2";
}

bool wl_parse(const char *name, wl_kind *kind)
{
    if (strcmp(name, "W1") == 0 || strcmp(name, "W1-uniform") == 0)
        *kind = WL_W1;
    else if (strcmp(name, "W2") == 0 || strcmp(name, "W2-clustered") == 0)
        *kind = WL_W2;
    else
        return false;
    return true;
}
