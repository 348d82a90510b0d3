/*
 * sightline-replay: runs a trace (the format is in engine/trace.h) through the engine and
 * prints every event as "TICK enter W T", "TICK leave W T" or (with --stay) "TICK stay W T";
 * with --scripts, through the script host, which adds "TICK emit W NAME PAYLOAD" lines.
 *
 * A bad line prints "line N: reason" on stderr and is skipped; the exit status is then 1
 * at the end. With --check, a brute-force oracle replays the same trace and the tool stops
 * at the first tick where the two disagree (exit status 3), printing both versions. The
 * oracle reads its own copy of each line, because sl_trace_exec cuts the line it is given
 * into tokens.
 */
#include "lua/host.h"
#include "engine/idmap.h"
#include "engine/oracle.h"
#include "engine/simd.h"
#include "engine/trace.h"

#include "base/vec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_word[] = {"enter", "leave", "stay"};

typedef struct replay {
    sl_trace trace;
    const char *scripts;    /* --scripts DIR: run the trace with a script host */
    sl_lua *host;
    sl_oracle *oracle;
    bool check, quiet;
    bool d3;                /* the trace's space is 3D (--check: the oracle's lines) */
    sl_vec got;             /* the core's events of the current line's tick (--check) */
    uint64_t events;
    sl_vec qgot;            /* the core's hits of the current line's query (--check) */
    sl_idmap owned;         /* `owner` lines: entity id -> index in owners + 1 */
    sl_vec owners;          /* uint64_t */
} replay;

static void print_events(const replay *r, const sl_event *ev, size_t n, FILE *out)
{
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%llu %s %llu %llu%s%s\n", (unsigned long long)r->trace.ticks,
                kind_word[ev[i].kind], (unsigned long long)ev[i].watcher,
                (unsigned long long)ev[i].target, ev[i].reason ? " " : "",
                sl_leave_reason_name(ev[i].reason));
}

/* "TICK group-enter G T", "TICK group-leave G T [REASON]". */
static void print_group_events(const replay *r, const sl_group_event *ev, size_t n, FILE *out)
{
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%llu group-%s %u %llu%s%s\n", (unsigned long long)r->trace.ticks,
                kind_word[ev[i].kind], ev[i].group, (unsigned long long)ev[i].target,
                ev[i].reason ? " " : "", sl_group_leave_reason_name(ev[i].reason));
}

static void print_region_events(const replay *r, const sl_region_event *ev, size_t n,
                                FILE *out)
{
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%llu region-%s %llu %llu\n", (unsigned long long)r->trace.ticks,
                kind_word[ev[i].kind], (unsigned long long)ev[i].region,
                (unsigned long long)ev[i].entity);
}

static void sink(void *ud, const sl_event *ev, size_t n)
{
    replay *r = ud;
    r->events += n;
    /* A tick's events may come in several calls: gathered in r->got. */
    if (r->check && sl_vec_append(&r->got, ev, sizeof *ev, n) == SIZE_MAX) {
        perror("sightline-replay");
        exit(2);
    }
    if (!r->quiet)
        print_events(r, ev, n, stdout);
}

/* Custom events from scripts: "TICK emit WATCHER NAME PAYLOAD". */
static void emit_sink(void *ud, const sl_lua_emit *ev, size_t n)
{
    replay *r = ud;
    if (r->quiet)
        return;
    for (size_t i = 0; i < n; i++)
        printf("%llu emit %llu %s %s\n", (unsigned long long)r->trace.ticks,
               (unsigned long long)ev[i].watcher, ev[i].name, ev[i].payload);
}

/* A query line's hits: "TICK query ID ..." (TICK: the ticks so far), and kept for --check. */
static void query_hits(void *ud, const sl_query_hit *h, size_t n)
{
    replay *r = ud;
    if (r->check && sl_vec_append(&r->qgot, h, sizeof *h, n) == SIZE_MAX) {
        perror("sightline-replay");
        exit(2);
    }
    if (r->quiet)
        return;
    printf("%llu query", (unsigned long long)r->trace.ticks);
    for (size_t i = 0; i < n; i++)
        printf(" %llu", (unsigned long long)h[i].id);
    printf("\n");
}

static int host_tick(void *ud)
{
    replay *r = ud;
    return sl_lua_tick(r->host, sink, r, emit_sink, r);
}

/* A prop line's VALUE: true, false, nil, a number, or else a string. */
static int host_prop(void *ud, uint64_t id, const char *key, const char *value, char *err,
                     size_t errlen)
{
    replay *r = ud;
    sl_value v = {.type = SL_VALUE_STRING, .s = value, .len = strlen(value)};
    char *end;
    double d = strtod(value, &end);
    if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0)
        v = (sl_value){.type = SL_VALUE_BOOL, .b = value[0] == 't'};
    else if (strcmp(value, "nil") == 0)
        v = (sl_value){.type = SL_VALUE_NIL};
    else if (end != value && *end == '\0')
        v = (sl_value){.type = SL_VALUE_NUMBER, .n = d};
    int rc = sl_lua_set_prop(r->host, id, key, &v);
    if (rc)
        snprintf(err, errlen, "prop %llu %s: %s", (unsigned long long)id, key,
                 rc == SL_ENOENT ? "no such entity" : "bad key");
    return rc;
}

/* An `owner` line: the scripts' sightline.owner(id) is owner from now on. */
static int host_owner_line(void *ud, uint64_t id, uint64_t owner)
{
    replay *r = ud;
    uint32_t k = sl_idmap_get(&r->owned, id);
    if (k != UINT32_MAX && k > 0) {
        ((uint64_t *)r->owners.p)[k - 1] = owner;
        return 0;
    }
    if (sl_vec_append(&r->owners, &owner, sizeof owner, 1) == SIZE_MAX ||
        sl_idmap_put(&r->owned, NULL, id, (uint32_t)r->owners.n))
        return SL_ENOMEM;
    return 0;
}

static uint64_t host_owner(void *ud, uint64_t id)
{
    const replay *r = ud;
    uint32_t k = sl_idmap_get(&r->owned, id);
    return k != UINT32_MAX && k > 0 ? ((const uint64_t *)r->owners.p)[k - 1] : 0;
}

static void log_line(void *ud, const char *msg)
{
    (void)ud;
    fprintf(stderr, "scripts: %s\n", msg);
}

/* Mirrors one trace line into the oracle; returns its result code. */
static int oracle_exec(replay *r, char *line, long *tick_events, const sl_event **ev)
{
    char *tok[5 + 2 * SL_REGION_VERTICES], *save = NULL;
    int n = 0;
    for (char *p = strtok_r(line, " \t\r\n", &save); p && n < 5 + 2 * SL_REGION_VERTICES;
         p = strtok_r(NULL, " \t\r\n", &save))
        tok[n++] = p;
    sl_oracle *o = r->oracle;
    if (n == 0)
        return 0;
    if (strcmp(tok[0], "tick") == 0) {
        *tick_events = sl_oracle_tick(o, ev);
        return 0;
    }
    if (strncmp(tok[0], "query", 5) == 0) {
        sl_query q;
        const sl_query_hit *h;
        size_t nh;
        int rc = sl_trace_query(tok, n, &q) ? sl_oracle_query(o, &q, &h, &nh) : SL_EINVAL;
        const sl_query_hit *got = r->qgot.p;
        bool same = rc || nh == r->qgot.n;
        for (size_t i = 0; !rc && same && i < nh; i++)
            same = h[i].id == got[i].id;
        if (!same)
            fprintf(stderr, "check: the query's hits differ (core %zu, oracle %zu)\n",
                    r->qgot.n, nh);
        return same ? rc : SL_EIO;
    }
    if (strcmp(tok[0], "region") == 0) {
        uint64_t rid;
        sl_region g;
        float xy[2 * SL_REGION_VERTICES];
        return sl_trace_region(tok, n, &rid, &g, xy) ? sl_oracle_set_region(o, rid, &g)
                                                     : SL_EINVAL;
    }
    if (n < 2)
        return SL_EINVAL;
    uint64_t id = strtoull(tok[1], NULL, 10);
    if (strcmp(tok[0], "unregion") == 0 && n == 2)
        return sl_oracle_remove_region(o, id);
    float f[4] = {0};
    for (int i = 2; i < n && i < 6; i++)
        f[i - 2] = strtof(tok[i], NULL);
    if (strcmp(tok[0], "add") == 0 && n >= 5 + r->d3) {
        int k = 5 + r->d3;      /* (a 3D space's add has Z before R) */
        uint32_t layer = n > k ? (uint32_t)strtoul(tok[k], NULL, 10) : 0;
        uint32_t mask = n > k + 1 ? (uint32_t)strtoul(tok[k + 1], NULL, 0) : UINT32_MAX;
        return r->d3 ? sl_oracle_add3(o, id, f[0], f[1], f[2], f[3], layer, mask)
                     : sl_oracle_add(o, id, f[0], f[1], f[2], layer, mask);
    }
    if (strcmp(tok[0], "move") == 0 && n == 4)
        return sl_oracle_move(o, id, f[0], f[1]);
    if (strcmp(tok[0], "move") == 0 && n == 5 && r->d3)
        return sl_oracle_move3(o, id, f[0], f[1], f[2]);
    if (strcmp(tok[0], "radius") == 0 && n == 3)
        return sl_oracle_set_radius(o, id, f[0]);
    if (strcmp(tok[0], "layer") == 0 && n == 3)
        return sl_oracle_set_layer(o, id, (uint32_t)strtoul(tok[2], NULL, 10));
    if (strcmp(tok[0], "mask") == 0 && n == 3)
        return sl_oracle_set_mask(o, id, (uint32_t)strtoul(tok[2], NULL, 0));
    if (strcmp(tok[0], "hysteresis") == 0 && n == 3)
        return sl_oracle_set_hysteresis(o, id, f[0]);
    if (strcmp(tok[0], "always") == 0 && n == 3)
        return strcmp(tok[2], "on") && strcmp(tok[2], "off")
                   ? SL_EINVAL : sl_oracle_set_always(o, id, tok[2][1] == 'n');
    if (strcmp(tok[0], "relate") == 0 && n == 4) {
        sl_relation k;
        return sl_relation_parse(tok[3], &k)
                   ? sl_oracle_relate(o, id, strtoull(tok[2], NULL, 10), k) : SL_EINVAL;
    }
    if (strcmp(tok[0], "lod") == 0) {
        sl_lod_band b[SL_LOD_BANDS];
        return sl_trace_lod(tok + 2, n - 2, b) ? sl_oracle_set_lod(o, id, b, (uint32_t)(n - 2))
                                               : SL_EINVAL;
    }
    if (strcmp(tok[0], "cap") == 0 && (n == 3 || n == 4))
        return sl_oracle_set_cap(o, id, (uint32_t)strtoul(tok[2], NULL, 10), f[1]);
    if (strcmp(tok[0], "group") == 0 && n == 3)
        return sl_oracle_set_group(o, id, (uint32_t)strtoul(tok[2], NULL, 10));
    if (strcmp(tok[0], "priority") == 0 && n == 3)
        return sl_oracle_set_priority(o, id, (int32_t)strtol(tok[2], NULL, 10));
    if (strcmp(tok[0], "remove") == 0 && n == 2)
        return sl_oracle_remove(o, id);
    if ((strcmp(tok[0], "prop") == 0 && n == 4) || (strcmp(tok[0], "touch") == 0 && n == 2) ||
        (strcmp(tok[0], "owner") == 0 && n == 3))
        return sl_oracle_touch(o, id);
    return SL_EINVAL;
}

static bool same_events(const sl_event *a, const sl_event *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].watcher != b[i].watcher || a[i].target != b[i].target ||
            a[i].kind != b[i].kind || a[i].reason != b[i].reason)
            return false;
    return true;
}

static int usage(FILE *out)
{
    fprintf(out,
            "usage: sightline-replay [--index grid|quadtree|auto] [--simd LEVEL] [--stay]\n"
            "                        [--reasons] [--check] [--quiet] [--scripts DIR] [TRACE]\n"
            "Replays TRACE (or standard input) and prints one line per event:\n"
            "  TICK enter|leave|stay WATCHER TARGET\n"
            "  TICK query ID ...                     (a query line's hits, nearest first;\n"
            "                                         TICK: the ticks so far)\n"
            "  TICK group-enter|group-leave GROUP TARGET [REASON]  (vision groups; a reason\n"
            "                                         with --reasons: removed, left, unseen)\n"
            "  TICK region-enter|region-leave REGION ENTITY  (regions)\n"
            "  TICK leave WATCHER TARGET REASON      (with --reasons: removed, never, layer,\n"
            "                                         range, rule or cap)\n"
            "  TICK emit WATCHER NAME JSON           (custom events from scripts)\n"
            "  --check    also run the brute-force oracle; stop at the first difference\n"
            "  --quiet    print only a summary line on stderr\n"
            "  --scripts  run the scripts of DIR (its init.lua) on the trace\n"
            "SIMD levels: scalar, sse2, avx2, avx512 (default: best supported, or\n"
            "SIGHTLINE_SIMD). The trace format is described in the README.\n");
    return 2;
}

/* Reads the command line into r and *path; returns -1 to go on, else the exit status. */
static int parse_args(replay *r, int argc, char **argv, const char **path)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--index") == 0 && i + 1 < argc) {
            if (sl_index_kind_parse(argv[++i], &r->trace.index))
                return usage(stderr);
            r->trace.force_index = true;
        } else if (strcmp(arg, "--simd") == 0 && i + 1 < argc) {
            sl_simd_level level;
            if (sl_simd_parse(argv[++i], &level))
                return usage(stderr);
            if (sl_simd_set(level)) {
                fprintf(stderr, "sightline-replay: this CPU does not support %s\n", argv[i]);
                return 2;
            }
        } else if (strcmp(arg, "--scripts") == 0 && i + 1 < argc) {
            r->scripts = argv[++i];
        } else if (strcmp(arg, "--stay") == 0) {
            r->trace.stay = true;
        } else if (strcmp(arg, "--reasons") == 0) {
            r->trace.reasons = true;
        } else if (strcmp(arg, "--check") == 0) {
            r->check = true;
        } else if (strcmp(arg, "--quiet") == 0) {
            r->quiet = true;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if ((arg[0] == '-' && arg[1]) || *path) {
            return usage(stderr);
        } else {
            *path = arg;
        }
    }
    return -1;
}

/* --scripts: starts the script host once the trace has its space; 0, or -1 (printed). */
static int start_host(replay *r)
{
    if (!r->scripts || r->host || !r->trace.space)
        return 0;
    sl_lua_config cfg = {.dir = r->scripts, .log = log_line, .owner = host_owner,
                         .owner_ud = r};
    char why[4096];
    if (sl_lua_new(&r->host, r->trace.space, &cfg, why, sizeof why)) {
        fprintf(stderr, "sightline-replay: scripts %s: %s\n", r->scripts, why);
        return -1;
    }
    return 0;
}

/*
 * --check: mirrors a line (its copy) that the core ran with result rc into the oracle, and
 * compares the tick's events when it was a tick. The `space` line creates the oracle.
 * Returns 0, or -1 at the first disagreement (printed).
 */
static int check_line(replay *r, char *copy, int rc, bool had_space, unsigned long lineno)
{
    if (!had_space && r->trace.space) {
        float w, h, hyst = 0;
        char *hp = strstr(copy, "hysteresis=");
        if (hp)
            hyst = strtof(hp + 11, NULL);
        const sl_space_config *cfg = sl_space_config_of(r->trace.space);
        r->d3 = cfg->depth > 0;
        if (sscanf(copy, "%*s %f %f", &w, &h) == 2 &&
            (r->oracle = sl_oracle_new(w, h, hyst, r->trace.stay))) {
            sl_oracle_set_reasons(r->oracle, r->trace.reasons);
            sl_oracle_set_depth(r->oracle, cfg->depth);
        }
        return 0;
    }
    if (!r->oracle || had_space != (r->trace.space != NULL))
        return 0;
    char *hash = strchr(copy, '#');
    if (hash)
        *hash = '\0';
    long nexp = -1;
    const sl_event *exp = NULL;
    int orc = oracle_exec(r, copy, &nexp, &exp);
    if ((orc != 0) != (rc != 0)) {
        fprintf(stderr, "check: line %lu: core says %s, oracle says %s\n", lineno,
                sl_strerror(rc), sl_strerror(orc));
        return -1;
    }
    size_t ng = 0;
    const sl_group_event *g = nexp >= 0 ? sl_space_group_events(r->trace.space, &ng) : NULL, *og;
    long nog = nexp >= 0 ? sl_oracle_group_events(r->oracle, &og) : 0;
    bool same_groups = (long)ng == nog;
    for (size_t i = 0; same_groups && i < ng; i++)
        same_groups = g[i].group == og[i].group && g[i].target == og[i].target &&
                      g[i].kind == og[i].kind && g[i].reason == og[i].reason;
    if (!same_groups) {
        fflush(stdout);
        fprintf(stderr, "check: tick %llu (line %lu): the group events differ; core:\n",
                (unsigned long long)r->trace.ticks, lineno);
        print_group_events(r, g, ng, stderr);
        fprintf(stderr, "oracle:\n");
        print_group_events(r, og, (size_t)nog, stderr);
        return -1;
    }
    const sl_region_event *rg = nexp >= 0 ? sl_space_region_events(r->trace.space, &ng) : NULL,
                          *org;
    long norg = nexp >= 0 ? sl_oracle_region_events(r->oracle, &org) : 0;
    bool same_regions = (long)ng == norg || nexp < 0;
    for (size_t i = 0; nexp >= 0 && same_regions && i < ng; i++)
        same_regions = rg[i].region == org[i].region && rg[i].entity == org[i].entity &&
                       rg[i].kind == org[i].kind;
    if (!same_regions) {
        fflush(stdout);
        fprintf(stderr, "check: tick %llu (line %lu): the region events differ; core:\n",
                (unsigned long long)r->trace.ticks, lineno);
        print_region_events(r, rg, ng, stderr);
        fprintf(stderr, "oracle:\n");
        print_region_events(r, org, (size_t)norg, stderr);
        return -1;
    }
    if (nexp >= 0 && ((size_t)nexp != r->got.n || !same_events(exp, r->got.p, (size_t)nexp))) {
        fflush(stdout);
        fprintf(stderr, "check: tick %llu (line %lu) differs; core:\n",
                (unsigned long long)r->trace.ticks, lineno);
        print_events(r, r->got.p, r->got.n, stderr);
        fprintf(stderr, "oracle:\n");
        print_events(r, exp, (size_t)nexp, stderr);
        return -1;
    }
    return 0;
}

/* Runs every line of in; returns the exit status (0, 1: a bad line, 2, 3: see above). */
static int run(replay *r, FILE *in)
{
    char *line = NULL;
    size_t cap = 0;
    sl_vec copy = {0};      /* the line as read, for the oracle */
    ssize_t len;
    unsigned long lineno = 0;
    int status = 0;
    char err[256];
    while ((len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        copy.n = 0;
        if (r->check && sl_vec_append(&copy, line, 1, (size_t)len + 1) == SIZE_MAX) {
            perror("sightline-replay");
            status = 2;
            break;
        }
        bool had_space = r->trace.space != NULL;
        r->got.n = r->qgot.n = 0;
        /* (read before sl_trace_exec cuts the line) */
        unsigned long long removed = 0, added = 0;
        bool removes = sscanf(line, " remove %llu", &removed) == 1;
        bool adds = sscanf(line, " add %llu", &added) == 1;
        sl_entity_info info;
        /* As in the server: its last view is kept for on_remove, its props go with it. */
        if (removes && r->host && !sl_space_get(r->trace.space, removed, &info))
            sl_lua_removing(r->host, removed);
        uint64_t ticks = r->trace.ticks;
        int rc = sl_trace_exec(&r->trace, line, err, sizeof err);
        if (r->trace.ticks != ticks && !r->quiet) {
            size_t ng;
            const sl_group_event *g = sl_space_group_events(r->trace.space, &ng);
            print_group_events(r, g, ng, stdout);
            const sl_region_event *rg = sl_space_region_events(r->trace.space, &ng);
            print_region_events(r, rg, ng, stdout);
        }
        if (rc) {
            fprintf(stderr, "line %lu: %s\n", lineno, err);
            status = 1;
        } else if (adds && r->host) {
            sl_lua_added(r->host, added);
        }
        if (start_host(r)) {
            status = 2;
            break;
        }
        if (r->check && check_line(r, copy.p, rc, had_space, lineno)) {
            status = 3;
            break;
        }
    }
    free(line);
    sl_vec_free(&copy);
    return status;
}

int main(int argc, char **argv)
{
    replay r = {0};
    sl_trace_init(&r.trace);
    const char *path = NULL, *why = NULL;
    if (sl_simd_from_env(&why))
        fprintf(stderr, "sightline-replay: %s; using %s\n", why, sl_simd_name(sl_simd_get()));
    int status = parse_args(&r, argc, argv, &path);
    if (status >= 0)
        return status;
    FILE *in = path && strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!in) {
        perror(path);
        return 2;
    }
    if (r.check && r.scripts) {
        fprintf(stderr, "sightline-replay: --check cannot judge script rules; drop one\n");
        return 2;
    }
    r.trace.sink = sink;
    r.trace.sink_ud = &r;
    r.trace.query = query_hits;
    r.trace.hook_ud = &r;
    if (r.scripts) {
        r.trace.prop = host_prop;
        r.trace.owner = host_owner_line;
        r.trace.tick = host_tick;
        r.trace.hook_ud = &r;
    }
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    status = run(&r, in);
    fflush(stdout);     /* the events first, then the summary */
    if (r.quiet || r.check)
        fprintf(stderr, "%llu ticks, %llu events%s\n", (unsigned long long)r.trace.ticks,
                (unsigned long long)r.events,
                r.check ? (status == 3 ? ", oracle disagrees" : ", oracle agrees") : "");
    sl_vec_free(&r.got);
    sl_vec_free(&r.qgot);
    sl_vec_free(&r.owners);
    sl_idmap_free(&r.owned, NULL);
    if (in != stdin)
        fclose(in);
    sl_oracle_free(r.oracle);
    sl_lua_free(r.host);
    sl_trace_free(&r.trace);
    fflush(stdout);
    return status;
}
