/*
 * space_impl.h: the inside of a space, shared by space.c (storage and operations), tick.c
 * (the tick) and compact.c (spatial renumbering). Private to core/.
 *
 * Storage. Every entity has a dense slot; all per-slot arrays live in one allocation that
 * grows as a whole, so growth either fully succeeds or changes nothing. A removed entity's
 * slot stays reserved ("dead") until the next tick, because the tick still needs its state
 * to produce leave events; an id removed and re-added before a tick gets a new slot.
 *
 * Memory follows the entities. A space without entities holds its struct and its index's
 * (a few hundred bytes, whatever the map): the slot block is made by the first add, and the
 * tables the space needs only once it has entities (the watchers' radius histogram and the
 * radix sorts' histograms, 68 KiB) live at the head of that block, which moves with them
 * when it grows. Compaction fits the block (and the lists reserved to its capacity, the id
 * map, the index) to the entities left, and gives everything back when none is.
 *
 * Pairs are implicit. A pair's verdict at the last tick follows from the state of both ends
 * at that tick (positions px/py, and radius, mask and layer in `was`), except where it does
 * not: inside the hysteresis band a visible pair is "held", and a rule may deny a pair in
 * range. Those pairs, and only those, are exceptions, kept in their watcher's `exc` list:
 * visible(w, t) = (d2 <= r_w^2) != (t in exc[w]), for pairs within r_w + h whose mask allows
 * them; beyond r + h nothing is visible and no list names the pair. With no hysteresis and
 * no rule the lists stay empty, and a tick touches no per-pair storage at all.
 */
#pragma once

#include "space.h"
#include "idmap.h"
#include "index_impl.h"
#include "base/pool.h"

#define F_LIVE  0x01u   /* present: in the index and the id map */
#define F_DIRTY 0x02u   /* in the dirty list for the coming tick */
#define F_DEAD  0x04u   /* removed; slot kept until the tick has emitted its leaves */
#define F_BIG   0x08u   /* a watcher in the big list */
#define F_WATCH 0x10u   /* counted as a watcher (radius > 0) */
#define F_RESHAPED 0x20u    /* added, touched, or radius / layer / mask changed since the last
                               tick: its pairs are all re-judged, the rule asked again */
#define F_SPECIAL 0x40u /* this tick: judged by its own full pass (see relate_special) */
#define F_QUIET 0x200u  /* dirty only to be re-judged (sl_space_rejudge): no stay events */
#define F_REL 0x80u     /* has pair relations (relations.c); may watch beyond its reach */
#define F_ALWAYS 0x100u /* always relevant (relations.c): seen from anywhere */
#define F_CAP 0x400u    /* a capped watcher (caps.c): the tick diverts its pairs' events */
#define F_REGROUP 0x800u    /* in the regroup list (groups.c) */

/* Whether e changed since the last tick in a way that makes its pairs' stays due. */
#define CHANGED(flags) (((flags) & (F_DIRTY | F_QUIET)) == F_DIRTY)

#define BIG_CELLS 4.0f
#define HIST 1024u
#define NONE UINT32_MAX
#define DEFAULT_CELL 64.0f
#define RETUNE_EVERY 64u
#define FAR_SHARE 0.25f        /* moves beyond this share of cell / reach take the list pass */
#define COMPACT_MIN 1024u       /* smaller spaces fit in cache anyway */
#define SLOTS_MIN 256u          /* the slot block's first capacity */
#define PK_DIGIT 8u             /* bits a radix pass of the packed event sort */
#define PK_PASSES 8u            /* enough for 64 bits */

/*
 * What a tick reads of a neighbour, packed into one 40-byte record: judging a candidate
 * then costs one cache line instead of one per field. (Positions are also kept as
 * structure-of-arrays inside the index buckets, which is what the SIMD filter scans; the
 * rest of the per-slot data, read only off the hot path, stays in plain arrays.)
 */
typedef struct hot {
    float x, y, r2, rh2;    /* position; squared radius and squared radius + hysteresis */
    float px, py;           /* position at the last tick */
    uint32_t mask;          /* the layers this entity sees */
    uint8_t layer, unused;
    uint16_t flags;
    uint32_t mark;          /* tick stamp: "already a candidate of this pass" */
} hot;

/*
 * What an entity was at the last tick, beside px / py in its hot record: read only by the
 * passes of entities that changed in more than position (and by sl_space_sees), so it lives
 * apart from the hot records. `present`: the entity existed at the last tick.
 */
typedef struct was {
    float r2, rh2;
    uint32_t mask;
    uint8_t layer, present, watch, always;
} was;

/* A pair waiting for the rule's verdict: watcher and target slots, its last verdict, whether
 * it is an exception now, and its distance verdict ("inside r") now. */
struct pending {
    uint32_t w, t;
    uint8_t old, xin, base, unused;
};

struct sl_space {
    sl_space_config cfg;
    const sl_allocator *a;
    sl_index *index;
    bool d3;                    /* a 3D space (cfg.depth > 0): z counts in every distance */
    bool auto_cell;
    float h;
    float big_thr;              /* radii above this are big watchers */

    /* Per-slot arrays, all carved from `block`. */
    void *block;
    size_t block_bytes;
    uint32_t cap, top;          /* capacity; slots ever handed out */
    hot *hot;
    uint64_t *id;
    was *was;
    sl_u32vec *exc;             /* per watcher: its exception targets (see Pairs above) */
    uint32_t *nsees;            /* per watcher: targets visible at the last tick */
    float *r;
    float *hy;                  /* per slot: its own hysteresis; NaN: the space's (s->h) */
    int32_t *prio;              /* per slot: its priority for capped watchers (caps.c) */
    uint32_t *grp, *gthen;      /* per slot: its vision group now, and at the last tick */
    float *z, *pz;              /* per slot, 3D spaces: height now and at the last tick (apart
                                   from the hot records, which flat spaces keep small) */
    uint32_t *big_pos;

    sl_idmap ids;
    sl_u32vec free_slots, dirty, dead, big;   /* reserved to `cap`: pushes never fail */
    uint32_t live, watchers;
    uint32_t removed;           /* removals since the last tick (none: no dead to set apart) */
    uint32_t readded;           /* this tick: dead slots whose id is live again (re-added) */
    /* The shape (radius, mask, layer) of some live entity, and how many live entities have
     * another one: none means the neighbourhoods are uniform (see tick.c: uniform_space). */
    struct shape { float r2; uint32_t mask; uint8_t layer; } ref;
    uint32_t odd;
    /* Live entities whose hysteresis (their own or the space's) is > 0: none means every
     * rh2 equals its r2. hmax: the widest hysteresis any entity may have (it only grows,
     * which keeps the searches wide enough). */
    uint32_t hpos;
    float hmax;
    /* Watchers' LOD bands (sl_space_set_lod), by entity id: lod_at maps an id to its
     * profile's index + 1 in lods. Stays are filtered where they are handed over. */
    sl_idmap lod_at;
    struct lod_profile { uint64_t id; uint32_t n; sl_lod_band b[SL_LOD_BANDS]; } *lods;
    uint32_t nlods, caplods;
    /* Pair relations (relations.c): a record per entity id with any, found through rel_at;
     * rel_tombs: some were cleared (or their entity removed) since the last tick. */
    sl_idmap rel_at;
    struct rel_rec *rels;
    uint32_t nrels, caprels;
    bool rel_tombs;
    /* Always-relevant entities (relations.c), by id; an entry off is one that stopped being
     * (or was removed, with its slot) since the last tick, kept until the tick has judged
     * its pairs. nalways: entries in all (a space with none judges as before). */
    struct always_entry { uint64_t id; uint32_t dead; bool on; } *alw;
    uint32_t nalw, capalw;
    /* Capped watchers (caps.c): a record per capped slot, found through cap_at (by slot);
     * the events the tick diverted from them (cev), settled by the cap pass at its end;
     * capcut: candidates of capped watchers that their cap left out (not in `pairs`). */
    sl_idmap cap_at;
    struct cap_rec *caps;
    uint32_t ncaps, capcaps;
    struct cap_ev *cev;
    size_t ncev, capcev;
    uint64_t capcut;
    bool stays;                 /* this tick: stays are worked out (wanted, or for the caps) */
    /* Vision groups (groups.c): counts of members seeing a target, by (group, target slot);
     * the keys this tick touched; the tick's group events; members that changed group. */
    struct gcount *gtab;
    size_t gcap, gn;
    uint64_t *gkeys;
    uint32_t ngkeys, capgkeys, gstamp;
    sl_group_event *gev;
    uint32_t ngev, capgev;
    uint32_t *regroup;
    uint32_t nregroup, capregroup;
    bool groups_used;           /* some entity was ever given a group */
    /* Queries (query.c): their own scratch, as a rule may query during a tick. */
    sl_u32vec qcand;
    sl_query_hit *qhits;
    size_t qcap;
    uint32_t *hist;             /* ordinary watchers by radius bucket (1..HIST), in `block` */
    uint32_t stamp;

    sl_u32vec cand, tag;        /* tick scratch (tag: the judge's bucket of each report) */
    sl_index *ghost;            /* this tick: where changed entities were at the last tick */
    sl_u32vec ghosts;           /* the slots in `ghost` */
    uint64_t nx;                /* exception entries in all lists */
    uint64_t *keys, *keys_tmp;  /* dirty-order scratch, `cap` long */
    uint32_t (*radix)[256];     /* radix sort histograms [16], in `block` */
    sl_event *ev, *ev_tmp;
    size_t nev, evcap;
    /* Events as packed keys (see tick.c: emit), when every id fits in 31 bits. */
    uint64_t *pk, *pk_tmp;      /* the keys; the sort's second buffer (only once sorted) */
    sl_pool *pool;              /* borrowed: splits the moved passes (tick.c); NULL: none */
    sl_event_sink sink;         /* this tick's, and whether it streams (tick.c) */
    void *sink_ud;
    bool streaming;
    size_t nev_streamed;        /* events this tick handed over while it ran */
    struct sl__tick_part *parts;    /* a job's scratch and keys, when split (tick.c) */
    uint32_t nparts;
    uint32_t held_parts;        /* parts whose keys this tick hands over at its end */
    size_t npk, pkcap, pk_tmpcap;
    uint64_t pk_or, pk_and;     /* of this tick's keys: which bits the sort must look at */
    unsigned pk_shift;          /* this tick: target bits + 2, or 0 for sl_event records */
    uint64_t id_or;             /* every id ever added, OR-ed */
    uint32_t (*khist)[1u << PK_DIGIT];  /* packed-key sort histograms [PK_PASSES], in `block` */
    bool ev_failed;

    /* The visibility rule, and pairs waiting for its verdict (see tick.c: decide). */
    sl_rule_fn rule;
    void *rule_ud;
    struct pending *pend;
    size_t npend, pendcap;
    uint64_t rule_calls;

    uint64_t pairs, ticks;
    uint64_t compactions;
    uint32_t last_special;      /* dirty entities the last tick judged by the list pass */
    uint32_t adds_since_compact;
    uint32_t last_dirty;
    bool uniform;               /* this tick (see tick.c: uniform_space) */
    bool uniform_judge;         /* this tick (see tick.c: same_judging) */
    char err[192];
    struct sl__regions *regions;    /* regions (regions.c): NULL until the first */
};

/* The contract's squared distance between slots a and b now, and at the last tick (with
 * dz in a 3D space, added last). */
static inline float sl__d2(const sl_space *s, uint32_t a, uint32_t b)
{
    float dx = s->hot[b].x - s->hot[a].x, dy = s->hot[b].y - s->hot[a].y;
    float d2 = dx * dx + dy * dy;
    if (s->d3) {
        float dz = s->z[b] - s->z[a];
        d2 += dz * dz;
    }
    return d2;
}

static inline float sl__d2_then(const sl_space *s, uint32_t a, uint32_t b)
{
    float dx = s->hot[b].px - s->hot[a].px, dy = s->hot[b].py - s->hot[a].py;
    float d2 = dx * dx + dy * dy;
    if (s->d3) {
        float dz = s->pz[b] - s->pz[a];
        d2 += dz * dz;
    }
    return d2;
}

/* Cross-file internals (definitions in space.c, tick.c and compact.c). */
/* *slot (when not NULL): live entity id's slot; SL_ENOENT with the message "OP ID: no such
 * entity" when there is none. */
int sl__space_lookup(sl_space *s, const char *op, uint64_t id, uint32_t *slot);
/* Sets the space's error message (sl_space_error) and returns code. */
int sl__space_fail(sl_space *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Bytes of a slot block of capacity cap (0: none); points the arrays into one (or NULL). */
size_t sl__space_block_bytes(uint32_t cap);
void sl__space_carve(sl_space *s, void *block, uint32_t cap);
/* Frees the event buffers (between ticks, or before the tick's first event). */
void sl__space_drop_events(sl_space *s);
/* Frees the parts of split ticks (tick.c), and the bytes they hold. */
void sl__space_free_parts(sl_space *s);
size_t sl__space_parts_bytes(const sl_space *s);
void sl__space_lane_sync(sl_space *s, uint32_t e);
float sl__space_small_reach2(const sl_space *s);
void sl__space_retune(sl_space *s);
/* Whether every live entity has the reference shape and that shape watches its own layer. */
static inline bool sl__space_same_shapes(const sl_space *s)
{
    return s->odd == 0 && s->ref.r2 > 0 && ((s->ref.mask >> s->ref.layer) & 1u);
}
/*
 * Sorts k[0..n) by the bits set in `differ` (non-zero): a stable LSD radix sort in as few
 * passes of at most PK_DIGIT bits as they need, every pass's histogram from one read; t is
 * scratch of n keys. Returns the buffer that holds the result (k or t).
 */
uint64_t *sl__radix64(uint32_t hist[PK_PASSES][1u << PK_DIGIT], uint64_t *k, uint64_t *t,
                      size_t n, uint64_t differ);
bool sl__space_compact(sl_space *s);
/* A relation of the entity `id` of a record: the other end, the kind (SL_REL_NONE: cleared,
 * its pair still to be judged at the coming tick), and whether `id` is the watcher. */
typedef struct rel_entry {
    uint64_t other;
    uint32_t dead;          /* the other's slot when it was removed this tick (else NONE) */
    uint8_t kind, out;
} rel_entry;
typedef struct rel_rec {
    uint64_t id;
    rel_entry *e;
    uint32_t n, cap;
} rel_rec;
/* The relation of pair (slot w, slot t) now; id's record (NULL: none). */
sl_relation sl__rel_kind(const sl_space *s, uint32_t w, uint32_t t);
const rel_rec *sl__rel_record(const sl_space *s, uint64_t id);
/* id is removed: its relations become tombstones; after a tick they go; a slot added gets
 * F_REL when its id has a record. */
void sl__rel_drop(sl_space *s, uint64_t id, uint32_t slot);
void sl__rel_after_tick(sl_space *s);
void sl__rel_added(sl_space *s, uint32_t e);
size_t sl__rel_bytes(const sl_space *s);
/* id is always relevant (on), or not: the flag, the list; removed: its slot. Without touching
 * (the callers touch, or import). After a tick, the list keeps only those on. */
int sl__always_set(sl_space *s, uint64_t id, bool on, uint32_t dead);
void sl__always_after_tick(sl_space *s);
/* The slots of the always-relevant entities (and those that stopped being since the last
 * tick, removed ones by their old slot) appended to cand. */
void sl__always_candidates(sl_space *s, sl_u32vec *cand);
/* Sets a relation of two live entities without touching either (an import). */
int sl__rel_set(sl_space *s, uint64_t w, uint64_t t, sl_relation rel);
void sl__rel_free(sl_space *s);
/* Whether a stay of (w, t) (ids) is emitted at this tick, by w's LOD bands (none: yes):
 * after the tick was counted (its events handed over); _slots: of slots, while it runs. */
bool sl__lod_keep(const sl_space *s, uint64_t w, uint64_t t);
bool sl__lod_keep_slots(const sl_space *s, uint32_t w, uint32_t t);
/* id's LOD bands into info (nlod 0: none). */
void sl__lod_get(const sl_space *s, uint64_t id, sl_entity_info *info);
/* Drops id's LOD bands (it is removed). */
void sl__lod_drop(sl_space *s, uint64_t id);
/* Makes room in array *p (*cap elements of size bytes, through the space's allocator) for
 * element n, doubling it (4 to start); false on OOM (the array unchanged). */
bool sl__space_grow(sl_space *s, void **p, uint32_t *cap, uint32_t n, size_t size);
/* What sl_space_get reports of live slot e. */
sl_entity_info sl__space_info(const sl_space *s, uint32_t e);
/* What a tick does last, without judging any pair: every pending entity is taken as it is
 * now "at the last tick" (snapshot.c: an imported state, whose pairs are known). */
void sl__space_settle(sl_space *s);
bool sl__space_want_compact(const sl_space *s);
/* Marks live slot e changed in place (as a move to where it is): its pairs' stays are due. */
void sl__space_mark_moved(sl_space *s, uint32_t e);
/* The tick's event recording and leave reasons (tick.c), for the cap pass. */
void sl__emit(sl_space *s, uint64_t w, uint64_t t, sl_event_kind kind, uint32_t reason);
uint32_t sl__leave_reason(const sl_space *s, uint32_t w, uint32_t t);

/* Capped watchers (caps.c). A pair event of a capped watcher w (slot) is diverted to the cap
 * pass, which, at the end of the tick's passes, turns the candidates of every capped watcher
 * that had one into the events of what it shows; then records of removed or uncapped
 * watchers go. */
typedef struct cap_rec {
    uint32_t slot;
    uint32_t n;             /* the cap */
    float margin;
    bool fresh;             /* capped since the last tick: no list yet */
    bool lift;              /* the cap is lifted at the coming tick */
    uint32_t cut;           /* its candidates the cap left out at the last tick */
    uint32_t *cs;           /* its candidates at the last tick (slots), in no order */
    uint8_t *sh;            /* for each: shown at the last tick */
    uint32_t ncand, capcand;
} cap_rec;
typedef struct cap_ev {
    uint32_t w, t;          /* slots */
    uint8_t kind, reason;
} cap_ev;
void sl__cap_divert(sl_space *s, uint32_t w, uint32_t t, sl_event_kind kind, uint32_t reason);
/* The reason of a leave (ids) that the tick found in range and allowed: SL_LEAVE_CAP when
 * the target is a candidate of the watcher (a removed watcher whose id came back capped:
 * its old slot's leave), else SL_LEAVE_RULE. */
uint32_t sl__cap_reason(const sl_space *s, uint64_t wid, uint64_t tid);
/* Whether capped watcher r showed slot t at the last tick. */
bool sl__cap_shows(const cap_rec *r, uint32_t t);
void sl__cap_pass(sl_space *s);
const cap_rec *sl__cap_of(const sl_space *s, uint32_t e);
/* Slots renumbered (compact.c: perm[old] = new). */
void sl__cap_renumber(sl_space *s, const uint32_t *perm);
void sl__cap_free(sl_space *s);
/* Appends what live slot w sees now (after the cap pass: a capped watcher's shown targets)
 * to out; 0 or SL_ENOMEM. */
int sl__visible_now(sl_space *s, uint32_t w, sl_u32vec *out);

/* Regions (regions.c): the tick's pass (before the dirty entities age), for a space that
 * ever had a region; freeing. */
void sl__region_pass(sl_space *s);
/* Whether region changes wait for the next tick. */
bool sl__regions_pending(const sl_space *s);
void sl__regions_free(sl_space *s);
size_t sl__regions_bytes(const sl_space *s);

/* Vision groups (groups.c). */
typedef struct gcount {
    uint64_t key;           /* group << 32 | target slot */
    uint32_t n;             /* members that see the target */
    uint32_t stamp;         /* the tick that last touched it (gstamp) */
    uint32_t old;           /* n before this tick */
    int32_t leaving;        /* of those, members that left the group since (see groups.c) */
} gcount;
/* Member slot w's pair with target slot t became visible (in) or stopped being. */
void sl__group_pair(sl_space *s, uint32_t w, uint32_t t, bool in);
/* At the tick's end (after the cap pass): regrouped members move, the group events. */
void sl__group_pass(sl_space *s);
int sl__group_import(sl_space *s, const sl_space_state *st);
void sl__group_renumber(sl_space *s, const uint32_t *perm);
void sl__group_free(sl_space *s);
size_t sl__group_bytes(const sl_space *s);
/* The shown lists of an import (snapshot.c), after its entities (capped, fresh) and counts:
 * 0 or SL_EINVAL / SL_ENOMEM. */
int sl__cap_import(sl_space *s, const sl_space_state *st);
size_t sl__cap_bytes(const sl_space *s);
