//! Parking an idle executor: a futex word per executor.
//!
//! States of `Parker::state`: `AWAKE` (running the loop), `SLEEPING`
//! (about to wait or waiting in FUTEX_WAIT), `NOTIFIED` (someone handed it
//! work after it decided to sleep). Only the owner sets `SLEEPING` and
//! `AWAKE`; anyone may swap `SLEEPING -> NOTIFIED` and must then FUTEX_WAKE.
//!
//! I/O: a sleeping executor may block in the reactor's epoll instead of
//! the futex (at most one at a time, the *poller*; reactor/epoll.rs).
//! Handshake so an unpark is never lost while it sits in epoll:
//! 1. sleeper: `polling = true` (SeqCst), then re-read `state` (SeqCst);
//!    epoll-wait only if still `SLEEPING`.
//! 2. waker: swap `NOTIFIED` (SeqCst RMW), then read `polling` (SeqCst);
//!    if set, write the reactor's eventfd.
//!
//! In the single SeqCst order either the sleeper sees `NOTIFIED` or the
//! waker sees `polling` and the eventfd ends the epoll wait.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use crate::sys;

const AWAKE: u32 = 0;
const SLEEPING: u32 = 1;
const NOTIFIED: u32 = 2;

#[derive(Default)]
pub(crate) struct Parker {
    state: AtomicU32,
    /// The owner is (about to be) blocked in epoll (handshake above).
    polling: AtomicBool,
}

impl Parker {
    /// Owner: announce the intent to sleep. The caller must recheck for
    /// work after this (SeqCst pairs with the fence in `unpark`'s callers).
    pub(crate) fn prepare(&self) {
        self.state.store(SLEEPING, Ordering::SeqCst);
    }

    /// Owner (executor `index`): sleep until unparked or `timeout`, unless
    /// already notified; in epoll if it gets the poller role.
    pub(crate) fn wait(&self, index: usize, timeout: Option<Duration>) {
        if self.state.load(Ordering::Acquire) == SLEEPING {
            let still = || self.state.load(Ordering::SeqCst) == SLEEPING;
            if !crate::reactor::park_in_epoll(index, &self.polling, still, timeout) {
                sys::futex_wait(&self.state, SLEEPING, timeout);
            }
        }
        self.state.store(AWAKE, Ordering::Release);
    }

    /// Owner: as `wait`, always on the futex (never the epoll poller; the
    /// spare executor, sched/spare.rs).
    pub(crate) fn wait_futex(&self, timeout: Option<Duration>) {
        if self.state.load(Ordering::Acquire) == SLEEPING {
            sys::futex_wait(&self.state, SLEEPING, timeout);
        }
        self.state.store(AWAKE, Ordering::Release);
    }

    /// Owner: give up the intent to sleep (work was found on recheck).
    pub(crate) fn cancel(&self) {
        self.state.store(AWAKE, Ordering::Release);
    }

    /// Anyone: wake the owner if it sleeps or is about to. Returns whether
    /// it was sleeping. The caller published its work before (with a
    /// SeqCst fence between the publication and this call).
    pub(crate) fn unpark(&self) -> bool {
        if self.state.load(Ordering::SeqCst) != SLEEPING {
            return false;
        }
        if self.state.swap(NOTIFIED, Ordering::SeqCst) == SLEEPING {
            sys::futex_wake(&self.state, 1);
            if self.polling.load(Ordering::SeqCst) {
                crate::reactor::wake_poller();
            }
            true
        } else {
            false
        }
    }

    pub(crate) fn is_sleeping(&self) -> bool {
        self.state.load(Ordering::SeqCst) == SLEEPING
    }
}
