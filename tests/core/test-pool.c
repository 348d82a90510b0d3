/* test-pool.c: the thread pool (core/base/pool.h): every job of a batch runs exactly once,
 * the caller takes part (a pool of n runs n jobs at once), a pool of 1 runs the jobs on the
 * caller in order, and many batches in a row reuse the same workers. */
#include "base/clock.h"
#include "base/pool.h"
#include "test.h"

#include <pthread.h>
#include <string.h>

enum { MAXJOBS = 4096 };

typedef struct batch {
    uint32_t runs[MAXJOBS];     /* times each job ran (atomic) */
    pthread_t who[MAXJOBS];     /* the thread that ran it */
    size_t order[MAXJOBS];      /* the jobs in the order they started (pool of 1) */
    size_t started;             /* atomic */
} batch;

static void count_job(void *ud, size_t i)
{
    batch *b = ud;
    __atomic_fetch_add(&b->runs[i], 1, __ATOMIC_RELAXED);
    b->who[i] = pthread_self();
    size_t k = __atomic_fetch_add(&b->started, 1, __ATOMIC_RELAXED);
    b->order[k] = i;
}

/* Each job waits until `want` jobs have started: only a pool that runs that many at once
 * (the caller among them: it has one worker fewer) gets past it. */
typedef struct rendezvous {
    batch b;
    size_t want;
    int timed_out;              /* atomic */
} rendezvous;

static void meet_job(void *ud, size_t i)
{
    rendezvous *r = ud;
    count_job(&r->b, i);
    double until = sl_now_ms() + 10000;
    while (__atomic_load_n(&r->b.started, __ATOMIC_RELAXED) < r->want)
        if (sl_now_ms() > until) {
            __atomic_store_n(&r->timed_out, 1, __ATOMIC_RELAXED);
            return;
        }
}

/* Every job of batches of many sizes runs exactly once, on pools of 1, 2 and 4. */
TEST_IMPL(pool_jobs_once)
{
    static batch b;
    static const size_t sizes[] = {0, 1, 2, 3, 7, 64, MAXJOBS};
    static const uint32_t threads[] = {1, 2, 4};
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        sl_pool *p = sl_pool_new(threads[t]);
        ASSERT(p != NULL);
        ASSERT_EQ(sl_pool_threads(p), threads[t]);
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            memset(&b, 0, sizeof b);
            sl_pool_run(p, sizes[s], count_job, &b);
            for (size_t i = 0; i < sizes[s]; i++)
                ASSERT_EQ(b.runs[i], 1);
            for (size_t i = sizes[s]; i < MAXJOBS; i++)
                ASSERT_EQ(b.runs[i], 0);
            ASSERT_EQ(b.started, sizes[s]);
        }
        sl_pool_free(p);
    }
    /* 0 threads counts as 1; NULL frees as nothing. */
    sl_pool *p = sl_pool_new(0);
    ASSERT(p != NULL);
    ASSERT_EQ(sl_pool_threads(p), 1);
    sl_pool_free(p);
    sl_pool_free(NULL);
    ASSERT(sl_pool_cpus() >= 1);
    return 0;
}

/* A pool of 1 runs the jobs on the caller, in index order. */
TEST_IMPL(pool_one_thread)
{
    static batch b;
    sl_pool *p = sl_pool_new(1);
    ASSERT(p != NULL);
    sl_pool_run(p, 100, count_job, &b);
    for (size_t i = 0; i < 100; i++) {
        ASSERT(pthread_equal(b.who[i], pthread_self()));
        ASSERT_EQ(b.order[i], i);
    }
    sl_pool_free(p);
    return 0;
}

/* A pool of n runs n jobs at the same time, so the caller is one of the threads (there are
 * only n - 1 workers), and the job it ran is marked with its thread. Then 2,000 batches in
 * a row on the same workers, each complete when sl_pool_run returns. */
TEST_IMPL(pool_caller_takes_part)
{
    static rendezvous r;
    for (uint32_t n = 2; n <= 4; n++) {
        sl_pool *p = sl_pool_new(n);
        ASSERT(p != NULL);
        memset(&r, 0, sizeof r);
        r.want = n;
        sl_pool_run(p, n, meet_job, &r);
        ASSERT_EQ(r.timed_out, 0);
        size_t on_caller = 0;
        for (size_t i = 0; i < n; i++) {
            ASSERT_EQ(r.b.runs[i], 1);
            on_caller += pthread_equal(r.b.who[i], pthread_self()) != 0;
        }
        ASSERT_EQ(on_caller, 1);
        for (int k = 0; k < 2000; k++) {
            size_t jobs = (size_t)(k % 9);
            memset(r.b.runs, 0, jobs * sizeof *r.b.runs);
            r.b.started = 0;
            sl_pool_run(p, jobs, count_job, &r.b);
            ASSERT_EQ(r.b.started, jobs);
            for (size_t i = 0; i < jobs; i++)
                ASSERT_EQ(r.b.runs[i], 1);
        }
        sl_pool_free(p);
    }
    return 0;
}
