/*
 * A libFuzzer target: random sequences of register / reregister /
 * deregister / rearm / wait / clone / wake / write / read / close-and-reopen,
 * bad arguments included, checked against a model of what the registry
 * holds.
 *
 * The model knows, per socket of a small pool, whether it is registered and
 * with which token and interest, and how many bytes wait in it. Every return
 * code is predicted from the model and compared; every event must carry the
 * token of a live registration (or a waker) and only directions that
 * registration asked for; a level-triggered readable registration holding
 * data must be reported by a wait with room for everything.
 *
 * Input format: a stream of (op, arg) byte pairs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmio/poll.h>

#define NSOCK 4
#define NWAKER 2
#define CAP 4 /* small, so waits overflow and leave events for later */

struct slot {
    int fd;   /* registered end */
    int peer; /* the end we write to */
    int registered;
    cmio_token token;
    unsigned interest;
    int pending; /* bytes written by peer and not yet read */
};

static struct slot slots[NSOCK];
static cmio_poll *poll_;
static cmio_registry *reg;
static cmio_registry *clone_;
static cmio_events *events;
static cmio_waker *wakers[NWAKER];
static cmio_token next_token;

/* Tokens of registrations whose socket was closed without deregistering.
 * The contract makes that the caller's mistake: a backend may still report
 * them until the number is registered again, so they are tolerated. */
#define NZOMBIE 64
static cmio_token zombies[NZOMBIE];
static int nzombies;

static int is_zombie(cmio_token t)
{
    for (int i = 0; i < nzombies; i++)
        if (zombies[i] == t)
            return 1;
    return 0;
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "model mismatch at %s:%d: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void open_slot(struct slot *s)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    s->fd = sv[0];
    s->peer = sv[1];
    s->registered = 0;
    s->pending = 0;
}

static unsigned valid_interest(uint8_t arg)
{
    unsigned i = arg & (CMIO_READABLE | CMIO_WRITABLE | CMIO_LEVEL | CMIO_ONESHOT);
    if ((i & (CMIO_READABLE | CMIO_WRITABLE)) == 0)
        i |= CMIO_READABLE;
    return i;
}

/* The interest an op uses: usually valid, sometimes garbage. */
static unsigned pick_interest(uint8_t arg, int *valid)
{
    if ((arg & 0xc0) == 0xc0) {
        unsigned bad = (arg & 1) ? 0u : (0x100u | CMIO_READABLE);
        *valid = 0;
        return bad;
    }
    *valid = 1;
    return valid_interest(arg);
}

static cmio_registry *pick_registry(uint8_t arg)
{
    return (arg & 0x20) && clone_ != NULL ? clone_ : reg;
}

static void do_register(uint8_t arg, int re)
{
    struct slot *s = &slots[arg % NSOCK];
    int valid;
    unsigned interest = pick_interest(arg, &valid);
    cmio_token t = next_token++;
    int rc = re ? cmio_registry_reregister(pick_registry(arg), s->fd, t, interest)
                : cmio_registry_register(pick_registry(arg), s->fd, t, interest);
    if (!valid) {
        CHECK(rc == -EINVAL);
        return;
    }
    if (re && !s->registered) {
        CHECK(rc == -ENOENT);
        return;
    }
    if (!re && s->registered) {
        CHECK(rc == -EEXIST);
        return;
    }
    CHECK(rc == 0);
    s->registered = 1;
    s->token = t;
    s->interest = interest;
}

static void do_deregister(uint8_t arg)
{
    struct slot *s = &slots[arg % NSOCK];
    int rc = cmio_registry_deregister(pick_registry(arg), s->fd);
    CHECK(rc == (s->registered ? 0 : -ENOENT));
    s->registered = 0;
}

static void do_bad_fd(uint8_t arg)
{
    /* -1 is -EBADF for everything that takes an fd; rearm included. */
    CHECK(cmio_registry_register(reg, -1, 1, CMIO_READABLE) == -EBADF);
    CHECK(cmio_registry_reregister(reg, -1, 1, CMIO_READABLE) == -EBADF);
    CHECK(cmio_registry_deregister(reg, -1) == -EBADF);
    CHECK(cmio_registry_rearm(reg, -1, CMIO_READABLE) == -EBADF);
    CHECK(cmio_registry_register(NULL, slots[0].fd, 1, CMIO_READABLE) == -EINVAL);
    CHECK(cmio_registry_rearm(reg, slots[arg % NSOCK].fd, 0) == -EINVAL);
    /* A descriptor number that is certainly closed. */
    int fd = fcntl(slots[0].fd, F_DUPFD_CLOEXEC, 0);
    CHECK(fd >= 0);
    close(fd);
    CHECK(cmio_registry_register(reg, fd, 1, CMIO_READABLE) == -EBADF);
    CHECK(cmio_registry_deregister(reg, fd) == -EBADF);
}

static void do_rearm(uint8_t arg)
{
    struct slot *s = &slots[arg % NSOCK];
    unsigned dir = (arg & 0x10) ? CMIO_WRITABLE : CMIO_READABLE;
    CHECK(cmio_registry_rearm(pick_registry(arg), s->fd, dir) == 0);
}

static void do_write(uint8_t arg)
{
    struct slot *s = &slots[arg % NSOCK];
    char b = (char)arg;
    if (send(s->peer, &b, 1, MSG_NOSIGNAL) == 1)
        s->pending++;
}

static void do_read(uint8_t arg)
{
    struct slot *s = &slots[arg % NSOCK];
    char buf[256];
    ssize_t n;
    while ((n = recv(s->fd, buf, sizeof(buf), 0)) > 0)
        s->pending -= (int)n;
    CHECK(s->pending == 0);
    if (s->registered)
        CHECK(cmio_registry_rearm(reg, s->fd, CMIO_READABLE) == 0);
}

/* Closes the registered end without deregistering, then opens a new pair,
 * which will usually get the same descriptor number: the contract says a
 * later registration of a reused number must work. */
static void do_close_reopen(uint8_t arg)
{
    struct slot *s = &slots[arg % NSOCK];
    if (s->registered && nzombies < NZOMBIE)
        zombies[nzombies++] = s->token;
    close(s->fd);
    close(s->peer);
    open_slot(s);
}

/* Checks one batch against the model. A oneshot registration is disarmed
 * once the batch is over (one batch may hold two entries for it). Returns
 * whether token `want` was reported readable. */
static int check_batch(cmio_events *ev, int n, cmio_token want)
{
    int seen = 0;
    struct slot *fired[CAP > 64 ? CAP : 64];
    int nfired = 0;
    CHECK(n >= 0 && (size_t)n <= cmio_events_capacity(ev));
    CHECK((size_t)n == cmio_events_len(ev));
    for (int i = 0; i < n; i++) {
        const cmio_event *e = cmio_events_get(ev, (size_t)i);
        cmio_token t = cmio_event_token(e);
        if (t >= (cmio_token)1 << 62 || is_zombie(t))
            continue; /* a waker, or a registration closed without deregister */
        struct slot *s = NULL;
        for (int k = 0; k < NSOCK; k++)
            if (slots[k].registered && slots[k].token == t)
                s = &slots[k];
        CHECK(s != NULL); /* no event for a dead registration */
        if (cmio_event_is_readable(e))
            CHECK(s->interest & CMIO_READABLE);
        if (cmio_event_is_writable(e))
            CHECK(s->interest & CMIO_WRITABLE);
        if (t == want && cmio_event_is_readable(e))
            seen = 1;
        if ((s->interest & CMIO_ONESHOT) && nfired < 64)
            fired[nfired++] = s;
    }
    for (int i = 0; i < nfired; i++)
        fired[i]->interest = 0; /* disarmed until reregister */
    return seen;
}

static void do_wait(uint8_t arg)
{
    (void)arg;
    check_batch(events, cmio_poll_wait(poll_, events, 0), (cmio_token)-1);
}

/* With room for everything, a level registration for readable data must
 * show up within a few waits. */
static void do_level_check(uint8_t arg)
{
    struct slot *s = &slots[arg % NSOCK];
    if (!s->registered || s->pending == 0 || (s->interest & (CMIO_LEVEL | CMIO_ONESHOT | CMIO_READABLE))
                                                    != (CMIO_LEVEL | CMIO_READABLE))
        return;
    cmio_events *big;
    CHECK(cmio_events_new(&big, 64) == 0);
    int seen = 0;
    for (int round = 0; round < 4 && !seen; round++)
        seen = check_batch(big, cmio_poll_wait(poll_, big, 0), s->token);
    cmio_events_free(big);
    CHECK(seen);
}

static void do_clone(uint8_t arg)
{
    if (clone_ != NULL && (arg & 1)) {
        cmio_registry_free(clone_);
        clone_ = NULL;
    } else if (clone_ == NULL) {
        CHECK(cmio_registry_clone(reg, &clone_) == 0);
    }
}

static void do_wake(uint8_t arg)
{
    CHECK(cmio_waker_wake(wakers[arg % NWAKER]) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    CHECK(cmio_poll_new(&poll_) == 0);
    reg = cmio_poll_registry(poll_);
    CHECK(cmio_events_new(&events, CAP) == 0);
    for (int i = 0; i < NWAKER; i++)
        CHECK(cmio_waker_new(reg, ((cmio_token)1 << 62) + (cmio_token)i, &wakers[i]) == 0);
    for (int i = 0; i < NSOCK; i++)
        open_slot(&slots[i]);
    clone_ = NULL;
    next_token = 0;
    nzombies = 0;

    for (size_t i = 0; i + 1 < size && i < 2 * 256; i += 2) {
        uint8_t arg = data[i + 1];
        switch (data[i] % 12) {
        case 0: do_register(arg, 0); break;
        case 1: do_register(arg, 1); break;
        case 2: do_deregister(arg); break;
        case 3: do_rearm(arg); break;
        case 4: do_write(arg); break;
        case 5: do_read(arg); break;
        case 6: do_wait(arg); break;
        case 7: do_clone(arg); break;
        case 8: do_wake(arg); break;
        case 9: do_close_reopen(arg); break;
        case 10: do_level_check(arg); break;
        case 11: do_bad_fd(arg); break;
        }
    }

    for (int i = 0; i < NSOCK; i++) {
        if (slots[i].registered)
            CHECK(cmio_registry_deregister(reg, slots[i].fd) == 0);
        close(slots[i].fd);
        close(slots[i].peer);
    }
    for (int i = 0; i < NWAKER; i++)
        cmio_waker_free(wakers[i]);
    cmio_registry_free(clone_);
    cmio_events_free(events);
    cmio_poll_free(poll_);
    return 0;
}
