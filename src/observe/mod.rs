//! Observability: looking at coroutines and executors from the outside.
//!
//! - `unwind`: walks a stack that is *not* the calling thread's (a
//!   suspended coroutine's, a blocked executor's) from saved registers,
//!   with the `.eh_frame` unwind tables of the loaded objects (gimli). std's
//!   `Backtrace` and `_Unwind_Backtrace` only walk the calling thread.
//! - `symbol`: the public [`Frame`] type and symbolization of program
//!   counters (the executable's `.symtab`, `dladdr` for shared objects).
//! - `blocking`: the blocking report the detector (sched/blocked.rs) makes
//!   when an executor is stuck in a call nothing hooks.
//!
//! Nothing here runs on a hot path: only when something is inspected.

pub(crate) mod blocking;
pub(crate) mod symbol;
pub(crate) mod unwind;

pub use blocking::{blocking_reports, BlockingReport};
pub use symbol::Frame;
