/*
 * iocp.h: the state shared by the Windows backend's files.
 *
 *   iocp.c        the selector: completion port, waiting, wakers, and the
 *                 registry calls (locking, lookups, reused socket numbers);
 *   iocp_sock.c   one socket's poll requests: what to ask AFD for, what its
 *                 answers mean, when its memory may go;
 *   iocp_table.c  the containers: sockets by handle, the queue of sockets
 *                 to re-poll, the shared AFD helper handles;
 *   afd.c         the AFD driver itself; nt.h the declarations it needs.
 *
 * Everything below that touches a selector runs with its lock held.
 */
#ifndef CMIO_IOCP_H_
#define CMIO_IOCP_H_

#include <stddef.h>

#include "afd.h"
#include "atomic.h"
#include "sys.h"

/* Completion keys. The low two bits say what lpOverlapped points to. */
#define CMIO__KEY_AFD 1u   /* a struct cmio__op */
#define CMIO__KEY_WAKER 2u /* a struct cmio__wk */
#define CMIO__KEY_NUDGE 3u /* nothing: it only makes the waiter look at the lock */
#define CMIO__KEY_KIND 3u
/* Set on packets a registering thread took off the port and queued again;
 * the bits above it number that pass (see iocp.c, make_room). */
#define CMIO__KEY_REQUEUED 4u

#define CMIO__CONTAINER(ptr, type, field) ((type *)(void *)((char *)(ptr)-offsetof(type, field)))

/* An intrusive doubly linked list; a detached link has NULL pointers. */
struct cmio__link {
    struct cmio__link *prev, *next;
};

static inline void cmio__list_init(struct cmio__link *head)
{
    head->prev = head->next = head;
}

static inline int cmio__list_empty(const struct cmio__link *head)
{
    return head->next == head;
}

static inline void cmio__list_push(struct cmio__link *head, struct cmio__link *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

static inline void cmio__list_remove(struct cmio__link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = NULL;
}

/* Moves every link of `from` onto `to`, which is then their list; `from`
 * ends up empty. */
static inline void cmio__list_take(struct cmio__link *from, struct cmio__link *to)
{
    cmio__list_init(to);
    if (cmio__list_empty(from))
        return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    cmio__list_init(from);
}

/* An AFD helper handle, shared by up to CMIO__GROUP_MAX sockets. */
struct cmio__group {
    HANDLE afd;
    size_t users;
    struct cmio__group *next;
};

/* One poll request of a socket. While busy the kernel owns `poll`. */
struct cmio__op {
    struct cmio__afd_poll poll;
    struct cmio__sock *sock;
    ULONG events;            /* what the request asked for */
    unsigned char busy;      /* accepted; its packet not yet processed */
    unsigned char cancelled; /* its answer is stale and will be dropped */
};

struct cmio__sock {
    struct cmio__op ev;      /* the armed directions */
    struct cmio__op lc;      /* AFD_LOCAL_CLOSE only, pending while live */
    SOCKET fd;               /* the caller's handle: the table key */
    SOCKET base;             /* what AFD polls */
    cmio_token token;
    unsigned interest;       /* directions and mode as registered */
    unsigned armed;          /* directions that may be reported now */
    int dead;                /* dropped; freed once neither op is busy */
    struct cmio__group *group;
    struct cmio__sock *chain;  /* next in the table bucket */
    struct cmio__link all;     /* every socket of the selector */
    struct cmio__link update;  /* on the re-poll queue */
};

struct cmio__wk {
    cmio__atomic posted;     /* a packet is on the port (or about to be) */
    cmio_token token;
    HANDLE port;
    int dead;                /* freed by the caller: free on its packet */
    struct cmio__wk *next;   /* in the selector's list of dead wakers */
    struct cmio__wk *held;   /* in the selector's list of held wakers */
};

struct cmio__sel {
    HANDLE port;
    SRWLOCK lock;
    /* The waiter is between dropping the lock to wait on the port and
     * taking it back; `batches` counts its passes, announced on `batch`. */
    int polling;
    /* The waiter will look at `updates` and `held_wakers` again without
     * being nudged: its wait is capped, or a nudge is already posted. */
    int rescan;
    unsigned long batches;
    CONDITION_VARIABLE batch;
    ULONG_PTR passes;        /* make_room's requeue passes */
    size_t busy_ops;         /* requests whose packet is still to come */
    struct cmio__sock **buckets;
    size_t nbuckets, nsocks;
    struct cmio__link socks;   /* all sockets, live and dead */
    struct cmio__link updates; /* sockets to re-poll before the next wait */
    struct cmio__group *groups;
    struct cmio__wk *dead_wakers;
    /* Woken wakers whose packet a registering thread took off the port and
     * could not post again: the waiter reports them instead. */
    struct cmio__wk *held_wakers;
};

/* iocp_table.c */
int cmio__table_init(struct cmio__sel *s);
void cmio__table_free(struct cmio__sel *s);
struct cmio__sock *cmio__table_find(struct cmio__sel *s, SOCKET fd);
void cmio__table_add(struct cmio__sel *s, struct cmio__sock *sock);
void cmio__table_remove(struct cmio__sel *s, struct cmio__sock *sock);
void cmio__queue_add(struct cmio__sel *s, struct cmio__sock *sock);
void cmio__queue_remove(struct cmio__sock *sock);
int cmio__group_acquire(struct cmio__sel *s, struct cmio__group **out);
void cmio__group_release(struct cmio__group *g);
void cmio__groups_close(struct cmio__sel *s);

/* iocp_sock.c */
int cmio__sock_new(struct cmio__sel *s, SOCKET fd, SOCKET base, cmio_token t, unsigned interest);
int cmio__sock_set(struct cmio__sel *s, struct cmio__sock *sock, cmio_token t, unsigned interest);
int cmio__sock_rearm(struct cmio__sel *s, struct cmio__sock *sock, unsigned directions);
int cmio__sock_update(struct cmio__sel *s, struct cmio__sock *sock);
void cmio__sock_kill(struct cmio__sel *s, struct cmio__sock *sock);
int cmio__sock_feed(struct cmio__sel *s, struct cmio__op *op, cmio_event *out);
void cmio__sock_drop_answer(struct cmio__sel *s, struct cmio__op *op);
void cmio__sock_cancel_all(struct cmio__sock *sock);

/*
 * Failure injection, for tests only (like cmio__alloc_fail_after): from now
 * on, the OS calls in `calls` fail as they do when the kernel is out of
 * memory (0: none does). Returns how many calls were failed since the
 * previous call. Process-wide, so a test using it must not run other cmio
 * work in parallel threads.
 */
#define CMIO__FAIL_AFD_POLL 1u /* starting a poll request (-ENOMEM) */
#define CMIO__FAIL_REPOST 2u   /* process_watchers putting a packet back */
CMIO_API long cmio__iocp_fail(unsigned calls);
int cmio__iocp_failing(unsigned call);

static inline int cmio__op_is_watcher(const struct cmio__op *op)
{
    return op == &op->sock->lc;
}

#endif /* CMIO_IOCP_H_ */
