//! Code address ranges the preemption handler consults: the executable's own
//! text (safe-point condition 5) and the *no-preempt zones* (condition 7),
//! each tagged with its kind:
//! - `Std`: every other loaded object's executable segments (libc, ld.so,
//!   the vdso, libgcc_s, ...) and, inside the executable, std's
//!   stdout/stderr printing and panic machinery, found by name in the ELF
//!   symbol table of `/proc/self/exe`;
//! - `C`: every non-Rust function linked into the executable — C, C++ or
//!   assembly from `-sys` crates (mimalloc, jemalloc, bundled SQLite, zlib)
//!   — that is not on the allow-list (`Config::preempt_c`). Such code is
//!   not reentrant in general (per-thread allocator heaps, pthread mutexes
//!   held across the call): preempting it and running a sibling coroutine
//!   on the same thread corrupts it or deadlocks. Counted as
//!   `deferred_c_code`.
//!
//! Classification of the `.symtab` function symbols (`STT_FUNC`,
//! `STT_GNU_IFUNC`; no DWARF needed, so a default `debug = 0` release build
//! works): Rust symbols are mangled (`_ZN...17h<16 hex>E` legacy, maybe
//! with a `.llvm.N` suffix; `_R...` v0). Unmangled ones are C, except the
//! known unmangled Rust/runtime ones: this crate's libc hooks
//! (`interpose::EXPORTED`; they raise the no-preempt level anyway) and
//! `coroutines_*` assembly, std's `__rust_*`/`rust_*`/`__rdl_*`/`__rg_*`
//! shims and `main`, and compiler-builtins' arithmetic helpers
//! (`__udivti3`, `__muloti4`, ...: leaf, stateless, lock-free, so harmless
//! to preempt). A user's own `#[no_mangle]` Rust function counts as C
//! (safe; allow-list it to preempt it). C++ (`_Z` without the Rust hash)
//! counts as C. The allow-list matches symbol-name prefixes; every C frame
//! on the stack must match for the coroutine to be preemptible (the
//! conservative stack scan sees each C return address on its own).
//!
//! Built by the monitor thread (never on a spawning thread: parsing the
//! symbol table of a big binary takes milliseconds) before it sends its
//! first signal, then published as an immutable, leaked [`Table`] through an
//! `AtomicPtr` (Release here, Acquire in the handler). A newer table (after a
//! `dlopen`) replaces it; old tables are leaked on purpose, since a handler
//! may still be reading one and there is no way to know when it is done.
//!
//! A stripped executable has no `.symtab`: C code cannot be told from Rust
//! code, so the table says `have_symtab = false`, one line on stderr says
//! that preemption is disabled, and the monitor sends no preemption signal
//! (the safe choice: coroutines still switch where they block or yield).
//! Keep the symbol table (`strip = "debuginfo"` at most).

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::sys::elf::{for_each_symbol, with_exe_image};

/// Mangled-name fragments of std code that must not be preempted (see the
/// module doc of `preempt`). Legacy mangling spells paths as
/// length-prefixed identifiers (`3std2io5stdio`), generic impls spell
/// them with `..` (`std..io..stdio`); v0 names contain the same
/// length-prefixed runs.
const ZONE_PATTERNS: &[&[u8]] = &[
    b"3std2io5stdio",
    b"std..io..stdio",
    b"3std9panicking",
    b"std..panicking",
    b"4core9panicking",
    b"3std5panic",
    b"3std9backtrace",
    b"3std12backtrace_rs",
    b"3std3sys9backtrace",
    b"std..sys..backtrace",
    b"std..backtrace",
    b"12panic_unwind",
    b"rust_panic",
    b"rust_begin_unwind",
    b"__rust_start_panic",
    b"__rust_panic_cleanup",
    b"__rust_foreign_exception",
    b"_Unwind_",
];

/// The [`ZONE_PATTERNS`] of std's printing (the rest are panic,
/// backtrace and unwinding code).
const STDIO_PATTERNS: &[&[u8]] = &[b"3std2io5stdio", b"std..io..stdio"];

/// Exceptions: std functions that wrap *every* coroutine body and user
/// `catch_unwind` call (`std::panicking::try` / `catch_unwind` and their
/// `do_call`/`do_catch`, `std::panic::catch_unwind`). In release builds they
/// are inlined away; in debug builds they are real frames on every
/// coroutine stack and would make everything a zone. Being inside them is
/// not being in the panic machinery; an unwinding panic is caught by
/// safe-point condition 6 instead.
const ZONE_EXCEPTIONS: &[&[u8]] = &[
    b"9panicking3try",
    b"9panicking12catch_unwind",
    b"5panic12catch_unwind",
];

/// What kind of no-preempt zone an address lies in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ZoneKind {
    /// Another loaded object's text, or std's printing/panic code.
    Std,
    /// A non-Rust function linked into the executable (C, C++, assembly)
    /// that is not on the allow-list.
    C,
}

/// Immutable address tables, sorted, non-overlapping `[lo, hi)` ranges.
pub(crate) struct Table {
    /// Executable segments of the main program.
    exe_text: Vec<(usize, usize)>,
    /// No-preempt zones, with their kind.
    zones: Vec<(usize, usize, ZoneKind)>,
    /// `dlpi_adds` when the table was built.
    adds: u64,
    /// Functions of a memory allocator linked into the executable (C code
    /// by [`ALLOCATOR_NAMES`]/[`ALLOCATOR_PREFIXES`]): the pthread hooks
    /// never park a coroutine while one is on its stack (parking
    /// allocates, which would re-enter the allocator mid-operation).
    alloc: Vec<(usize, usize)>,
    /// std's panic, backtrace and unwinding functions (the zone patterns
    /// other than stdio's): code that reads its callers' return addresses
    /// or never returns normally. A return out of them is never hijacked
    /// (hijack.rs).
    unwinding: Vec<(usize, usize)>,
    /// Whether the executable's symbol table was found. Without it C code
    /// linked into the executable cannot be told from Rust code, and the
    /// monitor sends no preemption signal at all.
    pub(crate) have_symtab: bool,
}

static TABLE: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());
/// Number of std functions matched, for tests and stats.
pub(crate) static STD_ZONE_FUNCS: AtomicU64 = AtomicU64::new(0);
/// Number of executable functions classified as C zones, for tests.
pub(crate) static C_ZONE_FUNCS: AtomicU64 = AtomicU64::new(0);

/// Signal context: the current table, or None before the monitor built one.
#[inline]
pub(crate) fn table() -> Option<&'static Table> {
    // Acquire: pairs with the Release in `refresh`, publishing the vectors.
    let p = TABLE.load(Ordering::Acquire);
    // SAFETY: tables are leaked, never freed or mutated after publication.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Signal context: whether `addr` lies in one of `ranges` (binary search).
#[inline]
fn contains(ranges: &[(usize, usize)], addr: usize) -> bool {
    let i = ranges.partition_point(|r| r.1 <= addr);
    i < ranges.len() && ranges[i].0 <= addr
}

/// Signal context: the kind of the zone `addr` lies in (binary search).
#[inline]
fn zone_of(zones: &[(usize, usize, ZoneKind)], addr: usize) -> Option<ZoneKind> {
    let i = zones.partition_point(|r| r.1 <= addr);
    (i < zones.len() && zones[i].0 <= addr).then(|| zones[i].2)
}

impl Table {
    /// Signal context: `addr` is code of the executable itself.
    #[inline]
    pub(crate) fn in_exe_text(&self, addr: usize) -> bool {
        contains(&self.exe_text, addr)
    }

    /// Signal context: the kind of no-preempt zone `addr` is inside, if any.
    #[inline]
    pub(crate) fn zone(&self, addr: usize) -> Option<ZoneKind> {
        zone_of(&self.zones, addr)
    }

    /// Signal context: whether `addr` is in std's panic, backtrace or
    /// unwinding code.
    pub(crate) fn in_unwinding(&self, addr: usize) -> bool {
        contains(&self.unwinding, addr)
    }

    /// Signal context: `addr` is inside a no-preempt zone of any kind.
    #[inline]
    #[allow(dead_code)] // used by tests
    pub(crate) fn in_zone(&self, addr: usize) -> bool {
        self.zone(addr).is_some()
    }

    /// Conservative scan of the live stack `[lo, hi)` for a word pointing
    /// into an allocator's code (a return address of a frame inside it).
    pub(crate) fn stack_in_allocator(&self, lo: usize, hi: usize) -> bool {
        let (Some(first), Some(last)) = (self.alloc.first(), self.alloc.last()) else {
            return false;
        };
        let (min, max) = (first.0, last.1);
        let mut p = lo & !7;
        while p + 8 <= hi {
            // SAFETY: [lo, hi) is the live part of the current coroutine's
            // mapped stack (caller).
            let w = unsafe { (p as *const usize).read() };
            if w >= min && w < max && contains(&self.alloc, w) {
                return true;
            }
            p += 8;
        }
        false
    }

    /// Signal context: conservative scan of the live stack `[lo, hi)` for a
    /// word that points into a zone (a return address of a frame inside
    /// one — or a stale or unrelated word that looks like one: then we only
    /// defer needlessly). Returns the kind of the first (innermost) hit.
    pub(crate) fn stack_zone(&self, lo: usize, hi: usize) -> Option<ZoneKind> {
        let (first, last) = (self.zones.first()?, self.zones.last()?);
        let (min, max) = (first.0, last.1);
        let mut p = lo & !7;
        while p + 8 <= hi {
            // SAFETY: [lo, hi) is the live part of the current coroutine's
            // mapped stack (checked by the caller).
            let w = unsafe { (p as *const usize).read() };
            if w >= min && w < max {
                if let Some(k) = self.zone(w) {
                    return Some(k);
                }
            }
            p += 8;
        }
        None
    }
}

/// Whether loaded objects changed since the published table was built.
pub(crate) fn stale() -> bool {
    match table() {
        None => true,
        Some(t) => current_adds() != t.adds,
    }
}

fn current_adds() -> u64 {
    let mut adds: u64 = 0;
    crate::sys::for_each_object(|info| {
        adds = info.dlpi_adds;
        false // dlpi_adds is global: the first object suffices
    });
    adds
}

struct Collect {
    first: bool,
    exe_bias: usize,
    exe_text: Vec<(usize, usize)>,
    zones: Vec<(usize, usize)>,
    adds: u64,
}

/// Builds a new table from the loaded objects and the executable's symbol
/// table, and publishes it. `allow` is the allow-list of C symbol-name
/// prefixes that stay preemptible (`Config::preempt_c`). Called by the
/// monitor thread only (and tests).
pub(crate) fn refresh(allow: &[String]) {
    let mut c = Collect {
        first: true,
        exe_bias: 0,
        exe_text: Vec::new(),
        zones: Vec::new(),
        adds: 0,
    };
    crate::sys::for_each_object(|info| {
        c.adds = info.dlpi_adds;
        let first = std::mem::replace(&mut c.first, false);
        if first {
            c.exe_bias = info.dlpi_addr as usize;
        }
        for i in 0..info.dlpi_phnum as usize {
            // SAFETY: glibc's info has `dlpi_phnum` program headers.
            let ph = unsafe { &*info.dlpi_phdr.add(i) };
            if ph.p_type != libc::PT_LOAD || ph.p_flags & libc::PF_X == 0 {
                continue;
            }
            let lo = info.dlpi_addr as usize + ph.p_vaddr as usize;
            let r = (lo, lo + ph.p_memsz as usize);
            if first {
                c.exe_text.push(r);
            } else {
                c.zones.push(r);
            }
        }
        true
    });
    let before = c.zones.len();
    let mut c_zones = Vec::new();
    let mut alloc = Vec::new();
    let mut unwinding = Vec::new();
    let have_symtab = exe_zones(
        c.exe_bias,
        allow,
        &mut c.zones,
        &mut c_zones,
        &mut alloc,
        &mut unwinding,
    );
    if !have_symtab && table().is_none() {
        crate::sys::write_stderr(
            b"coroutines: warning: the executable has no symbol table (stripped), so C code linked \
              into it cannot be told from Rust code: preemption is disabled (coroutines switch \
              only where they block or yield). Keep the symbol table (strip = \"debuginfo\") to \
              enable it.\n",
        );
    }
    STD_ZONE_FUNCS.store((c.zones.len() - before) as u64, Ordering::Relaxed);
    C_ZONE_FUNCS.store(c_zones.len() as u64, Ordering::Relaxed);
    let mut zones: Vec<(usize, usize, ZoneKind)> = merge(c.zones)
        .into_iter()
        .map(|(lo, hi)| (lo, hi, ZoneKind::Std))
        .collect();
    zones.extend(
        merge(c_zones)
            .into_iter()
            .map(|(lo, hi)| (lo, hi, ZoneKind::C)),
    );
    let t = Table {
        exe_text: merge(c.exe_text),
        zones: merge_tagged(zones),
        alloc: merge(alloc),
        unwinding: merge(unwinding),
        adds: c.adds,
        have_symtab,
    };
    // Release: pairs with the Acquire in `table`.
    TABLE.store(Box::into_raw(Box::new(t)), Ordering::Release);
}

fn merge(mut v: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    v.retain(|r| r.0 < r.1);
    v.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if r.0 <= last.1 => last.1 = last.1.max(r.1),
            _ => out.push(r),
        }
    }
    out.shrink_to_fit();
    out
}

/// Sorts tagged ranges and resolves overlaps between kinds (a std function
/// and a C symbol aliasing it): the overlapped part keeps the first kind
/// in sort order, so lookups see disjoint ranges.
fn merge_tagged(mut v: Vec<(usize, usize, ZoneKind)>) -> Vec<(usize, usize, ZoneKind)> {
    v.sort_unstable();
    let mut out: Vec<(usize, usize, ZoneKind)> = Vec::with_capacity(v.len());
    for (mut lo, hi, k) in v {
        if let Some(last) = out.last() {
            lo = lo.max(last.1);
        }
        if lo < hi {
            out.push((lo, hi, k));
        }
    }
    out.shrink_to_fit();
    out
}

/// From the executable's `.symtab` (addresses relocated by `bias`): adds
/// the std functions matching [`ZONE_PATTERNS`] to `std_out` and the
/// non-Rust functions ([`is_c_symbol`]) not on the allow-list `allow` to
/// `c_out`. Returns whether a symbol table was found.
fn exe_zones(
    bias: usize,
    allow: &[String],
    std_out: &mut Vec<(usize, usize)>,
    c_out: &mut Vec<(usize, usize)>,
    alloc_out: &mut Vec<(usize, usize)>,
    unwinding_out: &mut Vec<(usize, usize)>,
) -> bool {
    with_exe_image(|b| {
        for_each_symbol(b, |name, info, value, size| {
            let ty = info & 0xf;
            // STT_FUNC, or STT_GNU_IFUNC (a resolver: C code too).
            if !(ty == 2 || ty == 10) || value == 0 || size == 0 {
                return;
            }
            let lo = bias + value as usize;
            if matches_zone(name) {
                std_out.push((lo, lo + size as usize));
                if !STDIO_PATTERNS.iter().any(|p| contains_bytes(name, p)) {
                    unwinding_out.push((lo, lo + size as usize));
                }
            } else if is_c_symbol(name) && !allow.iter().any(|p| name.starts_with(p.as_bytes())) {
                c_out.push((lo, lo + size as usize));
            }
            if is_allocator_symbol(name) {
                alloc_out.push((lo, lo + size as usize));
            }
        })
    })
    .flatten()
    .is_some()
}

/// C allocator entry points by exact name (an allocator that replaces
/// libc's `malloc` inside the executable).
const ALLOCATOR_NAMES: &[&[u8]] = &[
    b"malloc",
    b"calloc",
    b"realloc",
    b"free",
    b"posix_memalign",
    b"aligned_alloc",
    b"memalign",
    b"valloc",
    b"pvalloc",
    b"malloc_usable_size",
];

/// Symbol-name prefixes of allocators linked into executables: jemalloc
/// (`tikv-jemallocator`'s `_rjem_`, `je_`), mimalloc (`mi_`, `_mi_`),
/// tcmalloc, snmalloc, rpmalloc.
const ALLOCATOR_PREFIXES: &[&[u8]] = &[
    b"_rjem_",
    b"rjem_",
    b"je_",
    b"_mi_",
    b"mi_",
    b"tc_",
    b"snmalloc",
    b"sn_",
    b"rpmalloc",
    b"_rpmalloc",
];

/// Whether `name` is a C allocator function (see the two lists above).
pub(crate) fn is_allocator_symbol(name: &[u8]) -> bool {
    is_c_symbol(name)
        && (ALLOCATOR_NAMES.contains(&name)
            || ALLOCATOR_PREFIXES.iter().any(|p| name.starts_with(p)))
}

/// Whether `name` is a Rust-mangled symbol: v0 (`_R...`) or legacy
/// (`_ZN...17h<16 hex digits>E`, possibly followed by a `.llvm.N` or
/// similar suffix). C++ names (`_Z...` without the hash) are not.
pub(crate) fn is_rust_mangled(name: &[u8]) -> bool {
    if name.starts_with(b"_R") {
        return true;
    }
    if !name.starts_with(b"_ZN") {
        return false;
    }
    name.windows(20).any(|w| {
        w[0] == b'1'
            && w[1] == b'7'
            && w[2] == b'h'
            && w[19] == b'E'
            && w[3..19].iter().all(|c| c.is_ascii_hexdigit())
    })
}

/// Unmangled symbols that are Rust (or runtime) code all the same: this
/// crate's `#[no_mangle]` libc hooks (they raise the no-preempt level
/// themselves) and assembly, std's `#[no_mangle]` runtime functions
/// (allocation shims, panic entry points — the panic ones are std zones
/// anyway), `main` (Rust's generated `main` is never on a coroutine stack).
const RUST_UNMANGLED_PREFIXES: &[&[u8]] =
    &[b"coroutines_", b"__rust_", b"rust_", b"__rdl_", b"__rg_"];

/// compiler-builtins / libgcc integer and float helpers (`__udivti3`,
/// `__muloti4`, `__floattidf`, `__powidf2`, ...): leaf functions that read
/// their arguments only, keep no state and take no lock, so preempting
/// inside them is harmless (they are what `u128` division and friends
/// compile to, in Rust code as in C). Names are of the form
/// `__<op><type><n>`; matched by operation prefix.
const BUILTIN_PREFIXES: &[&[u8]] = &[
    b"__udiv",
    b"__umod",
    b"__div",
    b"__mod",
    b"__mul",
    b"__ashl",
    b"__ashr",
    b"__lshr",
    b"__float",
    b"__fix",
    b"__extend",
    b"__trunc",
    b"__pow",
    b"__neg",
    b"__cmp",
    b"__ucmp",
    b"__clz",
    b"__ctz",
    b"__popcount",
    b"__bswap",
    b"__add",
    b"__sub",
    b"__eq",
    b"__ne",
    b"__ge",
    b"__gt",
    b"__le",
    b"__lt",
    b"__unord",
];

/// Whether the function symbol `name` of the executable is non-Rust code
/// (C, C++, assembly of a `-sys` crate) for the safe-point rule: not
/// Rust-mangled, not one of the known unmangled Rust/runtime symbols, not
/// a compiler builtin. A user's own `#[no_mangle]` Rust function counts as
/// C (safe; put it on the allow-list to preempt it).
pub(crate) fn is_c_symbol(name: &[u8]) -> bool {
    if name.is_empty() || is_rust_mangled(name) || name == b"main" {
        return false;
    }
    let builtin = name.len() <= 16
        && name[2..]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && BUILTIN_PREFIXES.iter().any(|p| name.starts_with(p));
    if builtin || RUST_UNMANGLED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return false;
    }
    !is_hook_name(name)
}

/// Whether `name` is one of this crate's libc hooks (`interpose::EXPORTED`),
/// by binary search in a sorted copy made once: the table build asks for
/// every unmangled symbol of the executable (thousands with a C library
/// linked in), and a scan of the list per symbol was most of its time.
fn is_hook_name(name: &[u8]) -> bool {
    static SORTED: OnceLock<Vec<&'static [u8]>> = OnceLock::new();
    SORTED
        .get_or_init(|| {
            let mut v: Vec<&'static [u8]> = crate::interpose::EXPORTED
                .iter()
                .map(|h| h.as_bytes())
                .collect();
            v.sort_unstable();
            v
        })
        .binary_search(&name)
        .is_ok()
}

/// Whether `pat` (not empty) occurs in `hay`: a first-byte test before
/// comparing a window, so most windows cost one byte compare rather than a
/// `memcmp` call (the table build runs this over every symbol name).
fn contains_bytes(hay: &[u8], pat: &[u8]) -> bool {
    hay.windows(pat.len()).any(|w| w[0] == pat[0] && w == pat)
}

/// Whether a symbol name contains one of [`ZONE_PATTERNS`]. Cheap
/// prefilter first: every pattern contains "std", "panic", "nwind" or
/// "rust_", found with a fast byte search.
fn matches_zone(name: &[u8]) -> bool {
    let has = |pat: &[u8]| contains_bytes(name, pat);
    if !(has(b"std") || has(b"panic") || has(b"nwind") || has(b"rust_")) {
        return false;
    }
    ZONE_PATTERNS.iter().any(|p| has(p)) && !ZONE_EXCEPTIONS.iter().any(|p| has(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        let t0 = std::time::Instant::now();
        let allow: Vec<String> = crate::config::DEFAULT_PREEMPT_C
            .iter()
            .map(|s| s.to_string())
            .collect();
        refresh(&allow);
        eprintln!("zones::refresh took {:?}", t0.elapsed());
        let t = table().unwrap();
        assert!(t.have_symtab, "test binaries keep their symbol table");
        assert!(t.in_exe_text(tables as *const () as usize));
        assert!(!t.in_zone(tables as *const () as usize));
        // libc's qsort is a zone; so is std's printing.
        assert!(t.in_zone(libc::qsort as *const () as usize));
        assert!(!t.in_exe_text(libc::qsort as *const () as usize));
        assert!(STD_ZONE_FUNCS.load(Ordering::Relaxed) > 10);
        assert!(matches_zone(b"_ZN3std2io5stdio6_print17h0123456789abcdefE"));
        assert!(matches_zone(
            b"_ZN3std9panicking20rust_panic_with_hook17h0123456789abcdefE"
        ));
        assert!(!matches_zone(
            b"_ZN3std9panicking3try7do_call17h0123456789abcdefE"
        ));
        assert!(!matches_zone(
            b"_ZN3std9panicking12catch_unwind7do_call17h0123456789abcdefE"
        ));
        assert!(!matches_zone(
            b"_ZN3std5panic12catch_unwind17h0123456789abcdefE"
        ));
        assert!(!matches_zone(
            b"_ZN10coroutines5sched6worker14coroutine_main17h0123456789abcdefE"
        ));
        assert!(!stale());
        // This crate's hooks and asm are Rust/runtime code, not C zones.
        assert!(t
            .zone(crate::interpose::read as *const () as usize)
            .is_none());
        assert!(t
            .zone(crate::arch::coroutines_restore_full as *const () as usize)
            .is_none());
    }

    #[test]
    fn classification() {
        // Rust: legacy (with and without an LLVM suffix) and v0.
        assert!(is_rust_mangled(
            b"_ZN10coroutines5sched3run17h0123456789abcdefE"
        ));
        assert!(is_rust_mangled(
            b"_ZN4core3ptr13drop_in_place17h00112233445566ffE.llvm.123456"
        ));
        assert!(is_rust_mangled(b"_RNvCs1234_7mycrate3foo"));
        // C++ is not Rust.
        assert!(!is_rust_mangled(b"_ZN7rocksdb2DB4OpenEv"));
        for c in [
            &b"mi_malloc"[..],
            b"_mi_heap_malloc_zero",
            b"_rjem_je_arena_malloc",
            b"sqlite3_step",
            b"deflate_slow",
            b"pqdownheap.constprop.0",
            b"_ZN7rocksdb2DB4OpenEv",
            b"my_no_mangle_fn",
        ] {
            assert!(is_c_symbol(c), "{}", String::from_utf8_lossy(c));
        }
        for r in [
            &b"_ZN3std2rt10lang_start17h0123456789abcdefE"[..],
            b"main",
            b"__rust_alloc",
            b"rust_eh_personality",
            b"__rdl_alloc",
            b"coroutines_switch",
            b"__udivti3",
            b"__muloti4",
            b"__floattidf",
        ] {
            assert!(!is_c_symbol(r), "{}", String::from_utf8_lossy(r));
        }
        for h in crate::interpose::EXPORTED {
            assert!(!is_c_symbol(h.as_bytes()), "{h}");
        }
    }
}
