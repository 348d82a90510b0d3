/*
 * pool.c: the thread pool (pool.h). Plain pthreads: one mutex and two condition variables.
 *
 * A batch: the caller publishes fn, ud and njobs under the mutex, bumps the generation and
 * wakes every worker; then all of them (the caller too) take job indexes from one atomic
 * counter until it passes njobs. Each worker checks out under the mutex when it finds no job
 * left, and the caller returns only when all workers have checked out: so no worker still
 * reads fn or ud after sl_pool_run returns, and the mutex makes everything the jobs wrote
 * visible to the caller. Dynamic taking keeps threads busy when jobs differ in size (spaces
 * of different sizes); which thread runs a job never changes its result.
 *
 * Workers block every signal, so that signals go to the threads that expect them (libuv's
 * loop thread installs the handlers).
 */
#include "base/pool.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

struct sl_pool {
    uint32_t n;                 /* threads in all, the caller included */
    pthread_t *th;              /* the n - 1 workers */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    /* Under mu: */
    uint64_t gen;               /* the batch now published (0: none yet) */
    uint32_t busy;              /* workers not yet checked out of the batch */
    bool quit;
    sl_pool_fn fn;
    void *ud;
    size_t njobs;
    /* The next job to take (atomic, also outside mu). */
    size_t next;
};

/* Runs jobs of the published batch until none is left. */
static void work(sl_pool *p, sl_pool_fn fn, void *ud, size_t njobs)
{
    for (;;) {
        size_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (i >= njobs)
            return;
        fn(ud, i);
    }
}

static void *worker(void *arg)
{
    sl_pool *p = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->gen == seen)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->quit)
            break;
        seen = p->gen;
        sl_pool_fn fn = p->fn;
        void *ud = p->ud;
        size_t njobs = p->njobs;
        pthread_mutex_unlock(&p->mu);
        work(p, fn, ud, njobs);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

uint32_t sl_pool_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (uint32_t)n : 1;
}

sl_pool *sl_pool_new(uint32_t n)
{
    sl_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n = n ? n : 1;
    if (p->n == 1)
        return p;
    p->th = calloc(p->n - 1, sizeof *p->th);
    if (!p->th)
        goto fail_alloc;
    if (pthread_mutex_init(&p->mu, NULL))
        goto fail_alloc;
    if (pthread_cond_init(&p->go, NULL))
        goto fail_mu;
    if (pthread_cond_init(&p->done, NULL))
        goto fail_go;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    uint32_t started = 0;
    while (started < p->n - 1 && pthread_create(&p->th[started], NULL, worker, p) == 0)
        started++;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started == p->n - 1)
        return p;
    /* A thread could not start: those that did are stopped, and the pool is refused. */
    p->n = started + 1;
    sl_pool_free(p);
    return NULL;
fail_go:
    pthread_cond_destroy(&p->go);
fail_mu:
    pthread_mutex_destroy(&p->mu);
fail_alloc:
    free(p->th);
    free(p);
    return NULL;
}

void sl_pool_free(sl_pool *p)
{
    if (!p)
        return;
    if (p->th) {        /* (the workers, and the mutex and conditions they use) */
        pthread_mutex_lock(&p->mu);
        p->quit = true;
        pthread_cond_broadcast(&p->go);
        pthread_mutex_unlock(&p->mu);
        for (uint32_t i = 0; i < p->n - 1; i++)
            pthread_join(p->th[i], NULL);
        pthread_cond_destroy(&p->done);
        pthread_cond_destroy(&p->go);
        pthread_mutex_destroy(&p->mu);
    }
    free(p->th);
    free(p);
}

uint32_t sl_pool_threads(const sl_pool *p)
{
    return p->n;
}

void sl_pool_run(sl_pool *p, size_t njobs, sl_pool_fn fn, void *ud)
{
    if (p->n == 1 || njobs <= 1) {
        /* Nothing to share: the caller alone, in order (no wake-up to pay). */
        for (size_t i = 0; i < njobs; i++)
            fn(ud, i);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ud = ud;
    p->njobs = njobs;
    __atomic_store_n(&p->next, 0, __ATOMIC_RELAXED);
    p->busy = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    work(p, fn, ud, njobs);
    pthread_mutex_lock(&p->mu);
    while (p->busy)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
