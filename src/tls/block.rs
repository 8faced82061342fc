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
//!   `thread_arena` (the carrier's cache and arena: a block of its own
//!   would leak a cache per coroutine and spread over new arenas); at
//!   switch-out the malloc words flow back to the carrier. The runtime's
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
//! malloc words are copied in before the coroutine can allocate and back
//! before the carrier (or the next coroutine) can.
//!
//! Limits (README "Thread-locals"): libraries `dlopen`ed after a block was
//! built that use static TLS (initial-exec) are not initialised in it;
//! `set*id` works through the SIGSETXID wrapper below. The descriptor's
//! stack fields describe the coroutine's own stack, so
//! `pthread_getattr_np` of a coroutine's `pthread_t` reports it.

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

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
/// Size of glibc's `tcache_perthread_struct` (64 u16 counts + 64 pointers).
const TCACHE_STRUCT: usize = 64 * 2 + 64 * 8;
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

/// What `_dl_allocate_tls_init` writes into a block, relative to the
/// block's thread pointer, valid while ld.so's TLS generation is `gen`
/// (`Layout::reinit`). One per executor (scheduler context only).
pub(crate) struct Snapshot {
    gen: usize,
    /// dtv entries 0..=last written: (value, or offset below the thread
    /// pointer if `true`).
    dtv: Box<[(usize, bool)]>,
    /// The used static TLS (`GL(dl_tls_static_used)` bytes) below the
    /// thread pointer: every module's image and zeroed TLS.
    image: Box<[u8]>,
}

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

fn dlsym(name: &CStr) -> Option<usize> {
    // SAFETY: NUL-terminated name; RTLD_DEFAULT searches every object.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
    (p != 0).then_some(p)
}

fn discover() -> Result<Layout, String> {
    // SAFETY: getauxval is always safe to call.
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    if hwcap2 & 2 == 0 {
        return Err("the kernel does not enable FSGSBASE for user space".into());
    }
    // SAFETY: returns a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(gnu_get_libc_version()) }
        .to_string_lossy()
        .into_owned();
    if version != "2.36" {
        return Err(format!(
            "glibc {version}: the thread-descriptor layout is known for glibc 2.36 only"
        ));
    }
    let need = |name: &CStr| dlsym(name).ok_or_else(|| format!("{name:?} not found"));
    let allocate = need(c"_dl_allocate_tls")?;
    let deallocate = need(c"_dl_deallocate_tls")?;
    let init_tls = need(c"_dl_allocate_tls_init")?;
    // SAFETY: glibc 2.36's signature (checked version).
    let init_tls = unsafe { std::mem::transmute::<usize, InitTls>(init_tls) };
    let call_dtors = need(c"__call_tls_dtors")?;
    let static_info = need(c"_dl_get_tls_static_info")?;
    let keys = need(c"__pthread_keys")?;
    let rseq_offset = need(c"__rseq_offset")?;
    // SAFETY: the signatures are glibc's (checked version); the data
    // symbols are a ptrdiff_t and the key table.
    let (allocate, deallocate, call_dtors, static_info, rseq_offset) = unsafe {
        (
            std::mem::transmute::<usize, AllocateTls>(allocate),
            std::mem::transmute::<usize, DeallocateTls>(deallocate),
            std::mem::transmute::<usize, CallTlsDtors>(call_dtors),
            std::mem::transmute::<usize, StaticInfo>(static_info),
            *(rseq_offset as *const isize),
        )
    };
    let (mut static_size, mut align) = (0usize, 0usize);
    // SAFETY: writes two size_t.
    unsafe { static_info(&mut static_size, &mut align) };
    if rseq_offset <= 0 {
        return Err(format!("unexpected __rseq_offset {rseq_offset}"));
    }
    let tcb_size = rseq_offset as usize + 32;
    if tcb_size != 2368
        || static_size <= tcb_size
        || static_size > 256 * 1024
        || !align.is_power_of_two()
    {
        return Err(format!(
            "unexpected TLS layout (static size {static_size}, align {align}, descriptor {tcb_size})"
        ));
    }
    // SAFETY: libc's errno location for the calling thread.
    let errno_addr = unsafe { libc::__errno_location() } as usize;
    let tp = read_fs_base();
    if errno_addr >= tp || tp - errno_addr > static_size - tcb_size {
        return Err("errno is not in static TLS".into());
    }
    let errno_off = tp - errno_addr;
    // First: it starts a thread (after which `multiple_threads` is set).
    check_malloc_words(errno_off)?;
    let word = |off: usize| -> usize {
        // SAFETY: `off` lies inside the calling thread's descriptor
        // (`tcb_size` bytes at the thread pointer).
        unsafe { *((tp + off) as *const usize) }
    };
    if word(D_SELF_TCB) != tp || word(D_SELF) != tp {
        return Err("thread descriptor self pointers not where expected".into());
    }
    // SAFETY: as above (4-byte fields).
    let (tid, multi) = unsafe {
        (
            *((tp + D_TID) as *const i32),
            *((tp + D_MULTIPLE_THREADS) as *const i32),
        )
    };
    if tid != crate::sys::gettid() || multi != 1 {
        return Err(format!(
            "descriptor tid/multiple_threads not where expected ({tid}, {multi})"
        ));
    }
    let mut head: usize = 0;
    let mut len: usize = 0;
    // SAFETY: get_robust_list for the calling thread writes two words.
    let r = unsafe { libc::syscall(libc::SYS_get_robust_list, 0, &mut head, &mut len) };
    if r != 0 || head != tp + D_ROBUST_HEAD {
        return Err("robust list head not where expected".into());
    }
    // The thread-list links: a doubly linked list through this thread.
    let next = word(D_LIST);
    // SAFETY: `next` is a list node of glibc's (checked non-null first).
    if next == 0 || unsafe { *((next + 8) as *const usize) } != tp + D_LIST {
        return Err("thread-list links not where expected".into());
    }
    if word(D_SPECIFIC) != tp + D_SPECIFIC_1ST {
        return Err("pthread key area not where expected".into());
    }
    check_keys(tp, keys as *const KeySlot)?;
    // SAFETY: the executable's own thread-local; taking its address.
    let exec_addr = crate::sched::executor_slot_addr();
    let executor_off = exec_addr as isize - tp as isize;
    if executor_off >= 0 || (-executor_off) as usize > static_size - tcb_size {
        return Err("the runtime's thread-local is not in static TLS".into());
    }
    let mut layout = Layout {
        static_size,
        align,
        tcb_size,
        rseq_cpu_id: rseq_offset as usize + 4,
        executor_off,
        errno_off,
        allocate,
        deallocate,
        init_tls,
        call_dtors,
        keys: keys as *const KeySlot,
        fast: None,
    };
    match check_fast_reinit(&mut layout, tp) {
        Ok(()) => {}
        Err(e) => crate::sys::write_stderr(
            format!(
                "coroutines: warning: TLS blocks are re-initialised by ld.so each time \
                 (slower spawns; {e})\n"
            )
            .as_bytes(),
        ),
    }
    Ok(layout)
}

/// Finds ld.so's TLS generation counter and static-TLS size for the
/// snapshot re-initialisation of blocks (`Layout::reuse`), checking
/// glibc 2.36's `_rtld_global` offsets against what `dl_iterate_phdr`
/// reports (highest module id, each module's slotinfo link map, the
/// calling thread's static TLS offsets), then checks that a block
/// re-initialised from a snapshot equals one ld.so initialised. On
/// success sets `l.fast`.
fn check_fast_reinit(l: &mut Layout, tp: usize) -> Result<(), String> {
    let rtld = dlsym(c"_rtld_global").ok_or("_rtld_global not found")?;
    struct Mods {
        tp: usize,
        /// (module id, load address, offset below the thread pointer)
        list: Vec<(usize, usize, usize)>,
    }
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> i32 {
        // SAFETY: dl_iterate_phdr passes a valid info and our `Mods`.
        unsafe {
            let (i, m) = (&*info, &mut *(data as *mut Mods));
            if i.dlpi_tls_modid != 0 {
                let off = m.tp.wrapping_sub(i.dlpi_tls_data as usize);
                m.list.push((i.dlpi_tls_modid, i.dlpi_addr as usize, off));
            }
        }
        0
    }
    let mut mods = Mods {
        tp,
        list: Vec::new(),
    };
    // SAFETY: the callback above only records plain values.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut mods as *mut Mods as *mut c_void) };
    // SAFETY: `_rtld_global` is ld.so's (large) state; the words read are
    // inside it for glibc 2.36 (checked version), their meaning checked here.
    let word = |off: usize| unsafe { *((rtld + off) as *const usize) };
    let max_idx = word(R_TLS_MAX_DTV_IDX);
    let below = l.static_size - l.tcb_size;
    let used = word(R_TLS_STATIC_USED);
    let gen = word(R_TLS_GENERATION);
    let list = word(R_TLS_SLOTINFO_LIST);
    let highest = mods.list.iter().map(|m| m.0).max().unwrap_or(0);
    // Static modules: their data in this thread's static area (dynamic
    // ones have none yet or a heap block). ld.so's used size is the
    // largest offset of a static module (each module's block lies at
    // `tp - offset`, offsets growing away from the thread pointer).
    let max_off = mods
        .list
        .iter()
        .map(|m| m.2)
        .filter(|&off| off != 0 && off <= below)
        .max()
        .ok_or("no module in static TLS")?;
    if used != max_off {
        return Err(format!(
            "ld.so's static TLS size not where expected ({used}, modules reach {max_off})"
        ));
    }
    // On the main thread, the word before the generation counter is
    // ld.so's `_dl_initial_dtv`: the main thread's dtv.
    // SAFETY: getpid/gettid are always safe; the dtv pointer is this
    // thread's descriptor word.
    if unsafe { libc::getpid() } == crate::sys::gettid()
        && word(R_TLS_INITIAL_DTV) != unsafe { *((tp + D_DTV) as *const usize) }
    {
        return Err("ld.so's initial dtv not where expected".into());
    }
    if max_idx != highest || max_idx == 0 || list == 0 || used == 0 || used > below {
        return Err(format!(
            "ld.so's TLS state not where expected (modules {highest}, max index {max_idx}, \
             static used {used})"
        ));
    }
    for &(modid, addr, _) in &mods.list {
        // SAFETY: the slotinfo list head: {len, next, {gen, map}[len]}
        // (checked: len covers the module ids; map's first word is its
        // load address).
        let ok = unsafe {
            let len = *(list as *const usize);
            let ent = (list + 16 + modid * 16) as *const usize;
            modid < len && {
                let (g, map) = (*ent, *ent.add(1));
                g <= gen && map != 0 && *(map as *const usize) == addr
            }
        };
        if !ok {
            return Err(format!(
                "ld.so's TLS slotinfo for module {modid} not as expected"
            ));
        }
    }
    l.fast = Some(FastInit {
        generation: (rtld + R_TLS_GENERATION) as *const usize,
        static_used: (rtld + R_TLS_STATIC_USED) as *const usize,
        max_dtv_idx: (rtld + R_TLS_MAX_DTV_IDX) as *const usize,
    });
    // Probe: block A initialised by ld.so and snapshotted, then scribbled
    // over and re-initialised from the snapshot, must equal block B
    // initialised by ld.so.
    let span = l.span();
    let mut mem = vec![0u8; 2 * span + 128];
    let base = (mem.as_mut_ptr() as usize + 63) & !63;
    let (top_a, top_b) = (base + span, base + 2 * span);
    let result = (|| {
        // SAFETY: the two spans lie in `mem`, ours; this thread's own
        // descriptor is copied (scheduler-context rule: no coroutine runs
        // on these blocks).
        unsafe {
            let mut snap = None;
            let mut stats = (0, 0);
            // Built with our own dtv and ld.so's initialisation (no
            // snapshot yet), which takes the snapshot.
            let (a, _) = l.create(top_a, top_a - span, tp, &mut snap).ok_or("probe block")?;
            let Some(s) = snap.as_ref() else {
                l.destroy(a);
                return Err("no snapshot taken".to_string());
            };
            let dtv = *((a + D_DTV) as *const usize);
            for i in 1..s.dtv.len() {
                ((dtv + 16 * i) as *mut usize).write(0x5eed);
            }
            std::ptr::write_bytes((a - s.image.len()) as *mut u8, 0xa5, s.image.len());
            l.reinit(a, &mut snap, &mut stats);
            let Some((b, _)) = l.create_glibc(top_b, top_b - span, tp) else {
                l.destroy(a);
                return Err("probe block".to_string());
            };
            let img = |t: usize| std::slice::from_raw_parts((t - used) as *const u8, used);
            let same_img = img(a) == img(b);
            let (da, db) = (
                *((a + D_DTV) as *const usize),
                *((b + D_DTV) as *const usize),
            );
            // Ours is as long as the module ids need, ld.so's has 14 more
            // (unused, zero) entries.
            let (len_a, len_b) = (*((da - 16) as *const usize), *((db - 16) as *const usize));
            let mut same_dtv = len_a <= len_b;
            for i in 0..=len_b {
                let vb = *((db + 16 * i) as *const usize);
                let va = if i <= len_a { *((da + 16 * i) as *const usize) } else { 0 };
                let rel = |v: usize, t: usize| {
                    if i > 0 && v < t && v >= t - below {
                        v.wrapping_sub(t)
                    } else {
                        v
                    }
                };
                same_dtv &= rel(va, a) == rel(vb, b);
            }
            let fast_used = stats == (1, 0);
            l.destroy(a);
            l.destroy(b);
            if same_img && same_dtv && fast_used {
                Ok(())
            } else {
                Err(format!(
                    "a snapshot-initialised probe block differs from ld.so's (image {same_img}, \
                     dtv {same_dtv}, fast {fast_used})"
                ))
            }
        }
    })();
    if result.is_err() {
        l.fast = None;
    }
    result
}

extern "C" {
    fn gnu_get_libc_version() -> *const libc::c_char;
}

/// A probe key's value must land in the descriptor's key area, and the
/// key table must describe the key.
fn check_keys(tp: usize, keys: *const KeySlot) -> Result<(), String> {
    unsafe extern "C" fn probe_dtor(_: *mut c_void) {}
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: creating, setting and deleting a key of our own.
    unsafe {
        if libc::pthread_key_create(&mut key, Some(probe_dtor)) != 0 {
            return Err("pthread_key_create failed".into());
        }
        let marker = 0x5eed_0001usize as *mut c_void;
        libc::pthread_setspecific(key, marker);
        let k = key as usize;
        let ok = k < KEYS_MAX && {
            let slot = &*keys.add(k);
            let blk = *((tp + D_SPECIFIC + (k / KEY_2ND_LEVEL) * 8) as *const usize);
            blk != 0 && {
                let ent = (blk + (k % KEY_2ND_LEVEL) * 16) as *const usize;
                *ent == slot.seq
                    && *ent.add(1) == marker as usize
                    && slot.destr.map(|f| f as usize) == Some(probe_dtor as *const () as usize)
            }
        };
        libc::pthread_setspecific(key, std::ptr::null());
        libc::pthread_key_delete(key);
        if ok {
            Ok(())
        } else {
            Err("pthread key slots not where expected".into())
        }
    }
}

/// On a fresh thread, the malloc words must be NULL before its first
/// malloc and a tcache (of glibc's size) and an arena after.
fn check_malloc_words(errno_off: usize) -> Result<(), String> {
    extern "C" fn probe(arg: *mut c_void) -> *mut c_void {
        // SAFETY: the caller passes a (errno offset, key) pair that
        // outlives this thread (joined before it is dropped).
        let (errno_off, key) = unsafe { *(arg as *const (usize, libc::pthread_key_t)) };
        // Only raw reads and libc calls here: no Rust allocation before
        // the first read.
        let tp: usize;
        // SAFETY: reads the fs base (FSGSBASE checked by the caller).
        unsafe {
            std::arch::asm!("rdfsbase {}", out(reg) tp, options(nomem, nostack, preserves_flags))
        };
        let base = tp - errno_off;
        let rd = |off: usize| -> usize {
            // SAFETY: inside libc's static TLS block of this thread.
            unsafe { *((base + off) as *const usize) }
        };
        let before = (rd(L_TCACHE), rd(L_THREAD_ARENA));
        // SAFETY: a malloc/free pair (black_box: the compiler may not
        // elide it).
        unsafe { libc::free(std::hint::black_box(libc::malloc(40))) };
        let after = (rd(L_TCACHE), rd(L_THREAD_ARENA));
        // SAFETY: the tcache is a malloc'd chunk if the offset is right.
        let size = if after.0 != 0 {
            unsafe { libc::malloc_usable_size(after.0 as *mut c_void) }
        } else {
            0
        };
        // SAFETY: one byte of libc TLS.
        let shutting = unsafe { *((base + L_TCACHE_SHUTTING_DOWN) as *const u8) };
        let ok = before == (0, 0)
            && after.1 != 0
            && size >= TCACHE_STRUCT
            && size < 2 * TCACHE_STRUCT
            && shutting == 0;
        // `specific_used`: false on a fresh thread, set by
        // pthread_setspecific.
        // SAFETY: a byte of this thread's descriptor; a key of the caller's.
        let used = unsafe {
            let before = *((tp + D_SPECIFIC_USED) as *const u8);
            libc::pthread_setspecific(key, 1 as *const c_void);
            let after = *((tp + D_SPECIFIC_USED) as *const u8);
            libc::pthread_setspecific(key, std::ptr::null());
            (before, after)
        };
        let ok = ok && used == (0, 1);
        // The stack fields: what pthread_getattr_np reports for a created
        // thread is computed from them.
        // SAFETY: an attr filled by glibc for this thread, destroyed after;
        // words of this thread's descriptor.
        let stack_ok = unsafe {
            let mut at: libc::pthread_attr_t = std::mem::zeroed();
            let (mut lo, mut size, mut guard) = (std::ptr::null_mut(), 0usize, 0usize);
            let got = libc::pthread_getattr_np(libc::pthread_self(), &mut at) == 0;
            let got = got
                && libc::pthread_attr_getstack(&at, &mut lo, &mut size) == 0
                && libc::pthread_attr_getguardsize(&at, &mut guard) == 0;
            if got {
                libc::pthread_attr_destroy(&mut at);
            }
            let w = |off: usize| *((tp + D_STACKBLOCK + off) as *const usize);
            got && w(0) != 0
                && w(0) + w(8) == lo as usize + size
                && w(8) - w(16) == size
                && w(24) == guard
                && (w(0)..lo as usize + size).contains(&tp)
        };
        (ok && stack_ok) as usize as *mut c_void
    }
    let mut th: libc::pthread_t = 0;
    let mut res: *mut c_void = std::ptr::null_mut();
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: a key of our own, deleted below.
    if unsafe { libc::pthread_key_create(&mut key, None) } != 0 {
        return Err("pthread_key_create failed".into());
    }
    let arg = (errno_off, key);
    // SAFETY: a joinable probe thread, joined at once; `arg` outlives it.
    let ok = unsafe {
        let ok = libc::pthread_create(
            &mut th,
            std::ptr::null(),
            probe,
            &arg as *const _ as *mut c_void,
        ) == 0
            && libc::pthread_join(th, &mut res) == 0;
        libc::pthread_key_delete(key);
        ok
    };
    if ok && res as usize == 1 {
        Ok(())
    } else {
        Err(
            "glibc malloc's thread-locals, the pthread-key flag or the stack fields not where expected"
                .into(),
        )
    }
}

impl Layout {
    /// Bytes a block takes at the top of a stack (at most).
    pub(crate) fn span(&self) -> usize {
        self.static_size + self.align
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
        let tp = (top - self.tcb_size) & !(self.align - 1);
        let below = self.static_size - self.tcb_size;
        let lo = tp - below;
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
        let tp = (top - self.tcb_size) & !(self.align - 1);
        let below = self.static_size - self.tcb_size;
        let lo = tp - below;
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

    /// Re-initialises the block of a finished coroutine (its destructors
    /// ran) for a new one, keeping its dtv, as glibc's thread-stack cache
    /// does: the dynamic TLS blocks of `dlopen`ed modules are freed, the
    /// per-thread descriptor fields reset, and the static TLS images and
    /// dtv entries laid in again ([`reinit`](Self::reinit)). Returns the
    /// new top of the usable stack.
    ///
    /// # Safety
    /// `tp` came from [`create`](Self::create) at the top of a stack whose
    /// highest address was `top`, its coroutine finished, ran its
    /// destructors and will never run again; scheduler context; `snap` is
    /// the calling executor's.
    pub(crate) unsafe fn reuse(&self, tp: usize, snap: &mut Option<Snapshot>) -> usize {
        let below = self.static_size - self.tcb_size;
        // SAFETY: caller: the block and its dtv are ours.
        unsafe {
            // The descriptor is already a carrier's copy (carriers differ
            // only in fields the switch rewrites, `tid`): reset what a
            // coroutine's life may have changed.
            self.reset_fields(tp, false);
            self.reinit(tp, snap, &mut (0, 0));
        }
        (tp - below) & !15
    }

    /// Lays the static TLS images and the dtv entries into block `tp`
    /// whose dtv exists. Fast path, when ld.so's TLS generation is the one
    /// `snap` was taken at (no module with TLS loaded or unloaded since,
    /// so `_dl_allocate_tls_init` would write exactly the same): the dtv
    /// entries and the used part of the static area are copied from the
    /// snapshot (static entries relative to `tp`). Otherwise ld.so's
    /// `_dl_allocate_tls_init` does it (taking its TLS lock, growing the
    /// dtv if modules were loaded) and a new snapshot is taken from the
    /// result. Either way the dynamic TLS blocks of `dlopen`ed modules the
    /// last coroutine allocated are freed first. `stats` counts (fast,
    /// slow) for the start-up probe.
    ///
    /// # Safety
    /// `tp` is a block of [`create`](Self::create) no coroutine runs on;
    /// scheduler context (or the start-up probe).
    unsafe fn reinit(&self, tp: usize, snap: &mut Option<Snapshot>, stats: &mut (u32, u32)) {
        // SAFETY: caller: the block and its dtv are ours; glibc's dtv
        // layout: the tcb points at entry 1 of a calloc'd array whose
        // entry 0 holds the length; each entry is {val, to_free}.
        unsafe {
            let dtv = *((tp + D_DTV) as *const usize);
            let len = *((dtv - 16) as *const usize);
            for i in 1..=len {
                let to_free = (dtv + 16 * i + 8) as *mut usize;
                if *to_free != 0 {
                    libc::free(*to_free as *mut c_void);
                    *to_free = 0;
                    ((dtv + 16 * i) as *mut usize).write(DTV_UNALLOCATED);
                }
            }
            if let Some(FastInit {
                generation: gen,
                static_used: used,
                ..
            }) = self.fast
            {
                // Relaxed: a module loaded concurrently is one this block
                // may miss exactly as with ld.so's lock (its dtv generation
                // is older, so `__tls_get_addr` catches up; static TLS of
                // a later `dlopen` is the documented limit).
                let cur = load_relaxed(gen);
                if let Some(s) = snap
                    .as_ref()
                    .filter(|s| s.gen == cur && s.dtv.len() <= len + 1)
                {
                    for (i, &(v, rel)) in s.dtv.iter().enumerate() {
                        let v = if rel { tp.wrapping_sub(v) } else { v };
                        ((dtv + 16 * i) as *mut usize).write(v);
                    }
                    let n = s.image.len();
                    std::ptr::copy_nonoverlapping(s.image.as_ptr(), (tp - n) as *mut u8, n);
                    stats.0 += 1;
                    return;
                }
                std::ptr::write_bytes(dtv as *mut u8, 0, (len + 1) * 16);
                (self.init_tls)(tp as *mut c_void, true);
                stats.1 += 1;
                // The snapshot holds only if no module came or went while
                // ld.so initialised the block.
                let after = load_relaxed(gen);
                *snap = (after == cur).then(|| self.snapshot(tp, cur, load_relaxed(used)));
            } else {
                std::ptr::write_bytes(dtv as *mut u8, 0, (len + 1) * 16);
                (self.init_tls)(tp as *mut c_void, true);
                stats.1 += 1;
            }
        }
    }

    /// What ld.so just wrote into block `tp`: its dtv up to the last
    /// entry written (static entries as offsets below `tp`) and the
    /// `used` bytes of static TLS below `tp`.
    ///
    /// # Safety
    /// `tp` is a block `_dl_allocate_tls_init` has just initialised.
    unsafe fn snapshot(&self, tp: usize, gen: usize, used: usize) -> Snapshot {
        let below = self.static_size - self.tcb_size;
        let used = used.min(below);
        // SAFETY: caller; the dtv array and the static area are the block's.
        unsafe {
            let dtv = *((tp + D_DTV) as *const usize);
            let len = *((dtv - 16) as *const usize);
            let entry = |i: usize| *((dtv + 16 * i) as *const usize);
            let last = (1..=len).rev().find(|&i| entry(i) != 0).unwrap_or(0);
            let dtv = (0..=last)
                .map(|i| {
                    let v = entry(i);
                    if i > 0 && v < tp && v >= tp - below {
                        (tp - v, true)
                    } else {
                        (v, false)
                    }
                })
                .collect();
            let image = std::slice::from_raw_parts((tp - used) as *const u8, used).into();
            Snapshot { gen, dtv, image }
        }
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
    /// `exec` (thread id `tid`), coming from the side whose libc TLS block
    /// is at `from_errno` (the carrier's or the previous coroutine's): the
    /// carrier-bound words are written into the block.
    ///
    /// # Safety
    /// `tp` is a live block not running anywhere; `from_errno` is the errno
    /// address of the side running now on this thread.
    #[inline(always)]
    pub(crate) unsafe fn switch_in(&self, tp: usize, exec: usize, tid: i32, from_errno: usize) {
        // SAFETY: caller: both blocks are live; offsets checked at start.
        unsafe {
            (((tp as isize) + self.executor_off) as *mut usize).write(exec);
            ((tp + D_TID) as *mut i32).write(tid);
            copy_malloc_words(from_errno, tp - self.errno_off);
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

/// Coroutine context, at exit: runs the coroutine's thread-local
/// destructors (Rust `thread_local!`, C++ `thread_local`, via glibc's
/// `__call_tls_dtors`) and then its pthread-key destructors, as glibc's
/// thread exit does.
pub(crate) fn run_exit_destructors() {
    let l = layout();
    // Pooled registrations go back first: the library's destructors then
    // find nothing to free (pool.rs).
    super::pool::at_exit(&crate::sched::current_task(), read_fs_base());
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
                // SAFETY: as above; the key table is glibc's.
                unsafe { *ent.add(1) = 0 };
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
