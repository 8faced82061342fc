//! The blocking report: which coroutine, which system call and which call
//! site blocked an executor, found without signalling the blocked thread
//! (a signal would turn its wait into EINTR inside C code that may not
//! retry).
//!
//! Two halves:
//! 1. On the detector (sched/blocked.rs `check_blocked`, once per blocked
//!    episode), [`capture`]: read `/proc/self/task/<tid>/syscall` (the
//!    system call number and arguments, stack pointer and instruction
//!    pointer of the blocked thread; `running` if it is on a CPU), copy up
//!    to [`STACK_COPY`] bytes of its stack from that stack pointer with
//!    `process_vm_readv` (EFAULT on an unmapped page ends the copy, never a
//!    fault), and note the coroutine id the executor published when it
//!    switched in (`ExecutorShared::current_id`). No lock, no loader call,
//!    no allocation beyond the copy: tens of microseconds, bounded by
//!    [`CAPTURE_BUDGET`] (the copy is skipped past it).
//! 2. On a helper thread (`coroutines-blocking`, started at the first
//!    report): unwind the *copy* (observe/unwind.rs; the copy cannot change
//!    under the unwinder), symbolize (which takes the loader lock in
//!    `dladdr`/`dl_iterate_phdr`, and parses the executable's symbol table
//!    the first time: milliseconds, hence not on the detector), keep the
//!    last [`KEEP`] reports for [`blocking_reports`], and with
//!    `COROUTINES_TRACE_BLOCKING=1` print one line per call site to stderr.
//!
//! The call site ("called from"): leading frames of libc and the other
//! system libraries, of the runtime itself and frames without a name are
//! skipped; the next [`CHAIN`] named frames (C functions linked into the
//! program count; the runtime's and std's closure-call and panic-catching
//! shims do not) are shown innermost first. A call site is printed once:
//! the key is the system call and the addresses of those frames.
//!
//! Every report is counted (`Stats::blocking_reports`), printed or not.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::symbol::{symbolize, Frame};
use super::unwind::{self, CopyMemory, Regs};
use crate::coroutine::CoroutineId;

/// Stack bytes copied from the blocked thread's stack pointer.
pub(crate) const STACK_COPY: usize = 128 * 1024;
/// Time after which `capture` skips the stack copy.
pub(crate) const CAPTURE_BUDGET: Duration = Duration::from_micros(300);
/// Reports kept for [`blocking_reports`].
pub(crate) const KEEP: usize = 16;
/// Named frames shown in the "called from" chain.
pub(crate) const CHAIN: usize = 3;
/// Frames unwound at most.
const MAX_FRAMES: usize = 64;

/// Blocking reports made (`Stats::blocking_reports`).
pub(crate) static REPORTS: AtomicU64 = AtomicU64::new(0);

/// An executor found blocked in a call nothing hooks, as the detector saw
/// it (see [`blocking_reports`]).
///
/// `Display` gives one line:
///
/// ```text
/// executor 1 blocked 52 ms in futex (called from sqlite3_step <- rusqlite::Statement::execute <- app::transfer) by coroutine #42; started executor 3
/// ```
#[derive(Clone, Debug)]
pub struct BlockingReport {
    /// Index of the blocked executor.
    pub executor: usize,
    /// The system call it was blocked in (`futex`, `flock`, `syscall 999`),
    /// or `running` (busy on a CPU: a long computation in C code, say) or
    /// `no syscall` (asleep outside a system call, e.g. in a page fault).
    pub syscall: String,
    /// How long it had been blocked when the detector reported it (since
    /// its switch counter last moved, as the detector sampled it).
    pub blocked_for: Duration,
    /// The blocked thread's stack, innermost first (empty when it was
    /// running: its registers cannot be read without stopping it).
    pub frames: Vec<Frame>,
    /// The coroutine that was running on it.
    pub coroutine: Option<CoroutineId>,
    /// Its name, if it has one and is in the registry of live coroutines
    /// (it is once it has suspended at least once).
    pub coroutine_name: Option<String>,
    /// The extra executor the detector started for the waiting work, if it
    /// started one (it may instead have woken an idle executor, or the
    /// waiting work may be pinned to the blocked one).
    pub started_executor: Option<usize>,
    /// When the report was made.
    pub at: Instant,
}

impl BlockingReport {
    /// The call site: up to three named frames below the system call,
    /// innermost first, skipping libc, the runtime and unnamed frames.
    pub fn call_site(&self) -> Vec<&Frame> {
        call_site(&self.frames)
    }
}

impl fmt::Display for BlockingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "executor {} blocked {} ms in {}",
            self.executor,
            self.blocked_for.as_millis(),
            self.syscall
        )?;
        let site = self.call_site();
        if !site.is_empty() {
            f.write_str(" (called from ")?;
            for (i, fr) in site.iter().enumerate() {
                if i > 0 {
                    f.write_str(" <- ")?;
                }
                f.write_str(fr.symbol.as_deref().unwrap_or("?"))?;
            }
            f.write_str(")")?;
        }
        match (&self.coroutine_name, self.coroutine) {
            (Some(n), Some(c)) => write!(f, " by coroutine '{n}' (#{})", c.as_u64())?,
            (None, Some(c)) => write!(f, " by coroutine #{}", c.as_u64())?,
            _ => {}
        }
        if let Some(e) = self.started_executor {
            write!(f, "; started executor {e}")?;
        }
        Ok(())
    }
}

/// The most recent blocking reports (up to 16), oldest first.
///
/// The detector makes one per *blocked episode*: an executor that runs a
/// coroutine made no switch for `COROUTINES_BLOCKED_AFTER` while work
/// waited for it, and its thread did not use the CPU meanwhile. Each names
/// the system call, the call site (a backtrace of the blocked thread taken
/// without stopping it) and the coroutine. Reports are completed on a
/// helper thread, so one appears a few milliseconds after the episode is
/// counted in [`stats`](crate::stats)`().blocking_reports`.
/// `COROUTINES_TRACE_BLOCKING=1` also prints each new call site to stderr.
pub fn blocking_reports() -> Vec<BlockingReport> {
    RECENT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect()
}

static RECENT: Mutex<VecDeque<BlockingReport>> = Mutex::new(VecDeque::new());

/// What the detector captured of a blocked executor.
pub(crate) struct Capture {
    executor: usize,
    /// Syscall number; None: `running` or not in a system call.
    nr: Option<i64>,
    state: &'static str,
    pc: u64,
    stack: CopyMemory,
    coroutine: Option<CoroutineId>,
    blocked_for: Duration,
    pub(crate) started_executor: Option<usize>,
    trace: bool,
    at: Instant,
}

/// Detector side (module doc, step 1). `tid`: the blocked executor's
/// thread; `coroutine`: the id it published at its last switch-in.
pub(crate) fn capture(
    executor: usize,
    tid: i32,
    coroutine: Option<CoroutineId>,
    blocked_for: Duration,
    trace: bool,
) -> Capture {
    let t0 = Instant::now();
    let mut c = Capture {
        executor,
        nr: None,
        state: "running",
        pc: 0,
        stack: CopyMemory {
            base: 0,
            bytes: Vec::new(),
        },
        coroutine,
        blocked_for,
        started_executor: None,
        trace,
        at: t0,
    };
    let Some((nr, sp, pc)) = read_syscall_file(tid) else {
        return c;
    };
    c.nr = nr;
    c.state = if nr.is_some() { "" } else { "no syscall" };
    c.pc = pc;
    if t0.elapsed() < CAPTURE_BUDGET && sp != 0 {
        let mut bytes = vec![0u8; STACK_COPY];
        let n = unwind::read_own(sp, &mut bytes);
        bytes.truncate(n);
        c.stack = CopyMemory { base: sp, bytes };
    }
    c
}

/// Parses `/proc/self/task/<tid>/syscall`: `nr a1 .. a6 sp pc` (hex),
/// `-1 sp pc` (blocked outside a system call) or `running` (None).
fn read_syscall_file(tid: i32) -> Option<(Option<i64>, u64, u64)> {
    use std::io::Read;
    let mut buf = [0u8; 256];
    let mut f = std::fs::File::open(format!("/proc/self/task/{tid}/syscall")).ok()?;
    let n = f.read(&mut buf).ok()?;
    parse_syscall_line(std::str::from_utf8(&buf[..n]).ok()?)
}

fn parse_syscall_line(s: &str) -> Option<(Option<i64>, u64, u64)> {
    let w: Vec<&str> = s.split_whitespace().collect();
    let hex = |x: &str| u64::from_str_radix(x.trim_start_matches("0x"), 16).ok();
    match w.as_slice() {
        ["-1", sp, pc] => Some((None, hex(sp)?, hex(pc)?)),
        [nr, _, _, _, _, _, _, sp, pc] => Some((Some(nr.parse::<i64>().ok()?), hex(sp)?, hex(pc)?)),
        _ => None,
    }
}

/// Name of an x86-64 system call number (the ones a blocked call is likely
/// to be in), else `syscall <nr>`.
pub(crate) fn syscall_name(nr: i64) -> String {
    let name = match nr {
        0 => "read",
        1 => "write",
        7 => "poll",
        17 => "pread64",
        18 => "pwrite64",
        19 => "readv",
        20 => "writev",
        23 => "select",
        34 => "pause",
        35 => "nanosleep",
        42 => "connect",
        43 => "accept",
        44 => "sendto",
        45 => "recvfrom",
        46 => "sendmsg",
        47 => "recvmsg",
        61 => "wait4",
        65 => "semop",
        68 => "msgsnd",
        69 => "msgrcv",
        72 => "fcntl",
        73 => "flock",
        74 => "fsync",
        75 => "fdatasync",
        128 => "rt_sigtimedwait",
        130 => "rt_sigsuspend",
        202 => "futex",
        220 => "semtimedop",
        230 => "clock_nanosleep",
        232 => "epoll_wait",
        247 => "waitid",
        257 => "openat",
        270 => "pselect6",
        271 => "ppoll",
        281 => "epoll_pwait",
        288 => "accept4",
        295 => "preadv",
        296 => "pwritev",
        299 => "recvmmsg",
        307 => "sendmmsg",
        327 => "preadv2",
        328 => "pwritev2",
        422 => "futex_waitv",
        441 => "epoll_pwait2",
        _ => return format!("syscall {nr}"),
    };
    name.to_string()
}

/// Libraries whose frames at the top of a blocked stack are the call's
/// plumbing, not its site.
fn is_system_object(o: &str) -> bool {
    [
        "libc.so",
        "libpthread.so",
        "ld-linux",
        "linux-vdso",
        "libgcc_s.so",
        "libdl.so",
        "librt.so",
    ]
    .iter()
    .any(|p| o.starts_with(p))
}

fn is_runtime_symbol(s: &str) -> bool {
    s.starts_with("coroutines::")
        || s.starts_with("<coroutines::")
        || s.starts_with("coroutines_")
        || crate::interpose::EXPORTED.contains(&s)
}

/// Closure-call shims and std's panic/backtrace wrappers between the
/// coroutine's entry and the user's code: never the call site.
fn is_plumbing(s: &str) -> bool {
    s.starts_with("core::ops::function::")
        || s.starts_with("std::panicking::")
        || s.starts_with("std::panic::")
        || s.contains("__rust_begin_short_backtrace")
}

fn call_site(frames: &[Frame]) -> Vec<&Frame> {
    frames
        .iter()
        .skip_while(|f| match (&f.object, &f.symbol) {
            (Some(o), _) if is_system_object(o) => true,
            (_, None) => true,
            (_, Some(s)) => is_runtime_symbol(s),
        })
        .filter(|f| {
            f.symbol
                .as_deref()
                .is_some_and(|s| !is_runtime_symbol(s) && !is_plumbing(s))
        })
        .take(CHAIN)
        .collect()
}

static WORKER: Mutex<Option<Sender<Capture>>> = Mutex::new(None);

/// Counts the report and hands the capture to the helper thread (module
/// doc, step 2), starting it the first time. Called by the detector.
pub(crate) fn submit(c: Capture) {
    REPORTS.fetch_add(1, Ordering::Relaxed);
    let mut w = WORKER.lock().unwrap_or_else(|e| e.into_inner());
    if w.is_none() {
        let (tx, rx) = channel::<Capture>();
        let spawned = std::thread::Builder::new()
            .name("coroutines-blocking".into())
            .spawn(move || {
                let mut seen = HashSet::new();
                for c in rx {
                    complete(c, &mut seen);
                }
            });
        if spawned.is_err() {
            return; // counted, not detailed
        }
        *w = Some(tx);
    }
    if let Some(tx) = w.as_ref() {
        let _ = tx.send(c);
    }
}

/// Helper side: unwind, symbolize, keep, maybe print.
fn complete(c: Capture, seen: &mut HashSet<(Option<i64>, Vec<usize>)>) {
    let frames = if c.stack.bytes.is_empty() {
        Vec::new()
    } else {
        let regs = Regs {
            rip: Some(c.pc),
            rsp: Some(c.stack.base),
            ..Regs::default()
        };
        symbolize(&unwind::unwind(regs, &c.stack, MAX_FRAMES))
    };
    let syscall = match c.nr {
        Some(nr) => syscall_name(nr),
        None => c.state.to_string(),
    };
    let r = BlockingReport {
        executor: c.executor,
        syscall,
        blocked_for: c.blocked_for,
        frames,
        coroutine: c.coroutine,
        coroutine_name: c
            .coroutine
            .and_then(|id| super::registry::name_of(id.as_u64().get())),
        started_executor: c.started_executor,
        at: c.at,
    };
    if c.trace {
        let key = (c.nr, r.call_site().iter().map(|f| f.ip).collect());
        if seen.insert(key) {
            crate::sys::write_stderr(format!("coroutines: {r}\n").as_bytes());
        }
    }
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    if recent.len() == KEEP {
        recent.pop_front();
    }
    recent.push_back(r);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_syscall_lines() {
        assert_eq!(parse_syscall_line("running\n"), None);
        assert_eq!(
            parse_syscall_line("-1 0x7ffd1000 0x7f001234\n"),
            Some((None, 0x7ffd1000, 0x7f001234))
        );
        assert_eq!(
            parse_syscall_line("202 0x1 0x80 0x0 0x0 0x0 0x0 0x7ffd2000 0x7f005678\n"),
            Some((Some(202), 0x7ffd2000, 0x7f005678))
        );
        assert_eq!(syscall_name(202), "futex");
        assert_eq!(syscall_name(73), "flock");
        assert_eq!(syscall_name(999), "syscall 999");
    }

    #[test]
    fn call_site_skips_libc_and_runtime() {
        let fr = |sym: Option<&str>, obj: Option<&str>| Frame {
            ip: 1,
            symbol: sym.map(String::from),
            offset: 0,
            object: obj.map(String::from),
        };
        let frames = vec![
            fr(Some("__GI___futex_wait"), Some("libc.so.6")),
            fr(None, None),
            fr(Some("coroutines::sched::x"), None),
            fr(Some("sqlite3_step"), None),
            fr(None, None),
            fr(Some("rusqlite::Statement::execute"), None),
            fr(Some("core::ops::function::FnOnce::call_once"), None),
            fr(Some("app::transfer"), None),
            fr(Some("app::main"), None),
        ];
        let r = BlockingReport {
            executor: 1,
            syscall: "futex".into(),
            blocked_for: Duration::from_millis(52),
            frames,
            coroutine: None,
            coroutine_name: None,
            started_executor: Some(3),
            at: Instant::now(),
        };
        assert_eq!(
            r.to_string(),
            "executor 1 blocked 52 ms in futex (called from sqlite3_step <- \
             rusqlite::Statement::execute <- app::transfer); started executor 3"
        );
    }
}
