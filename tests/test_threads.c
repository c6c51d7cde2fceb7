/*
 * Threads: registry clones used from other threads while one thread waits.
 * A registration or rearm made through a clone reaches a wait that is
 * already blocked, and so do a hundred registrations and deregistrations
 * made while it is; only one thread waits at a time; and registrations
 * churned by several threads at once keep their states (-EEXIST, -ENOENT)
 * and never produce an event for a registration whose deregister had
 * returned before the wait started.
 *
 * The churning threads, and the main thread while they run, record the
 * first problem they see (record_failure); it is reported once they are
 * joined.
 */
#include "thread_helpers.h"

#include <limits.h>
#include <stdlib.h>

#define WAIT (5000 * MS)
#define QUIET (100 * MS)

static cmio__atomic failures;
static char first_failure[256];

static void record_failure(const char *fmt, ...)
{
    if (cmio__atomic_fetch_add(&failures, 1) != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(first_failure, sizeof(first_failure), fmt, ap);
    va_end(ap);
}

static void check_no_failures(void)
{
    long n = cmio__atomic_load(&failures);
    if (n != 0)
        fail_msg("%ld failure(s) while threads ran; the first: %s", n, first_failure);
}

static int reset_failures(void **state)
{
    cmio__atomic_store(&failures, 0);
    first_failure[0] = '\0';
    return test_setup(state);
}

/* ------------------------------------------------------------------------ */
/* A registration reaches a wait that is already blocked                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    cmio_registry *clone;
    cmio_fd fd;
    cmio_token token;
    int reregister;  /* reregister instead of register */
    cmio__atomic go; /* set by the main thread just before it waits */
    int64_t at;      /* test_now_ns() just before the call */
    int rc;
} reg_job;

static TEST_THREAD_MAIN(register_later)
{
    reg_job *j = arg;
    test_thread_await(&j->go, 100);
    j->at = test_now_ns();
    if (j->reregister)
        j->rc = cmio_registry_reregister(j->clone, j->fd, j->token, CMIO_WRITABLE | CMIO_ONESHOT);
    else
        j->rc = cmio_registry_register(j->clone, j->fd, j->token, CMIO_WRITABLE);
    TEST_THREAD_END;
}

/* Waits (bounded) while another thread registers j->fd through a clone;
 * the wait must end promptly with that registration's event. */
static void wait_while_other_thread_registers(test_ctx *c, reg_job *j)
{
    test_thread t;
    test_thread_start(&t, register_later, j);
    int64_t start = test_now_ns();
    cmio__atomic_store(&j->go, 1);
    int n = cmio_poll_wait(c->poll, c->events, WAIT);
    int64_t end = test_now_ns();
    test_thread_join(t);

    assert_int_equal(j->rc, 0);
    if (n < 1)
        fail_msg("the wait returned %d: the registration did not reach it", n);
    for (int k = 0; k < n; k++) {
        const cmio_event *e = cmio_events_get(c->events, (size_t)k);
        assert_int_equal(cmio_event_token(e), j->token);
        assert_true(cmio_event_is_writable(e));
    }
    /* Nothing was ready before the call, and the event followed it soon. */
    assert_true(end - start >= 100 * MS);
    if (end - j->at >= 1000 * MS)
        fail_msg("the event came %lld ms after the registration", (long long)((end - j->at) / MS));
}

static void register_through_clone_reaches_blocked_wait(void **state)
{
    test_ctx *c = *state;
    reg_job j;
    memset(&j, 0, sizeof(j));
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_clone(c->reg, &j.clone), 0);
    j.fd = sv[0];
    j.token = 3;
    wait_while_other_thread_registers(c, &j);

    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    cmio_registry_free(j.clone);
    test_close(sv[0]);
    test_close(sv[1]);
}

static void reregister_through_clone_reaches_blocked_wait(void **state)
{
    test_ctx *c = *state;
    reg_job j;
    memset(&j, 0, sizeof(j));
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_clone(c->reg, &j.clone), 0);
    /* A oneshot registration, fired and so disabled... */
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 4, CMIO_WRITABLE | CMIO_ONESHOT), 0);
    expect_events(c, WAIT, {4, EXP_W});
    /* ...is re-enabled from another thread, under a new token. */
    j.fd = sv[0];
    j.token = 5;
    j.reregister = 1;
    wait_while_other_thread_registers(c, &j);

    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    cmio_registry_free(j.clone);
    test_close(sv[0]);
    test_close(sv[1]);
}

/* ------------------------------------------------------------------------ */
/* A rearm reaches a wait that is already blocked                           */
/* ------------------------------------------------------------------------ */

/* Backends that emulate edges watch a reported direction again only after
 * rearm: a rearm made by another thread must reach a poll that is already
 * blocked, or data arriving after it would go unnoticed. */
typedef struct {
    cmio_registry *clone;
    cmio_fd fd, peer;
    cmio__atomic go;
    int64_t at;
    int rc;
    long sent;
} rearm_job;

static TEST_THREAD_MAIN(rearm_then_send)
{
    rearm_job *j = arg;
    test_thread_await(&j->go, 100);
    j->at = test_now_ns();
    j->rc = cmio_registry_rearm(j->clone, j->fd, CMIO_READABLE);
    j->sent = test_send(j->peer, "y", 1, NULL);
    TEST_THREAD_END;
}

static void rearm_through_clone_reaches_blocked_wait(void **state)
{
    test_ctx *c = *state;
    rearm_job j;
    memset(&j, 0, sizeof(j));
    cmio_fd sv[2];
    test_tcp_pair(sv);
    assert_int_equal(cmio_registry_clone(c->reg, &j.clone), 0);
    assert_int_equal(cmio_registry_register(c->reg, sv[0], 6, CMIO_READABLE), 0);
    test_send_all(sv[1], "x", 1);
    expect_events(c, WAIT, {6, EXP_R});
    /* Drained to would-block here; the rearm is left to the other thread. */
    assert_int_equal(test_drain(sv[0]), 1);
    j.fd = sv[0];
    j.peer = sv[1];

    test_thread t;
    test_thread_start(&t, rearm_then_send, &j);
    int64_t start = test_now_ns();
    cmio__atomic_store(&j.go, 1);
    int n = cmio_poll_wait(c->poll, c->events, WAIT);
    int64_t end = test_now_ns();
    test_thread_join(t);

    assert_int_equal(j.rc, 0);
    assert_int_equal(j.sent, 1);
    if (n < 1)
        fail_msg("the wait returned %d: the rearm did not reach it", n);
    for (int k = 0; k < n; k++) {
        const cmio_event *e = cmio_events_get(c->events, (size_t)k);
        assert_int_equal(cmio_event_token(e), 6);
        assert_true(cmio_event_is_readable(e));
    }
    assert_true(end - start >= 100 * MS);
    if (end - j.at >= 1000 * MS)
        fail_msg("the event came %lld ms after the rearm", (long long)((end - j.at) / MS));

    assert_int_equal(cmio_registry_deregister(c->reg, sv[0]), 0);
    cmio_registry_free(j.clone);
    test_close(sv[0]);
    test_close(sv[1]);
}

/* ------------------------------------------------------------------------ */
/* Many registrations while a wait is blocked                               */
/* ------------------------------------------------------------------------ */

/* Enough registrations to make any table the backend keeps grow several
 * times while the wait is blocked; a third are deregistered again. Only
 * the one made ready is reported: not the deregistered one made ready
 * too. */
#define MANY 100
#define LIVE 98

typedef struct {
    cmio_registry *clone;
    cmio_fd sv[MANY][2];
    cmio__atomic go;
    int64_t at;
    long sent;
} many_job;

static TEST_THREAD_MAIN(register_many)
{
    many_job *j = arg;
    test_thread_await(&j->go, 100);
    for (int i = 0; i < MANY; i++) {
        int rc = cmio_registry_register(j->clone, j->sv[i][0], 1000 + (cmio_token)i, CMIO_READABLE);
        if (rc != 0)
            record_failure("register #%d: %s", i, cmio_strerror(rc));
    }
    for (int i = 0; i < MANY; i += 3) {
        int rc = cmio_registry_deregister(j->clone, j->sv[i][0]);
        if (rc != 0)
            record_failure("deregister #%d: %s", i, cmio_strerror(rc));
    }
    j->at = test_now_ns();
    /* LIVE is not a multiple of 3: still registered; 0 is not. */
    j->sent = test_send(j->sv[0][1], "x", 1, NULL) + test_send(j->sv[LIVE][1], "y", 1, NULL);
    TEST_THREAD_END;
}

static void many_registrations_reach_blocked_wait(void **state)
{
    test_ctx *c = *state;
    many_job *j = calloc(1, sizeof(*j));
    assert_non_null(j);
    for (int i = 0; i < MANY; i++)
        test_tcp_pair(j->sv[i]);
    assert_int_equal(cmio_registry_clone(c->reg, &j->clone), 0);

    test_thread t;
    test_thread_start(&t, register_many, j);
    cmio__atomic_store(&j->go, 1);
    /* Registrations wake the wait and are absorbed; only the data ends it. */
    int n = cmio_poll_wait(c->poll, c->events, WAIT);
    int64_t end = test_now_ns();
    test_thread_join(t);
    check_no_failures();
    assert_int_equal(j->sent, 2);
    if (n < 1)
        fail_msg("the wait returned %d: the registrations did not reach it", n);
    for (int k = 0; k < n; k++)
        assert_int_equal(cmio_event_token(cmio_events_get(c->events, (size_t)k)), 1000 + LIVE);
    if (end - j->at >= 1000 * MS)
        fail_msg("the event came %lld ms after the data", (long long)((end - j->at) / MS));
    expect_silence(c, QUIET, ANY_TOKEN);

    for (int i = 0; i < MANY; i++) {
        assert_int_equal(cmio_registry_deregister(c->reg, j->sv[i][0]), i % 3 == 0 ? -ENOENT : 0);
        test_close(j->sv[i][0]);
        test_close(j->sv[i][1]);
    }
    cmio_registry_free(j->clone);
    free(j);
}

/* ------------------------------------------------------------------------ */
/* One waiter at a time                                                     */
/* ------------------------------------------------------------------------ */

typedef struct {
    cmio_poll *poll;
    cmio_waker *waker;
    cmio__atomic go;
    int busy;     /* the second waiter was refused with -EBUSY */
    int other_rc; /* anything else its wait returned, but 0 */
} busy_job;

static TEST_THREAD_MAIN(second_waiter)
{
    busy_job *j = arg;
    cmio_events *ev;
    if (cmio_events_new(&ev, 4) != 0) {
        record_failure("cmio_events_new failed");
        cmio_waker_wake(j->waker);
        TEST_THREAD_END;
    }
    test_thread_await(&j->go, 0);
    /* Until the main thread is inside its wait, this wait gets in first
     * (and finds nothing); once it is, this one is refused. */
    for (int i = 0; i < 400 && !j->busy && j->other_rc == 0; i++) {
        int rc = cmio_poll_wait(j->poll, ev, 0);
        if (rc == -EBUSY)
            j->busy = 1;
        else if (rc != 0)
            j->other_rc = rc;
        else
            test_sleep_ms(5);
    }
    cmio_events_free(ev);
    if (cmio_waker_wake(j->waker) != 0)
        record_failure("cmio_waker_wake failed");
    TEST_THREAD_END;
}

static void second_waiter_gets_ebusy(void **state)
{
    test_ctx *c = *state;
    busy_job j;
    memset(&j, 0, sizeof(j));
    j.poll = c->poll;
    assert_int_equal(cmio_waker_new(c->reg, 6, &j.waker), 0);
    test_thread t;
    test_thread_start(&t, second_waiter, &j);
    cmio__atomic_store(&j.go, 1);
    int n;
    /* The other thread's zero-timeout waits may hold the poll for an
     * instant: then this one is the refused one, and tries again. */
    while ((n = cmio_poll_wait(c->poll, c->events, WAIT)) == -EBUSY)
        test_thread_yield();
    test_thread_join(t);
    check_no_failures();
    assert_int_equal(j.other_rc, 0);
    assert_true(j.busy);
    assert_true(n >= 1);
    assert_int_equal(cmio_event_token(cmio_events_get(c->events, 0)), 6);
    cmio_waker_free(j.waker);
}

/* ------------------------------------------------------------------------ */
/* Churn                                                                    */
/* ------------------------------------------------------------------------ */

#define CHURNERS 4
#define SOCKS_PER 2
#define NSOCKS (CHURNERS * SOCKS_PER)
#define CHURN_MS 1500
#define WAKER_TOKEN ((cmio_token)0x77)

/* A churn token: a tag in the top byte, the socket's index in the next one,
 * and the registration's generation below, so that the waiting thread can
 * tell exactly which registration an event belongs to. */
#define TOKEN_BITS (sizeof(cmio_token) * CHAR_BIT)
#define TOKEN_TAG ((cmio_token)0xC5 << (TOKEN_BITS - 8))
#define TOKEN_TAG_MASK ((cmio_token)0xFF << (TOKEN_BITS - 8))
#define GEN_MASK (((cmio_token)1 << (TOKEN_BITS - 16)) - 1)

static cmio_token churn_token(int sock, long gen)
{
    return TOKEN_TAG | ((cmio_token)sock << (TOKEN_BITS - 16)) | ((cmio_token)gen & GEN_MASK);
}

struct churn_sock {
    cmio_fd fd;              /* the registered end */
    cmio_fd peer;            /* sends it a byte now and then */
    cmio__atomic begun;      /* newest generation registered (or about to be) */
    cmio__atomic dead_below; /* every generation below this is deregistered */
};

struct churn {
    struct churn_sock socks[NSOCKS];
    cmio_waker *waker;
    cmio__atomic stop;
    cmio__atomic running;
    int64_t end;
};

struct churner {
    struct churn *ch;
    int index;
    cmio_registry *clone;
    long generations;
};

/* For churn_one: records (with its socket s, generation gen) a call that did
 * not return `want`, and stops the churn. */
#define EXPECT_RC(call, want)                                                                      \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != (want)) {                                                                       \
            record_failure("socket %d generation %ld: %s gave %d (%s), expected %d", s, gen,      \
                           #call, rc_, cmio_strerror(rc_), (want));                                \
            cmio__atomic_store(&ch->stop, 1);                                                      \
        }                                                                                          \
    } while (0)

static const unsigned churn_interests[] = {
    CMIO_WRITABLE,
    CMIO_READABLE | CMIO_WRITABLE,
    CMIO_WRITABLE | CMIO_LEVEL,
    CMIO_WRITABLE | CMIO_ONESHOT,
    CMIO_READABLE | CMIO_WRITABLE | CMIO_LEVEL | CMIO_ONESHOT,
    CMIO_READABLE,
};
#define NINTERESTS (sizeof(churn_interests) / sizeof(churn_interests[0]))

/* One socket's registration life for generation gen: register, refused
 * second register, sometimes data and a reregister, deregister, and the
 * refusals that must follow it. */
static void churn_one(struct churn *ch, cmio_registry *r, int s, long gen)
{
    struct churn_sock *cs = &ch->socks[s];
    cmio_token tok = churn_token(s, gen);
    unsigned in = churn_interests[(size_t)gen % NINTERESTS];
    unsigned in2 = churn_interests[(size_t)(gen + 1) % NINTERESTS];

    cmio__atomic_store(&cs->begun, gen);
    EXPECT_RC(cmio_registry_register(r, cs->fd, tok, in), 0);
    EXPECT_RC(cmio_registry_register(r, cs->fd, tok, in2), -EEXIST);
    if (gen % 4 == 1) {
        int err = 0;
        if (test_send(cs->peer, "x", 1, &err) != 1 && !TEST_WOULDBLOCK(err))
            record_failure("socket %d: send failed (%d)", s, err);
    }
    if (gen % 2 == 1)
        EXPECT_RC(cmio_registry_reregister(r, cs->fd, tok, in2), 0);
    if (gen % 4 == 3) {
        test_drain(cs->fd);
        EXPECT_RC(cmio_registry_rearm(r, cs->fd, CMIO_READABLE), 0);
    }
    EXPECT_RC(cmio_registry_deregister(r, cs->fd), 0);
    cmio__atomic_store(&cs->dead_below, gen + 1);
    EXPECT_RC(cmio_registry_deregister(r, cs->fd), -ENOENT);
    EXPECT_RC(cmio_registry_reregister(r, cs->fd, tok, in), -ENOENT);
    /* A rearm racing a deregister is harmless: ignored, 0. */
    EXPECT_RC(cmio_registry_rearm(r, cs->fd, CMIO_READABLE), 0);
}

static TEST_THREAD_MAIN(churn_thread)
{
    struct churner *me = arg;
    struct churn *ch = me->ch;
    long gen = 0;
    while (cmio__atomic_load(&ch->stop) == 0 && test_now_ns() < ch->end
           && (cmio_token)gen < GEN_MASK) {
        gen++;
        for (int k = 0; k < SOCKS_PER; k++)
            churn_one(ch, me->clone, me->index * SOCKS_PER + k, gen);
        if (gen % 16 == 0 && cmio_waker_wake(ch->waker) != 0) {
            record_failure("cmio_waker_wake failed");
            cmio__atomic_store(&ch->stop, 1);
        }
        if (gen % 8 == 0)
            test_thread_yield();
    }
    me->generations = gen;
    cmio__atomic_fetch_add(&ch->running, -1);
    TEST_THREAD_END;
}

/* Checks one event of the waiting thread against what the churners had
 * published before the wait started. */
static void check_churn_event(struct churn *ch, const long *dead_before, cmio_token t)
{
    if ((t & TOKEN_TAG_MASK) != TOKEN_TAG) {
        record_failure("event with a token nobody registered: %#llx", (unsigned long long)t);
        return;
    }
    int s = (int)((t >> (TOKEN_BITS - 16)) & 0xFF);
    long gen = (long)(t & GEN_MASK);
    if (s >= NSOCKS) {
        record_failure("event for socket %d of %d", s, NSOCKS);
        return;
    }
    if (gen < dead_before[s])
        record_failure("socket %d: event for generation %ld, deregistered before the wait "
                       "started (generations below %ld were)",
                       s, gen, dead_before[s]);
    if (gen > cmio__atomic_load(&ch->socks[s].begun))
        record_failure("socket %d: event for generation %ld, not registered yet", s, gen);
}

static void churn_from_several_threads(void **state)
{
    test_ctx *c = *state;
    struct churn *ch = calloc(1, sizeof(*ch));
    assert_non_null(ch);
    struct churner who[CHURNERS];
    test_thread threads[CHURNERS];
    for (int s = 0; s < NSOCKS; s++) {
        cmio_fd sv[2];
        test_tcp_pair(sv);
        ch->socks[s].fd = sv[0];
        ch->socks[s].peer = sv[1];
        cmio__atomic_store(&ch->socks[s].begun, 0);
        cmio__atomic_store(&ch->socks[s].dead_below, 1);
    }
    assert_int_equal(cmio_waker_new(c->reg, WAKER_TOKEN, &ch->waker), 0);
    for (int i = 0; i < CHURNERS; i++) {
        who[i].ch = ch;
        who[i].index = i;
        who[i].generations = 0;
        /* Every other clone is a clone of a clone. */
        cmio_registry *from = i % 2 == 1 ? who[i - 1].clone : c->reg;
        assert_int_equal(cmio_registry_clone(from, &who[i].clone), 0);
    }
    cmio_events *ev;
    assert_int_equal(cmio_events_new(&ev, 8), 0);

    ch->end = test_now_ns() + CHURN_MS * MS;
    cmio__atomic_store(&ch->running, CHURNERS);
    for (int i = 0; i < CHURNERS; i++)
        test_thread_start(&threads[i], churn_thread, &who[i]);

    long wakes = 0, events = 0, waits = 0;
    while (cmio__atomic_load(&ch->running) > 0) {
        long dead_before[NSOCKS];
        for (int s = 0; s < NSOCKS; s++)
            dead_before[s] = cmio__atomic_load(&ch->socks[s].dead_below);
        int n = cmio_poll_wait(c->poll, ev, 20 * MS);
        waits++;
        if (n < 0) {
            record_failure("cmio_poll_wait: %s", cmio_strerror(n));
            cmio__atomic_store(&ch->stop, 1);
            break;
        }
        for (int k = 0; k < n; k++) {
            cmio_token t = cmio_event_token(cmio_events_get(ev, (size_t)k));
            if (t == WAKER_TOKEN) {
                wakes++;
                continue;
            }
            events++;
            check_churn_event(ch, dead_before, t);
        }
    }
    for (int i = 0; i < CHURNERS; i++)
        test_thread_join(threads[i]);
    check_no_failures();
    print_message("[          ] %ld waits, %ld events, %ld wakes; generations per thread: %ld %ld "
                  "%ld %ld\n",
                  waits, events, wakes, who[0].generations, who[1].generations,
                  who[2].generations, who[3].generations);
    for (int i = 0; i < CHURNERS; i++)
        assert_true(who[i].generations > 0);
    assert_true(events > 0);
    assert_true(wakes > 0);

    /* Every deregister has returned and the waker goes now: nothing is left
     * to report. */
    cmio_waker_free(ch->waker);
    expect_silence(c, QUIET, ANY_TOKEN);

    /* Each socket is unregistered, and registers normally again. */
    expect_t exp[NSOCKS];
    for (int s = 0; s < NSOCKS; s++) {
        cmio_fd fd = ch->socks[s].fd;
        assert_int_equal(cmio_registry_deregister(c->reg, fd), -ENOENT);
        assert_int_equal(cmio_registry_reregister(c->reg, fd, 1, CMIO_WRITABLE), -ENOENT);
        assert_int_equal(cmio_registry_register(c->reg, fd, 100 + (cmio_token)s, CMIO_WRITABLE), 0);
        assert_int_equal(cmio_registry_register(who[s % CHURNERS].clone, fd, 1, CMIO_WRITABLE),
                         -EEXIST);
        exp[s].token = 100 + (cmio_token)s;
        exp[s].flags = EXP_W;
    }
    expect_events_(c, WAIT, 0, exp, NSOCKS, __FILE__, __LINE__);
    for (int s = 0; s < NSOCKS; s++) {
        assert_int_equal(cmio_registry_deregister(c->reg, ch->socks[s].fd), 0);
        test_close(ch->socks[s].fd);
        test_close(ch->socks[s].peer);
    }
    for (int i = 0; i < CHURNERS; i++)
        cmio_registry_free(who[i].clone);
    cmio_events_free(ev);
    free(ch);
}

#define T(f) cmocka_unit_test_setup_teardown(f, reset_failures, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(register_through_clone_reaches_blocked_wait),
        T(reregister_through_clone_reaches_blocked_wait),
        T(rearm_through_clone_reaches_blocked_wait),
        T(many_registrations_reach_blocked_wait),
        T(second_waiter_gets_ebusy),
        T(churn_from_several_threads),
    };
    test_init();
    return cmocka_run_group_tests_name(CMIO_TEST_CONCEPT " on " CMIO_BACKEND_NAME, tests, NULL,
                                       NULL);
}
