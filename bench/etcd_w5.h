/*
 * etcd_w5.h: the W5-etcd benchmark (bench/etcd_w5.c): a writer against a real etcd-server,
 * the Sightline mirror consuming the stream, etcdctl watch as the reference.
 */
#pragma once

#include <stdbool.h>

/* Runs W5 for `seconds`; returns 0, or 1 when an event was lost or repeated. */
int bench_w5(double seconds, bool json);
