/*
 * schema.h: the documents Sightline keeps in etcd, checked exactly as the server applies
 * them (README "The server on etcd"). Nothing here talks to etcd: the server (cluster.c)
 * and `sightctl space check FILE` call the same functions, so a document is accepted
 * offline if and only if a server would accept it.
 *
 * - Keys below /sightline/CLUSTER/v1/spaces/: SPACE (a definition) or SPACE/entities/ID (a
 *   static entity). A space name is 1 to 64 bytes of letters, digits and `_ . : -`; an id
 *   is canonical decimal (no sign, no leading zero, no blank, at most 2^64 - 1), so that
 *   one entity has exactly one key. Other keys are refused (counted, logged).
 * - Definitions carry a semantic version 1.MINOR.PATCH: a server knows the minors up to
 *   SL_SCHEMA_MINOR and reads every one of them; a newer minor or another major is refused
 *   with a reason. `schema_hash` names the data fields of the document's minor (one hash a
 *   minor, table in schema.c and the README). Every field is type-checked; an unknown field
 *   is refused by name. The whole document is checked before anything is applied.
 * - Static entities: x, y (numbers inside float32), radius (>= 0), layer (0..31), mask
 *   (0..2^32-1), props (an object of booleans, numbers and strings); nothing else.
 */
#pragma once

#include "base/value.h"
#include "engine/space.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The newest minor of schema major 1 this server reads (it reads 1.0 .. 1.SL_SCHEMA_MINOR). */
#define SL_SCHEMA_MINOR 2u
/* The longest space name, and the longest `scripts` folder a definition may name. */
#define SL_SCHEMA_NAME_MAX 64u
#define SL_SCHEMA_SCRIPTS_MAX 200u
/* The most static zones (regions) a definition may hold (schema 1.2). */
#define SL_SCHEMA_ZONES_MAX 4096u

/* The schema string of minor m (the data fields sorted, each with its JSON type) and its
 * hash (FNV-1a 64 of the string, 16 lowercase hex digits); NULL for an unknown minor. */
const char *sl_schema_string(unsigned minor);
const char *sl_schema_hash(unsigned minor);

/* What a key below the spaces prefix names. */
typedef enum sl_doc_key {
    SL_DOC_BAD,         /* refused: why says what is wrong */
    SL_DOC_SPACE,       /* a definition: space */
    SL_DOC_ENTITY       /* a static entity: space, id */
} sl_doc_key;

/* Splits key[0..n) (the part after the prefix). */
sl_doc_key sl_doc_parse_key(const char *key, size_t n, char space[SL_SCHEMA_NAME_MAX + 1],
                            uint64_t *id, char *why, size_t len);
/* Whether name[0..n) is a valid space name. */
bool sl_doc_space_name_ok(const char *name, size_t n);

/* A static zone: a region of the definition (data.regions, schema 1.2). g.xy is NULL here:
 * a polygon's vertices are v[0 .. 2 g.n). */
typedef struct sl_doc_zone {
    uint64_t id;
    sl_region g;
    float v[2 * SL_REGION_VERTICES];
} sl_doc_zone;

typedef struct sl_space_doc {
    unsigned minor, patch;      /* of the version 1.MINOR.PATCH */
    bool legacy_hash;           /* 1.0 with the hash of the old basis (accepted, deprecated) */
    sl_space_config cfg;        /* width, height, cell, hysteresis, stay, index */
    char scripts[SL_SCHEMA_SCRIPTS_MAX + 1];   /* "" when absent */
    double tick_ms;             /* 0 when absent */
    sl_doc_zone *zones;         /* its static zones (malloc'd: sl_space_doc_free) */
    size_t nzones;
} sl_space_doc;

/* Checks a space definition (JSON text of n bytes); 0 with d filled, or SL_EINVAL with
 * the reason in why. */
int sl_space_doc_parse(const char *json, size_t n, sl_space_doc *d, char *why, size_t len);
/* Whether two checked definitions configure a space the same (version aside). */
bool sl_space_doc_same(const sl_space_doc *a, const sl_space_doc *b);
/* Frees what a parsed definition holds (its zones); the struct may be parsed into again. */
void sl_space_doc_free(sl_space_doc *d);

typedef struct sl_entity_doc {
    float x, y, radius;
    uint32_t layer, mask;
    size_t nprops;
    const char **keys;          /* nprops keys and values, valid as long as the doc */
    sl_value *values;
    void *json_;                /* what keys and values point into */
} sl_entity_doc;

/* Checks a static entity's document; 0 with d filled (free it with sl_entity_doc_free), or
 * SL_EINVAL / SL_ENOMEM with the reason in why (d then holds nothing). */
int sl_entity_doc_parse(const char *json, size_t n, sl_entity_doc *d, char *why, size_t len);
void sl_entity_doc_free(sl_entity_doc *d);
