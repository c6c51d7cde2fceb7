/*
 * The bad-input table: every public function against every kind of bad
 * argument, with the result the contract promises. The rows below are the
 * single source of truth: run normally, each row is a cmocka assertion on
 * this backend; run with --markdown, the program prints the table that
 * docs/errors.md holds, and a CTest check fails if the two differ.
 */
#include "helpers.h"

#include <limits.h>
#include <stdlib.h>

/* What each row works with: a poll with a registered socket, a socket
 * registered with a second poll only, a never-registered socket and a
 * closed descriptor number. */
typedef struct {
    cmio_poll *poll, *other;
    cmio_registry *reg;
    cmio_events *events;
    cmio_fd registered, foreign, unregistered, closed;
    cmio_fd peers[3];
} fixture;

/* A row: a call made with one bad input, the result expected (as an int:
 * pointer results are 0 for NULL, booleans 0/1, void calls 0) and how the
 * table prints it. */
typedef struct {
    const char *function;
    const char *input;
    int expected;
    const char *shown;
    int (*run)(fixture *f);
} row;

#define PTR(p) ((p) != NULL)

static int poll_new_null(fixture *f) { (void)f; return cmio_poll_new(NULL); }
static int poll_free_null(fixture *f) { (void)f; cmio_poll_free(NULL); return 0; }
static int poll_registry_null(fixture *f) { (void)f; return PTR(cmio_poll_registry(NULL)); }
static int wait_null_poll(fixture *f) { return cmio_poll_wait(NULL, f->events, 0); }
static int wait_null_events(fixture *f) { return cmio_poll_wait(f->poll, NULL, 0); }
static int wait_huge_timeout(fixture *f) { return cmio_poll_wait(f->poll, f->events, INT64_MAX); }
static int wait_negative_timeout(fixture *f) { return cmio_poll_wait(f->poll, f->events, INT64_MIN); }

static int reg_null(fixture *f) { return cmio_registry_register(NULL, f->unregistered, 1, CMIO_READABLE); }
static int reg_invalid(fixture *f) { return cmio_registry_register(f->reg, CMIO_INVALID_FD, 1, CMIO_READABLE); }
static int reg_closed(fixture *f) { return cmio_registry_register(f->reg, f->closed, 1, CMIO_READABLE); }
static int reg_twice(fixture *f) { return cmio_registry_register(f->reg, f->registered, 1, CMIO_READABLE); }
static int reg_foreign(fixture *f)
{
    int rc = cmio_registry_register(f->reg, f->foreign, 1, CMIO_READABLE);
    if (rc == 0)
        cmio_registry_deregister(f->reg, f->foreign);
    return rc;
}
static int reg_no_direction(fixture *f) { return cmio_registry_register(f->reg, f->unregistered, 1, CMIO_LEVEL); }
static int reg_unknown_bits(fixture *f) { return cmio_registry_register(f->reg, f->unregistered, 1, CMIO_READABLE | 0x400u); }

static int rereg_null(fixture *f) { return cmio_registry_reregister(NULL, f->registered, 1, CMIO_READABLE); }
static int rereg_invalid(fixture *f) { return cmio_registry_reregister(f->reg, CMIO_INVALID_FD, 1, CMIO_READABLE); }
static int rereg_closed(fixture *f) { return cmio_registry_reregister(f->reg, f->closed, 1, CMIO_READABLE); }
static int rereg_never(fixture *f) { return cmio_registry_reregister(f->reg, f->unregistered, 1, CMIO_READABLE); }
static int rereg_foreign(fixture *f) { return cmio_registry_reregister(f->reg, f->foreign, 1, CMIO_READABLE); }
static int rereg_unknown_bits(fixture *f) { return cmio_registry_reregister(f->reg, f->registered, 1, CMIO_READABLE | 0x400u); }

static int dereg_null(fixture *f) { return cmio_registry_deregister(NULL, f->registered); }
static int dereg_invalid(fixture *f) { return cmio_registry_deregister(f->reg, CMIO_INVALID_FD); }
static int dereg_closed(fixture *f) { return cmio_registry_deregister(f->reg, f->closed); }
static int dereg_never(fixture *f) { return cmio_registry_deregister(f->reg, f->unregistered); }
static int dereg_foreign(fixture *f) { return cmio_registry_deregister(f->reg, f->foreign); }

static int rearm_null(fixture *f) { return cmio_registry_rearm(NULL, f->registered, CMIO_READABLE); }
static int rearm_invalid(fixture *f) { return cmio_registry_rearm(f->reg, CMIO_INVALID_FD, CMIO_READABLE); }
static int rearm_never(fixture *f) { return cmio_registry_rearm(f->reg, f->unregistered, CMIO_READABLE); }
static int rearm_closed(fixture *f) { return cmio_registry_rearm(f->reg, f->closed, CMIO_READABLE); }
static int rearm_no_direction(fixture *f) { return cmio_registry_rearm(f->reg, f->registered, 0); }
static int rearm_unknown_bits(fixture *f) { return cmio_registry_rearm(f->reg, f->registered, CMIO_READABLE | CMIO_LEVEL); }

static int clone_null(fixture *f)
{
    (void)f;
    cmio_registry *out = (cmio_registry *)(void *)&out;
    int rc = cmio_registry_clone(NULL, &out);
    return out == NULL ? rc : 1;
}
static int clone_null_out(fixture *f) { return cmio_registry_clone(f->reg, NULL); }
static int registry_free_null(fixture *f) { (void)f; cmio_registry_free(NULL); return 0; }
static int registry_free_own(fixture *f)
{
    cmio_registry_free(f->reg); /* ignored: the poll owns it */
    return cmio_registry_reregister(f->reg, f->registered, 1, CMIO_READABLE);
}

static int events_new_null(fixture *f) { (void)f; return cmio_events_new(NULL, 1); }
static int events_new_zero(fixture *f)
{
    (void)f;
    cmio_events *out = (cmio_events *)(void *)&out;
    int rc = cmio_events_new(&out, 0);
    return out == NULL ? rc : 1;
}
static int events_new_over(fixture *f) { (void)f; cmio_events *e; return cmio_events_new(&e, CMIO_EVENTS_MAX + 1); }
static int events_new_huge(fixture *f) { (void)f; cmio_events *e; return cmio_events_new(&e, SIZE_MAX); }
static int events_free_null(fixture *f) { (void)f; cmio_events_free(NULL); return 0; }
static int events_len_null(fixture *f) { (void)f; return (int)cmio_events_len(NULL); }
static int events_capacity_null(fixture *f) { (void)f; return (int)cmio_events_capacity(NULL); }
static int events_get_null(fixture *f) { (void)f; return PTR(cmio_events_get(NULL, 0)); }
static int events_get_past_len(fixture *f) { return PTR(cmio_events_get(f->events, cmio_events_len(f->events))); }
static int event_token_null(fixture *f) { (void)f; return (int)cmio_event_token(NULL); }
static int event_flags_null(fixture *f)
{
    (void)f;
    return cmio_event_is_readable(NULL) || cmio_event_is_writable(NULL) || cmio_event_is_error(NULL)
           || cmio_event_is_read_closed(NULL) || cmio_event_is_write_closed(NULL)
           || cmio_event_is_priority(NULL);
}

static int waker_new_null(fixture *f)
{
    (void)f;
    cmio_waker *out = (cmio_waker *)(void *)&out;
    int rc = cmio_waker_new(NULL, 1, &out);
    return out == NULL ? rc : 1;
}
static int waker_new_null_out(fixture *f) { return cmio_waker_new(f->reg, 1, NULL); }
static int waker_wake_null(fixture *f) { (void)f; return cmio_waker_wake(NULL); }
static int waker_free_null(fixture *f) { (void)f; cmio_waker_free(NULL); return 0; }
static int strerror_unknown(fixture *f) { (void)f; return cmio_strerror(INT_MIN) == NULL; }

static const row rows[] = {
    {"cmio_poll_new", "out NULL", -EINVAL, "-EINVAL", poll_new_null},
    {"cmio_poll_free", "NULL", 0, "no-op", poll_free_null},
    {"cmio_poll_registry", "NULL", 0, "NULL", poll_registry_null},
    {"cmio_poll_wait", "poll NULL", -EINVAL, "-EINVAL", wait_null_poll},
    {"cmio_poll_wait", "events NULL", -EINVAL, "-EINVAL", wait_null_events},
    {"cmio_poll_wait", "timeout INT64_MAX, one source ready", 1, "1 (waits, never wraps)", wait_huge_timeout},
    {"cmio_poll_wait", "timeout INT64_MIN, one source ready", 1, "1 (negative: no timeout)", wait_negative_timeout},
    {"cmio_registry_register", "registry NULL", -EINVAL, "-EINVAL", reg_null},
    {"cmio_registry_register", "fd CMIO_INVALID_FD (-1)", -EBADF, "-EBADF", reg_invalid},
    {"cmio_registry_register", "closed fd", -EBADF, "-EBADF", reg_closed},
    {"cmio_registry_register", "fd already registered", -EEXIST, "-EEXIST", reg_twice},
    {"cmio_registry_register", "fd registered with another poll", 0, "0 (queues are independent)", reg_foreign},
    {"cmio_registry_register", "interest without a direction", -EINVAL, "-EINVAL", reg_no_direction},
    {"cmio_registry_register", "unknown interest bits", -EINVAL, "-EINVAL", reg_unknown_bits},
    {"cmio_registry_reregister", "registry NULL", -EINVAL, "-EINVAL", rereg_null},
    {"cmio_registry_reregister", "fd CMIO_INVALID_FD (-1)", -EBADF, "-EBADF", rereg_invalid},
    {"cmio_registry_reregister", "closed fd", -EBADF, "-EBADF", rereg_closed},
    {"cmio_registry_reregister", "never-registered fd", -ENOENT, "-ENOENT", rereg_never},
    {"cmio_registry_reregister", "fd registered with another poll", -ENOENT, "-ENOENT", rereg_foreign},
    {"cmio_registry_reregister", "unknown interest bits", -EINVAL, "-EINVAL", rereg_unknown_bits},
    {"cmio_registry_deregister", "registry NULL", -EINVAL, "-EINVAL", dereg_null},
    {"cmio_registry_deregister", "fd CMIO_INVALID_FD (-1)", -EBADF, "-EBADF", dereg_invalid},
    {"cmio_registry_deregister", "closed fd", -EBADF, "-EBADF", dereg_closed},
    {"cmio_registry_deregister", "never-registered fd", -ENOENT, "-ENOENT", dereg_never},
    {"cmio_registry_deregister", "fd registered with another poll", -ENOENT, "-ENOENT", dereg_foreign},
    {"cmio_registry_rearm", "registry NULL", -EINVAL, "-EINVAL", rearm_null},
    {"cmio_registry_rearm", "fd CMIO_INVALID_FD (-1)", -EBADF, "-EBADF", rearm_invalid},
    {"cmio_registry_rearm", "never-registered fd", 0, "0 (ignored)", rearm_never},
    {"cmio_registry_rearm", "closed fd", 0, "0 (ignored)", rearm_closed},
    {"cmio_registry_rearm", "no direction", -EINVAL, "-EINVAL", rearm_no_direction},
    {"cmio_registry_rearm", "a mode bit (CMIO_LEVEL)", -EINVAL, "-EINVAL", rearm_unknown_bits},
    {"cmio_registry_clone", "registry NULL", -EINVAL, "-EINVAL, *out = NULL", clone_null},
    {"cmio_registry_clone", "out NULL", -EINVAL, "-EINVAL", clone_null_out},
    {"cmio_registry_free", "NULL", 0, "no-op", registry_free_null},
    {"cmio_registry_free", "the poll's own registry", 0, "ignored (the registry still works)", registry_free_own},
    {"cmio_events_new", "out NULL", -EINVAL, "-EINVAL", events_new_null},
    {"cmio_events_new", "capacity 0", -EINVAL, "-EINVAL, *out = NULL", events_new_zero},
    {"cmio_events_new", "capacity CMIO_EVENTS_MAX + 1", -EINVAL, "-EINVAL", events_new_over},
    {"cmio_events_new", "capacity SIZE_MAX", -EINVAL, "-EINVAL", events_new_huge},
    {"cmio_events_free", "NULL", 0, "no-op", events_free_null},
    {"cmio_events_len", "NULL", 0, "0", events_len_null},
    {"cmio_events_capacity", "NULL", 0, "0", events_capacity_null},
    {"cmio_events_get", "NULL", 0, "NULL", events_get_null},
    {"cmio_events_get", "index >= len", 0, "NULL", events_get_past_len},
    {"cmio_event_token", "NULL", 0, "0", event_token_null},
    {"cmio_event_is_* (all six)", "NULL", 0, "false", event_flags_null},
    {"cmio_waker_new", "registry NULL", -EINVAL, "-EINVAL, *out = NULL", waker_new_null},
    {"cmio_waker_new", "out NULL", -EINVAL, "-EINVAL", waker_new_null_out},
    {"cmio_waker_wake", "NULL", -EINVAL, "-EINVAL", waker_wake_null},
    {"cmio_waker_free", "NULL", 0, "no-op", waker_free_null},
    {"cmio_strerror", "any int (INT_MIN here)", 0, "a static string, never NULL", strerror_unknown},
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

static void fixture_open(fixture *f)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(cmio_poll_new(&f->poll), 0);
    assert_int_equal(cmio_poll_new(&f->other), 0);
    f->reg = cmio_poll_registry(f->poll);
    assert_int_equal(cmio_events_new(&f->events, 8), 0);
    cmio_fd a[2], b[2], c[2], d[2];
    test_tcp_pair(a);
    test_tcp_pair(b);
    test_tcp_pair(c);
    test_tcp_pair(d);
    f->registered = a[0];
    f->foreign = b[0];
    f->unregistered = c[0];
    f->peers[0] = a[1];
    f->peers[1] = b[1];
    f->peers[2] = c[1];
    assert_int_equal(cmio_registry_register(f->reg, f->registered, 1, CMIO_WRITABLE), 0);
    assert_int_equal(cmio_registry_register(cmio_poll_registry(f->other), f->foreign, 2, CMIO_READABLE), 0);
    /* Closed last: registering may open handles of its own (iocp's AFD
     * helpers), which would take the lowest free number. */
    f->closed = d[0];
    test_close(d[1]);
    test_close(d[0]);
}

static void fixture_close(fixture *f)
{
    cmio_registry_deregister(f->reg, f->registered);
    cmio_registry_deregister(cmio_poll_registry(f->other), f->foreign);
    test_close(f->registered);
    test_close(f->foreign);
    test_close(f->unregistered);
    for (int i = 0; i < 3; i++)
        test_close(f->peers[i]);
    cmio_events_free(f->events);
    cmio_poll_free(f->other);
    cmio_poll_free(f->poll);
}

static void every_row_holds(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < NROWS; i++) {
        fixture f;
        fixture_open(&f);
        /* The two timeout rows need a ready source: the registered socket
         * is writable and registered in edge mode, so rearm it level. */
        assert_int_equal(cmio_registry_reregister(f.reg, f.registered, 1, CMIO_WRITABLE | CMIO_LEVEL), 0);
        int got = rows[i].run(&f);
        if (got != rows[i].expected) {
            print_error("%s(%s): expected %s (%d), got %d (%s)\n", rows[i].function, rows[i].input,
                        rows[i].shown, rows[i].expected, got, cmio_strerror(got));
            failures++;
        }
        fixture_close(&f);
    }
    assert_int_equal(failures, 0);
}

static void print_markdown(void)
{
    printf("| function | bad input | result |\n|---|---|---|\n");
    for (size_t i = 0; i < NROWS; i++)
        printf("| `%s` | %s | %s |\n", rows[i].function, rows[i].input, rows[i].shown);
}

int main(int argc, char **argv)
{
    test_init();
    if (argc > 1 && strcmp(argv[1], "--markdown") == 0) {
        print_markdown();
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmio_unit_test(every_row_holds),
    };
    return cmocka_run_group_tests_name(CMIO_TEST_CONCEPT " on " CMIO_BACKEND_NAME, tests, NULL, NULL);
}
