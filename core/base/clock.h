/* clock.h: the one clock of Sightline's timing (ticks, grace periods, budgets, timeouts). */
#pragma once

#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC: only differences mean something; never goes back. */
static inline double sl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
