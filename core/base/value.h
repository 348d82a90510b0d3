/*
 * value.h: the one value type of props: nil, a boolean, a number or a string. The protocol
 * decodes a client's props into it, the script host stores them from it, etcd documents
 * and traces fill it. A string is not owned: it lives as long as whatever handed it over.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef enum sl_value_type {
    SL_VALUE_NIL, SL_VALUE_BOOL, SL_VALUE_NUMBER, SL_VALUE_STRING
} sl_value_type;

typedef struct sl_value {
    sl_value_type type;
    bool b;                 /* SL_VALUE_BOOL */
    double n;               /* SL_VALUE_NUMBER */
    const char *s;          /* SL_VALUE_STRING: s[0..len), not NUL-terminated */
    size_t len;
} sl_value;
