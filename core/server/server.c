/*
 * server.c: the server's life and its tick (see server.h; the files of the server are
 * listed in server_impl.h).
 *
 * The tick. A libuv timer fires every --tick-ms. Each tick first removes what waited out a
 * grace period (entities of expired sessions, deleted static entities), so that their
 * leaves go out in this tick; then runs every space that is due, then flushes each
 * connection once. Its duration goes into the ring that `stats` reads.
 *
 * Parallel ticks (--threads N). Every space has its own engine space and its own script
 * host (its own Lua VM), and a space's tick touches nothing else (fanout.c's run half), so
 * the due spaces tick at once on a pool of N threads, the loop thread among them
 * (base/pool.h), each space on one thread and so as deterministic as ever. The loop thread
 * waits for the whole batch: while spaces tick it serves no request, no etcd change, no
 * admin command, so nothing can touch a ticking space (no move, add, prop, reload, drop,
 * handoff snapshot) and no session changes under the ticks; what arrives meanwhile waits in
 * the sockets and is read right after. Then, on the loop thread and in the order of the
 * server's list of spaces, each space's events are routed into tick frames and a space
 * frozen for a handoff is snapshot: the same frames, in the same order, as one thread
 * would send. With --threads 1 (or one space due) the pool runs the ticks on the loop
 * thread, one after the other. Serving requests during the parallel phase (queued per busy
 * space) would hide the ticks' time from clients, but every request path would have to know
 * which spaces are busy: not done.
 *
 * Shutdown. sl_server_shutdown closes the listener and every client connection and stops
 * the timer; the caller then runs the loop until the handles are closed and frees.
 */
#include "server/server_impl.h"

#include "base/clock.h"
#include "base/log.h"
#include "engine/simd.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void sl__log(const sl_server *srv, const char *fmt, ...)
{
    if (srv->cfg.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    sl_vlog(fmt, ap);
    va_end(ap);
}

/* Whether sp ticks in the server tick at now_ms, and when it is due next. */
static bool space_due(hosted_space *sp, double now_ms)
{
    if (sp->period_ms <= 0)
        return true;
    /* A slower space ticks when its period is due (never faster than the server). */
    if (now_ms + 1 < sp->due_ms)
        return false;
    sp->due_ms = sp->due_ms + sp->period_ms < now_ms ? now_ms + sp->period_ms
                                                     : sp->due_ms + sp->period_ms;
    return true;
}

/* A job of the pool: one due space's tick (any thread). */
static void tick_job(void *ud, size_t i)
{
    hosted_space *const *due = ud;
    sl__fanout_run(due[i]);
}

static void on_tick(uv_timer_t *t)
{
    sl_server *srv = t->data;
    double t0 = sl_now_ms();
    sl__session_expire_due(srv, t0);
    sl__static_delete_due(srv, t0);
    sl__handoff_check(srv, t0);
    if (srv->tick_fn)
        srv->tick_fn(srv->tick_ud);
    srv->due.n = 0;
    for (uint32_t k = 0; k < srv->nspaces; k++) {
        hosted_space *sp = srv->spaces[k];
        if (sl__serving(srv, sp, t0) && space_due(sp, t0)) {
            hosted_space **p = sl_vec_push(&srv->due, sizeof *p);
            if (!p)
                break;          /* out of memory: the other spaces tick next time */
            *p = sp;
            sl__fanout_begin(srv, sp);
        }
    }
    hosted_space **due = srv->due.p;
    if (srv->due.n == 1) {
        /* One space due: its own tick may use the pool (sl_space_set_pool: a big uniform
         * space's moved passes), lent for this tick only. */
        sl_space_set_pool(due[0]->s, srv->pool);
        sl__fanout_run(due[0]);
        sl_space_set_pool(due[0]->s, NULL);
    } else {
        sl_pool_run(srv->pool, srv->due.n, tick_job, srv->due.p);
    }
    for (size_t k = 0; k < srv->due.n; k++) {
        sl__fanout_send(srv, due[k]);
        sl__handoff_after_tick(srv, due[k]);
    }
    for (uint32_t i = 0; i < srv->nsessions; i++)
        if (srv->sessions[i]->used && srv->sessions[i]->conn)
            sl_conn_flush(srv->sessions[i]->conn);
    srv->tick_hist[srv->hist_n++ % TICK_HIST] = sl_now_ms() - t0;
    srv->ticks++;
    if (t0 - srv->mark_ms >= 1000) {
        srv->events_per_s = (double)(srv->events_sent - srv->events_at_mark) * 1000 /
                            (t0 - srv->mark_ms);
        srv->events_at_mark = srv->events_sent;
        srv->mark_ms = t0;
    }
}

void sl_server_on_tick(sl_server *srv, void (*fn)(void *ud), void *ud)
{
    srv->tick_fn = fn;
    srv->tick_ud = ud;
}

/* The defaults of the settings left zero (or invalid). */
static void fill_defaults(sl_server_config *cfg)
{
    if (!cfg->max_session_spaces)
        cfg->max_session_spaces = 16;
    if (!cfg->max_session_entities)
        cfg->max_session_entities = 100000;
    if (!cfg->max_session_regions)
        cfg->max_session_regions = 1024;
    if (!cfg->max_entity_props)
        cfg->max_entity_props = 64;
    if (!cfg->max_entity_prop_bytes)
        cfg->max_entity_prop_bytes = 64u << 10;
    if (!cfg->max_prop_keys)
        cfg->max_prop_keys = 4096;
    if (!cfg->listen_host)
        cfg->listen_host = "127.0.0.1";
    if (!(cfg->tick_ms > 0))
        cfg->tick_ms = 50;
    if (!cfg->max_frame)
        cfg->max_frame = 1u << 20;
    if (!cfg->out_cap)
        cfg->out_cap = 32u << 20;   /* (net's default, also what a parked session holds) */
    if (!(cfg->grace_ms >= 0))
        cfg->grace_ms = 5000;
    if (!(cfg->hello_ms > 0))
        cfg->hello_ms = 10000;
    if (cfg->idle_ms == 0)
        cfg->idle_ms = 60000;
    if (!(cfg->close_ms > 0))
        cfg->close_ms = 2000;
}

int sl_server_new(sl_server **out, uv_loop_t *loop, const sl_server_config *cfg, char *err,
                  size_t errlen)
{
    sl_server *srv = calloc(1, sizeof *srv);
    if (!srv || !(srv->dec = sl_decoder_new())) {
        free(srv);
        return sl_fail(err, errlen, SL_ENOMEM, "out of memory");
    }
    srv->cfg = *cfg;
    fill_defaults(&srv->cfg);
    srv->started_ms = srv->mark_ms = sl_now_ms();
    sl_net_config nc = {.host = srv->cfg.listen_host, .port = srv->cfg.listen_port,
                        .max_frame = srv->cfg.max_frame, .out_cap = srv->cfg.out_cap,
                        .hello_ms = srv->cfg.hello_ms, .idle_ms = srv->cfg.idle_ms,
                        .close_ms = srv->cfg.close_ms,
                        .max_frames_per_s = srv->cfg.max_frames_per_s,
                        .max_bytes_per_s = srv->cfg.max_bytes_per_s};
    /* The kernels are chosen before any tick: the engine picks them at its first use,
     * which two threads must not do at once. */
    sl_simd_get();
    if (!srv->cfg.threads)
        srv->cfg.threads = sl_pool_cpus();
    if (srv->cfg.threads > MAX_THREADS || !(srv->pool = sl_pool_new(srv->cfg.threads))) {
        uint32_t n = srv->cfg.threads;
        sl_decoder_free(srv->dec);
        free(srv);
        return n > MAX_THREADS
                   ? sl_fail(err, errlen, SL_EINVAL, "--threads: at most %u", MAX_THREADS)
                   : sl_fail(err, errlen, SL_ENOMEM, "no pool of %u threads could start", n);
    }
    sl_net_callbacks cb = {.on_frame = sl__request, .on_close = sl__session_detach};
    int rc = sl_net_listen(&srv->net, loop, &nc, &cb, srv, err, errlen);
    if (rc) {
        sl_pool_free(srv->pool);
        sl_decoder_free(srv->dec);
        free(srv);
        return rc < 0 ? rc : SL_EIO;
    }
    uv_timer_init(loop, &srv->timer);
    srv->timer.data = srv;
    uint64_t ms = (uint64_t)(srv->cfg.tick_ms < 1 ? 1 : srv->cfg.tick_ms);
    uv_timer_start(&srv->timer, on_tick, ms, ms);
    srv->timer_on = true;
    *out = srv;
    return 0;
}

int sl_server_port(const sl_server *srv)
{
    return sl_net_port(srv->net);
}

const sl_server_config *sl_server_config_of(const sl_server *srv)
{
    return &srv->cfg;
}

int sl_server_reload(sl_server *srv, char *outp, size_t outlen)
{
    out_text o = {outp, 0, outlen};
    outp[0] = '\0';
    int rc = 0;
    for (uint32_t k = 0; k < srv->nspaces; k++) {
        hosted_space *sp = srv->spaces[k];
        if (!sp->h)
            continue;
        char err[4096];
        if (sl_lua_reload(sp->h, NULL, err, sizeof err)) {
            sl__put(&o, "space %s: reload failed, the running scripts stay:\n%s\n", sp->name,
                    err);
            rc = SL_ENOEXEC;
        } else {
            sl_lua_stats st;
            sl_lua_get_stats(sp->h, &st);
            sl__put(&o, "space %s: scripts %s reloaded (version %llu)\n", sp->name, st.dir,
                    (unsigned long long)st.version);
        }
    }
    if (!srv->nspaces)
        sl__put(&o, "no spaces: nothing to reload\n");
    return rc;
}

bool sl_server_stopping(const sl_server *srv)
{
    return srv->stopping;
}

void sl_server_shutdown(sl_server *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = true;
    sl_net_close(srv->net);
    srv->net = NULL;
    if (srv->timer_on) {
        uv_timer_stop(&srv->timer);
        uv_close((uv_handle_t *)&srv->timer, NULL);
        srv->timer_on = false;
    }
}

void sl_server_free(sl_server *srv)
{
    if (!srv)
        return;
    if (srv->rec)
        fclose(srv->rec);
    for (uint32_t i = 0; i < srv->nspaces; i++)
        sl__space_free(srv->spaces[i]);
    sl__session_free_all(srv);
    sl__handoff_free_all(srv);
    sl_pool_free(srv->pool);
    sl_vec_free(&srv->due);
    sl_vec_free(&srv->dirty);
    sl_vec_free(&srv->batch);
    sl_vec_free(&srv->batch_item);
    sl_vec_free(&srv->fails);
    sl_vec_free(&srv->fail_text);
    sl_vec_free(&srv->pending_deletes);
    sl_vec_free(&srv->remote);
    sl_vec_free(&srv->nodes);
    sl_decoder_free(srv->dec);
    free(srv);
}
