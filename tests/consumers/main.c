/*
 * The program every consumer project builds (.ci/consumers.sh runs them):
 * whichever way cmio was brought in (an installed CMake package,
 * add_subdirectory, FetchContent, pkg-config, or the single-file cmio.c and
 * cmio.h), the header, the library and the library's link needs must have
 * arrived together and must work.
 *
 *   - The header's version macros and the library's cmio_version() agree,
 *     and match CMIO_EXPECT_VERSION when the build defines it.
 *   - cmio_backend() matches CMIO_EXPECT_BACKEND when the build defines it.
 *   - A waker's wake is reported with its token, once (wakes coalesce).
 *   - On POSIX, a pipe registered in edge mode reports readable after a
 *     write and, once drained and rearmed, stays silent: the inline rearm
 *     in the header and the library agree on the backend.
 *
 * Exit status 0 and one line on stdout when all of it holds; otherwise a
 * message on stderr and status 1.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#ifdef CMIO_CONSUMER_SINGLE_FILE
#include "cmio.h"
#else
#include <cmio/poll.h>
#endif

#include <stdio.h>
#include <string.h>

#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif

#define WAKER_TOKEN ((cmio_token)0xC0FFEE)
#define PIPE_TOKEN ((cmio_token)7)
#define SECOND_NS ((int64_t)1000000000)

static int failed(const char *what, int rc)
{
    fprintf(stderr, "consumer: %s: %s\n", what, rc < 0 ? cmio_strerror(rc) : "unexpected result");
    return 1;
}

static int check_version(void)
{
    char expect[64];
    snprintf(expect, sizeof expect, "%d.%d.%d", CMIO_VERSION_MAJOR, CMIO_VERSION_MINOR,
             CMIO_VERSION_PATCH);
    if (strcmp(expect, CMIO_VERSION_STRING) != 0 || strcmp(cmio_version(), CMIO_VERSION_STRING) != 0) {
        fprintf(stderr, "consumer: header %s (%s), library %s\n", CMIO_VERSION_STRING, expect,
                cmio_version());
        return 1;
    }
#ifdef CMIO_EXPECT_VERSION
    if (strcmp(cmio_version(), CMIO_EXPECT_VERSION) != 0) {
        fprintf(stderr, "consumer: version %s, expected %s\n", cmio_version(), CMIO_EXPECT_VERSION);
        return 1;
    }
#endif
#ifdef CMIO_EXPECT_BACKEND
    if (strcmp(cmio_backend(), CMIO_EXPECT_BACKEND) != 0) {
        fprintf(stderr, "consumer: backend %s, expected %s\n", cmio_backend(), CMIO_EXPECT_BACKEND);
        return 1;
    }
#endif
    return 0;
}

/* Counts the entries of the last wait that carry token t and are readable. */
static int readable_with(const cmio_events *events, cmio_token t)
{
    int count = 0;
    for (size_t i = 0; i < cmio_events_len(events); i++) {
        const cmio_event *e = cmio_events_get(events, i);
        if (cmio_event_token(e) == t && cmio_event_is_readable(e))
            count++;
    }
    return count;
}

static int check_waker(cmio_poll *poll, cmio_events *events)
{
    cmio_waker *waker;
    int rc = cmio_waker_new(cmio_poll_registry(poll), WAKER_TOKEN, &waker);
    if (rc < 0)
        return failed("cmio_waker_new", rc);
    int bad = 0;
    if ((rc = cmio_waker_wake(waker)) < 0 || (rc = cmio_waker_wake(waker)) < 0)
        bad = failed("cmio_waker_wake", rc);
    else if ((rc = cmio_poll_wait(poll, events, SECOND_NS)) < 1 || readable_with(events, WAKER_TOKEN) != 1)
        bad = failed("a wait after two wakes (one event expected)", rc);
    else if ((rc = cmio_poll_wait(poll, events, 0)) != 0)
        bad = failed("a second wait with no new wake (nothing expected)", rc);
    cmio_waker_free(waker);
    return bad;
}

#ifndef _WIN32
static int check_pipe(cmio_poll *poll, cmio_events *events)
{
    int fds[2];
    if (pipe(fds) != 0 || fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0) {
        perror("consumer: pipe");
        return 1;
    }
    cmio_registry *reg = cmio_poll_registry(poll);
    int bad = 0;
    int rc = cmio_registry_register(reg, fds[0], PIPE_TOKEN, CMIO_READABLE | CMIO_EDGE);
    if (rc < 0) {
        bad = failed("cmio_registry_register", rc);
        goto out;
    }
    if (write(fds[1], "x", 1) != 1) {
        perror("consumer: write");
        bad = 1;
        goto out;
    }
    if ((rc = cmio_poll_wait(poll, events, SECOND_NS)) < 1 || readable_with(events, PIPE_TOKEN) != 1) {
        bad = failed("a wait after a write to the pipe (readable expected)", rc);
        goto out;
    }
    char c;
    while (read(fds[0], &c, 1) == 1)
        continue;
    if ((rc = cmio_registry_rearm(reg, fds[0], CMIO_READABLE)) < 0)
        bad = failed("cmio_registry_rearm", rc);
    else if ((rc = cmio_poll_wait(poll, events, 0)) != 0)
        bad = failed("a wait after draining and rearming (nothing expected)", rc);
    else if ((rc = cmio_registry_deregister(reg, fds[0])) < 0)
        bad = failed("cmio_registry_deregister", rc);
out:
    close(fds[0]);
    close(fds[1]);
    return bad;
}
#endif

int main(void)
{
    if (check_version())
        return 1;
    cmio_poll *poll;
    cmio_events *events;
    int rc = cmio_poll_new(&poll);
    if (rc < 0)
        return failed("cmio_poll_new", rc);
    if ((rc = cmio_events_new(&events, 8)) < 0) {
        cmio_poll_free(poll);
        return failed("cmio_events_new", rc);
    }
    int bad = check_waker(poll, events);
#ifndef _WIN32
    bad = bad || check_pipe(poll, events);
#endif
    cmio_events_free(events);
    cmio_poll_free(poll);
    if (bad)
        return 1;
    printf("cmio %s (%s): ok\n", cmio_version(), cmio_backend());
    return 0;
}
