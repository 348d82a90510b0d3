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
