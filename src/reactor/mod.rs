//! Reactor: what wakes parked coroutines from outside the run queues —
//! timers and file-descriptor readiness (epoll).
//!
//! Timers (timer.rs) live in one ordered map keyed by (deadline, sequence),
//! guarded by a mutex held for a few map operations only. Who fires them:
//! - a busy executor, every `GLOBAL_EVERY`-th scheduling
//!   pick (sched/run.rs) and whenever it looks
//!   for work (cheap: one atomic load of the earliest deadline),
//! - an idle executor holding the *sleeper role* (at most one at a time),
//!   which sleeps with a timeout equal to the earliest deadline; adding an
//!   earlier timer wakes it, adding a timer when nobody holds the role
//!   wakes an idle executor.
//! - the monitor thread, when every executor is busy running coroutines
//!   that do not switch (CPU hogs), so a sleeper wakes on time anyway.
//!
//! fd readiness: fd_state.rs (the fd kinds, flags and transitions),
//! registration.rs (per-fd table, readiness states, wait protocol,
//! stale-event rule), desc.rs (fd numbers sharing a file description)
//! and epoll.rs (the epoll set, who polls,
//! the eventfd wake-up of an executor blocked in epoll).

mod desc;
mod epoll;
pub(crate) mod fd_state;
pub(crate) mod registration;
mod timer;

pub(crate) use epoll::{
    deregister, own_fd, park_in_epoll, poll_nonblocking, private_after_fork, register, wake_poller,
    COUNTERS,
};
pub(crate) use timer::{set_armed_hook as set_timer_armed_hook, set_spread_sleeps, timers, Waker};
