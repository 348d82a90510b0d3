/*
 * pool.h: a fixed pool of threads that runs a batch of independent jobs and waits for them
 * all. The caller takes part: a pool of n threads is the caller plus n - 1 workers, so a
 * pool of 1 starts no thread and runs every job on the caller, in order.
 *
 * What it is for: the server ticks its spaces in parallel (one job a space), and the engine
 * may later split one large space's tick into jobs. Jobs are taken in index order by
 * whichever thread is free (no fixed assignment), so a job must not depend on another of
 * the same batch, nor on which thread runs it. One batch at a time: sl_pool_run is called
 * from one thread only and must not be called from inside a job.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct sl_pool sl_pool;

/* A job: index is 0..njobs-1 of the batch; ud is sl_pool_run's. */
typedef void (*sl_pool_fn)(void *ud, size_t index);

/* A pool of n threads in all (the caller of sl_pool_run and n - 1 workers; n 0 counts as
 * 1). Returns NULL when memory or a thread could not be had (nothing is left running). */
sl_pool *sl_pool_new(uint32_t n);
/* Stops and joins the workers (no batch may be running). NULL is fine. */
void sl_pool_free(sl_pool *p);
/* The threads that run a batch, the caller included. */
uint32_t sl_pool_threads(const sl_pool *p);

/* Runs fn(ud, i) once for each i in 0..njobs-1, on the caller and the workers, and returns
 * when every job has finished (what the jobs wrote is then visible to the caller). */
void sl_pool_run(sl_pool *p, size_t njobs, sl_pool_fn fn, void *ud);

/* The number of online CPUs (at least 1): the default size of a pool. */
uint32_t sl_pool_cpus(void);
