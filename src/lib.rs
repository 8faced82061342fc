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
//! ## Soundness contract
//! A coroutine that has started stays on the executor it started on (its
//! *home*), so `thread_local!` keeps its meaning inside a coroutine; see
//! [`RuntimeBuilder::allow_migration`] for the opt-in and why it is
//! `unsafe`.

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "the `coroutines` crate supports only x86-64 Linux (its context switch and preemption are \
     written for that ABI and kernel)"
);

mod arch;
mod config;
mod coroutine;
mod interpose;
mod reactor;
mod sched;
mod stack;
mod stats;
mod sys;

pub use config::{Config, ConfigError, RuntimeBuilder};
pub use coroutine::{
    current, park, park_timeout, run, sleep, spawn, try_current, yield_now, Builder, Coroutine, CoroutineId,
    JoinHandle,
};
pub use stats::{stats, ExecutorStats, Stats};
