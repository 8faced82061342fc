//! The public frame type of backtraces, and symbolization of program
//! counters.
//!
//! Executable: its `.symtab` (sys/elf.rs), read once on first use into a
//! sorted, leaked `(address, size, name)` table relative to the load bias;
//! no DWARF, so a `debug = 0` release build gets function names too (not
//! file and line). A stripped executable (no `.symtab`) gives addresses
//! only (`symbol: None`), said once on stderr. Shared objects: `dladdr`
//! (their dynamic symbol table: exported functions only). Rust names are
//! demangled with `rustc-demangle` (the crate std's backtraces use), in its
//! alternate form, which drops the `::h<hash>` suffix.

use std::fmt;
use std::sync::OnceLock;

/// One frame of a backtrace: a code address and, if known, the function it
/// is in.
///
/// Made by the crate's own unwinder (for stacks that are not the calling
/// thread's, which std's `Backtrace` cannot walk). Names come from the
/// executable's symbol table and the shared objects' dynamic symbols: no
/// debug info is needed, and none is used (no file or line).
///
/// `Display` prints one line:
///
/// ```text
/// 0x000055d1c2a8f3b2  app::worker+0x2a
/// 0x00007f3b1c0e4d61  __GI___clock_nanosleep+0x61 (libc.so.6)
/// ```
///
/// ```no_run
/// # fn show(frames: &[coroutines::observe::Frame]) {
/// for f in frames {
///     if f.symbol.as_deref().is_some_and(|s| s.starts_with("app::")) {
///         println!("{f}");
///     }
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The program counter: the instruction pointer for the innermost frame,
    /// a return address (the instruction after the call) for the others.
    pub ip: usize,
    /// The function's name, demangled and without the `::h<hash>` suffix
    /// (`app::worker`, `sqlite3_step`); None if unknown (stripped executable,
    /// code outside any symbol).
    pub symbol: Option<String>,
    /// `ip` minus the function's start address (0 if `symbol` is None).
    pub offset: usize,
    /// File name of the shared object holding `ip` (`libc.so.6`); None for
    /// the executable itself.
    pub object: Option<String>,
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}  ", self.ip)?;
        match &self.symbol {
            Some(s) => write!(f, "{s}+{:#x}", self.offset)?,
            None => f.write_str("?")?,
        }
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        Ok(())
    }
}

/// The executable's function symbols, sorted by address.
struct ExeSymbols {
    /// Executable `PT_LOAD` ranges (absolute).
    text: Vec<(u64, u64)>,
    /// `(absolute start, size, name range in names)`.
    syms: Vec<(u64, u64, u32, u32)>,
    names: Vec<u8>,
}

static EXE: OnceLock<&'static ExeSymbols> = OnceLock::new();

fn exe() -> &'static ExeSymbols {
    EXE.get_or_init(|| Box::leak(Box::new(build_exe())))
}

fn build_exe() -> ExeSymbols {
    let mut bias = 0u64;
    let mut text = Vec::new();
    let mut first = true;
    crate::sys::for_each_object(|info| {
        if !std::mem::replace(&mut first, false) {
            return false;
        }
        bias = info.dlpi_addr;
        for i in 0..info.dlpi_phnum as usize {
            // SAFETY: glibc's info has `dlpi_phnum` program headers.
            let ph = unsafe { &*info.dlpi_phdr.add(i) };
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                let lo = bias.wrapping_add(ph.p_vaddr);
                text.push((lo, lo.wrapping_add(ph.p_memsz)));
            }
        }
        false
    });
    let mut syms = Vec::new();
    let mut names = Vec::new();
    let found = crate::sys::elf::with_exe_image(|img| {
        crate::sys::elf::for_each_symbol(img, |name, info, value, size| {
            let kind = info & 0xf;
            // STT_FUNC, STT_GNU_IFUNC, and untyped labels of assembly.
            if !(kind == 2 || kind == 10 || kind == 0) || value == 0 || name.is_empty() {
                return;
            }
            if name[0] == b'.' || name[0] == b'$' {
                return;
            }
            let addr = bias.wrapping_add(value);
            if kind == 0 && !text.iter().any(|&(lo, hi)| lo <= addr && addr < hi) {
                return;
            }
            let off = names.len() as u32;
            names.extend_from_slice(name);
            // Typed, sized symbols sort before untyped ones at one address.
            syms.push((addr, size, off, name.len() as u32, kind == 0));
        })
    })
    .flatten()
    .is_some();
    if !found {
        crate::sys::write_stderr(
            b"coroutines: note: the executable has no symbol table (stripped): backtraces show \
              addresses only for its code. Keep the symbol table (strip = \"debuginfo\") for names.\n",
        );
    }
    syms.sort_unstable_by_key(|&(a, size, _, _, untyped)| (a, untyped, std::cmp::Reverse(size)));
    syms.dedup_by_key(|s| s.0);
    ExeSymbols {
        text,
        syms: syms
            .into_iter()
            .map(|(a, s, o, l, _)| (a, s, o, l))
            .collect(),
        names,
    }
}

impl ExeSymbols {
    fn contains(&self, addr: u64) -> bool {
        self.text.iter().any(|&(lo, hi)| lo <= addr && addr < hi)
    }

    /// `(start, mangled name)` of the function containing `addr`.
    fn lookup(&self, addr: u64) -> Option<(u64, &[u8])> {
        let i = self.syms.partition_point(|s| s.0 <= addr).checked_sub(1)?;
        let (start, size, off, len) = self.syms[i];
        // Size 0: an assembly label, whose extent is unknown; take it.
        if size != 0 && addr >= start + size {
            return None;
        }
        Some((start, &self.names[off as usize..(off + len) as usize]))
    }
}

/// A symbol name for display: demangled Rust without the hash, anything
/// else as is.
pub(crate) fn demangle(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    format!("{:#}", rustc_demangle::demangle(&s))
}

/// Symbolizes program counters as [`super::unwind::unwind`] returns them:
/// the first is an instruction pointer, the others return addresses
/// (looked up at `pc - 1`, inside the call).
pub(crate) fn symbolize(pcs: &[u64]) -> Vec<Frame> {
    pcs.iter()
        .enumerate()
        .map(|(i, &pc)| symbolize_one(pc, if i == 0 { pc } else { pc.wrapping_sub(1) }))
        .collect()
}

fn symbolize_one(ip: u64, lookup: u64) -> Frame {
    let exe = exe();
    if exe.contains(lookup) {
        let (symbol, offset) = match exe.lookup(lookup) {
            Some((start, name)) => (Some(demangle(name)), ip - start),
            None => (None, 0),
        };
        return Frame {
            ip: ip as usize,
            symbol,
            offset: offset as usize,
            object: None,
        };
    }
    // SAFETY: Dl_info is plain data; dladdr fills it or returns 0.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the address value; `info` is a valid out
    // pointer.
    let ok = unsafe { libc::dladdr(lookup as *const libc::c_void, &mut info) } != 0;
    let cstr = |p: *const libc::c_char| {
        // SAFETY: dladdr's strings are NUL-terminated and live as long as
        // the object stays loaded; copied at once.
        (!p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes().to_vec())
    };
    let object = if ok { cstr(info.dli_fname) } else { None }.map(|f| {
        let base = f.rsplit(|&c| c == b'/').next().unwrap_or(&f);
        String::from_utf8_lossy(base).into_owned()
    });
    let (symbol, offset) = match (ok, cstr(if ok { info.dli_sname } else { std::ptr::null() })) {
        (true, Some(name)) => (
            Some(demangle(&name)),
            ip.wrapping_sub(info.dli_saddr as u64) as usize,
        ),
        _ => (None, 0),
    };
    Frame {
        ip: ip as usize,
        symbol,
        offset,
        object: object.filter(|o| !o.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn symbol_test_target() -> u64 {
        std::hint::black_box(symbol_test_target as *const () as usize as u64)
    }

    #[test]
    fn names_exe_and_libc_functions() {
        let f = symbolize(&[symbol_test_target() + 1]);
        let s = f[0].symbol.as_deref().unwrap();
        assert!(s.ends_with("symbol_test_target"), "{s}");
        assert!(!s.contains("::h"), "{s}");
        assert_eq!(f[0].offset, 1);
        assert_eq!(f[0].object, None);
        let line = f[0].to_string();
        assert!(
            line.starts_with("0x") && line.ends_with("symbol_test_target+0x1"),
            "{line}"
        );

        let getpid = libc::getpid as *const () as u64;
        let f = symbolize(&[getpid]);
        assert!(
            f[0].object.as_deref().unwrap().starts_with("libc.so"),
            "{:?}",
            f[0]
        );
        assert!(
            f[0].symbol.as_deref().unwrap().contains("getpid"),
            "{:?}",
            f[0]
        );
        assert!(f[0].to_string().ends_with(")"), "{}", f[0]);
    }

    #[test]
    fn demangles_without_hash() {
        assert_eq!(
            demangle(b"_ZN3app6worker17h0123456789abcdefE"),
            "app::worker"
        );
        assert_eq!(demangle(b"sqlite3_step"), "sqlite3_step");
    }
}
