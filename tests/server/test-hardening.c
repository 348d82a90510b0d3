/*
 * The server against clients that try to hurt it or each other (see README "Permissions and
 * limits" and proto/PROTOCOL.md): each test shows one defect's fix, and fails where the
 * defect is back.
 */
#include "test.h"

#include "fixtures/server_fixture.h"

#include "base/clock.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- session tokens ----------------------------------------------------------------------- */

/* splitmix64's output function and its inverse: what an attacker would use on a token made
 * from a splitmix64 stream. */
static uint64_t unshift(uint64_t y, int s)
{
    uint64_t x = y;
    for (int i = 0; i < 64 / s + 1; i++)
        x = y ^ (x >> s);
    return x;
}

static uint64_t inverse_mod64(uint64_t a)
{
    uint64_t x = a;             /* Newton: each step doubles the correct low bits */
    for (int i = 0; i < 6; i++)
        x *= 2 - a * x;
    return x;
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t unmix(uint64_t z)
{
    z = unshift(z, 31) * inverse_mod64(0x94D049BB133111EBULL);
    z = unshift(z, 27) * inverse_mod64(0xBF58476D1CE4E5B9ULL);
    return unshift(z, 30);
}

/* The token the next session would get if tokens were two outputs of a splitmix64 stream
 * (in either order: C leaves the order of a call's arguments open), from one token. */
static void predict_next(const char *token, char *next)
{
    const uint64_t gamma = 0x9E3779B97F4A7C15ULL;
    char half[17];
    memcpy(half, token, 16);
    half[16] = '\0';
    uint64_t first = strtoull(half, NULL, 16);
    memcpy(half, token + 16, 16);
    uint64_t second = strtoull(half, NULL, 16);
    uint64_t state = unmix(first);
    ASSERT_U64_EQ(mix(state), first);
    /* The stream's step from the first half to the second: +gamma, or -gamma when the
     * halves were written backwards. The next token's first half is two steps of the
     * stream on either way. */
    uint64_t step = mix(state - gamma) == second ? -gamma : gamma;
    snprintf(next, 33, "%016llx%016llx", (unsigned long long)mix(state + 2 * gamma),
             (unsigned long long)mix(state + 2 * gamma + step));
}

/* A client's token tells nothing about the next client's: 128 random bits each. */
TEST_IMPL(server_tokens_unpredictable)
{
    srv s;
    srv_start(&s, NULL);
    sl_client *a = connect_to(&s);
    char token[33], predicted[33];
    snprintf(token, sizeof token, "%s", sl_client_session(a));
    ASSERT_EQ(strlen(token), 32);
    ASSERT_EQ(strspn(token, "0123456789abcdef"), 32);
    predict_next(token, predicted);
    sl_client *b = connect_to(&s);
    ASSERT(strcmp(sl_client_session(b), token) != 0);
    ASSERT(strcmp(sl_client_session(b), predicted) != 0);
    /* The victim's token taken from a prediction would have resumed its session. */
    sl_client *thief;
    char err[256];
    ASSERT_EQ(sl_client_connect(&thief, "127.0.0.1", s.port, NULL, predicted, err, sizeof err),
              SL_EIO);
    ASSERT(strstr(err, "no_session") != NULL);
    sl_client_close(a);
    sl_client_close(b);
    srv_stop(&s, true);
    return 0;
}

/* ---- one answer per request --------------------------------------------------------------- */

/* The replies to request rid among the frames up to the pong of ping_rid: their count, the
 * last one's code ("ok" for ok) in code. */
static int replies_to(sl_client *c, uint64_t rid, uint64_t ping_rid, char *code, size_t len)
{
    ASSERT_EQ(sl_client_ping(c, ping_rid), 0);
    int n = 0;
    sl_client_frame f;
    for (;;) {
        ASSERT_EQ(sl_client_next(c, &f, 3000), 1);
        if (sl_frame_is(&f, "pong") && sl_frame_u64(&f, "rid") == ping_rid)
            return n;
        if (sl_frame_u64(&f, "rid") != rid)
            continue;
        n++;
        if (sl_frame_is(&f, "ok"))
            snprintf(code, len, "ok");
        else
            sl_frame_str(&f, "code", code, len);
    }
}

/* {"t": "add", "rid": 5, "space": "m", "e": 9, "x": 1, "y": 1, "r": 5,
 *  "props": {"team": 1, "<200 x k>": 2}}: a bad key after a good one. */
static void add_with_bad_prop(sl_client *c)
{
    unsigned char body[300];
    size_t n = 0;
    static const unsigned char head[] = {
        0x88, 0xa1, 't', 0xa3, 'a', 'd', 'd', 0xa3, 'r', 'i', 'd', 0x05,
        0xa5, 's', 'p', 'a', 'c', 'e', 0xa1, 'm', 0xa1, 'e', 0x09, 0xa1, 'x', 0x01,
        0xa1, 'y', 0x01, 0xa1, 'r', 0x05,
        0xa5, 'p', 'r', 'o', 'p', 's', 0x82, 0xa4, 't', 'e', 'a', 'm', 0x01, 0xd9, 200};
    memcpy(body, head, sizeof head);
    n = sizeof head;
    memset(body + n, 'k', 200);
    n += 200;
    body[n++] = 0x02;
    send_body(c, body, n);
}

/* A refused add or props gets one error and changes nothing (it used to get an error and
 * an ok, and the entity was created without its props). */
TEST_IMPL(server_one_reply_per_request)
{
    srv s;
    srv_start(&s, NULL);
    sl_client *c = connect_to(&s);
    sl_client_create_space(c, "m", 100, 100, 1);
    expect_ok(c, 1);
    char code[64] = "";
    add_with_bad_prop(c);
    ASSERT_EQ(replies_to(c, 5, 6, code, sizeof code), 1);
    ASSERT(!strcmp(code, "bad_value"));
    /* Nothing was added: the same id adds cleanly. */
    sl_client_add(c, "m", 9, 1, 1, 5, 7);
    expect_ok(c, 7);
    /* props with a bad key among good ones: one error, no ok. */
    ASSERT_EQ(sl_client_prop(c, "m", 9, "", 1, NULL, 8), 0);
    ASSERT_EQ(replies_to(c, 8, 9, code, sizeof code), 1);
    ASSERT(!strcmp(code, "bad_value"));
    sl_client_close(c);
    srv_stop(&s, true);
    return 0;
}

/* ---- errors name their request, hello rules ----------------------------------------------- */

/* An error frame read from c: its code into code; returns its rid (0: none). */
static uint64_t next_error(sl_client *c, char *code, size_t len)
{
    sl_client_frame f;
    ASSERT_EQ(sl_client_next(c, &f, 3000), 1);
    ASSERT(sl_frame_is(&f, "error"));
    sl_frame_str(&f, "code", code, len);
    return sl_frame_get(&f, "rid") ? sl_frame_u64(&f, "rid") : 0;
}

/* The connection is closed by the server (after what it sent). */
static void expect_closed(sl_client *c)
{
    sl_client_frame f;
    ASSERT_EQ(sl_client_next(c, &f, 3000), SL_EIO);
}

/* A wrong-typed t still gets its rid back; a bad hello is answered and closed; a body that
 * is not a map, before hello, is not_hello. */
TEST_IMPL(server_errors_name_requests)
{
    srv s;
    srv_start(&s, NULL);
    char code[64], err[256];
    /* {"t": 5, "rid": 9} after hello: bad_message, rid 9 (t before rid in the map). */
    sl_client *c = connect_to(&s);
    send_body(c, (const unsigned char[]){0x82, 0xa1, 't', 0x05, 0xa3, 'r', 'i', 'd', 0x09}, 9);
    ASSERT_EQ(next_error(c, code, sizeof code), 9);
    ASSERT(!strcmp(code, "bad_message"));
    sl_client_close(c);
    /* {"t": "hello", "rid": 3} without v: bad_message with rid 3, then closed. */
    ASSERT_EQ(sl_client_dial(&c, "127.0.0.1", s.port, err, sizeof err), 0);
    send_body(c, (const unsigned char[]){0x82, 0xa1, 't', 0xa5, 'h', 'e', 'l', 'l', 'o',
                                         0xa3, 'r', 'i', 'd', 0x03}, 14);
    ASSERT_EQ(next_error(c, code, sizeof code), 3);
    ASSERT(!strcmp(code, "bad_message"));
    expect_closed(c);
    sl_client_close(c);
    /* A frame nested 40 deep: bad_frame naming the nesting (not "out of memory"). */
    c = connect_to(&s);
    unsigned char deep[64] = {0x81, 0xa1, 'x'};
    memset(deep + 3, 0x91, 40);
    deep[43] = 0x01;
    send_body(c, deep, 44);
    sl_client_frame f;
    ASSERT_EQ(sl_client_next(c, &f, 3000), 1);
    sl_frame_str(&f, "msg", err, sizeof err);
    ASSERT(strstr(err, "nested more than 32 deep") != NULL);
    expect_closed(c);
    sl_client_close(c);
    /* [1] (an array) before hello: not_hello, then closed. */
    ASSERT_EQ(sl_client_dial(&c, "127.0.0.1", s.port, err, sizeof err), 0);
    send_body(c, (const unsigned char[]){0x91, 0x01}, 2);
    next_error(c, code, sizeof code);
    ASSERT(!strcmp(code, "not_hello"));
    expect_closed(c);
    sl_client_close(c);
    srv_stop(&s, true);
    return 0;
}

/* ---- a moves frame's failures ------------------------------------------------------------- */

/* The bad_items answer's items, checked against want (index and code, in index order). */
static void expect_items(const sl_client_frame *f, uint32_t failed, uint32_t listed,
                         const uint32_t *want_item, const char *const *want_code)
{
    ASSERT(sl_frame_is(f, "error"));
    char code[64];
    sl_frame_str(f, "code", code, sizeof code);
    ASSERT(!strcmp(code, "bad_items"));
    ASSERT_EQ(sl_frame_u64(f, "failed"), failed);
    const msgpack_object *items = sl_frame_get(f, "items");
    ASSERT(items && items->type == MSGPACK_OBJECT_ARRAY);
    ASSERT_EQ(items->via.array.size, listed);
    for (uint32_t i = 0; want_item && i < listed; i++) {
        const msgpack_object *it = items->via.array.ptr[i].via.array.ptr;
        ASSERT_EQ(it[0].via.u64, want_item[i]);
        ASSERT(it[1].via.str.size == strlen(want_code[i]) &&
               !memcmp(it[1].via.str.ptr, want_code[i], it[1].via.str.size));
    }
}

/* A moves frame with refused items gets one answer listing them (it got one error frame
 * per item: 60,000 for one large frame), and its good items apply. */
TEST_IMPL(server_moves_one_answer)
{
    srv s;
    srv_start(&s, NULL);
    sl_client *a = connect_to(&s), *b = connect_to(&s);
    two_neighbours(a, b);           /* space m: a owns 1, b owns 2 */
    uint64_t ids[5] = {1, 77, 2, 1, 1};
    float xy[10] = {20, 20, 5, 5, 6, 6, NAN, 1, 500, 1};
    ASSERT_EQ(sl_client_moves(a, "m", ids, xy, 5, 40), 0);
    sl_client_frame f;
    ASSERT_EQ(sl_client_wait(a, "error", 40, &f, 3000), 1);
    static const uint32_t items[] = {1, 2, 3, 4};
    static const char *const codes[] = {"no_entity", "foreign", "bad_value", "bad_value"};
    expect_items(&f, 4, 4, items, codes);
    /* Nothing else answers request 40, and item 0 applied: entity 1 is at (20, 20). */
    ASSERT_EQ(sl_client_ping(a, 41), 0);
    for (;;) {
        ASSERT_EQ(sl_client_next(a, &f, 3000), 1);
        ASSERT(sl_frame_u64(&f, "rid") != 40);
        if (sl_frame_is(&f, "pong"))
            break;
    }
    char buf[4096];
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "entity m 1"), 0);
    ASSERT(strstr(buf, "x 20 y 20") != NULL);
    /* The owner as an operator knows it: the client's address (was "session 0"). */
    ASSERT(strstr(buf, "owner client 127.0.0.1:") != NULL);
    /* 3,000 unknown ids: one answer, the first 100 listed. */
    static uint64_t many[3000];
    static float mxy[6000];
    for (int i = 0; i < 3000; i++)
        many[i] = 1000 + (uint64_t)i;
    ASSERT_EQ(sl_client_moves(a, "m", many, mxy, 3000, 42), 0);
    ASSERT_EQ(sl_client_wait(a, "error", 42, &f, 3000), 1);
    expect_items(&f, 3000, 100, NULL, NULL);
    sl_client_close(a);
    sl_client_close(b);
    srv_stop(&s, true);
    return 0;
}

/* An adds frame adds each good item as `add` would (layer and mask included), refuses the
 * others with one bad_items answer (the session's entity limit counted item by item), and
 * a frame whose arrays disagree in length is refused whole. */
TEST_IMPL(server_adds_one_answer)
{
    srv s;
    srv_start(&s, "--max-session-entities", "5", NULL);
    sl_client *a = connect_to(&s), *b = connect_to(&s);
    two_neighbours(a, b);           /* space m: a owns 1, b owns 2 */
    sl_client_entity v[6] = {
        {10, 12, 10, 5, 0, UINT32_MAX}, {1, 5, 5, 5, 0, UINT32_MAX},
        {11, NAN, 5, 5, 0, UINT32_MAX}, {12, 5, 5, -1, 0, UINT32_MAX},
        {13, 14, 12, 30, 3, 0x4},       {14, 5, 5, 5, 40, UINT32_MAX},
    };
    ASSERT_EQ(sl_client_adds(a, "m", v, 6, 50), 0);
    sl_client_frame f;
    ASSERT_EQ(sl_client_wait(a, "error", 50, &f, 3000), 1);
    static const uint32_t items[] = {1, 2, 3, 5};
    static const char *const codes[] = {"exists", "bad_value", "bad_value", "bad_value"};
    expect_items(&f, 4, 4, items, codes);
    char buf[4096];
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "entity m 13"), 0);
    ASSERT(strstr(buf, "x 14 y 12 radius 30 layer 3 mask 0x00000004") != NULL);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "entity m 10"), 0);
    ASSERT(strstr(buf, "owner client 127.0.0.1:") != NULL);
    ASSERT(ctl(&s, buf, sizeof buf, "entity m 11") != 0 || strstr(buf, "x ") == NULL);
    /* a owns 1, 10, 13: two more fit, the third is refused by the limit. */
    sl_client_entity w[3] = {{20, 1, 1, 1, 0, UINT32_MAX}, {21, 2, 2, 1, 0, UINT32_MAX},
                             {22, 3, 3, 1, 0, UINT32_MAX}};
    ASSERT_EQ(sl_client_adds(a, "m", w, 3, 51), 0);
    ASSERT_EQ(sl_client_wait(a, "error", 51, &f, 3000), 1);
    static const uint32_t litem[] = {2};
    static const char *const lcode[] = {"limit"};
    expect_items(&f, 1, 1, litem, lcode);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "entity m 21"), 0);
    ASSERT(strstr(buf, "x 2 y 2 radius 1") != NULL);
    /* e with 2 ids and radii with 1: bad_message, nothing added. */
    static const unsigned char bad[] = {
        0x85, 0xa1, 't', 0xa4, 'a', 'd', 'd', 's', 0xa5, 's', 'p', 'a', 'c', 'e', 0xa1, 'm',
        0xa1, 'e', 0x92, 30, 31, 0xa2, 'x', 'y', 0x94, 1, 1, 1, 1,
        0xa5, 'r', 'a', 'd', 'i', 'i', 0x91, 1};
    sl_client_close(b);
    b = connect_to(&s);
    send_body(b, bad, sizeof bad);
    char code[64];
    next_error(b, code, sizeof code);
    ASSERT(!strcmp(code, "bad_message"));
    ASSERT(ctl(&s, buf, sizeof buf, "entity m 30") != 0 || strstr(buf, "x ") == NULL);
    sl_client_close(a);
    sl_client_close(b);
    srv_stop(&s, true);
    return 0;
}

/* ---- which tick a request lands in -------------------------------------------------------- */

/* The ok of request rid: its tick field (the tick whose frame carries its events). */
static uint64_t ok_tick(sl_client *c, uint64_t rid)
{
    sl_client_frame f;
    ASSERT_EQ(sl_client_wait(c, "ok", rid, &f, 3000), 1);
    ASSERT(sl_frame_get(&f, "tick") != NULL);
    return sl_frame_u64(&f, "tick");
}

/* An ok names the tick its request's events come in: the enter that the second add causes
 * is in the tick frame with that number. */
TEST_IMPL(server_ok_names_tick)
{
    srv s;
    srv_start(&s, NULL);
    sl_client *c = connect_to(&s);
    sl_client_create_space(c, "m", 100, 100, 1);
    ASSERT_EQ(ok_tick(c, 1), 1);
    sl_client_add(c, "m", 1, 10, 10, 20, 2);
    uint64_t t2 = ok_tick(c, 2);
    sl_client_add(c, "m", 2, 15, 10, 0, 3);
    uint64_t t3 = ok_tick(c, 3);
    ASSERT(t3 >= t2);
    sl_client_frame f;
    ASSERT_EQ(sl_client_wait(c, "tick", 0, &f, 3000), 1);
    ASSERT_EQ(sl_frame_u64(&f, "n"), t3);
    const msgpack_object *enter = sl_frame_get(&f, "enter");
    ASSERT(enter && enter->via.array.size == 4);
    ASSERT(enter->via.array.ptr[0].via.u64 == 1 && enter->via.array.ptr[1].via.u64 == 2);
    sl_client_close(c);
    srv_stop(&s, true);
    return 0;
}

/* ---- who may drop a space ----------------------------------------------------------------- */

/* Reads c's frames until a space.dropped for space comes. */
static void expect_dropped(sl_client *c, const char *space)
{
    sl_client_frame f;
    ASSERT_EQ(sl_client_wait(c, "space.dropped", 0, &f, 3000), 1);
    char name[80];
    sl_frame_str(&f, "space", name, sizeof name);
    ASSERT(!strcmp(name, space));
}

/* Dropping a space in which one session owns 100,000 entities takes time linear in them:
 * it took seconds (the session's list of entities was walked again for every entity of
 * the dropped space; 50,000 took 1.8 s, 100,000 would take four times that). The bound is
 * far from both: tens of milliseconds now, under sanitizers a few hundred. */
TEST_IMPL(server_drop_many_entities)
{
    srv s;
    srv_start(&s, "--max-frames-per-s", "-1", NULL);
    sl_client *a = connect_to(&s);
    sl_client_create_space(a, "big", 4096, 4096, 1);
    expect_ok(a, 1);
    static sl_client_entity v[4000];
    uint64_t id = 1;
    for (int f = 0; f < 25; f++) {
        for (int i = 0; i < 4000; i++, id++)
            v[i] = (sl_client_entity){id, (float)(id % 4000), (float)(id / 25), 10, 0,
                                      UINT32_MAX};
        ASSERT_EQ(sl_client_adds(a, "big", v, 4000, 100 + (uint64_t)f), 0);
        expect_ok(a, 100 + (uint64_t)f);
    }
    char buf[4096];
    double t0 = sl_now_ms();
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "drop big"), 0);
    double ms = sl_now_ms() - t0;
    printf("dropping a space of 100,000 entities of one session: %.0f ms\n", ms);
    ASSERT(ms < 3000);
    sl_client_frame f;
    ASSERT_EQ(sl_client_wait(a, "space.dropped", 0, &f, 3000), 1);
    sl_client_close(a);
    srv_stop(&s, true);
    return 0;
}

/* A space is dropped only by whoever created it (a client, or the operator); the clients
 * with entities in it are told. With --client-spaces off, clients create none. */
TEST_IMPL(server_space_permissions)
{
    srv s;
    srv_start(&s, "--space", "w:100x100", NULL);
    sl_client *a = connect_to(&s), *b = connect_to(&s);
    sl_client_create_space(a, "a", 100, 100, 1);
    expect_ok(a, 1);
    sl_client_add(b, "a", 5, 10, 10, 5, 2);
    expect_ok(b, 2);
    send_body(b, (const unsigned char[]){0x83, 0xa1, 't', 0xaa, 's', 'p', 'a', 'c', 'e', '.',
                                         'd', 'r', 'o', 'p', 0xa3, 'r', 'i', 'd', 0x03,
                                         0xa5, 's', 'p', 'a', 'c', 'e', 0xa1, 'a'}, 27);
    expect_error(b, 3, "forbidden");
    send_body(a, (const unsigned char[]){0x83, 0xa1, 't', 0xaa, 's', 'p', 'a', 'c', 'e', '.',
                                         'd', 'r', 'o', 'p', 0xa3, 'r', 'i', 'd', 0x04,
                                         0xa5, 's', 'p', 'a', 'c', 'e', 0xa1, 'w'}, 27);
    expect_error(a, 4, "forbidden");
    send_body(a, (const unsigned char[]){0x83, 0xa1, 't', 0xaa, 's', 'p', 'a', 'c', 'e', '.',
                                         'd', 'r', 'o', 'p', 0xa3, 'r', 'i', 'd', 0x05,
                                         0xa5, 's', 'p', 'a', 'c', 'e', 0xa1, 'a'}, 27);
    expect_ok(a, 5);
    expect_dropped(b, "a");
    /* The operator drops its own space; b has an entity there and is told. */
    sl_client_add(b, "w", 6, 10, 10, 5, 6);
    expect_ok(b, 6);
    char buf[4096];
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "drop w"), 0);
    expect_dropped(b, "w");
    sl_client_close(a);
    sl_client_close(b);
    srv_stop(&s, true);
    srv_start(&s, "--client-spaces", "off", NULL);
    a = connect_to(&s);
    sl_client_create_space(a, "a", 100, 100, 7);
    expect_error(a, 7, "forbidden");
    sl_client_close(a);
    srv_stop(&s, true);
    return 0;
}

/* ---- limits per session, and nothing that grows without bound ----------------------------- */

/* The value of a `stats` figure. */
static double stat_of(const srv *s, const char *name)
{
    char buf[8192], key[64];
    ASSERT_EQ(ctl(s, buf, sizeof buf, "stats"), 0);
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(buf, key);
    ASSERT(p != NULL);
    return atof(p + strlen(key));
}

/* A session's spaces and entities are bounded by their flags, with a limit error naming
 * the flag; freeing one makes room again; another session has its own allowance. */
TEST_IMPL(server_session_limits)
{
    srv s;
    srv_start(&s, "--max-session-spaces", "2", "--max-session-entities", "3", NULL);
    sl_client *a = connect_to(&s), *b = connect_to(&s);
    char code[64], msg[256];
    sl_client_create_space(a, "s1", 100, 100, 1);
    expect_ok(a, 1);
    sl_client_create_space(a, "s2", 100, 100, 2);
    expect_ok(a, 2);
    sl_client_create_space(a, "s3", 100, 100, 3);
    sl_client_frame f;
    ASSERT_EQ(sl_client_wait(a, "error", 3, &f, 3000), 1);
    sl_frame_str(&f, "code", code, sizeof code);
    sl_frame_str(&f, "msg", msg, sizeof msg);
    ASSERT(!strcmp(code, "limit") && strstr(msg, "--max-session-spaces") != NULL);
    for (uint64_t e = 1; e <= 3; e++) {
        sl_client_add(a, "s1", e, 10, 10, 5, 10 + e);
        expect_ok(a, 10 + e);
    }
    sl_client_add(a, "s1", 4, 10, 10, 5, 14);
    expect_error(a, 14, "limit");
    sl_client_remove(a, "s1", 2, 15);
    expect_ok(a, 15);
    sl_client_add(a, "s1", 4, 10, 10, 5, 16);
    expect_ok(a, 16);
    for (uint64_t e = 21; e <= 23; e++) {
        sl_client_add(b, "s1", e, 10, 10, 5, e);
        expect_ok(b, e);
    }
    sl_client_close(a);
    sl_client_close(b);
    srv_stop(&s, true);
    return 0;
}

/* The server's resident memory (kB), from /proc. */
static long rss_kb(const srv *s)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)s->pid);
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = atol(line + 6);
    fclose(f);
    ASSERT(kb > 0);
    return kb;
}

/* n add / remove cycles of entity 1 in space w, pipelined 500 at a time (each batch ends
 * with a round trip, so that no tick sees more than a batch of removals whatever the
 * server's speed: the engine's slots then stay at their size). */
static void churn(sl_client *c, int n)
{
    for (int i = 0; i < n; i++) {
        sl_client_add(c, "w", 1, 10, 10, 5, 0);
        sl_client_remove(c, "w", 1, 0);
        if (i % 500 == 499 || i == n - 1) {
            sl_client_ping(c, 99);
            sl_client_frame f;
            ASSERT_EQ(sl_client_wait(c, "pong", 99, &f, 60000), 1);
        }
    }
}

/* Resident memory means little under AddressSanitizer (it keeps freed memory aside). */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_MEANINGFUL 0
#else
#define RSS_MEANINGFUL 1
#endif

/* Add / remove cycles of one entity do not make the server grow: after a first 100,000
 * (which let every buffer reach its size), another 150,000 add nothing (the record of what
 * a session added was never pruned: +36 MB for 2M cycles while stats said 5 MB). */
TEST_IMPL(server_session_memory_bounded)
{
    srv s;
    srv_start(&s, "--space", "w:1000x1000", "--max-frames-per-s", "-1", NULL);
    sl_client *c = connect_to(&s);
    churn(c, 100000);
    long rss = rss_kb(&s);
    double mem = stat_of(&s, "memory_bytes");
    churn(c, 150000);
    fprintf(stderr, "after 100,000 and 250,000 cycles: RSS %ld -> %ld kB, memory_bytes %.0f -> "
            "%.0f\n", rss, rss_kb(&s), mem, stat_of(&s, "memory_bytes"));
    ASSERT(!RSS_MEANINGFUL || rss_kb(&s) - rss < 1024);
    ASSERT(stat_of(&s, "memory_bytes") - mem < 256 * 1024);
    sl_client_close(c);
    srv_stop(&s, true);
    return 0;
}

/* ---- connection deadlines and the slow consumer's reason ---------------------------------- */

/* Reads c's frames until an error comes; its code into code. Ticks and the like are skipped. */
static void next_error_code(sl_client *c, char *code, size_t len, int ms)
{
    sl_client_frame f;
    for (;;) {
        ASSERT_EQ(sl_client_next(c, &f, ms), 1);
        if (sl_frame_is(&f, "error")) {
            sl_frame_str(&f, "code", code, len);
            return;
        }
    }
}

/* A connection that never says hello, and a client that goes silent, are closed with a
 * reason; a client that pings stays. (Before, both held their connections for ever.) */
TEST_IMPL(server_connection_deadlines)
{
    srv s;
    srv_start(&s, "--hello-ms", "300", "--idle-ms", "1000", NULL);
    char code[64], err[256];
    sl_client *mute, *quiet = connect_to(&s), *alive = connect_to(&s);
    ASSERT_EQ(sl_client_dial(&mute, "127.0.0.1", s.port, err, sizeof err), 0);
    next_error_code(mute, code, sizeof code, 3000);
    ASSERT(!strcmp(code, "timeout"));
    expect_closed(mute);
    /* alive pings every 100 ms, well inside its idle deadline, past quiet's */
    for (int i = 0; i < 16; i++) {
        sl_client_ping(alive, 100 + (uint64_t)i);
        sleep_ms(100);
    }
    sl_client_ping(alive, 199);
    next_error_code(quiet, code, sizeof code, 3000);
    ASSERT(!strcmp(code, "idle"));
    expect_closed(quiet);
    sl_client_frame f;
    sl_client_ping(alive, 200);
    ASSERT_EQ(sl_client_wait(alive, "pong", 200, &f, 2000), 1);
    ASSERT(stat_of(&s, "connections_timed_out") == 2);
    sl_client_close(mute);
    sl_client_close(quiet);
    sl_client_close(alive);
    srv_stop(&s, true);
    return 0;
}

/* A client that stops reading is cut off at the output cap, and when it reads again it
 * finds why (too_slow) before the connection ends; stats counts it. */
TEST_IMPL(server_slow_consumer_told)
{
    srv s;
    srv_start(&s, "--out-cap", "65536", NULL);
    sl_client *slow = connect_to(&s);
    sl_client_create_space(slow, "m", 100, 100, 1);
    expect_ok(slow, 1);
    flip_flood(slow, "m", 40);
    char code[64];
    next_error_code(slow, code, sizeof code, 3000);
    ASSERT(!strcmp(code, "too_slow"));
    expect_closed(slow);
    ASSERT(stat_of(&s, "clients_cut_slow") >= 1);
    sl_client_close(slow);
    srv_stop(&s, true);
    return 0;
}

/* ---- a shutdown that ends ----------------------------------------------------------------- */

/* A TCP connection to port that sends nothing (an idle HTTP client). */
static int idle_tcp(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* SIGTERM ends the server within --close-ms and a margin, even with an idle /metrics
 * connection open and a client that stopped reading with frames queued (both used to hold
 * the shutdown for ever). */
TEST_IMPL(server_bounded_shutdown)
{
    srv s;
    srv_start(&s, "--metrics", "127.0.0.1:0", "--close-ms", "500", NULL);
    ASSERT(s.metrics_port > 0);
    int http = idle_tcp(s.metrics_port);
    sl_client *stuck = connect_to(&s);
    sl_client_create_space(stuck, "m", 100, 100, 1);
    expect_ok(stuck, 1);
    for (uint64_t i = 1; i <= 300; i++)
        sl_client_add(stuck, "m", i, (float)(i % 20), (float)(i / 20), 50, 0);
    sleep_ms(300);              /* its enters pile up: it reads nothing from here on */
    double t0 = sl_now_ms();
    kill(s.pid, SIGTERM);
    int st = 0;
    pid_t done = 0;
    while ((done = waitpid(s.pid, &st, WNOHANG)) == 0 && sl_now_ms() - t0 < 8000)
        sleep_ms(20);
    if (done == 0)
        kill(s.pid, SIGKILL);
    fprintf(stderr, "the server ended %.0f ms after SIGTERM\n", sl_now_ms() - t0);
    ASSERT_EQ(done, s.pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT(sl_now_ms() - t0 < 3000);
    close(http);
    sl_client_close(stuck);
    remove_dir(s.dir);
    return 0;
}

/* ---- the operator's side: the admin socket, --quiet --------------------------------------- */

/* A second server on a live server's admin socket refuses to start (it used to unlink the
 * socket and take it over), and the first keeps answering on it. */
TEST_IMPL(server_admin_socket_kept)
{
    srv s;
    srv_start(&s, NULL);
    char cmd[512], buf[4096];
    snprintf(cmd, sizeof cmd, "timeout 5 %s --listen 127.0.0.1:0 --admin %s --quiet "
             ">/dev/null 2>%s/second.err", SL_SERVER_BIN, s.admin, s.dir);
    int st = system(cmd);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 1);
    snprintf(cmd, sizeof cmd, "grep -q 'another server is running there' %s/second.err",
             s.dir);
    ASSERT_EQ(system(cmd), 0);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "stats"), 0);
    srv_stop(&s, false);
    return 0;
}

/* --quiet: a server that creates a space, loses a client, reloads and stops says nothing on
 * stderr. */
TEST_IMPL(server_quiet)
{
    srv s;
    char log[64], buf[4096];
    snprintf(log, sizeof log, "/tmp/sl-quiet-%d.err", (int)getpid());
    srv_stderr = log;
    srv_start(&s, "--quiet", "--grace-ms", "50", "--space", "w:100x100", NULL);
    sl_client *c = connect_to(&s);
    sl_client_add(c, "w", 1, 10, 10, 5, 1);
    expect_ok(c, 1);
    sl_client_close(c);
    sleep_ms(200);                  /* detached, then expired */
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "reload"), 0);
    kill(s.pid, SIGHUP);
    sleep_ms(100);
    srv_stop(&s, true);
    FILE *f = fopen(log, "r");
    ASSERT(f != NULL);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(log);
    if (n)
        fprintf(stderr, "said with --quiet: %s\n", buf);
    ASSERT_EQ(n, 0);
    return 0;
}

/* ---- a connection's rates ----------------------------------------------------------------- */

/* A client over --max-frames-per-s gets limit errors naming the flag and its extra frames
 * are refused, while another client's requests go through; once it slows down, its frames
 * pass again. */
TEST_IMPL(server_frame_rate)
{
    srv s;
    srv_start(&s, "--max-frames-per-s", "100", NULL);
    sl_client *flood = connect_to(&s), *calm = connect_to(&s);
    for (uint64_t i = 1; i <= 1000; i++)
        ASSERT_EQ(sl_client_ping(flood, i), 0);
    sl_client_ping(calm, 5000);
    sl_client_frame f;
    ASSERT_EQ(sl_client_wait(calm, "pong", 5000, &f, 2000), 1);
    int pongs = 0, limits = 0;
    char msg[256];
    while (sl_client_next(flood, &f, 300) == 1) {
        if (sl_frame_is(&f, "pong"))
            pongs++;
        else if (sl_frame_is(&f, "error")) {
            sl_frame_str(&f, "msg", msg, sizeof msg);
            ASSERT(strstr(msg, "--max-frames-per-s") != NULL);
            limits++;
        }
    }
    fprintf(stderr, "1000 pings at once, 100 a second allowed: %d pongs, %d limit errors\n",
            pongs, limits);
    ASSERT(pongs >= 99 && pongs < 300);
    ASSERT(limits >= 1);
    ASSERT(stat_of(&s, "frames_refused_rate") >= 700);
    sleep_ms(1100);
    sl_client_ping(flood, 2000);
    ASSERT_EQ(sl_client_wait(flood, "pong", 2000, &f, 2000), 1);
    sl_client_close(flood);
    sl_client_close(calm);
    srv_stop(&s, true);
    return 0;
}

/* ---- many hostile clients beside good ones ------------------------------------------------ */

#define GOOD_N 200              /* entities of the good clients, 1..GOOD_N */
#define GOOD_R 40.0f
#define GOOD_MAP 300.0f

/* The good side: two clients whose entities walk, their views, and how late ticks came. */
typedef struct good_side {
    sl_client *cl[2];
    view v[2];
    float x[GOOD_N], y[GOOD_N];
    uint32_t seed;
    double last_tick_ms[2], worst_gap_ms;
} good_side;

/* Reads what has come for good client k, applying ticks and timing the gaps between them. */
static void good_read(good_side *g, int k)
{
    sl_client_frame f;
    while (sl_client_next(g->cl[k], &f, 0) == 1) {
        ASSERT(!sl_frame_is(&f, "error"));
        if (!sl_frame_is(&f, "tick"))
            continue;
        apply_tick(&g->v[k], &f);
        double now = sl_now_ms();
        if (g->last_tick_ms[k] > 0 && now - g->last_tick_ms[k] > g->worst_gap_ms)
            g->worst_gap_ms = now - g->last_tick_ms[k];
        g->last_tick_ms[k] = now;
    }
}

/* Every good entity takes a random step; each client sends its half in one moves frame. */
static void good_moves(good_side *g)
{
    static uint64_t ids[2][GOOD_N];
    static float xy[2][2 * GOOD_N];
    uint32_t n[2] = {0, 0};
    for (int i = 0; i < GOOD_N; i++) {
        random_step(&g->x[i], &g->y[i], next_rand(&g->seed), GOOD_MAP - 1);
        int k = i % 2;
        ids[k][n[k]] = (uint64_t)i + 1;
        xy[k][2 * n[k]] = g->x[i];
        xy[k][2 * n[k] + 1] = g->y[i];
        n[k]++;
    }
    for (int k = 0; k < 2; k++)
        ASSERT_EQ(sl_client_moves(g->cl[k], "w", ids[k], xy[k], n[k], 0), 0);
}

/* One round of each kind of hostility; i numbers the round. */
static void hostile_round(const srv *s, sl_client **pest, uint32_t *seed, int i)
{
    char err[256], token[33];
    sl_client *c;
    /* A guessed token never resumes anything. */
    snprintf(token, sizeof token, "%08x%08x%08x%08x", next_rand(seed), next_rand(seed),
             next_rand(seed), next_rand(seed));
    ASSERT_EQ(sl_client_connect(&c, "127.0.0.1", s->port, NULL, token, err, sizeof err),
              SL_EIO);
    ASSERT(strstr(err, "no_session") != NULL);
    /* Spaces made and dropped, and the operator's space it may not drop. */
    char name[32];
    snprintf(name, sizeof name, "pest%d", i % 20);
    sl_client_create_space(*pest, name, 4096, 4096, 0);
    if (i % 3 == 0) {
        static const unsigned char drop_w[] = {0x82, 0xa1, 't', 0xaa, 's', 'p', 'a', 'c', 'e',
                                               '.', 'd', 'r', 'o', 'p', 0xa5, 's', 'p', 'a',
                                               'c', 'e', 0xa1, 'w'};
        send_body(*pest, drop_w, sizeof drop_w);
    }
    /* Entities with long props in its own spaces, a flood of pings, and garbage. */
    for (int k = 0; k < 20; k++) {
        uint64_t e = (uint64_t)i * 20 + (uint64_t)k;
        sl_client_add(*pest, name, e, (float)(next_rand(seed) % 4000), 7, 100, 0);
        char key[16], val[200];
        snprintf(key, sizeof key, "k%u", next_rand(seed) % 5000);
        memset(val, 'v', sizeof val - 1);
        val[sizeof val - 1] = '\0';
        sl_client_prop(*pest, name, e, key, 0, val, 0);
        sl_client_ping(*pest, 0);
    }
    if (i % 5 == 0) {
        unsigned char junk[64];
        for (size_t k = 0; k < sizeof junk; k++)
            junk[k] = (unsigned char)next_rand(seed);
        junk[0] = 0xc1;             /* never valid msgpack: bad_frame, and the pest is cut */
        send_body(*pest, junk, sizeof junk);
        sl_client_close(*pest);
        *pest = connect_to(s);
    }
    /* What comes back to the pest is read and thrown away, so that it is not cut as slow. */
    sl_client_frame f;
    while (sl_client_next(*pest, &f, 0) == 1)
        ;
}

/* For 20 s, hostile clients guess tokens, make and drop spaces, flood props and frames and
 * send garbage, while two good clients walk 200 entities: the good clients' views end equal
 * to brute force, no gap between their tick frames passes 1 s (ticks are 20 ms), and the
 * server's memory stays under 256 MB. */
TEST_IMPL(server_hostile_clients)
{
    srv s;
    srv_start(&s, "--space", "w:300x300", "--quiet", NULL);
    static good_side g;
    memset(&g, 0, sizeof g);
    g.seed = 11;
    g.cl[0] = connect_to(&s);
    g.cl[1] = connect_to(&s);
    add_scattered(g.cl, 2, "w", GOOD_N, GOOD_MAP, GOOD_R, g.x, g.y, &g.seed);
    sl_client *pest = connect_to(&s);
    uint32_t seed = 99;
    long worst_rss = 0;
    double t0 = sl_now_ms(), next_move = t0;
    for (int i = 0; sl_now_ms() - t0 < 20000; i++) {
        if (sl_now_ms() >= next_move) {
            good_moves(&g);
            next_move += 50;
        }
        hostile_round(&s, &pest, &seed, i);
        for (int k = 0; k < 2; k++)
            good_read(&g, k);
        if (i % 50 == 0) {
            long rss = rss_kb(&s);
            worst_rss = rss > worst_rss ? rss : worst_rss;
        }
        sleep_ms(5);
    }
    /* Quiet: the last ticks settle, then every view is checked against brute force. */
    for (int k = 0; k < 2; k++)
        drain(g.cl[k], &g.v[k], 300);
    size_t pairs = check_oracle(g.x, g.y, GOOD_N, GOOD_R, g.v, 2);
    fprintf(stderr, "hostile 20 s: %zu visible pairs exact, worst gap between good ticks %.0f "
            "ms, server RSS at most %ld kB\n", pairs, g.worst_gap_ms, worst_rss);
    ASSERT(pairs > 0);
    ASSERT(g.worst_gap_ms < 1000);
    ASSERT(!RSS_MEANINGFUL || worst_rss < 256 * 1024);
    sl_client_close(pest);
    sl_client_close(g.cl[0]);
    sl_client_close(g.cl[1]);
    srv_stop(&s, true);
    return 0;
}

/* ---- --watch-scripts sees subfolders ------------------------------------------------------ */

/* A change in a module of a subfolder (require "rules.r") reloads the scripts, as one in the
 * top folder does (only the top folder was watched). */
TEST_IMPL(server_watch_subfolders)
{
    scratch d;
    scratch_make(&d, "/tmp/sl-watch-XXXXXX", "local r = require \"rules.r\"\n"
                                             "return {visible = r.visible}\n");
    char path[160], buf[4096];
    snprintf(path, sizeof path, "%s/rules", d.dir);
    ASSERT_EQ(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/rules/r.lua", d.dir);
    put_file(path, "return {visible = function() return true end}\n");
    srv s;
    srv_start(&s, "--scripts", d.dir, "--watch-scripts", "--space", "g:100x100", "--quiet",
              NULL);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "spaces"), 0);
    ASSERT(strstr(buf, " v1") != NULL);
    put_file(path, "return {visible = function() return false end}\n");
    bool reloaded = false;
    for (int i = 0; i < 40 && !reloaded; i++) {
        sleep_ms(100);
        ASSERT_EQ(ctl(&s, buf, sizeof buf, "spaces"), 0);
        reloaded = strstr(buf, " v2") != NULL;
    }
    ASSERT(reloaded);
    srv_stop(&s, true);
    remove_dir(d.dir);
    return 0;
}

/* ---- a faulted script set, as the operator sees it ---------------------------------------- */

/* A rule that never returns is cut at the budget each tick and faults the set after
 * --max-overruns ticks in a row; `why` says so (it said "rule: none"), with the cuts, and
 * stats counts them. */
TEST_IMPL(server_why_faulted)
{
    scratch d;
    scratch_make(&d, "/tmp/sl-fault-XXXXXX",
                 "function visible(w, t) while true do end end\n");
    srv s;
    srv_start(&s, "--scripts", d.dir, "--space", "m:100x100", "--budget-ms", "30",
              "--max-overruns", "2", "--quiet", NULL);
    sl_client *c = connect_to(&s);
    sl_client_add(c, "m", 1, 10, 10, 20, 1);
    expect_ok(c, 1);
    sl_client_add(c, "m", 2, 15, 10, 20, 2);
    expect_ok(c, 2);
    char buf[4096];
    bool faulted = false;
    for (int i = 0; i < 50 && !faulted; i++) {
        sleep_ms(50);
        ASSERT_EQ(ctl(&s, buf, sizeof buf, "spaces"), 0);
        faulted = strstr(buf, "FAULTED") != NULL;
    }
    ASSERT(faulted);
    ASSERT_EQ(ctl(&s, buf, sizeof buf, "why m 1 2"), 0);
    ASSERT(strstr(buf, "rule: not asked: the scripts are FAULTED") != NULL);
    ASSERT(strstr(buf, "budget: ") != NULL && strstr(buf, "2 in a row fault the set") != NULL);
    ASSERT(stat_of(&s, "script_overruns") >= 2);
    ASSERT(stat_of(&s, "scripts_faulted") == 1);
    sl_client_close(c);
    srv_stop(&s, true);
    remove_dir(d.dir);
    return 0;
}

/* ---- props a client may set --------------------------------------------------------------- */

/* Sends {"t": "props", "rid": rid, "space": "m", "e": e, "props": {k[0]: 9, k[1]: 1, ...}}. */
static void send_props(sl_client *c, uint64_t rid, uint64_t e, const char *const *keys, int n)
{
    unsigned char b[512];
    size_t i = 0;
    b[i++] = 0x85;
    b[i++] = 0xa1, b[i++] = 't', b[i++] = 0xa5;
    memcpy(b + i, "props", 5), i += 5;
    b[i++] = 0xa3, b[i++] = 'r', b[i++] = 'i', b[i++] = 'd', b[i++] = (unsigned char)rid;
    b[i++] = 0xa5;
    memcpy(b + i, "space", 5), i += 5;
    b[i++] = 0xa1, b[i++] = 'm';
    b[i++] = 0xa1, b[i++] = 'e', b[i++] = (unsigned char)e;
    b[i++] = 0xa5;
    memcpy(b + i, "props", 5), i += 5;
    b[i++] = (unsigned char)(0x80 | n);
    for (int k = 0; k < n; k++) {
        size_t len = strlen(keys[k]);
        b[i++] = (unsigned char)(0xa0 | len);
        memcpy(b + i, keys[k], len), i += len;
        b[i++] = k == 0 ? 9 : 1;
    }
    send_body(c, b, i);
}

/* Props past --max-entity-props, --max-entity-prop-bytes or --max-prop-keys are refused with
 * a limit naming the flag, and a refused request sets none of its props (the rule below hides
 * an entity whose prop a is 9: it stays visible). */
TEST_IMPL(server_prop_limits)
{
    scratch d;
    scratch_make(&d, "/tmp/sl-props-XXXXXX",
                 "function visible(w, t) return t.props.a ~= 9 end\n");
    srv s;
    srv_start(&s, "--scripts", d.dir, "--space", "m:100x100", "--max-entity-props", "3",
              "--max-prop-keys", "5", "--max-entity-prop-bytes", "100", "--quiet", NULL);
    sl_client *c = connect_to(&s);
    static view v;
    track(c, &v);       /* (the enter may come before a reply) */
    sl_client_add(c, "m", 1, 10, 10, 50, 1);
    expect_ok(c, 1);
    sl_client_add(c, "m", 2, 15, 10, 0, 2);
    expect_ok(c, 2);
    sl_client_prop(c, "m", 2, "a", 1, NULL, 3);
    expect_ok(c, 3);
    drain(c, &v, 200);
    ASSERT(find_pair(&v, 1, 2) >= 0);
    static const char *const four[] = {"a", "x1", "x2", "x3"};
    send_props(c, 4, 2, four, 4);       /* a = 9 and three new props: one too many */
    char code[64], msg[256];
    sl_client_frame f;
    ASSERT_EQ(sl_client_wait(c, "error", 4, &f, 3000), 1);
    sl_frame_str(&f, "code", code, sizeof code);
    sl_frame_str(&f, "msg", msg, sizeof msg);
    ASSERT(!strcmp(code, "limit") && strstr(msg, "--max-entity-props") != NULL);
    drain(c, &v, 200);
    ASSERT(find_pair(&v, 1, 2) >= 0);   /* a is still 1: nothing of the request stuck */
    char big[128];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    sl_client_prop(c, "m", 2, "b", 0, big, 5);
    expect_error(c, 5, "limit");
    static const char *const keys[] = {"k1", "k2", "k3"};
    sl_client_prop(c, "m", 1, keys[0], 1, NULL, 6);
    expect_ok(c, 6);
    sl_client_prop(c, "m", 1, keys[1], 1, NULL, 7);
    expect_ok(c, 7);
    sl_client_prop(c, "m", 1, keys[2], 1, NULL, 8);    /* a, k1, k2, + this: keys 4 of 5 */
    expect_ok(c, 8);
    sl_client_prop(c, "m", 1, "k4", 1, NULL, 9);       /* 5 of 5 */
    expect_error(c, 9, "limit");                       /* entity 1 has 3 props already */
    sl_client_prop(c, "m", 2, "k5", 1, NULL, 10);      /* entity 2: 1 prop; key 5 of 5 */
    expect_ok(c, 10);
    sl_client_prop(c, "m", 2, "k6", 1, NULL, 11);      /* a sixth distinct key */
    ASSERT_EQ(sl_client_wait(c, "error", 11, &f, 3000), 1);
    sl_frame_str(&f, "msg", msg, sizeof msg);
    ASSERT(strstr(msg, "--max-prop-keys") != NULL);
    /* A good change still works: a = 9 hides entity 2. */
    sl_client_prop(c, "m", 2, "a", 9, NULL, 12);
    expect_ok(c, 12);
    drain(c, &v, 200);
    ASSERT(find_pair(&v, 1, 2) < 0);
    track(c, NULL);
    sl_client_close(c);
    srv_stop(&s, true);
    remove_dir(d.dir);
    return 0;
}
