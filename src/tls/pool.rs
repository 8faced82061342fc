//! Pooled thread-locals: the per-thread ids of libraries whose tables of
//! threads are bounded are lent to coroutines only while they run.
//!
//! Problem: with a TLS block per coroutine (block.rs) every coroutine is a
//! thread to every library, including libraries that give each thread a
//! slot in a table of fixed size. tracing-subscriber's span registry
//! (`sharded_slab`) registers a thread id per thread on first use (its
//! thread-local `sharded_slab::tid::REGISTRATION`) and allows 4,096 live
//! ones: 4,097 coroutines alive inside spans made it panic. Threads never
//! get there; coroutines, 10,000 parked ones, do.
//!
//! Design: a registration is only needed while code of the library runs.
//! The runtime keeps a pool of registrations (the bytes of the
//! thread-local's storage: state and id). It counts the registrations
//! coroutines made themselves (seen at parks and exits); once 1,024 are
//! held (`POOL_AT`, a quarter of the table), pooling is on:
//! - a coroutine about to park lends its registration to the pool (its
//!   slot reset to the pristine, never-initialised bytes) unless it is
//!   inside the library, while at least `POOL_AT` are held;
//! - a coroutine that starts, or that lent its registration at its last
//!   park, takes one from the pool at switch-in (any: ids are
//!   interchangeable to the library between its operations); if the pool
//!   is empty its slot stays pristine and the library registers a new id
//!   on its next use (std then registers one more destructor for the slot,
//!   which at exit finds it pristine again);
//! - at exit, before its destructors run, the coroutine's registration
//!   goes back to the pool, so the library's destructor (which frees the
//!   id) sees a pristine slot and does nothing: ids are recycled by the
//!   pool instead.
//!
//! So ids in use are bounded by the coroutines running or suspended inside
//! the library plus `POOL_AT`, not by the coroutines alive. Preempted
//! coroutines keep theirs (they are runnable, and may be mid-operation).
//!
//! Why it is sound for sharded_slab: a thread id selects the shard whose
//! *local* free list only its owner thread may touch without
//! synchronisation; items of other shards are freed through atomics. The
//! id a coroutine uses is read afresh (`Tid::current`) at every operation
//! and never kept across a suspension outside the library's frames: a
//! coroutine suspended *inside* them (preempted, or parked in a `Drop`
//! the library runs mid-operation) keeps its registration, so no two
//! running coroutines ever hold one id. The check: a conservative scan of
//! the live stack for return addresses inside the library's functions
//! (found by name in the symbol table); no hit means surely outside. A hit
//! may be a stale word left by an earlier call, so it is confirmed by
//! walking the frames with the system unwinder (`_Unwind_Backtrace`; the
//! coroutine entry's CFI ends the walk): about 6 µs, paid only at parks
//! while pooling lends. An unwinder failure counts as inside (keep: safe).
//!
//! Discovery (at runtime start, only when per-coroutine thread-locals are
//! on): the thread-local's storage is found by name among the executable's
//! TLS symbols, its offset from the thread pointer computed from the
//! executable's TLS block, and the facts relied on about std's lazy
//! thread-locals checked on a probe thread with a thread-local of the same
//! shape (`PROBE`): a pristine slot is all initialisation-image bytes; its
//! bytes can move to another thread and be used there without
//! re-initialisation; a pristine slot makes the destructor do nothing. A
//! failed check prints one line and leaves the pool off (the library then
//! registers one id per coroutine, as before).

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crossbeam_deque::{Injector, Steal};

use crate::coroutine::Inner;
use crate::sys::elf::{for_each_symbol, tls_image, with_exe_image};

/// Largest storage pooled (std's lazy storage of a word-sized value).
const MAX: usize = 32;
type Blob = [u8; MAX];

/// A library thread-local that is pooled: name fragments of its TLS storage
/// and of the library's functions (legacy and v0 mangling both spell paths
/// as length-prefixed identifiers; generic impls as `a..b`).
struct Spec {
    storage: &'static [u8],
    code: &'static [&'static [u8]],
}

const SPECS: &[Spec] = &[Spec {
    storage: b"12sharded_slab3tid12REGISTRATION",
    // tracing-subscriber's registry inlines the slab's operations.
    code: &[b"sharded_slab", b"tracing_subscriber"],
}];

/// One pooled thread-local, found at start.
struct Pooled {
    /// Offset of the storage from the thread pointer (static TLS: negative).
    off: isize,
    size: usize,
    pristine: Blob,
    /// The library's functions, sorted and merged, with their bounds.
    code: Vec<(usize, usize)>,
    min: usize,
    max: usize,
    free: Injector<Blob>,
}

static POOLS: OnceLock<Vec<Pooled>> = OnceLock::new();

#[inline(always)]
fn pools() -> &'static [Pooled] {
    match POOLS.get() {
        Some(v) => v,
        None => &[],
    }
}

impl Pooled {
    /// # Safety
    /// `tp` is a live block's thread pointer; its slot is not in use by
    /// running code (the coroutine is switched out, or is the caller).
    #[inline(always)]
    unsafe fn slot(&self, tp: usize) -> *mut u8 {
        (tp as isize + self.off) as *mut u8
    }

    /// # Safety
    /// As for `slot`.
    #[inline(always)]
    unsafe fn is_pristine(&self, tp: usize) -> bool {
        // SAFETY: caller; `size` bytes of static TLS at a checked offset.
        unsafe {
            std::slice::from_raw_parts(self.slot(tp), self.size) == &self.pristine[..self.size]
        }
    }

    /// Moves the slot's bytes out (slot left pristine) and into the pool.
    /// The slot is reset *before* the bytes are published, so a coroutine
    /// preempted in between (at exit) is seen holding nothing.
    ///
    /// # Safety
    /// As for `slot`.
    unsafe fn lend(&self, tp: usize) {
        let mut blob: Blob = [0; MAX];
        // SAFETY: caller; the two regions do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(self.slot(tp), blob.as_mut_ptr(), self.size);
            std::ptr::copy_nonoverlapping(self.pristine.as_ptr(), self.slot(tp), self.size);
        }
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        self.free.push(blob);
    }

    fn contains(&self, addr: usize) -> bool {
        let i = self.code.partition_point(|r| r.1 <= addr);
        i < self.code.len() && self.code[i].0 <= addr
    }

    /// Conservative scan of the live stack `[lo, hi)` for a return
    /// address inside the library.
    fn on_stack(&self, lo: usize, hi: usize) -> bool {
        let mut p = lo & !7;
        while p + 8 <= hi {
            // SAFETY: [lo, hi) is the live part of the calling coroutine's
            // mapped stack (caller).
            let w = unsafe { (p as *const usize).read() };
            if w >= self.min && w < self.max && self.contains(w) {
                return true;
            }
            p += 8;
        }
        false
    }
}

/// Registrations coroutines registered themselves and that are not freed
/// (an estimate: counted when first seen at a park or exit).
static LIVE: AtomicIsize = AtomicIsize::new(0);
/// Pooling is on once `LIVE` reached [`POOL_AT`] (and stays on).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Registrations held by coroutines (not in the pool) from which parking
/// coroutines lend theirs: a quarter of sharded_slab's 4,096 ids. Below
/// it a program pays nothing at parks.
const POOL_AT: isize = 1024;
/// `Inner::pooled` bit: the coroutine ran before (a first run takes a
/// registration from the pool, so new coroutines reuse pooled ids).
const RAN: u32 = 1 << 31;
/// `Inner::pooled` bit: the coroutine is running its exit destructors
/// (set by `at_exit`). A destructor may park (a contended lock) after the
/// library's own destructor marked the slot destroyed: lending those bytes
/// then put a *destroyed* registration in the pool, and the coroutine
/// that took it panicked in sharded_slab ("Thread index = usize::MAX",
/// seen under load in the 10,000-span test). Nothing is lent or taken
/// once it is set.
const EXITING: u32 = 1 << 30;
/// `Inner::pooled` bit i + 16: the coroutine lent registration i at its
/// last park (and gets one back at switch-in). Bit i: the registration in
/// its slot is counted in `LIVE`.
const LENT: u32 = 16;

/// Scheduler side, before coroutine `inner` (block `tp`) is switched in:
/// with pooling on, a coroutine starting or one that lent its
/// registration at its last park gets one from the pool.
///
/// # Safety
/// The caller owns the right to run the coroutine, which is not running.
#[inline(always)]
pub(crate) unsafe fn switching_in(inner: &Inner, tp: usize) {
    let bits = inner.pooled.get();
    if bits & RAN != 0 && (bits & !EXITING) >> LENT == 0 {
        return;
    }
    // SAFETY: caller contract (we may run the coroutine and it is not
    // running), the same as `switching_in_slow`'s.
    unsafe { switching_in_slow(inner, tp) }
}

/// The slow path of `switching_in`.
///
/// # Safety
/// As `switching_in`.
#[inline(never)]
unsafe fn switching_in_slow(inner: &Inner, tp: usize) {
    let bits = inner.pooled.get();
    let first = bits & RAN == 0;
    let mut known = (bits & 0xffff) | RAN | (bits & EXITING);
    if ACTIVE.load(Ordering::Relaxed) {
        for (i, p) in pools().iter().enumerate() {
            if !first && bits & (1 << (i as u32 + LENT)) == 0 {
                continue;
            }
            // SAFETY: caller: the block is not in use.
            if !unsafe { p.is_pristine(tp) } {
                continue;
            }
            let blob = loop {
                match p.free.steal() {
                    Steal::Success(b) => break Some(b),
                    Steal::Empty => break None,
                    Steal::Retry => continue,
                }
            };
            if let Some(b) = blob {
                // SAFETY: caller: the slot is pristine and not in use.
                unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), p.slot(tp), p.size) };
                known |= 1 << i;
            }
        }
    }
    inner.pooled.set(known);
}

/// Coroutine context, about to park (no-preempt level raised): counts a
/// registration the coroutine made itself and, when many are held, lends
/// its registrations to the pool unless it is inside the library.
pub(crate) fn before_park(inner: &Inner) {
    let pools = pools();
    if pools.is_empty() {
        return;
    }
    before_park_slow(pools, inner);
}

#[inline(never)]
fn before_park_slow(pools: &[Pooled], inner: &Inner) {
    let tp = super::block::read_fs_base();
    let mut bits = inner.pooled.get();
    if bits & EXITING != 0 {
        return;
    }
    for (i, p) in pools.iter().enumerate() {
        let (own, lent) = (1 << i, 1 << (i as u32 + LENT));
        bits &= !lent;
        // SAFETY: our own block.
        if unsafe { p.is_pristine(tp) } {
            continue;
        }
        if bits & own == 0 {
            bits |= own;
            if LIVE.fetch_add(1, Ordering::Relaxed) + 1 >= POOL_AT {
                ACTIVE.store(true, Ordering::Relaxed);
            }
        }
        if !ACTIVE.load(Ordering::Relaxed)
            || LIVE.load(Ordering::Relaxed) - (p.free.len() as isize) < POOL_AT
        {
            continue; // few held: keep it (no cost)
        }
        // Each library has its own code ranges.
        if !inside_library(p, inner) {
            // SAFETY: our own block; nothing of the library runs now.
            unsafe { p.lend(tp) };
            bits = (bits & !own) | lent;
        }
    }
    inner.pooled.set(bits);
}

/// Whether a frame of the library is on the calling coroutine's stack: a
/// cheap conservative scan first (no hit: surely not); a hit may be a
/// stale word, so it is confirmed by unwinding the stack precisely.
fn inside_library(p: &Pooled, inner: &Inner) -> bool {
    let lo: usize;
    // SAFETY: reads the stack pointer.
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) lo, options(nomem, nostack, preserves_flags))
    };
    let hi = inner.stack_hi.load(Ordering::Relaxed);
    if hi <= lo || !p.on_stack(lo, hi) {
        return false;
    }
    unwind_finds(p)
}

type UnwindTrace = unsafe extern "C" fn(*mut c_void, *mut c_void) -> i32;
extern "C" {
    fn _Unwind_Backtrace(trace: UnwindTrace, arg: *mut c_void) -> i32;
    fn _Unwind_GetIP(ctx: *mut c_void) -> usize;
}

/// Walks the calling coroutine's frames with the system unwinder (the
/// coroutine entry's CFI ends the walk) and reports whether one is inside
/// the library. An unwinder failure counts as inside (keep: safe).
#[inline(never)]
fn unwind_finds(p: &Pooled) -> bool {
    struct Walk<'a> {
        p: &'a Pooled,
        found: bool,
        frames: usize,
    }
    unsafe extern "C" fn step(ctx: *mut c_void, arg: *mut c_void) -> i32 {
        // SAFETY: `arg` is the `Walk` below, alive for the whole walk.
        let w = unsafe { &mut *(arg as *mut Walk) };
        // SAFETY: the unwinder's context for this frame.
        let ip = unsafe { _Unwind_GetIP(ctx) };
        w.frames += 1;
        // Return addresses point after the call: look one byte back.
        if ip != 0 && w.p.contains(ip - 1) {
            w.found = true;
            return 4; // _URC_NORMAL_STOP
        }
        if w.frames > 4096 {
            w.found = true; // runaway: treat as inside
            return 4;
        }
        0 // _URC_NO_REASON: go on
    }
    let mut w = Walk {
        p,
        found: false,
        frames: 0,
    };
    // SAFETY: the callback only reads the frame's IP; `w` outlives the call.
    let r = unsafe { _Unwind_Backtrace(step, &mut w as *mut Walk as *mut c_void) };
    // _URC_END_OF_STACK (5) is the normal end; NORMAL_STOP (4) when found.
    w.found || (r != 5 && r != 4)
}

/// Whether a word of the stack range `[lo, hi)` looks like a return address
/// into a library whose registration is pooled (the conservative scan of
/// `inside_library`, without the unwinder's confirmation: a stale word
/// answers yes). For switches that are optional (the preemption safe
/// point at a hook's exit, sched/switch.rs): a coroutine switched out
/// inside such a library keeps its registration instead of lending it, so
/// many coroutines switched out there (inside tracing-subscriber's log
/// writing, at its `write`) would exhaust the library's table.
pub(crate) fn library_on_stack(lo: usize, hi: usize) -> bool {
    pools().iter().any(|p| p.on_stack(lo, hi))
}

/// Whether any thread-local is pooled in this process (a library with a
/// bounded thread table is linked and discovery succeeded).
#[inline(always)]
pub(crate) fn active() -> bool {
    !pools().is_empty()
}

/// Coroutine context, at exit before its thread-local destructors run:
/// with pooling on, its registrations go back to the pool (the library's
/// destructors then see pristine slots and do nothing); otherwise the
/// library frees them as at a thread's exit.
pub(crate) fn at_exit(inner: &Inner, tp: usize) {
    let pools = pools();
    if pools.is_empty() {
        return;
    }
    let mut bits = inner.pooled.get();
    for (i, p) in pools.iter().enumerate() {
        let own = 1 << i;
        // SAFETY: our own block; the body has returned, so no frame of the
        // library is live. A preemption between the check and the lend is
        // harmless: the slot is reset before the bytes are published.
        unsafe {
            if p.is_pristine(tp) {
                continue;
            }
            let counted = bits & own != 0;
            bits &= !own;
            if ACTIVE.load(Ordering::Relaxed) {
                if !counted {
                    LIVE.fetch_add(1, Ordering::Relaxed);
                }
                p.lend(tp);
            } else if counted {
                LIVE.fetch_sub(1, Ordering::Relaxed); // its destructor frees it
            }
        }
    }
    inner.pooled.set(bits | EXITING);
}

// ---------------------------------------------------------------------------
// Discovery

/// The probe: the same shape as sharded_slab's registration (a lazily
/// initialised thread-local of a `Cell<Option<usize>>` with a `Drop`).
struct Probe(Cell<Option<usize>>);
static PROBE_NEW: AtomicUsize = AtomicUsize::new(0);
static PROBE_DROPPED: AtomicUsize = AtomicUsize::new(0);
impl Probe {
    fn new() -> Self {
        PROBE_NEW.fetch_add(1, Ordering::SeqCst);
        Probe(Cell::new(None))
    }
}
impl Drop for Probe {
    fn drop(&mut self) {
        if self.0.get().is_some() {
            PROBE_DROPPED.fetch_add(1, Ordering::SeqCst);
        }
    }
}
thread_local! {
    static PROBE: Probe = Probe::new();
}

struct Found {
    /// (pattern index, st_value, st_size) of TLS storages.
    storages: Vec<(usize, usize, usize)>,
    probe: Option<(usize, usize)>,
    code: Vec<Vec<(usize, usize)>>,
    image: Vec<u8>,
    memsz: usize,
}

fn contains(name: &[u8], pat: &[u8]) -> bool {
    name.windows(pat.len()).any(|w| w == pat)
}

fn find(bias: usize) -> Option<Found> {
    let mut f = Found {
        storages: Vec::new(),
        probe: None,
        code: SPECS.iter().map(|_| Vec::new()).collect(),
        image: Vec::new(),
        memsz: 0,
    };
    with_exe_image(|b| {
        let (img, memsz) = tls_image(b)?;
        f.image = img.to_vec();
        f.memsz = memsz;
        for_each_symbol(b, |name, info, value, size| {
            let (value, size) = (value as usize, size as usize);
            match info & 0xf {
                6 /* STT_TLS */ => {
                    if !contains(name, b"__RUST_STD_INTERNAL_VAL") {
                        return;
                    }
                    if contains(name, b"10coroutines3tls4pool5PROBE") {
                        f.probe = Some((value, size));
                    }
                    for (i, s) in SPECS.iter().enumerate() {
                        if contains(name, s.storage) {
                            f.storages.push((i, value, size));
                        }
                    }
                }
                2 /* STT_FUNC */ if value != 0 && size != 0 => {
                    for (i, s) in SPECS.iter().enumerate() {
                        if s.code.iter().any(|c| contains(name, c)) {
                            f.code[i].push((bias + value, bias + value + size));
                        }
                    }
                }
                _ => {}
            }
        })
    })
    .flatten()?;
    Some(f)
}

/// The executable's TLS block on the calling thread and its load bias.
fn exe_object() -> (usize, usize) {
    let mut out = (0, 0);
    crate::sys::for_each_object(|info| {
        out = (info.dlpi_tls_data as usize, info.dlpi_addr as usize);
        false // the first object is the executable
    });
    out
}

fn pristine_of(f: &Found, value: usize, size: usize) -> Option<Blob> {
    if size == 0 || size > MAX || value + size > f.memsz {
        return None;
    }
    let mut b: Blob = [0; MAX];
    for (i, byte) in b.iter_mut().take(size).enumerate() {
        *byte = f.image.get(value + i).copied().unwrap_or(0);
    }
    Some(b)
}

/// Runtime start, after per-coroutine thread-locals were turned on: finds
/// the pooled thread-locals present in the executable and checks the
/// facts the pool relies on. Quiet when none is linked.
pub(crate) fn init() {
    POOLS.get_or_init(|| match discover() {
        Ok(v) => v,
        Err(e) => {
            crate::sys::write_stderr(
                format!(
                    "coroutines: warning: thread ids of tracing-subscriber's registry are not \
                     pooled ({e}); each live coroutine that uses it holds one (at most 4,096)\n"
                )
                .as_bytes(),
            );
            Vec::new()
        }
    });
}

fn discover() -> Result<Vec<Pooled>, String> {
    let (tls_data, bias) = exe_object();
    let Some(f) = find(bias) else {
        return Ok(Vec::new()); // no symbol table: nothing to find by name
    };
    if f.storages.is_empty() {
        return Ok(Vec::new());
    }
    if tls_data == 0 {
        return Err("the executable has no TLS block".into());
    }
    let tp = super::block::read_fs_base();
    let (pv, ps) = f
        .probe
        .ok_or("the probe thread-local was not found by name")?;
    let probe_pristine = pristine_of(&f, pv, ps).ok_or("the probe's storage is too large")?;
    // 1. Where the probe's storage is by the formula, std puts its value.
    let probe_off = (tls_data + pv) as isize - tp as isize;
    let value_addr = PROBE.with(|p| p as *const Probe as usize);
    let slot = (tp as isize + probe_off) as usize;
    if value_addr < slot || value_addr >= slot + ps {
        return Err("thread-local storage is not where the symbol table says".into());
    }
    // 2. std's lazy storage, on a probe thread: pristine bytes before use;
    //    bytes moved into another thread's slot are used there without a
    //    new initialisation; a slot left pristine makes the destructor do
    //    nothing.
    let new_before = PROBE_NEW.load(Ordering::SeqCst);
    let dropped_before = PROBE_DROPPED.load(Ordering::SeqCst);
    let moved = probe_thread(probe_off, ps, &probe_pristine, None)?;
    let _ = probe_thread(probe_off, ps, &probe_pristine, Some(moved))?;
    // One initialisation (the first thread's), no drop of a value at
    // either thread's exit (both left their slot pristine).
    if PROBE_NEW.load(Ordering::SeqCst) != new_before + 1
        || PROBE_DROPPED.load(Ordering::SeqCst) != dropped_before
    {
        return Err("std's lazy thread-locals do not behave as expected".into());
    }
    let mut out = Vec::new();
    for (i, spec) in SPECS.iter().enumerate() {
        let mine: Vec<_> = f.storages.iter().filter(|s| s.0 == i).collect();
        let [&(_, value, size)] = mine.as_slice() else {
            return Err(format!(
                "{} storages of {} found (several versions linked?)",
                mine.len(),
                String::from_utf8_lossy(spec.storage)
            ));
        };
        if size != ps {
            return Err(format!("unexpected storage size {size} (probe {ps})"));
        }
        let pristine = pristine_of(&f, value, size).ok_or("storage outside the TLS image")?;
        if pristine[..size] != probe_pristine[..size] {
            return Err("unexpected initial bytes".into());
        }
        let mut code = f.code[i].clone();
        code.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(code.len());
        for r in code {
            match merged.last_mut() {
                Some(last) if r.0 <= last.1 => last.1 = last.1.max(r.1),
                _ => merged.push(r),
            }
        }
        let (Some(first), Some(last)) = (merged.first(), merged.last()) else {
            return Err("the library's functions were not found by name".into());
        };
        let (min, max) = (first.0, last.1);
        out.push(Pooled {
            off: (tls_data + value) as isize - tp as isize,
            size,
            pristine,
            code: merged,
            min,
            max,
            free: Injector::new(),
        });
    }
    Ok(out)
}

/// Runs a probe thread. Without `bytes`: initialises `PROBE` with id 7
/// and returns its storage bytes, after resetting the slot to pristine
/// (its destructor must then not drop the value: checked by the caller
/// through the counters, together with the second run). With `bytes`:
/// writes them into the fresh slot, which must then read id 7 without a
/// new initialisation, and leaves the slot pristine again before exit.
fn probe_thread(
    off: isize,
    size: usize,
    pristine: &Blob,
    bytes: Option<Blob>,
) -> Result<Blob, String> {
    let pristine = *pristine;
    std::thread::Builder::new()
        .name("coroutines-probe".into())
        .spawn(move || -> Result<Blob, String> {
            let tp = super::block::read_fs_base();
            let slot = (tp as isize + off) as *mut u8;
            // SAFETY: this thread's own static TLS at the checked offset;
            // no reference to PROBE is live while we copy.
            let cur = || unsafe { std::slice::from_raw_parts(slot, size).to_vec() };
            if cur() != pristine[..size] {
                return Err("a fresh thread-local is not its initial image".into());
            }
            let mut out: Blob = [0; MAX];
            match bytes {
                None => {
                    PROBE.with(|p| p.0.set(Some(7)));
                    if cur() == pristine[..size] {
                        return Err("an initialised thread-local still looks pristine".into());
                    }
                    // SAFETY: as above.
                    unsafe {
                        std::ptr::copy_nonoverlapping(slot, out.as_mut_ptr(), size);
                        std::ptr::copy_nonoverlapping(pristine.as_ptr(), slot, size);
                    }
                }
                Some(b) => {
                    let before = PROBE_NEW.load(Ordering::SeqCst);
                    // SAFETY: as above.
                    unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), slot, size) };
                    if PROBE.with(|p| p.0.get()) != Some(7)
                        || PROBE_NEW.load(Ordering::SeqCst) != before
                    {
                        return Err("a moved thread-local was initialised again".into());
                    }
                    // SAFETY: as above.
                    unsafe { std::ptr::copy_nonoverlapping(pristine.as_ptr(), slot, size) };
                }
            }
            Ok(out)
        })
        .map_err(|e| format!("probe thread: {e}"))?
        .join()
        .map_err(|_| "probe thread panicked".to_string())?
}

/// Registrations in the pool now (tests).
#[allow(dead_code)]
pub(crate) fn pooled_now() -> usize {
    pools().iter().map(|p| p.free.len()).sum()
}
