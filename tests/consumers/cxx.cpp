// The public header from C++: it must compile cleanly as C++11 and link
// against the C library (its extern "C" block), with the inline accessors
// usable from C++ code. .ci/consumers.sh builds it against the installed
// library through pkg-config.
#include <cmio/poll.h>

#include <cstdio>

int main()
{
    cmio_poll *poll = nullptr;
    cmio_events *events = nullptr;
    cmio_waker *waker = nullptr;
    const cmio_token token = 99;
    int found = 0;
    if (cmio_poll_new(&poll) == 0 && cmio_events_new(&events, 4) == 0
        && cmio_waker_new(cmio_poll_registry(poll), token, &waker) == 0 && cmio_waker_wake(waker) == 0) {
        int n = cmio_poll_wait(poll, events, 1000000000);
        for (int i = 0; i < n; i++) {
            const cmio_event *e = cmio_events_get(events, static_cast<size_t>(i));
            found += cmio_event_token(e) == token && cmio_event_is_readable(e);
        }
    }
    cmio_waker_free(waker);
    cmio_events_free(events);
    cmio_poll_free(poll);
    if (found != 1) {
        std::fprintf(stderr, "consumer (C++): expected one waker event, got %d\n", found);
        return 1;
    }
    std::printf("cmio %s (%s) from C++: ok\n", cmio_version(), cmio_backend());
    return 0;
}
