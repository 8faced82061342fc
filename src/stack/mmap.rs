//! Reservations: large `MAP_NORESERVE` mappings carved into guard-page slots,
//! plus the fixed-size registry of their ranges that the fault handler reads.
//!
//! ```text
//!  reservation base                                          base + len
//!  | guard | usable (slot 0) | guard | usable (slot 1) | ... |
//!  ^ slot 0 start            ^ slot 1 start
//!          ^ Stack::bottom() ^ Stack::top() of slot 0 (initial RSP below it)
//! ```
//!
//! Guard pages: `madvise(addr, PAGE_SIZE, MADV_GUARD_INSTALL)` puts a guard
//! marker in the page tables without changing the VMA, so a reservation stays
//! one VMA however many guards it holds. On kernels before 6.13 that madvise
//! fails with EINVAL and we switch, once and for all, to `mprotect(PROT_NONE)`,
//! which splits the VMA (~2 mappings per stack); when that hits
//! `vm.max_map_count`, the error says so.
//!
//! One guard page is enough for Rust code: rustc emits stack probes on
//! x86-64, so a frame larger than a page touches every page on the way down
//! and hits the guard before it can skip over it.
//!
//! Registry publication: a writer claims an index by CAS on `REG_COUNT`,
//! stores `len` and `slot_bytes`, then stores `base` with Release. The handler
//! scans `0..REG_COUNT`, loads `base` with Acquire (pairs with that Release)
//! and skips entries whose `base` is still 0. Entries are never removed.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// x86-64 base page size. Huge pages are never used for stacks.
pub(crate) const PAGE_SIZE: usize = 4096;

/// Smallest usable stack size in bytes (4 pages); `alloc` rounds smaller
/// requests up to it. User input is validated against it by the Builder.
pub(crate) const MIN_STACK_SIZE: usize = 16 * 1024;

/// `MADV_GUARD_INSTALL` from include/uapi/asm-generic/mman-common.h (added in
/// Linux 6.13); libc 0.2.191 does not export it.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// First reservation of a size class holds this many slots; each further one
/// doubles, up to [`MAX_RESERVATION_BYTES`].
pub(super) const FIRST_RESERVATION_SLOTS: usize = 64;

/// Cap on one reservation's address space. 1 GiB = ~4000 default stacks, so a
/// million 256 KiB stacks take ~260 reservations (entries in the registry and
/// at most that many VMAs, fewer when the kernel merges neighbours).
pub(super) const MAX_RESERVATION_BYTES: usize = 1 << 30;

/// Registry capacity: 16384 reservations ≥ 16 TiB of stacks.
const MAX_RESERVATIONS: usize = 16384;

/// Set once `MADV_GUARD_INSTALL` returned EINVAL: every later guard uses
/// `mprotect`. Relaxed: it is a hint, both paths produce a valid guard, and a
/// thread that misses the store just gets EINVAL once more.
static USE_MPROTECT_GUARDS: AtomicBool = AtomicBool::new(false);

/// One published reservation. `base == 0` means "not published yet".
struct RegEntry {
    base: AtomicUsize,
    len: AtomicUsize,
    slot_bytes: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)] // only used as an array initialiser
const EMPTY_ENTRY: RegEntry = RegEntry {
    base: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    slot_bytes: AtomicUsize::new(0),
};

static REGISTRY: [RegEntry; MAX_RESERVATIONS] = [EMPTY_ENTRY; MAX_RESERVATIONS];
/// Number of claimed registry entries (claimed ≥ published).
static REG_COUNT: AtomicUsize = AtomicUsize::new(0);

/// A mapped reservation: `slots` slots of `slot_bytes` from `base`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reservation {
    pub(super) base: usize,
    pub(super) len: usize,
}

/// Map a reservation of `slots` slots of `slot_bytes` (guard included) and
/// publish it in the registry. Guards are *not* installed here: the pool
/// installs each one when it first hands the slot out.
pub(super) fn reserve(slot_bytes: usize, slots: usize) -> io::Result<Reservation> {
    debug_assert!(slot_bytes & (PAGE_SIZE - 1) == 0 && slot_bytes > PAGE_SIZE && slots > 0);
    let len = slot_bytes.checked_mul(slots).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("stack reservation of {slots} slots of {slot_bytes} B overflows usize"),
        )
    })?;
    // SAFETY: a fresh anonymous mapping at a kernel-chosen address aliases no
    // existing Rust object.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        let err = io::Error::last_os_error();
        return Err(os_error(
            format!(
                "mmap stack reservation ({len} B = {slots} stacks of {} B + 1 guard page)",
                slot_bytes - PAGE_SIZE
            ),
            err,
            false,
        ));
    }
    let base = ptr as usize;
    if let Err(e) = register(base, len, slot_bytes) {
        // SAFETY: we mapped exactly [base, base+len) above and nothing refers to it.
        unsafe { libc::munmap(ptr, len) };
        return Err(e);
    }
    Ok(Reservation { base, len })
}

/// Publish `[base, base+len)` in the registry (see the module comment).
fn register(base: usize, len: usize, slot_bytes: usize) -> io::Result<()> {
    // Claim an index. Relaxed is enough: the count only bounds the handler's
    // scan; `base` (Release below) is the publication flag.
    let mut idx = REG_COUNT.load(Ordering::Relaxed);
    loop {
        if idx >= MAX_RESERVATIONS {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!(
                    "stack reservation registry full ({MAX_RESERVATIONS} reservations of up to \
                     {MAX_RESERVATION_BYTES} B); too many or too large coroutine stacks"
                ),
            ));
        }
        match REG_COUNT.compare_exchange_weak(idx, idx + 1, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break,
            Err(cur) => idx = cur,
        }
    }
    let e = &REGISTRY[idx];
    e.len.store(len, Ordering::Relaxed);
    e.slot_bytes.store(slot_bytes, Ordering::Relaxed);
    // Release: pairs with the Acquire load of `base` in `guard_hit`, so a
    // handler that sees `base` also sees `len` and `slot_bytes`.
    e.base.store(base, Ordering::Release);
    Ok(())
}

/// Signal context: async-signal-safe (atomic loads and arithmetic only).
///
/// If `addr` lies in the guard page of a slot of one of our reservations,
/// returns the usable size in bytes of that slot's stack.
pub(super) fn guard_hit(addr: usize) -> Option<usize> {
    // Acquire is not required for correctness (entries are checked through
    // `base`), it only makes recently published entries visible sooner.
    let n = REG_COUNT.load(Ordering::Acquire).min(MAX_RESERVATIONS);
    for e in &REGISTRY[..n] {
        // Acquire: pairs with the Release store in `register`.
        let base = e.base.load(Ordering::Acquire);
        if base == 0 || addr < base {
            continue;
        }
        let len = e.len.load(Ordering::Relaxed);
        let off = addr - base;
        if off >= len {
            continue;
        }
        let slot_bytes = e.slot_bytes.load(Ordering::Relaxed);
        if slot_bytes == 0 {
            return None;
        }
        return if off % slot_bytes < PAGE_SIZE {
            Some(slot_bytes - PAGE_SIZE)
        } else {
            None
        };
    }
    None
}

/// Make the page at `addr` (page aligned, inside a private anonymous
/// read/write mapping we own) a guard page: `MADV_GUARD_INSTALL`, or
/// `mprotect(PROT_NONE)` once the kernel has said EINVAL.
pub(super) fn install_guard(addr: usize) -> io::Result<()> {
    if !USE_MPROTECT_GUARDS.load(Ordering::Relaxed) {
        match install_guard_madvise(addr) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                USE_MPROTECT_GUARDS.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                return Err(os_error(
                    format!(
                        "madvise(MADV_GUARD_INSTALL) stack guard page ({PAGE_SIZE} B at {addr:#x})"
                    ),
                    e,
                    false,
                ))
            }
        }
    }
    install_guard_mprotect(addr).map_err(|e| {
        os_error(
            format!(
                "mprotect(PROT_NONE) stack guard page ({PAGE_SIZE} B at {addr:#x}; fallback for \
                 kernels without MADV_GUARD_INSTALL, Linux < 6.13)"
            ),
            e,
            true,
        )
    })
}

/// Raw `MADV_GUARD_INSTALL` on one page; the OS error is returned untouched.
pub(super) fn install_guard_madvise(addr: usize) -> io::Result<()> {
    debug_assert!(addr & (PAGE_SIZE - 1) == 0);
    // SAFETY: the page is inside a mapping owned by this module and not in
    // use by any live Stack (it is a slot's guard page); guarding it only
    // makes later accesses fault.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, PAGE_SIZE, MADV_GUARD_INSTALL) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raw `mprotect(PROT_NONE)` on one page; the OS error is returned untouched.
pub(super) fn install_guard_mprotect(addr: usize) -> io::Result<()> {
    debug_assert!(addr & (PAGE_SIZE - 1) == 0);
    // SAFETY: as in `install_guard_madvise`.
    let r = unsafe { libc::mprotect(addr as *mut libc::c_void, PAGE_SIZE, libc::PROT_NONE) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Give the pages of `[addr, addr+len)` back to the kernel; the range reads
/// as zeroes afterwards. Guard markers are kept by `MADV_DONTNEED` (only
/// `MADV_GUARD_REMOVE` and munmap remove them), and callers pass the usable
/// region only anyway.
pub(super) fn release_pages(addr: usize, len: usize) {
    // SAFETY: the caller owns the (not live) stack region; its contents are
    // dead, so replacing them with zero pages is unobservable.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    // Failure only costs RSS; nothing to report to the (Drop) caller.
    debug_assert_eq!(
        r,
        0,
        "madvise(MADV_DONTNEED) on a stack: {}",
        io::Error::last_os_error()
    );
}

/// Map `usable_bytes` of read/write memory with one guard page below it, as
/// its own mapping (used for sigaltstacks). Returns the mapping base (the
/// guard page); the usable region starts at `base + PAGE_SIZE`.
pub(super) fn map_guarded(usable_bytes: usize, what: &str) -> io::Result<usize> {
    let len = usable_bytes + PAGE_SIZE;
    // SAFETY: fresh anonymous mapping, aliases nothing.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        let err = io::Error::last_os_error();
        return Err(os_error(
            format!("mmap {what} ({usable_bytes} B + 1 guard page)"),
            err,
            false,
        ));
    }
    let base = ptr as usize;
    if let Err(e) = install_guard(base) {
        // SAFETY: we mapped [base, base+len) above; nothing refers to it.
        unsafe { libc::munmap(ptr, len) };
        return Err(e);
    }
    Ok(base)
}

/// Unmap a mapping made by [`map_guarded`].
///
/// # Safety
/// `base` must come from `map_guarded(usable_bytes, ..)` and no code may use
/// the region afterwards (in particular it must not be an active sigaltstack).
pub(super) unsafe fn unmap_guarded(base: usize, usable_bytes: usize) {
    // SAFETY: upheld by the caller (see # Safety).
    unsafe { libc::munmap(base as *mut libc::c_void, usable_bytes + PAGE_SIZE) };
}

/// Build the io::Error for a failed OS call: "`op`: ENAME (description)", plus
/// a vm.max_map_count hint when the failure is ENOMEM and either
/// `map_count_likely` (mprotect fallback) or the process is near the limit.
fn os_error(op: String, err: io::Error, map_count_likely: bool) -> io::Error {
    let code = err.raw_os_error().unwrap_or(0);
    let errno = nix::errno::Errno::from_raw(code);
    let mut msg = format!("{op}: {errno:?} ({})", errno.desc());
    if code == libc::ENOMEM {
        let max = read_max_map_count();
        let used = count_mappings();
        let near_limit = matches!((max, used), (Some(m), Some(u)) if u + 64 >= m);
        if map_count_likely || near_limit {
            let max_s = max.map_or_else(|| "?".to_string(), |m| m.to_string());
            let used_s = used.map_or_else(|| "?".to_string(), |u| u.to_string());
            msg.push_str(&format!(
                "; the process has {used_s} of vm.max_map_count = {max_s} memory mappings \
                 (each mprotect guard page splits a mapping); raise the limit with \
                 `sysctl -w vm.max_map_count=2097152` (or upgrade to Linux 6.13+ for \
                 MADV_GUARD_INSTALL guards)"
            ));
        }
    }
    io::Error::new(err.kind(), msg)
}

fn read_max_map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Number of lines in /proc/self/maps (= VMAs).
pub(super) fn count_mappings() -> Option<usize> {
    let maps = std::fs::read("/proc/self/maps").ok()?;
    Some(maps.iter().filter(|&&b| b == b'\n').count())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// True if reading the byte at `addr` faults. Probed through the kernel
    /// (write(2) from it into a pipe gives EFAULT) so no signal is raised.
    pub(crate) fn is_guarded(addr: usize) -> bool {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid 2-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the kernel validates the user pointer and reports EFAULT.
        let r = unsafe { libc::write(fds[1], addr as *const libc::c_void, 1) };
        let err = io::Error::last_os_error();
        // SAFETY: we own both descriptors.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        if r == 1 {
            false
        } else {
            assert_eq!(
                err.raw_os_error(),
                Some(libc::EFAULT),
                "unexpected probe error"
            );
            true
        }
    }

    fn scratch(pages: usize) -> usize {
        // SAFETY: fresh anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                pages * PAGE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        p as usize
    }

    #[test]
    fn madvise_guard_supported_and_survives_dontneed() {
        let base = scratch(4);
        install_guard_madvise(base + PAGE_SIZE).expect("kernel >= 6.13 expected");
        assert!(is_guarded(base + PAGE_SIZE));
        assert!(!is_guarded(base));
        assert!(!is_guarded(base + 2 * PAGE_SIZE));
        // DONTNEED across the guard must keep the marker.
        release_pages(base, 4 * PAGE_SIZE);
        assert!(is_guarded(base + PAGE_SIZE + 100));
        // SAFETY: our scratch mapping.
        unsafe { libc::munmap(base as *mut libc::c_void, 4 * PAGE_SIZE) };
    }

    #[test]
    fn mprotect_fallback_guard() {
        let base = scratch(3);
        install_guard_mprotect(base + PAGE_SIZE).unwrap();
        assert!(is_guarded(base + PAGE_SIZE));
        assert!(!is_guarded(base));
        assert!(!is_guarded(base + 2 * PAGE_SIZE));
        // SAFETY: our scratch mapping.
        unsafe { libc::munmap(base as *mut libc::c_void, 3 * PAGE_SIZE) };
    }

    #[test]
    fn registry_guard_hit() {
        let slot = 5 * PAGE_SIZE;
        let r = reserve(slot, 3).unwrap();
        assert_eq!(r.len, 15 * PAGE_SIZE);
        assert_eq!(guard_hit(r.base), Some(4 * PAGE_SIZE));
        assert_eq!(
            guard_hit(r.base + slot + PAGE_SIZE - 1),
            Some(4 * PAGE_SIZE)
        );
        assert_eq!(guard_hit(r.base + PAGE_SIZE), None);
        assert_eq!(guard_hit(r.base + r.len - 1), None);
        // Addresses just outside are not checked: other tests' reservations
        // (made concurrently) may be mapped right next to this one, with a
        // guard page at their base.
    }

    #[test]
    fn enomem_message_mentions_map_count() {
        let e = os_error(
            "mprotect x".into(),
            io::Error::from_raw_os_error(libc::ENOMEM),
            true,
        );
        let s = e.to_string();
        assert!(s.starts_with("mprotect x: ENOMEM"), "{s}");
        assert!(s.contains("sysctl -w vm.max_map_count"), "{s}");
        let e = os_error(
            "mmap y (1 B)".into(),
            io::Error::from_raw_os_error(libc::EINVAL),
            false,
        );
        assert_eq!(e.to_string(), "mmap y (1 B): EINVAL (Invalid argument)");
    }
}
