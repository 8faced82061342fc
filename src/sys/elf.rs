//! Reading the executable's own ELF image: its symbol table and its TLS
//! initialisation image.
//!
//! Used by the preemption zones (preempt/zones.rs: which code is C, which
//! is std's printing and panic machinery), and by the thread-local
//! machinery to find thread-locals of std and other libraries by name
//! (tls/identity.rs, tls/pool.rs). `/proc/self/exe` is mapped read-only
//! and private for the duration of one call; every field is read with
//! bounds checks (`rd`), so a truncated or foreign file yields `None`,
//! never a fault. Only what these users need is read: the section headers
//! (to find `.symtab` and its string table) and the program headers (to
//! find `PT_TLS`). No DWARF.

/// Runs `f` on the bytes of `/proc/self/exe` (a private read-only mapping,
/// unmapped afterwards). None if the file cannot be opened or mapped.
pub(crate) fn with_exe_image<R>(f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let file = std::fs::File::open("/proc/self/exe").ok()?;
    let len = file.metadata().ok()?.len() as usize;
    if len < 64 {
        return None;
    }
    // SAFETY: read-only private mapping of a file we opened; unmapped below
    // and no reference into it escapes (`f` only borrows the slice).
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the mapping is `len` readable bytes.
    let r = f(unsafe { std::slice::from_raw_parts(base as *const u8, len) });
    // SAFETY: the slice is not used after this.
    unsafe { libc::munmap(base, len) };
    Some(r)
}

/// Calls `f(name, st_info, st_value, st_size)` for every entry of the
/// `.symtab` of the ELF64 image `b`. None if `b` is not ELF64 or has no
/// symbol table (stripped).
pub(crate) fn for_each_symbol(b: &[u8], mut f: impl FnMut(&[u8], u8, u64, u64)) -> Option<()> {
    if b.get(0..4)? != b"\x7fELF" || *b.get(4)? != 2 {
        return None; // not ELF64
    }
    let shoff: u64 = rd(b, 0x28)?;
    let shentsize: u16 = rd(b, 0x3A)?;
    let shnum: u16 = rd(b, 0x3C)?;
    let sh = |i: usize| shoff as usize + i * shentsize as usize;
    let symtab =
        (0..shnum as usize).find(|&i| rd::<u32>(b, sh(i) + 4) == Some(2 /* SHT_SYMTAB */))?;
    let sym_off: u64 = rd(b, sh(symtab) + 24)?;
    let sym_size: u64 = rd(b, sh(symtab) + 32)?;
    let link: u32 = rd(b, sh(symtab) + 40)?;
    let str_off: u64 = rd(b, sh(link as usize) + 24)?;
    let str_size: u64 = rd(b, sh(link as usize) + 32)?;
    let strtab = b.get(str_off as usize..(str_off + str_size) as usize)?;
    let mut off = sym_off as usize;
    let end = (sym_off + sym_size) as usize;
    while off + 24 <= end {
        let name: u32 = rd(b, off)?;
        let info: u8 = rd(b, off + 4)?;
        let value: u64 = rd(b, off + 8)?;
        let size: u64 = rd(b, off + 16)?;
        off += 24;
        let Some(rest) = strtab.get(name as usize..) else {
            continue;
        };
        let n = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        f(&rest[..n], info, value, size);
    }
    Some(())
}

/// The file bytes of the executable's TLS initialisation image (`.tdata`;
/// `.tbss` follows it implicitly as zeroes) and its in-memory size, from
/// the PT_TLS program header of the ELF64 image `b`.
pub(crate) fn tls_image(b: &[u8]) -> Option<(&[u8], usize)> {
    let phoff: u64 = rd(b, 0x20)?;
    let phentsize: u16 = rd(b, 0x36)?;
    let phnum: u16 = rd(b, 0x38)?;
    (0..phnum as usize).find_map(|i| {
        let ph = phoff as usize + i * phentsize as usize;
        if rd::<u32>(b, ph)? != libc::PT_TLS {
            return None;
        }
        let offset: u64 = rd(b, ph + 8)?;
        let filesz: u64 = rd(b, ph + 32)?;
        let memsz: u64 = rd(b, ph + 40)?;
        Some((
            b.get(offset as usize..(offset + filesz) as usize)?,
            memsz as usize,
        ))
    })
}

/// A plain integer of type `T` at byte offset `off` of `b` (unaligned,
/// native endianness: the image is this process's own). None past the end.
fn rd<T: Copy>(b: &[u8], off: usize) -> Option<T> {
    let end = off.checked_add(std::mem::size_of::<T>())?;
    let s = b.get(off..end)?;
    // SAFETY: `s` has exactly size_of::<T>() bytes; T is a plain integer.
    Some(unsafe { (s.as_ptr() as *const T).read_unaligned() })
}
