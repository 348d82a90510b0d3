/*
 * watch.h: --watch-scripts: a script directory and every folder below it watched for
 * changes (Linux's inotify, through libuv, watches one folder per handle, so each folder
 * gets its own). A burst of changes (an editor writes a file in several steps) becomes one
 * call, once the tree has been quiet for a moment; folders made or removed since are
 * watched or forgotten then.
 */
#pragma once

#include <uv.h>

typedef struct sl_watch sl_watch;

/* Called once a burst of changes is over. */
typedef void (*sl_watch_fn)(void *ud);

/* Watches dir and its folders (at most 256, 8 deep); 0, or SL_EIO / SL_ENOMEM with the
 * reason in err. */
int sl_watch_start(sl_watch **out, uv_loop_t *loop, const char *dir, sl_watch_fn fn, void *ud,
                   char *err, size_t errlen);
/* Stops; frees it all once its handles are closed (run the loop). NULL: nothing. */
void sl_watch_close(sl_watch *w);
