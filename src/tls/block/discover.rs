//! Discovery of glibc's layout for per-coroutine TLS blocks (tls/block.rs),
//! once at runtime start: FSGSBASE, the glibc version, the GLIBC_PRIVATE
//! entry points, and each descriptor, key-table and malloc offset checked
//! against the running thread or a probe thread; then the check of the
//! snapshot re-initialisation (`check_fast_reinit`: ld.so's `_rtld_global`
//! offsets, and a probe block re-initialised from a snapshot compared with
//! one ld.so built). What is checked and why is in the design comment at
//! the top of tls/block.rs ("Discovery"); the offsets themselves are
//! declared there, next to the block operations that use them; the
//! snapshot re-initialisation is in block/snapshot.rs.

use std::ffi::{c_void, CStr};

use super::{
    read_fs_base, AllocateTls, CallTlsDtors, DeallocateTls, FastInit, InitTls, KeySlot, Layout,
    StaticInfo, D_DTV, D_LIST, D_MULTIPLE_THREADS, D_ROBUST_HEAD, D_SELF, D_SELF_TCB, D_SPECIFIC,
    D_SPECIFIC_1ST, D_SPECIFIC_USED, D_STACKBLOCK, D_TID, KEYS_MAX, KEY_2ND_LEVEL, L_TCACHE,
    L_TCACHE_SHUTTING_DOWN, L_THREAD_ARENA, R_TLS_GENERATION, R_TLS_INITIAL_DTV, R_TLS_MAX_DTV_IDX,
    R_TLS_SLOTINFO_LIST, R_TLS_STATIC_USED, TCACHE_BINS, TCACHE_COUNTS, TCACHE_STRUCT,
};

fn dlsym(name: &CStr) -> Option<usize> {
    // SAFETY: NUL-terminated name; RTLD_DEFAULT searches every object.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
    (p != 0).then_some(p)
}

pub(super) fn discover() -> Result<Layout, String> {
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
    // SAFETY: getpid is always safe to call.
    let main_thread = unsafe { libc::getpid() } == crate::sys::gettid();
    if main_thread
        // SAFETY: the dtv pointer is a word of this thread's descriptor.
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
            let (a, _) = l
                .create(top_a, top_a - span, tp, &mut snap)
                .ok_or("probe block")?;
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
                let va = if i <= len_a {
                    *((da + 16 * i) as *const usize)
                } else {
                    0
                };
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
        let size = if after.0 != 0 {
            // SAFETY: in glibc 2.36 (the version is checked before this
            // probe runs) the word at L_TCACHE is the thread's tcache
            // pointer, a malloc'd chunk once non-null; this probe confirms
            // the offset by the chunk's size and by the word being NULL
            // before the thread's first malloc.
            unsafe { libc::malloc_usable_size(after.0 as *mut c_void) }
        } else {
            0
        };
        // SAFETY: one byte of libc TLS.
        let shutting = unsafe { *((base + L_TCACHE_SHUTTING_DOWN) as *const u8) };
        let ok = before == (0, 0)
            && after.1 != 0
            && (TCACHE_STRUCT..2 * TCACHE_STRUCT).contains(&size)
            && shutting == 0;
        // `specific_used`: false on a fresh thread, set by
        // pthread_setspecific.
        // SAFETY: a byte of this thread's descriptor; a key of the caller's.
        let used = unsafe {
            let before = *((tp + D_SPECIFIC_USED) as *const u8);
            libc::pthread_setspecific(key, std::ptr::dangling::<c_void>());
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

/// On a probe thread: glibc's tcache is laid out as `release_own_malloc`
/// (tls/block.rs) walks it. Two 24-byte chunks freed in turn head bin 0
/// (last freed first), its count grows by 2, the head's `next` is
/// safe-linked (`(&next >> 12) ^ next`) to the first; then the probe
/// empties its whole cache the way `release_own_malloc` does and the
/// entries walked must equal the counts.
pub(in crate::tls) fn check_tcache_bins(errno_off: usize) -> Result<(), String> {
    extern "C" fn probe(arg: *mut c_void) -> *mut c_void {
        // SAFETY: the caller passes the errno offset, outliving this thread.
        let errno_off = unsafe { *(arg as *const usize) };
        let tp: usize;
        // SAFETY: reads the fs base (FSGSBASE checked by discovery).
        unsafe {
            std::arch::asm!("rdfsbase {}", out(reg) tp, options(nomem, nostack, preserves_flags))
        };
        let base = tp - errno_off;
        // SAFETY: glibc 2.36 (checked by discovery): the words at these
        // offsets of libc's TLS block are this thread's tcache pointer and
        // shutdown flag (checked by `check_malloc_words`); the tcache is a
        // malloc'd `tcache_perthread_struct` once non-null, and only this
        // thread uses it. Every pointer followed is validated (non-null,
        // 16-aligned) before it is read.
        let ok = unsafe {
            let p1 = libc::malloc(24) as usize;
            let p2 = libc::malloc(24) as usize;
            let t = *((base + L_TCACHE) as *const usize);
            if p1 == 0 || p2 == 0 || t == 0 {
                return std::ptr::null_mut();
            }
            let count = |bin: usize| *((t + bin * 2) as *const u16) as usize;
            let head = |bin: usize| *((t + TCACHE_COUNTS + bin * 8) as *const usize);
            let before = count(0);
            libc::free(p1 as *mut c_void);
            libc::free(p2 as *mut c_void);
            let mut ok =
                count(0) == before + 2 && head(0) == p2 && (p2 >> 12) ^ *(p2 as *const usize) == p1;
            if ok {
                // Empty it as release_own_malloc does.
                *((base + L_TCACHE) as *mut usize) = 0;
                *((base + L_TCACHE_SHUTTING_DOWN) as *mut u8) = 1;
                for bin in 0..TCACHE_BINS {
                    let (mut n, want) = (0, count(bin));
                    let slot = (t + TCACHE_COUNTS + bin * 8) as *mut usize;
                    let mut e = *slot;
                    while e != 0 && e % 16 == 0 && n <= want {
                        let next = (e >> 12) ^ *(e as *const usize);
                        *slot = next;
                        libc::free(e as *mut c_void);
                        e = next;
                        n += 1;
                    }
                    ok &= e == 0 && n == want;
                }
                if ok {
                    libc::free(t as *mut c_void);
                }
            }
            ok
        };
        ok as usize as *mut c_void
    }
    let mut th: libc::pthread_t = 0;
    let mut res: *mut c_void = std::ptr::null_mut();
    // SAFETY: a joinable probe thread, joined at once; `errno_off` outlives it.
    let ok = unsafe {
        libc::pthread_create(
            &mut th,
            std::ptr::null(),
            probe,
            &errno_off as *const usize as *mut c_void,
        ) == 0
            && libc::pthread_join(th, &mut res) == 0
    };
    if ok && res as usize == 1 {
        Ok(())
    } else {
        Err("glibc's tcache bins are not laid out as expected".into())
    }
}
