//! Reactor: what wakes parked coroutines from outside the run queues —
//! timers now, file-descriptor readiness (epoll) with the I/O hooks.
//!
//! Timers (timer.rs) live in one ordered map keyed by (deadline, sequence),
//! guarded by a mutex held for a few map operations only. Who fires them:
//! - a busy executor, every 61st scheduling pick and whenever it looks
//!   for work (cheap: one atomic load of the earliest deadline),
//! - an idle executor holding the *sleeper role* (at most one at a time),
//!   which sleeps with a timeout equal to the earliest deadline; adding an
//!   earlier timer wakes it, adding a timer when nobody holds the role
//!   wakes an idle executor.
//! - the monitor thread, when every executor is busy running coroutines
//!   that do not switch (CPU hogs), so a sleeper wakes on time anyway.

mod timer;

pub(crate) use timer::{timers, Waker};
