//! Scheduler: executors, run queues, parking, spawning and waking.
//!
//! Problem: run many coroutines on a few OS threads (executors), keep every
//! executor busy while work exists, and let idle executors sleep (an idle
//! runtime uses no CPU) without ever losing a wake-up.
//!
//! Queues, per executor:
//! - `fresh` (`crossbeam_deque::Worker`, FIFO): coroutines that never ran.
//!   Other executors steal from it freely (through its `Stealer`).
//! - `ready` (a plain `VecDeque`, owned by the executor thread): started
//!   coroutines that yielded, were preempted or were woken on this
//!   executor. Never stolen unless migration is on.
//! - `inbox` (`crossbeam_deque::Injector`): started coroutines woken from
//!   another thread; only the owner drains it (into `ready`).
//!
//! and one global `Injector` for coroutines spawned outside any executor.
//!
//! Placement (soundness first, see DESIGN.md): a coroutine that has started
//! stays on its executor (`home`), because LLVM may keep the address of a
//! thread-local across any call, and a moved coroutine would then touch
//! another thread's `thread_local!` from safe code. With migration opted in
//! (`unsafe RuntimeBuilder::allow_migration`, `COROUTINES_MIGRATE=1`),
//! started coroutines go to the stealable `fresh` deque and the global
//! injector like new ones.
//!
//! Run loop order (worker.rs): right after a preemption, a never-run
//! coroutine if this executor is not busier than the others (spreads CPU
//! hogs evenly at spawn time); every 61st pick looks at the global injector
//! first (so outside spawns are not starved by a busy executor); then
//! inbox -> front of ready (woken coroutines run before CPU hogs: low
//! wake-up latency), alternating with fresh every 8th pick so neither class
//! starves the other; then the global injector; then stealing from other
//! executors' `fresh`; then due timers; then sleep (idle.rs).
//!
//! Sleeping protocol (no lost wake-ups), mirror sides:
//! 1. A pusher publishes work (deque push), issues a SeqCst fence, then
//!    reads the sleeper count / the target's parker state and wakes one.
//! 2. An executor going to sleep marks itself sleeping (SeqCst RMW), issues
//!    a SeqCst fence, rechecks every queue, and only then futex-waits on
//!    its parker word (which the waker changes before FUTEX_WAKE).
//! Either the pusher sees the sleeper, or the sleeper sees the work.
//!
//! Rejected: one global run queue (contention on every switch), stealing
//! started coroutines by default (unsound with thread-locals, above),
//! spinning idle executors (burns CPU on an idle runtime).

mod alias;
mod blocked;
mod identity;
mod idle;
mod runtime;
mod tls;
mod worker;

#[allow(unused_imports)]
pub(crate) use alias::windows_created as tls_windows;
pub(crate) use blocked::{check_blocked, BLOCKED_NS, BLOCKED_SEEN, EXTRA_RETIRED, EXTRA_STARTED};
pub(crate) use identity::Ident;
pub(crate) use runtime::Runtime;
pub(crate) use runtime::{
    runtime, schedule, spawn_task, start_with, try_runtime as try_runtime_pub,
};
pub(crate) use tls::{enabled as tls_enabled, run_exit_destructors as run_tls_destructors};
pub(crate) use worker::current_stack_hi;
pub(crate) use worker::fork_on_executor;
#[allow(unused_imports)]
pub(crate) use worker::{
    current_executor_raw, current_executor_shared, Action, Executor, ExecutorShared,
};
pub(crate) use worker::{
    current_id, current_task, in_coroutine, in_coroutine_user_code, is_own_std_parker,
    park_current, yield_now_fast, NoPreempt, WaitReason,
};
