/*
 * iocp_table.c: the Windows selector's containers.
 *
 *   - The socket table finds a registration by the caller's SOCKET. Only
 *     live registrations are in it, so a number is free again the moment
 *     its socket is deregistered or seen closed, even while the kernel
 *     still holds that socket's poll buffers.
 *   - The update queue lists sockets whose poll must be started again
 *     before the next wait (after a completion, or a cancel).
 *   - Groups share one AFD helper handle among up to CMIO__GROUP_MAX
 *     sockets, as wepoll does: a handle per socket would double the
 *     process's handle count, one for all would make every cancel walk
 *     every pending poll. Groups live until the selector goes; reopening
 *     \Device\Afd costs more than keeping an idle handle.
 */
#include <errno.h>
#include <stdint.h>

#include "iocp.h"

#define CMIO__GROUP_MAX 32
#define CMIO__TABLE_MIN 64

/* SOCKETs are handle values, multiples of 4 handed out densely. */
static size_t bucket_of(SOCKET fd, size_t nbuckets)
{
    uint64_t h = (uint64_t)(fd >> 2) * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h >> 32) & (nbuckets - 1);
}

int cmio__table_init(struct cmio__sel *s)
{
    s->buckets = cmio__calloc(CMIO__TABLE_MIN, sizeof(*s->buckets));
    if (s->buckets == NULL)
        return -ENOMEM;
    s->nbuckets = CMIO__TABLE_MIN;
    s->nsocks = 0;
    return 0;
}

void cmio__table_free(struct cmio__sel *s)
{
    cmio__free(s->buckets);
    s->buckets = NULL;
}

struct cmio__sock *cmio__table_find(struct cmio__sel *s, SOCKET fd)
{
    struct cmio__sock *sock = s->buckets[bucket_of(fd, s->nbuckets)];
    while (sock != NULL && sock->fd != fd)
        sock = sock->chain;
    return sock;
}

/* Doubles the bucket array. Best effort: without memory the chains just
 * grow longer, which is slower but still correct. */
static void grow(struct cmio__sel *s)
{
    size_t n = s->nbuckets * 2;
    struct cmio__sock **b = cmio__calloc(n, sizeof(*b));
    if (b == NULL)
        return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct cmio__sock *sock = s->buckets[i];
        while (sock != NULL) {
            struct cmio__sock *next = sock->chain;
            size_t k = bucket_of(sock->fd, n);
            sock->chain = b[k];
            b[k] = sock;
            sock = next;
        }
    }
    cmio__free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

void cmio__table_add(struct cmio__sel *s, struct cmio__sock *sock)
{
    if (s->nsocks >= s->nbuckets)
        grow(s);
    size_t k = bucket_of(sock->fd, s->nbuckets);
    sock->chain = s->buckets[k];
    s->buckets[k] = sock;
    s->nsocks++;
}

void cmio__table_remove(struct cmio__sel *s, struct cmio__sock *sock)
{
    struct cmio__sock **p = &s->buckets[bucket_of(sock->fd, s->nbuckets)];
    while (*p != NULL && *p != sock)
        p = &(*p)->chain;
    if (*p == NULL)
        return;
    *p = sock->chain;
    sock->chain = NULL;
    s->nsocks--;
}

void cmio__queue_add(struct cmio__sel *s, struct cmio__sock *sock)
{
    if (sock->update.next == NULL)
        cmio__list_push(&s->updates, &sock->update);
}

void cmio__queue_remove(struct cmio__sock *sock)
{
    if (sock->update.next != NULL)
        cmio__list_remove(&sock->update);
}

int cmio__group_acquire(struct cmio__sel *s, struct cmio__group **out)
{
    struct cmio__group *g = s->groups;
    while (g != NULL && g->users >= CMIO__GROUP_MAX)
        g = g->next;
    if (g == NULL) {
        g = cmio__calloc(1, sizeof(*g));
        if (g == NULL)
            return -ENOMEM;
        int rc = cmio__afd_open(s->port, CMIO__KEY_AFD, &g->afd);
        if (rc < 0) {
            cmio__free(g);
            return rc;
        }
        g->next = s->groups;
        s->groups = g;
    }
    g->users++;
    *out = g;
    return 0;
}

void cmio__group_release(struct cmio__group *g)
{
    g->users--;
}

void cmio__groups_close(struct cmio__sel *s)
{
    while (s->groups != NULL) {
        struct cmio__group *g = s->groups;
        s->groups = g->next;
        CloseHandle(g->afd);
        cmio__free(g);
    }
}
