//! Scheduler: executors, run queues, parking, spawning and waking.
//!
//! Problem: run many coroutines on a few OS threads (executors), keep every
//! executor busy while work exists, and let idle executors sleep (an idle
//! runtime uses no CPU) without ever losing a wake-up.
//!
//! Queues, per executor:
//! - `fresh` (`crossbeam_deque::Worker`, FIFO): coroutines that never ran.
//!   Other executors steal from it freely (through its `Stealer`).
//! - with migration (the default with per-coroutine thread-locals):
//!   `runq` (`crossbeam_deque::Worker`, FIFO, stealable): started
//!   coroutines that yielded or were preempted here; `inbox`
//!   (`crossbeam_deque::Injector`, stealable): coroutines woken by code on
//!   this executor, run before `runq`'s (low wake-up latency) and taken by
//!   idle executors (a woken coroutine runs on whichever is free).
//! - without migration: `ready` (a plain `VecDeque`, owned by the executor
//!   thread): started coroutines that yielded, were preempted or were
//!   woken here, never stolen; `inbox` holds coroutines woken from another
//!   thread, drained by the owner to the front of `ready`.
//!
//! and one global `Injector` for coroutines spawned outside any executor
//! (and, with migration, woken from outside any executor).
//!
//! Placement: with per-coroutine thread-locals (tls/block.rs) a coroutine
//! carries its thread-local storage, so a thread-local address it holds
//! stays valid wherever it resumes and migration is sound: it is the
//! default. With shared thread-locals a started coroutine stays on its
//! executor (`home`), because LLVM may keep the address of a thread-local
//! across any call, and a moved coroutine would then touch another
//! thread's `thread_local!` from safe code; migration is then an `unsafe`
//! opt-in (`RuntimeBuilder::allow_migration`, `COROUTINES_MIGRATE=1`).
//! `COROUTINES_MIGRATE=0` / `RuntimeBuilder::pin_coroutines` pins.
//!
//! Run loop order: stated once, in run.rs (with the fairness constants
//! `GLOBAL_EVERY` and `FRESH_EVERY`).
//!
//! Sleeping protocol (no lost wake-ups), mirror sides:
//! 1. A pusher publishes work (deque push), issues a SeqCst fence, then
//!    reads the sleeper count / the target's parker state and wakes one.
//! 2. An executor going to sleep marks itself sleeping (SeqCst RMW), issues
//!    a SeqCst fence, rechecks every queue, and only then futex-waits on
//!    its parker word (which the waker changes before FUTEX_WAKE).
//!
//! Either the pusher sees the sleeper, or the sleeper sees the work.
//!
//! Rejected: one global run queue (contention on every switch), stealing
//! started coroutines while thread-locals are shared (unsound, above),
//! spinning idle executors (burns CPU on an idle runtime).
//!
//! Files: `executor.rs` (executor state, accessors, queue operations),
//! `level.rs` (the no-preempt level and its protocol), `spare.rs` (the
//! spare executor for coroutines woken while every executor is busy),
//! `switch.rs`
//! (suspend, the direct yield/park/start paths, switch-in), `run.rs` (the
//! run loop), `thread.rs` (an executor's thread: start, retirement, fork
//! hook), `idle.rs` (the parker), `blocked.rs` (the blocked-executor
//! detector), `runtime.rs` (settings, launch, spawn/wake entry points).
//! The runtime is started by the composition root (start.rs), which hands
//! the scheduler plain `Settings`; the thread-local machinery it calls at
//! every switch is `crate::tls`.

mod blocked;
mod executor;
mod idle;
mod level;
mod run;
mod runtime;
mod spare;
mod switch;
mod thread;

pub(crate) use blocked::{blocked_now, start_detector};
pub(crate) use blocked::{check_blocked, BLOCKED_NS, BLOCKED_SEEN, EXTRA_RETIRED, EXTRA_STARTED};
pub(crate) use executor::{carrier_tp_raw, current_name_raw, executor_slot_addr};
pub(crate) use executor::{
    current_coroutine, current_has_own_malloc, current_id, current_stack_hi, in_coroutine,
    in_coroutine_user_code, is_own_std_parker, WaitReason,
};
#[allow(unused_imports)]
pub(crate) use executor::{
    current_executor, current_executor_raw, current_executor_shared, Action, Executor,
    ExecutorShared,
};
pub(crate) use level::{current as preempt_level, NoPreempt};
/// (The name the rest of the crate has used for `try_runtime`.)
pub(crate) use runtime::try_runtime as try_runtime_pub;
pub(crate) use runtime::{schedule, spawn_coroutine, try_runtime, Runtime, Settings};
pub(crate) use spare::kick_spare;
pub(crate) use switch::{hijack_safe_point, park_current, yield_now_fast};
pub(crate) use thread::{fork_child, fork_on_executor, install_fork_child_handler};
