/* A C busy loop that notices when a sibling coroutine runs it on the same
 * OS thread while it is in progress — what happens if the runtime preempts
 * a coroutine inside C code and runs another one on that executor. Per-OS-
 * thread ownership is kept in a table indexed by the kernel thread id (not
 * in __thread variables: the runtime may give coroutines their own TLS). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdatomic.h>
#include <unistd.h>

#define SLOTS 4096
static _Atomic uint64_t owner[SLOTS];
static _Atomic uint64_t violations;

static _Atomic uint64_t *slot(void) { return &owner[(unsigned)gettid() % SLOTS]; }

static int enter(uint64_t me) {
    uint64_t expect = 0;
    if (!atomic_compare_exchange_strong(slot(), &expect, me)) {
        atomic_fetch_add(&violations, 1);
        return 0;
    }
    return 1;
}

static void leave(uint64_t me) {
    uint64_t expect = me;
    if (!atomic_compare_exchange_strong(slot(), &expect, 0))
        atomic_fetch_add(&violations, 1);
}

/* Spins `iters` rounds of integer mixing inside "ownership" of this OS
 * thread; returns the mix so the loop is not optimised away. */
uint64_t tp_spin(uint64_t me, uint64_t iters) {
    int owned = enter(me);
    volatile uint64_t x = me;
    for (uint64_t i = 0; i < iters; i++)
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    if (owned)
        leave(me);
    return x;
}

/* Like tp_spin, but the loop is a Rust callback called while C owns the
 * thread (a callback under a C library's lock). */
uint64_t tp_with_callback(uint64_t me, uint64_t (*cb)(uint64_t), uint64_t arg) {
    int owned = enter(me);
    uint64_t r = cb(arg);
    if (owned)
        leave(me);
    return r;
}

uint64_t tp_violations(void) { return atomic_load(&violations); }
