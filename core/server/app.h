/*
 * app.h: the sightline server's state and behaviour, independent of how it is started:
 * spaces (each with its script host), client sessions and the entities they own, the
 * protocol's requests, the tick that sends every client the events of its watchers, and
 * the admin commands. main.c wires it to the command line, signals and the admin socket.
 */
#pragma once

#include "proto/codec.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct sl_app sl_app;

typedef struct sl_app_config {
    const char *listen_host;    /* default 127.0.0.1 */
    int listen_port;            /* default 7100; 0: any free port */
    const char *scripts;        /* script directory every space runs */
    double tick_ms;             /* default 50 */
    const char *token;          /* shared secret clients must present in hello; NULL: none */
    size_t max_frame;           /* default 1 MiB */
    size_t out_cap;             /* per client; default 32 MiB */
    double grace_ms;            /* a dropped client's entities live this long; default 5000 */
    double budget_ms;           /* script time per tick per space; default 200 */
    size_t mem_limit;           /* per space's script VM; default 256 MiB */
    bool unsafe_scripts;
    bool quiet;                 /* no log lines on stderr */
} sl_app_config;

/* Starts listening on loop. Returns 0, or nonzero with the reason in err. */
int sl_app_new(sl_app **out, uv_loop_t *loop, const sl_app_config *cfg, char *err,
               size_t errlen);
/* The TCP port the server listens on. */
int sl_app_port(const sl_app *a);

/*
 * Runs one admin command line ("stats", "spaces", "entity SPACE ID", "why SPACE W T",
 * "reload", "shutdown", "help") and appends its text answer to out (NUL-terminated).
 * Returns 0, or 1 when the command failed (the answer says why).
 */
int sl_app_command(sl_app *a, const char *line, char *out, size_t outlen);
/* Writes the figures of `stats` in the Prometheus text format; returns the length. */
size_t sl_app_metrics(sl_app *a, char *buf, size_t len);
/* Reloads every space's scripts; the answer (one line per space) goes to out. */
int sl_app_reload(sl_app *a, char *out, size_t outlen);

/* ---- for cluster.c: spaces and static entities defined in etcd ---- */
#include "lua/host.h"
#include "engine/space.h"
/* Creates the space, or reconfigures it in place (index kind and cell, tick period; the
 * map size, hysteresis and stay cannot change); scripts NULL: the server's; tick_ms 0: the
 * server's tick (a space cannot tick faster than the server). 0, or -1 with err. */
int sl_app_define_space(sl_app *a, const char *name, const sl_space_config *cfg,
                        const char *scripts, double tick_ms, char *err, size_t len);
int sl_app_undefine_space(sl_app *a, const char *name);
/* Adds or updates an entity owned by no client; 0, or -1 with err (nothing changed). */
int sl_app_static_put(sl_app *a, const char *space, uint64_t id, float x, float y, float r,
                      uint32_t layer, uint32_t mask, char *err, size_t len);
int sl_app_static_prop(sl_app *a, const char *space, uint64_t id, const char *key,
                       const sl_value *v);
/* Removes a static entity once grace_ms have passed (a put before then cancels it). */
void sl_app_static_delete(sl_app *a, const char *space, uint64_t id, double grace_ms);
/* A line about etcd shown by `stats`. */
void sl_app_set_cluster_status(sl_app *a, const char *text);
size_t sl_app_space_names(const sl_app *a, const char **names, size_t max);

/* Stops: flushes events, closes clients and the listener, stops the tick. Run the loop
 * until it returns, then free. */
void sl_app_shutdown(sl_app *a);
void sl_app_free(sl_app *a);
/* Whether a shutdown was asked for (by a command). */
bool sl_app_stopping(const sl_app *a);
