//! Per-coroutine addresses for thread-locals: TLS alias windows.
//!
//! Used only with shared thread-locals (`COROUTINES_THREAD_LOCALS=shared`,
//! or when per-coroutine TLS blocks are unavailable: block.rs); with
//! per-coroutine blocks every coroutine has its own addresses anyway.
//!
//! Problem: some code identifies "the current thread" by the *address* of
//! a thread-local — std's mpsc/mpmc channels do (`current_thread_id` is the
//! address of a thread-local byte), and skip waking a receiver registered
//! from "the same thread" as the sender. Two coroutines of one executor
//! share the executor's thread-locals, so a send from one never woke a
//! receive blocked in the other: a hang. Swapping values (identity.rs)
//! cannot change an address.
//!
//! Design: on x86-64 the address of a static thread-local is computed from
//! the thread pointer stored at `%fs:0` (the TCB's self pointer glibc and
//! the compiler use) plus a link-time negative offset; plain loads and
//! stores use `%fs:offset` directly and glibc reaches its thread
//! descriptor through `%fs:0x10`, neither reading `%fs:0`. An executor
//! thread runs on a stack we allocate (`ThreadStack`) laid out so that its
//! static TLS blocks — just below the thread pointer, where glibc places
//! them in a user-supplied stack — are a shared memfd mapping, while the
//! thread descriptor above stays private. A coroutine may get an *alias
//! window*: a second mapping of the same pages (with a guard page where
//! the descriptor would be). While it runs, `%fs:0` holds the thread
//! pointer's position in its window: addresses of thread-locals taken in
//! the coroutine differ from its siblings', while the bytes they reach are
//! the executor's own (thread-local *values* stay per executor;
//! identity.rs swaps the few that must not). The scheduler runs with the
//! real thread pointer. Windows are pooled per executor and never unmapped
//! while the executor's stack exists (an address a coroutine took, e.g. a
//! thread-local destructor registration, stays valid); a retired
//! executor's stack and windows are reused by the next thread of its slot.
//!
//! Windows are lazy (each costs a VMA and ~8 KiB of page-table-mapped
//! RSS): a coroutine runs with the executor's own addresses until it is
//! switched in while a *risky* window-less sibling exists — one parked in
//! its std parker (`thread::park`, std channel waits: it may be registered
//! in a channel under the executor's addresses) or preempted (it may have
//! registered and not parked yet). Then it gets a window, so its address
//! differs from every registration made with the executor's. Two
//! window-less coroutines can thus never be sender and blocked receiver of
//! one std channel on one executor; a program that never blocks in a std
//! channel or `thread::park` and is never preempted maps no window at all.
//! A coroutine keeps its window while it runs and while it waits in a
//! futex or its parker, but lends it back to the pool while it parks for
//! I/O, a sleep, a join or `coroutines::park` (no std channel wait can be
//! in progress then; addresses computed through it stay valid, every
//! window mapping the same pages), so windows number the coroutines
//! holding one *now*, not all that ever needed one.
//!
//! Why the descriptor must stay private: glibc links threads through their
//! descriptors, and a fork child unlinks the other threads — writes that
//! would land in the parent's executors if descriptors were shared (a
//! later `setresuid` then skipped a thread: found by review, test
//! `fork_keeps_glibc_thread_list_intact`).
//!
//! fork(2): the region is shared memory, which a child would keep sharing
//! with the parent. The `fork` hook swaps a private copy in for the
//! duration of the fork (all signals blocked with the raw syscall) and
//! restores the shared mapping in the parent; windows are MADV_DONTFORK,
//! and in the child a private copy is mapped where the forking coroutine's
//! window was. glibc-internal forks (`forkpty`, `daemon`) bypass the hook:
//! do not call them from coroutines.
//!
//! Limits: at most `MAX_WINDOWS` windows per process (each is a kernel
//! VMA; vm.max_map_count is 65,530 by default). A coroutine started when
//! none is free runs with the executor's addresses (then it shares std's
//! channel identity with its executor, as without windows). Off with
//! migration (a window belongs to one executor's stack).

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sys::syscall6;

/// Size of the shared part of an executor stack: the pages right below
/// the thread pointer, which hold every static TLS block (a few KiB in
/// practice; checked at executor start).
pub(crate) const REGION: usize = 64 * 1024;
const PAGE: usize = 4096;
/// Process-wide cap on alias windows.
pub(crate) const MAX_WINDOWS: usize = 16_384;
static WINDOWS: AtomicUsize = AtomicUsize::new(0);
/// Set once the cap was reached (a cheap check before the counter).
static EXHAUSTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Windows in existence, for stats and tests.
pub(crate) fn windows_created() -> usize {
    WINDOWS.load(Ordering::Relaxed)
}

/// An executor thread's stack:
/// `[guard page | private stack | shared REGION | private TCB page(s)]`,
/// laid out so that the thread pointer glibc computes for it (the start of
/// `struct pthread`, `tcb_span()` below the stack top) is exactly the
/// boundary between the shared region and the private TCB pages. Only
/// static TLS is shared; glibc's thread descriptor (its thread-list links,
/// tid, robust list...) stays private, so a fork child writing to those
/// cannot reach the parent. Plus a *keeper*: one more mapping of the
/// region's pages, never used as a window, from which windows are
/// duplicated (`mremap` with old size 0) and through which the region is
/// shared again after a fork. No fd is kept open.
pub(crate) struct ThreadStack {
    /// Lowest address of the reservation (the guard page).
    base: usize,
    /// What pthread is given: `[base, base + stack_size)`.
    stack_size: usize,
    /// The thread pointer the thread will have.
    tp: usize,
    keeper: usize,
}

// SAFETY: plain addresses; the memory is used by one thread at a time (the
// slot's executor), handed over through thread start/join.
unsafe impl Send for ThreadStack {}
// SAFETY: as above (shared references only read the fields).
unsafe impl Sync for ThreadStack {}

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Distance from the top of a user-supplied stack to the thread pointer
/// glibc places in it (`struct pthread` plus alignment), measured once on
/// two probe threads: one to measure, one to check that a stack whose top
/// is a page boundary plus that distance gets a page-aligned thread
/// pointer. None if glibc does not behave so (then executors get plain
/// stacks and no windows).
fn tcb_span() -> Option<usize> {
    static SPAN: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *SPAN.get_or_init(|| {
        let size = 256 * 1024;
        // SAFETY: a fresh private reservation for the probes, unmapped below.
        let m = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if m == libc::MAP_FAILED {
            return None;
        }
        let base = m as usize;
        let top1 = base + size; // page aligned
        let d = probe_tp(base, size).and_then(|tp| top1.checked_sub(tp));
        let ok = d.filter(|&d| d > 0 && d < 16 * PAGE).and_then(|d| {
            let p = top1 - 2 * PAGE - d.div_ceil(PAGE) * PAGE;
            (probe_tp(base, p + d - base) == Some(p)).then_some(d)
        });
        // SAFETY: our reservation; both probe threads were joined.
        unsafe { libc::munmap(m, size) };
        ok
    })
}

/// Runs a thread on `[base, base + size)` and returns its thread pointer.
fn probe_tp(base: usize, size: usize) -> Option<usize> {
    extern "C" fn body(_: *mut libc::c_void) -> *mut libc::c_void {
        read_tp() as *mut libc::c_void
    }
    // SAFETY: attr initialised before use and destroyed after; the range
    // is our writable reservation, used by this one thread until joined.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        let mut rc = libc::pthread_attr_setstack(&mut attr, base as *mut _, size);
        let mut th: libc::pthread_t = 0;
        if rc == 0 {
            rc = libc::pthread_create(&mut th, &attr, body, std::ptr::null_mut());
        }
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            return None;
        }
        let mut out: *mut libc::c_void = std::ptr::null_mut();
        libc::pthread_join(th, &mut out);
        Some(out as usize)
    }
}

impl ThreadStack {
    /// Reserves a stack of `size` usable bytes plus the shared region and
    /// the private TCB pages (layout in the type's doc).
    pub(crate) fn new(size: usize) -> io::Result<ThreadStack> {
        let d = tcb_span().ok_or_else(|| {
            io::Error::other("glibc does not place the thread pointer predictably in a user stack")
        })?;
        let size = size.div_ceil(PAGE) * PAGE;
        let tcb_pages = d.div_ceil(PAGE) * PAGE;
        let total = PAGE + size + REGION + tcb_pages;
        // SAFETY: fresh anonymous reservation; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(os_err("mmap executor stack"));
        }
        let base = base as usize;
        let tp = base + PAGE + size + REGION;
        let lo = tp - REGION;
        let fail = |what: &str, fd: i32| {
            let e = os_err(what);
            // SAFETY: our own fresh mapping and fd, not yet shared.
            unsafe {
                libc::munmap(base as *mut _, total);
                if fd >= 0 {
                    libc::close(fd);
                }
            }
            e
        };
        // SAFETY: the lowest page of our reservation becomes the guard.
        if unsafe { libc::mprotect(base as *mut _, PAGE, libc::PROT_NONE) } != 0 {
            return Err(fail("mprotect executor stack guard", -1));
        }
        // SAFETY: plain syscall wrappers on a name we own.
        let fd = unsafe { libc::memfd_create(c"coroutines-tls".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(fail("memfd_create for the executor TLS region", -1));
        }
        // SAFETY: as above.
        if unsafe { libc::ftruncate(fd, REGION as libc::off_t) } != 0 {
            return Err(fail("ftruncate executor TLS region", fd));
        }
        // SAFETY: replaces REGION bytes of our own reservation.
        let r = unsafe {
            libc::mmap(
                lo as *mut _,
                REGION,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd,
                0,
            )
        };
        if r as usize != lo {
            return Err(fail("mmap executor TLS region", fd));
        }
        // SAFETY: a second shared mapping of the same fd, kernel-placed.
        let keeper = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                REGION,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if keeper == libc::MAP_FAILED {
            return Err(fail("mmap executor TLS keeper", fd));
        }
        // SAFETY: our fd; the mappings keep the pages alive; the keeper
        // stays out of fork children.
        unsafe {
            libc::madvise(keeper, REGION, libc::MADV_DONTFORK);
            libc::close(fd);
        }
        Ok(ThreadStack {
            base,
            stack_size: tp + d - base,
            tp,
            keeper: keeper as usize,
        })
    }

    /// What the thread running on this stack needs to know about it.
    pub(crate) fn info(&self) -> StackInfo {
        StackInfo {
            region_lo: self.tp - REGION,
            tp: self.tp,
            keeper: self.keeper,
        }
    }
}

/// Where an executor's shared region is (see `ThreadStack`).
#[derive(Clone, Copy)]
pub(crate) struct StackInfo {
    region_lo: usize,
    tp: usize,
    keeper: usize,
}

/// Starts an OS thread named `name` running `f` on `stack` (glibc places
/// the thread's TLS and TCB at the top of it). The thread is joinable;
/// the caller joins it before reusing the stack.
pub(crate) fn spawn_on(
    stack: &ThreadStack,
    name: &str,
    f: Box<dyn FnOnce() + Send>,
) -> io::Result<libc::pthread_t> {
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the Box we leaked below, passed exactly once.
        let f = unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() + Send>) };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
            crate::sys::fatal("an executor thread panicked");
        }
        std::ptr::null_mut()
    }
    let arg = Box::into_raw(Box::new(f));
    // SAFETY: attr is initialised before use and destroyed after; the
    // stack range is ours, writable except its guard page, and unused by
    // any other thread (the slot's previous thread was joined).
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        let mut rc = libc::pthread_attr_setstack(&mut attr, stack.base as *mut _, stack.stack_size);
        let mut th: libc::pthread_t = 0;
        if rc == 0 {
            rc = libc::pthread_create(&mut th, &attr, start, arg as *mut libc::c_void);
        }
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            drop(Box::from_raw(arg));
            return Err(io::Error::from_raw_os_error(rc));
        }
        let mut n = name.as_bytes()[..name.len().min(15)].to_vec();
        n.push(0);
        libc::pthread_setname_np(th, n.as_ptr() as *const libc::c_char);
        Ok(th)
    }
}

#[inline(always)]
fn read_tp() -> usize {
    let v: usize;
    // SAFETY: reads the TCB self pointer of the calling thread.
    unsafe {
        std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) v, options(nostack, readonly, preserves_flags))
    };
    v
}

/// # Safety
/// `v` is the thread's real thread pointer or its position in one of the
/// thread's alias windows (same bytes at a different address).
#[inline(always)]
unsafe fn write_tp(v: usize) {
    // SAFETY: caller; `%fs:0` is only used to form thread-local addresses.
    unsafe {
        std::arch::asm!("mov qword ptr fs:[0], {}", in(reg) v, options(nostack, preserves_flags))
    };
}

/// One executor's windows. Owner thread only.
pub(crate) struct Windows {
    /// 0: windows are off on this executor.
    real_tp: usize,
    region_lo: usize,
    keeper: usize,
    pool: RefCell<Vec<usize>>,
    /// What `%fs:0` holds now (only this code and `fork` write it): an
    /// unchanged value is not written again (a store there delays the next
    /// thread-local access, which reads it).
    installed: std::cell::Cell<usize>,
}

impl Windows {
    /// Windows off (plain thread stack, migration on, or a failed check).
    pub(crate) fn off() -> Windows {
        Windows {
            real_tp: 0,
            region_lo: 0,
            keeper: 0,
            pool: RefCell::new(Vec::new()),
            installed: std::cell::Cell::new(0),
        }
    }

    /// Called on the executor thread at start. `stack`: the stack the
    /// thread runs on (None: a plain thread stack). `use_windows`: false
    /// with migration. The shared region is remembered even when windows
    /// are off (fork must still keep a child off it).
    pub(crate) fn init(stack: Option<StackInfo>, use_windows: bool) -> Windows {
        let Some(s) = stack else {
            return Windows::off();
        };
        let tp = read_tp();
        // The thread pointer must be where the layout put it (struct
        // pthread private, above the region) and every static TLS block
        // inside the region.
        let fits = tp == s.tp && static_tls_within(s.region_lo, tp);
        if !fits {
            crate::sys::write_stderr(
                b"coroutines: warning: an executor's thread pointer is not where its stack \
                  layout put it; TLS alias windows are off on it (std::sync::mpsc between two \
                  coroutines of that executor can hang).\n",
            );
        }
        Windows {
            real_tp: if fits && use_windows { tp } else { 0 },
            region_lo: s.region_lo,
            keeper: s.keeper,
            pool: RefCell::new(Vec::new()),
            installed: std::cell::Cell::new(tp),
        }
    }

    /// Takes over the windows of this slot's previous thread (their base
    /// addresses; they map the same pages, the slot's stack being reused).
    pub(crate) fn adopt(&self, bases: Vec<usize>) {
        if self.real_tp != 0 {
            let off = self.real_tp - self.region_lo;
            self.pool
                .borrow_mut()
                .extend(bases.into_iter().map(|b| b + off));
        }
    }

    /// At retirement (no coroutine homed here holds a window): the base
    /// addresses of all windows, for the slot's next thread.
    pub(crate) fn release_all(&self) -> Vec<usize> {
        let off = self.real_tp.wrapping_sub(self.region_lo);
        self.pool.borrow_mut().drain(..).map(|w| w - off).collect()
    }

    pub(crate) fn enabled(&self) -> bool {
        self.real_tp != 0
    }

    /// A window for a coroutine starting here: its thread-pointer value, or
    /// 0 (none free and the cap reached, or windows off).
    pub(crate) fn take(&self) -> usize {
        if self.real_tp == 0 {
            return 0;
        }
        if let Some(w) = self.pool.borrow_mut().pop() {
            return w;
        }
        if EXHAUSTED.load(Ordering::Relaxed) {
            return 0;
        }
        if WINDOWS.fetch_add(1, Ordering::Relaxed) >= MAX_WINDOWS {
            WINDOWS.fetch_sub(1, Ordering::Relaxed);
            EXHAUSTED.store(true, Ordering::Relaxed);
            return 0;
        }
        // SAFETY: a PROT_NONE reservation of REGION + one page; mremap
        // with old size 0 maps the keeper's (shared) pages once more over
        // its first REGION bytes, leaving a guard page above (where the
        // thread pointer's TCB would be: nothing may reach it through a
        // window). DONTFORK keeps windows out of fork children.
        let w = unsafe {
            let res = libc::mmap(
                std::ptr::null_mut(),
                REGION + PAGE,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            if res == libc::MAP_FAILED {
                WINDOWS.fetch_sub(1, Ordering::Relaxed);
                return 0;
            }
            let w = libc::mremap(
                self.keeper as *mut _,
                0,
                REGION,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                res,
            );
            if w != res {
                libc::munmap(res, REGION + PAGE);
                WINDOWS.fetch_sub(1, Ordering::Relaxed);
                return 0;
            }
            libc::madvise(res, REGION + PAGE, libc::MADV_DONTFORK);
            w as usize
        };
        w + (self.real_tp - self.region_lo)
    }

    /// Returns a finished coroutine's window to the pool.
    pub(crate) fn give(&self, w: usize) {
        if w != 0 {
            self.pool.borrow_mut().push(w);
        }
    }

    /// Switch-in of a coroutine holding window `w` (0: none).
    #[inline(always)]
    pub(crate) fn enter(&self, w: usize) {
        if self.real_tp != 0 {
            let v = if w != 0 { w } else { self.real_tp };
            if v != self.installed.get() {
                self.installed.set(v);
                // SAFETY: `v` is ours: the real pointer or one of our windows.
                unsafe { write_tp(v) };
            }
        }
    }

    /// The scheduler runs next: real thread pointer.
    #[inline(always)]
    pub(crate) fn leave(&self) {
        if self.real_tp != 0 && self.installed.get() != self.real_tp {
            self.installed.set(self.real_tp);
            // SAFETY: the real thread pointer.
            unsafe { write_tp(self.real_tp) };
        }
    }

    /// fork(2) for a coroutine of this executor (see module doc): `real`
    /// is libc's fork. Returns what fork returns; errno as fork sets it.
    pub(crate) fn fork(&self, real: unsafe extern "C" fn() -> libc::pid_t) -> libc::pid_t {
        if self.region_lo == 0 {
            // SAFETY: libc's fork (a plain thread stack: nothing shared).
            return unsafe { real() };
        }
        let tp_before = read_tp();
        // Raw rt_sigprocmask: glibc's own wrappers leave its internal
        // signals (setxid, cancellation) unblocked, whose handlers write the
        // thread's TLS.
        let all: u64 = !0;
        let mut old: u64 = 0;
        let mask = |set: *const u64, old: *mut u64| {
            // SAFETY: 8-byte kernel sigsets, ours.
            unsafe {
                syscall6(
                    libc::SYS_rt_sigprocmask as usize,
                    libc::SIG_SETMASK as usize,
                    set as usize,
                    old as usize,
                    8,
                    0,
                    0,
                )
            };
        };
        mask(&all, &mut old);
        if self.real_tp != 0 {
            // SAFETY: `real_tp` is this thread's real thread pointer, which
            // `write_tp` accepts.
            unsafe { write_tp(self.real_tp) };
        }
        let pid = match self.privatize() {
            // SAFETY: libc's fork.
            Ok(()) => unsafe { real() },
            Err(e) => {
                // SAFETY: back to the caller's value.
                unsafe { write_tp(tp_before) };
                mask(&old, std::ptr::null_mut());
                crate::sys::set_errno(e);
                return -1;
            }
        };
        if pid != 0 {
            let errno = crate::sys::errno();
            if let Err(e) = self.reshare() {
                crate::sys::fatal_fmt(&format!(
                    "coroutines: cannot restore the executor's shared TLS region after fork (errno {e})"
                ));
            }
            // SAFETY: back to the coroutine's window (still mapped).
            unsafe { write_tp(tp_before) };
            crate::sys::set_errno(errno);
        } else if tp_before != read_tp() {
            // Child: the windows are gone (DONTFORK), but code of the
            // forking coroutine may still hold addresses in its window:
            // map a private copy of the region there.
            let w = tp_before - (self.real_tp - self.region_lo);
            // SAFETY: the window's address range, absent in the child; a
            // fixed private mapping filled from the child's own region.
            unsafe {
                let r = syscall6(
                    libc::SYS_mmap as usize,
                    w,
                    REGION,
                    (libc::PROT_READ | libc::PROT_WRITE) as usize,
                    (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as usize,
                    usize::MAX,
                    0,
                );
                if r as usize == w {
                    std::ptr::copy_nonoverlapping(
                        self.region_lo as *const u8,
                        w as *mut u8,
                        REGION,
                    );
                }
            }
        }
        mask(&old, std::ptr::null_mut());
        pid
    }

    /// Replaces the shared region with a private copy of itself. Raw
    /// syscalls only, signals blocked: no thread-local is written between
    /// the copy and the swap.
    fn privatize(&self) -> Result<(), i32> {
        // SAFETY: a fresh private mapping, filled from the region (readable,
        // ours), then moved over the region's addresses in one mremap.
        unsafe {
            let tmp = syscall6(
                libc::SYS_mmap as usize,
                0,
                REGION,
                (libc::PROT_READ | libc::PROT_WRITE) as usize,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as usize,
                usize::MAX,
                0,
            );
            if (-4095..0).contains(&tmp) {
                return Err(-tmp as i32);
            }
            std::ptr::copy_nonoverlapping(self.region_lo as *const u8, tmp as *mut u8, REGION);
            let r = syscall6(
                libc::SYS_mremap as usize,
                tmp as usize,
                REGION,
                REGION,
                (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as usize,
                self.region_lo,
                0,
            );
            if r as usize != self.region_lo {
                syscall6(libc::SYS_munmap as usize, tmp as usize, REGION, 0, 0, 0, 0);
                return Err(if r < 0 { -r as i32 } else { libc::EINVAL });
            }
        }
        Ok(())
    }

    /// Parent after fork: copies the private region's bytes into the
    /// shared pages (through the keeper) and maps those over the region
    /// again (mremap with old size 0 at a fixed address replaces the
    /// private copy).
    fn reshare(&self) -> Result<(), i32> {
        // SAFETY: the region and the keeper are ours, REGION bytes each and
        // disjoint; the fixed mapping replaces exactly the region.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.region_lo as *const u8,
                self.keeper as *mut u8,
                REGION,
            );
            let r = syscall6(
                libc::SYS_mremap as usize,
                self.keeper,
                0,
                REGION,
                (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as usize,
                self.region_lo,
                0,
            );
            if r as usize != self.region_lo {
                return Err(if r < 0 { -r as i32 } else { libc::EINVAL });
            }
            // The duplicate inherited the keeper's DONTFORK; the region
            // itself is inherited like any thread stack.
            syscall6(
                libc::SYS_madvise as usize,
                self.region_lo,
                REGION,
                libc::MADV_DOFORK as usize,
                0,
                0,
                0,
            );
        }
        Ok(())
    }
}

/// Whether every loaded object's static TLS block of the calling thread
/// (blocks within 1 MiB below the thread pointer) starts at or above `lo`.
fn static_tls_within(lo: usize, tp: usize) -> bool {
    let mut ok = true;
    crate::sys::for_each_object(|info| {
        let p = info.dlpi_tls_data as usize;
        if p != 0 && p < tp && tp - p < (1 << 20) && p < lo {
            ok = false;
        }
        true
    });
    ok
}
