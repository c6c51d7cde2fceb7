/*
 * peers.h: the headers of the peer libraries this build found. Each one is
 * optional; BENCH_HAVE_<NAME> says which (set by bench/CMakeLists.txt).
 */
#ifndef BENCH_PEERS_H_
#define BENCH_PEERS_H_

#ifdef BENCH_HAVE_LIBEVENT
#include <event2/event.h>
#include <event2/thread.h>
/* libevent's flags are macros whose names libev's ev.h declares again (as
 * enumerators with other values): libevent code here uses these copies. */
enum { LE_READ = EV_READ, LE_PERSIST = EV_PERSIST };
#undef EV_TIMEOUT
#undef EV_READ
#undef EV_WRITE
#undef EV_SIGNAL
#endif
#ifdef BENCH_HAVE_LIBEV
/* Without the libev 3 compatibility names, among which EVLOOP_NONBLOCK
 * and EVLOOP_ONESHOT would replace libevent's loop flags of the same
 * names with other values. */
#define EV_COMPAT3 0
#include <ev.h>
#endif
#ifdef BENCH_HAVE_LIBUV
#include <uv.h>
#endif

/* The timed function of each implementation keeps its name in the binary,
 * so that callgrind can collect exactly it (--toggle-collect). */
#if defined(__GNUC__) && !defined(__clang__)
#define BENCH_TIMED __attribute__((noinline, noclone))
#else
#define BENCH_TIMED __attribute__((noinline))
#endif

#endif /* BENCH_PEERS_H_ */
