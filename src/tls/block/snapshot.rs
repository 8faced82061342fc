//! The snapshot re-initialisation of a reused TLS block (tls/block.rs):
//! when no module with TLS was loaded or unloaded since an executor's
//! last snapshot, a finished coroutine's block gets its dtv entries and
//! static TLS images copied from that snapshot instead of going through
//! ld.so's `_dl_allocate_tls_init`; otherwise ld.so does it and a new
//! snapshot is taken. The design comment at the top of tls/block.rs
//! describes block reuse; the start-up check that this path reproduces
//! ld.so's (`check_fast_reinit`) is in block/discover.rs.

use std::ffi::c_void;

use super::{load_relaxed, FastInit, Layout, DTV_UNALLOCATED, D_DTV};

/// What `_dl_allocate_tls_init` writes into a block, relative to the
/// block's thread pointer, valid while ld.so's TLS generation is `gen`
/// (`Layout::reinit`). One per executor (scheduler context only).
pub(crate) struct Snapshot {
    pub(super) gen: usize,
    /// dtv entries 0..=last written: (value, or offset below the thread
    /// pointer if `true`).
    pub(super) dtv: Box<[(usize, bool)]>,
    /// The used static TLS (`GL(dl_tls_static_used)` bytes) below the
    /// thread pointer: every module's image and zeroed TLS.
    pub(super) image: Box<[u8]>,
}

impl Layout {
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
    pub(super) unsafe fn reinit(
        &self,
        tp: usize,
        snap: &mut Option<Snapshot>,
        stats: &mut (u32, u32),
    ) {
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
}
