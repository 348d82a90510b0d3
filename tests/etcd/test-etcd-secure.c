/*
 * The etcd client over TLS (and, with auth enabled, etcd's users): a real etcd-server
 * started with certificates the test makes with the openssl command
 * (tests/fixtures/etcd_fixture.h, etcd_fx_start_tls).
 */
#include "test.h"

#include "etcd/etcd.h"
#include "etcd/mirror.h"
#include "fixtures/etcd_fixture.h"

#include <string.h>
#include <uv.h>

typedef etcd_fx_got got;

static bool wait_state(uv_loop_t *loop, sl_etcd *e, sl_etcd_state want, int ms)
{
    uint64_t end = uv_now(loop) + (uint64_t)ms;
    sl_etcd_health h;
    do {
        uv_run(loop, UV_RUN_ONCE);
        sl_etcd_health_get(e, &h);
    } while (h.state != want && uv_now(loop) < end);
    return h.state == want;
}

static sl_etcd *tls_client(uv_loop_t *loop, const etcd_fx *fx, const char *endpoint,
                           const char *ca, const char *name)
{
    sl_etcd_config cfg = {.endpoints = endpoint, .tls = true, .tls_ca_file = ca,
                          .tls_cert_file = fx->cert, .tls_key_file = fx->key,
                          .tls_server_name = name, .backoff_max_ms = 200};
    sl_etcd *e;
    char err[256];
    int rc = sl_etcd_new(&e, loop, &cfg, err, sizeof err);
    if (rc)
        fprintf(stderr, "sl_etcd_new: %s\n", err);
    ASSERT_EQ(rc, 0);
    return e;
}

typedef struct seen {
    int puts;
    int64_t rev;
} seen;

static void s_put(void *ud, const char *k, size_t kl, const uint8_t *v, size_t vl, int64_t mod)
{
    (void)k;
    (void)kl;
    (void)v;
    (void)vl;
    seen *s = ud;
    s->puts++;
    s->rev = mod;
}

TEST_IMPL(etcd_tls)
{
    /* Calls, a mirror (the Watch stream) and a kept lease over TLS with a client
     * certificate, the server's name checked (localhost, and the IP literal); a wrong CA
     * or a wrong name never connects, and says why; a bad file fails sl_etcd_new. */
    etcd_fx fx;
    etcd_fx_start_tls(&fx);
    uv_loop_t loop;
    uv_loop_init(&loop);
    char local[64];
    snprintf(local, sizeof local, "localhost:%d", fx.client_port);
    sl_etcd *e = tls_client(&loop, &fx, local, fx.ca, NULL);
    sl_etcd *ip = tls_client(&loop, &fx, fx.endpoint, fx.ca, NULL);
    static seen s;
    sl_etcd_mirror_handlers mh = {.on_put = s_put};
    sl_etcd_mirror *mi = sl_etcd_mirror_start(e, "tls/", &mh, &s);
    sl_etcd_lease *l = sl_etcd_lease_keep(e, 2, NULL, NULL);
    ASSERT(wait_state(&loop, e, SL_ETCD_CONNECTED, 5000));
    ASSERT(wait_state(&loop, ip, SL_ETCD_CONNECTED, 5000));
    got g;
    memset(&g, 0, sizeof g);
    ASSERT_EQ(sl_etcd_put(ip, "tls/a", "1", 1, 0, false, etcd_fx_on_result, &g), 0);
    ASSERT(etcd_fx_wait(&loop, &g, 5000));
    ASSERT_EQ(g.r.status.code, 0);
    int64_t rev = g.r.revision;
    uint64_t end = uv_now(&loop) + 5000;
    while (s.rev < rev && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(s.rev, rev);
    end = uv_now(&loop) + 3000;
    while (uv_now(&loop) < end)     /* past the lease's TTL of 2 s */
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT(sl_etcd_lease_id(l) != 0 && sl_etcd_lease_losses(l) == 0);

    /* A CA that did not sign etcd's certificate; a name the certificate does not carry. */
    sl_etcd *bad_ca = tls_client(&loop, &fx, local, fx.other_ca, NULL);
    sl_etcd *bad_name = tls_client(&loop, &fx, fx.endpoint, fx.ca, "etcd.example");
    end = uv_now(&loop) + 1500;
    while (uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    sl_etcd_health h1, h2;
    sl_etcd_health_get(bad_ca, &h1);
    sl_etcd_health_get(bad_name, &h2);
    fprintf(stderr, "wrong CA: %s: %s\nwrong name: %s: %s\n", sl_etcd_state_name(h1.state),
            h1.reason, sl_etcd_state_name(h2.state), h2.reason);
    ASSERT(h1.state == SL_ETCD_DISCONNECTED && strstr(h1.reason, "TLS"));
    ASSERT(h2.state == SL_ETCD_DISCONNECTED && strstr(h2.reason, "TLS"));
    sl_etcd *none;
    char err[256];
    sl_etcd_config nofile = {.endpoints = local, .tls_ca_file = "/nonexistent/ca.pem"};
    ASSERT_EQ(sl_etcd_new(&none, &loop, &nofile, err, sizeof err), SL_EINVAL);
    ASSERT(strstr(err, "CA file") != NULL);

    sl_etcd_lease_release(l, true);
    sl_etcd_mirror_stop(mi);
    sl_etcd_free(bad_ca);
    sl_etcd_free(bad_name);
    sl_etcd_free(ip);
    sl_etcd_free(e);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    etcd_fx_cleanup(&fx);
    return 0;
}

typedef struct events {
    int n;
} events;

static void count_events(void *ud, const sl_etcd_event *ev, size_t n)
{
    (void)ev;
    ((events *)ud)->n += (int)n;
}

static int64_t put_ok(uv_loop_t *loop, sl_etcd *e, const char *key)
{
    got g;
    for (int attempt = 0; attempt < 50; attempt++) {   /* while etcd restarts */
        memset(&g, 0, sizeof g);
        ASSERT_EQ(sl_etcd_put(e, key, "v", 1, 0, false, etcd_fx_on_result, &g), 0);
        ASSERT(etcd_fx_wait(loop, &g, 5000));
        if (g.r.status.code != SL_GRPC_UNAVAILABLE)
            break;
        uint64_t end = uv_now(loop) + 100;
        while (uv_now(loop) < end)
            uv_run(loop, UV_RUN_ONCE);
    }
    if (g.r.status.code)
        fprintf(stderr, "put %s: %d %s\n", key, g.r.status.code, g.r.status.message);
    ASSERT_EQ(g.r.status.code, 0);
    return g.r.revision;
}

static void run_for(uv_loop_t *loop, int ms)
{
    uint64_t end = uv_now(loop) + (uint64_t)ms;
    while (uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
}

TEST_IMPL(etcd_auth)
{
    /* etcd with auth enabled and tokens forgotten after 1 s unused: calls wait for the
     * first token, a call refused for an expired token gets a new one and goes again, a
     * watch created on a stream whose token expired is created again, a restart (tokens
     * gone) changes nothing for the owner, a wrong password says so. */
    etcd_fx fx;
    etcd_fx_start_with(&fx, "--auth-token-ttl=1");
    etcd_fx_ctl(&fx, "user add root:rootpw");
    etcd_fx_ctl(&fx, "auth enable");
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_etcd_config cfg = {.endpoints = fx.endpoint, .user = "root", .password = "rootpw",
                          .backoff_max_ms = 200};
    sl_etcd *e;
    char err[256];
    ASSERT_EQ(sl_etcd_new(&e, &loop, &cfg, err, sizeof err), 0);
    /* A call made at once waits for the token. */
    int64_t rev = put_ok(&loop, e, "au/a");
    static seen s;
    sl_etcd_mirror_handlers mh = {.on_put = s_put};
    sl_etcd_mirror *mi = sl_etcd_mirror_start(e, "au/", &mh, &s);
    sl_etcd_lease *l = sl_etcd_lease_keep(e, 2, NULL, NULL);
    uint64_t end = uv_now(&loop) + 5000;
    while ((s.rev < rev || !sl_etcd_lease_id(l)) && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(s.rev, rev);
    ASSERT(sl_etcd_lease_id(l) != 0);

    /* Idle past the token's TTL (the keepalives and the probe use it: a second client that
     * only calls now and then). */
    sl_etcd *idle;
    ASSERT_EQ(sl_etcd_new(&idle, &loop, &cfg, err, sizeof err), 0);
    int64_t brev = put_ok(&loop, idle, "au/b");
    static events ev0, ev2;
    sl_etcd_watch_handlers wh = {.on_events = count_events};
    sl_etcd_watch *w0 = sl_etcd_watch_start(idle, "au/", true, brev + 1, &wh, &ev0);
    run_for(&loop, 2500);
    sl_etcd_health h;
    sl_etcd_health_get(idle, &h);
    ASSERT_EQ(h.authentications, 1);
    /* Created on the open stream, whose token has expired: "permission denied", then a
     * new token, a new stream, and both watches created again. */
    sl_etcd_watch *w2 = sl_etcd_watch_start(idle, "au/", true, brev + 1, &wh, &ev2);
    rev = put_ok(&loop, idle, "au/c");       /* refused, authenticated again, made again */
    sl_etcd_health_get(idle, &h);
    ASSERT(h.authentications >= 2);
    static events ev;
    sl_etcd_watch *w = sl_etcd_watch_start(idle, "au/", true, rev, &wh, &ev);
    end = uv_now(&loop) + 5000;
    while ((ev.n < 1 || ev0.n < 1 || ev2.n < 1) && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(ev.n, 1);
    ASSERT_EQ(ev0.n, 1);
    ASSERT_EQ(ev2.n, 1);
    end = uv_now(&loop) + 5000;
    while (s.rev < rev && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(s.rev, rev);

    /* A restart: every token is gone. */
    etcd_fx_stop(&fx, false);
    etcd_fx_restart(&fx);
    rev = put_ok(&loop, idle, "au/d");
    end = uv_now(&loop) + 5000;
    while ((s.rev < rev || ev.n < 2) && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(s.rev, rev);
    ASSERT_EQ(ev.n, 2);
    ASSERT(sl_etcd_lease_id(l) != 0);
    sl_etcd_health_get(idle, &h);
    fprintf(stderr, "the idle client authenticated %llu times\n",
            (unsigned long long)h.authentications);
    ASSERT(h.authentications >= 3);

    /* A wrong password. */
    sl_etcd_config bad = cfg;
    bad.password = "nope";
    sl_etcd *b;
    ASSERT_EQ(sl_etcd_new(&b, &loop, &bad, err, sizeof err), 0);
    run_for(&loop, 800);
    sl_etcd_health_get(b, &h);
    fprintf(stderr, "wrong password: %s: %s\n", sl_etcd_state_name(h.state), h.reason);
    ASSERT(h.state == SL_ETCD_DISCONNECTED && strstr(h.reason, "authentication"));

    sl_etcd_watch_stop(w);
    sl_etcd_watch_stop(w0);
    sl_etcd_watch_stop(w2);
    sl_etcd_lease_release(l, true);
    sl_etcd_mirror_stop(mi);
    sl_etcd_free(b);
    sl_etcd_free(idle);
    sl_etcd_free(e);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    etcd_fx_cleanup(&fx);
    return 0;
}
