//! Parking an idle executor: a futex word per executor.
//!
//! States of `Parker::state`: `AWAKE` (running the loop), `SLEEPING`
//! (about to wait or waiting in FUTEX_WAIT), `NOTIFIED` (someone handed it
//! work after it decided to sleep). Only the owner sets `SLEEPING` and
//! `AWAKE`; anyone may swap `SLEEPING -> NOTIFIED` and must then FUTEX_WAKE.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::sys;

const AWAKE: u32 = 0;
const SLEEPING: u32 = 1;
const NOTIFIED: u32 = 2;

#[derive(Default)]
pub(crate) struct Parker {
    state: AtomicU32,
}

impl Parker {
    /// Owner: announce the intent to sleep. The caller must recheck for
    /// work after this (SeqCst pairs with the fence in `unpark`'s callers).
    pub(crate) fn prepare(&self) {
        self.state.store(SLEEPING, Ordering::SeqCst);
    }

    /// Owner: sleep until unparked or `timeout`, unless already notified.
    pub(crate) fn wait(&self, timeout: Option<Duration>) {
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
        if self.state.swap(NOTIFIED, Ordering::AcqRel) == SLEEPING {
            sys::futex_wake(&self.state, 1);
            true
        } else {
            false
        }
    }

    pub(crate) fn is_sleeping(&self) -> bool {
        self.state.load(Ordering::SeqCst) == SLEEPING
    }
}
