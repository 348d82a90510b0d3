/*
 * mpcheck.h: msgpack bytes checked before msgpack-c unpacks them. msgpack-c allocates a
 * container's storage from its claimed count before reading the elements: without a check,
 * 10 bytes claiming 2^32 entries ask for about 100 GB (found by the protocol's fuzz
 * target). Both the protocol's frames (proto/codec.c) and the scripts' saved state
 * (lua/state.c) go through this first.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define SL_MSGPACK_MAX_DEPTH 32     /* what msgpack-c's unpacker holds */

/*
 * Walks bytes[0..len) without building anything: true when they are one msgpack value that
 * fills them exactly, every array and map claims no more elements than bytes remain (each
 * element takes at least one byte), and containers nest at most max_depth (at most
 * SL_MSGPACK_MAX_DEPTH) deep, empty ones included; *too_deep says when the nesting was what
 * failed. So unpacking what passes allocates O(len).
 */
bool sl_msgpack_check(const void *bytes, size_t len, unsigned max_depth, bool *too_deep);
