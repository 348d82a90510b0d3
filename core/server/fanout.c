/*
 * fanout.c: a space-tick's events, routed to the clients that own the watchers. A space's
 * tick comes in two halves, because spaces tick in parallel (server.c) while sessions are
 * shared between spaces:
 *
 *  - run (any thread): the engine (through the script host, when the space has scripts)
 *    hands events to space_sink and custom events to space_emits, which keep them in the
 *    space's own buffers (an enter with the target's position at that moment, read with
 *    sl_space_position, so that what scripts move afterwards in the same tick does not
 *    change it). Nothing outside the space is touched: no session, no counter, no log line
 *    other than the scripts' own.
 *  - send (the loop thread, space after space in the order of the server's list): each kept
 *    event is appended to the session owning its watcher, the session goes on the dirty
 *    list, then every dirty session gets one `tick` frame for that space (PROTOCOL.md) and
 *    the lists are emptied for the next space.
 *
 * So the frames are the bytes a single thread would send, in the same order: a space's
 * events come out of its tick in the same order whichever thread ran it, and they are
 * routed in space order. Nothing here allocates per event once the vectors have grown.
 * Events whose watcher has no connected owner (a static entity, a detached session) are
 * dropped, except for a session parked by a handoff: its frames are held until its client
 * claims it. Custom events are kept as the script host handed them: their strings stay
 * valid until the host runs scripts again, which is after the tick frames are written.
 */
#include "server/server_impl.h"


/* Puts s on the dirty list; false when it is not on it (out of memory: its events are
 * dropped rather than kept where no tick frame would ever send or empty them). */
static bool mark_dirty(sl_server *srv, session *s)
{
    if (s->dirty)
        return true;
    session **p = sl_vec_push(&srv->dirty, sizeof *p);
    if (!p)
        return false;
    *p = s;
    s->dirty = true;
    return true;
}

static void space_sink(void *ud, const sl_event *ev, size_t n)
{
    hosted_space *sp = ud;
    tick_ev *out = sl_vec_extend(&sp->tick_evs, sizeof *out, n);
    if (!out)
        return;     /* out of memory: the events are dropped, as a full session list does */
    for (size_t i = 0; i < n; i++) {
        float x = 0, y = 0, z = 0;
        if (ev[i].kind == SL_EVENT_ENTER)
            sl_space_position3(sp->s, ev[i].target, &x, &y, &z);
        out[i] = (tick_ev){ev[i].watcher, ev[i].target, x, y, z, (uint32_t)ev[i].kind,
                           ev[i].reason};
    }
}

static void space_emits(void *ud, const sl_lua_emit *ev, size_t n)
{
    hosted_space *sp = ud;
    sl_vec_append(&sp->tick_emits, ev, sizeof *ev, n);
}

void sl__fanout_begin(sl_server *srv, hosted_space *sp)
{
    sp->ticks++;
    sl__rec(srv, sp, "tick\n");
}

void sl__fanout_run(hosted_space *sp)
{
    sp->tick_evs.n = sp->tick_emits.n = sp->tick_gevs.n = 0;
    if (sp->h)
        sl_lua_tick(sp->h, space_sink, sp, space_emits, sp);
    else
        sl_space_tick(sp->s, space_sink, sp);
    /* Group events are kept only for a space with subscribers (the loop thread, which alone
     * changes gsubs, takes part in the tick: it does not change them meanwhile). */
    size_t n = 0;
    const sl_group_event *g = sp->gsubs.n ? sl_space_group_events(sp->s, &n) : NULL;
    gtick_ev *out = n ? sl_vec_extend(&sp->tick_gevs, sizeof *out, n) : NULL;
    for (size_t i = 0; out && i < n; i++) {     /* (out of memory: dropped, as above) */
        float x = 0, y = 0, z = 0;
        if (g[i].kind == SL_EVENT_ENTER)
            sl_space_position3(sp->s, g[i].target, &x, &y, &z);
        out[i] = (gtick_ev){g[i].target, x, y, z, g[i].group, g[i].kind, g[i].reason};
    }
}

int sl__group_subscribe(hosted_space *sp, const session *s, uint32_t group, bool on)
{
    gsub *gs = sp->gsubs.p;
    size_t at = 0;
    while (at < sp->gsubs.n && gs[at].group < group)
        at++;
    for (size_t i = at; i < sp->gsubs.n && gs[i].group == group; i++) {
        if (gs[i].idx == s->idx && gs[i].serial == s->serial) {
            if (!on) {
                memmove(&gs[i], &gs[i + 1], (sp->gsubs.n - i - 1) * sizeof *gs);
                sp->gsubs.n--;
            }
            return 0;
        }
    }
    if (!on)
        return 0;
    if (!sl_vec_push(&sp->gsubs, sizeof *gs))
        return SL_ENOMEM;
    gs = sp->gsubs.p;
    memmove(&gs[at + 1], &gs[at], (sp->gsubs.n - 1 - at) * sizeof *gs);
    gs[at] = (gsub){group, s->idx, s->serial};
    return 0;
}

/* sp's group events, appended to the sessions subscribed to their groups (gsubs, sorted by
 * group; entries of sessions gone are dropped). */
static void route_groups(sl_server *srv, hosted_space *sp)
{
    gsub *gs = sp->gsubs.p;
    size_t k = 0;
    for (size_t i = 0; i < sp->gsubs.n; i++) {
        session *s = gs[i].idx < srv->nsessions ? srv->sessions[gs[i].idx] : NULL;
        if (s && s->used && s->serial == gs[i].serial)
            gs[k++] = gs[i];
    }
    sp->gsubs.n = k;
    const gtick_ev *ev = sp->tick_gevs.p;
    for (size_t i = 0, j = 0; i < sp->tick_gevs.n; i++) {
        while (j < k && gs[j].group < ev[i].group)
            j++;
        for (size_t q = j; q < k && gs[q].group == ev[i].group; q++) {
            session *s = srv->sessions[gs[q].idx];
            if (!mark_dirty(srv, s))
                continue;
            if (ev[i].kind == SL_EVENT_ENTER) {
                enter_ev *e = sl_vec_push(&s->genter, sizeof *e);
                if (e)
                    *e = (enter_ev){ev[i].group, ev[i].t, ev[i].x, ev[i].y, ev[i].z};
            } else {
                pair_ev *p = sl_vec_push(&s->gleave, sizeof *p);
                if (p)
                    *p = (pair_ev){ev[i].group, ev[i].t, ev[i].reason};
            }
        }
    }
}

/* sp's region events, appended to the sessions that own their regions. (The space's list
 * stays valid until its next tick, which comes after this send.) */
static void route_regions(sl_server *srv, hosted_space *sp)
{
    size_t n = 0;
    const sl_region_event *ev = sp->region_owners.n ? sl_space_region_events(sp->s, &n) : NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t o = sl_idmap_get(&sp->region_owners, ev[i].region);
        session *s = o != UINT32_MAX && o - 1 < srv->nsessions ? srv->sessions[o - 1] : NULL;
        if (!s || !s->used || !mark_dirty(srv, s))
            continue;
        pair_ev *p = sl_vec_push(ev[i].kind == SL_EVENT_ENTER ? &s->renter : &s->rleave,
                                 sizeof *p);
        if (p)
            *p = (pair_ev){ev[i].region, ev[i].entity, 0};
    }
}

/* The kept events of sp's tick, appended to the sessions that own their watchers. */
static void route(sl_server *srv, const hosted_space *sp)
{
    const tick_ev *ev = sp->tick_evs.p;
    for (size_t i = 0; i < sp->tick_evs.n; i++) {
        session *s = sl__session_owning(srv, sp, ev[i].w);
        if (!s || !mark_dirty(srv, s))
            continue;
        if (ev[i].kind == SL_EVENT_ENTER) {
            enter_ev *e = sl_vec_push(&s->enter, sizeof *e);
            if (e)
                *e = (enter_ev){ev[i].w, ev[i].t, ev[i].x, ev[i].y, ev[i].z};
        } else {
            sl_vec *list = ev[i].kind == SL_EVENT_LEAVE ? &s->leave : &s->stay;
            pair_ev *p = sl_vec_push(list, sizeof *p);
            if (p)
                *p = (pair_ev){ev[i].w, ev[i].t, ev[i].reason};
        }
    }
    const sl_lua_emit *em = sp->tick_emits.p;
    for (size_t i = 0; i < sp->tick_emits.n; i++) {
        session *s = sl__session_owning(srv, sp, em[i].watcher);
        if (!s || !mark_dirty(srv, s))
            continue;
        sl_lua_emit *e = sl_vec_push(&s->emits, sizeof *e);
        if (e)
            *e = em[i];
    }
}

/* One session's `tick` frame for sp: enter, leave, stay and emit. */
static void encode_tick(sl_server *srv, const hosted_space *sp, session *s)
{
    sl_enc e;
    sl_obuf *out = sl__session_out(srv, s);
    size_t start = out->bytes.n;
    sl_enc_begin(&e, out);
    const bool why = sl_space_config_of(sp->s)->reasons;
    const bool groups = s->genter.n || s->gleave.n, regions = s->renter.n || s->rleave.n;
    /* (a 3D space: enter_z, and group_enter_z with groups, the heights of the enters) */
    const bool deep = sl_space_config_of(sp->s)->depth > 0;
    sl_enc_map(&e, (sp->epoch ? 8 : 7) + why + (groups ? 2 + why + deep : 0) +
                   (regions ? 2 : 0) + deep);
    sl_enc_kv_str(&e, "t", "tick");
    sl_enc_kv_str(&e, "space", sp->name);
    sl_enc_kv_u64(&e, "n", sp->ticks);
    if (sp->epoch)
        sl_enc_kv_u64(&e, "epoch", sp->epoch);
    sl_enc_str(&e, "enter");
    sl_enc_array(&e, (uint32_t)(4 * s->enter.n));
    const enter_ev *en = s->enter.p;
    for (size_t i = 0; i < s->enter.n; i++) {
        sl_enc_u64(&e, en[i].w);
        sl_enc_u64(&e, en[i].t);
        sl_enc_f32(&e, en[i].x);
        sl_enc_f32(&e, en[i].y);
    }
    if (deep) {
        sl_enc_str(&e, "enter_z");
        sl_enc_array(&e, (uint32_t)s->enter.n);
        for (size_t i = 0; i < s->enter.n; i++)
            sl_enc_f32(&e, en[i].z);
    }
    const sl_vec *lists[2] = {&s->leave, &s->stay};
    static const char *const keys[2] = {"leave", "stay"};
    for (int l = 0; l < 2; l++) {
        sl_enc_str(&e, keys[l]);
        sl_enc_array(&e, (uint32_t)(2 * lists[l]->n));
        const pair_ev *p = lists[l]->p;
        for (size_t i = 0; i < lists[l]->n; i++) {
            sl_enc_u64(&e, p[i].w);
            sl_enc_u64(&e, p[i].t);
        }
    }
    if (why) {                  /* one reason a leave, in the order of `leave` */
        const pair_ev *p = s->leave.p;
        sl_enc_str(&e, "leave_why");
        sl_enc_array(&e, (uint32_t)s->leave.n);
        for (size_t i = 0; i < s->leave.n; i++)
            sl_enc_str(&e, sl_leave_reason_name(p[i].reason));
    }
    if (groups) {
        sl_enc_str(&e, "group_enter");
        sl_enc_array(&e, (uint32_t)(4 * s->genter.n));
        const enter_ev *g = s->genter.p;
        for (size_t i = 0; i < s->genter.n; i++) {
            sl_enc_u64(&e, g[i].w);
            sl_enc_u64(&e, g[i].t);
            sl_enc_f32(&e, g[i].x);
            sl_enc_f32(&e, g[i].y);
        }
        if (deep) {
            sl_enc_str(&e, "group_enter_z");
            sl_enc_array(&e, (uint32_t)s->genter.n);
            for (size_t i = 0; i < s->genter.n; i++)
                sl_enc_f32(&e, g[i].z);
        }
        const pair_ev *p = s->gleave.p;
        sl_enc_str(&e, "group_leave");
        sl_enc_array(&e, (uint32_t)(2 * s->gleave.n));
        for (size_t i = 0; i < s->gleave.n; i++) {
            sl_enc_u64(&e, p[i].w);
            sl_enc_u64(&e, p[i].t);
        }
        if (why) {
            sl_enc_str(&e, "group_leave_why");
            sl_enc_array(&e, (uint32_t)s->gleave.n);
            for (size_t i = 0; i < s->gleave.n; i++)
                sl_enc_str(&e, sl_group_leave_reason_name(p[i].reason));
        }
    }
    const sl_vec *rl[2] = {&s->renter, &s->rleave};
    static const char *const rkeys[2] = {"region_enter", "region_leave"};
    for (int l = 0; regions && l < 2; l++) {
        sl_enc_str(&e, rkeys[l]);
        sl_enc_array(&e, (uint32_t)(2 * rl[l]->n));
        const pair_ev *p = rl[l]->p;
        for (size_t i = 0; i < rl[l]->n; i++) {
            sl_enc_u64(&e, p[i].w);
            sl_enc_u64(&e, p[i].t);
        }
    }
    sl_enc_str(&e, "emit");
    sl_enc_array(&e, (uint32_t)s->emits.n);
    const sl_lua_emit *em = s->emits.p;
    for (size_t i = 0; i < s->emits.n; i++) {
        sl_enc_array(&e, 3);
        sl_enc_u64(&e, em[i].watcher);
        sl_enc_strn(&e, em[i].name, em[i].name_len);
        sl_enc_strn(&e, em[i].payload, em[i].payload_len);
    }
    sl_enc_end(&e);
    sl__session_held(s, sp->serial, start);
    srv->events_sent += s->enter.n + s->leave.n + s->stay.n + s->genter.n + s->gleave.n +
                        s->renter.n + s->rleave.n;
}

/* Sends each dirty session its `tick` frame for sp, and empties the lists. */
static void send_ticks(sl_server *srv, const hosted_space *sp)
{
    session **ds = srv->dirty.p;
    for (size_t d = 0; d < srv->dirty.n; d++) {
        session *s = ds[d];
        s->dirty = false;
        if ((s->conn || s->parked) && (s->enter.n || s->leave.n || s->stay.n || s->emits.n ||
                                       s->genter.n || s->gleave.n || s->renter.n ||
                                       s->rleave.n))
            encode_tick(srv, sp, s);
        s->enter.n = s->leave.n = s->stay.n = s->emits.n = s->genter.n = s->gleave.n = 0;
        s->renter.n = s->rleave.n = 0;
    }
    srv->dirty.n = 0;
}

void sl__fanout_send(sl_server *srv, hosted_space *sp)
{
    route(srv, sp);
    route_groups(srv, sp);
    route_regions(srv, sp);
    send_ticks(srv, sp);
    sp->tick_evs.n = sp->tick_emits.n = sp->tick_gevs.n = 0;
}
