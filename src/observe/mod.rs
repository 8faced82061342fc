//! Observability: what every coroutine is doing ([`dump`]), and the
//! pieces it is built from.
//!
//! - `wait.rs`: the wait reason each park records in its coroutine (three
//!   words and a coarse timestamp per park; nothing on other paths);
//! - `registry.rs`: every live coroutine, sharded, for the dump to walk;
//! - `dump.rs`: [`dump`] and its types: states, wait reasons with their
//!   detail (fd and peer, futex address, deadline, joined coroutine, helper
//!   job), lock holders and deadlock cycles, backtraces of parked
//!   coroutines (claimed while their stack is walked);
//! - `signal.rs`: the dump on a signal (`COROUTINES_DUMP_SIGNAL`);
//! - `unwind.rs`: walks a stack that is *not* the calling thread's (a
//!   parked coroutine's, a blocked executor's) from saved registers, with
//!   the `.eh_frame` unwind tables of the loaded objects (gimli): std's
//!   `Backtrace` and `_Unwind_Backtrace` only walk the calling thread;
//! - `symbol.rs`: the public [`Frame`] type and symbolization (the
//!   executable's `.symtab`, `dladdr` for shared objects);
//! - `blocking.rs`: the blocking report the detector (sched/blocked.rs)
//!   makes when an executor is stuck in a call nothing hooks.
//! - `trace.rs`: the wake-to-run latency histogram, the schedule trace
//!   (`COROUTINES_TRACE`) and the execution trace (`COROUTINES_TRACE_FILE`,
//!   [`write_trace`]), all off unless asked for.
//!
//! CPU time per coroutine is sampled: the monitor adds each tick's length
//! to the executor running a coroutine (`run_ns`), and the coroutine
//! switching out takes the growth since it switched in (sched/switch.rs
//! `account_out`): no clock read per switch.

pub(crate) mod blocking;
pub(crate) mod dump;
pub(crate) mod registry;
pub(crate) mod signal;
pub(crate) mod symbol;
pub(crate) mod trace;
pub(crate) mod unwind;
pub(crate) mod wait;

pub use blocking::{blocking_reports, BlockingReport};
pub use dump::{dump, CoroutineInfo, Dump, DumpOptions, ExecutorInfo, State, Wait};
pub use symbol::Frame;
pub use trace::{write_trace, LatencyHistogram, TRACE_CAPACITY};
