//! Tracing: the wake-to-run latency histogram, the schedule trace
//! (`COROUTINES_TRACE`, one line per interval on stderr) and the execution
//! trace (`COROUTINES_TRACE_FILE`, Chrome trace-event JSON for Perfetto or
//! `chrome://tracing`).
//!
//! Cost when off: the recording sites are one Relaxed load of [`FLAGS`]
//! and a branch each — one at every switch-in (sched/switch.rs
//! `prepare_resume`), one at every switch-out (`account_out`), one per
//! wake (`Inner::wake`) and one per spawn — with the recording code out of
//! line (`#[cold]`). `FLAGS` is set once, before the executors start, and
//! never changes.
//!
//! Wake-to-run latency (flag `LATENCY`: `COROUTINES_TRACE`,
//! `COROUTINES_TRACE_FILE` or `RuntimeBuilder::wake_latency`): the waker
//! stamps the coroutine (`Inner::woke_at`, a monotonic clock read) after
//! it won the right to run it and before queueing it; the executor that
//! switches it in adds `now - woke_at` to its own log2 histogram (single
//! writer: load+store). Yields and preemptions are not wakes and read no
//! clock. [`crate::stats`] sums the histograms.
//!
//! Execution trace (flag `EVENTS`): per executor a buffer of events (run
//! slices, spawns, flow starts and ends) behind a raw futex lock (taken by
//! its executor, and by a writer copying it out); one more buffer for
//! spawns from plain threads. All buffers together hold at most
//! [`TRACE_CAPACITY`] events; later ones are dropped and counted (in
//! `Stats::trace_dropped` and in the file's `metadata`). A slice starts at
//! switch-in and ends at switch-out, with why it ended (yield, park with
//! the coroutine's wait record, preemption, exit); a wake from a coroutine
//! is a flow from the waker's slice to the woken coroutine's next slice
//! (the flow id travels in `Inner::wake_flow`), and so is a spawn from a
//! coroutine to the first run. Wakes from plain threads (timers fired by
//! the monitor, helper threads) have no slice to start from and draw no
//! arrow. The file is written at exit (`atexit`) and by [`write_trace`],
//! each time with everything recorded so far.
//!
//! The schedule trace runs on its own thread (`coroutines-trace`), which
//! reads `stats()`, walks the registry of live coroutines for their
//! states, and prints the differences since the last line.

use std::cell::{Cell, UnsafeCell};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::coroutine::{Inner, ACTIVE, PARKED, RUNNABLE, STATE_MASK};
use crate::observe::wait::{Job, WaitReason};
use crate::sched::NoPreempt;
use crate::sys::lock::RawLock;

/// What is recorded (bits); 0: nothing (the only check on hot paths).
pub(crate) static FLAGS: AtomicU8 = AtomicU8::new(0);
/// Wake-to-run latency.
pub(crate) const LATENCY: u8 = 1;
/// Execution-trace events.
pub(crate) const EVENTS: u8 = 2;

/// Events all executors together keep for the trace file (about 56 MB);
/// later events are dropped and counted.
pub const TRACE_CAPACITY: usize = 1 << 20;

/// Buckets of [`LatencyHistogram`].
const BUCKETS: usize = 48;

#[inline(always)]
pub(crate) fn flags() -> u8 {
    FLAGS.load(Ordering::Relaxed)
}

/// `CLOCK_MONOTONIC` in nanoseconds (the vDSO, no system call).
#[inline]
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Wake-to-run latencies, in log2 buckets: bucket `i` counts latencies in
/// `[2^i, 2^(i+1))` nanoseconds (bucket 0 also counts 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Counts per bucket (48 buckets, up to about 3 days).
    pub buckets: Vec<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: vec![0; BUCKETS],
        }
    }
}

impl LatencyHistogram {
    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The latency below which a fraction `p` (0.0 to 1.0) of the
    /// recorded ones fall, as the upper bound of its bucket (so within a
    /// factor of 2 above the true value); None when nothing was recorded.
    ///
    /// # Panics
    /// If `p` is not between 0.0 and 1.0 (a percentage such as 99.0 is a
    /// mistake: use 0.99).
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        assert!(
            (0.0..=1.0).contains(&p),
            "LatencyHistogram::percentile takes a fraction from 0.0 to 1.0 (0.99 for p99), got {p}"
        );
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((p.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(1u64 << (i + 1).min(63)));
            }
        }
        None
    }

    /// What was recorded since `earlier` (a previous snapshot).
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        LatencyHistogram {
            buckets: self
                .buckets
                .iter()
                .zip(earlier.buckets.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        }
    }
}

struct Hist([AtomicU64; BUCKETS]);

#[derive(Clone, Copy)]
enum End {
    Yield,
    Park(Option<WaitReason>),
    Preempted,
    Exit,
}

#[derive(Clone, Copy)]
enum Ev {
    Slice {
        co: u64,
        ts: u64,
        dur: u64,
        end: End,
    },
    Spawn {
        co: u64,
        ts: u64,
    },
    /// Flow start (wake or spawn) at `ts`, in the running slice.
    FlowOut {
        id: u64,
        ts: u64,
        spawn: bool,
    },
    /// Flow end at the start of the woken coroutine's slice.
    FlowIn {
        id: u64,
        ts: u64,
        spawn: bool,
    },
}

#[derive(Default)]
struct BufData {
    events: Vec<Ev>,
    names: Vec<(u64, Box<str>)>,
}

struct Buf {
    lock: RawLock,
    data: UnsafeCell<BufData>,
}

// SAFETY: `data` is only touched with `lock` held (`with`). The raw
// pointers inside `WaitReason` (a DNS host name, a path) are never
// dereferenced here.
unsafe impl Sync for Buf {}
// SAFETY: as above.
unsafe impl Send for Buf {}

impl Buf {
    /// Runs `f` with the buffer locked, preemption off (a holder preempted
    /// while its executor's scheduler needs the same buffer would
    /// deadlock).
    fn with<R>(&self, f: impl FnOnce(&mut BufData) -> R) -> R {
        let _np = NoPreempt::new();
        self.lock.lock();
        // SAFETY: we hold the lock, the only way to reach `data`.
        let r = f(unsafe { &mut *self.data.get() });
        self.lock.unlock();
        r
    }
}

struct Tracer {
    /// One per executor slot, then one for plain threads.
    bufs: Box<[Buf]>,
    used: AtomicUsize,
    dropped: AtomicU64,
    next_flow: AtomicU64,
    epoch: u64,
    path: PathBuf,
}

/// Latency histograms, one per executor slot (single writer each).
static HISTS: OnceLock<Box<[Hist]>> = OnceLock::new();
static TRACER: OnceLock<Tracer> = OnceLock::new();

/// What start-up asks for (start.rs).
pub(crate) struct TraceConfig {
    pub(crate) interval: Option<Duration>,
    pub(crate) file: Option<PathBuf>,
    pub(crate) wake_latency: bool,
}

/// Sets up tracing before the executors start (start.rs); `slots` is the
/// number of executor slots (`max_workers`).
pub(crate) fn init(c: &TraceConfig, slots: usize) {
    let mut f = 0;
    if c.wake_latency || c.interval.is_some() || c.file.is_some() {
        let _ = HISTS.set(
            (0..slots)
                .map(|_| Hist([const { AtomicU64::new(0) }; BUCKETS]))
                .collect(),
        );
        f |= LATENCY;
    }
    if let Some(path) = &c.file {
        let _ = TRACER.set(Tracer {
            bufs: (0..=slots)
                .map(|_| Buf {
                    lock: RawLock::new(),
                    data: UnsafeCell::new(BufData::default()),
                })
                .collect(),
            used: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            next_flow: AtomicU64::new(1),
            epoch: now_ns(),
            path: path.clone(),
        });
        f |= EVENTS;
        extern "C" fn at_exit() {
            if let Err(e) = write_trace() {
                let _ = writeln!(io::stderr(), "coroutines: cannot write the trace file: {e}");
            }
        }
        // SAFETY: registers a plain function without arguments.
        unsafe { libc::atexit(at_exit) };
    }
    FLAGS.store(f, Ordering::Relaxed);
}

/// Starts the schedule-trace thread (start.rs, after the runtime is up).
pub(crate) fn start_thread(interval: Duration) -> io::Result<()> {
    std::thread::Builder::new()
        .name("coroutines-trace".into())
        .spawn(move || schedule_trace(interval))
        .map(|_| ())
}

impl Tracer {
    fn push(&self, buf: usize, ev: Ev, name: Option<&str>) {
        // Once full, a plain load first: one shared RMW per dropped event
        // (its count), not three.
        let full = self.used.load(Ordering::Relaxed) >= TRACE_CAPACITY || {
            let over = self.used.fetch_add(1, Ordering::Relaxed) >= TRACE_CAPACITY;
            if over {
                self.used.fetch_sub(1, Ordering::Relaxed);
            }
            over
        };
        if full {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let buf = &self.bufs[buf.min(self.bufs.len() - 1)];
        buf.with(|d| {
            d.events.push(ev);
            if let (Ev::Spawn { co, .. }, Some(n)) = (ev, name) {
                d.names.push((co, n.into()));
            }
        });
    }

    fn other_threads(&self) -> usize {
        self.bufs.len() - 1
    }
}

/// Switch-in of `co` on executor `index` (`prepare_resume`, when
/// `flags() != 0`): its wake latency, and the start of its slice.
#[cold]
#[inline(never)]
pub(crate) fn switch_in(index: usize, co: &Inner, slice_start: &Cell<u64>) {
    let woke = co.woke_at.load(Ordering::Relaxed);
    let flow = co.wake_flow.load(Ordering::Relaxed);
    let events = TRACER.get();
    if woke == 0 && flow == 0 && events.is_none() {
        return;
    }
    let now = now_ns();
    if woke != 0 {
        co.woke_at.store(0, Ordering::Relaxed);
        if let Some(h) = HISTS.get().and_then(|h| h.get(index)) {
            let d = now.saturating_sub(woke);
            let b = (63 - d.max(1).leading_zeros() as usize).min(BUCKETS - 1);
            let c = &h.0[b];
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }
    if let Some(t) = events {
        slice_start.set(now);
        if flow != 0 {
            co.wake_flow.store(0, Ordering::Relaxed);
            t.push(
                index,
                Ev::FlowIn {
                    id: flow >> 1,
                    ts: now,
                    spawn: flow & 1 != 0,
                },
                None,
            );
        }
    }
}

/// How a run ended, for `switch_out` (sched's `Action` in numbers).
pub(crate) const END_YIELD: u8 = 0;
pub(crate) const END_PARK: u8 = 1;
pub(crate) const END_PREEMPTED: u8 = 2;
pub(crate) const END_EXIT: u8 = 3;

/// Switch-out of `co` from executor `index` (`account_out`, when
/// `flags() != 0`): its slice.
#[cold]
#[inline(never)]
pub(crate) fn switch_out(index: usize, co: &Inner, why: u8, slice_start: &Cell<u64>) {
    let Some(t) = TRACER.get() else { return };
    let start = slice_start.replace(0);
    if start == 0 {
        return;
    }
    let end = match why {
        END_YIELD => End::Yield,
        END_PARK => End::Park(co.wait.get().map(|(r, _)| r)),
        END_PREEMPTED => End::Preempted,
        _ => End::Exit,
    };
    let now = now_ns();
    t.push(
        index,
        Ev::Slice {
            co: co.id.as_u64().get(),
            ts: start,
            dur: now.saturating_sub(start),
            end,
        },
        None,
    );
}

/// A wake of `co` (`Inner::wake`, after winning the right to queue it,
/// before queueing it), when `flags() != 0`.
#[cold]
#[inline(never)]
pub(crate) fn woke(co: &Inner) {
    let now = now_ns();
    if flags() & LATENCY != 0 {
        co.woke_at.store(now, Ordering::Relaxed);
    }
    if let Some(t) = TRACER.get() {
        flow_from_here(t, co, now, false);
    }
}

/// Starts a flow to `co`'s next run if we run in a coroutine's slice.
fn flow_from_here(t: &Tracer, co: &Inner, now: u64, spawn: bool) {
    let _np = NoPreempt::new();
    let Some(exec) = crate::sched::current_executor() else {
        return;
    };
    if !exec.in_coroutine_now() {
        return;
    }
    let id = t.next_flow.fetch_add(1, Ordering::Relaxed);
    co.wake_flow
        .store(id << 1 | spawn as u64, Ordering::Relaxed);
    t.push(exec.index, Ev::FlowOut { id, ts: now, spawn }, None);
}

/// A spawn of `co` (before it is queued), when `flags() != 0`.
#[cold]
#[inline(never)]
pub(crate) fn spawned(co: &Inner) {
    let Some(t) = TRACER.get() else { return };
    let now = now_ns();
    let buf = {
        let _np = NoPreempt::new();
        crate::sched::current_executor().map_or(t.other_threads(), |e| e.index)
    };
    t.push(
        buf,
        Ev::Spawn {
            co: co.id.as_u64().get(),
            ts: now,
        },
        co.name.as_deref(),
    );
    flow_from_here(t, co, now, true);
}

/// The summed wake-to-run latency histogram (None when not recorded).
pub(crate) fn wake_latency() -> Option<LatencyHistogram> {
    let hists = HISTS.get()?;
    let mut h = LatencyHistogram::default();
    for e in hists.iter() {
        for (i, c) in e.0.iter().enumerate() {
            h.buckets[i] += c.load(Ordering::Relaxed);
        }
    }
    Some(h)
}

/// (events kept, events dropped) of the execution trace.
pub(crate) fn trace_counts() -> (u64, u64) {
    match TRACER.get() {
        Some(t) => (
            t.used.load(Ordering::Relaxed) as u64,
            t.dropped.load(Ordering::Relaxed),
        ),
        None => (0, 0),
    }
}

/// Writes the execution trace recorded so far to the file named by
/// `COROUTINES_TRACE_FILE` (or [`crate::RuntimeBuilder::trace_file`]), in
/// the Chrome trace-event JSON format (open it in <https://ui.perfetto.dev>
/// or `chrome://tracing`), replacing the file. The runtime also writes it
/// at process exit (`atexit`; not after a crash or `_exit`). Each call
/// writes everything recorded since start: up to [`TRACE_CAPACITY`]
/// events, later ones are dropped and counted in the file's `metadata`
/// and in `Stats::trace_dropped`.
///
/// Returns an error of kind [`io::ErrorKind::Unsupported`] when no trace
/// file was configured. The file is written to `<path>.tmp`, then renamed.
pub fn write_trace() -> io::Result<()> {
    let Some(t) = TRACER.get() else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no execution trace is recorded (COROUTINES_TRACE_FILE is not set)",
        ));
    };
    static WRITING: Mutex<()> = Mutex::new(());
    let _g = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    // Copy each buffer out (its executor waits for one copy at most).
    let mut copies = Vec::with_capacity(t.bufs.len());
    for b in t.bufs.iter() {
        copies.push(b.with(|d| (d.events.clone(), d.names.clone())));
    }
    let mut names = std::collections::HashMap::new();
    for (_, n) in &copies {
        for (id, name) in n {
            names.insert(*id, &**name);
        }
    }
    let tmp = {
        let mut p = t.path.clone().into_os_string();
        p.push(".tmp");
        PathBuf::from(p)
    };
    let mut w = io::BufWriter::new(std::fs::File::create(&tmp)?);
    write_json(&mut w, t, &copies, &names)?;
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, &t.path)
}

/// Track id of executor `i` (tid 0 is avoided), and of plain threads.
fn tid(t: &Tracer, buf: usize) -> usize {
    if buf == t.other_threads() {
        100_000
    } else {
        buf + 1
    }
}

fn ts(t: &Tracer, ns: u64) -> String {
    let d = ns.saturating_sub(t.epoch);
    format!("{}.{:03}", d / 1000, d % 1000)
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn wait_text(r: WaitReason) -> String {
    match r {
        WaitReason::Park => "coroutines::park".into(),
        WaitReason::ParkTimeout => "coroutines::park_timeout".into(),
        WaitReason::Sleep { .. } => "sleep".into(),
        WaitReason::Join { id } => format!("join of #{id}"),
        WaitReason::Io { fd, write, nfds } => {
            let dir = if write { "write" } else { "read" };
            if nfds > 1 {
                format!("poll of {nfds} fds, first: {dir} fd {fd}")
            } else {
                format!("{dir} fd {fd}")
            }
        }
        WaitReason::Futex { addr } => format!("futex {addr:#x}"),
        WaitReason::StdParker { .. } => "thread parker (std channel or thread::park)".into(),
        WaitReason::Pthread { addr, kind } => {
            format!("pthread {} {addr:#x}", kind.name())
        }
        WaitReason::Helper(job) => match job {
            Job::Dns(_) => "getaddrinfo on a helper thread".into(),
            Job::Open(_) => "open on a helper thread".into(),
            Job::File { fd } => format!("file I/O on fd {fd} on a helper thread"),
            Job::FileLock { fd } => format!("file lock on fd {fd} on a helper thread"),
            Job::ForeignPoll { nfds } => format!("poll of {nfds} fds on a helper thread"),
            Job::Barrier { addr } => format!("pthread_barrier_wait({addr:#x})"),
            Job::Signal => "sigwait".into(),
            Job::Spawn => "posix_spawn".into(),
        },
        WaitReason::Child { id } => format!("child or thread {id}"),
    }
}

type BufCopy = (Vec<Ev>, Vec<(u64, Box<str>)>);

fn write_json(
    w: &mut impl Write,
    t: &Tracer,
    bufs: &[BufCopy],
    names: &std::collections::HashMap<u64, &str>,
) -> io::Result<()> {
    let name_of = |co: u64| match names.get(&co) {
        Some(n) => json_str(n),
        None => format!("\"#{co}\""),
    };
    writeln!(w, "{{\"traceEvents\":[")?;
    write!(
        w,
        "{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"args\":{{\"name\":\"coroutines\"}}}}"
    )?;
    for (i, (evs, _)) in bufs.iter().enumerate() {
        if evs.is_empty() {
            continue;
        }
        let tid = tid(t, i);
        let label = if i == t.other_threads() {
            "plain threads".to_string()
        } else {
            format!("executor {i}")
        };
        write!(
            w,
            ",\n{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":{tid},\"args\":{{\"name\":\"{label}\"}}}}"
        )?;
        write!(
            w,
            ",\n{{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":1,\"tid\":{tid},\"args\":{{\"sort_index\":{tid}}}}}"
        )?;
        for ev in evs {
            match *ev {
                Ev::Slice { co, ts: s, dur, end } => {
                    let (why, wait) = match end {
                        End::Yield => ("yield", None),
                        End::Park(r) => ("park", r.map(wait_text)),
                        End::Preempted => ("preempted", None),
                        End::Exit => ("exit", None),
                    };
                    write!(
                        w,
                        ",\n{{\"name\":{},\"cat\":\"run\",\"ph\":\"X\",\"pid\":1,\"tid\":{tid},\"ts\":{},\"dur\":{}.{:03},\"args\":{{\"id\":{co},\"end\":\"{why}\"",
                        name_of(co),
                        ts(t, s),
                        dur / 1000,
                        dur % 1000
                    )?;
                    if let Some(wt) = wait {
                        write!(w, ",\"wait\":{}", json_str(&wt))?;
                    }
                    write!(w, "}}}}")?;
                }
                Ev::Spawn { co, ts: s } => write!(
                    w,
                    ",\n{{\"name\":\"spawn\",\"cat\":\"spawn\",\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":{tid},\"ts\":{},\"args\":{{\"id\":{co},\"name\":{}}}}}",
                    ts(t, s),
                    name_of(co)
                )?,
                Ev::FlowOut { id, ts: s, spawn } => write!(
                    w,
                    ",\n{{\"name\":\"{0}\",\"cat\":\"{0}\",\"ph\":\"s\",\"id\":{id},\"pid\":1,\"tid\":{tid},\"ts\":{1}}}",
                    if spawn { "spawn" } else { "wake" },
                    ts(t, s)
                )?,
                Ev::FlowIn { id, ts: s, spawn } => write!(
                    w,
                    ",\n{{\"name\":\"{0}\",\"cat\":\"{0}\",\"ph\":\"f\",\"bp\":\"e\",\"id\":{id},\"pid\":1,\"tid\":{tid},\"ts\":{1}}}",
                    if spawn { "spawn" } else { "wake" },
                    ts(t, s)
                )?,
            }
        }
    }
    let (kept, dropped) = trace_counts();
    writeln!(w, "\n],")?;
    writeln!(
        w,
        "\"displayTimeUnit\":\"ns\",\n\"metadata\":{{\"producer\":\"coroutines\",\"events\":{kept},\"capacity\":{TRACE_CAPACITY},\"dropped_events\":{dropped}}}\n}}"
    )
}

/// Counts of live coroutines by state, from the registry.
fn coroutine_states() -> (u64, u64, u64) {
    let (mut running, mut ready, mut parked) = (0, 0, 0);
    crate::observe::registry::for_each(
        crate::observe::registry::CHUNK,
        &mut (),
        |_, _| {},
        |_, co| {
            let s = co.state.load(Ordering::Relaxed);
            match s & STATE_MASK {
                PARKED => parked += 1,
                RUNNABLE => ready += 1,
                // ACTIVE: running, or queued and never run yet / not yet
                // switched in (a yielded one stays ACTIVE in its queue).
                ACTIVE => running += 1,
                _ => {}
            }
        },
    );
    (running, ready, parked)
}

fn fmt_dur(d: Option<Duration>) -> String {
    match d {
        None => "-".into(),
        Some(d) if d < Duration::from_micros(1) => format!("{}ns", d.as_nanos()),
        Some(d) if d < Duration::from_millis(1) => format!("{}us", d.as_micros()),
        Some(d) if d < Duration::from_secs(1) => format!("{}ms", d.as_millis()),
        Some(d) => format!("{:.1}s", d.as_secs_f64()),
    }
}

/// The `coroutines-trace` thread: one line per `interval` on stderr.
fn schedule_trace(interval: Duration) {
    let start = std::time::Instant::now();
    let mut last = crate::stats::stats();
    let mut last_at = start;
    loop {
        std::thread::sleep(interval);
        let s = crate::stats::stats();
        let now = std::time::Instant::now();
        let secs = now.duration_since(last_at).as_secs_f64().max(1e-9);
        let rate = |a: u64, b: u64| (a.saturating_sub(b) as f64 / secs).round() as u64;
        let (running_now, idle, blocked) = match crate::sched::try_runtime() {
            Some(rt) => {
                let live = rt.live_executors();
                let alive: Vec<_> = live
                    .iter()
                    .filter(|e| e.alive.load(Ordering::Relaxed))
                    .collect();
                let running = alive
                    .iter()
                    .filter(|e| !e.current.load(Ordering::Relaxed).is_null())
                    .count();
                (running, alive.len() - running, crate::sched::blocked_now())
            }
            None => (0, 0, 0),
        };
        let (active, ready, parked) = coroutine_states();
        // ACTIVE coroutines not on an executor are queued (yielded,
        // preempted or never run): ready. A running coroutine that has
        // not suspended yet is not in the registry (observe/registry.rs),
        // so the executors give the running count.
        let running = running_now as u64;
        let ready = ready + active.saturating_sub(running);
        let lat = match (&s.wake_latency, &last.wake_latency) {
            (Some(a), Some(b)) => a.since(b),
            _ => LatencyHistogram::default(),
        };
        let line = format!(
            "coroutines-trace {:.3}s: executors {} (idle {}, blocked {}) coroutines {} (running {}, ready {}, parked {}) switches/s {} preemptions/s {} steals/s {} wake-latency p50 {} p99 {} (n={})\n",
            now.duration_since(start).as_secs_f64(),
            s.workers,
            idle,
            blocked,
            running + ready + parked,
            running,
            ready,
            parked,
            rate(s.switches, last.switches),
            rate(s.preemptions, last.preemptions),
            rate(s.steals, last.steals),
            fmt_dur(lat.percentile(0.5)),
            fmt_dur(lat.percentile(0.99)),
            lat.count(),
        );
        let _ = io::stderr().write_all(line.as_bytes());
        last = s;
        last_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_bucket_bounds() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.percentile(0.5), None);
        h.buckets[10] = 90; // 1024..2048 ns
        h.buckets[20] = 10; // ~1 ms
        assert_eq!(h.count(), 100);
        assert_eq!(h.percentile(0.5), Some(Duration::from_nanos(2048)));
        assert_eq!(h.percentile(0.9), Some(Duration::from_nanos(2048)));
        assert_eq!(h.percentile(0.99), Some(Duration::from_nanos(1 << 21)));
        let d = h.since(&LatencyHistogram::default());
        assert_eq!(d, h);
        assert_eq!(h.since(&h).count(), 0);
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
