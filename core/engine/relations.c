/*
 * relations.c: pair relations (space.h: sl_space_relate). A relation belongs to the pair of
 * ids, and is kept by both ends, in a record per entity id: its entries name the other end,
 * the kind, and whether this end watches. Setting or clearing one touches the watcher, whose
 * full pass (tick.c: relate_special) then judges the pair even when it is far beyond any
 * search; a cleared relation, and every relation of a removed entity, stays as a tombstone
 * (kind SL_REL_NONE) until the tick after has judged its pair, then goes. Entities with a
 * record carry F_REL: a pair is looked up only when both ends do, and F_REL also tells the
 * judges that a watcher may hold an exception beyond its reach (a forced pair).
 */
#include "space_impl.h"

#include <string.h>

static rel_rec *rec_of(const sl_space *s, uint64_t id)
{
    uint32_t k = s->nrels ? sl_idmap_get(&s->rel_at, id) : NONE;
    return k == NONE ? NULL : &s->rels[k];
}

const rel_rec *sl__rel_record(const sl_space *s, uint64_t id)
{
    return rec_of(s, id);
}

static rel_entry *entry_of(rel_rec *r, uint64_t other, bool out)
{
    for (uint32_t i = 0; r && i < r->n; i++)
        if (r->e[i].other == other && r->e[i].out == out)
            return &r->e[i];
    return NULL;
}

sl_relation sl__rel_kind(const sl_space *s, uint32_t w, uint32_t t)
{
    rel_entry *e = entry_of(rec_of(s, s->id[w]), s->id[t], true);
    return e ? (sl_relation)e->kind : SL_REL_NONE;
}

static const char *const rel_names[] = {"none", "force", "never"};

const char *sl_relation_name(sl_relation k)
{
    return (unsigned)k < 3 ? rel_names[k] : "?";
}

bool sl_relation_parse(const char *word, sl_relation *k)
{
    for (unsigned i = 0; i < 3; i++)
        if (!strcmp(word, rel_names[i])) {
            *k = (sl_relation)i;
            return true;
        }
    return false;
}

sl_relation sl_space_relation(const sl_space *s, uint64_t w, uint64_t t)
{
    rel_entry *e = entry_of(rec_of(s, w), t, true);
    return e ? (sl_relation)e->kind : SL_REL_NONE;
}

/* The live slot of id gets F_REL when it has a record (on), or loses it. */
static void flag(sl_space *s, uint64_t id, bool on)
{
    uint32_t e = sl_idmap_get(&s->ids, id);
    if (e == NONE)
        return;
    if (on)
        s->hot[e].flags |= F_REL;
    else
        s->hot[e].flags &= (uint16_t)~F_REL;
}

static rel_rec *rec_get(sl_space *s, uint64_t id)
{
    rel_rec *r = rec_of(s, id);
    if (r)
        return r;
    if (!sl__space_grow(s, (void **)&s->rels, &s->caprels, s->nrels, sizeof *s->rels) ||
        sl_idmap_put(&s->rel_at, s->a, id, s->nrels))
        return NULL;
    r = &s->rels[s->nrels++];
    *r = (rel_rec){.id = id};
    flag(s, id, true);
    return r;
}

/* Sets the entry (other, out) of r to kind, adding it when missing; false on OOM. */
static bool put_entry(sl_space *s, rel_rec *r, uint64_t other, bool out, uint8_t kind)
{
    rel_entry *e = entry_of(r, other, out);
    if (!e) {
        if (!sl__space_grow(s, (void **)&r->e, &r->cap, r->n, sizeof *r->e))
            return false;
        e = &r->e[r->n++];
        *e = (rel_entry){.other = other, .out = out, .dead = NONE};
    }
    e->kind = kind;
    if (kind == SL_REL_NONE)
        s->rel_tombs = true;
    return true;
}

int sl__rel_set(sl_space *s, uint64_t w, uint64_t t, sl_relation rel)
{
    rel_rec *rw = rec_get(s, w);
    rel_rec *rt = rw ? rec_get(s, t) : NULL;
    rw = rec_of(s, w);      /* (the records may have moved) */
    if (!rt || !put_entry(s, rw, t, true, (uint8_t)rel) ||
        !put_entry(s, rt, w, false, (uint8_t)rel))
        return sl__space_fail(s, SL_ENOMEM, "relate %llu %llu: out of memory",
                              (unsigned long long)w, (unsigned long long)t);
    return 0;
}

int sl_space_relate(sl_space *s, uint64_t w, uint64_t t, sl_relation rel)
{
    uint32_t a = sl_idmap_get(&s->ids, w), b = sl_idmap_get(&s->ids, t);
    if (a == NONE || b == NONE)
        return sl__space_fail(s, SL_ENOENT, "relate %llu %llu: no such entity",
                              (unsigned long long)w, (unsigned long long)t);
    if (w == t || (rel != SL_REL_NONE && rel != SL_REL_FORCE && rel != SL_REL_NEVER))
        return sl__space_fail(s, SL_EINVAL, "relate %llu %llu: %s", (unsigned long long)w,
                              (unsigned long long)t, w == t ? "an entity never sees itself"
                                                            : "no such relation");
    if (sl_space_relation(s, w, t) == rel)
        return 0;       /* (none and none: nothing to clear) */
    int rc = sl__rel_set(s, w, t, rel);
    return rc ? rc : sl_space_touch(s, w);  /* (its full pass judges the pair, wherever) */
}

void sl__rel_drop(sl_space *s, uint64_t id, uint32_t slot)
{
    rel_rec *r = rec_of(s, id);
    for (uint32_t i = 0; r && i < r->n; i++) {
        rel_entry *e = &r->e[i];
        /* The other end's entry keeps the removed slot: its full pass (a tombstone's
         * watcher is touched, or itself is touched now) judges the pair with it, which the
         * id no longer finds. */
        rel_entry *m = entry_of(rec_of(s, e->other), id, !e->out);
        if (m) {
            m->kind = SL_REL_NONE;
            m->dead = slot;
        }
        e->kind = SL_REL_NONE;
        s->rel_tombs = true;
    }
}

void sl__rel_after_tick(sl_space *s)
{
    if (!s->rel_tombs)
        return;
    s->rel_tombs = false;
    for (uint32_t k = s->nrels; k-- > 0;) {
        rel_rec *r = &s->rels[k];
        uint32_t n = 0;
        for (uint32_t i = 0; i < r->n; i++)
            if (r->e[i].kind != SL_REL_NONE) {
                r->e[i].dead = NONE;
                r->e[n++] = r->e[i];
            }
        r->n = n;
        if (n)
            continue;
        uint64_t id = r->id;
        sl_free(s->a, r->e, r->cap * sizeof *r->e);
        flag(s, id, false);
        sl_idmap_del(&s->rel_at, id);
        uint32_t last = --s->nrels;
        if (k != last) {
            s->rels[k] = s->rels[last];
            sl_idmap_del(&s->rel_at, s->rels[k].id);
            sl_idmap_put(&s->rel_at, s->a, s->rels[k].id, k);   /* (a slot freed just before) */
        }
    }
}

void sl__rel_added(sl_space *s, uint32_t e)
{
    if (s->nrels && rec_of(s, s->id[e]))
        s->hot[e].flags |= F_REL;
}

size_t sl__rel_bytes(const sl_space *s)
{
    size_t n = sl_idmap_bytes(&s->rel_at) + s->caprels * sizeof *s->rels +
               s->capalw * sizeof *s->alw;
    for (uint32_t k = 0; k < s->nrels; k++)
        n += s->rels[k].cap * sizeof *s->rels[k].e;
    return n;
}

void sl__rel_free(sl_space *s)
{
    for (uint32_t k = 0; k < s->nrels; k++)
        sl_free(s->a, s->rels[k].e, s->rels[k].cap * sizeof *s->rels[k].e);
    sl_free(s->a, s->rels, s->caprels * sizeof *s->rels);
    sl_idmap_free(&s->rel_at, s->a);
    sl_free(s->a, s->alw, s->capalw * sizeof *s->alw);
}

/* ---- always-relevant entities ------------------------------------------------------------- */

static struct always_entry *always_of(const sl_space *s, uint64_t id)
{
    for (uint32_t i = 0; i < s->nalw; i++)
        if (s->alw[i].id == id)
            return &s->alw[i];
    return NULL;
}

int sl__always_set(sl_space *s, uint64_t id, bool on, uint32_t dead)
{
    uint32_t e = sl_idmap_get(&s->ids, id);
    struct always_entry *a = always_of(s, id);
    if (!a) {
        if (!on)
            return 0;
        if (!sl__space_grow(s, (void **)&s->alw, &s->capalw, s->nalw, sizeof *s->alw))
            return sl__space_fail(s, SL_ENOMEM, "always %llu: out of memory",
                                  (unsigned long long)id);
        a = &s->alw[s->nalw++];
        *a = (struct always_entry){.id = id, .dead = NONE};
    }
    a->on = on;
    if (dead != NONE)
        a->dead = dead;
    if (e != NONE && dead == NONE) {
        if (on)
            s->hot[e].flags |= F_ALWAYS;
        else
            s->hot[e].flags &= (uint16_t)~F_ALWAYS;
    }
    return 0;
}

int sl_space_set_always(sl_space *s, uint64_t id, bool on)
{
    uint32_t e;
    int rc = sl__space_lookup(s, "always", id, &e);
    if (rc)
        return rc;
    if (!(s->hot[e].flags & F_ALWAYS) == !on)
        return 0;
    rc = sl__always_set(s, id, on, NONE);
    return rc ? rc : sl_space_touch(s, id);     /* (its full pass: every watcher) */
}

void sl__always_after_tick(sl_space *s)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->nalw; i++)
        if (s->alw[i].on) {
            s->alw[i].dead = NONE;
            s->alw[n++] = s->alw[i];
        }
    s->nalw = n;
    if (!n && s->capalw) {
        sl_free(s->a, s->alw, s->capalw * sizeof *s->alw);
        s->alw = NULL;
        s->capalw = 0;
    }
}

void sl__always_candidates(sl_space *s, sl_u32vec *cand)
{
    for (uint32_t i = 0; i < s->nalw; i++) {
        uint32_t c = sl_idmap_get(&s->ids, s->alw[i].id);
        if ((c != NONE && sl__u32vec_push(cand, s->a, c)) ||
            (s->alw[i].dead != NONE && sl__u32vec_push(cand, s->a, s->alw[i].dead)))
            s->ev_failed = true;
    }
}

void sl_space_relations_each(const sl_space *s,
                             void (*fn)(void *ud, uint64_t w, uint64_t t, sl_relation rel),
                             void *ud)
{
    for (uint32_t k = 0; k < s->nrels; k++)
        for (uint32_t i = 0; i < s->rels[k].n; i++) {
            const rel_entry *e = &s->rels[k].e[i];
            if (e->out && e->kind != SL_REL_NONE)
                fn(ud, s->rels[k].id, e->other, (sl_relation)e->kind);
        }
}
