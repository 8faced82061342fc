//! Preemption: a monitor thread time-slices CPU-bound coroutines with a
//! per-executor SIGURG.
//!
//! # Problem
//! A coroutine that computes without calling into the runtime would keep
//! its executor forever and starve every sibling queued there. We interrupt
//! it asynchronously, but only where that cannot break code that was never
//! written for it (locks held for the thread, libc internals, std's
//! reentrant stdout lock, panics in flight).
//!
//! # States of a coroutine, as seen here
//! | state                    | runs user code | owns its stack | on a queue | who touches it |
//! |--------------------------|----------------|----------------|------------|----------------|
//! | running                  | yes            | yes            | no         | its executor (and that executor's signal handler) |
//! | preempted (full context) | no             | save area + fake frame on it | yes (back of `ready`) | the executor that pops it |
//! | suspended (voluntary)    | no             | switch frame on it | maybe  | as sched/ says |
//!
//! # Protocol (monitor → SIGURG → handler → scheduler → resume)
//! 1. Executors publish, without locks or clocks: `current` (Release store
//!    before switching in), `switches` (bumped per switch-in), `no_preempt`
//!    (runtime/hook code and [`no_preempt`] raise it). The monitor samples
//!    them and remembers when each run (a (switches, current) pair) began:
//!    the time of its own signal when the previous run ended by our
//!    preemption (switches advanced by one), else the first sighting, a
//!    lower bound. It sleeps until the earliest of: a run reaching its
//!    slice, a timer deadline (it fires timers while executors are busy; a
//!    timer armed earlier wakes it), a woken coroutine's granularity, or
//!    slice/2 (at least 50 µs) to sight runs begun by voluntary switches —
//!    those last 1 to 1.5 slices. (A fixed slice/4 tick was measured at 4%
//!    of a core on this VM: BENCHMARKS.md.)
//! 2. Handshake (Go's preemptM): when a run outlasted the slice and other
//!    work waits for that executor (its ready queue, inbox or fresh deque,
//!    the global injector), or a freshly woken coroutine waits in its inbox
//!    and the run reached `MIN_GRANULARITY` (wake-up preemption), the
//!    monitor CASes `preempt_pending` false → true and only then sends
//!    `tgkill(pid, tid, SIGURG)`. A failed CAS means a request is still
//!    in flight: nothing is sent. The handler consumes the request with one
//!    swap (true → false). The "ack" is the switch counter: a preemption
//!    shows as a new run at the next tick; a deferral shows as a change of
//!    the executor's deferral counters, after which the monitor backs off
//!    2, 4, 8, 16 ticks.
//! 3. The handler (SA_SIGINFO | SA_ONSTACK | SA_RESTART; on the executor's
//!    sigaltstack) recognises its own signal: `si_code == SI_TKILL`,
//!    `si_pid == getpid()`, this thread is an executor and its request was
//!    pending. Anything else goes to the action installed before ours.
//! 4. At a safe point (below) it copies the interrupted context from the
//!    ucontext — 15 GPRs, RIP, RFLAGS, RSP and the kernel's xsave image
//!    (size and feature mask from `_fpx_sw_bytes`) — onto the coroutine's
//!    own stack below its red zone, writes a fake switch frame below that
//!    whose return address is `coroutines_restore_full` (asm/resume.S),
//!    stores the frame address in `Inner::sp`, sets `action = Preempted`,
//!    resets the kernel's FP image to the init state (the scheduler starts
//!    clean) and rewrites the ucontext: RSP = the scheduler's saved stack
//!    pointer, RIP = `coroutines_switch_restore`.
//! 5. The handler *returns*. sigreturn restores the signal mask and the
//!    sigaltstack state and lands the executor in the second half of the
//!    switch, popping the scheduler's frame: to `run_coroutine` this looks like
//!    an ordinary return from `arch::switch`. It requeues the coroutine at
//!    the back of `ready`.
//! 6. Resuming is the ordinary `arch::switch` to `Inner::sp`; it "returns"
//!    into `coroutines_restore_full`, which xrstors, reloads every GPR,
//!    switches RSP to two slots just below the red zone (RFLAGS, RIP) and
//!    ends with `popfq; ret 128`.
//!
//! # Safe points (checked by `signal::preempt_here` in this order, except
//! that the room part of 3 is checked after 6, once the FP image size is
//! known; like Go's isAsyncSafePoint. A failed check is a deferral counted
//! by reason, `stats().preempt.deferred_*`)
//! 1. The executor runs a coroutine (`current` non-null), not its scheduler.
//! 2. `no_preempt == 0`: not in runtime code (scheduler locks, queue
//!    operations, the reactor), not in a hook (so no EINTR from us in a
//!    hooked call), not in a user's [`no_preempt`] section.
//! 3. RSP lies in the coroutine's stack with room for the save area
//!    (~2.9 KiB with AVX-512) plus a margin; and the handler itself does
//!    *not* run on that stack (a foreign handler without SA_ONSTACK chained
//!    to us: the kernel frame is there; the monitor then adds SA_ONSTACK).
//! 4. RIP is not in the switch or full-restore assembly (half-switched
//!    stacks).
//! 5. RIP is in the executable's own text: never libc (malloc arena locks,
//!    stdio locks), ld.so (dl locks), the vdso or another shared object.
//! 6. The coroutine is not panicking: std counts panics per thread, and a
//!    sibling panicking while this one unwinds would abort the process.
//! 7. No word of the live stack (RSP to the stack top) and not RIP points
//!    into a no-preempt zone: other objects' text (return addresses of
//!    libc callbacks such as qsort's comparator, dl_iterate_phdr's), std's
//!    stdout/stderr printing (a coroutine preempted in `println!` holds
//!    stdout's reentrant lock *for the thread*: a sibling would re-enter it
//!    and interleave lines or hit "already borrowed"), std's panic and
//!    backtrace machinery (`deferred_zone`); and C code linked into the
//!    executable — allocators like mimalloc/jemalloc with per-thread heaps,
//!    bundled C libraries holding pthread mutexes — unless on the
//!    allow-list of reentrant C loops (`deferred_c_code`; a Rust callback
//!    called from C has C's return address on the stack, so it counts as
//!    inside C). Zones come from the loaded objects' program headers and
//!    the executable's `.symtab` (zones.rs: which symbols are C). The scan
//!    is conservative, and stale words in live frames are common (old
//!    return addresses into `malloc`/`free` left in uninitialised slots:
//!    one in a long-lived frame made a coroutine unpreemptible for good),
//!    so a hit is confirmed by a precise walk of the frames with the
//!    executable's `.eh_frame` (walk.rs); only a walk that cannot finish
//!    keeps the conservative answer (`stats().preempt.scan_hits_cleared`
//!    counts the stale hits). Without a `.symtab` nothing is preempted
//!    (the monitor sends nothing).
//!
//! Deferrals are not all equal. Condition 2 (hook or runtime code): the
//! monitor sends no signal, and the handler declines, but both set
//! `PreemptCounters::yield_wanted`; the coroutine then yields when its
//! level drops back to 0 (sched/level.rs, `switch::safe_point_yield`,
//! which checks 1, 3, 6 and 7 itself): every hook's exit is a safe point,
//! so a coroutine living in hooked calls that never wait is still
//! preempted. Condition 5 (libc): Rust code calling libc often is in
//! libc briefly each time, so the handler itself re-arms the request and
//! the executor's own one-shot timer 20 µs ahead, up to 50 times per run
//! (retry.rs: the kernel signals the executor directly, no thread needs
//! scheduling); after that the monitor retries from 100 µs, doubling up
//! to a tick. Other deferrals back off 2-16 ticks (C code of the
//! executable can run long). Deferrals for foreign code, C code and std
//! zones also arm a *return hijack* (hijack.rs): the innermost return
//! into preemptible Rust code is rewritten to a trampoline that takes the
//! same safe point as a hook's exit, so code that is nearly always inside
//! libc is preempted at its next return from it; no timer retries are
//! armed while a hijack is pending.
//!
//! Recognising our signal (step 3 of the protocol) also accepts
//! `si_code == SI_TIMER` with the retry timers' `sigev_value` cookie.
//!
//! # Why SIGURG (Go's signal_unix.go criteria)
//! It is passed through by debuggers by default, it is not used by libc,
//! it is not a signal programs commonly use for their own purposes, and
//! spurious instances must be tolerated anyway (it also reports TCP urgent
//! data): its default action is to ignore it.
//!
//! # Rejected alternatives
//! - Running the scheduler inside the handler (Go rejected it too): the
//!   thread would stay "in a signal handler" with SIGURG blocked and the
//!   altstack marked in use until some later sigreturn.
//! - Go's trampoline (redirect RIP to asm that saves on the coroutine
//!   stack): needs a per-thread slot for the original RIP readable from
//!   asm, and pushing it would clobber the red zone Rust code relies on.
//! - Reading a clock on every switch: the monitor does the timekeeping.
//! - A timer signal per executor (timer_create): wakes idle executors and
//!   cannot see whether other work waits.
//!
//! # Invariants (and where they hold)
//! - The save area and fake frame lie below `RSP - 128 - 16` of the
//!   interrupted coroutine, above `stack_lo + margin` (`preempt_here`).
//! - `Inner::sp` of a coroutine is written only on its executor's thread
//!   (the handler runs there).
//! - The monitor signals only executors (tgkill with their tid), never
//!   plain threads, and never an executor whose `no_preempt > 0` (it asks
//!   for a yield at the level's drop instead).
//! - Nothing reachable from the handler allocates, locks or panics
//!   ("Signal context:" docs in signal.rs, ucontext.rs, zones.rs).
//! - The monitor sleeps (futex, no timeout) when every executor is parked;
//!   an executor leaving its parker wakes it (`executor_woke`, off the
//!   switch path: the switch path only stores `current` and `switches`).
//! - Known limits: a coroutine within ~4 KiB of its stack limit is not
//!   preempted; without the executable's `.symtab` no coroutine is
//!   preempted (a warning is printed once); a long-running C function not
//!   on the allow-list keeps its executor for its whole duration; a std `Mutex` held by a
//!   preempted coroutine, wanted by a sibling on the same executor, blocks
//!   that executor's thread in FUTEX_WAIT while the holder waits in its
//!   queue: a deadlock until the futex hooks (interpose/futex.rs)
//!   park the sibling instead. Preemption needs those hooks.

mod guard;
pub(crate) mod hijack;
mod monitor;
pub(crate) mod retry;
mod signal;
pub(crate) mod ucontext;
pub(crate) mod walk;
pub(crate) mod zones;

pub use guard::no_preempt;
pub(crate) use monitor::{executor_woke, prompt_work, start, timer_armed};
#[allow(unused_imports)]
pub(crate) use signal::Defer;
pub(crate) use signal::PreemptCounters;
