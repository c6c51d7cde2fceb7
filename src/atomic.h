/*
 * atomic.h: the few atomic operations cmio needs, on C11 <stdatomic.h> where
 * the compiler has it and on the Interlocked intrinsics under MSVC, whose C
 * mode lacks stdatomic.h before Visual Studio 2022 17.5.
 *
 * All operations are sequentially consistent: none is on a path where the
 * cost of a full barrier matters next to the system call beside it.
 */
#ifndef CMIO_ATOMIC_H_
#define CMIO_ATOMIC_H_

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>

typedef volatile long cmio__atomic;

static inline long cmio__atomic_load(cmio__atomic *a) { return _InterlockedOr(a, 0); }
static inline void cmio__atomic_store(cmio__atomic *a, long v) { _InterlockedExchange(a, v); }
static inline long cmio__atomic_exchange(cmio__atomic *a, long v) { return _InterlockedExchange(a, v); }
/* Returns the value before the addition, as atomic_fetch_add does. */
static inline long cmio__atomic_fetch_add(cmio__atomic *a, long v) { return _InterlockedExchangeAdd(a, v); }
static inline int cmio__atomic_cas(cmio__atomic *a, long expected, long desired)
{
    return _InterlockedCompareExchange(a, desired, expected) == expected;
}
#else
#include <stdatomic.h>

typedef atomic_long cmio__atomic;

static inline long cmio__atomic_load(cmio__atomic *a) { return atomic_load(a); }
static inline void cmio__atomic_store(cmio__atomic *a, long v) { atomic_store(a, v); }
static inline long cmio__atomic_exchange(cmio__atomic *a, long v) { return atomic_exchange(a, v); }
static inline long cmio__atomic_fetch_add(cmio__atomic *a, long v) { return atomic_fetch_add(a, v); }
static inline int cmio__atomic_cas(cmio__atomic *a, long expected, long desired)
{
    return atomic_compare_exchange_strong(a, &expected, desired);
}
#endif

#endif /* CMIO_ATOMIC_H_ */
