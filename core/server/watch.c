/*
 * watch.c: see watch.h. A change anywhere restarts a quiet timer (QUIET_MS); when it fires,
 * the folders are listed again (a new subfolder is watched from then on) and the owner is
 * called. Every handle is allocated on its own and freed in its close callback; the watch
 * itself goes when its last handle has closed.
 */
#include "server/watch.h"

#include "base/common.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define QUIET_MS 200
#define MAX_DIRS 256
#define MAX_DEPTH 8

typedef struct folder {
    uv_fs_event_t ev;           /* first: the handle's address is the folder's */
    struct sl_watch *w;
} folder;

struct sl_watch {
    uv_loop_t *loop;
    uv_timer_t quiet;
    char *dir;
    sl_watch_fn fn;
    void *ud;
    folder *folders[MAX_DIRS];
    size_t nfolders;
    int handles;                /* open handles: the timer and the folders */
    bool closing;
};

static void handle_gone(sl_watch *w)
{
    if (--w->handles == 0) {
        free(w->dir);
        free(w);
    }
}

static void folder_closed(uv_handle_t *h)
{
    folder *f = (folder *)h;
    sl_watch *w = f->w;
    free(f);
    handle_gone(w);
}

static void timer_closed(uv_handle_t *h)
{
    handle_gone(h->data);
}

static void on_quiet(uv_timer_t *t);

static void on_change(uv_fs_event_t *h, const char *file, int events, int status)
{
    (void)file;
    (void)events;
    folder *f = (folder *)h;
    if (status == 0 && !f->w->closing)
        uv_timer_start(&f->w->quiet, on_quiet, QUIET_MS, 0);
}

/* Watches path and the folders below it (depth: how deep path is). */
static void add_tree(sl_watch *w, const char *path, int depth)
{
    if (w->nfolders == MAX_DIRS || depth > MAX_DEPTH)
        return;
    folder *f = calloc(1, sizeof *f);
    if (!f)
        return;
    f->w = w;
    uv_fs_event_init(w->loop, &f->ev);
    w->handles++;
    if (uv_fs_event_start(&f->ev, on_change, path, 0)) {
        uv_close((uv_handle_t *)&f->ev, folder_closed);
        return;
    }
    w->folders[w->nfolders++] = f;
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096];
        struct stat st;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            add_tree(w, sub, depth + 1);
    }
    closedir(d);
}

/* Closes every folder's handle. */
static void drop_folders(sl_watch *w)
{
    for (size_t i = 0; i < w->nfolders; i++)
        uv_close((uv_handle_t *)&w->folders[i]->ev, folder_closed);
    w->nfolders = 0;
}

static void on_quiet(uv_timer_t *t)
{
    sl_watch *w = t->data;
    drop_folders(w);            /* the tree may have changed: list it again */
    add_tree(w, w->dir, 0);
    w->fn(w->ud);
}

int sl_watch_start(sl_watch **out, uv_loop_t *loop, const char *dir, sl_watch_fn fn, void *ud,
                   char *err, size_t errlen)
{
    sl_watch *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        return sl_fail(err, errlen, SL_ENOMEM, "--watch-scripts: out of memory");
    }
    w->loop = loop;
    w->fn = fn;
    w->ud = ud;
    uv_timer_init(loop, &w->quiet);
    w->quiet.data = w;
    w->handles = 1;
    add_tree(w, dir, 0);
    if (!w->nfolders) {
        sl_watch_close(w);
        return sl_fail(err, errlen, SL_EIO, "--watch-scripts %s: cannot watch it", dir);
    }
    *out = w;
    return 0;
}

void sl_watch_close(sl_watch *w)
{
    if (!w || w->closing)
        return;
    w->closing = true;
    drop_folders(w);
    uv_close((uv_handle_t *)&w->quiet, timer_closed);
}
