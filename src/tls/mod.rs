//! Thread-local machinery: what makes a coroutine look like a thread of
//! its own to every library.
//!
//! Two modes, chosen once at start (start.rs, from
//! `COROUTINES_THREAD_LOCALS`) before any executor runs:
//! - *per-coroutine* (`coroutine`, the default when glibc 2.36 and
//!   FSGSBASE are there): `block.rs` builds each coroutine a TLS block of
//!   its own, loaded with its stack at every switch (discovery, building,
//!   the carrier-bound words written at switch-in, destructors at exit,
//!   block reuse); `pool.rs` lends the per-thread ids of libraries whose
//!   thread tables are bounded (tracing-subscriber's span registry) only
//!   while a coroutine runs.
//! - *shared* (`shared`, or the fallback): the coroutines of one executor
//!   share its thread-locals; `identity.rs` swaps std's thread identity
//!   (`CURRENT`, `ID` and a few caches) at every switch, and `alias.rs`
//!   runs the executor on a stack whose static TLS can be mapped a second
//!   time, giving a coroutine its own thread-local *addresses* (alias
//!   windows); it also hooks `fork` on executors to keep the child private.
//!
//! The scheduler (sched/) calls in at every switch and at start of an
//! executor thread; nothing here schedules.

pub(crate) mod alias;
pub(crate) mod block;
pub(crate) mod identity;
pub(crate) mod pool;

pub(crate) use block::{
    copy_malloc_words, demote_own_malloc, enable, enable_own_malloc, enabled, give_own_malloc,
    layout, own_malloc, read_fs_base, release_own_malloc, run_exit_destructors, Snapshot,
};
