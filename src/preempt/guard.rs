//! The user's no-preempt section.

/// Runs `f` with preemption disabled for the calling coroutine (on a plain
/// thread it just runs `f`).
///
/// Preemption is transparent for ordinary code, including std's Mutex and
/// everything that takes its locks in libc. Use this for the rare code that
/// holds something *for the thread* that a sibling coroutine on the same
/// executor might take next:
/// - a `thread_local!` `RefCell` borrowed across a long computation (a
///   sibling borrowing it would panic with "already borrowed");
/// - a reentrant lock held across statements, such as a `StdoutLock` from
///   `std::io::stdout().lock()` used for several `writeln!` (a sibling's
///   `println!` re-enters it and interleaves lines);
/// - a non-reentrant spin lock or other lock without a waiter queue that a
///   sibling would spin on forever.
///
/// The section should be short: the coroutine keeps its executor until `f`
/// returns (a coroutine that parks or yields inside `f` still gives the
/// executor away; the section resumes with it).
///
/// ```
/// use std::cell::RefCell;
/// thread_local!(static SCRATCH: RefCell<Vec<u64>> = RefCell::new(Vec::new()));
/// let sum = coroutines::spawn(|| {
///     coroutines::no_preempt(|| {
///         SCRATCH.with(|s| {
///             let mut s = s.borrow_mut();
///             s.clear();
///             s.extend(0..1000u64);
///             s.iter().sum::<u64>()
///         })
///     })
/// })
/// .join()
/// .unwrap();
/// assert_eq!(sum, 499_500);
/// ```
pub fn no_preempt<R>(f: impl FnOnce() -> R) -> R {
    let _guard = crate::sched::NoPreempt::new();
    f()
}
