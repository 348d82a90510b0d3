/*
 * space.h: a space (one map) holding entities, and the tick that turns their changes into
 * enter / leave / stay events.
 *
 * The visibility contract, exact and the same for every index and SIMD level:
 * watcher w sees target t when t != w, both are present, r_w > 0, bit t.layer of w.mask is
 * set, and d2 <= r_w*r_w, where d2 = dx*dx + dy*dy with dx = t.x - w.x and dy = t.y - w.y,
 * all in float32 (no fused multiply-add). In a 3D space (sl_space_config.depth > 0) the
 * test is a sphere: d2 = (dx*dx + dy*dy) + dz*dz, dz = t.z - w.z, summed in that order;
 * everything that speaks of a distance (hysteresis, caps, LOD bands, leave reasons) uses
 * that d2. A pair that was visible at the previous tick stays
 * visible while d2 <= (r_w + h)*(r_w + h), h being the space's hysteresis, unless either
 * entity was removed since that tick (a re-added id starts afresh).
 *
 * Mutations apply immediately; events come only from sl_space_tick(), and are exactly the
 * difference between the visible pairs (by id) after the previous tick and after this one:
 * enter for new pairs, leave for pairs gone, except that a watcher absent after the tick
 * receives nothing. With `stay` on, a pair visible before and after in which either entity
 * was added, moved or changed during the tick yields a stay event.
 *
 * The order of a tick's events is the space's `order`: SL_ORDER_ID (the default) sorts them
 * by watcher id, then target id; SL_ORDER_TICK hands them over in the order the tick found
 * them, which saves the sort (a large share of a busy tick) and is deterministic: the same
 * operations on a space built the same way give the same sequence; it follows the space's
 * memory layout, not the ids, and may differ on a space rebuilt from a snapshot.
 */
#pragma once

#include "base/common.h"
#include "index.h"

typedef struct sl_space sl_space;

/*
 * Clamps a coordinate into [0, side): the map excludes its far edge, so the largest valid
 * coordinate is the float just below `side`. NaN stays NaN (and is then refused).
 */
static inline float sl_clamp_to_map(float v, float side)
{
    if (v < 0)
        return 0;
    if (v >= side)
        return __builtin_nextafterf(side, 0);
    return v;
}

typedef enum sl_event_order {
    SL_ORDER_ID = 0,        /* sorted by watcher id, then target id */
    SL_ORDER_TICK = 1       /* as the tick finds them (deterministic, not sorted) */
} sl_event_order;

/* "id" or "tick" into *out; SL_EINVAL for anything else. */
int sl_event_order_parse(const char *name, sl_event_order *out);
const char *sl_event_order_name(sl_event_order order);

typedef struct sl_space_config {
    float width, height;    /* the map is [0, width) x [0, height); both > 0 and finite */
    sl_index_kind index;    /* grid, quadtree, or auto (chosen and revised by density) */
    float cell;             /* grid cell / minimum quadtree leaf; 0 derives it from radii */
    float hysteresis;       /* h >= 0 */
    bool stay;              /* also emit stay events */
    const sl_allocator *alloc;  /* NULL for malloc */
    sl_event_order order;   /* the order of a tick's events (see above) */
    /* With the tick order: hand a tick's events to the sink in batches while the tick runs,
     * once tens of thousands have gathered, instead of holding them all (the first tick
     * after a bulk add has millions). The sink then must not call the space at all until
     * sl_space_tick returns, not even to read it (a tick that re-adds an id, or whose ids
     * do not fit in 31 bits, does not stream). */
    bool stream;
    /* Leaves say why (sl_event.reason). The events then travel as records, not packed keys
     * (a little slower). */
    bool reasons;
    /* 0: a flat space. > 0 (finite): a 3D space, entities at z in [0, depth), seen by
     * sphere (see the contract above). The index stays 2D; queries and regions are 2D
     * unless said otherwise (sl_query.d3). */
    float depth;
} sl_space_config;

typedef enum sl_event_kind {
    SL_EVENT_ENTER = 0,
    SL_EVENT_LEAVE = 1,
    SL_EVENT_STAY = 2
} sl_event_kind;

/* Why a pair stopped being visible (spaces with sl_space_config.reasons; else none): the
 * first that holds of: the target was removed; a never relation; the watcher's mask refuses
 * the target's layer; out of range (beyond r_w, and beyond r_w + h_w too unless the watcher
 * was re-added this tick; or r_w is 0); the rule said no; else it is still a candidate of a
 * capped watcher, which the cap left out (sl_space_set_cap). */
typedef enum sl_leave_reason {
    SL_LEAVE_NONE, SL_LEAVE_REMOVED, SL_LEAVE_NEVER, SL_LEAVE_LAYER, SL_LEAVE_RANGE,
    SL_LEAVE_RULE, SL_LEAVE_CAP
} sl_leave_reason;
const char *sl_leave_reason_name(sl_leave_reason r);

typedef struct sl_event {
    uint64_t watcher;
    uint64_t target;
    uint32_t kind;          /* sl_event_kind */
    uint32_t reason;        /* a leave's sl_leave_reason (SL_LEAVE_NONE unless asked for) */
} sl_event;

/*
 * Receives a tick's events, in the space's order (sorted by watcher id then target id unless
 * it is SL_ORDER_TICK), in one or more calls; the array is owned by the space and valid
 * only during the call. The sink must not change the space.
 */
typedef void (*sl_event_sink)(void *ud, const sl_event *events, size_t n);

/* A distance band of a watcher's update rates (sl_space_set_lod). */
#define SL_LOD_BANDS 8
typedef struct sl_lod_band {
    float distance;
    uint32_t period;
} sl_lod_band;

/* What sl_space_get reports of one entity. */
typedef struct sl_entity_info {
    uint64_t id;
    float x, y, radius;
    float z;                /* 0 in a flat space */
    uint32_t layer, mask;
    uint32_t sees;          /* targets it saw at the last tick */
    /* Its own hysteresis (sl_space_set_hysteresis), when own_hysteresis; else the space's
     * applies (and hysteresis is the space's, for the reader's convenience). */
    float hysteresis;
    bool own_hysteresis;
    uint32_t nlod;          /* its LOD bands (sl_space_set_lod), lod[0..nlod) */
    sl_lod_band lod[SL_LOD_BANDS];
    bool always;            /* always relevant (sl_space_set_always) */
    uint32_t cap;           /* its cap and margin (sl_space_set_cap); 0: none */
    float cap_margin;
    int32_t priority;       /* (sl_space_set_priority) */
    /* Of a capped watcher: its candidates at the last tick (`sees` counts what it showed,
     * the candidates the cap kept). Else equal to sees. */
    uint32_t candidates;
    uint32_t group;         /* its vision group (sl_space_set_group); 0: none */
} sl_entity_info;

/*
 * A visibility rule, applied on top of distance and layers (the scripting layer installs
 * one). The tick hands it, in batches, the pairs in range that need a verdict: a pair that
 * comes into range, and every pair of an entity that was added, touched (sl_space_touch) or
 * given a new radius, layer or mask, and every pair after sl_space_set_rule or
 * sl_space_rejudge. verdict[i] holds the pair's previous verdict (1 visible, 0 not) on
 * entry; the rule overwrites it, or leaves it to keep the previous one (what a failing rule
 * should do). Other pairs keep their verdict without asking, so a rule may depend on ids,
 * radii, layers, masks and whatever the caller reports by touching, but not on positions:
 * a pair is asked again when it comes back into range, not while it moves within it.
 * The rule runs inside sl_space_tick and must not change the space; it may read it.
 */
typedef struct sl_rule_pair {
    uint64_t watcher, target;
} sl_rule_pair;

typedef void (*sl_rule_fn)(void *ud, const sl_rule_pair *pairs, size_t n, uint8_t *verdict);

typedef struct sl_space_stats {
    uint32_t entities, watchers, big_watchers;
    uint64_t pairs;         /* visible pairs after the last tick */
    uint64_t ticks;
    uint32_t last_dirty;    /* entities the last tick had to look at */
    uint64_t compactions;   /* times the slots were renumbered in spatial order */
    uint32_t last_special;  /* of last_dirty: added, re-shaped or far jumps (the slower pass) */
    uint64_t rule_calls;    /* pairs handed to the rule, all ticks */
    bool last_uniform;      /* the last tick judged moves the uniform way: every entity alike
                               (radius, layer, mask), no hysteresis, rule, stays or big ones */
    sl_index_kind index;    /* the index in use (never auto) */
    float cell;
    size_t bytes_entities, bytes_index, bytes_pairs, bytes_total;
} sl_space_stats;

/*
 * Creates a space. Returns 0 and sets *out, SL_EINVAL for a bad config (the reason is
 * written to errbuf when given), or SL_ENOMEM.
 */
int sl_space_new(sl_space **out, const sl_space_config *cfg, char *errbuf, size_t errlen);
/* Frees the space and everything in it; pending events are dropped. */
void sl_space_free(sl_space *s);

/*
 * Entity operations. Each returns 0, or a negative SL_E* code and changes nothing; the
 * reason is then available from sl_space_error(). A radius of 0 watches nothing; layer is
 * 0..31; mask is the set of layers the entity sees (all bits: every layer).
 */
int sl_space_add(sl_space *s, uint64_t id, float x, float y, float radius, uint32_t layer,
                 uint32_t mask);
int sl_space_move(sl_space *s, uint64_t id, float x, float y);
/* In a 3D space: add at height z (sl_space_add adds at z = 0), and move to (x, y, z)
 * (sl_space_move keeps z). z must be finite and in [0, depth): else SL_EINVAL / SL_ERANGE.
 * In a flat space z must be 0 (else SL_EINVAL). */
int sl_space_add3(sl_space *s, uint64_t id, float x, float y, float z, float radius,
                  uint32_t layer, uint32_t mask);
int sl_space_move3(sl_space *s, uint64_t id, float x, float y, float z);
int sl_space_set_radius(sl_space *s, uint64_t id, float radius);
int sl_space_set_layer(sl_space *s, uint64_t id, uint32_t layer);
int sl_space_set_mask(sl_space *s, uint64_t id, uint32_t mask);
/*
 * Gives id its own hysteresis h >= 0 in place of the space's (sl_space_config.hysteresis):
 * a pair it watches, once visible, stays visible until the target is farther than its
 * radius + h. A pair's hysteresis is always its watcher's. A negative h gives the entity the
 * space's hysteresis again; NaN or infinity is refused (SL_EINVAL). Its pairs are judged
 * afresh at the next tick, as after a radius change.
 */
int sl_space_set_hysteresis(sl_space *s, uint64_t id, float h);

/*
 * Update rate by distance (level of detail) for the stays of watcher id: bands of growing
 * distance, each with a period. A stay of pair (id, t) at tick n (the space's tick count,
 * 1 at its first tick) is emitted only when (id + t) mod period == n mod period (id + t
 * taken modulo 2^64), for the period of the first band whose distance d has
 * dx*dx + dy*dy <= d*d (float32, as the visibility test), or of the last band when none has.
 * Enters and leaves are never held back. Up to SL_LOD_BANDS bands, distances finite, >= 0
 * and increasing, periods 1..65535; n == 0 removes them (so does removing the entity).
 * 0, SL_ENOENT or SL_EINVAL.
 */
int sl_space_set_lod(sl_space *s, uint64_t id, const sl_lod_band *bands, uint32_t n);

/*
 * Pair relations. SL_REL_FORCE: watcher w sees t whenever w watches (radius > 0) and its
 * sees-mask accepts t's layer, whatever the distance, hysteresis and rule say; SL_REL_NEVER:
 * w never sees t; SL_REL_NONE clears the pair's relation. A pair has one relation at most
 * (setting one replaces the other), of the pair of ids as they are: removing either entity
 * drops it. It applies from the next tick (w's pairs are judged again then, as after
 * sl_space_touch). Only related pairs cost storage and work. 0, SL_ENOENT (either id),
 * SL_EINVAL (w == t, or no such relation) or SL_ENOMEM.
 */
typedef enum sl_relation { SL_REL_NONE, SL_REL_FORCE, SL_REL_NEVER } sl_relation;
int sl_space_relate(sl_space *s, uint64_t w, uint64_t t, sl_relation rel);
sl_relation sl_space_relation(const sl_space *s, uint64_t w, uint64_t t);
/*
 * Always-relevant entities: one marked `on` is seen by every watcher of the space whose
 * sees-mask accepts its layer, whatever the distance, hysteresis and rule say (a boss, a
 * flag, a world event); a `never` relation still hides it from that watcher. It applies
 * from the next tick; the change costs a pass over the watchers then, and each tick after
 * costs nothing more than its pairs' stays, when the space has stays. 0 or SL_ENOENT.
 */
int sl_space_set_always(sl_space *s, uint64_t id, bool on);
/*
 * Nearest-N with priority. A watcher with a cap n > 0 sees, of its candidates (the targets
 * it would see without a cap: by distance, hysteresis, layers, rule and relations), those
 * that are forced or always relevant, and of the others the n ranked first by: priority
 * (sl_space_set_priority), higher first; then distance, nearer first; then id, lower first.
 * The distance is sqrtf(d2) in float32, less the margin m (float32) for a target it showed
 * at the last tick when neither end was removed since: a shown target gives way only to one
 * nearer by more than m (a margin against churn at the boundary). Hysteresis acts on the
 * candidates: a candidate within r + h stays one while it was one at the last tick, shown
 * or not. A leave because the cap left a candidate out says SL_LEAVE_CAP. n == 0 lifts the
 * cap; removing the entity drops it. The change applies from the next tick and counts as
 * a change of the entity for stays (as a move where it is). 0, SL_ENOENT, SL_EINVAL (m not
 * finite or < 0) or SL_ENOMEM.
 */
int sl_space_set_cap(sl_space *s, uint64_t id, uint32_t n, float margin);
/* The entity's priority for capped watchers (0 when added); a change counts as a change of
 * the entity for stays. 0 or SL_ENOENT. */
int sl_space_set_priority(sl_space *s, uint64_t id, int32_t priority);
/*
 * Vision groups (shared vision): entity id belongs to group g (1..2^32-1; 0: none). A group
 * sees a target when one of its members sees it (the member's pairs, as they are: after
 * its cap); the group events of a tick are exactly the difference, by (group, target id),
 * between what each group saw after the previous tick and after this one, with the
 * membership of each. A change of group applies from the next tick; removing the entity
 * takes it out of its group. In a space with reasons, a group leave says why, the first
 * that holds of: the target was removed; none of the members that saw it at the last tick
 * is still one (they changed group or were removed): `left`; else `unseen`. 0 or
 * SL_ENOENT, SL_ENOMEM.
 */
int sl_space_set_group(sl_space *s, uint64_t id, uint32_t group);
typedef enum sl_group_leave_reason {
    SL_GLEAVE_NONE, SL_GLEAVE_REMOVED, SL_GLEAVE_LEFT, SL_GLEAVE_UNSEEN
} sl_group_leave_reason;
const char *sl_group_leave_reason_name(sl_group_leave_reason r);
typedef struct sl_group_event {
    uint32_t group;
    uint32_t kind;          /* SL_EVENT_ENTER or SL_EVENT_LEAVE */
    uint64_t target;
    uint32_t reason;        /* a leave's sl_group_leave_reason (spaces with reasons) */
} sl_group_event;
/* The last tick's group events, sorted by group, then target id (valid until the space is
 * changed or ticks again). */
const sl_group_event *sl_space_group_events(const sl_space *s, size_t *n);
/* "none", "force", "never"; parse: false for another word. */
const char *sl_relation_name(sl_relation k);
bool sl_relation_parse(const char *word, sl_relation *k);
/* Every relation set now (not the cleared ones), w watching t. */
void sl_space_relations_each(const sl_space *s,
                             void (*fn)(void *ud, uint64_t w, uint64_t t, sl_relation rel),
                             void *ud);
/* Whether the stay of (w, t) is due at tick n by those rules, for bands (see above). */
bool sl_lod_due(const sl_lod_band *bands, uint32_t n, uint64_t w, uint64_t t, float d2,
                uint64_t tick);
int sl_space_remove(sl_space *s, uint64_t id);

/* One move of a batch (see sl_space_move_many). */
typedef struct sl_move {
    uint64_t id;
    float x, y;
    float z;                /* a 3D space's new z; NaN keeps it (as sl_space_move) */
} sl_move;

/* Told about a move of a batch that failed: its index, and the code (sl_space_error says why). */
typedef void (*sl_move_fail_fn)(void *ud, size_t index, int code);

/*
 * Applies moves[0..n) with the result of n calls of sl_space_move in that order, but faster:
 * the moves are checked first, then applied in the order of the entities' storage. For each
 * move that fails, fail (when not NULL) is called at once, while sl_space_error() still
 * describes it: in index order, except that an out-of-memory failure (found when applying)
 * comes after the failed checks. Returns how many failed.
 */
size_t sl_space_move_many(sl_space *s, const sl_move *moves, size_t n, sl_move_fail_fn fail,
                          void *ud);

/*
 * Installs (or with fn NULL removes) the visibility rule; every pair is judged afresh at
 * the next tick, so the change yields the right enters and leaves.
 */
void sl_space_set_rule(sl_space *s, sl_rule_fn fn, void *ud);

/*
 * Lends the space a thread pool (base/pool.h; NULL: none): a tick then judges its moved
 * entities on the pool's threads when it has enough of them (thousands) in a uniform space
 * on a grid index, and sorts a big tick's events there, and gives exactly the events, and
 * in the tick order the sequence, of a tick on one thread. The pool must be idle when the
 * tick starts: a space ticked from inside a job of the same pool must not have it.
 */
struct sl_pool;
void sl_space_set_pool(sl_space *s, struct sl_pool *pool);
/* Re-judges every pair at the next tick (the rule itself changed, e.g. a script reload). */
void sl_space_rejudge(sl_space *s);
/*
 * Says that the rule's inputs for id changed (e.g. a property): its pairs are re-judged at
 * the next tick, and count as changed for stay events. Returns 0 or SL_ENOENT.
 */
int sl_space_touch(sl_space *s, uint64_t id);

/* The message of the last failed operation on s ("" if none failed yet). */
const char *sl_space_error(const sl_space *s);

/*
 * Computes this tick's events and hands them to sink (which may be NULL to discard them).
 * Returns 0, or SL_ENOMEM, in which case some events of this tick may be missing but the
 * space stays consistent with its entities.
 */
int sl_space_tick(sl_space *s, sl_event_sink sink, void *ud);

/*
 * Queries: who is in a circle or a rectangle now. The entities e present now, at their
 * positions now (every change applied so far, also between ticks and during one), with bit
 * e.layer of mask set, inside the shape: for a circle dx*dx + dy*dy <= r*r, dx = e.x - x,
 * dy = e.y - y (float32, no fused multiply-add); for a rectangle x <= e.x <= x1 and
 * y <= e.y <= y1 (edges included). Hits are ordered by d2 from the centre (the circle's, or
 * the rectangle's: x + (x1 - x) * 0.5f, likewise y), then by id; at most `limit` of them
 * (0: all). *hits is the space's, valid until the next query or change of the space. 0, or
 * SL_EINVAL (not finite, r < 0, x1 < x or y1 < y, z1 < z, d3 in a flat space) or SL_ENOMEM
 * (no hits).
 * In a 3D space a query is 2D (a vertical cylinder or prism: every height) unless d3: the
 * circle is then a sphere, d2 = (dx*dx + dy*dy) + dz*dz with dz = e.z - z, and the rectangle
 * a box, z <= e.z <= z1 too, its centre's z being z + (z1 - z) * 0.5f; d2 orders the hits.
 */
typedef struct sl_query {
    float x, y, r;          /* the circle (or the rectangle's low corner: x, y) */
    float x1, y1;           /* the rectangle's high corner */
    bool rect;
    uint32_t mask;          /* the layers asked for */
    uint32_t limit;
    bool d3;                /* 3D spaces: a sphere around (x, y, z), or a box up to z1 */
    float z, z1;
} sl_query;
typedef struct sl_query_hit {
    uint64_t id;
    float x, y, d2;
    float z;
} sl_query_hit;
int sl_space_query(sl_space *s, const sl_query *q, const sl_query_hit **hits, size_t *n);

/*
 * Regions (triggers, zones): shapes in the space, each with a layer mask, and an id of the
 * caller's choosing (its own namespace: a region and an entity may share an id). Entity e
 * is in region g when e is present, bit e.layer of g's mask is set, and e's position is
 * inside g's shape:
 *  - circle (x, y, r): dx*dx + dy*dy <= r*r, dx = e.x - x, dy = e.y - y (float32, no FMA);
 *  - rectangle: x <= e.x <= x1 and y <= e.y <= y1 (edges included);
 *  - polygon of n vertices (3..SL_REGION_VERTICES, in order; edges from each to the next and
 *    from the last to the first): inside the box of its vertices (edges included), and on
 *    an edge or inside by the crossing rule, exactly as sl_polygon_contains computes it.
 * In a 3D space a region is a vertical prism: the shape holds an entity at any height.
 * A tick's region events are the difference, by (region id, entity id), between who was in
 * which region after the previous tick and after this one, sorted by region id then entity
 * id. Changes apply at once (at the next tick for the events); a region replaced by
 * sl_space_set_region keeps its id and its members, and its events are the difference too;
 * a removed region gets no events. Returns 0, SL_EINVAL (a shape not finite, a radius < 0,
 * x1 < x or y1 < y, a polygon's vertex count), SL_ENOENT (remove: no such region),
 * SL_ELIMIT (the regions' boxes would take more than 2^20 cells of the region grid in all:
 * a region over the whole map takes up to 64 x 64) or SL_ENOMEM.
 */
#define SL_REGION_VERTICES 64
typedef enum sl_region_kind {
    SL_REGION_CIRCLE, SL_REGION_RECT, SL_REGION_POLYGON
} sl_region_kind;
typedef struct sl_region {
    sl_region_kind kind;
    float x, y, r;          /* circle; a rectangle's low corner (x, y) */
    float x1, y1;           /* a rectangle's high corner */
    const float *xy;        /* a polygon's n vertices: x0, y0, x1, y1, ... */
    uint32_t n;
    uint32_t mask;          /* the layers it notices */
} sl_region;
typedef struct sl_region_event {
    uint64_t region, entity;
    uint32_t kind;          /* SL_EVENT_ENTER or SL_EVENT_LEAVE */
} sl_region_event;
int sl_space_set_region(sl_space *s, uint64_t id, const sl_region *g);
int sl_space_remove_region(sl_space *s, uint64_t id);
/* The last tick's region events (valid until the space ticks again or is freed). */
const sl_region_event *sl_space_region_events(const sl_space *s, size_t *n);
/* Region id starts afresh: its members are forgotten, so that the next tick enters whoever
 * is in it (a region that changed hands). 0, SL_ENOENT or SL_ENOMEM. */
int sl_space_region_forget(sl_space *s, uint64_t id);
/* Whether entity id was in region `region` at the last tick. */
bool sl_space_in_region(const sl_space *s, uint64_t region, uint64_t id);
/* Region id's shape now (a polygon's vertices are the space's: valid until it changes), and
 * how many entities were in it at the last tick (members may be NULL); 0 or SL_ENOENT. */
int sl_space_get_region(const sl_space *s, uint64_t id, sl_region *out, uint32_t *members);
/* Calls fn for each entity that was in region id at the last tick (no particular order). */
void sl_space_region_members(const sl_space *s, uint64_t id, void (*fn)(void *ud, uint64_t e),
                             void *ud);
/* A region as a snapshot had it: set (as sl_space_set_region) with the members it had at
 * the exporting space's last tick, so that the next tick's events are the difference from
 * them. For a space rebuilt by sl_space_import, before its next tick. 0 or as set_region. */
int sl_space_restore_region(sl_space *s, uint64_t id, const sl_region *g, const uint64_t *members,
                            size_t n);
/* Calls fn for every region's id, in no particular order. fn must not change s. */
void sl_space_regions_each(const sl_space *s, void (*fn)(void *ud, uint64_t id), void *ud);
/* The polygon test of the contract: whether (px, py) is on an edge of, or inside by the
 * crossing rule, the polygon of n vertices xy, the orientation of a point p against an
 * edge a -> b being the sign of (bx - ax)(py - ay) - (by - ay)(px - ax) computed in double
 * precision (IEEE 754, round to nearest, no FMA) from the float32 coordinates. An edge that
 * goes up (ay <= py < by) counts when p is left of it (> 0), one that goes down
 * (by <= py < ay) when p is right of it (< 0); p is inside when the count is odd. (The box
 * of the vertices is checked by the caller.) */
bool sl_polygon_contains(const float *xy, uint32_t n, float px, float py);

/* Whether watcher w saw target t at the last tick (false when either is unknown). */
bool sl_space_sees(const sl_space *s, uint64_t w, uint64_t t);
/* Whether t was one of w's candidates at the last tick: what w would have seen without a
 * cap (sl_space_set_cap); for a watcher without one, sl_space_sees. */
bool sl_space_candidate(const sl_space *s, uint64_t w, uint64_t t);
/* Fills *info for id; returns 0 or SL_ENOENT. */
int sl_space_get(const sl_space *s, uint64_t id, sl_entity_info *info);
/* Only id's position (one record read, where sl_space_get reads three); 0 or SL_ENOENT.
 * z (may be NULL): its height (0 in a flat space). */
int sl_space_position(const sl_space *s, uint64_t id, float *x, float *y);
int sl_space_position3(const sl_space *s, uint64_t id, float *x, float *y, float *z);
/* Calls fn for every entity present, in no particular order. fn must not change s. */
void sl_space_each(const sl_space *s, void (*fn)(void *ud, const sl_entity_info *e), void *ud);
/* The configuration the space was created with. */
const sl_space_config *sl_space_config_of(const sl_space *s);
/* Counts and memory (memory is summed on demand: O(entities)). */
void sl_space_get_stats(const sl_space *s, sl_space_stats *st);

/*
 * Renumbers the entities in spatial order so that neighbours sit together in memory. The
 * tick does this by itself after bulk adds; a server may also call it at a quiet moment.
 * Costs O(entities + visible pairs). Only between a tick and the next change: returns 0,
 * SL_EINVAL when changes are pending, or SL_ENOMEM (nothing changed).
 */
int sl_space_compact(sl_space *s);

/*
 * A space's state at a tick boundary, to continue it elsewhere (snapshot.c). Export calls
 * entity for every entity and pair for every exception pair: a pair whose visibility is not
 * what distance and layers say (held by hysteresis beyond the radius, or denied by the rule
 * within it); every other pair follows from the entities. Only between a tick and the next
 * change: 0 or SL_EINVAL.
 */
int sl_space_export(sl_space *s, void (*entity)(void *ud, const sl_entity_info *e),
                    void (*pair)(void *ud, uint64_t watcher, uint64_t target), void *ud);
/*
 * What a capped watcher showed at the last tick (sl_space_set_cap): fn(w, t) for each target
 * t it showed. Part of an export (the ranking's margin depends on it).
 */
void sl_space_shown_each(const sl_space *s, void (*fn)(void *ud, uint64_t w, uint64_t t),
                         void *ud);

/*
 * An exported state, to rebuild (sl_space_import): the entities as the last tick left them
 * (with `sees` and `candidates`, their counts of visible targets, as exported), the
 * relations (sl_space_relations_each's), the exception pairs and the capped watchers' shown
 * targets (sl_space_shown_each's), each as flat (watcher, target) id pairs, and the tick
 * count to go on from.
 */
typedef struct sl_relation_pair {
    uint64_t watcher, target;
    sl_relation rel;
} sl_relation_pair;
typedef struct sl_space_state {
    const sl_entity_info *ents;
    size_t nents;
    const sl_relation_pair *rels;
    size_t nrels;
    const uint64_t *pairs;      /* 2 * npairs ids */
    size_t npairs;
    const uint64_t *shown;      /* 2 * nshown ids */
    size_t nshown;
    uint64_t ticks;
} sl_space_state;
/*
 * Rebuilds an exported state in a space without entities made with the same config (its
 * rule may be installed already: it is not asked). No pair is judged: O(entities + pairs +
 * relations + shown). The next tick then yields exactly the events the exporting space's
 * next tick would have, for the same changes. 0, SL_EINVAL (an entity, relation or pair
 * that cannot be: the space must then be freed), SL_ENOMEM.
 */
int sl_space_import(sl_space *s, const sl_space_state *st);

/*
 * Rebuilds the index as `kind` (auto: re-decide now) with cell size `cell` (0: derive from
 * radii), keeping entities and visible pairs; no events result. Returns 0, SL_EINVAL or
 * SL_ENOMEM (the old index is then kept).
 */
int sl_space_set_index(sl_space *s, sl_index_kind kind, float cell);
