//! Per-coroutine thread-local storage: every coroutine runs with a thread
//! pointer (`%fs` base) of its own.
//!
//! Problem: libraries keep per-thread state in `thread_local!` (tokio's
//! runtime context inside `block_on`, rayon's per-thread latch, tracing's
//! span stack, std's thread handle and panic count). Coroutines sharing
//! their executor's thread-locals see each other's state; moving a started
//! coroutine to another executor would leave thread-local addresses the
//! compiler cached pointing at the old thread.
//!
//! Design (a thread pointer per coroutine, built the way glibc builds one
//! for a new thread):
//! - At first run, the top of the coroutine's stack becomes a *TLS block*:
//!   `[static TLS of every module | thread descriptor]`, the thread pointer
//!   (`tp`) at the boundary, exactly as glibc lays out a thread's stack.
//!   The descriptor (glibc's `struct pthread`) is a copy of the carrier's
//!   (stack and pointer guards, flags) with the per-thread fields reset:
//!   self pointers, `multiple_threads = 1`, pthread-key area empty, robust
//!   list empty, rseq `cpu_id = -2` (glibc then asks the kernel for the
//!   CPU instead of reading a snapshot the kernel never updates). The
//!   block gets a dtv of its own, calloc'd in ld.so's layout but only as
//!   long as the module ids need (ld.so's `allocate_dtv` adds 14 spare
//!   entries; ld.so grows a short dtv itself when a module is loaded), and
//!   the TLS images are laid in by ld.so's own `_dl_allocate_tls_init`
//!   (what `pthread_create` uses) or from a snapshot of what it wrote
//!   (below); never copied from the executor: a copy would alias the
//!   executor's heap objects, destructor list, malloc cache and dtv.
//!   Without the snapshot path, ld.so's `_dl_allocate_tls` builds both.
//! - The context switch (`asm/x86_64/switch.S`) loads the resumed side's
//!   thread pointer with `wrfsbase` together with its stack, so no Rust
//!   code ever runs with another side's thread pointer; the preemption
//!   handler lands in the scheduler through `coroutines_preempt_land`,
//!   which restores the carrier's.
//! - Carrier-bound state (Loom's `CarrierThreadLocal`) follows the OS
//!   thread, not the coroutine. At every switch-in the runtime writes into
//!   the block: this crate's `EXECUTOR` pointer (the current executor),
//!   the descriptor's `tid` (the carrier's: `pthread_kill` of the
//!   coroutine's `pthread_t` and glibc's owner checks see the thread that
//!   runs it now) and glibc malloc's `tcache`, `tcache_shutting_down` and
//!   `thread_arena` (the carrier's cache and arena); at every switch-out
//!   (to the scheduler or straight to a sibling) the malloc words flow
//!   back to the carrier. The runtime's
//!   other thread-locals (stack cache, signal stack, identity probes) are
//!   only touched from scheduler context, which runs on the carrier's own
//!   thread pointer.
//! - At exit the coroutine runs, on its own stack and block, glibc's
//!   `__call_tls_dtors` (Rust `thread_local!` destructors) and then the
//!   destructors of its pthread keys (as glibc's thread exit does: up to 4
//!   rounds), before `join` returns. The scheduler keeps the stack with
//!   its block and dtv (a per-executor cache, sched/executor.rs `tls_cache`); the
//!   next coroutine of that stack size re-initialises it as glibc's
//!   thread-stack cache does (`reuse`: dynamic TLS freed, per-thread
//!   descriptor fields reset — the pthread-key area only if a key was
//!   set —, static images and dtv entries laid in). Laying in is a copy of
//!   a per-executor *snapshot* of what `_dl_allocate_tls_init` wrote into
//!   a block (the used static TLS and the dtv entries, relative to the
//!   thread pointer) while ld.so's TLS generation counter is the one the
//!   snapshot was taken at: no module with TLS was loaded or unloaded
//!   since, so ld.so would write the same bytes (without its lock and
//!   module walk). When the generation moved, `_dl_allocate_tls_init`
//!   runs (growing the dtv if needed) and a new snapshot is taken. Blocks
//!   beyond the cache are freed with `_dl_deallocate_tls`.
//! - Malloc state: a coroutine starts on the carrier's malloc words (no
//!   memory of its own: most coroutines are short or park often). When it
//!   is preempted (`MallocState::OwnWhenPreempted`, the default) after a
//!   whole slice or for a woken coroutine — not when only cut short for
//!   coroutines that never ran (a spawning loop is preempted for its own
//!   children, and with an arena of its own it stopped reusing what the
//!   executors freed: bench W2a 0.9× tokio, 0.5-0.6× without) — it runs
//!   like a thread, and until it parks it allocates like one: its block
//!   gets the words of a fresh thread (`give_own_malloc`: no cache, no
//!   arena), glibc sets up a cache and picks an arena at its next
//!   allocation exactly as for a new thread (its own arena while glibc's
//!   limit of 8 per core allows, then shared ones), and the switches leave
//!   those words alone. At exit, and whenever it parks, its cache is
//!   emptied back into the arenas (`release_own_malloc`, what glibc's
//!   thread exit does; without it each finished coroutine kept its cache:
//!   163 KB each in the test); at a park it also goes back to the
//!   carrier's words (`demote_own_malloc`) and keeps its arena for its
//!   next preemption, so parked coroutines hold no cache. Why:
//!   preempted allocation-bound coroutines sharing one executor's cache
//!   and arena interleave their chunks in one heap, which is used from
//!   both CPUs once coroutines move — 0.4× the speed of threads (bench
//!   A1); with state of their own, 0.9×.
//! - Thread ids of libraries with bounded tables of threads
//!   (tracing-subscriber's sharded_slab) are pooled between coroutines
//!   (pool.rs): at exit, before the destructors, and at parks.
//! - The runtime's no-preempt level is itself a thread-local (sched/level.rs
//!   `LEVEL`): per coroutine, so it moves with the coroutine and the
//!   preemption handler reads the interrupted coroutine's own.
//!
//! Discovery (at runtime start; any failure prints one line and the
//! runtime runs with shared thread-locals, as `COROUTINES_THREAD_LOCALS=
//! shared` forces): FSGSBASE usable from user space (AT_HWCAP2), glibc
//! 2.36 (the descriptor and libc TLS offsets below are that build's), the
//! GLIBC_PRIVATE entry points found by `dlsym`, and each offset checked
//! against the running thread: self pointers, `tid` = gettid, robust list
//! head = what the kernel has registered, pthread-key slots = where a probe
//! key's value lands, rseq size, and the malloc words on a probe thread
//! (NULL before its first malloc, a tcache of the right size after).
//! The snapshot re-initialisation has its own check (one warning line and
//! every reuse goes through ld.so if it fails): ld.so's `_rtld_global`
//! offsets against `dl_iterate_phdr` and the calling thread (highest
//! module id; the slotinfo list's link map of each module; static TLS used
//! = the largest static module offset; on the main thread, the initial
//! dtv next to the generation counter), then a probe block re-initialised
//! from a snapshot must equal one built by `_dl_allocate_tls`.
//!
//! Invariants: a block is used by one coroutine, which runs on one thread
//! at a time; its thread pointer is loaded only by the switch assembly (or
//! the preemption landing) together with the matching stack (the
//! SIGSETXID wrapper swaps in the carrier's for glibc's handler and puts
//! the block's back before returning); the carrier's
//! malloc words are copied in before a coroutine without malloc state of
//! its own can allocate and back before the carrier (or the next
//! coroutine) can; a coroutine's own words are only ever used by that
//! coroutine (set while it is switched out, never copied anywhere).
//!
//! Limits (README "Thread-locals"): libraries `dlopen`ed after a block was
//! built that use static TLS (initial-exec) are not initialised in it;
//! `set*id` works through the SIGSETXID wrapper below. The descriptor's
//! stack fields describe the coroutine's own stack, so
//! `pthread_getattr_np` of a coroutine's `pthread_t` reports it.
//!
//! Files: this one holds the glibc offsets, the `Layout`, turning the mode
//! on, and the block operations (create, reuse, switch-in, destroy,
//! destructors at exit, the SIGSETXID wrapper); the discovery and its
//! probes are in block/discover.rs, the snapshot re-initialisation of a
//! reused block (`Snapshot`, `reuse`, `reinit`) in block/snapshot.rs.

mod discover;
mod snapshot;

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use discover::discover;
pub(crate) use snapshot::Snapshot;

// Offsets inside glibc 2.36's x86-64 `struct pthread` (checked at start).
const D_SELF_TCB: usize = 0x0;
const D_DTV: usize = 0x8;
const D_SELF: usize = 0x10;
const D_MULTIPLE_THREADS: usize = 0x18;
const D_LIST: usize = 0x2c0;
const D_TID: usize = 0x2d0;
const D_ROBUST_HEAD: usize = 0x2e0;
const D_SPECIFIC_1ST: usize = 0x310;
const D_SPECIFIC: usize = 0x510;
/// 32 second-level pointers after `specific`.
const D_SPECIFIC_END: usize = D_SPECIFIC + 32 * 8;
/// `specific_used`: set by `pthread_setspecific` (checked on a probe).
const D_SPECIFIC_USED: usize = D_SPECIFIC_END;
/// `stackblock` (lowest address of the stack mapping, guard included),
/// then `stackblock_size`, `guardsize`, `reported_guardsize`: what
/// `pthread_getattr_np` reports and glibc's alloca cutoff reads (checked on
/// a probe thread).
const D_STACKBLOCK: usize = 0x690;
/// A coroutine stack's guard: one page below its lowest usable address.
const GUARD: usize = crate::stack::PAGE_SIZE;
const KEYS_MAX: usize = 1024;
const KEY_2ND_LEVEL: usize = 32;
/// glibc's PTHREAD_DESTRUCTOR_ITERATIONS.
const DESTRUCTOR_ROUNDS: usize = 4;
// Offsets of libc's malloc thread-locals relative to its `errno`.
const L_TCACHE: usize = 0x38;
const L_TCACHE_SHUTTING_DOWN: usize = 0x40;
const L_THREAD_ARENA: usize = 0x48;
/// glibc's `TCACHE_MAX_BINS`.
const TCACHE_BINS: usize = 64;
/// Bytes of the counts (u16 each) before the list heads.
const TCACHE_COUNTS: usize = TCACHE_BINS * 2;
/// Size of glibc's `tcache_perthread_struct` (64 u16 counts + 64 pointers).
const TCACHE_STRUCT: usize = TCACHE_COUNTS + TCACHE_BINS * 8;
// Offsets inside glibc 2.36's x86-64 `_rtld_global` (ld.so's state; checked
// at start against `dl_iterate_phdr` and the calling thread).
const R_TLS_MAX_DTV_IDX: usize = 0x1068;
const R_TLS_SLOTINFO_LIST: usize = 0x1070;
const R_TLS_STATIC_USED: usize = 0x1080;
const R_TLS_INITIAL_DTV: usize = 0x1090;
const R_TLS_GENERATION: usize = 0x1098;
/// ld.so's `TLS_DTV_UNALLOCATED`.
const DTV_UNALLOCATED: usize = usize::MAX;

type AllocateTls = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type DeallocateTls = unsafe extern "C" fn(*mut c_void, bool);
/// `_dl_allocate_tls_init(tcb, init_tls)`: lays the static TLS images into
/// a block whose dtv exists (glibc's thread-stack cache uses it).
type InitTls = unsafe extern "C" fn(*mut c_void, bool) -> *mut c_void;
type CallTlsDtors = unsafe extern "C" fn();
type StaticInfo = unsafe extern "C" fn(*mut usize, *mut usize);

/// glibc's `struct pthread_key_struct`.
#[repr(C)]
struct KeySlot {
    seq: usize,
    destr: Option<unsafe extern "C" fn(*mut c_void)>,
}

/// What the blocks are built from, found and checked once.
pub(crate) struct Layout {
    /// `_dl_get_tls_static_info`: static TLS plus descriptor, and alignment.
    static_size: usize,
    align: usize,
    /// Bytes of the descriptor (`__rseq_offset` + 32: rseq is its last
    /// member in 2.36).
    tcb_size: usize,
    rseq_cpu_id: usize,
    /// Offset of this crate's `EXECUTOR` thread-local from the thread
    /// pointer (negative: static TLS lies below it).
    executor_off: isize,
    /// Thread pointer minus `__errno_location()` (libc's static TLS block
    /// is at the same offset in every thread).
    errno_off: usize,
    allocate: AllocateTls,
    deallocate: DeallocateTls,
    init_tls: InitTls,
    call_dtors: CallTlsDtors,
    keys: *const KeySlot,
    /// `&GL(dl_tls_generation)` and `&GL(dl_tls_static_used)` in ld.so's
    /// `_rtld_global`, when their offsets checked out and the snapshot
    /// re-initialisation reproduced glibc's on a probe block (`reuse`'s
    /// fast path); None: every reuse calls `_dl_allocate_tls_init`.
    fast: Option<FastInit>,
}

/// Words of ld.so's `_rtld_global` the snapshot path reads (relaxed).
#[derive(Clone, Copy)]
struct FastInit {
    /// `GL(dl_tls_generation)`: bumped by every `dlopen`/`dlclose` that
    /// adds or removes a module with TLS.
    generation: *const usize,
    /// `GL(dl_tls_static_used)`: bytes of static TLS below the thread
    /// pointer that modules occupy.
    static_used: *const usize,
    /// `GL(dl_tls_max_dtv_idx)`: the highest module id (dtv length needed).
    max_dtv_idx: *const usize,
}

// SAFETY: `keys` points at glibc's process-wide key table, read only;
// `fast` at two words of ld.so's state, read only (relaxed loads).
unsafe impl Send for Layout {}
// SAFETY: as above; every other field is plain data.
unsafe impl Sync for Layout {}

static LAYOUT: OnceLock<Result<Layout, String>> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether coroutines run with thread-locals of their own (decided once at
/// runtime start by [`enable`]).
#[inline(always)]
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The layout; only meaningful once [`enable`] returned true.
#[inline(always)]
pub(crate) fn layout() -> &'static Layout {
    match LAYOUT.get() {
        Some(Ok(l)) => l,
        _ => crate::sys::fatal("coroutines: per-coroutine thread-locals used while off"),
    }
}

/// Runtime start: turns per-coroutine thread-locals on if `wanted` and
/// discovery succeeds; otherwise prints one line (only if wanted) and
/// leaves them off. Returns the decision.
pub(crate) fn enable(wanted: bool) -> bool {
    if !wanted {
        return false;
    }
    match LAYOUT.get_or_init(discover) {
        Ok(_) => {
            if let Err(e) = install_setxid_wrapper() {
                crate::sys::write_stderr(
                    format!(
                        "coroutines: warning: per-coroutine thread-locals are off ({e}); \
                         coroutines of one executor share its thread-locals\n"
                    )
                    .as_bytes(),
                );
                return false;
            }
            ENABLED.store(true, Ordering::Relaxed);
            true
        }
        Err(e) => {
            crate::sys::write_stderr(
                format!(
                    "coroutines: warning: per-coroutine thread-locals are off ({e}); coroutines \
                     of one executor share its thread-locals (set COROUTINES_THREAD_LOCALS=shared \
                     to silence this)\n"
                )
                .as_bytes(),
            );
            false
        }
    }
}

/// The calling thread's thread pointer.
#[inline(always)]
pub(crate) fn read_fs_base() -> usize {
    let v: usize;
    // SAFETY: FSGSBASE is enabled (checked by discovery before any caller
    // runs with blocks on); reads a register.
    unsafe { std::arch::asm!("rdfsbase {}", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

impl Layout {
    /// Bytes a block takes at the top of a stack (at most).
    pub(crate) fn span(&self) -> usize {
        self.static_size + self.align
    }

    /// Where a block at the top of a stack whose highest address is `top`
    /// goes: its thread pointer (the descriptor above it, aligned as ld.so
    /// aligns static TLS), the bytes of static TLS below the thread
    /// pointer, and the block's lowest address.
    fn geometry(&self, top: usize) -> (usize, usize, usize) {
        let tp = (top - self.tcb_size) & !(self.align - 1);
        let below = self.static_size - self.tcb_size;
        (tp, below, tp - below)
    }

    /// Builds a block at the top of a stack whose highest address is
    /// `top` and lowest usable address `bottom` (a guard page below it),
    /// copying the descriptor of the carrier (`carrier_tp`) with the
    /// coroutine's own stack in its stack fields.
    /// Returns the block's thread pointer and the new top of the usable
    /// stack below the block; None if the dtv could not be allocated.
    /// With the snapshot path on, the dtv is calloc'd here as ld.so's
    /// `allocate_dtv` does but only as long as the module ids need (ld.so
    /// adds 14 spare entries; it grows a short dtv itself, with realloc,
    /// when a module is loaded: 224 B less per coroutine) and
    /// [`reinit`](Self::reinit) lays the images in; otherwise ld.so's
    /// `_dl_allocate_tls` does both.
    ///
    /// # Safety
    /// `[top - span(), top)` is writable memory owned by the caller, not in
    /// use; called on the carrier thread in scheduler context; `snap` is
    /// the calling executor's.
    pub(crate) unsafe fn create(
        &self,
        top: usize,
        bottom: usize,
        carrier_tp: usize,
        snap: &mut Option<Snapshot>,
    ) -> Option<(usize, usize)> {
        let Some(fast) = self.fast else {
            // SAFETY: caller.
            return unsafe { self.create_glibc(top, bottom, carrier_tp) };
        };
        let (tp, below, lo) = self.geometry(top);
        // SAFETY: caller: the span is ours; the carrier's descriptor is
        // `tcb_size` readable bytes at its thread pointer; the dtv has
        // glibc's layout (entry -1 = length, the tcb points at entry 0)
        // and comes from libc's malloc as ld.so's own does, so ld.so may
        // realloc and free it.
        unsafe {
            self.reset_descriptor(tp, carrier_tp);
            self.set_stack(tp, top, bottom);
            std::ptr::write_bytes(lo as *mut u8, 0, below);
            let len = load_relaxed(fast.max_dtv_idx).max(1);
            let dtv = libc::calloc(len + 2, 16) as *mut usize;
            if dtv.is_null() {
                return None;
            }
            dtv.write(len);
            ((tp + D_DTV) as *mut usize).write(dtv as usize + 16);
            self.reinit(tp, snap, &mut (0, 0));
        }
        Some((tp, lo & !15))
    }

    /// [`create`](Self::create) by ld.so's `_dl_allocate_tls` (dtv and
    /// images), as `pthread_create` does.
    ///
    /// # Safety
    /// As for `create`.
    unsafe fn create_glibc(
        &self,
        top: usize,
        bottom: usize,
        carrier_tp: usize,
    ) -> Option<(usize, usize)> {
        let (tp, below, lo) = self.geometry(top);
        // SAFETY: caller: the span is ours; the carrier's descriptor is
        // `tcb_size` readable bytes at its thread pointer.
        unsafe {
            self.reset_descriptor(tp, carrier_tp);
            self.set_stack(tp, top, bottom);
            ((tp + D_DTV) as *mut usize).write(0);
            // Static TLS: zeroed, then ld.so lays the images in.
            std::ptr::write_bytes(lo as *mut u8, 0, below);
            if (self.allocate)(tp as *mut c_void).is_null() {
                return None;
            }
        }
        Some((tp, lo & !15))
    }

    /// The stack fields of a block's descriptor, as glibc describes a
    /// thread's stack: the whole mapping, guard included (lowest usable
    /// address `bottom`, a guard page below it), block and descriptor at
    /// its top. So `pthread_getattr_np(pthread_self())` in the coroutine
    /// reports its own stack (stack-growing crates such as `stacker` find
    /// their bounds) and glibc's alloca cutoff (a quarter of the stack)
    /// fits it. A reused block keeps them (same stack).
    ///
    /// # Safety
    /// `tp` is a block's thread pointer (`tcb_size` writable bytes) not in
    /// use, at the top of the stack `[bottom, top)`.
    unsafe fn set_stack(&self, tp: usize, top: usize, bottom: usize) {
        // SAFETY: caller; offsets checked at start.
        unsafe {
            let w = |off: usize, v: usize| ((tp + D_STACKBLOCK + off) as *mut usize).write(v);
            let block = bottom - GUARD;
            w(0, block);
            w(8, top - block);
            w(16, GUARD);
            w(24, GUARD);
        }
    }

    /// The descriptor of a block: the carrier's, with every per-thread
    /// field reset (the dtv is the caller's to set).
    ///
    /// # Safety
    /// `tp` is a block's thread pointer (`tcb_size` writable bytes) not in
    /// use; `carrier_tp` is this thread's own.
    unsafe fn reset_descriptor(&self, tp: usize, carrier_tp: usize) {
        // SAFETY: caller.
        unsafe {
            std::ptr::copy_nonoverlapping(carrier_tp as *const u8, tp as *mut u8, self.tcb_size);
            self.reset_fields(tp, true);
        }
    }

    /// The per-thread fields of a block's descriptor (see `create`).
    /// `fresh`: the descriptor was just copied from the carrier; else it
    /// is a finished coroutine's, whose pthread-key area is cleared only
    /// if a key was ever set (`specific_used`: glibc sets it with every
    /// non-NULL value; without it every value slot is NULL and no
    /// second-level block was allocated).
    ///
    /// # Safety
    /// As for `reset_descriptor`.
    unsafe fn reset_fields(&self, tp: usize, fresh: bool) {
        // SAFETY: caller: `tcb_size` writable bytes at `tp`.
        unsafe {
            let w = |off: usize, v: usize| ((tp + off) as *mut usize).write(v);
            w(D_SELF_TCB, tp);
            w(D_SELF, tp);
            // glibc's thread-list links: the block is on no list (a fork
            // child's `list_del` of it then touches nothing but itself).
            w(D_LIST, tp + D_LIST);
            w(D_LIST + 8, tp + D_LIST);
            ((tp + D_MULTIPLE_THREADS) as *mut i32).write(1);
            // Robust list: empty (a list head pointing at itself).
            w(D_ROBUST_HEAD, tp + D_ROBUST_HEAD);
            w(D_ROBUST_HEAD + 16, 0);
            // pthread keys: no values, first-level block inline.
            if fresh || *((tp + D_SPECIFIC_USED) as *const u8) != 0 {
                std::ptr::write_bytes(
                    (tp + D_SPECIFIC_1ST) as *mut u8,
                    0,
                    D_SPECIFIC_USED + 1 - D_SPECIFIC_1ST,
                );
                w(D_SPECIFIC, tp + D_SPECIFIC_1ST);
            }
            // rseq: "registration failed" makes glibc ask the kernel for
            // the CPU instead of reading this never-updated copy.
            ((tp + self.rseq_cpu_id) as *mut i32).write(-2);
        }
    }

    /// Frees what ld.so allocated for a block (dtv, dynamic TLS). The
    /// block's memory itself belongs to the stack.
    ///
    /// # Safety
    /// `tp` came from [`create`](Self::create), its coroutine finished and
    /// ran its destructors; scheduler context.
    pub(crate) unsafe fn destroy(&self, tp: usize) {
        // SAFETY: caller.
        unsafe { (self.deallocate)(tp as *mut c_void, false) };
    }

    /// Switch-in bookkeeping of block `tp` on the carrier of executor
    /// `exec` (thread id `tid`): the carrier-bound words are written into
    /// the block — the malloc words from `from_errno` unless the coroutine
    /// has malloc state of its own.
    ///
    /// # Safety
    /// `tp` is a live block not running anywhere; `from_errno` is the errno
    /// address of the block that holds the carrier's current malloc words
    /// (the carrier's, or that of the coroutine switching straight to this
    /// one, if it uses them).
    #[inline(always)]
    pub(crate) unsafe fn switch_in(
        &self,
        tp: usize,
        exec: usize,
        tid: i32,
        from_errno: usize,
        own_malloc: bool,
    ) {
        // SAFETY: caller: both blocks are live; offsets checked at start.
        unsafe {
            (((tp as isize) + self.executor_off) as *mut usize).write(exec);
            ((tp + D_TID) as *mut i32).write(tid);
            if !own_malloc {
                copy_malloc_words(from_errno, tp - self.errno_off);
            }
        }
    }

    /// errno address (libc's TLS block base) of block or carrier `tp`.
    #[inline(always)]
    pub(crate) fn errno_of(&self, tp: usize) -> usize {
        tp - self.errno_off
    }
}

/// A relaxed load of a word of ld.so's state (written by `dlopen` under
/// its lock).
///
/// # Safety
/// `p` is an aligned word of `_rtld_global` (checked at start).
#[inline(always)]
unsafe fn load_relaxed(p: *const usize) -> usize {
    // SAFETY: caller; AtomicUsize has usize's layout.
    unsafe { (*(p as *const std::sync::atomic::AtomicUsize)).load(Ordering::Relaxed) }
}

/// Copies glibc malloc's per-thread words (tcache, its shutdown flag,
/// arena) from one libc TLS block to another.
///
/// # Safety
/// Both are errno addresses of live blocks on the calling thread's
/// carrier, neither in a malloc call.
#[inline(always)]
pub(crate) unsafe fn copy_malloc_words(from_errno: usize, to_errno: usize) {
    // SAFETY: caller; 8-byte words and one byte at checked offsets.
    unsafe {
        let r = |o: usize| ((from_errno + o) as *const usize).read();
        ((to_errno + L_TCACHE) as *mut usize).write(r(L_TCACHE));
        ((to_errno + L_THREAD_ARENA) as *mut usize).write(r(L_THREAD_ARENA));
        ((to_errno + L_TCACHE_SHUTTING_DOWN) as *mut u8)
            .write(((from_errno + L_TCACHE_SHUTTING_DOWN) as *const u8).read());
    }
}

/// Own glibc malloc state for preempted coroutines is in force
/// (`MallocState::OwnWhenPreempted` and the tcache layout checked).
static OWN_MALLOC: AtomicBool = AtomicBool::new(false);

/// Whether a preempted coroutine gets malloc state of its own.
#[inline(always)]
pub(crate) fn own_malloc() -> bool {
    OWN_MALLOC.load(Ordering::Relaxed)
}

/// Runtime start, after [`enable`] returned true: turns own malloc state
/// for preempted coroutines on if `wanted` and glibc's tcache layout (bins
/// and their safe-linked lists, which [`release_own_malloc`] walks) checks
/// out on a probe thread; otherwise prints one line (only if wanted) and
/// every coroutine keeps using its executor's.
pub(crate) fn enable_own_malloc(wanted: bool) -> bool {
    if !wanted || !enabled() {
        return false;
    }
    match discover::check_tcache_bins(layout().errno_off) {
        Ok(()) => {
            OWN_MALLOC.store(true, Ordering::Relaxed);
            true
        }
        Err(e) => {
            crate::sys::write_stderr(
                format!(
                    "coroutines: warning: preempted coroutines keep using their executor's glibc \
                     malloc cache and arena ({e}); set COROUTINES_MALLOC_STATE=executor to \
                     silence this\n"
                )
                .as_bytes(),
            );
            false
        }
    }
}

/// Scheduler context, when a coroutine is preempted without malloc state
/// of its own: its block gets the malloc words of a fresh thread (no
/// tcache, not shutting down) with `arena`, its own arena from before its
/// last park (0: none yet, so glibc picks one as for a new thread at its
/// next allocation, and sets up a cache); until it parks the switches
/// leave them alone.
///
/// # Safety
/// `tp` is the live block of a switched-out coroutine whose words were
/// just copied back to the carrier.
pub(crate) unsafe fn give_own_malloc(tp: usize, arena: usize) {
    let errno = layout().errno_of(tp);
    // SAFETY: caller; words and a byte at checked offsets of the block.
    unsafe {
        ((errno + L_TCACHE) as *mut usize).write(0);
        ((errno + L_THREAD_ARENA) as *mut usize).write(arena);
        ((errno + L_TCACHE_SHUTTING_DOWN) as *mut u8).write(0);
    }
}

/// Coroutine context, when a coroutine with malloc state of its own is
/// about to park: empties its cache back into the arenas (a parked
/// coroutine holds no cached chunks: 10,000 parked coroutines must not
/// keep 10,000 caches) and switches it back to the carrier's words, which
/// are in `carrier_errno`'s block while it runs. Returns its own arena,
/// which it gets back at its next preemption.
pub(crate) fn demote_own_malloc(carrier_errno: usize) -> usize {
    let _np = crate::sched::NoPreempt::new();
    let errno = layout().errno_of(read_fs_base());
    // SAFETY: our own block's arena word (checked offset).
    let arena = unsafe { ((errno + L_THREAD_ARENA) as *const usize).read() };
    release_own_malloc();
    // SAFETY: the carrier's block holds its current words (we have our
    // own, so nobody copied them out); ours is the running block.
    unsafe { copy_malloc_words(carrier_errno, errno) };
    arena
}

/// Coroutine context, last thing at exit of a coroutine with malloc state
/// of its own: empties its tcache back into the arenas and frees it, as
/// glibc's thread exit (`tcache_thread_shutdown`) does, and marks the cache
/// shut down so the rest of the exit path allocates from the arena. The
/// arena stays attached (glibc's count of threads attached to an arena is
/// internal): it is not offered to a new thread first, but glibc still
/// hands it out once its arena limit (8 per core) is reached.
pub(crate) fn release_own_malloc() {
    let _np = crate::sched::NoPreempt::new();
    let errno = layout().errno_of(read_fs_base());
    // SAFETY: our own block's malloc words (checked offsets); the tcache
    // is detached before its chunks are freed, so `free` puts them in the
    // arenas, and nobody else uses it (it was this coroutine's alone). Its
    // layout — 64 u16 counts, then 64 list heads whose `next` links are
    // safe-linked (`(&next >> 12) ^ next`) — was checked at start.
    unsafe {
        let t = ((errno + L_TCACHE) as *const usize).read();
        ((errno + L_TCACHE) as *mut usize).write(0);
        ((errno + L_TCACHE_SHUTTING_DOWN) as *mut u8).write(1);
        if t == 0 {
            return;
        }
        for bin in 0..TCACHE_BINS {
            let head = (t + TCACHE_COUNTS + bin * 8) as *mut usize;
            let mut e = *head;
            while e != 0 {
                if e % 16 != 0 {
                    crate::sys::fatal("coroutines: corrupt glibc tcache list at coroutine exit");
                }
                let next = (e >> 12) ^ *(e as *const usize);
                *head = next;
                libc::free(e as *mut c_void);
                e = next;
            }
        }
        libc::free(t as *mut c_void);
    }
}

/// Coroutine context, at exit: runs the coroutine's thread-local
/// destructors (Rust `thread_local!`, C++ `thread_local`, via glibc's
/// `__call_tls_dtors`) and then its pthread-key destructors, as glibc's
/// thread exit does.
pub(crate) fn run_exit_destructors() {
    let l = layout();
    // Pooled registrations go back first: the library's destructors then
    // find nothing to free (pool.rs).
    // (The running coroutine is looked up only if something is pooled: an
    // `Arc` clone per exit otherwise.)
    if super::pool::active() {
        super::pool::at_exit(&crate::sched::current_coroutine(), read_fs_base());
    }
    // SAFETY: glibc's function; runs the destructors registered in the
    // running block's list (ours), in this coroutine's context.
    unsafe { (l.call_dtors)() };
    let tp = read_fs_base();
    // SAFETY: our descriptor's `specific_used` byte (offset checked).
    if unsafe { *((tp + D_SPECIFIC_USED) as *const u8) } == 0 {
        return; // no pthread key was ever set in this coroutine
    }
    for _ in 0..DESTRUCTOR_ROUNDS {
        let mut ran = false;
        for level in 0..KEYS_MAX / KEY_2ND_LEVEL {
            // SAFETY: the running block's descriptor (ours), key area.
            let blk = unsafe { *((tp + D_SPECIFIC + level * 8) as *const usize) };
            if blk == 0 {
                continue;
            }
            for i in 0..KEY_2ND_LEVEL {
                let ent = (blk + i * 16) as *mut usize;
                // SAFETY: an entry of our own key block ({seq, data}).
                let (seq, data) = unsafe { (*ent, *ent.add(1)) };
                if data == 0 {
                    continue;
                }
                // SAFETY: an entry of our own key block, as above.
                unsafe { *ent.add(1) = 0 };
                // SAFETY: the key table is glibc's, KEYS_MAX entries; the
                // index is below it (level < KEYS_MAX / KEY_2ND_LEVEL).
                let slot = unsafe { &*l.keys.add(level * KEY_2ND_LEVEL + i) };
                if slot.seq == seq {
                    if let Some(d) = slot.destr {
                        ran = true;
                        // SAFETY: the key's destructor with its value, as
                        // glibc calls it at thread exit.
                        unsafe { d(data as *mut c_void) };
                    }
                }
            }
        }
        if !ran {
            break;
        }
    }
    // Second-level key blocks were calloc'd by glibc for this block.
    for level in 1..KEYS_MAX / KEY_2ND_LEVEL {
        let p = (tp + D_SPECIFIC + level * 8) as *mut usize;
        // SAFETY: our descriptor; glibc allocated these with calloc.
        unsafe {
            if *p != 0 {
                libc::free(*p as *mut c_void);
                *p = 0;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// set*id

/// glibc's SIGSETXID (SIGRTMIN + 1 in its numbering: signal 33).
const SIGSETXID: i32 = 33;
static SETXID_PREV: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[repr(C)]
struct KSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// `setuid` and friends signal every thread with SIGSETXID; glibc's
/// handler acknowledges in `THREAD_SELF`, which must be the carrier's real
/// descriptor (the caller waits on that one), not a coroutine's block.
/// This wrapper, installed with the raw syscall (glibc's `sigaction`
/// refuses its internal signals), runs glibc's handler with the carrier's
/// thread pointer and restores the coroutine's afterwards.
fn install_setxid_wrapper() -> Result<(), String> {
    let mut old = KSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: reads the current action of SIGSETXID.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            SIGSETXID,
            std::ptr::null::<KSigaction>(),
            &mut old,
            8,
        )
    };
    if r != 0 || old.handler <= 1 {
        return Err("glibc's SIGSETXID handler is not installed".into());
    }
    if old.handler == setxid_wrapper as *const () as usize {
        return Ok(());
    }
    if old.flags & libc::SA_SIGINFO as u64 == 0 {
        return Err("glibc's SIGSETXID handler has an unexpected form".into());
    }
    SETXID_PREV.store(old.handler, Ordering::Release);
    let new = KSigaction {
        handler: setxid_wrapper as *const () as usize,
        ..old
    };
    // SAFETY: installs our wrapper with glibc's own flags, mask and restorer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            SIGSETXID,
            &new,
            std::ptr::null_mut::<KSigaction>(),
            8,
        )
    };
    if r != 0 {
        return Err("cannot wrap glibc's SIGSETXID handler".into());
    }
    Ok(())
}

extern "C" fn setxid_wrapper(sig: i32, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let prev = SETXID_PREV.load(Ordering::Acquire);
    if prev == 0 {
        return;
    }
    // SAFETY: the handler glibc installed, same signature.
    let prev: extern "C" fn(i32, *mut libc::siginfo_t, *mut c_void) =
        unsafe { std::mem::transmute(prev) };
    let cur = read_fs_base();
    let carrier = crate::sched::carrier_tp_raw();
    if carrier == 0 || carrier == cur {
        prev(sig, info, ctx);
        return;
    }
    // SAFETY: the carrier's thread pointer is this OS thread's own; the
    // coroutine's is restored before returning to the interrupted code.
    // Nothing between the two writes uses Rust thread-locals.
    unsafe { std::arch::asm!("wrfsbase {}", in(reg) carrier, options(nostack, preserves_flags)) };
    prev(sig, info, ctx);
    // SAFETY: as above.
    unsafe { std::arch::asm!("wrfsbase {}", in(reg) cur, options(nostack, preserves_flags)) };
}
