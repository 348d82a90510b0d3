/*
 * admin.h: the operator's commands. The admin socket is a Unix socket (mode 0600) that takes
 * one command per line and answers with text, then a line `.ok` or `.fail`; `sightctl`
 * speaks it. The same commands run without the socket for --space and --config.
 *
 * The commands are the table in admin.c; `help` lists them, README.md describes them.
 */
#pragma once

#include "server/cluster.h"
#include "server/server.h"

#include <uv.h>

typedef struct sl_admin sl_admin;

/* Called after a `shutdown` command has stopped the server: the caller closes the rest. */
typedef void (*sl_admin_stop_fn)(void *ud);

/*
 * Listens on the Unix socket at path for commands to srv (a stale file there, which nobody
 * answers on, is replaced; a live server's socket is not: SL_EEXIST); cluster may be NULL
 * (then `space get/put` answer that they need --etcd). Returns 0, or SL_EEXIST or SL_EIO
 * with the reason in err.
 */
int sl_admin_listen(sl_admin **out, uv_loop_t *loop, const char *path, sl_server *srv,
                    sl_cluster *cluster, sl_admin_stop_fn on_stop, void *ud, char *err,
                    size_t errlen);
/* Whether a server answers on the admin socket at path (a connect succeeds): then it is
 * alive and its socket must not be taken. A file nobody listens on is stale. */
bool sl_admin_in_use(const char *path);
/* Stops listening, removes the socket file (if it is still the one it made) and closes every
 * admin connection (an answer still queued is cancelled); frees it all once the handles
 * are closed (run the loop). */
void sl_admin_close(sl_admin *a);

/*
 * Runs one command line now (not `space get/put`, which wait for etcd) and writes its text
 * answer to out (NUL-terminated, cut to outlen). Returns 0, or a negative SL_E* code when
 * the command failed (the answer says why).
 */
int sl_admin_command(sl_server *srv, const char *line, char *out, size_t outlen);
