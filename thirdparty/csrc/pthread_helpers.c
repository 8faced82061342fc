/* C users of glibc's pthread primitives, linked into the test executable
 * (as a -sys crate's bundled sources are), called from coroutines. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <time.h>
#include <unistd.h>

static void abs_in_ms(clockid_t clock, long ms, struct timespec *ts) {
    clock_gettime(clock, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* ---- a recursive mutex held across a sleep ---- */
static pthread_mutex_t rec = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static int rec_inside, rec_max_inside;
static long rec_total;

/* Locks `rec` twice (a re-entry), sleeps `us` inside, checks exclusion. */
int cpt_rec_critical(unsigned us) {
    if (pthread_mutex_lock(&rec)) return -1;
    if (pthread_mutex_lock(&rec)) return -2;
    int in = ++rec_inside;
    if (in > rec_max_inside) rec_max_inside = in;
    if (us) usleep(us);
    rec_total++;
    rec_inside--;
    if (pthread_mutex_unlock(&rec)) return -3;
    if (pthread_mutex_unlock(&rec)) return -4;
    return 0;
}
long cpt_rec_total(void) { return rec_total; }
int cpt_rec_max_inside(void) { return rec_max_inside; }

/* ---- generic mutex entry points on caller-chosen static mutexes ---- */
static pthread_mutex_t normal_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t errchk_m = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;
static pthread_mutex_t rec_m = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
pthread_mutex_t *cpt_mutex(int which) {
    return which == 0 ? &normal_m : which == 1 ? &rec_m : &errchk_m;
}
int cpt_lock(pthread_mutex_t *m) { return pthread_mutex_lock(m); }
int cpt_trylock(pthread_mutex_t *m) { return pthread_mutex_trylock(m); }
int cpt_unlock(pthread_mutex_t *m) { return pthread_mutex_unlock(m); }
int cpt_timedlock_ms(pthread_mutex_t *m, long ms) {
    struct timespec ts;
    abs_in_ms(CLOCK_REALTIME, ms, &ts);
    return pthread_mutex_timedlock(m, &ts);
}

/* ---- a bounded channel on a mutex and two condvars ---- */
#define CAP 4
static pthread_mutex_t ch_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ch_not_empty = PTHREAD_COND_INITIALIZER;
static pthread_cond_t ch_not_full = PTHREAD_COND_INITIALIZER;
static long ch_buf[CAP];
static int ch_head, ch_len;

void cpt_chan_put(long v) {
    pthread_mutex_lock(&ch_m);
    while (ch_len == CAP) pthread_cond_wait(&ch_not_full, &ch_m);
    ch_buf[(ch_head + ch_len) % CAP] = v;
    ch_len++;
    pthread_cond_signal(&ch_not_empty);
    pthread_mutex_unlock(&ch_m);
}
long cpt_chan_get(void) {
    pthread_mutex_lock(&ch_m);
    while (ch_len == 0) pthread_cond_wait(&ch_not_empty, &ch_m);
    long v = ch_buf[ch_head];
    ch_head = (ch_head + 1) % CAP;
    ch_len--;
    pthread_cond_signal(&ch_not_full);
    pthread_mutex_unlock(&ch_m);
    return v;
}

/* ---- a gate: waiters block on a condvar until it opens (broadcast) ---- */
static pthread_mutex_t gate_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_c = PTHREAD_COND_INITIALIZER;
static int gate_open, gate_waiting;
void cpt_gate_wait(void) {
    pthread_mutex_lock(&gate_m);
    gate_waiting++;
    while (!gate_open) pthread_cond_wait(&gate_c, &gate_m);
    gate_waiting--;
    pthread_mutex_unlock(&gate_m);
}
int cpt_gate_waiting(void) {
    pthread_mutex_lock(&gate_m);
    int n = gate_waiting;
    pthread_mutex_unlock(&gate_m);
    return n;
}
void cpt_gate_open(void) {
    pthread_mutex_lock(&gate_m);
    gate_open = 1;
    pthread_cond_broadcast(&gate_c);
    pthread_mutex_unlock(&gate_m);
}
/* A timed wait nobody signals: returns pthread_cond_timedwait's result. */
int cpt_cond_timeout_ms(long ms, int monotonic) {
    static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c;
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    if (monotonic) pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&c, &a);
    struct timespec ts;
    abs_in_ms(monotonic ? CLOCK_MONOTONIC : CLOCK_REALTIME, ms, &ts);
    pthread_mutex_lock(&m);
    int r = pthread_cond_timedwait(&c, &m, &ts);
    /* The mutex must be held again whatever the result. */
    int relock = pthread_mutex_trylock(&m) == EBUSY ? 0 : -100;
    pthread_mutex_unlock(&m);
    pthread_cond_destroy(&c);
    return r + relock;
}

/* ---- rwlock: readers share, writers exclude ---- */
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static int rw_readers, rw_writers, rw_max_readers, rw_bad;
static long rw_writes;
void cpt_rw_read(unsigned us) {
    pthread_rwlock_rdlock(&rw);
    int r = __atomic_add_fetch(&rw_readers, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&rw_writers, __ATOMIC_SEQ_CST)) rw_bad = 1;
    int mx = __atomic_load_n(&rw_max_readers, __ATOMIC_SEQ_CST);
    while (r > mx && !__atomic_compare_exchange_n(&rw_max_readers, &mx, r, 0,
                                                  __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
    if (us) usleep(us);
    __atomic_sub_fetch(&rw_readers, 1, __ATOMIC_SEQ_CST);
    pthread_rwlock_unlock(&rw);
}
void cpt_rw_write(unsigned us) {
    pthread_rwlock_wrlock(&rw);
    if (__atomic_add_fetch(&rw_writers, 1, __ATOMIC_SEQ_CST) != 1) rw_bad = 1;
    if (__atomic_load_n(&rw_readers, __ATOMIC_SEQ_CST)) rw_bad = 1;
    if (us) usleep(us);
    rw_writes++;
    __atomic_sub_fetch(&rw_writers, 1, __ATOMIC_SEQ_CST);
    pthread_rwlock_unlock(&rw);
}
long cpt_rw_writes(void) { return rw_writes; }
int cpt_rw_bad(void) { return rw_bad; }
int cpt_rw_max_readers(void) { return rw_max_readers; }

/* ---- semaphore ---- */
static sem_t sem;
void cpt_sem_init(unsigned v) { sem_init(&sem, 0, v); }
int cpt_sem_wait(void) { return sem_wait(&sem); }
int cpt_sem_post(void) { return sem_post(&sem); }
int cpt_sem_timedwait_ms(long ms) {
    struct timespec ts;
    abs_in_ms(CLOCK_REALTIME, ms, &ts);
    return sem_timedwait(&sem, &ts) == 0 ? 0 : errno;
}

/* ---- once: an init routine that sleeps ---- */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int once_runs, once_done;
static void once_init(void) {
    usleep(50000);
    once_runs++;
    __atomic_store_n(&once_done, 1, __ATOMIC_SEQ_CST);
}
/* Returns 1 if the initialisation was complete when pthread_once returned. */
int cpt_once(void) {
    pthread_once(&once, once_init);
    return __atomic_load_n(&once_done, __ATOMIC_SEQ_CST);
}
int cpt_once_runs(void) { return once_runs; }

/* ---- barrier ---- */
static pthread_barrier_t bar;
static int bar_serial;
void cpt_barrier_init(unsigned n) { pthread_barrier_init(&bar, NULL, n); }
/* Returns 1 for the one serial waiter of a round, 0 otherwise, -1 on error. */
int cpt_barrier_wait(void) {
    int r = pthread_barrier_wait(&bar);
    if (r == PTHREAD_BARRIER_SERIAL_THREAD) {
        __atomic_add_fetch(&bar_serial, 1, __ATOMIC_SEQ_CST);
        return 1;
    }
    return r == 0 ? 0 : -1;
}
int cpt_barrier_serials(void) { return __atomic_load_n(&bar_serial, __ATOMIC_SEQ_CST); }

/* ---- a spin lock held across a sleep ---- */
static pthread_spinlock_t spin;
static int spin_inside, spin_max_inside;
static long spin_total;

void cpt_spin_init(void) { pthread_spin_init(&spin, PTHREAD_PROCESS_PRIVATE); }
/* Locks `spin`, sleeps `us` inside (usleep: a hooked sleep parks the
 * coroutine), checks exclusion. */
int cpt_spin_critical(unsigned us) {
    if (pthread_spin_lock(&spin)) return -1;
    int in = ++spin_inside;
    if (in > spin_max_inside) spin_max_inside = in;
    if (us) usleep(us);
    spin_total++;
    spin_inside--;
    return pthread_spin_unlock(&spin);
}
long cpt_spin_total(void) { return spin_total; }
int cpt_spin_max_inside(void) { return spin_max_inside; }
