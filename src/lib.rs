//! # coroutines
//!
//! Preemptive, stackful coroutines for Rust on x86-64 Linux. Replace
//! `std::thread::spawn` with [`coroutines::spawn`](spawn) and the program
//! keeps working on a few OS threads.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! let hits = Arc::new(AtomicUsize::new(0));
//! let handles: Vec<_> = (0..1000)
//!     .map(|_| {
//!         let hits = hits.clone();
//!         coroutines::spawn(move || {
//!             coroutines::yield_now();
//!             hits.fetch_add(1, Ordering::Relaxed);
//!         })
//!     })
//!     .collect();
//! for h in handles {
//!     h.join().unwrap();
//! }
//! assert_eq!(hits.load(Ordering::Relaxed), 1000);
//! ```
//!
//! ## Glossary (one term each; no synonyms in the code)
//! - *coroutine*: a stackful task with its own mmap'd stack ([`spawn`]).
//! - *executor*: an OS thread running the scheduler loop; it runs one
//!   coroutine at a time.
//! - *scheduler context*: the executor's own stack, where it picks the next
//!   coroutine; coroutines switch back to it.
//! - *monitor*: the thread that time-slices CPU-bound coroutines and
//!   watches for blocked executors.
//! - *reactor*: what wakes parked coroutines: timers and fd readiness.
//! - *park / wake*: a coroutine leaves its executor until someone wakes it.
//!
//! In the code a coroutine held by a queue or a waker is a `CoroutineRef`
//! (often in a variable named `co`); the public configuration keeps the
//! familiar word *workers* for the executors started at runtime start
//! (`COROUTINES_WORKERS`, `RuntimeBuilder::workers`, `Stats::workers`).
//! `docs/design.md` has the longer glossary and the map of the crate.
//!
//! ## Preemption
//! A coroutine that computes without ever calling into the runtime does not
//! starve its siblings: a monitor thread interrupts it (SIGURG to its
//! executor) once it has run for a *time slice* while other coroutines wait
//! for that executor. A lone coroutine is never interrupted. A coroutine
//! woken by a timer (or another wake-up) waits at most about 100 µs behind
//! a CPU-bound sibling: woken coroutines go to the front of the queue and
//! preempt the running one early.
//!
//! - `COROUTINES_SLICE`: a duration with a unit (`500us`, `2ms`, `1s`;
//!   50 µs to 10 s) or `off`. Default `10ms`: the turn of a CPU-bound
//!   coroutine while other CPU-bound ones wait; one that never ran or
//!   yielded waits at most a fifth of it, a woken one 100 µs. Also
//!   [`RuntimeBuilder::time_slice`]. A bare number is refused.
//! - Preemption is delayed — never unsafe — while the coroutine is:
//!   in runtime code or a libc hook; executing code of libc or any other
//!   shared library (so malloc's and stdio's locks are never held by a
//!   preempted coroutine), or has such a frame on its stack (a callback from
//!   `qsort`, `dl_iterate_phdr`, ...); inside std's `print!`/`eprint!`
//!   machinery (so lines never interleave) or its panic/backtrace code;
//!   panicking; within about 4 KiB of its stack limit; inside
//!   [`no_preempt`]. The monitor retries a little later, backing off from a
//!   coroutine repeatedly found at such points; [`stats()`] counts the
//!   deferrals by reason ([`PreemptStats`]).
//! - Use [`no_preempt`] around code that holds something *for the thread*
//!   that a sibling on the same executor may take: a spin lock; with
//!   shared thread-locals also a `thread_local!` `RefCell` borrow or a
//!   `StdoutLock` kept across several writes. Ordinary locks (std's
//!   `Mutex`) need nothing.
//! - Never inside C code linked into the executable (an allocator such as
//!   mimalloc or jemalloc, a bundled C library: not reentrant, may hold
//!   locks), nor while such a frame is on the stack (a Rust callback called
//!   from C), except for an allow-list of reentrant C loops (zlib by
//!   default; [`RuntimeBuilder::preempt_c`], `COROUTINES_PREEMPT_C`).
//! - The executable's symbol table is used to tell C code from Rust code
//!   and to find std's printing and panic code: do not strip it
//!   (`strip = "debuginfo"` is fine; debug info is not needed). Without it
//!   preemption is disabled, with one line on stderr.
//! - Signals: only executor threads receive the runtime's SIGURG; plain
//!   threads of the process never see it. Every SIGURG that is not the
//!   runtime's (TCP urgent data, `kill -URG`) is passed to the handler
//!   installed before the runtime started. A handler registered *after*
//!   start (e.g. through `signal-hook`) runs first and also sees the
//!   runtime's own signals (`si_code == SI_TKILL`, `si_pid` = our pid);
//!   the runtime adds `SA_ONSTACK` to such a handler so that the chain
//!   runs on the executor's signal stack.
//!
//! ## Thread-locals and soundness
//! Each coroutine has its own thread-local storage (a TLS block built the
//! way glibc builds one for a thread, loaded with the coroutine's stack at
//! every switch): `thread_local!` values are per coroutine for all code,
//! their destructors run when the coroutine finishes, and a started
//! coroutine may resume on any executor (migration, on by default) with
//! every thread-local address it holds still valid. This needs glibc 2.36
//! and FSGSBASE, checked at start; otherwise (or with
//! `COROUTINES_THREAD_LOCALS=shared`, [`ThreadLocals::Shared`]) the
//! coroutines of one executor share its thread-locals and a started
//! coroutine stays on its executor — see
//! [`RuntimeBuilder::allow_migration`] for why migrating is `unsafe` then.
//!
//! ```
//! use std::cell::Cell;
//! thread_local!(static N: Cell<u32> = const { Cell::new(0) });
//! let hs: Vec<_> = (0..4)
//!     .map(|i| coroutines::spawn(move || {
//!         N.set(i);
//!         coroutines::yield_now(); // siblings set theirs meanwhile
//!         N.get()
//!     }))
//!     .collect();
//! for (i, h) in hs.into_iter().enumerate() {
//!     let got = h.join().unwrap();
//!     if coroutines::ThreadLocals::per_coroutine_active() {
//!         assert_eq!(got, i as u32); // each coroutine sees its own value
//!     }
//! }
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "the `coroutines` crate supports only x86-64 Linux (its context switch and preemption are \
     written for that ABI and kernel)"
);

mod arch;
mod config;
mod coroutine;
mod interpose;
pub mod observe;
mod preempt;
mod reactor;
mod sched;
mod stack;
mod start;
mod stats;
mod sys;
mod tls;

pub use config::{Config, ConfigError, MallocState, RuntimeBuilder, ThreadLocals};
pub use coroutine::{
    current, park, park_timeout, run, sleep, spawn, try_current, yield_now, Builder, Coroutine,
    CoroutineId, JoinHandle,
};
pub use observe::{blocking_reports, dump, write_trace, Dump, DumpOptions, LatencyHistogram, Wait};
pub use preempt::no_preempt;
pub use stats::{stats, ExecutorStats, PreemptStats, Stats};
