/*
 * thread_helpers.h: a second thread for the tests that need one (wakers,
 * threads, timeouts): pthreads on POSIX, Win32 threads on Windows; and, on
 * POSIX, a thread that keeps signalling another until told to stop.
 *
 * Helper threads must not call cmocka assertions (a failure would jump into
 * the main thread's stack): they record what they saw in their job struct,
 * and the main thread checks it after test_thread_join.
 */
#ifndef CMIO_TEST_THREAD_HELPERS_H_
#define CMIO_TEST_THREAD_HELPERS_H_

#include "helpers.h"

#include "../src/atomic.h"

#ifdef _WIN32
#include <windows.h>

typedef HANDLE test_thread;
/* Declares a thread's function: `static TEST_THREAD_MAIN(name) { ... }`,
 * with its argument in `arg`, ending with TEST_THREAD_END. */
#define TEST_THREAD_MAIN(name) DWORD WINAPI name(LPVOID arg)
#define TEST_THREAD_END return 0

static inline void test_thread_start(test_thread *t, LPTHREAD_START_ROUTINE fn, void *arg)
{
    *t = CreateThread(NULL, 0, fn, arg, 0, NULL);
    assert_non_null(*t);
}

static inline void test_thread_join(test_thread t)
{
    assert_int_equal(WaitForSingleObject(t, INFINITE), WAIT_OBJECT_0);
    CloseHandle(t);
}

static inline void test_thread_yield(void)
{
    SwitchToThread();
}

/* CPU time the calling thread has used. */
static inline int64_t test_thread_cpu_ns(void)
{
    FILETIME created, exited, kernel, user;
    GetThreadTimes(GetCurrentThread(), &created, &exited, &kernel, &user);
    uint64_t k = ((uint64_t)kernel.dwHighDateTime << 32) | kernel.dwLowDateTime;
    uint64_t u = ((uint64_t)user.dwHighDateTime << 32) | user.dwLowDateTime;
    return (int64_t)(k + u) * 100;
}

#else
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>

typedef pthread_t test_thread;
#define TEST_THREAD_MAIN(name) void *name(void *arg)
#define TEST_THREAD_END return NULL

static inline void test_thread_start(test_thread *t, void *(*fn)(void *), void *arg)
{
    assert_int_equal(pthread_create(t, NULL, fn, arg), 0);
}

static inline void test_thread_join(test_thread t)
{
    assert_int_equal(pthread_join(t, NULL), 0);
}

static inline void test_thread_yield(void)
{
    sched_yield();
}

static inline int64_t test_thread_cpu_ns(void)
{
    struct timespec ts;
    assert_int_equal(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts), 0);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Sends `sig` to `target` every 20 ms, from `go` until `done` (at most 5 s):
 * a signal that lands before the target is blocked where the test wants it
 * is simply followed by another. If the target never says it is done, the
 * fallback waker (if any) is woken so that a wait that swallows signals
 * ends and fails instead of hanging.
 */
typedef struct {
    pthread_t target;
    int sig;
    cmio_waker *fallback;
    cmio__atomic go;
    cmio__atomic done;
    int sent; /* signals sent */
} test_signaller;

static inline TEST_THREAD_MAIN(test_signal_until_done)
{
    test_signaller *j = arg;
    while (cmio__atomic_load(&j->go) == 0)
        test_thread_yield();
    for (int i = 0; i < 250 && cmio__atomic_load(&j->done) == 0; i++) {
        test_sleep_ms(20);
        if (cmio__atomic_load(&j->done) == 0 && pthread_kill(j->target, j->sig) == 0)
            j->sent++;
    }
    if (cmio__atomic_load(&j->done) == 0 && j->fallback != NULL)
        cmio_waker_wake(j->fallback);
    TEST_THREAD_END;
}

/* Puts back the old disposition of sig. A signal sent just before its
 * sender was joined may still be pending: it is taken here, while blocked,
 * rather than delivered later under a disposition that may end the
 * process. */
static inline void test_restore_signal(int sig, const struct sigaction *old)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, sig);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
    assert_int_equal(sigpending(&pending), 0);
    if (sigismember(&pending, sig)) {
        int got;
        assert_int_equal(sigwait(&set, &got), 0);
    }
    assert_int_equal(sigaction(sig, old, NULL), 0);
    assert_int_equal(pthread_sigmask(SIG_UNBLOCK, &set, NULL), 0);
}
#endif /* _WIN32 */

/* In a helper thread: waits until the main thread sets *go (just before it
 * blocks in a wait), then sleeps ms more so that the wait is surely
 * blocked when the helper acts. */
static inline void test_thread_await(cmio__atomic *go, int ms)
{
    while (cmio__atomic_load(go) == 0)
        test_thread_yield();
    if (ms > 0)
        test_sleep_ms(ms);
}

#endif /* CMIO_TEST_THREAD_HELPERS_H_ */
