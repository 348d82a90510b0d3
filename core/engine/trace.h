/*
 * trace.h: the replay trace format, one command per line, shared by sightline-replay, the
 * tests and (later) the server's recorder.
 *
 *   # comment; blank lines ignored
 *   space W H [cell=C] [index=grid|quadtree|auto] [hysteresis=H] [depth=D]
 *                                       first command, once; depth > 0: a 3D space
 *   add ID X Y R [LAYER [SEESMASK]]     LAYER defaults to 0, SEESMASK to 0xffffffff
 *   add ID X Y Z R [LAYER [SEESMASK]]   the same, in a 3D space
 *   move ID X Y                         (in a 3D space it keeps the height)
 *   move ID X Y Z                       (extension) a 3D space's move
 *   radius ID R
 *   layer ID LAYER                      (extension)
 *   mask ID SEESMASK                    (extension; decimal or 0x hex)
 *   hysteresis ID H                     (extension) ID's own hysteresis; a negative H:
 *                                       the space's again (sl_space_set_hysteresis)
 *   always ID on|off                    (extension) ID always relevant, or not
 *   relate W T force|never|none         (extension) a pair relation (sl_space_relate)
 *   lod ID [DISTANCE:PERIOD ...]        (extension) ID's update rates by distance
 *                                       (sl_space_set_lod); none: no bands
 *   cap ID N [MARGIN]                   (extension) nearest-N: ID sees N targets at most,
 *                                       0 lifts it; MARGIN 0 if left out (sl_space_set_cap)
 *   priority ID P                       (extension) ID's priority for caps (an int32)
 *   group ID G                          (extension) ID's vision group (0: none)
 *   query X Y R [LAYERS [LIMIT]]        (extension) who is within R of (X, Y) now
 *   queryrect X Y X1 Y1 [LAYERS [LIMIT]] (extension) who is in [X, X1] x [Y, Y1] now
 *                                       (sl_space_query; the hits go to the query hook)
 *   querysphere X Y Z R [LAYERS [LIMIT]] (extension, 3D spaces) who is within R of
 *                                       (X, Y, Z) now
 *   querybox X Y Z X1 Y1 Z1 [LAYERS [LIMIT]] (extension, 3D spaces) who is in the box
 *   remove ID
 *   prop ID KEY VALUE                   (extension) a script-visible prop; VALUE is true,
 *                                       false, nil (clears it), a number, or else a string
 *   touch ID                            (extension) re-judge ID's pairs (sl_space_touch)
 *   owner ID OWNER                      (extension) who owns ID, for scripts
 *                                       (sightline.owner): a number, 0 for none
 *   tick
 *
 * IDs are unsigned 64-bit decimal; coordinates and radii are parsed as float32.
 */
#pragma once

#include "space.h"

typedef struct sl_trace {
    sl_space *space;        /* created by the `space` line; owned by the trace */
    uint64_t ticks;         /* ticks run so far (the current tick's number while in sink) */
    /* Overrides applied to the `space` line, set by the caller before the first line. */
    bool force_index;
    sl_index_kind index;
    bool stay;
    bool reasons;           /* leaves say why (sl_space_config.reasons) */
    const sl_allocator *alloc;
    sl_event_sink sink;     /* receives each tick's events */
    void *sink_ud;
    /*
     * Optional hooks for a script host: `prop` handles prop lines (without it a prop line
     * only touches the entity), `tick` runs a tick instead of sl_space_tick(space, sink,
     * sink_ud). Both return 0 or an SL_E* code (with the reason in err for prop).
     */
    int (*prop)(void *ud, uint64_t id, const char *key, const char *value, char *err,
                size_t errlen);
    int (*tick)(void *ud);
    /* `owner` lines (the entity exists; it is touched after): 0 or an SL_E* code. Without
     * it an owner line only touches the entity. */
    int (*owner)(void *ud, uint64_t id, uint64_t owner);
    /* The hits of a `query` or `queryrect` line (valid during the call). */
    void (*query)(void *ud, const sl_query_hit *hits, size_t n);
    void *hook_ud;
} sl_trace;

/* Prepares an empty trace (no space yet). */
void sl_trace_init(sl_trace *t);
/* Frees the space, if any. */
void sl_trace_free(sl_trace *t);

/*
 * Executes one line (which it may modify). Returns 0 for success, comments and blank lines;
 * otherwise a negative SL_E* code with the reason in err. A failed line changes nothing.
 */
int sl_trace_exec(sl_trace *t, char *line, char *err, size_t errlen);
/* Parses n DISTANCE:PERIOD tokens (which it modifies) into out; false when malformed. */
bool sl_trace_lod(char *const *tok, int n, sl_lod_band *out);
/* A `region` line's tok[0..n) into *id and *g (a polygon's vertices into xy, room for
 * SL_REGION_VERTICES); false when malformed (the shape itself is checked by the space). */
bool sl_trace_region(char *const *tok, int n, uint64_t *id, sl_region *g, float *xy);
/* A `query`, `queryrect`, `querysphere` or `querybox` line's tok[0..n) into *q (q->rect
 * and q->d3 set either way); false when malformed (or another command). */
bool sl_trace_query(char *const *tok, int n, sl_query *q);
