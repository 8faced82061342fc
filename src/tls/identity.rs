//! Per-coroutine std thread identity.
//!
//! Used only with shared thread-locals (`COROUTINES_THREAD_LOCALS=shared`,
//! or when per-coroutine TLS blocks are unavailable: block.rs); with
//! per-coroutine blocks std's `CURRENT`/`ID` are per coroutine anyway.
//!
//! Problem: std keys "the current thread" on two thread-locals of the
//! executable: `CURRENT` (the `Thread` handle behind `thread::current()`,
//! whose parker is the `thread::park` token) and `ID` (the `ThreadId`).
//! Channels and locks build per-thread objects from them and cache those in
//! more thread-locals: std's mpsc/mpmc and crossbeam-channel cache a
//! `Context` (thread handle + selection slot), crossbeam-channel caches the
//! `ThreadId`, parking_lot keeps a `ThreadData` queue node. If every
//! coroutine of an executor shared the executor's, two coroutines blocked
//! at once would share one park token (std's parker state breaks before any
//! futex call the runtime could catch), one queue node, one cached context:
//! they hang. And std's `ReentrantLock` (behind `stdout().lock()`) would let
//! a second coroutine of the same executor re-enter a lock another one
//! holds across a blocking write.
//!
//! Design: a coroutine gets its own std identity by swapping a few
//! thread-local *slots* at every switch, and caches that would hand one
//! coroutine's identity to another are switched off on executor threads.
//! 1. Swapped (`Inner::ident`, saved at switch-out, loaded at switch-in; a
//!    new coroutine starts with "not initialised", like a new thread):
//!    std's `CURRENT` and `ID`, crossbeam-channel's cached `THREAD_ID`. std
//!    creates the coroutine's `Thread` lazily at its first
//!    `thread::current()`/`park()`; the runtime drops it when the coroutine
//!    finishes (`release_current`). Scheduler code runs with the executor's
//!    own values.
//! 2. Switched off on executor threads, once at start: std mpmc's and
//!    crossbeam-channel's cached `Context` become "initialised, empty" (each
//!    blocking channel operation then builds a fresh context for the
//!    calling coroutine, exactly what they do when the cache is in use by
//!    a nested operation); parking_lot's `THREAD_DATA` becomes "destroyed"
//!    (parking_lot then keeps a per-call `ThreadData` on the caller's stack,
//!    i.e. the coroutine's). Both are the fallbacks these libraries take
//!    when their cache is unavailable, so no other code path is entered.
//!
//! The slots are found by name among the STT_TLS symbols of the
//! executable's symbol table; a slot's address on a thread is that thread's
//! TLS block for the executable (`dl_iterate_phdr`'s `dlpi_tls_data`) plus
//! `st_value`. Everything is checked against the running std before use
//! (`discover`): the handle and id of a thread must be what the slots hold,
//! and the lazy thread-local state tags ("initialised", "destroyed") are
//! observed on a probe thread rather than assumed. If a check fails or the
//! symbol table is missing (stripped binary), the swap is off for the whole
//! runtime with a one-line warning and identity stays per executor.
//!
//! Cost per switch: the old coroutine's values are read from the slots and
//! saved (four loads, four stores); the new one's are compared with the
//! slots and written only where they differ (coroutines that never asked
//! std for their identity: no TLS store at all).

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::sys::elf::{for_each_symbol, tls_image, with_exe_image};

/// std's "no handle yet" value of `CURRENT` (1 is BUSY, 2 DESTROYED).
const CURRENT_NONE: u64 = 0;
/// `CURRENT` values up to this are markers, not handles.
const CURRENT_MARKERS: u64 = 2;
/// Offset of the state tag in a 16-byte lazy thread-local of a pointer-sized
/// value (value first, then the tag), checked by the probe.
const TAG_AT: usize = 8;

/// The swapped values of one coroutine: `CURRENT`, `ID`, crossbeam's
/// `THREAD_ID` (two words). All zero is "not initialised".
pub(crate) type Ident = [u64; 4];

/// Where the slots are, as offsets in the executable's TLS block.
struct Layout {
    current: usize,
    id: usize,
    cb_tid: Option<usize>,
    /// 16-byte caches of `Cell<Option<Context>>` set to initialised + None.
    alive_none: Vec<usize>,
    /// parking_lot `THREAD_DATA` slots: (offset, size) set to destroyed.
    destroyed: Vec<(usize, usize)>,
    alive_tag: u8,
    destroyed_tag: u8,
}

static LAYOUT: OnceLock<Option<Layout>> = OnceLock::new();

/// One executor's slot addresses (null `current`: the swap is off) and its
/// own values, restored whenever the scheduler runs.
pub(crate) struct Slots {
    current: *mut u64,
    id: *mut u64,
    cb_tid: *mut [u64; 2],
    own: Ident,
}

impl Slots {
    /// Identity swapping off.
    pub(crate) fn off() -> Slots {
        Slots {
            current: std::ptr::null_mut(),
            id: std::ptr::null_mut(),
            cb_tid: std::ptr::null_mut(),
            own: [0; 4],
        }
    }

    /// Whether per-coroutine identity is on for this executor.
    #[allow(dead_code)] // read by tests and stats
    pub(crate) fn enabled(&self) -> bool {
        !self.current.is_null()
    }

    /// The running code's `CURRENT` value (0 when the swap is off).
    #[inline]
    pub(crate) fn current_value(&self) -> u64 {
        if self.current.is_null() {
            return 0;
        }
        // SAFETY: this thread's slot (callers run on the executor).
        unsafe { *self.current }
    }

    /// Installs a coroutine's values (switch-in). A slot that already
    /// holds the value is not written (two coroutines that never asked std
    /// for their identity: nothing to do).
    ///
    /// # Safety
    /// Called on the executor thread these slots belong to.
    #[inline(always)]
    pub(crate) unsafe fn load(&self, v: &Ident) {
        if self.current.is_null() {
            return;
        }
        // SAFETY: the pointers are this thread's TLS slots (caller), valid
        // for the thread's lifetime; nothing holds a reference into them
        // across a switch (std reads them afresh on every access, and the
        // switch is an opaque call).
        unsafe {
            if *self.current != v[0] {
                *self.current = v[0];
            }
            if *self.id != v[1] {
                *self.id = v[1];
            }
            if !self.cb_tid.is_null() && *self.cb_tid != [v[2], v[3]] {
                *self.cb_tid = [v[2], v[3]];
            }
        }
    }

    /// Reads the running coroutine's values back (switch-out).
    ///
    /// # Safety
    /// As `load`.
    #[inline(always)]
    pub(crate) unsafe fn save(&self, v: &mut Ident) {
        if self.current.is_null() {
            return;
        }
        // SAFETY: as in `load`.
        unsafe {
            v[0] = *self.current;
            v[1] = *self.id;
            if !self.cb_tid.is_null() {
                let w = *self.cb_tid;
                v[2] = w[0];
                v[3] = w[1];
            }
        }
    }

    /// Puts the executor's own values back (the scheduler runs next).
    ///
    /// # Safety
    /// As `load`.
    #[inline(always)]
    pub(crate) unsafe fn restore_own(&self) {
        // SAFETY: our caller gives `load`'s contract; `self.own` holds the
        // values saved from this executor's own slots.
        unsafe { self.load(&self.own) }
    }

    /// Drops the running coroutine's `Thread` handle, if std created one,
    /// and leaves `CURRENT` empty. Called by the coroutine itself as the
    /// last thing before it exits (nothing after it asks for the handle).
    pub(crate) fn release_current(&self) {
        if self.current.is_null() {
            return;
        }
        // SAFETY: our thread's slot (we run on the executor that owns it).
        let cur = unsafe { *self.current };
        if cur <= CURRENT_MARKERS {
            return;
        }
        // `CURRENT` owns one strong count of the handle's Arc (std stores
        // `Thread::into_raw`). `current()` hands us a clone: two counts.
        let t = std::thread::current();
        // SAFETY: as above.
        unsafe { *self.current = CURRENT_NONE };
        // SAFETY: `discover` checked that a `Thread` is exactly one Arc
        // pointer and that `CURRENT` holds `Arc::into_raw` of the same
        // allocation; a bitwise copy of `t` therefore stands for the count
        // `CURRENT` owned (what std's `Thread::from_raw` would rebuild), and
        // dropping both releases both counts. Dropping a `Thread` does
        // nothing but decrement the count.
        let owned_by_slot = unsafe { std::ptr::read(&t) };
        drop(t);
        drop(owned_by_slot);
    }
}

/// Sets up identity swapping for the calling executor thread: discovers the
/// layout once per process (the first executor; others wait), switches off
/// the caches on this thread and records the executor's own values.
pub(crate) fn init_executor() -> Slots {
    let layout = LAYOUT.get_or_init(|| match discover() {
        Ok(l) => Some(l),
        Err(why) => {
            crate::sys::write_stderr(
                format!(
                    "coroutines: warning: per-coroutine thread identity is off ({why}); \
                     coroutines of one executor share std's thread::current(), so two of them \
                     blocking at once in thread::park, std::sync::mpsc, crossbeam-channel or \
                     parking_lot can hang. Keep the symbol table (strip = \"debuginfo\") or \
                     use one coroutine per blocking channel end.\n"
                )
                .as_bytes(),
            );
            None
        }
    });
    let Some(l) = layout else {
        return Slots::off();
    };
    let Some(base) = tls_block() else {
        return Slots::off();
    };
    // The executor's own handle exists before any coroutine runs here.
    drop(std::thread::current());
    // SAFETY: offsets inside this thread's TLS block (checked against its
    // size in `discover`); the caches are pristine on this new thread (an
    // executor thread runs no user code before this point) — checked.
    unsafe {
        for &off in &l.alive_none {
            let p = (base + off) as *mut u8;
            if slot_is_zero(p, 16) {
                *(p.add(TAG_AT)) = l.alive_tag;
            }
        }
        for &(off, size) in &l.destroyed {
            let p = (base + off) as *mut u8;
            if slot_is_zero(p, size) {
                *(p.add(size - 8)) = l.destroyed_tag;
            }
        }
    }
    let mut s = Slots {
        current: (base + l.current) as *mut u64,
        id: (base + l.id) as *mut u64,
        cb_tid: l
            .cb_tid
            .map_or(std::ptr::null_mut(), |o| (base + o) as *mut [u64; 2]),
        own: [0; 4],
    };
    let mut own = [0; 4];
    // SAFETY: this thread's slots.
    unsafe { s.save(&mut own) };
    s.own = own;
    s
}

/// # Safety
/// `p..p+n` is readable.
unsafe fn slot_is_zero(p: *const u8, n: usize) -> bool {
    // SAFETY: caller contract: `p..p+n` is readable and `i < n`.
    (0..n).all(|i| unsafe { *p.add(i) } == 0)
}

/// The calling thread's TLS block of the executable (module 1).
fn tls_block() -> Option<usize> {
    let mut out: usize = 0;
    crate::sys::for_each_object(|info| {
        out = info.dlpi_tls_data as usize;
        false // the first object is the executable
    });
    (out != 0).then_some(out)
}

fn contains(name: &[u8], pat: &[u8]) -> bool {
    name.windows(pat.len()).any(|w| w == pat)
}

/// A std static named `path` (v0: ends with it; legacy: followed by the
/// hash `17h...E`).
fn is_std_static(name: &[u8], path: &[u8]) -> bool {
    name.ends_with(path)
        || name
            .windows(path.len() + 3)
            .any(|w| w.starts_with(path) && &w[path.len()..] == b"17h")
}

struct Found {
    current: Option<(usize, usize)>,
    id: Option<(usize, usize)>,
    std_context: Option<(usize, usize)>,
    cb_context: Vec<(usize, usize)>,
    cb_tid: Vec<(usize, usize)>,
    pl_data: Vec<(usize, usize)>,
    image: Vec<u8>,
    memsz: usize,
}

fn find_slots() -> Result<Found, String> {
    let mut f = Found {
        current: None,
        id: None,
        std_context: None,
        cb_context: Vec::new(),
        cb_tid: Vec::new(),
        pl_data: Vec::new(),
        image: Vec::new(),
        memsz: 0,
    };
    let parsed = with_exe_image(|b| {
        let (img, memsz) = tls_image(b)?;
        f.image = img.to_vec();
        f.memsz = memsz;
        for_each_symbol(b, |name, info, value, size| {
            if info & 0xf != 6
            /* STT_TLS */
            {
                return;
            }
            let slot = (value as usize, size as usize);
            let lazy = contains(name, b"__RUST_STD_INTERNAL_VAL");
            if is_std_static(name, b"3std6thread7current7CURRENT") {
                f.current = Some(slot);
            } else if is_std_static(name, b"3std6thread7current2id2ID") {
                f.id = Some(slot);
            } else if lazy && contains(name, b"4mpmc7context") && contains(name, b"7CONTEXT") {
                f.std_context = Some(slot);
            } else if lazy && contains(name, b"17crossbeam_channel7context7Context4with7CONTEXT") {
                f.cb_context.push(slot);
            } else if lazy
                && contains(
                    name,
                    b"17crossbeam_channel5waker17current_thread_id9THREAD_ID",
                )
            {
                f.cb_tid.push(slot);
            } else if lazy
                && contains(name, b"16parking_lot_core11parking_lot")
                && contains(name, b"11THREAD_DATA")
            {
                f.pl_data.push(slot);
            }
        })
    })
    .flatten();
    if parsed.is_none() {
        return Err("no symbol table or TLS segment in the executable".into());
    }
    Ok(f)
}

/// Destroyed tag seen by the probe's thread-local destructor.
static PROBE_TAG: AtomicU32 = AtomicU32::new(u32::MAX);

struct Probe(Cell<usize>);
impl Drop for Probe {
    fn drop(&mut self) {
        let p = self.0.get();
        if p != 0 {
            // SAFETY: the address of a slot in this (exiting) thread's TLS
            // block, still mapped while its destructors run.
            PROBE_TAG.store(unsafe { *(p as *const u8) } as u32, Ordering::SeqCst);
        }
    }
}
thread_local! {
    static PROBE: Probe = const { Probe(Cell::new(0)) };
}

fn discover() -> Result<Layout, String> {
    let f = find_slots()?;
    let (Some(current), Some(id), Some(ctx)) = (f.current, f.id, f.std_context) else {
        return Err("std's thread-identity thread-locals were not found by name".into());
    };
    let in_block = |(off, size): (usize, usize), want: usize| size == want && off + size <= f.memsz;
    if !in_block(current, 8) || !in_block(id, 8) || !in_block(ctx, 16) {
        return Err("std's thread-identity thread-locals have an unexpected size".into());
    }
    let pristine_zero = |(off, size): (usize, usize)| {
        (off..off + size).all(|i| f.image.get(i).copied().unwrap_or(0) == 0)
    };
    if !pristine_zero(current) || !pristine_zero(id) {
        return Err("std's CURRENT/ID thread-locals do not start empty".into());
    }
    let base = tls_block().ok_or("no TLS block for the executable")?;

    // 1. The handle and id of this thread are what the slots hold.
    if std::mem::size_of::<std::thread::Thread>() != 8
        || std::mem::size_of::<std::thread::ThreadId>() != 8
    {
        return Err("std's Thread/ThreadId layout changed".into());
    }
    let t = std::thread::current();
    // SAFETY: both types are 8 bytes (checked above); we only read bits.
    let (bits, tid) = unsafe {
        (
            std::mem::transmute_copy::<std::thread::Thread, u64>(&t),
            std::mem::transmute_copy::<std::thread::ThreadId, u64>(&t.id()),
        )
    };
    // SAFETY: offsets inside this thread's TLS block (checked).
    let (cur_v, id_v) = unsafe {
        (
            *((base + current.0) as *const u64),
            *((base + id.0) as *const u64),
        )
    };
    // `CURRENT` holds Arc::into_raw (the data, 16 bytes past the counts)
    // and owns a strong count: with our clone `t` alive there are >= 2.
    if cur_v != bits + 16 || id_v != tid {
        return Err("std's CURRENT/ID thread-locals do not hold this thread's handle".into());
    }
    // SAFETY: `bits` is the ArcInner of the live handle `t` (checked just
    // above); its first word is the strong count.
    let strong = unsafe { *(bits as *const usize) };
    if strong < 2 {
        return Err("std's CURRENT does not own a reference to the thread handle".into());
    }
    drop(t);

    // 2. The lazy thread-local tags, observed on a probe thread: pristine,
    //    after std initialises its channel context, after it destroys it.
    let ctx_off = ctx.0;
    let probe = std::thread::Builder::new()
        .name("coroutines-probe".into())
        .spawn(move || {
            PROBE.with(|_| ()); // its destructor runs after the context's (LIFO)
            let b = tls_block().unwrap_or(0);
            if b == 0 {
                return None;
            }
            let slot = (b + ctx_off) as *const [u8; 16];
            // SAFETY: inside this thread's TLS block.
            let before = unsafe { *slot };
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let _ = rx.recv_timeout(Duration::from_millis(1)); // waits: caches a context
            drop(tx);
            // SAFETY: as above.
            let after = unsafe { *slot };
            PROBE.with(|p| p.0.set(b + ctx_off + TAG_AT));
            Some((before, after))
        })
        .map_err(|e| format!("probe thread: {e}"))?;
    let (before, after) = probe
        .join()
        .map_err(|_| "probe thread panicked".to_string())?
        .ok_or("probe thread has no TLS block")?;
    let destroyed = PROBE_TAG.load(Ordering::SeqCst);
    let alive = after[TAG_AT];
    let value_set = after[..8].iter().any(|&b| b != 0);
    if before != [0; 16] || alive == 0 || !value_set || destroyed > 255 {
        return Err("std's lazy thread-local layout is not the expected one".into());
    }
    let destroyed = destroyed as u8;
    if destroyed == 0 || destroyed == alive {
        return Err("std's lazy thread-local states could not be told apart".into());
    }

    // Third-party caches: used only if pristine-zero and well-sized.
    let cb_tid = match f.cb_tid.as_slice() {
        [one] if in_block(*one, 16) && pristine_zero(*one) => Some(one.0),
        _ => None,
    };
    if cb_tid.is_none() && !f.cb_context.is_empty() {
        // crossbeam-channel is linked but its cached thread id cannot be
        // swapped (several versions, or an unexpected layout): its
        // channels then take two coroutines of one executor for one thread.
        crate::sys::write_stderr(
            b"coroutines: warning: crossbeam-channel's thread id cannot be made per coroutine \
              (several crossbeam-channel versions linked?); a send between two coroutines of \
              one executor may not wake the receiver. Use one crossbeam-channel version.\n",
        );
    }
    let mut alive_none = vec![ctx_off];
    alive_none.extend(
        f.cb_context
            .iter()
            .filter(|s| in_block(**s, 16) && pristine_zero(**s))
            .map(|s| s.0),
    );
    let destroyed_slots = f
        .pl_data
        .iter()
        .filter(|s| s.1 >= 16 && s.1 % 8 == 0 && s.0 + s.1 <= f.memsz && pristine_zero(**s))
        .copied()
        .collect();
    Ok(Layout {
        current: current.0,
        id: id.0,
        cb_tid,
        alive_none,
        destroyed: destroyed_slots,
        alive_tag: alive,
        destroyed_tag: destroyed,
    })
}
